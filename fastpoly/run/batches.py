"""The one batch loop: an index range cut into engine calls, in order (used by every run path and estimator).

The engine is a sampling backend, an SGD trainer or a GP drawer (:class:`fastpoly.run.plans.Engine`);
the plan is whatever that engine's ``count_range`` takes.
"""
from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from fastpoly.backends.base import Backend, CountBatch
from fastpoly.counts.merge import merge_sorted_counts

__all__ = ["complement", "local_batches", "count_ranges"]


def complement(ranges: Sequence[Sequence[int]], start: int, stop: int) -> list[tuple[int, int]]:
    """Sub-ranges of ``[start, stop)`` not covered by ``ranges`` (what is left to draw)."""
    todo, pos = [], start
    for a, b in sorted((int(a), int(b)) for a, b in ranges):
        if b <= pos or a >= stop:
            continue
        if a > pos:
            todo.append((pos, min(a, stop)))
        pos = max(pos, b)
    if pos < stop:
        todo.append((pos, stop))
    return todo


def local_batches(backend: Backend, plan: Any, todo: Sequence[tuple[int, int]], batch_size: int,
                  target_s: float | None = None, first: int = 1) -> Iterator[tuple[int, int, CountBatch]]:
    """Yield ``(lo, hi, CountBatch)`` for the ranges ``todo``, ``batch_size`` samples per backend call.

    With ``target_s`` the batches are sized by time instead: the first has ``first`` samples, each
    next one aims at ``target_s`` seconds from the rate of the last (growing at most 4x per step,
    never above ``batch_size``).  For engines whose cost per sample is unknown beforehand (training
    runs: one may take milliseconds or seconds), so that a checkpoint, a progress update or Ctrl-C
    never waits for hours.  Results do not depend on the batches (any partition counts the same).
    """
    size = batch_size if target_s is None else max(1, min(batch_size, first))
    for lo0, hi0 in todo:
        pos = lo0
        while pos < hi0:
            hi = min(hi0, pos + size)
            t0 = time.perf_counter()
            b = backend.count_range(plan, pos, hi)
            if target_s is not None:
                per = (time.perf_counter() - t0) / (hi - pos)
                want = 4 * size if per <= 0 else min(4 * size, int(target_s / per))
                size = max(1, min(batch_size, want))
            yield pos, hi, b
            pos = hi


def count_ranges(backend: Backend, plan: Any, todo: Sequence[tuple[int, int]],
                 batch_size: int) -> CountBatch:
    """Count the ranges ``todo`` into one :class:`CountBatch` (in memory; e.g. one Dask task)."""
    acc = None
    pend: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    ns = na = nd = 0
    for _, _, b in local_batches(backend, plan, todo, batch_size):
        ns += int(b.n_samples)
        na += int(b.n_accepted)
        nd += int(b.n_diverged)
        pend.append((b.keys, b.counts, b.first_index))
        if len(pend) >= 32:
            acc = merge_sorted_counts(([acc] if acc is not None else []) + pend)
            pend = []
    acc = merge_sorted_counts(([acc] if acc is not None else []) + pend)
    if acc is None:
        W = plan.n_words
        acc = (np.zeros((0, W), np.uint64), np.zeros(0, np.int64), np.zeros(0, np.uint64))
    return CountBatch(acc[0], acc[1], acc[2], ns, na, nd)

"""Host-side accumulation of the sorted per-sub-batch counts of the CUDA backend (linear, overlapped).

Each sub-batch of :meth:`fastpoly.backends.cuda.backend.CupyBackend.count_range` comes back from
the device as one sorted, unique ``(keys, counts, first_index)`` triple, plus at most one
all-zero key (the smallest possible key) and one all-one key (the largest).  So:

* a sub-batch's triple is assembled by concatenation (zero key, runs, all-one key), never sorted;
* sub-batches are merged with the linear two-way merge :func:`fastpoly.backends.numba.merge.merge2`
  in binary-counter order (a new run is merged with the top of a stack while that top is not
  larger), so every record takes part in at most ``1 + ceil(log2 S)`` merges for ``S``
  sub-batches and the whole accumulation is ``O(N log S)`` -- linear in the records for a given
  number of sub-batches, never the ``O(N log N)`` of concatenate + ``lexsort``;
* with ``threaded=True`` the merges run in one worker thread (Numba kernels release the GIL),
  so the host merges sub-batch ``i`` while the device draws sub-batch ``i + 1``.

Without Numba, or below :data:`COMPILED_MIN` records, a pair is merged by the NumPy reference
(:func:`fastpoly.backends.counting.merge_sorted_counts_reference`); results are identical.
"""
from __future__ import annotations

import importlib.util
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from fastpoly.backends.counting import merge_sorted_counts_reference

__all__ = ["SortedRunMerger", "concat_ordered", "COMPILED_MIN"]

#: below this many records in a pair the NumPy reference is as fast as the compiled merge
COMPILED_MIN = 1 << 15

Triple = tuple[np.ndarray, np.ndarray, np.ndarray]


def _less(a: np.ndarray, b: np.ndarray) -> bool:
    """Key row ``a`` < key row ``b`` as big integers (word ``W-1`` most significant)."""
    for w in range(a.shape[0] - 1, -1, -1):
        if a[w] != b[w]:
            return bool(a[w] < b[w])
    return False


def concat_ordered(parts: list[Triple]) -> Triple | None:
    """Concatenate non-empty sorted unique triples whose key ranges are strictly increasing; else None.

    ``O(n)``: only the boundary keys are compared.  Returns None (the caller merges instead) when
    two consecutive parts are not strictly ordered.
    """
    parts = [p for p in parts if p[0].shape[0]]
    if not parts:
        return None
    for p, q in zip(parts[:-1], parts[1:]):
        if not _less(p[0][-1], q[0][0]):
            return None
    if len(parts) == 1:
        return parts[0]
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]).astype(np.int64),
            np.concatenate([p[2] for p in parts]).astype(np.uint64))


class SortedRunMerger:
    """Accumulate sorted unique count triples into one (see the module docstring).

    Parameters
    ----------
    threaded : bool
        Merge in one background thread (overlapping the caller's next device work).
    compiled_min : int or None
        Pairs with at least this many records use the compiled merge (None: :data:`COMPILED_MIN`;
        0: always, when Numba is importable).

    Attributes
    ----------
    records_written : int
        Records written by pairwise merges so far (the operation count of the accumulation;
        concatenation of ordered parts is not counted, it is a copy).
    merges : int
        Pairwise merges done.
    """

    def __init__(self, threaded: bool = True, compiled_min: int | None = None) -> None:
        self._stack: list[Triple] = []
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(1, "fastpoly-merge") if threaded else None
        self._pending: list[Future] = []
        self.compiled_min = COMPILED_MIN if compiled_min is None else int(compiled_min)
        self._merge2: Any = None
        if importlib.util.find_spec("numba") is not None:
            from fastpoly.backends.numba.merge import merge2

            self._merge2 = merge2
        self.records_written = 0
        self.merges = 0

    def _pair(self, a: Triple, b: Triple) -> Triple:
        n = a[0].shape[0] + b[0].shape[0]
        if self._merge2 is not None and n >= self.compiled_min:
            out = self._merge2(a, b)
        else:
            out = merge_sorted_counts_reference([a, b])
        self.records_written += int(out[0].shape[0])
        self.merges += 1
        return out

    def _push(self, part: Triple) -> None:
        while self._stack and self._stack[-1][0].shape[0] <= part[0].shape[0]:
            part = self._pair(self._stack.pop(), part)
        self._stack.append(part)

    def add(self, part: Triple) -> None:
        """Add one sorted unique triple (empty ones are ignored); returns at once when threaded."""
        if not part[0].shape[0]:
            return
        if self._pool is None:
            self._push(part)
        else:
            self._pending.append(self._pool.submit(self._push, part))
            # re-raise a failed merge early, drop finished futures
            while self._pending and self._pending[0].done():
                self._pending.pop(0).result()

    def result(self) -> Triple | None:
        """The merged triple (None if nothing was added); waits for the worker and shuts it down."""
        try:
            for f in self._pending:
                f.result()
        finally:
            self._pending = []
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        while len(self._stack) > 1:
            b = self._stack.pop()
            a = self._stack.pop()
            self._stack.append(self._pair(a, b))
        return self._stack[0] if self._stack else None

    def close(self) -> None:
        """Stop the worker without a result (after an error of the caller)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending = []

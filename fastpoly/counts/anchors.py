"""Exact conversion to and from the anchor pipelines' formats (``docs/design.md#anchor-conventions``).

Three string conventions for a function on the ``n = 2**d`` Boolean inputs:

``rows`` (fastpoly)
    Character ``i`` = output on row ``i``; row ``i`` has ``x_j = (i >> j) & 1``.
``cpp`` (the C++/MPI anchor)
    The same LSB-first inputs, printed reversed: character ``j`` = input ``n-1-j``.
``python`` (the TensorFlow/Python anchors)
    MSB-first inputs: character ``i`` = the input whose features are
    ``format(i, '0db')`` read left to right as ``x_0 .. x_{d-1}``; that is fastpoly
    row ``bitreverse_d(i)``.

"Count string" files are what ``sort | uniq -c`` printed: one line per distinct
function, ``"%7d %s"`` (count right-aligned to 7 characters, a space, the
string), sorted by string in byte order.  :func:`write_count_strings` writes
exactly that, so files round-trip byte for byte.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from fastpoly.arch import boolean_inputs
from fastpoly.atomic import atomic_write_bytes
from fastpoly.counts.meta import ResultMeta, build_meta
from fastpoly.counts.store import FunctionCounts
from fastpoly.keys import (
    CONVENTIONS,
    convert_string,
    keys_to_strings,
    sort_order,
    strings_to_keys,
)
from fastpoly.plan import as_mlp, make_plan

__all__ = ["CONVENTIONS", "keys_to_strings", "strings_to_keys", "convert_string",
           "read_count_strings", "write_count_strings", "counts_from_anchor_file"]

#: first_index of functions read from anchor files (their sample indices are unknown)
UNKNOWN_INDEX = np.uint64(2**64 - 1)


def read_count_strings(path: str | os.PathLike[str], convention: str = "cpp") -> tuple[np.ndarray, np.ndarray, int]:
    """Read a "count string" file (``sort | uniq -c`` output).

    Returns
    -------
    keys : uint64 (K, W), sorted as big integers, distinct (repeated strings are summed)
    counts : int64 (K,)
    n_bits : int
    """
    strings, cnts = [], []
    with open(path, encoding="ascii", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(f"{path}:{lineno}: expected 'count string', got {line.rstrip()[:60]!r}")
            text, s = parts
            try:
                c = int(text)
            except ValueError:
                raise ValueError(f"{path}:{lineno}: count {text!r} is not an integer") from None
            if c < 1:
                raise ValueError(f"{path}:{lineno}: count must be positive, got {c}")
            strings.append(s)
            cnts.append(c)
    if not strings:
        raise ValueError(f"{path}: no count lines")
    n = len(strings[0])
    for s in strings:
        if len(s) != n:
            raise ValueError(f"{path}: line with a string of {len(s)} characters, expected {n}")
    keys = strings_to_keys(strings, convention)
    counts = np.asarray(cnts, np.int64)
    order = sort_order(keys)
    keys, counts = keys[order], counts[order]
    new = np.ones(keys.shape[0], bool)
    new[1:] = np.any(keys[1:] != keys[:-1], axis=1)
    starts = np.flatnonzero(new)
    return np.ascontiguousarray(keys[starts]), np.add.reduceat(counts, starts).astype(np.int64), n


def write_count_strings(counts: Any, path: str | os.PathLike[str], convention: str = "cpp", n_bits: int | None = None) -> str:
    """Write ``"%7d %s"`` lines sorted by string (byte order), as ``sort | uniq -c`` does.

    Parameters
    ----------
    counts : FunctionCounts or (keys, counts)
        A FunctionCounts writes its functions over all rows (train rows filled
        with the train labels for conditioned runs).
    path : path
    convention : {"rows", "cpp", "python"}
    n_bits : int
        Needed with a ``(keys, counts)`` pair.
    """
    if isinstance(counts, FunctionCounts):
        keys, cnt, n_bits = counts.full_keys(), np.asarray(counts.counts), counts.n_rows
    else:
        keys, cnt = counts
        if n_bits is None:
            raise ValueError("n_bits is needed with a (keys, counts) pair")
    strings = keys_to_strings(keys, n_bits, convention)
    order = sorted(range(len(strings)), key=strings.__getitem__)
    text = "".join(f"{int(cnt[i]):7d} {strings[i]}\n" for i in order)
    atomic_write_bytes(path, text.encode("ascii"))
    return os.fspath(path)


def counts_from_anchor_file(path: str | os.PathLike[str], arch: Any, convention: str = "cpp",
                            centered: bool = False) -> FunctionCounts:
    """A :class:`FunctionCounts` from an anchor's count-string file (prior over all Boolean inputs).

    Sample indices are unknown (``first_index`` = 2**64-1) and the seed is None,
    so the result merges with fastpoly results of the same architecture as a
    separate stream.
    """
    keys, counts, n = read_count_strings(path, convention)
    plan = make_plan(arch, boolean_inputs(_as_n_inputs(arch), centered=centered), 0, None)
    if n != plan.m:
        raise ValueError(f"{path}: strings of {n} characters, but the architecture has {plan.m} Boolean inputs")
    c = plan.compat_meta()
    rm = ResultMeta(estimator="prior", arch=c["arch"], inputs_digest=c["inputs_digest"], n_rows=c["n_rows"], seed=None)
    meta = build_meta(rm, n_key_bits=n, annotations={"source": f"anchor count-string file ({convention} convention)"})
    total = int(counts.sum())
    return FunctionCounts(keys, counts, np.full(counts.shape, UNKNOWN_INDEX, np.uint64), total, total, meta)


def _as_n_inputs(arch):
    return as_mlp(arch).n_inputs

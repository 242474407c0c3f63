"""The per-function table (CSV) of a counts file, streamed: any number of functions in bounded memory.

One row per function, most frequent first (storage order among equal counts), exactly the table
fastpoly 0.1 wrote from memory.  The order is produced without sorting all functions: the
histogram of counts splits the count values into groups of at most ``rows_per_pass`` functions;
each group is one pass over the counts, whose selected rows are sorted in memory; a single count
value shared by more functions (typically the functions seen once) is written in storage order
while streaming, which is already the table's order.  ``min_count`` drops rarer functions (their
expensive columns are rarely wanted: at 1e10 samples, 1.7e9 of 1.8e9 functions are seen <= 3 times).
The file is written to a temporary file in the target's folder and renamed when complete.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from fastpoly.analysis.blocks import DEFAULT_BLOCK, iter_columns
from fastpoly.analysis.complexity import complexity_table
from fastpoly.analysis.conditioning import generalization_error
from fastpoly.analysis.histograms import count_histogram, full_keys_block
from fastpoly.analysis.stats import interval as binomial_interval
from fastpoly.atomic import atomic_open
from fastpoly.keys import key_to_hex

__all__ = ["write_table"]


class _Rows:
    """Formats rows of the table for chunks of functions."""

    def __init__(self, counts: Any, interval: str, order: str) -> None:
        self.c = counts
        self.interval = interval
        self.order = order
        self.boolean = bool(counts.is_boolean())
        self.with_error = counts.meta.get("target") is not None

    def header(self) -> str:
        cols = ["key", "count", "probability", "lower", "upper", "klz", "entropy", "ones"]
        cols += ["csr"] if self.boolean else []
        cols += ["first_index"] + (["error"] if self.with_error else [])
        return ",".join(cols)

    def lines(self, keys: np.ndarray, cnt: np.ndarray, first: np.ndarray) -> list[str]:
        c = self.c
        n = c.n_accepted
        p = cnt / n if n else np.full(cnt.size, np.nan)
        lo, hi = binomial_interval(cnt, n, 0.95, self.interval)
        cx = complexity_table(full_keys_block(c, keys), c.n_rows, boolean=self.boolean, order=self.order)
        err = None
        if self.with_error:
            err = generalization_error(_Chunk(c, keys), None)
        out = []
        nb = c.n_key_bits
        for j in range(cnt.size):
            vals = [key_to_hex(keys[j], nb), str(int(cnt[j])), repr(float(p[j])), repr(float(lo[j])),
                    repr(float(hi[j])), repr(float(cx["klz"][j])), repr(float(cx["entropy"][j])),
                    str(int(cx["ones"][j]))]
            if self.boolean:
                vals.append(repr(float(cx["csr"][j])))
            vals.append(str(int(first[j])))
            if err is not None:
                vals.append(repr(float(err[j])))
            out.append(",".join(vals))
        return out


class _Chunk:
    """The keys of a chunk with the metadata of their counts file (for generalisation errors)."""

    def __init__(self, counts: Any, keys: np.ndarray) -> None:
        self.keys = keys
        self.meta = counts.meta
        self.n_rows = counts.n_rows
        self.key_rows = counts.key_rows


def _groups(values: np.ndarray, mult: np.ndarray, rows_per_pass: int) -> list[tuple[int, int, bool]]:
    """Count ranges ``(lo, hi, streamed)``, largest counts first.

    Each range holds at most ``rows_per_pass`` functions, or is one count value shared by more,
    streamed in storage order.
    """
    out: list[tuple[int, int, bool]] = []
    i = values.size - 1
    while i >= 0:
        if mult[i] > rows_per_pass:
            out.append((int(values[i]), int(values[i]), True))
            i -= 1
            continue
        j, total = i, 0
        while j >= 0 and mult[j] <= rows_per_pass and total + mult[j] <= rows_per_pass:
            total += int(mult[j])
            j -= 1
        out.append((int(values[j + 1]), int(values[i]), False))
        i = j
    return out


def write_table(counts: Any, path: str | os.PathLike[str], interval: str = "wilson", order: str = "rows",
                min_count: int = 1, rows_per_pass: int = 1 << 20, block: int = DEFAULT_BLOCK) -> int:
    """Write the per-function CSV table of ``counts`` to ``path`` (atomically, streaming).

    Parameters
    ----------
    counts : FunctionCounts
        Memory-mapped or in memory.
    path : path
    interval : {"wilson", "clopper-pearson"}
    order : {"rows", "msb"}
        String order for K_LZ.
    min_count : int
        Only functions seen at least this many times.
    rows_per_pass : int
        Most functions sorted in memory at once (about 100 bytes each).
    block : int
        Rows per block of each pass.

    Returns
    -------
    int
        Rows written (functions, without the header).
    """
    if int(min_count) < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    rows = _Rows(counts, interval, order)
    values, mult = count_histogram(counts, block)
    keep = values >= int(min_count)
    values, mult = values[keep], mult[keep]
    n_written = 0
    src = ("keys", "counts", "first_index")
    with atomic_open(path, "w", newline="") as fh:
        fh.write(rows.header() + "\n")
        for lo, hi, streamed in _groups(values, mult, int(rows_per_pass)):
            if streamed:
                for _, (k, c, f) in iter_columns(counts, src, block):
                    sel = np.flatnonzero(np.asarray(c) == lo)
                    if sel.size:
                        fh.write("\n".join(rows.lines(k[sel], np.asarray(c)[sel], f[sel])) + "\n")
                        n_written += sel.size
                continue
            ks, cs, fs, idx = [], [], [], []
            for a, (k, c, f) in iter_columns(counts, src, block):
                c = np.asarray(c)
                sel = np.flatnonzero((c >= lo) & (c <= hi))
                if sel.size:
                    ks.append(k[sel])
                    cs.append(c[sel])
                    fs.append(f[sel])
                    idx.append(sel + a)
            if not idx:
                continue
            kk, cc, ff, ii = (np.concatenate(x) for x in (ks, cs, fs, idx))
            o = np.lexsort((ii, -cc))
            kk, cc, ff = kk[o], cc[o], ff[o]
            for a in range(0, cc.size, block):
                fh.write("\n".join(rows.lines(kk[a:a + block], cc[a:a + block], ff[a:a + block])) + "\n")
            n_written += cc.size
    return n_written

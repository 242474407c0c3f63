"""Exact analysis of counts by histograms, in one streaming pass over (memory-mapped) counts.

Counts are integers and every complexity measure is a function of a small integer (the LZ76
phrase sum for K_LZ, the number of ones T for T and entropy, the number of critical inputs for
CSR, the number of errors for the generalisation error).  So everything ``fastpoly analyze`` and
the figures report follows exactly from a few histograms, which :func:`summarize` builds in one
pass over the stored functions, block by block (:func:`fastpoly.analysis.blocks.iter_columns`: arrays or the blocks of a compressed file):

* the histogram of counts (how many functions were seen c times) -> the rank-frequency plot;
* the 2-D histogram of (count, phrase sum) -> the P-vs-K_LZ figure and Spearman(log P, K_LZ),
  exact with ties (:func:`spearman_from_table`);
* count-weighted histograms of phrase sums, T, critical inputs and errors -> means under P(f),
  P(T) and the error histogram, as exact integer sums;
* per phrase sum the largest count and where it is first seen -> the upper-bound envelope
  (:func:`upper_bound_from_maxima`, identical to :func:`fastpoly.analysis.figures.upper_bound_fit`);
* the top-k functions (count descending, storage order among ties) -> the top table.

Memory: one block of keys plus the histograms (a few MB), whatever the number of functions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fastpoly.analysis.blocks import DEFAULT_BLOCK, iter_columns
from fastpoly.analysis.complexity import complexity_ints, klz_from_sums, resolve_analysis_backend
from fastpoly.analysis.conditioning import _target_of
from fastpoly.backends import backend_for
from fastpoly.keys import pack_bits, unpack_bits

__all__ = ["Summary", "summarize", "top_indices", "count_histogram", "full_keys_block", "spearman_from_table",
           "upper_bound_from_maxima", "rank_points", "table_points"]


def full_keys_block(counts: Any, keys: np.ndarray) -> np.ndarray:
    """A block of ``counts``' keys over all rows of X (train rows carry the train labels).

    The block version of :meth:`fastpoly.FunctionCounts.full_keys`.
    """
    if not counts.conditioned:
        return keys
    full = np.zeros((keys.shape[0], counts.n_rows), bool)
    full[:, counts.key_rows()] = unpack_bits(keys, counts.n_key_bits).astype(bool)
    full[:, np.asarray(counts.meta["train_rows"], np.int64)] = np.asarray(counts.meta["train_labels"], bool)
    return pack_bits(full)


def top_indices(counts: Any, k: int, block: int = DEFAULT_BLOCK) -> np.ndarray:
    """Indices of the ``k`` largest counts, count descending and index ascending among ties.

    The same as ``np.lexsort((np.arange(n), -counts))[:k]``, streaming over ``counts`` in blocks
    (memory ~ one block + k).  ``counts``: the array of counts, or a counts object
    (:func:`fastpoly.analysis.blocks.iter_columns`).
    """
    k = int(k)
    if k < 0:
        raise ValueError("k must be >= 0")
    best_c = np.zeros(0, np.int64)
    best_i = np.zeros(0, np.int64)
    if k == 0:
        return best_i
    for a, (c,) in iter_columns(counts, ("counts",), block):
        c = np.asarray(c, np.int64)
        # only rows that can enter the current top k (a cheap filter once k rows are known)
        sel = np.arange(c.size) if best_c.size < k else np.flatnonzero(c >= best_c[-1])
        if sel.size > k:
            cs = c[sel]
            t = np.sort(cs)[sel.size - k]  # the k-th largest count among them
            gt = sel[cs > t]
            eq = sel[cs == t][: k - gt.size]
            sel = np.concatenate([gt, eq])
        cand_c = np.concatenate([best_c, c[sel]])
        cand_i = np.concatenate([best_i, sel.astype(np.int64) + a])
        order = np.lexsort((cand_i, -cand_c))[:k]
        best_c, best_i = cand_c[order], cand_i[order]
    return best_i


def count_histogram(counts: Any, block: int = DEFAULT_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """``(count values ascending, number of functions with that count)``, streaming over ``counts``.

    ``counts``: the array of counts, or a counts object (:func:`fastpoly.analysis.blocks.iter_columns`).
    """
    vals = np.zeros(0, np.int64)
    mult = np.zeros(0, np.int64)
    for _, (c,) in iter_columns(counts, ("counts",), block):
        v, m = np.unique(np.asarray(c, np.int64), return_counts=True)
        vals, mult = _compact(np.concatenate([vals, v]), np.concatenate([mult, m.astype(np.int64)]))
    return vals, mult


def _compact(codes: np.ndarray, mult: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum ``mult`` over equal ``codes`` (sorted unique codes, their totals)."""
    if codes.size == 0:
        return codes, mult
    order = np.argsort(codes, kind="stable")
    codes, mult = codes[order], mult[order]
    start = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    return codes[start], np.add.reduceat(mult, start)


class _Pairs:
    """A running 2-D histogram of integer pairs (a, b), 0 <= b < base, with multiplicities."""

    def __init__(self, base: int) -> None:
        self.base = int(base)
        self.codes = np.zeros(0, np.int64)
        self.mult = np.zeros(0, np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_n = 0

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        codes, mult = np.unique(np.asarray(a, np.int64) * self.base + np.asarray(b, np.int64), return_counts=True)
        self._pending.append((codes, mult.astype(np.int64)))
        self._pending_n += codes.size
        if self._pending_n > max(1 << 20, self.codes.size):
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self.codes, self.mult = _compact(
                np.concatenate([self.codes] + [p[0] for p in self._pending]),
                np.concatenate([self.mult] + [p[1] for p in self._pending]),
            )
            self._pending, self._pending_n = [], 0

    def table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(a, b, multiplicity)``, sorted by (a, b)."""
        self._flush()
        return self.codes // self.base, self.codes % self.base, self.mult


#: counts below this are tallied in dense (count, class) tables by the compiled tally
DENSE_CAP = 64
_TALLY: list[Any] = []


def _tally_module() -> Any:
    """The compiled per-block tables of the ``"tally"`` capability, or None on the reference (memoised)."""
    if not _TALLY:
        be = backend_for("tally")
        _TALLY.append(None if be.reference else be.tally_engine())
    return _TALLY[0]


class _Tally:
    """The running tables of :func:`summarize`, fed block by block (exact integers).

    Compiled (:mod:`fastpoly.backends.numba.tally`, parallel within a block): dense
    ``(count, class)`` and ``(errors, count)`` tables for counts below :data:`DENSE_CAP`, a sparse
    table (:class:`_Pairs`) for the few larger counts.  Without Numba, NumPy sorts per block.
    Both give the same tables; per class maxima keep the earliest index among equal counts.
    """

    def __init__(self, n_bits: int, boolean: bool, n_test: int | None, tkey: np.ndarray | None) -> None:
        self.n_bits = n_bits
        self.base = 2 * n_bits + 2  # classes: phrase sum + 1 in [0, 2 n + 1]
        self.n_err = None if n_test is None else n_test + 1
        self.tkey = tkey
        self.kern = _tally_module()
        self.pairs = _Pairs(self.base)  # (count, class): all rows (NumPy), counts >= DENSE_CAP (compiled)
        self.epairs = None if self.n_err is None else _Pairs(self.n_err)  # (count, errors), likewise
        self.dense = np.zeros((DENSE_CAP, self.base), np.int64)
        self.edense = np.zeros((self.n_err or 1, DENSE_CAP), np.int64)
        self.ones_w = np.zeros(n_bits + 1, np.int64)
        self.crit_w = np.zeros(n_bits + 1, np.int64) if boolean else None
        self.err_w = None if self.n_err is None else np.zeros(self.n_err, np.int64)
        self.max_count = np.zeros(self.base, np.int64)
        self.max_first = np.full(self.base, -1, np.int64)

    def _maxima(self, hs: np.ndarray, hc: np.ndarray, hi: np.ndarray) -> None:
        better = hc > self.max_count[hs]  # strict: earlier blocks win ties
        self.max_count[hs[better]] = hc[better]
        self.max_first[hs[better]] = hi[better]

    def add(self, a: int, cnt: np.ndarray, ci: dict[str, np.ndarray], keys: np.ndarray) -> np.ndarray | None:
        """Tally the block of rows ``a, a + 1, ...``; returns its errors (None without a target)."""
        s1 = ci["sums"] + 1
        if self.kern is not None:
            r = self.kern.tally_block(cnt, s1, self.base, ci["ones"], self.n_bits + 1, ci.get("crit"),
                                      keys if self.n_err is not None else None, self.tkey, self.n_err or 0,
                                      DENSE_CAP)
            self.dense += r["dense"]
            self.ones_w += r["ones_w"]
            if self.crit_w is not None:
                self.crit_w += r["crit_w"]
            hs = np.flatnonzero(r["max_first"] >= 0)
            self._maxima(hs, r["max_count"][hs], r["max_first"][hs] + a)
            big = r["big"]
            if big.size:
                self.pairs.add(cnt[big], s1[big])
            e = r.get("errs")
            if e is not None:
                assert self.epairs is not None and self.err_w is not None
                self.edense += r["edense"]
                self.err_w += r["err_w"]
                if big.size:
                    self.epairs.add(cnt[big], e[big])
            return e
        self.pairs.add(cnt, s1)
        self.ones_w += np.bincount(ci["ones"], weights=cnt, minlength=self.n_bits + 1).astype(np.int64)
        if self.crit_w is not None:
            self.crit_w += np.bincount(ci["crit"], weights=cnt, minlength=self.n_bits + 1).astype(np.int64)
        # per phrase sum: the largest count, first index
        o = np.lexsort((-cnt, s1))
        ss, cc = s1[o], cnt[o]
        head = np.r_[True, ss[1:] != ss[:-1]]
        self._maxima(ss[head], cc[head], o[head].astype(np.int64) + a)
        if self.n_err is None:
            return None
        assert self.tkey is not None and self.epairs is not None and self.err_w is not None
        e = _popcount(np.bitwise_xor(keys, self.tkey[None, :]))
        self.epairs.add(cnt, e)
        self.err_w += np.bincount(e, weights=cnt, minlength=self.n_err).astype(np.int64)
        return e

    def count_sum_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(count, phrase sum, functions)`` sorted by count, then phrase sum."""
        c, s1, m = self.pairs.table()
        dc, ds = np.nonzero(self.dense)  # counts < DENSE_CAP <= the sparse table's counts
        c = np.concatenate([dc.astype(np.int64), c])
        s1 = np.concatenate([ds.astype(np.int64), s1])
        m = np.concatenate([self.dense[dc, ds], m])
        return c, s1 - 1, m

    def error_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(errors, count, functions)`` sorted by errors, then count (None without a target)."""
        if self.epairs is None:
            return None
        c, e, m = self.epairs.table()
        de, dc = np.nonzero(self.edense)
        e = np.concatenate([de.astype(np.int64), e])
        c = np.concatenate([dc.astype(np.int64), c])
        m = np.concatenate([self.edense[de, dc], m])
        o = np.lexsort((c, e))
        return e[o], c[o], m[o]


@dataclass
class Summary:
    """Histograms of a counts file (see the module docstring); built by :func:`summarize`."""

    n_samples: int
    n_accepted: int
    n_distinct: int
    n_bits: int  # string length of the complexity measures (all rows of X)
    order: str
    boolean: bool
    #: (count, phrase sum, number of functions), sorted by count then phrase sum
    count_sum_table: tuple[np.ndarray, np.ndarray, np.ndarray]
    #: total count (samples) by T = 0..n_bits, by critical inputs 0..n_bits
    ones_weight: np.ndarray
    crit_weight: np.ndarray | None
    #: per phrase sum s (index s + 1): largest count and smallest index with that count (-1: none)
    max_count: np.ndarray
    max_first: np.ndarray
    #: top functions: indices (count descending, index ascending)
    top: np.ndarray
    #: for a known target: number of key rows, (errors, count, number of functions), total count by errors
    n_test: int = 0
    error_table: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    error_weight: np.ndarray | None = None
    #: per-function arrays in storage order (only when asked and the file is small enough)
    points: dict[str, np.ndarray] | None = field(default=None)

    # --- derived, exact ------------------------------------------------------------------------
    def count_histogram(self) -> tuple[np.ndarray, np.ndarray]:
        """``(count values ascending, number of functions with that count)``."""
        c, _, m = self.count_sum_table
        return _compact(c, m)

    def sum_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """``(phrase sums ascending, total count of the functions with that sum)``."""
        c, s, m = self.count_sum_table
        return _compact(s, c * m)

    def klz_of(self, sums: np.ndarray) -> np.ndarray:
        """K_LZ of phrase sums (-1 = constant)."""
        return klz_from_sums(sums, self.n_bits)

    def means(self) -> dict[str, float]:
        """Means of K_LZ, entropy, T and CSR under P(f) (count-weighted), as in ``fastpoly analyze``."""
        from fastpoly.analysis.complexity import entropy_from_ones

        n = self.n_accepted
        s, w = self.sum_weights()
        t = np.arange(self.ones_weight.size)
        out = {
            "mean_klz": float(np.sum(w * self.klz_of(s)) / n),
            "mean_entropy": float(np.sum(self.ones_weight * entropy_from_ones(t, self.n_bits)) / n),
            "mean_ones": float(np.sum(self.ones_weight * t) / n),
        }
        if self.crit_weight is not None:
            out["mean_csr"] = float(np.sum(self.crit_weight * (t / self.n_bits)) / n)
        return out

    def singletons(self) -> int:
        """Functions seen exactly once."""
        v, m = self.count_histogram()
        return int(m[v == 1].sum())

    def spearman(self) -> float | None:
        """Spearman(log P, K_LZ) with average ranks for ties; None when it is undefined (as before)."""
        c, s, m = self.count_sum_table
        if self.n_distinct <= 2 or np.unique(c).size < 2 or np.unique(s).size < 2:
            return None
        return spearman_from_table(c, s, m)

    def bound(self, min_count: int = 5, n_bins: int = 20) -> tuple[float, float]:
        """The simplicity-bias bound ``log10 P <= a + b K_LZ`` (see :func:`upper_bound_from_maxima`)."""
        sums = np.arange(-1, self.max_count.size - 1)
        return upper_bound_from_maxima(self.klz_of(sums), self.max_count, self.max_first, self.n_accepted,
                                       min_count=min_count, n_bins=n_bins)

    def bound_support(self, min_count: int = 5) -> tuple[str, float, float]:
        """What :meth:`bound` was fitted to: a phrase for it and the K_LZ range of the points used.

        The bound uses the functions seen at least ``min_count`` times when they span two K_LZ
        values or more, else every function; the range is where the line was fitted (figures
        draw it only there).  ``("", nan, nan)`` when there is no bound.
        """
        sums = np.arange(-1, self.max_count.size - 1)
        kv = np.asarray(self.klz_of(sums), np.float64)
        present = np.asarray(self.max_count) > 0
        well = present & (np.asarray(self.max_count) >= min_count)
        if np.unique(kv[well]).size >= 2:
            return f"envelope of functions seen >= {min_count} times", float(kv[well].min()), float(kv[well].max())
        if np.unique(kv[present]).size >= 2:
            return (f"envelope of all functions: fewer than two K_LZ values among functions seen >= {min_count} "
                    "times", float(kv[present].min()), float(kv[present].max()))
        return "", float("nan"), float("nan")

    def mean_error(self) -> float:
        """Mean generalisation error under P(f) (needs a target)."""
        assert self.error_weight is not None
        e = np.arange(self.error_weight.size) / float(self.n_test)
        return float(np.sum(self.error_weight * e) / self.n_accepted) if self.n_accepted else float("nan")


def _ranks(values: np.ndarray, mult: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct sorted values and their average (1-based) ranks, given multiplicities."""
    v, m = _compact(values, mult)
    before = np.cumsum(m) - m
    return v, before + (m + 1) / 2.0


def spearman_from_table(a: np.ndarray, b: np.ndarray, mult: np.ndarray) -> float:
    """Spearman's rank correlation of paired data given as a contingency table (exact with ties).

    ``(a[j], b[j])`` occurs ``mult[j]`` times; ranks are averaged over ties, as
    :func:`scipy.stats.spearmanr` does, and the result is the Pearson correlation of the ranks.
    """
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    m = np.asarray(mult, np.float64)
    va, ra = _ranks(a, mult)
    vb, rb = _ranks(b, mult)
    xa = ra[np.searchsorted(va, a)]
    xb = rb[np.searchsorted(vb, b)]
    n = m.sum()
    mu = (n + 1) / 2.0
    da, db = xa - mu, xb - mu
    cov = np.sum(m * da * db)
    return float(cov / math.sqrt(np.sum(m * da * da) * np.sum(m * db * db)))


def upper_bound_from_maxima(klz_values: np.ndarray, max_count: np.ndarray, max_first: np.ndarray,
                            n_accepted: int, min_count: int = 5, n_bins: int = 20) -> tuple[float, float]:
    """:func:`fastpoly.analysis.figures.upper_bound_fit` from the per-K_LZ maxima (identical result).

    Parameters
    ----------
    klz_values : float array
        K_LZ of each phrase-sum class.
    max_count, max_first : int arrays
        The largest count in each class and the smallest storage index holding it
        (``max_count == 0``: empty class).
    n_accepted : int
    """
    klz_values = np.asarray(klz_values, np.float64)
    present = np.asarray(max_count) > 0
    use = present
    well = present & (np.asarray(max_count) >= min_count)
    if np.unique(klz_values[well]).size >= 2:
        use = well
    k = klz_values[use]
    if np.unique(k).size < 2:
        return float("nan"), float("nan")
    lp = np.log10(np.asarray(max_count)[use] / n_accepted)
    first = np.asarray(max_first)[use]
    edges = np.linspace(k.min(), k.max(), n_bins + 1)
    which = np.clip(np.searchsorted(edges, k, side="right") - 1, 0, n_bins - 1)
    xs, ys = [], []
    for j in np.unique(which):
        sel = np.flatnonzero(which == j)
        top = lp[sel] == lp[sel].max()
        i = sel[top][np.argmin(first[sel][top])]  # the first function in storage order with the max
        xs.append(k[i])
        ys.append(lp[i])
    if np.unique(xs).size < 2:
        return float("nan"), float("nan")
    b, a = np.polyfit(xs, ys, 1)
    a = a + max(0.0, float(np.max(lp - (a + b * k))))
    return float(a), float(b)


def summarize(counts: Any, order: str = "rows", top: int = 20, block: int = DEFAULT_BLOCK,
              target: Any = None, keep_points: int = 0, errors: bool | None = None,
              backend: Any = "auto") -> Summary:
    """One streaming pass over a :class:`~fastpoly.FunctionCounts` (memory-mapped or not).

    Parameters
    ----------
    counts : FunctionCounts
    order : {"rows", "msb"}
        String order for K_LZ.
    top : int
        How many top functions to keep.
    block : int
        Rows per block.
    target : target function or None
        For errors; default the stored target (if any).
    keep_points : int
        Also keep per-function arrays (``count``, ``sums``, and ``errors`` with a target) in
        storage order when there are at most this many functions (for figures that draw
        every function).
    errors : bool or None
        Compute generalisation errors (default: when a target is known).
    backend : str or device
        Which backend computes K_LZ, T and critical inputs per block: ``"auto"`` (Numba if
        importable, else NumPy), ``"numpy"``, ``"numba"``, ``"cupy"`` or a CUDA device interface
        (:func:`fastpoly.analysis.complexity.resolve_analysis_backend`); the summary is the same on each.

    Raises
    ------
    ValueError
        An unknown backend name (before the pass starts).
    fastpoly.backends.BackendUnavailable
        The backend cannot run here (before the pass starts).
    """
    name, dev = resolve_analysis_backend(backend)
    kind = dev if dev is not None else name
    n_bits = int(counts.n_rows)
    boolean = bool(counts.is_boolean())
    if errors is None:
        errors = target is not None or counts.meta.get("target") is not None
    tkey = None
    n_test = 0
    if errors:
        tgt = _target_of(counts, target)
        kr = counts.key_rows()
        n_test = int(kr.size)
        tkey = pack_bits(tgt[kr].astype(bool))
    tally = _Tally(n_bits, boolean, n_test if errors else None, tkey)
    keep = keep_points and counts.n_distinct <= keep_points
    pts: dict[str, list[np.ndarray]] = {"count": [], "sums": [], "errors": []}
    for a, (keys, cnt) in iter_columns(counts, ("keys", "counts"), block):
        cnt = np.asarray(cnt, np.int64)
        keys = np.asarray(keys, np.uint64)
        ci = complexity_ints(full_keys_block(counts, keys), n_bits, boolean=boolean, order=order, backend=kind)
        e = tally.add(a, cnt, ci, keys)
        if keep:
            pts["count"].append(cnt)
            pts["sums"].append(ci["sums"])
            if e is not None:
                pts["errors"].append(e)
    points = None
    if keep:
        points = {k: (np.concatenate(v) if v else np.zeros(0, np.int64)) for k, v in pts.items() if v or k != "errors"}
    return Summary(
        n_samples=int(counts.n_samples), n_accepted=int(counts.n_accepted), n_distinct=int(counts.n_distinct),
        n_bits=n_bits, order=order, boolean=boolean, count_sum_table=tally.count_sum_table(),
        ones_weight=tally.ones_w, crit_weight=tally.crit_w, max_count=tally.max_count, max_first=tally.max_first,
        top=top_indices(counts, top, block) if top else np.zeros(0, np.int64),
        n_test=n_test, error_table=tally.error_table(), error_weight=tally.err_w, points=points,
    )


def _unshift(t: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c, s1, m = t
    return c, s1 - 1, m


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).sum(axis=1, dtype=np.int64)
    by = np.ascontiguousarray(x.astype("<u8")).view(np.uint8).reshape(x.shape[0], -1)
    return np.unpackbits(by, axis=1).sum(axis=1, dtype=np.int64)


def rank_points(values: np.ndarray, mult: np.ndarray, max_points: int,
                per_decade: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Ranks and counts of the rank-frequency plot from the histogram of counts.

    Every rank when there are at most ``max_points`` functions (exactly the sorted counts);
    otherwise, for each run of equal counts, ranks spaced ``per_decade`` to a decade on the log
    axis plus both ends of the run (the same picture at any resolution).
    """
    v = np.asarray(values, np.int64)[::-1]
    m = np.asarray(mult, np.int64)[::-1]
    total = int(m.sum())
    if total <= max_points:
        return np.arange(1, total + 1), np.repeat(v, m)
    start = np.cumsum(m) - m + 1
    rs, cs = [], []
    for r0, mm, c in zip(start, m, v):
        r1 = r0 + mm - 1
        if mm <= 2:
            r = np.arange(r0, r1 + 1)
        else:
            npts = int(min(mm, math.ceil(math.log10(r1 / r0) * per_decade) + 2))
            r = np.unique(np.rint(np.geomspace(r0, r1, npts)).astype(np.int64))
        rs.append(r)
        cs.append(np.full(r.size, c, np.int64))
    return np.concatenate(rs), np.concatenate(cs)


def table_points(a: np.ndarray, b: np.ndarray, mult: np.ndarray, cap: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Scatter points of a 2-D histogram: each distinct pair ``min(mult, cap)`` times.

    Drawn with transparency (alpha 0.5), a pair drawn ``cap`` times is as dark as one drawn more
    often, also on the antialiased rim of the marker (coverage 0.1: within 4%), so the figure
    looks the same as one point per function.
    """
    rep = np.minimum(np.asarray(mult, np.int64), cap)
    return np.repeat(a, rep), np.repeat(b, rep)

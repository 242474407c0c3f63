"""Compare two function distributions over the same test rows (P_SGD vs P_B, or any two counts).

:func:`compare` gives the table of functions with both probabilities,
intervals and test errors, Pearson and Spearman correlations of log P (over
functions seen at least ``k`` times in both, and the anchors' variant where a
function missing from one side gets count 1), the top-k overlap and the
probability mass by number of test errors.  :func:`plot_compare` draws the
log-log scatter of the paper, coloured by test errors, with the diagonal.

Both take counts objects (:class:`~fastpoly.FunctionCounts`); :func:`fastpoly.sgd.compare`
and :func:`fastpoly.sgd.plot_compare` also take counts file paths (they load them).  Files
are written only through :mod:`fastpoly.atomic` and :mod:`fastpoly.plotting`.
"""
from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field

import numpy as np

from fastpoly import plotting
from fastpoly.analysis.conditioning import parse_target
from fastpoly.analysis.stats import check_confidence, wilson_interval
from fastpoly.analysis.wording import few_points_caveat, wording
from fastpoly.atomic import atomic_open
from fastpoly.keys import key_to_hex, pack_bits, sort_order

__all__ = ["Comparison", "compare", "plot_compare", "side_names"]


def _check_counts(x):
    if not all(hasattr(x, a) for a in ("keys", "counts", "n_accepted", "meta")):
        raise ValueError(f"expected counts (a FunctionCounts), got {type(x).__name__}; "  # noqa: TRY004
                         "fastpoly.sgd.compare also takes counts file paths")
    return x


def _check_same_rows(a, b):
    if a.n_rows != b.n_rows:
        raise ValueError(f"the two counts cover different inputs ({a.n_rows} vs {b.n_rows} rows)")
    da, db = a.meta.get("inputs_digest"), b.meta.get("inputs_digest")
    if da and db and da != db:
        raise ValueError("the two counts were computed on different input matrices X")
    ka, kb = a.key_rows(), b.key_rows()
    if not np.array_equal(ka, kb):
        raise ValueError("the two counts are keyed on different test rows (different train sets); "
                         "compare needs the same S")
    la = dict(zip(a.meta.get("train_rows") or [], a.meta.get("train_labels") or []))
    lb = dict(zip(b.meta.get("train_rows") or [], b.meta.get("train_labels") or []))
    if la != lb:
        raise ValueError("the two counts have different train labels on the same rows")


def _ranks(x):
    """Average ranks (ties share the mean rank), as scipy.stats.rankdata."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    r = np.empty(x.size, np.float64)
    n = x.size
    new = np.ones(n + 1, bool)
    new[1:n] = xs[1:] != xs[:-1]
    starts = np.flatnonzero(new)
    for s, e in itertools.pairwise(starts):
        r[order[s:e]] = 0.5 * (s + e - 1) + 1
    return r


def _pearson(x, y):
    if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def _popcount(keys):
    by = np.ascontiguousarray(keys.astype("<u8")).view(np.uint8).reshape(keys.shape[0], -1)
    return np.unpackbits(by, axis=1).sum(axis=1).astype(np.int64)


@dataclass
class Comparison:
    """The result of :func:`compare` (``a`` and ``b`` name the two sides)."""

    names: tuple
    keys: np.ndarray
    hex: list
    count_a: np.ndarray
    count_b: np.ndarray
    p_a: np.ndarray
    p_b: np.ndarray
    lo_a: np.ndarray
    hi_a: np.ndarray
    lo_b: np.ndarray
    hi_b: np.ndarray
    errors: np.ndarray | None
    n_a: int
    n_b: int
    k: int
    pearson: float
    spearman: float
    n_common: int
    pearson_anchor: float
    spearman_anchor: float
    n_union: int
    top: int
    top_overlap: float
    mass_by_errors: dict = field(default_factory=dict)

    def order(self):
        """Functions by decreasing ``max(P_a, P_b)`` (ties by key)."""
        return np.lexsort((np.arange(self.p_a.size), -np.maximum(self.p_a, self.p_b)))

    def rows(self, n=20):
        """The top ``n`` functions as dicts."""
        out = []
        for i in self.order()[:n]:
            out.append({"key": self.hex[i], "count_a": int(self.count_a[i]), "count_b": int(self.count_b[i]),
                        "p_a": float(self.p_a[i]), "lo_a": float(self.lo_a[i]), "hi_a": float(self.hi_a[i]),
                        "p_b": float(self.p_b[i]), "lo_b": float(self.lo_b[i]), "hi_b": float(self.hi_b[i]),
                        "errors": None if self.errors is None else int(self.errors[i])})
        return out

    def neighbours(self, n_errors=1):
        """Functions with ``n_errors`` test errors, by decreasing ``P_a + P_b``."""
        if self.errors is None:
            return []
        sel = np.flatnonzero(self.errors == n_errors)
        sel = sel[np.lexsort((sel, -(self.p_a[sel] + self.p_b[sel])))]
        return [{"key": self.hex[i], "p_a": float(self.p_a[i]), "p_b": float(self.p_b[i]),
                 "count_a": int(self.count_a[i]), "count_b": int(self.count_b[i])} for i in sel]

    def summary(self):
        """Scalar results as a JSON-serialisable dict."""
        return {"names": list(self.names), "n_a": self.n_a, "n_b": self.n_b, "distinct_union": int(self.p_a.size),
                "k": self.k, "pearson_logp": self.pearson, "spearman_logp": self.spearman,
                "n_common": self.n_common, "pearson_logp_anchor": self.pearson_anchor,
                "spearman_logp_anchor": self.spearman_anchor, "n_union_anchor": self.n_union,
                "top": self.top, "top_overlap": self.top_overlap,
                "mass_by_errors": {str(e): v for e, v in self.mass_by_errors.items()}}

    def to_text(self, n=20):
        """The comparison as a plain-text report (summary and the top ``n`` functions)."""
        a, b = self.names
        s = self.summary()
        pa = a.split("(")[0] if a.startswith("P") else "P_" + a
        pb = b.split("(")[0] if b.startswith("P") else "P_" + b
        lines = [(f"{a}: {self.n_a:,} fitted runs/samples   {b}: {self.n_b:,}   distinct functions (union): "
                  f"{s['distinct_union']:,}"),
                 (f"log P correlation over {self.n_common} functions seen >= {self.k} times in both: "
                  f"Pearson {self.pearson:.4f}, Spearman {self.spearman:.4f}{few_points_caveat(self.n_common)}"),
                 (f"anchors' variant (missing -> count 1) over {self.n_union} functions seen >= {self.k} times in "
                  f"either: Pearson {self.pearson_anchor:.4f}, Spearman {self.spearman_anchor:.4f}"
                  f"{few_points_caveat(self.n_union)}"),
                 f"top-{self.top} overlap: {self.top_overlap:.3f}"]
        if self.mass_by_errors:
            lines.append("probability mass by number of test errors (" + a + " / " + b + "):")
            for e, (ma, mb) in sorted(self.mass_by_errors.items()):
                if ma > 0 or mb > 0:
                    lines.append(f"  {e:3d}  {ma:.5f}  {mb:.5f}")
        lines.append("")
        lines.append(f"{'key (hex, bit i = i-th test row)':<34} {'err':>3}  {pa:>10} {'95% interval':>21}  "
                     f"{pb:>10} {'95% interval':>21}")
        for r in self.rows(n):
            e = "-" if r["errors"] is None else str(r["errors"])
            lines.append(f"{r['key']:<34} {e:>3}  {r['p_a']:10.3e} [{r['lo_a']:.2e}, {r['hi_a']:.2e}]  "
                         f"{r['p_b']:10.3e} [{r['lo_b']:.2e}, {r['hi_b']:.2e}]")
        nb = self.neighbours(1)
        if nb:
            lines.append("")
            lines.append("1-error neighbours of the target:")
            for r in nb[:10]:
                lines.append(f"  {r['key']}  {pa} {r['p_a']:.3e} ({r['count_a']})  {pb} {r['p_b']:.3e} ({r['count_b']})")
        return "\n".join(lines)

    def save_table(self, path):
        """All functions as CSV (key, errors, counts, probabilities, intervals)."""
        with atomic_open(path, "w") as fh:
            fh.write("key,errors,count_a,p_a,lo_a,hi_a,count_b,p_b,lo_b,hi_b\n")
            for i in self.order():
                e = "" if self.errors is None else int(self.errors[i])
                fh.write(f"{self.hex[i]},{e},{self.count_a[i]},{self.p_a[i]:.6e},{self.lo_a[i]:.6e},"
                         f"{self.hi_a[i]:.6e},{self.count_b[i]},{self.p_b[i]:.6e},{self.lo_b[i]:.6e},"
                         f"{self.hi_b[i]:.6e}\n")
        return path

    def save_json(self, path):
        """Write the summary and the top functions as JSON (atomically)."""
        d = self.summary()
        d["top_functions"] = self.rows(50)
        d["one_error_neighbours"] = self.neighbours(1)[:50]
        with atomic_open(path, "w") as fh:
            json.dump(d, fh, indent=1)
        return path


def compare(a, b, k=2, target=None, top=10, names=("a", "b"), confidence=0.95) -> Comparison:
    """Compare two counts over the same test rows (e.g. P_SGD and P_B).

    Parameters
    ----------
    a, b : FunctionCounts
        Results keyed on the same test rows (same inputs and train set); refused otherwise.
    k : int
        Correlations use functions seen at least ``k`` times in both (and, for the
        anchors' variant, at least ``k`` times in either, a missing one counting 1).
    target : target function or None
        Full target (see :func:`fastpoly.analysis.conditioning.parse_target`); default the
        ``target`` stored in either file's metadata.  Gives test errors.
    top : int
        Size of the top lists whose overlap is reported.
    names : (str, str)
        Labels of the two sides.
    confidence : float
        Wilson interval level.

    Raises
    ------
    ValueError
        Different inputs, test rows or train labels; no fitted samples on a side.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise ValueError(f"top must be a positive integer, got {top!r}")
    confidence = check_confidence(confidence)
    if not (isinstance(names, (tuple, list)) and len(names) == 2 and all(isinstance(x, str) for x in names)):
        raise ValueError(f"names must be two strings, got {names!r}")
    a, b = _check_counts(a), _check_counts(b)
    _check_same_rows(a, b)
    if a.n_accepted == 0 or b.n_accepted == 0:
        raise ValueError("both counts need at least one accepted sample / fitted run")
    keys = np.concatenate([np.asarray(a.keys), np.asarray(b.keys)])
    order = sort_order(keys) if keys.shape[0] else np.zeros(0, np.int64)
    keys = keys[order]
    new = np.ones(keys.shape[0], bool)
    new[1:] = np.any(keys[1:] != keys[:-1], axis=1)
    uk = np.ascontiguousarray(keys[new])
    ca = _lookup(uk, a)
    cb = _lookup(uk, b)
    pa, pb = ca / a.n_accepted, cb / b.n_accepted
    loa, hia = wilson_interval(ca, a.n_accepted, confidence)
    lob, hib = wilson_interval(cb, b.n_accepted, confidence)
    nbits = a.n_key_bits
    errors = None
    tgt = target if target is not None else (a.meta.get("target") or b.meta.get("target"))
    if tgt is not None:
        t = parse_target(tgt, a.n_rows)
        tk = pack_bits(t[a.key_rows()].astype(bool))
        errors = _popcount(np.bitwise_xor(uk, tk[None, :]))
    both = (ca >= k) & (cb >= k)
    la, lb = np.log(np.maximum(ca, 1) / a.n_accepted), np.log(np.maximum(cb, 1) / b.n_accepted)
    either = (ca >= k) | (cb >= k)
    ta = set(np.lexsort((np.arange(uk.shape[0]), -ca))[:top].tolist())
    tb = set(np.lexsort((np.arange(uk.shape[0]), -cb))[:top].tolist())
    ta = {i for i in ta if ca[i] > 0}
    tb = {i for i in tb if cb[i] > 0}
    mass = {}
    if errors is not None:
        for e in range(nbits + 1):
            sel = errors == e
            if np.any(sel):
                mass[e] = (float(pa[sel].sum()), float(pb[sel].sum()))
    return Comparison(
        tuple(names), uk, [key_to_hex(x, nbits) for x in uk], ca, cb, pa, pb,
        np.asarray(loa, float), np.asarray(hia, float), np.asarray(lob, float), np.asarray(hib, float), errors,
        a.n_accepted, b.n_accepted, int(k),
        _pearson(la[both], lb[both]), _pearson(_ranks(la[both]), _ranks(lb[both])), int(both.sum()),
        _pearson(la[either], lb[either]), _pearson(_ranks(la[either]), _ranks(lb[either])), int(either.sum()),
        int(top), len(ta & tb) / max(1, min(top, max(len(ta), len(tb)))), mass,
    )


def _lookup(uk, c):
    """Counts of the union keys ``uk`` (sorted) in ``c`` (0 where missing)."""
    out = np.zeros(uk.shape[0], np.int64)
    ck = np.asarray(c.keys)
    if ck.shape[0] == 0:
        return out
    # both sorted as big integers: walk with a structured view for searchsorted
    W = uk.shape[1]
    dt = np.dtype([(f"w{i}", "<u8") for i in range(W - 1, -1, -1)])
    a = np.ascontiguousarray(uk[:, ::-1]).view(dt).reshape(-1)
    b = np.ascontiguousarray(ck[:, ::-1]).view(dt).reshape(-1)
    pos = np.searchsorted(b, a)
    pos = np.minimum(pos, b.size - 1)
    hit = b[pos] == a
    out[hit] = np.asarray(c.counts)[pos[hit]]
    return out


def side_names(a, b, labels=None):
    """Names of two results for tables and axes, from their metadata (e.g. ``P_SGD(f|S)``, ``P_B(f|S)``).

    Two results of the same estimator are told apart by ``labels`` (e.g. their file names).
    """
    a, b = _check_counts(a), _check_counts(b)
    qa, qb = wording(a.meta).quantity, wording(b.meta).quantity
    if qa == qb:
        la, lb = labels if labels is not None else ("a", "b")
        return f"{qa} [{la}]", f"{qb} [{lb}]"
    return qa, qb


def plot_compare(a, b, out="compare.png", k=1, target=None, names=None, title=None):
    """Log-log scatter of ``P_a`` vs ``P_b`` coloured by test errors, with the diagonal (the paper's figure).

    Functions seen at least ``k`` times in either are drawn; one missing from a side
    is drawn at count 1 (open marker).  The title gives the Pearson correlation of log P over
    the functions seen at least ``k`` times in both (as :func:`compare` with the same ``k``),
    with a caveat under 10 functions.  ``names`` label the axes; default from the files'
    metadata (:func:`side_names`).  Returns the output path.
    """
    plotting.check_figure_path(out)
    a, b = _check_counts(a), _check_counts(b)
    if names is None:
        names = side_names(a, b)
    plt = plotting.pyplot()
    c = compare(a, b, k=k, target=target, names=names)
    sel = (c.count_a >= k) | (c.count_b >= k)
    na, nb = c.n_a, c.n_b
    x = np.maximum(c.count_a, 1) / na
    y = np.maximum(c.count_b, 1) / nb
    fig, ax = plt.subplots(figsize=(5.5, 5.3))
    full = sel & (c.count_a > 0) & (c.count_b > 0)
    miss = sel & ~full
    err = c.errors if c.errors is not None else np.zeros(x.size, int)
    vmax = max(1, int(err[sel].max()) if np.any(sel) else 1)
    sc = ax.scatter(x[full], y[full], c=err[full], cmap="viridis", vmin=0, vmax=vmax, s=14, zorder=3)
    lo = min(x[sel].min(), y[sel].min()) if np.any(sel) else 1e-6
    ax.plot([lo / 2, 1], [lo / 2, 1], "k--", lw=0.8, zorder=1, label="diagonal (equal probabilities)")
    if np.any(miss):
        ax.scatter(x[miss], y[miss], facecolors="none", edgecolors=plt.cm.viridis(err[miss] / vmax), s=14,
                   linewidths=0.7, zorder=2, label="missing on one side (count 1)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    ax.set_xscale("log")
    ax.set_yscale("log")
    wa, wb = wording(a.meta), wording(b.meta)
    ax.set_xlabel(f"{names[0]}  (n = {na:,} {wa.accepted})")
    ax.set_ylabel(f"{names[1]}  (n = {nb:,} {wb.accepted})")
    if c.errors is not None:
        fig.colorbar(sc, ax=ax, label="test errors")
    ax.set_title(title or (f"Pearson log P = {c.pearson:.3f} over {c.n_common} functions seen >= {k} times in "
                           f"both{few_points_caveat(c.n_common)}"), fontsize=9)
    return plotting.save_figure(fig, os.fspath(out), dpi=130)

"""Figures of sampling results (matplotlib, Agg backend; PNG or PDF by file suffix).

Every figure is drawn from exact histograms built in one streaming pass over the (memory-mapped)
counts (:mod:`fastpoly.analysis.histograms`), so memory does not grow with the number of
functions.  Up to ``max_points`` functions, the points drawn are exactly one per function, in
storage order (the figures of fastpoly 0.1); beyond, each distinct point is drawn a bounded
number of times (the same picture: identical positions, saturated transparency).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from fastpoly.analysis.histograms import count_histogram, rank_points, summarize, table_points
from fastpoly.analysis.stats import interval
from fastpoly.analysis.wording import title, wording
from fastpoly.plotting import pyplot, save_figure

__all__ = ["plot_rank", "plot_complexity", "plot_ones", "plot_error", "upper_bound_fit", "MAX_POINTS"]

#: up to this many functions, figures draw one point per function (as fastpoly 0.1 did)
MAX_POINTS = 1_000_000


def _check_counts(counts):
    # duck-typed (this room sits below counts/); never touch .counts here: on a lazily loaded
    # compressed file that would decode the whole file
    if not hasattr(counts, "iter_blocks") or not hasattr(counts, "n_accepted"):
        raise ValueError(
            f"expected a FunctionCounts (load a file with FunctionCounts.load), got {type(counts).__name__}"
        )
    return counts


def plot_rank(counts: Any, out: str | os.PathLike[str] = "rank.png", max_points: int = MAX_POINTS) -> str:
    """Rank-frequency plot on log-log axes with Zipf's law ``P = 1/(rank ln 2^m)`` for reference.

    Parameters
    ----------
    counts : FunctionCounts
    out : path (.png or .pdf)
    max_points : int
        Beyond this many functions, ranks are drawn log-spaced within runs of equal counts.

    Returns
    -------
    str
        The path written.
    """
    c = _check_counts(counts)
    plt = pyplot()
    r, cnt = rank_points(*count_histogram(c), max_points=max_points)
    p = cnt / max(c.n_accepted, 1)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    if p.size:
        ax.loglog(r, p, ".", ms=3, label="sampled functions")
        # Zipf's law normalised over all 2^m functions of m key bits (Valle-Perez et al. 2019):
        # P(r) = 1 / (r ln 2^m)
        m = max(int(c.n_key_bits), 1)
        ax.loglog(r, 1.0 / (r * m * np.log(2.0)), "--", lw=1, color="gray",
                  label=rf"Zipf $1/(\mathrm{{rank}}\,\ln 2^{{{m}}})$")
    ax.set_xlabel("rank")
    ax.set_ylabel(wording(c.meta).quantity_tex)
    ax.set_title(_title(c), fontsize=9)
    if p.size:
        _legend_outside(ax)
    return save_figure(fig, out)


def _title(c, extra=""):
    return title(c.meta, c.n_accepted, extra)


def _legend_outside(ax, ncol=1):
    """The legend below the axes, outside the data."""
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=ncol, frameon=False)


def upper_bound_fit(klz, logp, counts=None, min_count=5, n_bins=20):
    """Fit ``log10 P <= a + b K`` to the upper envelope of (K, log10 P).

    The envelope is the largest ``log10 P`` in each of ``n_bins`` K bins, using
    only functions seen at least ``min_count`` times when ``counts`` is given
    (rarer ones sit on the sampling floor 1/n and would flatten the fit); the
    line is the least-squares fit to those maxima, shifted up so that every
    point used lies on or below it (the simplicity-bias bound of Dingle et al.).

    Returns
    -------
    (a, b) : float
        Intercept and slope of ``log10 P = a + b K`` (``b`` is usually negative);
        ``(nan, nan)`` with fewer than two distinct K values.
    """
    klz = np.asarray(klz, np.float64)
    logp = np.asarray(logp, np.float64)
    use = np.ones(klz.shape, bool)
    if counts is not None:
        well = np.asarray(counts) >= min_count
        if np.unique(klz[well]).size >= 2:
            use = well
    k, lp = klz[use], logp[use]
    if np.unique(k).size < 2:
        return float("nan"), float("nan")
    edges = np.linspace(k.min(), k.max(), n_bins + 1)
    which = np.clip(np.searchsorted(edges, k, side="right") - 1, 0, n_bins - 1)
    xs, ys = [], []
    for j in np.unique(which):
        sel = which == j
        i = np.argmax(lp[sel])
        xs.append(k[sel][i])
        ys.append(lp[sel][i])
    if np.unique(xs).size < 2:
        return float("nan"), float("nan")
    b, a = np.polyfit(xs, ys, 1)
    a = a + max(0.0, float(np.max(lp - (a + b * k))))
    return float(a), float(b)


def plot_complexity(counts: Any, out: str | os.PathLike[str] = "complexity.png", order: str = "rows",
                    max_points: int = MAX_POINTS, backend: Any = "auto") -> str:
    """P(f) against K_LZ (log scale), with the fitted upper-bound line.

    Parameters
    ----------
    counts : FunctionCounts
    out : path (.png or .pdf)
    order : {"rows", "msb"}
        String order for K_LZ (see :func:`fastpoly.analysis.complexity.klz`).
    max_points : int
        Beyond this many functions, each distinct (K_LZ, P) point is drawn at most 8 times.
    backend : str or device
        Backend of the K_LZ pass (see :func:`fastpoly.analysis.histograms.summarize`).

    Returns
    -------
    str
    """
    c = _check_counts(counts)
    wd = wording(c.meta)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.6))
    if c.n_distinct:
        sm = summarize(c, order=order, top=0, keep_points=max_points, errors=False, backend=backend)
        if sm.points is not None:
            k, cnt = sm.klz_of(sm.points["sums"]), sm.points["count"]
        else:
            cc, ss, mm = sm.count_sum_table
            cnt, k = table_points(cc, sm.klz_of(ss), mm)
        p = cnt / c.n_accepted
        # the functions are drawn above the bound line, so the constant functions stay visible
        ax.scatter(k, p, s=4, alpha=0.5, lw=0, label="counted functions", zorder=3)
        a, b = sm.bound()
        basis, k0, k1 = sm.bound_support()
        if np.isfinite(a):
            # the line only over the K_LZ range it was fitted on (no extrapolation)
            xs = np.linspace(k0, k1, 50)
            ax.plot(xs, 10 ** (a + b * xs), "--", color="gray", lw=1, zorder=2,
                    label=rf"bound $\log_{{10}}P = {a:.2f} {b:+.3f}\,K$ ({basis})")
        ax.set_yscale("log")
        ax.axhline(1 / c.n_accepted, color="lightgray", lw=0.8, zorder=0, label=f"1/n (one {wd.accepted[:-1]})")
    ax.set_xlabel(r"$K_{LZ}(f)$")
    ax.set_ylabel(wd.quantity_tex)
    ax.set_title(_title(c), fontsize=9)
    if c.n_distinct:
        _legend_outside(ax)
    return save_figure(fig, out)


def plot_ones(counts: Any, out: str | os.PathLike[str] = "ones.png", backend: Any = "auto") -> str:
    """P(T): probability that a function has T ones, T = 0..n (log y axis).

    ``backend``: of the streaming pass (see :func:`fastpoly.analysis.histograms.summarize`).

    Returns
    -------
    str
    """
    c = _check_counts(counts)
    plt = pyplot()
    n = c.n_rows
    pt = summarize(c, top=0, errors=False, backend=backend).ones_weight / max(c.n_accepted, 1)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    nz = pt > 0
    ax.bar(np.arange(n + 1)[nz], pt[nz], width=1.0, color="C0")
    ax.set_yscale("log")
    ax.set_xlim(-1, n + 1)
    ax.set_xlabel("T (number of ones)")
    ax.set_ylabel(f"P(T) under {wording(c.meta).quantity}")
    ax.set_title(_title(c), fontsize=9)
    return save_figure(fig, out)


def plot_error(counts: Any, out: str | os.PathLike[str] = "error.png", target: Any = None,
               max_points: int = MAX_POINTS, backend: Any = "auto") -> str:
    """Generalisation error: posterior histogram and P_B(f|S) against error.

    Needs a target function: stored by ``fastpoly sample --target`` /
    ``fastpoly condition`` / ``counts.condition(..., target=...)``, or passed here.
    For unconditioned counts with a target the "error" is over all rows.  ``backend``: of the
    streaming pass (see :func:`fastpoly.analysis.histograms.summarize`).

    Returns
    -------
    str
    """
    c = _check_counts(counts)
    if target is None and c.meta.get("target") is None:
        raise ValueError(
            "the error plot needs a target function: use a conditioned run made with --target "
            "(fastpoly sample --train-size K --target T, or fastpoly condition COUNTS --target T --train-size K)"
        )
    sm = summarize(c, top=0, target=target, keep_points=max_points, errors=True, backend=backend)
    assert sm.error_weight is not None and sm.error_table is not None
    n_test = sm.n_test
    ev = np.arange(n_test + 1) / n_test
    eh = sm.error_weight / c.n_accepted if c.n_accepted else sm.error_weight.astype(np.float64)
    mean_error = sm.mean_error()
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.8))
    nz = eh > 0
    w = (ev[1] - ev[0]) if ev.size > 1 else 0.02
    ax1.bar(ev[nz], eh[nz], width=w, color="C0")
    wd = wording(c.meta)
    ax1.axvline(mean_error, color="C3", lw=1, label=f"mean {mean_error:.3f}")
    ax1.set_xlabel("generalisation error (held-out rows)")
    ax1.set_ylabel(f"probability under {wd.quantity_tex}")
    _legend_outside(ax1)
    if c.n_distinct:
        if sm.points is not None:
            e, cnt = sm.points["errors"], sm.points["count"]
        else:
            e, cnt = table_points(*sm.error_table)
        n = c.n_accepted
        p = cnt / n if n else np.full(cnt.size, np.nan)
        lo, hi = interval(cnt, n, 0.95, "wilson")
        yerr = np.vstack([p - lo, hi - p])
        ax2.errorbar(e / float(n_test), p, yerr=yerr, fmt=".", ms=3, lw=0.5, alpha=0.6)
        ax2.set_yscale("log")
    ax2.set_xlabel("generalisation error")
    ax2.set_ylabel(wd.quantity_tex)
    extra = ""
    if wd.rate_name and c.n_samples:
        lo, hi = interval(c.n_accepted, c.n_samples, 0.95, "wilson")
        p_s = c.n_accepted / c.n_samples
        extra = f"  {wd.rate_name}={p_s:.3g} [{float(lo):.2g}, {float(hi):.2g}]"
    fig.suptitle(_title(c, extra), fontsize=9)
    return save_figure(fig, out)

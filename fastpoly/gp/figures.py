"""Figure: log P_B^GP(f|S) against the rejection-sampled log P_B(f|S) for the same functions."""
from __future__ import annotations

import math
import os

import numpy as np

from fastpoly.analysis.conditioning import generalization_error
from fastpoly.analysis.stats import wilson_interval
from fastpoly.counts import FunctionCounts
from fastpoly.gp.bayes import GPPosterior
from fastpoly.keys import sort_order

__all__ = ["match_exact", "plot_vs_exact"]


def match_exact(counts: FunctionCounts, table: GPPosterior) -> dict:
    """Pair the functions of a GP table with their rejection-sampled counts.

    Returns
    -------
    dict of arrays (one entry per function of ``table`` found in ``counts``)
        ``log10_gp``, ``log10_gp_err`` (1 standard error), ``log10_exact``,
        ``log10_lo``, ``log10_hi`` (95% Wilson interval), ``count``, ``error``
        (generalisation error when the counts know the target, else nan), ``index``
        (row in ``table``).
    """
    if counts.n_key_bits != table.n_key_bits:
        raise ValueError("the counts and the GP table cover different rows")
    order = sort_order(counts.keys)
    ck = np.ascontiguousarray(counts.keys[order])
    hits: list[int] = []
    found: list[int] = []
    for i in range(len(table)):
        hit = np.flatnonzero(np.all(ck == table.keys[i][None, :], axis=1))
        if hit.size:
            hits.append(i)
            found.append(int(counts.counts[order[hit[0]]]))
    idx = np.asarray(hits, np.int64)
    cnt = np.asarray(found, np.int64)
    n = counts.n_accepted
    lo, hi = wilson_interval(cnt, n)
    try:
        err_all = generalization_error(counts)
        err = np.array([err_all[order[np.flatnonzero(np.all(ck == table.keys[i][None, :], axis=1))[0]]]
                        for i in idx]) if idx.size else np.zeros(0)
    except ValueError:
        err = np.full(idx.size, np.nan)
    ln10 = math.log(10.0)
    se = table.stderr[idx]
    return {
        "index": idx,
        "count": cnt,
        "log10_gp": table.log_p[idx] / ln10,
        "log10_gp_err": np.where(np.isfinite(se), se, 0.0) / ln10,
        "log10_exact": np.log10(cnt / n),
        "log10_lo": np.log10(np.maximum(lo, 1e-300)),
        "log10_hi": np.log10(hi),
        "error": err,
    }


def plot_vs_exact(counts: FunctionCounts, table: GPPosterior, path: str | os.PathLike = "gp_vs_exact.png",
                  title: str | None = None) -> str:
    """Scatter ``log10 P_B^GP(f|S)`` (y) against ``log10 P_B(f|S)`` by rejection (x).

    Parameters
    ----------
    counts : FunctionCounts
        A conditioned (rejection-sampled) result.
    table : GPPosterior
        GP posterior of (some of) its functions, e.g. ``gp.posterior(arch, X, functions=top_keys)``.
    path : path
        Output file (.png or .pdf).
    title : str or None

    Returns
    -------
    str
        The path written.  Points are coloured by generalisation error when the
        counts know the target; error bars: 95% Wilson interval (x), 2 standard errors (y).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = match_exact(counts, table)
    if d["index"].size == 0:
        raise ValueError("none of the table's functions occur in the counts")
    fig, ax = plt.subplots(figsize=(5.2, 4.6), dpi=120)
    x, y = d["log10_exact"], d["log10_gp"]
    xerr = np.vstack([x - d["log10_lo"], d["log10_hi"] - x])
    ax.errorbar(x, y, xerr=xerr, yerr=2 * d["log10_gp_err"], fmt="none", ecolor="0.7", lw=0.8, zorder=1)
    c = d["error"]
    if np.all(np.isfinite(c)):
        sc = ax.scatter(x, y, c=c, cmap="viridis", s=18, zorder=2)
        fig.colorbar(sc, ax=ax, label="generalisation error")
    else:
        ax.scatter(x, y, s=18, zorder=2)
    lo = float(min(np.min(x), np.min(y))) - 0.3
    hi = float(max(np.max(x), np.max(y))) + 0.3
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="y = x")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel(r"$\log_{10} P_B(f|S)$, rejection sampling")
    ax.set_ylabel(rf"$\log_{{10}} P_B^{{GP}}(f|S)$ ({table.method})")
    ax.set_title(title or f"{counts.meta.get('arch', {}).get('widths')}: GP vs exact, "
                 f"{len(counts.meta.get('train_rows', []))} train rows", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = os.fspath(path)
    fig.savefig(path)
    plt.close(fig)
    return path

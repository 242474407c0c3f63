"""Figures of sampling results (matplotlib, Agg backend; PNG or PDF by file suffix)."""
from __future__ import annotations

import os

import numpy as np

__all__ = ["plot_rank"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _load(counts):
    from .counts import FunctionCounts

    return counts if isinstance(counts, FunctionCounts) else FunctionCounts.load(counts)


def plot_rank(counts, out="rank.png"):
    """Rank-frequency plot on log-log axes with a Zipf reference line ``P ~ 1/rank``.

    Parameters
    ----------
    counts : FunctionCounts or path
    out : path (.png or .pdf)

    Returns
    -------
    str
        The path written.
    """
    c = _load(counts)
    plt = _plt()
    p = np.sort(c.counts)[::-1] / max(c.n_accepted, 1)
    r = np.arange(1, p.size + 1)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    if p.size:
        ax.loglog(r, p, ".", ms=3, label="sampled functions")
        # Zipf reference through the top-ranked non-constant region: P(r) = P(1) / r
        ax.loglog(r, p[0] / r, "--", lw=1, color="gray", label=r"Zipf $\propto 1/\mathrm{rank}$")
    widths = c.meta.get("arch", {}).get("widths")
    ax.set_xlabel("rank")
    ax.set_ylabel("P(f)")
    ax.set_title(f"{'-'.join(map(str, widths)) if widths else ''}  n={c.n_accepted:,}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return os.fspath(out)

"""Figures: multiplication-gate error vs lambda, and shallow vs deep neuron counts.

Matplotlib (Agg backend) is imported inside the functions; the output format
(PNG or PDF) follows the file suffix.
"""
from __future__ import annotations

import numpy as np

from fastpoly.plotting import check_figure_path, pyplot, save_figure
from fastpoly.poly.gates import multiply, neuron_counts

__all__ = ["plot_gate_error", "plot_shallow_vs_deep", "gate_error_curve"]


def gate_error_curve(lams, dtype, activation="softplus", n_points=4000, seed=0):
    """Measured max ``|m(u,v) - uv|`` of the compiled softplus gate on ``[-1,1]^2`` for each lambda."""
    g = np.random.default_rng(seed)
    X = g.uniform(-1, 1, (n_points, 2))
    X = np.vstack([X, [[1, 1], [1, -1], [-1, 1], [-1, -1]]])
    ref = X[:, 0] * X[:, 1]
    errs, bounds = [], []
    for lam in lams:
        net = multiply(activation, lam=float(lam), bias="paper", dtype=dtype)
        errs.append(float(np.max(np.abs(net(X) - ref))))
        bounds.append(net.report().certified_error)
    return np.array(errs), np.array(bounds)


def plot_gate_error(path="gate_error.png"):
    """Error vs lambda of the softplus multiplication gate in float32 and float64 (log-log).

    Shows the measured max error, the certified bound, the lambda^2 truncation slope,
    the 1/lambda^2 rounding slope and the lambda chosen by ``lam="auto"``.

    Returns
    -------
    str
        The path written.
    """
    path = check_figure_path(path)

    plt = pyplot()
    lams = np.logspace(-6, 0, 49)
    fig, ax = plt.subplots(figsize=(7, 5))
    for dt, col in (("float64", "C0"), ("float32", "C3")):
        err, bnd = gate_error_curve(lams, dt, n_points=1000)
        ax.loglog(lams, err, "o-", ms=3, color=col, label=f"{dt}: measured max error")
        ax.loglog(lams, bnd, "--", color=col, alpha=0.6, label=f"{dt}: certified bound")
        auto = multiply(lam="auto", bias="paper", dtype=dt)
        la = auto.info["lam_min"]
        ax.axvline(la, color=col, ls=":", alpha=0.8)
        # the label sits inside the axes (x in data, y in axes coordinates), so it is never clipped
        ax.text(la, 0.03, f"auto lambda = {la:.2g} ({dt})",
                transform=ax.get_xaxis_transform(), color=col, fontsize=7, rotation=90, va="bottom", ha="right")
        eps = 2.0**-53 if dt == "float64" else 2.0**-24
        ax.loglog(lams, 4 * np.log(2) * eps / lams**2, ":", color=col, lw=1,
                  label=f"{dt}: rounding slope 1/lambda^2")
    ax.loglog(lams, lams**2 * 8 / 48, "k-.", lw=1, label="truncation slope lambda^2")
    ax.set_ylim(1e-17, 1e2)
    ax.set_xlabel("lambda")
    ax.set_ylabel("max |m(u,v) - uv| on [-1,1]^2")
    ax.set_title("softplus multiplication gate (b = 0)")
    # the legend below the axes: inside, it covered the curves
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    return save_figure(fig, path, dpi=100)


def plot_shallow_vs_deep(path="shallow_vs_deep.png"):
    """Hidden neurons of the product ``x1...xn``: shallow (``2^n``) vs tree, n = 2..20 (log y).

    Returns
    -------
    str
        The path written.
    """
    path = check_figure_path(path)

    plt = pyplot()
    ns = np.arange(2, 21)
    shallow = [neuron_counts(int(n), "shallow")[0] for n in ns]
    tree = [neuron_counts(int(n), "tree") for n in ns]
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.semilogy(ns, shallow, "o-", label="shallow: 2^n (1 hidden layer)")
    ax.semilogy(ns, [t[0] for t in tree], "s-", label="tree: gates + carries")
    ax.semilogy(ns, 4 * (ns - 1), "k:", label="4(n-1) gate neurons")
    for n, t in zip(ns, tree):
        if n in (2, 4, 8, 16, 20):
            ax.annotate(f"{t[2]} layers", (n, t[0]), textcoords="offset points", xytext=(0, 6),
                        fontsize=7, ha="center")
    ax.set_xlabel("n (number of factors)")
    ax.set_ylabel("hidden neurons")
    ax.set_title("product of n inputs: shallow vs deep (softplus)")
    ax.legend()
    return save_figure(fig, path, dpi=100)

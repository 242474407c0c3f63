"""
The Gaussian-process approximation against exact rejection sampling
====================================================================

An infinitely wide network is a Gaussian process: its function on a set of rows is the sign pattern of
``g ~ N(0, K)`` with the NNGP kernel K, so P_B(f|S) becomes an orthant probability of a 128-dimensional
Gaussian. ``fastpoly.gp`` computes them in log space (minimax exponential tilting with an honest standard
error, or expectation propagation); here the GP posterior of the functions found by rejection sampling is
set against their exact (counted) probability.
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import fastpoly
from fastpoly import gp
from fastpoly.gp.figures import plot_vs_exact
from fastpoly.sgd import anchor_train_set


def show(path):
    """Display a figure file that fastpoly wrote (its figure functions write PNG or PDF files)."""
    img = plt.imread(path)
    fig, ax = plt.subplots(figsize=(7, 7 * img.shape[0] / img.shape[1]))
    ax.imshow(img)
    ax.set_axis_off()
    fig.subplots_adjust(0, 0, 1, 1)


arch = "7-40-40-1"
rows, labels = anchor_train_set(8)
K = gp.kernel(arch)  # (128, 128) float64 NNGP kernel of the relu 7-40-40-1 network
print("kernel", K.shape, "diagonal", np.round(K[:3, :3].diagonal(), 3))

# %%
# The marginal likelihood P(S): GP (tilting and EP) against the fraction of accepted samples.
exact = fastpoly.sample(arch, None, 200_000, seed=2, train=(rows, labels), progress=False)
r = gp.log_marginal(arch, None, (rows, labels), K=K)
r_ep = gp.log_marginal(arch, None, (rows, labels), method="ep", K=K)
print(f"log P(S): GP tilting {r.log_p:.3f} ± {r.stderr:.3f}, EP {r_ep.log_p:.3f}, "
      f"exact {np.log(exact.n_accepted / exact.n_samples):.3f} ({exact.n_accepted:,} accepted)")
print(f"PAC-Bayes bound on the generalisation error: {gp.pac_bayes_bound(r.log_p, len(rows)):.3f}")

# %%
# P_B^GP of the 40 most frequent posterior functions (EP: fast, no error bar), against their counts
# (``fastpoly gp posterior --counts post.npz`` on the command line):
top = exact.top(40)
table = gp.posterior(arch, None, functions=[t["key"] for t in top], train=(rows, labels), method="ep", K=K)
with tempfile.TemporaryDirectory() as tmp:
    show(plot_vs_exact(exact, table, Path(tmp) / "gp_vs_exact.png"))

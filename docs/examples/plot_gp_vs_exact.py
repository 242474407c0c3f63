"""
The Gaussian-process approximation against exact rejection sampling
====================================================================

An infinitely wide network is a Gaussian process: its function on a set of rows is the sign pattern of
``g ~ N(0, K)`` with the NNGP kernel K, so P_B(f|S) becomes an orthant probability of a Gaussian
(128-dimensional on the inputs of 7 bits). ``fastpoly.gp`` computes them in log space (minimax exponential tilting with an honest standard
error, or expectation propagation); here the GP posterior of the functions found by rejection sampling is
set against their exact (counted) probability.

Small enough to run in seconds: 5-40-40-1 ReLU networks on the 32 Boolean inputs of 5 bits, the target
``f(i) = (i >> 1) & 1``, a train set of 8 rows, 4·10⁵ prior samples. The README's figure (7 bits, 32 train
rows, 10⁷ samples) comes from ``bench/gp_vs_exact.py`` in the repository.
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import fastpoly
from fastpoly import gp
from fastpoly.gp.figures import plot_vs_exact


def show(path):
    """Display a figure file that fastpoly wrote (its figure functions write PNG or PDF files)."""
    img = plt.imread(path)
    fig, ax = plt.subplots(figsize=(7, 7 * img.shape[0] / img.shape[1]))
    ax.imshow(img)
    ax.set_axis_off()
    fig.subplots_adjust(0, 0, 1, 1)


arch = "5-40-40-1"
target = ((np.arange(32) >> 1) & 1).astype(np.uint8)
rows = np.random.RandomState(0).choice(32, 8, replace=False)  # the train set S
labels = target[rows]
K = gp.kernel(arch)  # (32, 32) float64 NNGP kernel of the relu network on the 32 inputs
print("kernel", K.shape, "first diagonal entries", np.round(K.diagonal()[:3], 3))

# %%
# The marginal likelihood P(S): GP (tilting and EP) against the fraction of accepted samples.
exact = fastpoly.sample(arch, None, 400_000, seed=2, train=(rows, labels), progress=False)
r = gp.log_marginal(arch, None, (rows, labels), K=K)
r_ep = gp.log_marginal(arch, None, (rows, labels), method="ep", K=K)
print(f"log P(S): GP tilting {r.log_p:.3f} ± {r.stderr:.3f}, EP {r_ep.log_p:.3f}, "
      f"exact {np.log(exact.n_accepted / exact.n_samples):.3f} ({exact.n_accepted:,} accepted)")
print(f"PAC-Bayes bound on the generalisation error: {gp.pac_bayes_bound(r.log_p, len(rows)):.3f}")

# %%
# P_B^GP of the 40 most frequent posterior functions (tilting, with standard errors), against their
# counts (``fastpoly gp posterior --counts post.npz`` on the command line):
top = exact.top(40)
table = gp.posterior(arch, None, functions=[t["key"] for t in top], train=(rows, labels), K=K)
for t, lp, se in list(zip(top, table.log_p, table.stderr))[:5]:
    print(f"{t['key']}  exact {t['probability']:.4f}  GP {np.exp(lp):.4f} (log {lp:.2f} ± {se:.2f})")
with tempfile.TemporaryDirectory() as tmp:
    show(plot_vs_exact(exact, table, Path(tmp) / "gp_vs_exact.png"))

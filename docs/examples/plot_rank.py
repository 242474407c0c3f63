"""
Rank plot of the prior P(f)
===========================

Draw random 7-40-40-1 ReLU networks (weights N(0, 1/fan_in), biases N(0, 1)), evaluate each on all
128 Boolean inputs of 7 bits, and count exactly how often each Boolean function appears. Sorted by
probability, P(f) spans many orders of magnitude and roughly follows Zipf's law (Valle-Pérez et al.
2019): a few simple functions take most of the mass.

The README's figure uses 10⁷ samples (``bench/research_run.sh``); here 2·10⁵ take a few seconds.
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

import fastpoly
from fastpoly.analysis.figures import plot_rank


def show(path):
    """Display a figure file that fastpoly wrote (its figure functions write PNG or PDF files)."""
    img = plt.imread(path)
    fig, ax = plt.subplots(figsize=(7, 7 * img.shape[0] / img.shape[1]))
    ax.imshow(img)
    ax.set_axis_off()
    fig.subplots_adjust(0, 0, 1, 1)

arch = fastpoly.MLP(7, hidden=(40, 40), activation="relu", sigma_w=1.0, sigma_b=1.0)
X = fastpoly.boolean_inputs(7)  # 128 x 7, row i has x_j = (i >> j) & 1

counts = fastpoly.sample(arch, X, n_samples=200_000, seed=0, progress=False)  # backend="auto"
print(f"{counts.n_samples:,} samples, {len(counts.keys):,} distinct functions")
for row in counts.top(3):
    print(row["key"], f"P = {row['probability']:.4f} [{row['lower']:.4f}, {row['upper']:.4f}]")

# %%
# The same seed gives the same counts on every backend, batch size and partition; any sampled function
# can be reproduced from its first index:
net = arch.instantiate(seed=0, index=int(counts.first_index[0]))
bits = (fastpoly.evaluate(net, X, dtype="float32") > 0).astype(int)
print("first function, re-evaluated:", "".join(map(str, bits[:32])), "...")

# %%
# The rank plot (``fastpoly plot rank counts.npz`` on the command line):
with tempfile.TemporaryDirectory() as tmp:
    show(plot_rank(counts, Path(tmp) / "rank.png"))

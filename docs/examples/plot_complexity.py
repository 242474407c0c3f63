"""
Simplicity bias: P(f) against Lempel–Ziv complexity
===================================================

The functions that random networks compute often are simple ones: plotted against the Lempel–Ziv
complexity K_LZ of their 128-character output string, log P(f) falls roughly linearly, below an upper
bound (Valle-Pérez, Camargo & Louis, ICLR 2019; Dingle et al. 2018). The fitted bound is drawn as a line.
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

import fastpoly
from fastpoly.analysis.complexity import klz_string
from fastpoly.analysis.figures import plot_complexity


def show(path):
    """Display a figure file that fastpoly wrote (its figure functions write PNG or PDF files)."""
    img = plt.imread(path)
    fig, ax = plt.subplots(figsize=(7, 7 * img.shape[0] / img.shape[1]))
    ax.imshow(img)
    ax.set_axis_off()
    fig.subplots_adjust(0, 0, 1, 1)

arch = fastpoly.MLP(7, hidden=(40, 40))
counts = fastpoly.sample(arch, fastpoly.boolean_inputs(7), n_samples=200_000, seed=1, progress=False)

# %%
# K_LZ of the most frequent functions: the constant functions are the simplest.
for row in counts.top(5):
    bits = format(int(row["key"], 16), "0128b")[::-1]  # character i = output on input row i
    print(f"P = {row['probability']:.4f}  K_LZ = {klz_string(bits):6.1f}  ones = {row['ones']}")

# %%
# All counted functions (``fastpoly plot complexity counts.npz``):
with tempfile.TemporaryDirectory() as tmp:
    show(plot_complexity(counts, Path(tmp) / "complexity.png"))

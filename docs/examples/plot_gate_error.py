"""
Error of the softplus multiplication gate
=========================================

Lin, Tegmark & Rolnick (2017) multiply two numbers with four neurons:
``m(u, v) = (σ(λ(u+v)) + σ(−λ(u+v)) − σ(λ(u−v)) − σ(−λ(u−v))) / (4 σ''(0) λ²) ≈ uv``.
The truncation error falls like λ², the rounding error grows like ε/λ², so each float type has a best λ;
``lam="auto"`` picks it, and every compiled network carries a certified bound on its error.
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import fastpoly
from fastpoly.poly import multiply
from fastpoly.poly.plots import plot_gate_error


def show(path):
    """Display a figure file that fastpoly wrote (its figure functions write PNG or PDF files)."""
    img = plt.imread(path)
    fig, ax = plt.subplots(figsize=(7, 7 * img.shape[0] / img.shape[1]))
    ax.imshow(img)
    ax.set_axis_off()
    fig.subplots_adjust(0, 0, 1, 1)

gate = multiply("softplus", lam="auto", dtype="float64")
uv = np.random.default_rng(0).uniform(-1, 1, (1000, 2))
err = np.max(np.abs(gate(uv) - uv[:, 0] * uv[:, 1]))
print(f"auto lambda: max error {err:.2e}, certified bound {gate.report().certified_error:.2e}")

# %%
# A whole polynomial compiles into a network of such gates (``fastpoly compile "..."``):
net = fastpoly.compile_polynomial("3*x0*x1**2 - x2 + 1", activation="softplus", dtype="float64",
                                  domain=(-1, 1))
print(net.report())

# %%
# Measured error and certified bound against λ, in float32 and float64
# (``fastpoly plot gate-error``):
with tempfile.TemporaryDirectory() as tmp:
    show(plot_gate_error(Path(tmp) / "gate_error.png"))

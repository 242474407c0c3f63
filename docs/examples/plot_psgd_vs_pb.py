"""
What SGD finds vs the Bayesian posterior: P_SGD against P_B
===========================================================

Mingard et al. ("Is SGD a Bayesian sampler? Well, almost", JMLR 2021) compare the probability
P_SGD(f|S) that SGD, started from a random initialisation, reaches the function f on the test rows with
the Bayesian posterior P_B(f|S) of the same network (the prior conditioned on fitting S, by rejection).
fastpoly keys both estimators identically, so they compare function by function.

Here, small enough to run in seconds: 5-40-40-1 ReLU networks on the 32 Boolean inputs of 5 bits, the
anchors' target ``f(i) = (i >> 1) & 1`` (``0011…0011``), a train set S of 10 rows, 1000 SGD runs and
2·10⁵ prior samples. The published experiment (7 bits, 32 train rows, 10⁵ runs, 10⁸ samples) is
``bench/psgd_vs_pb.sh`` in the repository, with its results in ``bench/results/psgd-vs-pb/``.
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import fastpoly


def show(path):
    """Display a figure file that fastpoly wrote (its figure functions write PNG or PDF files)."""
    img = plt.imread(path)
    fig, ax = plt.subplots(figsize=(7, 7 * img.shape[0] / img.shape[1]))
    ax.imshow(img)
    ax.set_axis_off()
    fig.subplots_adjust(0, 0, 1, 1)


X = fastpoly.boolean_inputs(5)  # 32 x 5
target = ((np.arange(32) >> 1) & 1).astype(np.uint8)
rows = np.random.RandomState(0).choice(32, 10, replace=False)  # S: 10 rows, in draw order
labels = target[rows]

# P_SGD: run i starts from network i of the prior stream; plain SGD, lr 0.01, minibatch 8,
# cross-entropy, until every train point is fitted, then one more epoch (the anchors' recipe)
psgd = fastpoly.sample_sgd("5-40-40-1", X, train=(rows, labels), n_runs=1000, seed=0,
                           optimizer="sgd", lr=0.01, minibatch=8, loss="ce", fit_threshold=0.5,
                           epochs_after_fit=1)
# P_B: the prior on the same stream, keeping the networks that output `labels` on `rows`
pb = fastpoly.sample("5-40-40-1", X, 200_000, seed=0, train=(rows, labels), progress=False)
print(f"P_SGD: {psgd.n_accepted} of {psgd.n_samples} runs fit S;  "
      f"P_B: {pb.n_accepted:,} of {pb.n_samples:,} samples accepted (P(S) = {pb.n_accepted / pb.n_samples:.5f})")

# %%
# Function by function: correlation of log P, top functions, mass by the number of test errors.
# Keys are the outputs on the 22 test rows (bit i = i-th test row); ``err`` counts the test errors
# against the target.
c = fastpoly.compare(psgd, pb, k=2, target=target, names=("P_SGD", "P_B"))
print(c.to_text(12))

# %%
# The paper's log-log figure (``fastpoly plot compare psgd.npz pb.npz``; each point a function,
# its P_SGD against its P_B):
with tempfile.TemporaryDirectory() as tmp:
    show(fastpoly.plot_compare(psgd, pb, Path(tmp) / "psgd_vs_pb.png", target=target))

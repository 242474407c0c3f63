"""
What SGD finds vs the Bayesian posterior: P_SGD against P_B
===========================================================

Mingard et al. ("Is SGD a Bayesian sampler? Well, almost", JMLR 2021) compare the probability
P_SGD(f|S) that SGD, started from a random initialisation, reaches the function f on the test rows with
the Bayesian posterior P_B(f|S) of the same network (the prior conditioned on fitting S, by rejection).
fastpoly keys both estimators identically, so they compare function by function.

Here: the anchors' target ``0011…0011`` on 7 bits, a train set S of 8 rows (the published experiment uses
32: ``bench/psgd_vs_pb.sh``), 300 SGD runs and 2·10⁵ prior samples.
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

import fastpoly
from fastpoly.sgd import anchor_target, anchor_train_set


def show(path):
    """Display a figure file that fastpoly wrote (its figure functions write PNG or PDF files)."""
    img = plt.imread(path)
    fig, ax = plt.subplots(figsize=(7, 7 * img.shape[0] / img.shape[1]))
    ax.imshow(img)
    ax.set_axis_off()
    fig.subplots_adjust(0, 0, 1, 1)


rows, labels = anchor_train_set(8)  # S: 8 rows of the target, in the anchors' draw order
target = anchor_target()

# P_SGD: run i starts from network i of the prior stream; plain SGD, lr 0.01, minibatch 8,
# cross-entropy, until every train point is fitted, then one more epoch (the anchors' recipe)
psgd = fastpoly.sample_sgd("7-40-40-1", None, train=(rows, labels), n_runs=300, seed=0,
                           optimizer="sgd", lr=0.01, minibatch=8, loss="ce", fit_threshold=0.5,
                           epochs_after_fit=1)
# P_B: the prior on the same stream, keeping the networks that output `labels` on `rows`
pb = fastpoly.sample("7-40-40-1", None, 200_000, seed=0, train=(rows, labels), progress=False)
print(f"P_SGD: {psgd.n_accepted} of {psgd.n_samples} runs fit S;  "
      f"P_B: {pb.n_accepted:,} of {pb.n_samples:,} samples accepted (P(S) = {pb.n_accepted / pb.n_samples:.4f})")

# %%
# Function by function: correlation of log P, top functions, mass by the number of test errors.
c = fastpoly.compare(psgd, pb, k=2, target=target, names=("P_SGD", "P_B"))
print(c)

# %%
# The paper's log-log figure (``fastpoly plot compare psgd.npz pb.npz``):
with tempfile.TemporaryDirectory() as tmp:
    show(fastpoly.plot_compare(psgd, pb, Path(tmp) / "psgd_vs_pb.png", target=target))

"""P_SGD(f|S): batched, exact and reproducible SGD/Adam training of many small networks.

Also the P_SGD vs P_B comparison (Mingard et al., "Is SGD a Bayesian sampler?", JMLR 2021).

``import fastpoly.sgd`` imports NumPy only; the Numba kernel is compiled on first use.
"""
from __future__ import annotations

from fastpoly.sgd.anchor import anchor_recipe, anchor_target, anchor_train_set
from fastpoly.sgd.api import compare, plot_compare, sample_sgd, sample_sgd_anchor, train_runs
from fastpoly.sgd.plan import TrainPlan, make_train_plan
from fastpoly.sgd.recipe import Recipe

__all__ = [
           "Recipe",
           "TrainPlan",
           "anchor_recipe",
           "anchor_target",
           "anchor_train_set",
           "compare",
           "make_train_plan",
           "plot_compare",
           "sample_sgd",
           "sample_sgd_anchor",
           "train_runs",
]

"""A validated P_SGD job.

The sampling plan (architecture, inputs, seed, train set), the recipe and the
optional emulation of the anchors' leaked early-stopping callback.

Random streams (``docs/design.md#stream-layout``): run ``i`` of seed ``s`` starts from the
parameters of sample ``i`` of the prior stream (counter word 1 = 0), so its
initialisation is bit for bit ``arch.instantiate(s, i)``.  Its minibatch order
uses counter word 1 = :data:`SGD_STREAM` (= 1): epoch ``e`` (0-based) uses
blocks ``e * B_e .. e * B_e + B_e - 1`` with ``B_e = ceil((m - 1) / 4)`` words
for a Fisher--Yates shuffle of the ``m`` train points (see :func:`epoch_order`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fastpoly.counts.meta import ResultMeta, describe_inputs
from fastpoly.model.spec import architecture_from_dict
from fastpoly.plan import SamplerPlan, make_plan
from fastpoly.sgd.recipe import Recipe
from fastpoly.stream.rng import SGD_STREAM, blocks_per_epoch

__all__ = [
    "SGD_STREAM",
    "TrainPlan",
    "blocks_per_epoch",
    "make_train_plan",
    "run_rule",
]



@dataclass(frozen=True, eq=False)
class TrainPlan:
    """Everything a trainer needs.

    Attributes
    ----------
    plan : SamplerPlan
        Architecture, inputs, seed, train rows (in the given order: train point
        ``t`` is row ``train_rows[t]``), labels and key (test) rows.
    recipe : Recipe
    leak_workers : int
        0: every run uses the recipe's rule.  Else run ``i`` belongs to worker
        ``w = i % leak_workers``; runs after ``leak_from[w]`` stop at the first
        fitted epoch end ``e >= leak_E[w] + epochs_after_fit`` (and ``>= min_epochs``).
    leak_E, leak_from : int64 arrays (leak_workers,)
        The worker's first-fit epoch and the index of the run that set it
        (``leak_from = 2**62`` where no run of the worker has fitted).
    """

    plan: SamplerPlan
    recipe: Recipe
    leak_workers: int = 0
    leak_E: np.ndarray | None = None
    leak_from: np.ndarray | None = None

    # --- what the run driver, checkpoints and Dask read of any plan (delegated to the sampling plan) ---
    @property
    def seed(self) -> int:
        """Stream seed."""
        return self.plan.seed

    @property
    def X(self) -> np.ndarray:
        """Input rows (float32)."""
        return self.plan.X

    @property
    def n_words(self) -> int:
        """uint64 words per key (over the test rows)."""
        return self.plan.n_words

    @property
    def key_rows(self) -> np.ndarray:
        """The test rows the keys cover (ascending)."""
        return self.plan.key_rows

    @property
    def conditioned(self) -> bool:
        """Always True for a P_SGD plan (keys cover the test rows)."""
        return self.plan.conditioned

    @property
    def digest(self) -> str:
        """Digest of the inputs."""
        return self.plan.digest

    @property
    def m_train(self):
        """Number of train points."""
        return int(self.plan.train_rows.size)

    def compat_meta(self):
        """Metadata that must match for two P_SGD results to merge (the recipe included)."""
        meta = self.plan.compat_meta()
        meta["sgd_recipe"] = self.recipe.to_dict()
        if self.leak_workers:
            meta["sgd_recipe"]["callback_leak_workers"] = int(self.leak_workers)
        return meta

    # --- the estimator plan protocol (fastpoly.run.plans) ---
    estimator = "psgd"

    def result_meta(self) -> ResultMeta:
        """What the result estimates: P_SGD(f|S) of this recipe."""
        c = self.compat_meta()
        return ResultMeta(
            estimator="psgd", arch=c["arch"], inputs_digest=c["inputs_digest"], n_rows=c["n_rows"],
            inputs=describe_inputs(self.plan.X, self.plan.mlp.n_inputs), seed=self.seed,
            train_rows=tuple(c["train_rows"]), train_labels=tuple(c["train_labels"]), recipe=c["sgd_recipe"],
        )

    def meta_extra(self) -> dict[str, Any]:
        """Legacy fields of P_SGD results kept for older readers (``kind``)."""
        return {"kind": "P_SGD"}

    def job_spec(self) -> dict[str, Any]:
        """What a checkpoint stores to rebuild this plan: the recipe and the leak emulation."""
        leak = None
        if self.leak_workers:
            leak = {"workers": int(self.leak_workers), "E": np.asarray(self.leak_E).tolist(),
                    "from": np.asarray(self.leak_from).tolist()}
        return {"estimator": "psgd", "recipe": self.recipe.to_dict(), "leak": leak}

    def job_arrays(self) -> dict[str, np.ndarray]:
        """No arrays beyond the inputs."""
        return {}

    @classmethod
    def from_job(cls, spec: dict[str, Any], compat: dict[str, Any], X: np.ndarray, seed: int) -> TrainPlan:
        """Rebuild the plan a checkpoint stored (:meth:`job_spec`, its compatibility fields and inputs)."""
        train = (np.asarray(compat["train_rows"], np.int64), np.asarray(compat["train_labels"], np.uint8))
        tp = make_train_plan(architecture_from_dict(compat["arch"]), X, train, seed, Recipe.from_dict(spec["recipe"]))
        leak = spec.get("leak")
        if leak:
            tp = tp.with_leak(leak["workers"], leak["E"], leak["from"])
        return tp

    def with_leak(self, workers, E, frm):
        """A copy of the plan with the leaked-callback emulation (per-worker first-fit epochs)."""
        return TrainPlan(self.plan, self.recipe, int(workers), np.asarray(E, np.int64).copy(),
                         np.asarray(frm, np.int64).copy())

    def leak_arrays(self):
        """``(workers, E, from)`` arrays of the leak emulation for the kernels."""
        if not self.leak_workers:
            return 0, np.zeros(1, np.int64), np.zeros(1, np.int64)
        return self.leak_workers, self.leak_E, self.leak_from


def run_rule(tp, i):
    """``(min_epochs, epochs_after_fit)`` of run ``i`` (the leaked rule where it applies)."""
    r = tp.recipe
    if tp.leak_workers:
        w = i % tp.leak_workers
        if i > tp.leak_from[w]:
            return max(r.min_epochs, int(tp.leak_E[w]) + r.epochs_after_fit), 0
    return r.min_epochs, r.epochs_after_fit


def make_train_plan(arch, X=None, train=None, seed=0, recipe=None) -> TrainPlan:
    """Validate a training job.

    Parameters
    ----------
    arch : Architecture (an MLP or a CNN) or str
        E.g. ``"7-40-40-1"`` or ``"8x8x1-c4k3-ap2-1"``; CNNs train on the generic layer trainers.
    X : array_like (m, n_inputs), images (m, H, W, C), or None
        Input rows (None: all Boolean inputs).
    train : (row indices, 0/1 labels)
        The train set S (required, non-empty, not all rows).  Its order is the
        order of the train points (minibatch shuffles permute it).
    seed : int
    recipe : Recipe or dict or None

    Raises
    ------
    ValueError
        Empty or inconsistent train sets, labels not 0/1, unsupported activations.
    """
    if train is None:
        raise ValueError("training needs a train set: train=(row indices, 0/1 labels)")
    if recipe is None:
        recipe = Recipe()
    elif isinstance(recipe, dict):
        recipe = Recipe.from_dict(recipe)
    elif not isinstance(recipe, Recipe):
        raise ValueError(f"recipe must be a Recipe or a dict, got {type(recipe).__name__}")
    plan = make_plan(arch, X, seed, train, use="train")  # the activation table says which ones train
    m = plan.train_rows.size
    if recipe.max_epochs * blocks_per_epoch(m) >= 2**32:
        raise ValueError("max_epochs x shuffle blocks per epoch exceeds the 2**32 Philox block counter")
    return TrainPlan(plan, recipe)

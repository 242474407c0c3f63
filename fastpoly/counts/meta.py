"""What a result estimates: the typed, versioned :class:`ResultMeta` of every counts file.

A counts file's ``meta`` dict is built here, by :func:`build_meta`, for every estimator:

``"prior"``
    P(f) of a random network (rejection sampling without a train set).
``"posterior"``
    P_B(f|S): rejection sampling, keeping the networks that fit the train set S.
``"psgd"``
    P_SGD(f|S): networks trained on S by a recipe (``meta["sgd_recipe"]``).
``"gp_draws"``
    The infinite-width (NNGP) prior, by drawing ``g ~ N(0, K)`` (``meta["arch"]["limit"] == "nngp"``).
``"gp_posterior"``
    ``P_B^GP(f|S)`` of listed functions (pseudo-counts ``round(P * scale)``).

The top-level key ``"estimator"`` holds one of these names.  Files of the two sampling
estimators (``prior``, ``posterior``) keep exactly the metadata they had before this key
existed -- their bytes are pinned by the golden test -- and say what they are through their
fields (no ``sgd_recipe``, no ``nngp`` limit; a train set or not); :meth:`ResultMeta.from_meta`
reads every file, old or new, the same way.  New estimators also record ``meta_version`` and how
the inputs were made (``"inputs"``: ``{"made": "boolean", "centered": bool}`` or
``{"made": "given"}``), so no reader has to guess whether Boolean inputs were centred.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fastpoly.arch import boolean_inputs
from fastpoly.version import __version__

__all__ = ["ESTIMATORS", "META_VERSION", "ResultMeta", "build_meta", "describe_inputs", "estimator_of"]

#: the estimators of P(f) / P(f|S) a counts file can hold
ESTIMATORS = ("prior", "posterior", "psgd", "gp_draws", "gp_posterior")
#: version of the ResultMeta fields written into counts files
META_VERSION = 1
#: estimators whose files carry no ``estimator`` key (pinned bytes; inferred by :func:`estimator_of`)
IMPLICIT = ("prior", "posterior")


def describe_inputs(X: Any, n_inputs: int) -> dict[str, Any]:
    """How the input rows were made: ``{"made": "boolean", "centered": bool}`` or ``{"made": "given"}``.

    Decided once, when a plan is built, by comparing ``X`` with the Boolean inputs of
    ``n_inputs`` bits (only for at most 20 inputs), and then recorded in the result.
    """
    X = np.asarray(X)
    if 0 < n_inputs <= 20 and X.shape == (2**n_inputs, n_inputs):
        for centered in (False, True):
            if np.array_equal(X, boolean_inputs(n_inputs, centered=centered)):
                return {"made": "boolean", "centered": centered}
    return {"made": "given"}


def estimator_of(meta: dict[str, Any]) -> str:
    """The estimator of a result from its meta dict (the ``estimator`` key, else inferred from legacy fields)."""
    est = meta.get("estimator")
    if est in ESTIMATORS:
        return str(est)
    arch = meta.get("arch") or {}
    gp = meta.get("gp") or {}
    if isinstance(arch, dict) and arch.get("limit") == "nngp":
        return "gp_posterior" if "pseudo_counts_scale" in gp or "method" in gp else "gp_draws"
    if meta.get("sgd_recipe") is not None or meta.get("kind") == "P_SGD":
        return "psgd"
    return "posterior" if meta.get("train_rows") else "prior"


@dataclass(frozen=True)
class ResultMeta:
    """What a result estimates and how it was made (one per counts file; see the module docstring).

    Attributes
    ----------
    estimator : str
        One of :data:`ESTIMATORS`.
    arch : dict
        The architecture (``MLP.to_dict()``; GP results add ``"limit": "nngp"``).
    inputs_digest : str
        Digest of the float32 input rows.
    n_rows : int
        Number of input rows.
    inputs : dict or None
        How the rows were made (:func:`describe_inputs`); None for legacy files that did not say.
    seed : int or None
        Stream seed (None: not a stream, e.g. a GP posterior table or an anchor file).
    train_rows, train_labels : tuple of int
        The train set S (empty for priors).
    target : str or None
        Hex key of the target over all rows, when the run was given one.
    recipe : dict or None
        The training recipe of a P_SGD result.
    version : int
        :data:`META_VERSION` (0 for legacy files read by :meth:`from_meta`).
    """

    estimator: str
    arch: dict[str, Any]
    inputs_digest: str
    n_rows: int
    inputs: dict[str, Any] | None = None
    seed: int | None = None
    train_rows: tuple[int, ...] = ()
    train_labels: tuple[int, ...] = ()
    target: str | None = None
    recipe: dict[str, Any] | None = None
    version: int = META_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {self.estimator!r}; valid: {', '.join(ESTIMATORS)}")

    @property
    def conditioned(self) -> bool:
        """True for estimators of P(f|S) (a train set)."""
        return bool(self.train_rows)

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> ResultMeta:
        """Read the ResultMeta of any counts file's meta dict, old or new."""
        version = int(meta.get("meta_version", 0) or 0)
        return cls(
            estimator=estimator_of(meta),
            arch=dict(meta.get("arch") or {}),
            inputs_digest=str(meta.get("inputs_digest", "")),
            n_rows=int(meta.get("n_rows", 0) or 0),
            inputs=dict(meta["inputs"]) if isinstance(meta.get("inputs"), dict) else None,
            seed=None if meta.get("seed") is None else int(meta["seed"]),
            train_rows=tuple(int(r) for r in meta.get("train_rows") or ()),
            train_labels=tuple(int(v) for v in meta.get("train_labels") or ()),
            target=meta.get("target"),
            recipe=meta.get("sgd_recipe"),
            version=version,
        )

    def to_meta(self) -> dict[str, Any]:
        """The fields of a meta dict that say what the result is (see :func:`build_meta` for the rest)."""
        meta: dict[str, Any] = {
            "arch": dict(self.arch),
            "inputs_digest": self.inputs_digest,
            "n_rows": int(self.n_rows),
            "train_rows": list(self.train_rows),
            "train_labels": list(self.train_labels),
            "seed": self.seed,
        }
        if self.recipe is not None:
            meta["sgd_recipe"] = dict(self.recipe)
        if self.estimator not in IMPLICIT:
            meta["estimator"] = self.estimator
            meta["meta_version"] = META_VERSION
            if self.inputs is not None:
                meta["inputs"] = dict(self.inputs)
        if self.target is not None:
            meta["target"] = self.target
        return meta


def build_meta(rm: ResultMeta, *, n_key_bits: int, key_rows: Any = None, ranges: Any = (),
               annotations: dict[str, Any] | None = None) -> dict[str, Any]:
    """The meta dict of a counts file: the ResultMeta fields, index ranges, key rows, version, annotations.

    Raises
    ------
    ValueError
        If ``annotations`` would replace one of the fields.
    """
    meta = rm.to_meta()
    meta.update(
        ranges=[list(map(int, r)) for r in ranges],
        n_key_bits=int(n_key_bits),
        key_rows=None if key_rows is None else [int(r) for r in key_rows],
        fastpoly_version=__version__,
    )
    if annotations:
        clash = set(annotations) & set(meta)
        if clash:
            raise ValueError(f"annotations may not replace the metadata {sorted(clash)}")
        meta.update(annotations)
    return meta

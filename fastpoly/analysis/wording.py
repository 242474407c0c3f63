"""The one place that words results: what a counts file estimates, and how to name it.

Every table, summary line, figure title and axis of fastpoly is worded from :func:`wording`, a
pure function of a result's metadata.  Five estimators are told apart:

``prior``
    counts of random networks: the prior ``P(f)``;
``posterior``
    the Bayesian posterior ``P_B(f|S)`` by rejection (networks that fit the train set S); the
    acceptance rate estimates the marginal likelihood ``P(S)``;
``psgd``
    ``P_SGD(f|S)``: the functions that networks trained with SGD/Adam on S reach (fitted runs);
    the fit rate of the runs is *not* ``P(S)``;
``gp_draws``
    draws of the infinite-width NNGP (sign of a Gaussian process): ``P^GP(f)``, the NNGP limit of
    the prior, not a finite network;
``gp_posterior``
    the GP posterior ``P_B^GP(f|S)`` (orthant probabilities, stored as pseudo-counts).

The metadata key ``"estimator"`` names the estimator where a file records it; older files are
recognised by what they carry: ``"sgd_recipe"`` (P_SGD), ``"gp"`` with a posterior method or
pseudo-counts (GP posterior), ``"gp"`` or an ``arch`` with ``limit = "nngp"`` (NNGP draws), train
rows (P_B by rejection), else the prior.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ESTIMATORS", "Wording", "estimator_of", "wording", "arch_text", "title", "few_points_caveat",
           "FEW_POINTS"]

#: the estimators a result can be, in the order of the module docstring
ESTIMATORS = ("prior", "posterior", "psgd", "gp_draws", "gp_posterior")

#: statistics over fewer than this many functions carry a caveat
FEW_POINTS = 10


@dataclass(frozen=True)
class Wording:
    """How to word one result (every field a plain string unless said otherwise).

    Attributes
    ----------
    estimator : str
        One of :data:`ESTIMATORS`.
    quantity : str
        The probability of a function, e.g. ``"P_SGD(f|S)"`` (plain text, for tables and summaries).
    quantity_tex : str
        The same in matplotlib mathtext, for axes.
    description : str
        One line saying what the result estimates.
    samples : str
        What was drawn: ``"samples"``, ``"runs"``, ``"GP draws"``, ``"pseudo-counts"``.
    accepted : str
        What was counted: ``"samples"``, ``"accepted samples"``, ``"fitted runs"``, ...
    p_s_applies : bool
        Whether accepted / drawn estimates the marginal likelihood ``P(S)``.
    p_s_note : str
        What ``P(S)`` is for this result, or why it does not apply.
    rate_name : str
        Name of accepted / drawn: ``"P(S)"`` where it applies, else e.g. ``"fit rate"``.
    mean_error : str
        Label of the mean generalisation error (empty for an unconditioned prior).
    conditioned : bool
        Whether the result is conditioned on a train set S.
    """

    estimator: str
    quantity: str
    quantity_tex: str
    description: str
    samples: str
    accepted: str
    p_s_applies: bool
    p_s_note: str
    rate_name: str
    mean_error: str
    conditioned: bool

    @property
    def means_under(self) -> str:
        """``"means under P_SGD(f|S)"`` and the like."""
        return f"means under {self.quantity}"

    @property
    def log_quantity(self) -> str:
        """Column name of the natural log of the quantity, e.g. ``"log P_SGD"``."""
        return "log " + self.quantity.split("(")[0]


def _meta(meta: Any) -> Mapping[str, Any]:
    m = getattr(meta, "meta", meta)  # a FunctionCounts or its meta dict
    if m is None:
        return {}
    if not isinstance(m, Mapping):
        raise ValueError(f"expected a result's metadata (a dict) or a FunctionCounts, got {type(meta).__name__}")
    return m


def estimator_of(meta: Any) -> str:
    """The estimator of a result (see the module docstring): ``meta["estimator"]`` or inferred.

    Parameters
    ----------
    meta : dict or FunctionCounts
        A result's metadata (or the result).

    Returns
    -------
    str
        One of :data:`ESTIMATORS`.

    Raises
    ------
    ValueError
        ``meta["estimator"]`` is set to an unknown value.
    """
    m = _meta(meta)
    e = m.get("estimator")
    if e is not None:
        e = str(e).lower()
        if e not in ESTIMATORS:
            raise ValueError(f"unknown estimator {m.get('estimator')!r} in the metadata; known: {', '.join(ESTIMATORS)}")
        return e
    if m.get("sgd_recipe") is not None:
        return "psgd"
    gp = m.get("gp")
    a = m.get("arch")
    arch: Mapping[str, Any] = a if isinstance(a, Mapping) else {}
    if isinstance(gp, Mapping) and ("pseudo_counts_scale" in gp or "method" in gp or "log_p_S" in gp):
        return "gp_posterior"
    if gp is not None or arch.get("limit") == "nngp":
        return "gp_draws"
    if m.get("train_rows"):
        return "posterior"
    return "prior"


def wording(meta: Any) -> Wording:
    """The :class:`Wording` of a result from its metadata (or the result itself)."""
    e = estimator_of(meta)
    if e == "prior":
        return Wording(e, "P(f)", r"$P(f)$", "prior P(f) of random networks (sampled)", "samples", "samples",
                       False, "no train set: P(S) does not apply", "", "", False)
    if e == "posterior":
        return Wording(e, "P_B(f|S)", r"$P_B(f\,|\,S)$",
                       "Bayesian posterior P_B(f|S) by rejection: random networks that fit the train set S",
                       "samples", "accepted samples", True,
                       "P(S) = accepted / samples: the probability that a random network fits S "
                       "(marginal likelihood)", "P(S)", "posterior mean generalisation error", True)
    if e == "psgd":
        return Wording(e, "P_SGD(f|S)", r"$P_{SGD}(f\,|\,S)$",
                       "P_SGD(f|S): functions reached by networks trained on S (fitted runs; not a Bayesian "
                       "posterior)", "runs", "fitted runs", False,
                       "P(S) does not apply to trained networks; fit rate = fitted runs / runs", "fit rate",
                       "mean generalisation error of the fitted runs", True)
    if e == "gp_draws":
        return Wording(e, "P^GP(f)", r"$P^{GP}(f)$",
                       "NNGP draws: the infinite-width Gaussian-process limit of the prior (not finite networks)",
                       "GP draws", "GP draws", False, "no train set: P(S) does not apply", "",
                       "mean generalisation error under the NNGP", False)
    return Wording(e, "P_B^GP(f|S)", r"$P_B^{GP}(f\,|\,S)$",
                   "GP posterior P_B^GP(f|S) of the NNGP (orthant probabilities, stored as pseudo-counts)",
                   "pseudo-counts", "pseudo-counts", False,
                   "P(S) is the GP orthant estimate in the metadata, not a ratio of counts", "",
                   "GP posterior mean generalisation error", True)


def arch_text(meta: Any) -> str:
    """The architecture as ``7-40-40-1`` (``""`` when unknown)."""
    a = _meta(meta).get("arch")
    w = a.get("widths") if isinstance(a, Mapping) else None
    return "-".join(map(str, w)) if w else ""


def title(meta: Any, n: int, extra: str = "") -> str:
    """A figure title: architecture, the quantity and the number counted (e.g. ``n=1,234 fitted runs``)."""
    w = wording(meta)
    arch = arch_text(meta)
    return f"{arch + '  ' if arch else ''}{w.quantity}  n={int(n):,} {w.accepted}{extra}"


def few_points_caveat(n: int, what: str = "functions") -> str:
    """``""`` for ``n >= FEW_POINTS``, else a caveat such as ``" (only 2 functions: not meaningful)"``."""
    n = int(n)
    if n >= FEW_POINTS:
        return ""
    return f" (only {n} {what}: not meaningful)" if n < 3 else f" (only {n} {what}: a rough guide)"

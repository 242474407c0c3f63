"""The Gaussian-process (NNGP) approximation of the prior P(f) and posterior P_B(f|S).

Infinite-width networks are Gaussian processes; the function a network computes
on a set of rows is then the sign pattern of ``g ~ N(0, K)``, and its probability
is an orthant probability (``docs/design.md#gp-posterior``).

* :func:`kernel` -- the NNGP covariance of an :class:`~fastpoly.MLP` (relu, erf, sign, identity);
* :func:`orthant` -- ``log P(sign g = s)`` by minimax tilting (default, unbiased with
  error bars), expectation propagation (fast, biased for correlated orthants) or Monte Carlo;
* :func:`log_marginal`, :func:`posterior`, :func:`pac_bayes_bound` -- log P(S),
  log P_B^GP(f|S) of given functions (a :class:`GPPosterior` table) and the
  anchors' PAC-Bayes bound;
* :func:`sample` -- GP draws with the project's Philox normals (stream 3), counted into a
  :class:`~fastpoly.FunctionCounts`;
* :func:`plot_vs_exact` -- log P_B^GP vs rejection-sampled log P_B;
* :func:`posterior_gp`, :func:`condition_ep`, :func:`kernel_blocked` -- P_B^GP(f|S) on a test set
  at the paper's scale (m up to ~10^4 train images; joint EP, shared-conditioning EP, MSE route).

Importing this subpackage imports SciPy; ``import fastpoly`` does not import it
(``fastpoly.gp`` is loaded on first access).
"""
from __future__ import annotations

import importlib

#: public name -> submodule that defines it (imported on first access: ``fastpoly gp --help``
#: and ``fastpoly.cli.gp`` stay light)
_EXPORTS = {
    "kernel": "kernels", "kernel_activations": "kernels",
    "orthant": "orthants", "OrthantResult": "orthants", "ORTHANT_METHODS": "orthants",
    "log_marginal": "bayes", "posterior": "bayes", "pac_bayes_bound": "bayes",
    "GPPosterior": "bayes",
    "sample": "sampling", "GP_STREAM": "sampling",
    "plot_vs_exact": "figures",
    "posterior_gp": "scale", "condition_ep": "scale", "kernel_blocked": "scale",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    sub = _EXPORTS.get(name)
    if sub is None:
        raise AttributeError(f"module 'fastpoly.gp' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{sub}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))

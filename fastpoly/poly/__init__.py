"""Polynomial networks: compile polynomials into Lin-Tegmark-Rolnick gate networks.

Public API (imported lazily; SymPy and Matplotlib load only when used):

* :class:`Polynomial` -- parse / build / evaluate polynomials exactly;
* :func:`compile_polynomial` -- polynomial -> :class:`PolyNetwork` with a certified bound;
* :func:`compile_polynomials` -- a vector of polynomials -> one multi-output network, shared gates;
* :func:`classifier` -- class Hamiltonians -> :class:`PolyClassifier` (logits, softmax head, certified
  logit and probability bounds); :func:`from_sklearn`, :func:`from_gaussians`, :func:`from_bernoulli`
  -- fitted generative models -> ``(hamiltonians, log_prior)``;
* :func:`compose_polynomials` -- ``f(g(x))`` as one deeper network, bounds propagated, neurons vs the
  flattened polynomial;
* gate builders :func:`multiply`, :func:`square`, :func:`identity`, :func:`shallow_product`,
  :func:`shallow_monomial`, :func:`relu_square`, :func:`relu_product`, :func:`bit_gate`,
  and the pairwise reference :func:`multiply_value`;
* :func:`random_polynomial`, :func:`make_bench_polynomial`;
* :func:`plot_gate_error`, :func:`plot_shallow_vs_deep`.

The activations the compiled networks use (``softplus``, ``exp``, ``silu``, ``gelu``,
``sigmoid``, ``square``, ...) are entries of the one table :data:`fastpoly.activations.TABLE`.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "Polynomial": ".polynomial",
    "compile_polynomial": ".compile",
    "compile_polynomials": ".compile",
    "classifier": ".classifiers",
    "PolyClassifier": ".classifiers",
    "from_sklearn": ".bridge",
    "compose_polynomials": ".hierarchy",
    "flatten_composition": ".hierarchy",
    "from_gaussians": ".bridge",
    "from_bernoulli": ".bridge",
    "PolyNetwork": ".network",
    "PolyReport": ".report",
    "multiply": ".gates",
    "square": ".gates",
    "identity": ".gates",
    "shallow_product": ".gates",
    "shallow_monomial": ".gates",
    "relu_square": ".gates",
    "relu_product": ".gates",
    "bit_gate": ".gates",
    "multiply_value": ".gates",
    "yarotsky_square_value": ".gates",
    "random_polynomial": ".random",
    "make_bench_polynomial": ".random",
    "plot_gate_error": ".plots",
    "plot_shallow_vs_deep": ".plots",
    "plot_classifier": ".plots",
    "neuron_counts": ".gates",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        mod = importlib.import_module(_EXPORTS[name], __name__)
        val = getattr(mod, name)
        globals()[name] = val
        return val
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))

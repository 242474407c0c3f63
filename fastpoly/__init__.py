"""fastpoly: exact, reproducible, compiled kernels for polynomial networks and random-network sampling.

``import fastpoly`` is light: it imports NumPy only; Numba, CuPy, SciPy,
SymPy and Matplotlib are imported when a feature needs them, and no kernel
is compiled until it is first used.
"""
from __future__ import annotations

from fastpoly.activations import ACTIVATIONS
from fastpoly.api import evaluate, resume, sample, sample_keys
from fastpoly.arch import MLP, boolean_inputs, parse_arch
from fastpoly.backends import BackendUnavailable, backends, get_backend
from fastpoly.counts import CountsFileError, FunctionCounts
from fastpoly.network import Layer, Network
from fastpoly.plan import make_plan
from fastpoly.version import __version__

__all__ = [
    "__version__",
    "ACTIVATIONS",
    "MLP",
    "Layer",
    "Network",
    "FunctionCounts",
    "CountsFileError",
    "BackendUnavailable",
    "backends",
    "get_backend",
    "boolean_inputs",
    "parse_arch",
    "make_plan",
    "evaluate",
    "sample",
    "sample_keys",
    "resume",
    "Polynomial",
    "compile_polynomial",
    "gp",
    "sample_sgd",
    "sample_sgd_anchor",
    "compare",
    "plot_compare",
    "Recipe",
]

#: names provided lazily by submodules (imported on first access, so ``import fastpoly`` stays light)
_LAZY = {
    "Polynomial": "fastpoly.poly",
    "compile_polynomial": "fastpoly.poly",
    "gp": "fastpoly.gp",  # a subpackage: the module itself
    "sample_sgd": "fastpoly.sgd",
    "sample_sgd_anchor": "fastpoly.sgd",
    "compare": "fastpoly.sgd",
    "plot_compare": "fastpoly.sgd",
    "Recipe": "fastpoly.sgd",
}


def __getattr__(name):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'fastpoly' has no attribute {name!r}")
    import importlib

    value = importlib.import_module(mod)
    if mod != f"{__name__}.{name}":
        value = getattr(value, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))

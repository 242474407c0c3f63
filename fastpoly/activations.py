"""Activation functions: one registry, NumPy reference implementations.

Each entry maps a name to a function ``f(z, dtype) -> array`` computing the
activation elementwise in ``dtype``.  The sampler's activations also have a
small integer code shared with the compiled kernels (:data:`SAMPLER_CODES`).

float32 conventions (shared by every backend): ``relu``, ``sign`` and
``identity`` are exact; ``tanh`` and ``erf`` are computed in float64 with the
platform's libm/cephes and rounded once to float32, so backends agree except,
rarely, in the last bit (tests bound how often this flips an output sign).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["ACTIVATIONS", "SAMPLER_CODES", "get_activation", "register_activation"]


def _relu(z, dtype):
    return np.maximum(z, dtype(0)).astype(dtype, copy=False)


def _sign(z, dtype):
    # -1, 0, +1 (numpy.sign semantics)
    return np.sign(z).astype(dtype, copy=False)


def _identity(z, dtype):
    return np.asarray(z, dtype=dtype)


def _tanh(z, dtype):
    return np.tanh(np.asarray(z, dtype=np.float64)).astype(dtype)


_verf = np.vectorize(math.erf, otypes=[np.float64])


def _erf(z, dtype):
    try:
        from scipy.special import erf
    except ImportError:  # pragma: no cover - scipy is a core dependency
        erf = _verf
    return erf(np.asarray(z, dtype=np.float64)).astype(dtype)


ACTIVATIONS = {
    "relu": _relu,
    "tanh": _tanh,
    "erf": _erf,
    "sign": _sign,
    "identity": _identity,
}

#: integer codes of the activations the random-network sampler supports
SAMPLER_CODES = {"relu": 0, "tanh": 1, "erf": 2, "sign": 3, "identity": 4}

#: activations whose float32 evaluation is exact on every backend (bit-identical keys)
EXACT_SAMPLER_ACTIVATIONS = frozenset({"relu", "sign", "identity"})


def register_activation(name, func):
    """Register an activation ``func(z, dtype)`` under ``name`` (e.g. for polynomial networks)."""
    if not isinstance(name, str) or not name:
        raise ValueError("activation name must be a non-empty string")
    ACTIVATIONS[name] = func


def get_activation(name):
    """Return the reference implementation of activation ``name``.

    Raises
    ------
    ValueError
        If ``name`` is not a known activation (the message lists the valid names).
    """
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; valid activations: {', '.join(sorted(ACTIVATIONS))}"
        ) from None

"""The one activation table: name -> code, formula, reference, derivative and exactness class.

Every activation fastpoly knows is an :class:`Activation` in :data:`TABLE`.  The
integer :attr:`Activation.code` is what compiled kernels switch on: the Numba
kernels read :data:`CODES`, and the CUDA kernels include ``kernels/activations.cuh``,
which is *generated* from this table by :func:`cuda_preamble` (a test fails if the file is
stale or if a kernel defines or uses an activation code that does not come from it).

Two reference semantics exist, both fixed here:

* :attr:`Activation.reference` ``(z, dtype)`` -- dense layers and the random-network sampler.
  ``relu``, ``sign``, ``identity`` and ``square`` are exact in float32 (bit-identical on every
  backend); ``tanh``, ``erf`` and the other smooth functions are computed in float64 with the
  platform's libm/cephes and rounded once, so backends agree except, rarely, in the last bit.
* :attr:`Activation.elementwise` ``(z)`` -- structured (sparse) polynomial networks:
  computed in the input's own dtype (see :mod:`fastpoly.poly.structured`).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

__all__ = [
    "Activation", "TABLE", "CODES", "ACTIVATIONS", "SAMPLER_CODES", "EXACT_SAMPLER_ACTIVATIONS",
    "get_activation", "cuda_preamble",
]

Array = np.ndarray


def _f64(z: Array) -> Array:
    return np.asarray(z, dtype=np.float64)


def _erf64(z: Array) -> Array:
    from scipy.special import erf

    return erf(_f64(z))


def _ndtr64(z: Array) -> Array:
    from scipy.special import ndtr

    return ndtr(_f64(z))


def _softplus(z: Array) -> Array:
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def _sigmoid(z: Array) -> Array:
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _gelu64(z: Array) -> Array:
    z64 = _f64(z)
    return z64 * _ndtr64(z64)


def _via64(f: Callable[[Array], Array]) -> Callable[[Array, type], Array]:
    """``f`` evaluated in float64 and rounded once to ``dtype``."""
    def ref(z: Array, dtype: type) -> Array:
        return np.asarray(f(_f64(z)), dtype=np.float64).astype(dtype)
    return ref


def _same(f: Callable[[Array], Array]) -> Callable[[Array, type], Array]:
    """``f`` evaluated in ``dtype`` (for the smooth functions of polynomial networks)."""
    def ref(z: Array, dtype: type) -> Array:
        return np.asarray(f(np.asarray(z, dtype=dtype)), dtype=dtype)
    return ref


@dataclass(frozen=True)
class Activation:
    """One activation function.

    Attributes
    ----------
    name : str
        Its name everywhere (``MLP(activation=...)``, layers, kernels).
    code : int
        The integer compiled kernels switch on (``FP_ACT_<NAME>`` in CUDA).
    formula : str
        The function, for people.
    reference : callable ``(z, dtype) -> array``
        NumPy reference for dense layers and the sampler (see the module docstring).
    derivative : callable ``(z, dtype) -> array``
        ``f'(z)`` (float64 inside, rounded to ``dtype``); 0 where undefined (relu at 0, sign).
    exact : bool
        Its float32 reference is correctly rounded from exact operations, so every backend
        gives bit-identical results; otherwise backends agree within the tolerance table.
    sampler : bool
        Usable as the hidden activation of the random-network sampler (:class:`fastpoly.MLP`).
    elementwise : callable ``(z) -> array`` or None
        In the input's dtype, for structured polynomial networks (None: not used there).
    """

    name: str
    code: int
    formula: str
    reference: Callable[[Array, type], Array]
    derivative: Callable[[Array, type], Array]
    exact: bool
    sampler: bool
    elementwise: Callable[[Array], Array] | None = None


def _relu_ref(z: Array, dtype: type) -> Array:
    return np.maximum(z, dtype(0)).astype(dtype, copy=False)


def _sign_ref(z: Array, dtype: type) -> Array:
    return np.sign(z).astype(dtype, copy=False)  # -1, 0, +1 (numpy.sign semantics)


def _identity_ref(z: Array, dtype: type) -> Array:
    return np.asarray(z, dtype=dtype)


_SQRT_2_OVER_PI = 2.0 / math.sqrt(math.pi)

#: the table (codes 0..4 are the sampler's; never renumber: they are part of compiled kernels)
TABLE: Mapping[str, Activation] = MappingProxyType({a.name: a for a in (
    Activation("relu", 0, "max(z, 0)", _relu_ref,
               _via64(lambda z: (z > 0).astype(np.float64)), exact=True, sampler=True,
               elementwise=lambda z: np.maximum(z, 0)),
    Activation("tanh", 1, "tanh(z)", _via64(np.tanh),
               _via64(lambda z: 1.0 - np.tanh(z) ** 2), exact=False, sampler=True, elementwise=np.tanh),
    Activation("erf", 2, "erf(z)", _via64(_erf64),
               _via64(lambda z: _SQRT_2_OVER_PI * np.exp(-z * z)), exact=False, sampler=True),
    Activation("sign", 3, "sign(z) in {-1, 0, 1}", _sign_ref,
               _via64(lambda z: np.zeros_like(z)), exact=True, sampler=True),
    Activation("identity", 4, "z", _identity_ref,
               _via64(lambda z: np.ones_like(z)), exact=True, sampler=True, elementwise=lambda z: z),
    Activation("square", 5, "z**2", _same(lambda z: z * z),
               _via64(lambda z: 2.0 * z), exact=True, sampler=False, elementwise=lambda z: z * z),
    Activation("softplus", 6, "log(1 + exp(z))", _same(_softplus),
               _via64(_sigmoid), exact=False, sampler=False, elementwise=_softplus),
    Activation("exp", 7, "exp(z)", _same(np.exp),
               _via64(np.exp), exact=False, sampler=False, elementwise=np.exp),
    Activation("sigmoid", 8, "1 / (1 + exp(-z))", _same(_sigmoid),
               _via64(lambda z: _sigmoid(z) * (1.0 - _sigmoid(z))), exact=False, sampler=False,
               elementwise=_sigmoid),
    Activation("silu", 9, "z * sigmoid(z)", _same(lambda z: z * _sigmoid(z)),
               _via64(lambda z: _sigmoid(z) * (1.0 + z * (1.0 - _sigmoid(z)))), exact=False, sampler=False,
               elementwise=lambda z: z * _sigmoid(z)),
    Activation("gelu", 10, "z * Phi(z)", _same(_gelu64),
               _via64(lambda z: _ndtr64(z) + z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)),
               exact=False, sampler=False, elementwise=_gelu64),
)})

#: name -> kernel code
CODES: Mapping[str, int] = MappingProxyType({n: a.code for n, a in TABLE.items()})
#: name -> reference ``f(z, dtype)`` (read-only)
ACTIVATIONS: Mapping[str, Callable[[Array, type], Array]] = MappingProxyType({n: a.reference for n, a in TABLE.items()})
#: the sampler's activations and their codes
SAMPLER_CODES: Mapping[str, int] = MappingProxyType({n: a.code for n, a in TABLE.items() if a.sampler})
#: sampler activations whose float32 evaluation is exact on every backend (bit-identical keys)
EXACT_SAMPLER_ACTIVATIONS = frozenset(n for n, a in TABLE.items() if a.sampler and a.exact)


def get_activation(name: str) -> Callable[[Array, type], Array]:
    """Return the reference implementation ``f(z, dtype)`` of activation ``name``.

    Raises
    ------
    ValueError
        If ``name`` is not a known activation (the message lists the valid names).
    """
    try:
        return TABLE[name].reference
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; valid activations: {', '.join(sorted(TABLE))}"
        ) from None


def cuda_preamble() -> str:
    """The text of ``kernels/activations.cuh``: one ``#define FP_ACT_<NAME> <code>`` per activation."""
    lines = [
        "// GENERATED from the activation table in fastpoly/activations.py (cuda_preamble()). Do not edit;",
        "// regenerate: python -c 'import fastpoly.activations as a; print(a.cuda_preamble(), end=\"\")' > kernels/activations.cuh",
        "// tests/test_activations.py fails when this file is stale, and when a kernel defines or uses",
        "// an activation code that is not generated here.",
        "#pragma once",
        "",
    ]
    for name, a in sorted(TABLE.items(), key=lambda kv: kv[1].code):
        lines.append(f"#define FP_ACT_{name.upper()} {a.code}  // {a.formula}")
    return "\n".join(lines) + "\n"


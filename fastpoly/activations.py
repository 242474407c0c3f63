"""The one activation table: name -> code, formula, references, derivative, NNGP map and support.

Every activation fastpoly knows is an :class:`Activation` in :data:`TABLE`.  The
integer :attr:`Activation.code` is what compiled kernels switch on: the Numba
kernels read :data:`CODES`, and the CUDA kernels include ``kernels/activations.cuh``,
which is *generated* from this table by :func:`cuda_preamble` (a test fails if the file is
stale or if a kernel defines or uses an activation code that does not come from it).

Which activation works where is one more column of the table, :attr:`Activation.support`:
use (``"sample"``: the random-network sampler, ``"train"``: the P_SGD trainers,
``"evaluate"``: dense :class:`~fastpoly.Network` evaluation, ``"nngp"``: the closed-form
NNGP kernel) -> the backends (``"numpy"``, ``"numba"``, ``"cupy"``) that implement it.
Ask with :func:`supported` / :func:`check_supported` (whose errors list the alternatives);
no other module keeps its own list.  Adding an activation to training, say, is a table
change (its float32 :class:`TrainOps` and ``"train"`` support) plus the code of each
compiled trainer.

Two reference semantics exist, both fixed here:

* :attr:`Activation.reference` ``(z, dtype)`` -- dense layers and the random-network sampler.
  ``relu``, ``sign``, ``identity`` and ``square`` are exact in float32 (bit-identical on every
  backend); ``tanh``, ``erf`` and the other smooth functions are computed in float64 with the
  platform's libm/cephes and rounded once, so backends agree except, rarely, in the last bit.
* :attr:`Activation.elementwise` ``(z)`` -- structured (sparse) polynomial networks:
  computed in the input's own dtype (see :mod:`fastpoly.poly.structured`).

The trainers use a third: :attr:`Activation.train` (:class:`TrainOps`), float32 in and out, the
compiled trainers' bits.  relu and identity are exact selects; tanh, erf and sigmoid are fastpoly's
own float32 functions and derivatives (:mod:`fastpoly.stream.fmath_train`: within 2-3 ulp, the
derivatives within 5 ulp of float64 math), identical in the NumPy reference, Numba and CUDA.
sigmoid trains but does not sample (an ``MLP`` may carry it; the samplers refuse it).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

__all__ = [
    "Activation", "TrainOps", "TABLE", "CODES", "ACTIVATIONS", "SAMPLER_CODES", "EXACT_SAMPLER_ACTIVATIONS",
    "BACKENDS", "USES", "get_activation", "supported", "check_supported", "codes_for", "cuda_preamble",
]

#: the backends the support column speaks of
BACKENDS = ("numpy", "numba", "cupy")
#: the uses of an activation (see the module docstring)
USES = ("sample", "train", "evaluate", "nngp")

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
class TrainOps:
    """The float32 operations the trainers use for one hidden activation (NumPy twins of the kernels).

    Attributes
    ----------
    forward : callable ``(z) -> a``
        float32 in, float32 out, the compiled trainers' bits.
    backward : callable ``(z, e) -> d``
        The error ``d`` of the pre-activation ``z`` from the error ``e`` of its output.
    formula : str
        Both, for people (and the docs).
    """

    forward: Callable[[Array], Array]
    backward: Callable[[Array, Array], Array]
    formula: str


NNGPMap = Callable[[Array, Array], "tuple[Array, Array]"]


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
    support : mapping use -> frozenset of backends
        Where it is implemented (uses :data:`USES`, backends :data:`BACKENDS`); query with
        :func:`supported` and :func:`check_supported`.
    elementwise : callable ``(z) -> array`` or None
        In the input's dtype, for structured polynomial networks (None: not used there).
    nngp : callable ``(K, diag) -> (E, E_diag)`` or None
        The NNGP map: ``E[phi(u) phi(u')]`` for ``(u, u') ~ N(0, K)`` (float64 matrix and its
        exact diagonal from the variances ``diag``); None where there is no closed form.
    train : TrainOps or None
        The trainers' float32 forward and backward (None: not trainable).
    """

    name: str
    code: int
    formula: str
    reference: Callable[[Array, type], Array]
    derivative: Callable[[Array, type], Array]
    exact: bool
    support: Mapping[str, frozenset[str]]
    elementwise: Callable[[Array], Array] | None = None
    nngp: NNGPMap | None = None
    train: TrainOps | None = None

    @property
    def sampler(self) -> bool:
        """Usable as the hidden activation of the random-network sampler (:class:`fastpoly.MLP`)."""
        return bool(self.support.get("sample"))

    def supports(self, use: str, backend: str = "numpy") -> bool:
        """True if ``backend`` implements this activation for ``use``."""
        return backend in self.support.get(use, frozenset())


def _relu_ref(z: Array, dtype: type) -> Array:
    return np.maximum(z, dtype(0)).astype(dtype, copy=False)


def _sign_ref(z: Array, dtype: type) -> Array:
    return np.sign(z).astype(dtype, copy=False)  # -1, 0, +1 (numpy.sign semantics)


def _identity_ref(z: Array, dtype: type) -> Array:
    return np.asarray(z, dtype=dtype)


_SQRT_2_OVER_PI = 2.0 / math.sqrt(math.pi)
_F32 = np.float32


# --- NNGP maps (docs/design.md#nngp-maps): E[phi(u) phi(u')] for (u, u') ~ N(0, K) ---------------
def _nngp_identity(K: Array, diag: Array) -> tuple[Array, Array]:
    return K, diag


def _nngp_erf(K: Array, diag: Array) -> tuple[Array, Array]:
    """Williams (1997): ``(2/pi) arcsin(2 K_xx' / sqrt((1 + 2 K_xx)(1 + 2 K_x'x')))``."""
    s = np.sqrt(1.0 + 2.0 * diag)
    arg = np.clip(2.0 * K / np.outer(s, s), -1.0, 1.0)
    E = (2.0 / math.pi) * np.arcsin(arg)
    dE = (2.0 / math.pi) * np.arcsin(2.0 * diag / (1.0 + 2.0 * diag))
    np.fill_diagonal(E, dE)
    return E, dE


def _correlation(K: Array, diag: Array) -> tuple[Array, Array, Array]:
    sd = np.sqrt(diag)
    norm = np.outer(sd, sd)
    pos = norm > 0
    rho = np.zeros_like(K)
    np.divide(K, norm, out=rho, where=pos)
    np.clip(rho, -1.0, 1.0, out=rho)
    return norm, pos, rho


def _nngp_relu(K: Array, diag: Array) -> tuple[Array, Array]:
    """Arc-cosine kernel of degree 1 (Cho & Saul 2009): ``sqrt(K_xx K_x'x') (sin t + (pi - t) cos t) / (2 pi)``."""
    norm, _, rho = _correlation(K, diag)
    t = np.arccos(rho)
    E = norm * (np.sin(t) + (math.pi - t) * rho) / (2.0 * math.pi)
    dE = diag / 2.0
    np.fill_diagonal(E, dE)
    return E, dE


def _nngp_sign(K: Array, diag: Array) -> tuple[Array, Array]:
    """``(2/pi) arcsin(rho)``; 1 on the diagonal, 0 on a row of zero variance."""
    _, pos, rho = _correlation(K, diag)
    E = np.where(pos, (2.0 / math.pi) * np.arcsin(rho), 0.0)
    dE = (diag > 0).astype(np.float64)
    np.fill_diagonal(E, dE)
    return E, dE


# --- the trainers' float32 operations (the compiled trainers' bits) --------------------------------
def _relu_train_fwd(z: Array) -> Array:
    return np.where(z < 0, _F32(0), z).astype(_F32)  # as the kernels: ``z < 0 ? 0 : z`` (keeps -0, NaN)


def _relu_train_bwd(z: Array, e: Array) -> Array:
    return np.where(z > 0, e, _F32(0)).astype(_F32)


def _identity_train_fwd(z: Array) -> Array:
    return z


def _identity_train_bwd(z: Array, e: Array) -> Array:
    return e


def _smooth_train(fwd_name: str, bwd_name: str, formula: str) -> TrainOps:
    """The trainers' float32 ops of a smooth activation: fastpoly's own functions (:mod:`fastpoly.stream.fmath_train`)."""
    def forward(z: Array) -> Array:
        from fastpoly.stream import fmath_train

        return getattr(fmath_train, fwd_name)(z)

    def backward(z: Array, e: Array) -> Array:
        from fastpoly.stream import fmath_train

        return getattr(fmath_train, bwd_name)(z, e)

    return TrainOps(forward, backward, formula)


_TANH_TRAIN = _smooth_train("tanh32", "d_tanh32", "a = tanh32(z) = -m / (2 + m), m = expm1_32(-2|z|), sign of z; "
                            "d = e * ((4E / (1 + E)) / (1 + E)), E = exp32(-2|z|)")
_ERF_TRAIN = _smooth_train("erf32", "d_erf32", "a = erf32(z) (|z| < 1: z + z Q(z^2); < 3.92: 1 - exp32(P(|z| - 2.46)); "
                           "else 1); d = e * (2/sqrt(pi)) * fma(-lo, E, E), E = exp32(-hi), hi + lo = z*z")
_SIGMOID_TRAIN = _smooth_train("sigmoid32", "d_sigmoid32", "a = sigmoid32(z) = (1 | E) / (1 + E), E = exp32(-|z|); "
                               "d = e * ((E / (1 + E)) / (1 + E))")
_RELU_TRAIN = TrainOps(_relu_train_fwd, _relu_train_bwd, "a = (z < 0 ? 0 : z); d = (z > 0 ? e : 0)")
_IDENTITY_TRAIN = TrainOps(_identity_train_fwd, _identity_train_bwd, "a = z; d = e")


def _support(**uses: str) -> Mapping[str, frozenset[str]]:
    """``_support(sample="numpy numba cupy", ...)``: the support column of one row."""
    for use, backends in uses.items():
        assert use in USES and set(backends.split()) <= set(BACKENDS), (use, backends)
    return MappingProxyType({u: frozenset(b.split()) for u, b in uses.items()})


_EVERY = "numpy numba cupy"
#: where the smooth activations train (their float32 functions in the NumPy twin, Numba and CUDA)
_TRAIN_SMOOTH = _EVERY

#: the table (codes 0..4 are the sampler's; never renumber: they are part of compiled kernels)
TABLE: Mapping[str, Activation] = MappingProxyType({a.name: a for a in (
    Activation("relu", 0, "max(z, 0)", _relu_ref,
               _via64(lambda z: (z > 0).astype(np.float64)), exact=True,
               support=_support(sample=_EVERY, train=_EVERY, evaluate=_EVERY, nngp="numpy"),
               elementwise=lambda z: np.maximum(z, 0), nngp=_nngp_relu, train=_RELU_TRAIN),
    Activation("tanh", 1, "tanh(z)", _via64(np.tanh),
               _via64(lambda z: 1.0 - np.tanh(z) ** 2), exact=False,
               support=_support(sample=_EVERY, train=_TRAIN_SMOOTH, evaluate=_EVERY), elementwise=np.tanh,
               train=_TANH_TRAIN),
    Activation("erf", 2, "erf(z)", _via64(_erf64),
               _via64(lambda z: _SQRT_2_OVER_PI * np.exp(-z * z)), exact=False,
               support=_support(sample=_EVERY, train=_TRAIN_SMOOTH, evaluate=_EVERY, nngp="numpy"), nngp=_nngp_erf,
               train=_ERF_TRAIN),
    Activation("sign", 3, "sign(z) in {-1, 0, 1}", _sign_ref,
               _via64(lambda z: np.zeros_like(z)), exact=True,
               support=_support(sample=_EVERY, evaluate=_EVERY, nngp="numpy"), nngp=_nngp_sign),
    Activation("identity", 4, "z", _identity_ref,
               _via64(lambda z: np.ones_like(z)), exact=True,
               support=_support(sample=_EVERY, train=_EVERY, evaluate=_EVERY, nngp="numpy"),
               elementwise=lambda z: z, nngp=_nngp_identity, train=_IDENTITY_TRAIN),
    Activation("square", 5, "z**2", _same(lambda z: z * z),
               _via64(lambda z: 2.0 * z), exact=True, support=_support(evaluate="numpy"),
               elementwise=lambda z: z * z),
    Activation("softplus", 6, "log(1 + exp(z))", _same(_softplus),
               _via64(_sigmoid), exact=False, support=_support(evaluate="numpy"), elementwise=_softplus),
    Activation("exp", 7, "exp(z)", _same(np.exp),
               _via64(np.exp), exact=False, support=_support(evaluate="numpy"), elementwise=np.exp),
    Activation("sigmoid", 8, "1 / (1 + exp(-z))", _same(_sigmoid),
               _via64(lambda z: _sigmoid(z) * (1.0 - _sigmoid(z))), exact=False,
               support=_support(train=_TRAIN_SMOOTH, evaluate="numpy"), elementwise=_sigmoid, train=_SIGMOID_TRAIN),
    Activation("silu", 9, "z * sigmoid(z)", _same(lambda z: z * _sigmoid(z)),
               _via64(lambda z: _sigmoid(z) * (1.0 + z * (1.0 - _sigmoid(z)))), exact=False,
               support=_support(evaluate="numpy"), elementwise=lambda z: z * _sigmoid(z)),
    Activation("gelu", 10, "z * Phi(z)", _same(_gelu64),
               _via64(lambda z: _ndtr64(z) + z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)),
               exact=False, support=_support(evaluate="numpy"), elementwise=_gelu64),
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


_USE_WORDS = {"sample": "sampling", "train": "training", "evaluate": "network evaluation",
              "nngp": "the closed-form NNGP kernel"}


def supported(use: str, backend: str = "numpy") -> tuple[str, ...]:
    """Names of the activations ``backend`` implements for ``use`` (in code order)."""
    if use not in USES:
        raise ValueError(f"unknown activation use {use!r}; valid: {', '.join(USES)}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    return tuple(n for n, a in sorted(TABLE.items(), key=lambda kv: kv[1].code) if a.supports(use, backend))


def codes_for(use: str, backend: str = "numpy") -> Mapping[str, int]:
    """``name -> code`` of the activations ``backend`` implements for ``use`` (read-only)."""
    return MappingProxyType({n: TABLE[n].code for n in supported(use, backend)})


def check_supported(name: str, use: str, backend: str | None = None) -> Activation:
    """The table row of ``name`` if ``backend`` implements it for ``use`` (None: the NumPy reference).

    Raises
    ------
    ValueError
        For an unknown name, or one not supported there; the message lists what is.
    """
    ok = supported(use, backend or "numpy")
    a = TABLE.get(name) if isinstance(name, str) else None
    if a is None:
        raise ValueError(f"unknown activation {name!r}; valid activations for {_USE_WORDS[use]}: {', '.join(ok)}")
    if name not in ok:
        where = f" on the {backend} backend" if backend else ""
        what = "has no closed-form NNGP map" if use == "nngp" else f"is not supported for {_USE_WORDS[use]}{where}"
        raise ValueError(f"activation {name!r} {what}; supported activations: {', '.join(ok)}")
    return a


def cuda_preamble() -> str:
    """The text of ``kernels/activations.cuh``.

    One ``#define FP_ACT_<NAME> <code>`` per activation, and per use the bit mask of the codes
    the cupy backend implements (``FP_ACTMASK_<USE>``: bit ``code`` set), which the kernels test
    instead of keeping lists of their own.
    """
    lines = [
        "// GENERATED from the activation table in fastpoly/activations.py (cuda_preamble()). Do not edit;",
        "// regenerate: python -c 'import fastpoly.activations as a; print(a.cuda_preamble(), end=\"\")' > kernels/activations.cuh",
        "// tests/model/test_activations.py fails when this file is stale, and when a kernel defines or uses",
        "// an activation code that is not generated here.",
        "#pragma once",
        "",
    ]
    for name, a in sorted(TABLE.items(), key=lambda kv: kv[1].code):
        lines.append(f"#define FP_ACT_{name.upper()} {a.code}  // {a.formula}")
    lines.append("")
    lines.append("// codes the CUDA kernels implement, per use (bit `code` set): Activation.support[use] has 'cupy'")
    for use in USES:
        names = supported(use, "cupy")
        mask = sum(1 << TABLE[n].code for n in names)
        lines.append(f"#define FP_ACTMASK_{use.upper()} 0x{mask:x}u  // {', '.join(names) or 'none'}")
    return "\n".join(lines) + "\n"


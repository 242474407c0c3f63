"""Gate-level builders (public, for research use) and reference gate formulas.

Every builder returns a small :class:`~fastpoly.poly.network.PolyNetwork` (with
``report()`` and a certified bound over its ``domain``):

* :func:`multiply` -- ``u*v`` with 4 neurons (``docs/design.md#polynomial-gates``);
* :func:`square` -- ``u^2`` with 2 neurons and an output bias (3 bias-free);
* :func:`identity` -- the carry gate ``[sigma(b+lam x) - sigma(b-lam x)] / (2 lam sigma'(b))``;
* :func:`shallow_product` -- ``x1...xn`` with ``2^n`` neurons, one hidden layer;
* :func:`shallow_monomial` -- ``prod x_i^r_i`` with ``prod (r_i+1)`` neurons (bias-free count);
* :func:`relu_square`, :func:`relu_product` -- Yarotsky's constructions with ``m`` teeth;
* :func:`bit_gate` -- LTR Eq. 13, ``prod x_i ~ sigmoid(-beta (k - 1/2 - sum x_i))`` on bits.

Reference formulas: :func:`multiply_value` (pairwise evaluation, exactly symmetric),
:func:`yarotsky_square_value`, and :func:`evaluate_structured_exact` (exact rational
evaluation of networks with piecewise-linear / polynomial activations).
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from fastpoly.network import Layer
from fastpoly.poly.compile import compile_polynomial
from fastpoly.poly.network import PolyNetwork
from fastpoly.poly.polynomial import Polynomial
from fastpoly.poly.smooth import get_smooth
from fastpoly.poly.structured import ACT, SparseLayer, StructuredNetwork

__all__ = ["multiply", "square", "identity", "shallow_product", "shallow_monomial", "relu_square",
           "relu_product", "bit_gate", "multiply_value", "yarotsky_square_value",
           "evaluate_structured_exact", "neuron_counts", "bit_gate_beta"]


def _compile(poly, **kw):
    return compile_polynomial(poly, **kw)


def multiply(activation="softplus", lam="auto", bias="paper", dtype="float64", centered=False,
             domain=(-1, 1)):
    """The multiplication gate ``m(u, v) ~ u v`` as a 2-input network (4 hidden neurons).

    Parameters
    ----------
    activation : str
        Any smooth activation (``"softplus"``, ``"exp"``, ``"silu"``, ``"gelu"``, ``"tanh"``,
        ``"sigmoid"``, ``"square"``).
    lam : "auto" or float
        Gate scale lambda (``"auto"``: minimise the certified bound over ``domain``).
    bias : "paper", "fourth", "auto" or float
        Bias point b (``sigma''(b) = 0`` raises ``ValueError``).
    dtype, centered, domain
        As in :func:`fastpoly.poly.compile_polynomial`.

    Returns
    -------
    PolyNetwork
    """
    if activation == "relu":
        raise ValueError("use relu_product(m) for the ReLU multiplication gate")
    return _compile("x0*x1", activation=activation, lam=lam, bias=bias, dtype=dtype,
                    centered=centered, domain=domain)


def square(activation="softplus", lam="auto", bias="paper", dtype="float64", centered=False,
           domain=(-1, 1)):
    """The square gate ``[sigma(b+lam u) + sigma(b-lam u) - 2 sigma(b)] / (sigma''(b) lam^2)``.

    (R&T print ``1/(2 sigma'')``, which gives ``u^2/2``: an erratum, corrected here.)
    Parameters as in :func:`multiply`; returns a 1-input :class:`PolyNetwork`.
    """
    if activation == "relu":
        raise ValueError("use relu_square(m) for the ReLU square")
    return _compile("x0**2", activation=activation, lam=lam, bias=bias, dtype=dtype,
                    centered=centered, domain=domain)


def identity(activation="softplus", lam="auto", dtype="float64", centered=False, domain=(-1, 1)):
    """The identity ("carry") gate ``[sigma(b+lam x) - sigma(b-lam x)] / (2 lam sigma'(b))``.

    ``b`` is the activation's carry point (0 for softplus / SiLU / GELU / exp, where
    softplus, SiLU and GELU are exact; artanh(1/sqrt3) for tanh and ln(2+sqrt3) for
    sigmoid, where sigma'''(b) = 0; 1 for the square).  ReLU: ``relu(x) - relu(-x)``.
    """
    return _compile("x0", activation=activation, lam=lam, dtype=dtype, centered=centered,
                    domain=domain, _min_levels=1, **({"_teeth": 0} if activation == "relu" else {}))


def shallow_product(n, activation="softplus", lam="auto", bias="auto", dtype="float64",
                    centered=False, domain=(-1, 1)):
    """The product ``x0 x1 … x(n-1)`` with one hidden layer of ``2^n`` neurons (sign patterns)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    poly = "*".join(f"x{i}" for i in range(int(n)))
    return _compile(poly, activation=activation, construction="shallow", lam=lam, bias=bias,
                    dtype=dtype, centered=centered, domain=domain, _min_levels=1)


def shallow_monomial(exponents, activation="softplus", lam="auto", bias="auto", dtype="float64",
                     centered=False, domain=(-1, 1)):
    """``prod x_i^r_i`` with one hidden layer: ``prod (r_i + 1)`` neurons in the bias-free count.

    Neuron arguments ``b + lam sum_i (r_i - 2 j_i) x_i`` with weights
    ``prod (-1)^j_i C(r_i, j_i)``, divided by ``2^N N! c_N lam^N`` (``N = sum r_i``).
    """
    r = tuple(int(x) for x in exponents)
    if not r or any(x < 0 for x in r) or sum(r) == 0:
        raise ValueError(f"exponents must be non-negative integers with a positive sum, got {exponents!r}")

    return _compile(Polynomial({r: 1}), activation=activation, construction="shallow", lam=lam,
                    bias=bias, dtype=dtype, centered=centered, domain=domain, _min_levels=1)


def _check_m(m):
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 0:
        raise ValueError(f"m (number of teeth) must be a non-negative integer, got {m!r}")
    return int(m)


def relu_square(m, M=1.0, dtype="float64"):
    """Yarotsky's ``x^2 ~ M^2 f_m(|x|/M)`` on ``[-M, M]`` (``0 <= f_m - x^2 <= M^2 2^(-2m-2)``)."""
    m = _check_m(m)
    M = float(M)
    if not (math.isfinite(M) and M > 0):
        raise ValueError(f"M must be a positive number, got {M!r}")
    return _compile("x0**2", activation="relu", dtype=dtype, domain=(-M, M), _teeth=m)


def relu_product(m, M=1.0, dtype="float64"):
    """Yarotsky's product ``M^2 [f_m(|x+y|/2M) - f_m(|x-y|/2M)]`` on ``[-M, M]^2``.

    Error at most ``M^2 2^(-2m-2)``; exactly 0 on the axes (in exact arithmetic).
    """
    m = _check_m(m)
    M = float(M)
    if not (math.isfinite(M) and M > 0):
        raise ValueError(f"M must be a positive number, got {M!r}")
    return _compile("x0*x1", activation="relu", dtype=dtype, domain=(-M, M), _teeth=m)


def bit_gate_beta(decimals):
    """Smallest safe ``beta`` for ``decimals`` correct digits: ``beta > 2 D ln 10``.

    (LTR print ``D ln 10``, an erratum: the error is ``sigmoid(-beta/2) < e^(-beta/2)``.)
    """
    if isinstance(decimals, bool) or not isinstance(decimals, (int, np.integer)) or decimals < 1:
        raise ValueError(f"decimals must be a positive integer, got {decimals!r}")
    # a small margin (error factor e^(-5e-4)) so the floating-point output also meets it
    return 2 * decimals * math.log(10) + 1e-3


def bit_gate(k, beta=None, decimals=None, dtype="float64"):
    """LTR's bit-product gate: ``prod x_i ~ sigmoid(beta (sum x_i - k + 1/2))`` for ``x in {0,1}^k``.

    One sigmoid neuron; the error on bits is at most ``sigmoid(-beta/2)``.

    Parameters
    ----------
    k : int
        Number of input bits.
    beta : float, optional
        Gate steepness; default from ``decimals`` (``beta > 2 D ln 10``), else ``D = 6``.
    decimals : int, optional
        Required number of correct decimals D.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if beta is not None and decimals is not None:
        raise ValueError("give beta or decimals, not both")
    if beta is None:
        beta = bit_gate_beta(6 if decimals is None else decimals)
    beta = float(beta)
    if not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a positive number, got {beta!r}")
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    W1 = np.full((1, k), beta)
    b1 = np.array([-beta * (k - 0.5)])
    W2, b2 = np.ones((1, 1)), np.zeros(1)
    sn = StructuredNetwork([SparseLayer.from_dense(W1, b1, "sigmoid"), SparseLayer.from_dense(W2, b2)])
    dense = [Layer(W1.astype(dt), b1.astype(dt), "sigmoid"), Layer(W2.astype(dt), b2.astype(dt))]
    bound = 1.0 / (1.0 + math.exp(beta / 2))
    info = {"certified_error": bound * (1 + 1e-12) + 16 * (2.0**-53 if dt == np.float64 else 2.0**-24),
            "gate_neurons": 1, "construction": "bit gate (LTR Eq. 13)", "name": f"x0*...*x{k - 1} on bits",
            "beta": beta}
    return PolyNetwork(dense, {"gate": "bit"}, sn, "sigmoid", dt, None, np.tile([0.0, 1.0], (k, 1)), info)


# ------------------------------------------------------------------------- reference formulas
def multiply_value(u, v, activation="softplus", lam=0.1, bias=None):
    """The exact-arithmetic gate formula, evaluated pairwise in float64.

    ``{[sigma(b+lam(u+v)) + sigma(b-lam(u+v))] - [sigma(b+lam(u-v)) + sigma(b-lam(u-v))]}
    / (4 sigma''(b) lam^2)``.  The pairwise order makes the symmetries exact:
    ``m(u,v) = m(v,u) = m(-u,-v) = -m(-u,v)``.
    """
    act = get_smooth(activation)
    b = act.paper_bias if bias is None else float(bias)
    s2 = act.deriv_exact(2, b)
    if abs(s2) < 1e-12:
        raise ValueError(f"degenerate bias b = {b:g} for {activation}: sigma''(b) = 0")
    f = ACT[activation]
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    p = lam * (u + v)
    q = lam * (u - v)
    bb = np.float64(b)
    return ((f(bb + p) + f(bb - p)) - (f(bb + q) + f(bb - q))) / (4 * s2 * lam * lam)


def yarotsky_square_value(x, m):
    """Yarotsky's ``f_m(x) = x - sum_{s<=m} g_s(x) / 4^s`` on ``[0, 1]`` (exact for Fractions)."""
    def tooth(y):
        return 2 * max(y, 0) - 4 * max(y - Fraction(1, 2), 0) + 2 * max(y - 1, 0)

    if isinstance(x, (Fraction, int)):
        g, out = x, x
        for s in range(1, m + 1):
            g = tooth(g)
            out = out - g / Fraction(4) ** s
        return out
    x = np.asarray(x, dtype=np.float64)
    g, out = x.copy(), x.copy()
    for s in range(1, m + 1):
        g = 2 * np.maximum(g, 0) - 4 * np.maximum(g - 0.5, 0) + 2 * np.maximum(g - 1, 0)
        out = out - g / 4.0**s
    return out


def evaluate_structured_exact(snet, X):
    """Exact rational outputs of a structured network with ``relu``/``square``/``identity`` layers.

    Weights and inputs are taken exactly (binary fractions); returns a list of lists
    of ``Fraction`` (one row per input row).
    """
    acts = {"relu": lambda z: max(z, 0), "square": lambda z: z * z, "identity": lambda z: z}
    out = []
    for row in np.asarray(X, dtype=np.float64):
        h = [Fraction(float(x)) for x in row]
        for L in snet.layers:
            if L.activation not in acts:
                raise ValueError(f"exact evaluation supports relu/square/identity, not {L.activation!r}")
            f = acts[L.activation]
            nh = []
            for j in range(L.fan_out):
                z = Fraction(float(L.bias[j]))
                for p in range(L.indptr[j], L.indptr[j + 1]):
                    z += Fraction(float(L.data[p])) * h[L.indices[p]]
                if L.shift is not None:
                    s = Fraction(float(L.shift[j]))
                    nh.append(f(s + z) - f(s))
                else:
                    nh.append(f(z))
            h = nh
        out.append(h)
    return out


def neuron_counts(n, construction="tree"):
    """Hidden neurons of the product ``x1...xn``: ``(with output bias, bias-free, layers)``.

    ``"shallow"``: ``2^n`` in one layer (formula; no network is built).  ``"tree"``: the
    compiled softplus tree (``4(n-1)`` gate neurons plus carries in ``ceil(log2 n)`` layers).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if construction == "shallow":
        return 2**n, 2**n, 1
    if construction != "tree":
        raise ValueError(f"construction must be 'tree' or 'shallow', got {construction!r}")
    net = _compile("*".join(f"x{i}" for i in range(n)), lam=0.01, bias="paper")
    r = net.report()
    return r.hidden_neurons, r.hidden_neurons_bias_free, r.hidden_layers

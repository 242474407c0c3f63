"""Activation calculus for the polynomial-network compiler (NumPy + mpmath, no SymPy).

For every activation usable in a gate this module provides

* ``deriv(k, z)``: the k-th derivative, vectorised float64 (closed forms: the
  derivatives of sigmoid / tanh are integer polynomials in sigmoid / tanh, those
  of GELU involve Hermite polynomials);
* ``deriv_exact(k, b)``: the same at one point in high precision (mpmath, 40 digits),
  used for Taylor coefficients ``c_k = sigma^(k)(b) / k!`` and gate scales;
* ``sup_abs(k, b, w)``: a rigorous upper bound of ``max |sigma^(k)(z)|`` over
  ``|z - b| <= w`` (dense grid plus a Lipschitz correction from a rigorous global
  bound of ``|sigma^(k+1)|``), tabulated in ``w`` and monotone, so it is cheap to
  call from the lambda search;
* the special bias points of ``docs/design.md#polynomial-gates`` (paper's choice, the shift
  for sigma''(0) = 0, the fourth-order point sigma''''(b) = 0, the carry point).
"""
from __future__ import annotations

import math
from functools import cache

import numpy as np

__all__ = ["SMOOTH", "ALL_ACTIVATIONS", "get_smooth", "SmoothActivation"]

_MP_DPS = 40


def _mp():
    import mpmath

    return mpmath


# --------------------------------------------------------------------------- integer polynomials
@cache
def _logistic_poly(k):
    """Integer coefficients (low->high) of P_k with sigmoid^(k)(z) = P_k(sigmoid(z))."""
    p = (0, 1)  # s
    for _ in range(k):
        dp = [i * p[i] for i in range(1, len(p))] or [0]
        # dp * (s - s^2)
        out = [0] * (len(dp) + 2)
        for i, c in enumerate(dp):
            out[i + 1] += c
            out[i + 2] -= c
        p = tuple(out)
    return p


@cache
def _tanh_poly(k):
    """Integer coefficients of T_k with tanh^(k)(z) = T_k(tanh(z))."""
    p = (0, 1)
    for _ in range(k):
        dp = [i * p[i] for i in range(1, len(p))] or [0]
        out = [0] * (len(dp) + 2)
        for i, c in enumerate(dp):
            out[i] += c
            out[i + 2] -= c
        p = tuple(out)
    return p


@cache
def _hermite_poly(n):
    """Probabilists' Hermite He_n (integer coefficients, low->high)."""
    a, b = (1,), (0, 1)
    if n == 0:
        return a
    for m in range(1, n):
        nb = [0] * (len(b) + 1)
        for i, c in enumerate(b):
            nb[i + 1] += c
        for i, c in enumerate(a):
            nb[i] -= m * c
        a, b = b, tuple(nb)
    return b


def _horner(coeffs, x):
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(x)
    for c in reversed(coeffs):
        out = out * x + float(c)
    return out


def _horner_err(coeffs, x):
    """Rigorous bound of the float64 Horner rounding error for |x| <= 1."""
    return 2.2e-16 * (2 * len(coeffs) + 2) * float(sum(abs(c) for c in coeffs))


def _sum_abs(coeffs):
    return float(sum(abs(c) for c in coeffs))


def _sigmoid64(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _sigmoid_k(k, z):
    return _horner(_logistic_poly(k), _sigmoid64(z))


def _sigmoid_k_bound(k):
    """Rigorous global bound of |sigmoid^(k)| (s in [0, 1])."""
    return _sum_abs(_logistic_poly(k))


# ------------------------------------------------------------------------------ activations
class SmoothActivation:
    """Calculus of one activation (see the module docstring).

    Attributes
    ----------
    name : str
    paper_bias : float
        The papers' bias point (0, or the shift when sigma''(0) = 0).
    fourth_bias : float or None
        A point with sigma''''(b) = 0 and sigma''(b) != 0 (error O(lambda^4)).
    carry_bias : float
        Bias of the identity ("carry") gate: sigma'(b) != 0, preferably sigma'''(b) = 0.
    odd_identity : bool
        ``sigma(b+t) - sigma(b-t) == 2 sigma'(b) t`` exactly at ``b = carry_bias``
        (softplus, SiLU, GELU: ``sigma(t) - sigma(-t) = t``; square at b = 1).
    polynomial_degree : int or None
        Degree when sigma is a polynomial (square: 2), else None.
    """

    def __init__(self, name, f, fk, fk_bound, fk_exact, paper_bias, fourth_bias, carry_bias,
                 odd_identity=False, polynomial_degree=None, monotone_exp=False):
        self.name = name
        self._f = f
        self._fk = fk
        self._fk_bound = fk_bound
        self._fk_exact = fk_exact
        self.paper_bias = float(paper_bias)
        self.fourth_bias = None if fourth_bias is None else float(fourth_bias)
        self.carry_bias = float(carry_bias)
        self.odd_identity = bool(odd_identity)
        self.polynomial_degree = polynomial_degree
        self._monotone_exp = monotone_exp
        self._tables = {}

    def __repr__(self):
        return f"SmoothActivation({self.name!r})"

    # -- values ------------------------------------------------------------------
    def deriv(self, k, z):
        """k-th derivative at ``z`` (float64, vectorised; k = 0 is the function)."""
        if k == 0:
            return self._f(np.asarray(z, dtype=np.float64))
        return self._fk(k, np.asarray(z, dtype=np.float64))

    def deriv_exact(self, k, b):
        """k-th derivative at the float ``b`` in 40-digit arithmetic, returned as a float."""
        mp = _mp()
        with mp.workdps(_MP_DPS):
            return float(self._fk_exact(k, mp.mpf(float(b))))

    def taylor_coeff(self, k, b):
        """``sigma^(k)(b) / k!`` (high precision, returned as float)."""
        mp = _mp()
        with mp.workdps(_MP_DPS):
            return float(self._fk_exact(k, mp.mpf(float(b))) / mp.factorial(k))

    # -- rigorous sup bounds -----------------------------------------------------------
    def _global_bound(self, k, lo, hi):
        """Rigorous bound of |sigma^(k)| over [lo, hi]."""
        return self._fk_bound(k, lo, hi)

    def sup_abs_interval(self, k, lo, hi, n=513):
        """Rigorous upper bound of ``max |sigma^(k)(z)|`` over ``[lo, hi]``."""
        if self.polynomial_degree is not None and k > self.polynomial_degree:
            return 0.0
        if self._monotone_exp:
            return float(np.exp(hi)) * (1 + 1e-14)
        z = np.linspace(lo, hi, n)
        vals = np.abs(self.deriv(k, z))
        h = (hi - lo) / (n - 1)
        lip = self._global_bound(k + 1, lo, hi)
        slack = self._eval_slack(k, lo, hi)
        return float(vals.max() * (1 + 1e-12) + 0.5 * h * lip + slack)

    def _eval_slack(self, k, lo, hi):
        return 1e-13 * np.maximum(1.0, self._global_bound(k, lo, hi))

    _H = 1.0 / 1024      # grid step of the sup tables
    _L = 64.0            # half-width of the tabulated neighbourhood (tails are monotone beyond)

    def _table(self, k, b):
        key = (k, float(b))
        tab = self._tables.get(key)
        if tab is None:
            h, L = self._H, self._L
            n = int(L / h)
            off = np.arange(n + 1) * h
            right = np.abs(self.deriv(k, b + off))
            left = np.abs(self.deriv(k, b - off))
            cm = np.maximum.accumulate(np.maximum(right, left))
            # Lipschitz correction: h/2 * sup|f^(k+1)|, the latter from the grid plus h/2 * G_{k+2}
            def gmax(kk):
                return max(np.abs(self.deriv(kk, b + off)).max(), np.abs(self.deriv(kk, b - off)).max())

            # sup|f^(k+1)| <= max_grid|f^(k+1)| + h/2 (max_grid|f^(k+2)| + h/2 G_{k+3})
            s2 = gmax(k + 2) * (1 + 1e-9) + 0.5 * h * self._global_bound(k + 3, b - L, b + L)
            s1 = gmax(k + 1) * (1 + 1e-9) + 0.5 * h * s2
            corr = 0.5 * h * s1
            tab = cm * (1 + 1e-12) + corr + self._eval_slack(k, b - L, b + L)
            self._tables[key] = tab
        return tab

    def sup_abs(self, k, b, w):
        """Rigorous bound of ``max |sigma^(k)(z)|`` over ``|z - b| <= w`` (vectorised in ``w``).

        A fine grid (step 1/1024) of ``|sigma^(k)|`` around ``b`` with running maxima,
        a Lipschitz correction, and for ``w > 64`` the (monotone) tails' endpoint values.
        """
        w = np.abs(np.asarray(w, dtype=np.float64))
        if self.polynomial_degree is not None and k > self.polynomial_degree:
            return np.zeros_like(w)
        if self._monotone_exp:
            with np.errstate(over="ignore"):
                return np.exp(b + w) * (1 + 1e-14)
        tab = self._table(k, b)
        idx = np.minimum(np.ceil(w / self._H).astype(np.int64), tab.size - 1)
        out = tab[idx]
        big = w > self._L
        if np.any(big):
            wb = w[big] if w.ndim else w
            ends = np.maximum(np.abs(self.deriv(k, b + wb)), np.abs(self.deriv(k, b - wb)))
            wmax = float(np.max(wb))
            ends = ends * (1 + 1e-12) + self._eval_slack(k, b - wmax, b + wmax)
            if w.ndim:
                out = out.copy()
                out[big] = np.maximum(out[big], ends)
            else:
                out = max(float(out), float(ends))
        return out


# ---- softplus ------------------------------------------------------------------------------
def _softplus(z):
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def _softplus_k(k, z):
    return _sigmoid_k(k - 1, z)


def _softplus_bound(k, lo, hi):
    if k == 0:
        return float(max(abs(_softplus(np.float64(lo))), abs(_softplus(np.float64(hi)))))
    return _sigmoid_k_bound(k - 1)


def _mp_sigmoid(b):
    mp = _mp()
    return 1 / (1 + mp.exp(-b))


def _mp_poly(coeffs, x):
    out = 0
    for c in reversed(coeffs):
        out = out * x + c
    return out


def _softplus_exact(k, b):
    mp = _mp()
    if k == 0:
        return mp.log1p(mp.exp(b)) if b < 30 else b + mp.log1p(mp.exp(-b))
    return _mp_poly(_logistic_poly(k - 1), _mp_sigmoid(b))


# ---- sigmoid ------------------------------------------------------------------------------
def _sigmoid_bound(k, lo, hi):
    return _sigmoid_k_bound(k)


def _sigmoid_exact(k, b):
    return _mp_poly(_logistic_poly(k), _mp_sigmoid(b))


# ---- tanh ---------------------------------------------------------------------------------
def _tanh_k(k, z):
    return _horner(_tanh_poly(k), np.tanh(z))


def _tanh_bound(k, lo, hi):
    return _sum_abs(_tanh_poly(k))


def _tanh_exact(k, b):
    mp = _mp()
    return _mp_poly(_tanh_poly(k), mp.tanh(b))


# ---- exp ----------------------------------------------------------------------------------
def _exp_k(k, z):
    return np.exp(z)


def _exp_bound(k, lo, hi):
    return float(np.exp(hi)) * (1 + 1e-14)


def _exp_exact(k, b):
    return _mp().exp(b)


# ---- silu ---------------------------------------------------------------------------------
def _silu(z):
    return z * _sigmoid64(z)


def _silu_k(k, z):
    return z * _sigmoid_k(k, z) + k * _sigmoid_k(k - 1, z)


def _silu_bound(k, lo, hi):
    m = max(abs(lo), abs(hi))
    return m * _sigmoid_k_bound(k) + (k * _sigmoid_k_bound(k - 1) if k else 0.0)


def _silu_exact(k, b):
    s = _mp_sigmoid(b)
    out = b * _mp_poly(_logistic_poly(k), s)
    if k:
        out += k * _mp_poly(_logistic_poly(k - 1), s)
    return out


# ---- gelu ---------------------------------------------------------------------------------
def _Phi(z):
    from scipy.special import ndtr

    return ndtr(z)


def _phi(z):
    return np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def _Phi_k(m, z):
    """m-th derivative of the normal CDF."""
    if m == 0:
        return _Phi(z)
    he = _hermite_poly(m - 1)
    sign = -1.0 if (m - 1) % 2 else 1.0
    return sign * _horner(he, z) * _phi(z)


def _he_phi_bound(n):
    """Rigorous bound of |He_n(z) phi(z)| over the reals."""
    tot = 0.0
    for i, c in enumerate(_hermite_poly(n)):
        if c:
            peak = 1.0 if i == 0 else (i / math.e) ** (i / 2)
            tot += abs(c) * peak
    return tot / math.sqrt(2 * math.pi)


def _Phi_k_bound(m):
    return 1.0 if m == 0 else _he_phi_bound(m - 1)


def _gelu(z):
    return z * _Phi(z)


def _gelu_k(k, z):
    out = z * _Phi_k(k, z)
    if k:
        out = out + k * _Phi_k(k - 1, z)
    return out


def _gelu_bound(k, lo, hi):
    m = max(abs(lo), abs(hi))
    return m * _Phi_k_bound(k) + (k * _Phi_k_bound(k - 1) if k else 0.0)


def _gelu_exact(k, b):
    mp = _mp()

    def Phik(m):
        if m == 0:
            return mp.ncdf(b)
        he = _hermite_poly(m - 1)
        sign = -1 if (m - 1) % 2 else 1
        return sign * _mp_poly(he, b) * mp.npdf(b)

    out = b * Phik(k)
    if k:
        out += k * Phik(k - 1)
    return out


# ---- square -------------------------------------------------------------------------------
def _square_k(k, z):
    if k == 1:
        return 2 * z
    if k == 2:
        return np.full_like(z, 2.0)
    return np.zeros_like(z)


def _square_bound(k, lo, hi):
    m = max(abs(lo), abs(hi))
    return [m * m, 2 * m, 2.0][k] if k <= 2 else 0.0


def _square_exact(k, b):
    mp = _mp()
    return [b * b, 2 * b, mp.mpf(2)][k] if k <= 2 else mp.mpf(0)


# Special points (docs/design.md#polynomial-gates; verified by tests with mpmath).
_LN_2_SQRT3 = math.log(2 + math.sqrt(3))           # 1.3169578969248166
_ATANH_1_SQRT3 = math.atanh(1 / math.sqrt(3))      # 0.6584789484624083
_ATANH_SQRT_2_3 = math.atanh(math.sqrt(2 / 3))     # 1.1462158347805889
_SIGMOID_4TH = 2 * _ATANH_SQRT_2_3                 # 2.2924316695611777

#: name -> SmoothActivation
SMOOTH = {
    "softplus": SmoothActivation("softplus", _softplus, _softplus_k, _softplus_bound, _softplus_exact,
                                 paper_bias=0.0, fourth_bias=_LN_2_SQRT3, carry_bias=0.0,
                                 odd_identity=True),
    "exp": SmoothActivation("exp", np.exp, _exp_k, _exp_bound, _exp_exact,
                            paper_bias=0.0, fourth_bias=None, carry_bias=0.0, monotone_exp=True),
    "silu": SmoothActivation("silu", _silu, _silu_k, _silu_bound, _silu_exact,
                             paper_bias=0.0, fourth_bias=None, carry_bias=0.0, odd_identity=True),
    "gelu": SmoothActivation("gelu", _gelu, _gelu_k, _gelu_bound, _gelu_exact,
                             paper_bias=0.0, fourth_bias=None, carry_bias=0.0, odd_identity=True),
    "tanh": SmoothActivation("tanh", np.tanh, _tanh_k, _tanh_bound, _tanh_exact,
                             paper_bias=_ATANH_1_SQRT3, fourth_bias=_ATANH_SQRT_2_3,
                             carry_bias=_ATANH_1_SQRT3),
    "sigmoid": SmoothActivation("sigmoid", _sigmoid64, _sigmoid_k, _sigmoid_bound, _sigmoid_exact,
                                paper_bias=_LN_2_SQRT3, fourth_bias=_SIGMOID_4TH,
                                carry_bias=_LN_2_SQRT3),
    "square": SmoothActivation("square", lambda z: z * z, _square_k, _square_bound, _square_exact,
                               paper_bias=0.0, fourth_bias=None, carry_bias=1.0, odd_identity=True,
                               polynomial_degree=2),
}
# The fourth-order points of SiLU and GELU (numerical roots of sigma'''' near the origin)
# are filled in lazily by ``get_smooth`` (see ``_find_fourth``).

#: every activation name ``compile_polynomial`` accepts
ALL_ACTIVATIONS = tuple(SMOOTH) + ("relu",)


def _find_fourth(act):
    """A root of sigma'''' with sigma'' != 0 nearest the origin, by mpmath (None if not found)."""
    mp = _mp()
    z = np.linspace(-4, 4, 8001)
    d4 = act.deriv(4, z)
    best = None
    for i in np.flatnonzero(np.sign(d4[:-1]) * np.sign(d4[1:]) < 0):
        with mp.workdps(_MP_DPS):
            r = mp.findroot(lambda t: act._fk_exact(4, t), (mp.mpf(z[i]), mp.mpf(z[i + 1])),
                            solver="bisect" if False else "anderson")
            r = float(r)
        if abs(act.deriv_exact(2, r)) > 1e-3 and (best is None or abs(r) < abs(best)):
            best = r
    return best


def get_smooth(name):
    """The :class:`SmoothActivation` for ``name`` (ValueError if unknown or not smooth)."""
    try:
        act = SMOOTH[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unsupported activation {name!r} for a smooth gate; valid: {', '.join(SMOOTH)}"
        ) from None
    if act.fourth_bias is None and name in ("silu", "gelu") and not getattr(act, "_searched", False):
        act._searched = True
        act.fourth_bias = _find_fourth(act)
    return act

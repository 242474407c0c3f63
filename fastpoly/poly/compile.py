"""Compile a polynomial into a Lin-Tegmark-Rolnick gate network with a certified error bound.

Constructions (``docs/design.md#polynomial-gates``, ``#network-sizes``):

* ``"tree"``: every monomial is a balanced product tree (split into halves of
  total degree ceil(D/2), floor(D/2); equal halves become a *square* gate, so powers
  are built by repeated squaring).  Sub-products are shared across monomials; values
  that finish early are carried by identity gates; coefficients and the sum of the
  monomials are folded into the output affine map, the constant term into its bias.
* ``"shallow"``: one hidden layer; each monomial ``x^r`` is one merged sign-pattern
  block with ``prod (r_i + 1)`` neurons (``2^n`` for a product of n distinct inputs).
* ``depth=k``: Rolnick-Tegmark depth-k grouping: at layer i the remaining factors are
  grouped in groups of ``b_i = ceil(n_{i-1}^(1/(k-i+1)))`` and every group is one
  shallow block (``depth=1`` is ``"shallow"``).
* ``activation="relu"``: the tree with Yarotsky's sawtooth squares and the
  polarisation product (``m`` teeth from the target ``tol``).

Every smooth block (product, square, carry) is the shallow block
``sum_j W_j sigma(b + lam sum_i (r_i - 2 j_i) u_i) / (2^N N! c_N lam^N)``, whose
``lam`` is chosen per block (``lam="auto"``) to minimise the certified bound of
:mod:`fastpoly.poly.bounds` for the target dtype.
"""
from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fastpoly.network import Layer
from fastpoly.poly.bounds import block_bound, gamma, unit_roundoff
from fastpoly.poly.network import PolyNetwork
from fastpoly.poly.polynomial import Polynomial
from fastpoly.poly.smooth import ALL_ACTIVATIONS, get_smooth
from fastpoly.poly.structured import SparseLayer, StructuredNetwork

__all__ = ["compile_polynomial", "compile_polynomials", "CONSTRUCTIONS", "MAX_BLOCK_NEURONS"]

CONSTRUCTIONS = ("tree", "shallow")
#: largest shallow block built (prod (r_i + 1) neurons)
MAX_BLOCK_NEURONS = 1 << 16
_W_GRID = 2.0 ** np.arange(-34.0, 6.01, 0.25)
#: weight of the worst-case rounding terms in the lambda objective of ``lam="auto"``: the
#: truncation bound is tight while the rounding bound is about an order of magnitude above
#: typical rounding (random-walk sums, sub-ulp activation errors), so lambda balances the
#: truncation bound against 1/8 of the rounding bound.  This reproduces the measured
#: optima for the softplus gate on [-1,1]^2 (float64 2e-4, float32 3e-2); the *certified*
#: bound is unaffected.
ROUNDING_TYPICAL = 2.0**-3


# =============================================================================== values
class _Val:
    """A value carried as ``const + sum terms[j] * h_j`` over the neurons of one layer."""

    __slots__ = ("terms", "const", "A", "E", "S", "K")

    def __init__(self, terms, const, A, E, S, K):
        self.terms, self.const, self.A, self.E, self.S, self.K = terms, const, A, E, S, K

    @property
    def U(self):
        return self.A + self.E


class _Builder:
    def __init__(self, n_inputs, dtype, centered, activation):
        self.n_inputs = n_inputs
        self.dtype = np.dtype(dtype)
        self.u = unit_roundoff(dtype)
        self.centered = centered
        self.activation = activation
        self.layers = []
        self.cur = None
        self.folded_constants = 0
        self.gate_neurons = 0
        self.carry_neurons = 0
        self.lams = []
        #: block inputs' bounds -> (bias point, lambda) chosen for them (see _best_block)
        self.choices = {}

    def begin(self):
        self.cur = {"rows": [], "bias": [], "shift": []}

    def end(self):
        self.layers.append(self.cur)
        self.cur = None

    def neuron(self, lin, b, centered=False):
        """Add a neuron with pre-activation ``b + sum c * v`` (b goes to ``shift`` if centered).

        Returns ``(index, delta)``: delta bounds the rounding of its pre-activation.
        """
        row, bias, ssum, K = {}, (0.0 if centered else b), 0.0, 0
        for v, c in lin:
            for j, w in v.terms.items():
                row[j] = row.get(j, 0.0) + c * w
            bias += c * v.const
            ssum += abs(c) * v.S
            K += v.K
        cur = self.cur
        cur["rows"].append(row)
        cur["bias"].append(bias)
        cur["shift"].append(b if centered else None)
        delta = float(gamma(K + 3, self.u)) * (abs(bias) + ssum)
        return len(cur["rows"]) - 1, delta


# ========================================================================== smooth blocks
def _block_pattern(r):
    """Argument coefficients J (n, len r), integer weights W, and which rows are constant."""
    js = np.array(list(itertools.product(*[range(ri + 1) for ri in r])), dtype=np.int64)
    rr = np.asarray(r, dtype=np.int64)
    J = rr[None, :] - 2 * js
    W = np.array([math.prod((-1) ** int(j) * math.comb(int(ri), int(j)) for ri, j in zip(r, row))
                  for row in js], dtype=np.float64)
    const = ~np.any(J != 0, axis=1)
    return J, W, const


def _degenerate(act, N, b):
    """Whether the Taylor coefficient sigma^(N)(b) vanishes (so the block cannot work)."""
    d = act.deriv_exact(N, b)
    if act.polynomial_degree is not None and N > act.polynomial_degree:
        return True
    scale = max(1e-300, float(act.sup_abs(N, b, np.array(1.0))))
    return abs(d) <= 1e-9 * scale


def _smooth_block(bld, act, b, factors, A_out, lam_opt, role, odd_exact=False, final=True):
    """Emit one smooth block on the current layer; returns the output ``_Val`` and its lambda.

    ``factors``: list of (``_Val``, power); ``role``: "gate" or "carry" (for counts).
    """
    r = [p for _, p in factors]
    N = sum(r)
    nneu = math.prod(ri + 1 for ri in r)
    if nneu > MAX_BLOCK_NEURONS:
        raise ValueError(f"a shallow block for degree {N} would need {nneu} neurons "
                         f"(limit {MAX_BLOCK_NEURONS}); use construction='tree' or depth=k")
    J, W, const = _block_pattern(r)
    Jn, Wn = J[~const], W[~const]
    U = np.array([v.U for v, _ in factors])
    A = np.array([v.A for v, _ in factors])
    S = np.array([v.S for v, _ in factors])
    C = np.array([v.const for v, _ in factors])
    K = np.array([v.K for v, _ in factors], dtype=np.float64)
    cN = act.taylor_coeff(N, b)
    denom = 2.0**N * math.factorial(N) * cN
    prop = float(np.prod(U ** np.array(r)) - np.prod(A ** np.array(r)))
    u, centered = bld.u, bld.centered
    width = float(np.max(np.abs(Jn) @ U))
    dt = bld.dtype.type
    typical = ROUNDING_TYPICAL
    amp = abs(act.deriv_exact(1, act.paper_bias)) / max(abs(act.deriv_exact(2, act.paper_bias)), 1e-300)

    def evaluate(lams):
        lams = np.asarray([float(dt(x)) for x in lams])
        scale = 1.0 / (denom * lams**N)
        res = block_bound(act, b, Jn, Wn, scale, U, A, S, C, K, lams, centered, u, odd_exact)
        E = res["trunc"] + res["round"] + prop
        # lambda objective: truncation bound (tight) against a *typical* rounding size
        # (the worst-case rounding bound is ~1-2 orders pessimistic; see ROUNDING_TYPICAL)
        # the rounding a consumer makes when summing this output: gamma * S in value units,
        # amplified by ~ sigma'/(sigma'' lam') when the consumer is another gate
        proxy = gamma(Jn.shape[0] + 3, u) * res["S"]
        if not final and not centered:
            lam_next = lams * width / (2.0 * max(A_out + prop, 1e-300))
            proxy = proxy * (1.0 + amp / lam_next)
        obj = res["trunc"] + typical * (res["round"] + proxy)
        return lams, scale, res, E, obj

    if lam_opt == "auto":
        if act.polynomial_degree is not None:
            cand = [2.0 ** -math.ceil(math.log2(max(width, 1e-300)))]
        else:
            cand = list(_W_GRID / width)
        lams, scale, res, E, obj = evaluate(cand)
        obj = np.where(np.isfinite(obj), obj, np.inf)
        i = int(np.argmin(obj))
        lam = float(lams[i])
    else:
        lam = float(dt(lam_opt))
    lams, scale, res, E, obj = evaluate([lam])
    lam, scale, E = float(lams[0]), float(scale[0]), float(E[0])
    if not np.isfinite(E):
        E = math.inf
    H = res["H"][0]
    # neurons
    terms, const_out = {}, 0.0
    sig_b = act.deriv_exact(0, b)
    k = 0
    for row, w, is_const in zip(J, W, const):
        if is_const:
            bld.folded_constants += 1
            if not centered:
                const_out += scale * w * sig_b
            continue
        lin = [(v, lam * int(c)) for (v, _), c in zip(factors, row) if c != 0]
        idx, _ = bld.neuron(lin, b, centered)
        terms[idx] = scale * w
        k += 1
    if role == "carry":
        bld.carry_neurons += k
    else:
        bld.gate_neurons += k
    bld.lams.append(lam)
    S_out = float(np.sum(np.abs(scale * Wn) * H))
    return _Val(terms, const_out, A_out, E, S_out, k), lam, b


def _bias_candidates(act, bias, N, role):
    """Bias points to try for a block of degree N (raises ValueError for degenerate choices)."""
    if role == "carry":
        return [act.carry_bias]
    if bias == "auto":
        cands = [act.paper_bias]
        if act.fourth_bias is not None:
            cands.append(act.fourth_bias)
        cands += [act.carry_bias, 0.5, 1.0, 1.5]
        out = []
        for c in cands:
            if c not in out and not _degenerate(act, N, c):
                out.append(c)
        if not out:
            raise ValueError(
                f"activation {act.name!r} has a vanishing Taylor coefficient sigma^({N})(b) at every "
                f"bias point tried, so it cannot build a degree-{N} block"
                + (" (sigma = t^2 has no derivatives above 2: use construction='tree')"
                   if act.polynomial_degree is not None else ""))
        return out
    if bias == "paper":
        b = act.paper_bias
    elif bias == "fourth":
        if act.fourth_bias is None:
            raise ValueError(f"activation {act.name!r} has no fourth-order bias point "
                             "(sigma''''(b) = 0 with sigma''(b) != 0)")
        b = act.fourth_bias
    else:
        b = float(bias)
    if _degenerate(act, N, b):
        what = "sigma''(b) vanishes" if N == 2 else f"the Taylor coefficient sigma^({N})(b) vanishes"
        raise ValueError(
            f"degenerate bias b = {b:g} for activation {act.name!r}: {what}, so a degree-{N} "
            f"{'multiplication gate' if N == 2 else 'shallow block'} is identically wrong; "
            "choose another bias (e.g. bias='auto')")
    return [b]


def _best_block(bld, act, factors, A_out, lam, bias, role, final=True):
    """Try the candidate bias points; emit the best block."""
    N = sum(p for _, p in factors)
    nneu = math.prod(p + 1 for _, p in factors)
    if nneu > MAX_BLOCK_NEURONS:
        raise ValueError(f"a shallow block for degree {N} would need {nneu} neurons "
                         f"(limit {MAX_BLOCK_NEURONS}); use construction='tree' or depth=k")
    cands = _bias_candidates(act, bias, N, role)
    odd = role == "carry" and act.odd_identity
    # blocks whose inputs have the same bounds choose the same bias point and lambda (the choice
    # depends on nothing else): remember it, and build such blocks with one evaluation
    key = (tuple((v.A, v.E, v.S, v.const, v.K, p) for v, p in factors), A_out, lam, bias, role, final)
    hit = bld.choices.get(key)
    if hit is not None:
        return _smooth_block(bld, act, hit[0], factors, A_out, hit[1], role, odd, final)
    out = _choose_block(bld, act, factors, A_out, lam, cands, role, odd, final)
    bld.choices[key] = (out[2], out[1])
    return out


def _choose_block(bld, act, factors, A_out, lam, cands, role, odd, final):
    """Emit the block with the best of the candidate bias points (lambda chosen per candidate)."""
    if len(cands) == 1:
        return _smooth_block(bld, act, cands[0], factors, A_out, lam, role, odd, final)
    # dry runs on a scratch builder to pick the bias with the smallest bound
    best = None
    for b in cands:
        scratch = _Builder(bld.n_inputs, bld.dtype, bld.centered, bld.activation)
        scratch.begin()
        v, _, _ = _smooth_block(scratch, act, b, factors, A_out, lam, role, odd, final)
        score = v.E + float(gamma(v.K + 3, bld.u)) * v.S * ROUNDING_TYPICAL
        if best is None or score < best[0]:
            best = (score, b)
    return _smooth_block(bld, act, best[1], factors, A_out, lam, role, odd, final)


# ================================================================================= plans
def _unit(n, i):
    e = [0] * n
    e[i] = 1
    return tuple(e)


def _tree_plan(monos, n):
    """nodes: key -> (level, [(child key, power)]); keys are (exponents, level)."""
    nodes = {}
    level_of = {}

    def build(r):
        if r in level_of:
            return (r, level_of[r])
        D = sum(r)
        if D == 1:
            level_of[r] = 0
            nodes[(r, 0)] = (0, None)
            return (r, 0)
        a = [ri // 2 for ri in r]
        need = (D + 1) // 2 - sum(a)
        for i, ri in enumerate(r):
            if ri % 2 and need > 0:
                a[i] += 1
                need -= 1
        a = tuple(a)
        c = tuple(ri - ai for ri, ai in zip(r, a))
        if a == c:
            ka = build(a)
            children = [(ka, 2)]
        else:
            ka, kc = build(a), build(c)
            children = [(ka, 1), (kc, 1)]
        lvl = 1 + max(k[1] for k, _ in children)
        level_of[r] = lvl
        nodes[(r, lvl)] = (lvl, children)
        return (r, lvl)

    finals = [build(r) for r in monos]
    return nodes, finals


def _depth_plan(monos, n, k):
    nodes = {}
    finals = []
    for r in monos:
        items = []
        for i, ri in enumerate(r):
            key = (_unit(n, i), 0)
            nodes[key] = (0, None)
            items += [key] * ri
        for lvl in range(1, k + 1):
            m = len(items)
            g = 1
            while g ** (k - lvl + 1) < m:
                g += 1
            q = -(-m // g)
            sizes = [m // q + (1 if j < m % q else 0) for j in range(q)]
            new, pos = [], 0
            for sz in sizes:
                grp = items[pos:pos + sz]
                pos += sz
                if sz == 1:
                    new.append(grp[0])
                    continue
                exps = tuple(sum(x) for x in zip(*[key[0] for key in grp]))
                key = (exps, lvl)
                if key not in nodes:
                    cnt = Counter(grp)
                    nodes[key] = (lvl, sorted(cnt.items()))
                new.append(key)
            items = new
        assert len(items) == 1
        finals.append(items[0])
    return nodes, finals


def _needed(nodes, finals, L):
    need = {L: set(finals)}
    for lvl in range(L, 0, -1):
        below = set()
        for key in need[lvl]:
            nl, ch = nodes[key]
            if nl == lvl:
                below.update(c for c, _ in ch)
            else:
                below.add(key)
        need[lvl - 1] = below
    return need


# ============================================================================ relu (Yarotsky)
def _pow2_ceil(x):
    return 2.0 ** math.ceil(math.log2(x)) if x > 0 else 1.0


def _relu_unit(bld, lin, b, H):
    idx, d = bld.neuron(lin, b)
    return idx, d, H + d


def _relu_chain(bld, a, e_a, m):
    """Generator: Yarotsky f_m(a) for a in [0, 1] (a given as _Val); yields once per layer."""
    g, f, e_g, e_f = a, a, e_a, e_a
    for s in range(1, m + 1):
        p, dp, Hp = _relu_unit(bld, [(g, 1.0)], 0.0, 1.0 + e_g)
        q, dq, Hq = _relu_unit(bld, [(g, 1.0)], -0.5, 0.5 + e_g)
        c, dc, Hc = _relu_unit(bld, [(f, 1.0)], 0.0, 1.0 + e_f)
        bld.gate_neurons += 3
        e_g = 2 * e_g + 2 * dp + 4 * dq
        e_f = e_f + dc + e_g / 4.0**s
        w = 4.0**-s
        g = _Val({p: 2.0, q: -4.0}, 0.0, 1.0, e_g, 2 * Hp + 4 * Hq, 2)
        f = _Val({c: 1.0, p: -2.0 * w, q: 4.0 * w}, 0.0, 1.0, e_f, Hc + w * (2 * Hp + 4 * Hq), 3)
        yield
    return f, e_f


def _relu_abs(bld, lin):
    """Layer: |arg| = relu(arg) + relu(-arg) (arg in [-1, 1] ideally)."""
    neg = [(v, -c) for v, c in lin]
    i1, d1, H1 = _relu_unit(bld, lin, 0.0, 1.0)
    i2, d2, H2 = _relu_unit(bld, neg, 0.0, 1.0)
    bld.gate_neurons += 2
    return _Val({i1: 1.0, i2: 1.0}, 0.0, 1.0, d1 + d2, H1 + H2 + 2 * (d1 + d2), 2), d1 + d2


def _relu_product(bld, u, v, m, A_out):
    Mu, Mv = _pow2_ceil(u.U), _pow2_ceil(v.U)
    a, ea = _relu_abs(bld, [(u, 0.5 / Mu), (v, 0.5 / Mv)])
    c, ec = _relu_abs(bld, [(u, 0.5 / Mu), (v, -0.5 / Mv)])
    yield
    ga, gc = _relu_chain(bld, a, ea, m), _relu_chain(bld, c, ec, m)
    for _ in range(m):
        next(ga)
        next(gc)
        yield
    fa, efa = _finish(ga)
    fc, efc = _finish(gc)
    s = Mu * Mv
    terms = {j: s * w for j, w in fa.terms.items()}
    for j, w in fc.terms.items():
        terms[j] = terms.get(j, 0.0) - s * w
    E = s * (2.0 ** (-2 * m - 2) + efa + efc) + (u.U * v.U - u.A * v.A)
    return _Val(terms, s * (fa.const - fc.const), A_out, E, s * (fa.S + fc.S), fa.K + fc.K)


def _relu_square(bld, u, m, A_out):
    Mu = _pow2_ceil(u.U)
    a, ea = _relu_abs(bld, [(u, 1.0 / Mu)])
    yield
    ga = _relu_chain(bld, a, ea, m)
    for _ in range(m):
        next(ga)
        yield
    fa, efa = _finish(ga)
    s = Mu * Mu
    E = s * (2.0 ** (-2 * m - 2) + efa) + (u.U**2 - u.A**2)
    return _Val({j: s * w for j, w in fa.terms.items()}, s * fa.const, A_out, E, s * fa.S, fa.K)


def _relu_carry(bld, u, m):
    i1, d1, H1 = _relu_unit(bld, [(u, 1.0)], 0.0, u.U)
    i2, d2, H2 = _relu_unit(bld, [(u, -1.0)], 0.0, u.U)
    bld.carry_neurons += 2
    e = u.E + d1 + d2
    p = _Val({i1: 1.0}, 0.0, u.U, 0.0, H1, 1)
    q = _Val({i2: 1.0}, 0.0, u.U, 0.0, H2, 1)
    yield
    for _ in range(m):
        i1, d1, H1 = _relu_unit(bld, [(p, 1.0)], 0.0, p.S)
        i2, d2, H2 = _relu_unit(bld, [(q, 1.0)], 0.0, q.S)
        bld.carry_neurons += 2
        e += d1 + d2
        p = _Val({i1: 1.0}, 0.0, u.U, 0.0, H1, 1)
        q = _Val({i2: 1.0}, 0.0, u.U, 0.0, H2, 1)
        yield
    return _Val({next(iter(p.terms)): 1.0, next(iter(q.terms)): -1.0}, 0.0, u.A, e, p.S + q.S, 2)


def _finish(gen):
    try:
        next(gen)
    except StopIteration as st:
        return st.value
    raise RuntimeError("relu gate generator out of step")  # pragma: no cover


# ================================================================================ driver
def _check_domain(domain, n):
    try:
        d = np.asarray(domain, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"domain must be (lo, hi) or an (n_vars, 2) array, got {domain!r}") from None
    if d.shape == (2,):
        d = np.tile(d, (n, 1))
    if d.shape != (n, 2):
        raise ValueError(f"domain must be (lo, hi) or an ({n}, 2) array, got shape {d.shape}")
    if not np.all(np.isfinite(d)):
        raise ValueError("domain bounds must be finite")
    if np.any(d[:, 0] >= d[:, 1]):
        i = int(np.flatnonzero(d[:, 0] >= d[:, 1])[0])
        raise ValueError(f"domain for x{i} has lo >= hi: ({d[i, 0]:g}, {d[i, 1]:g})")
    return d


def _check_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dt.name}")
    return dt


def compile_polynomial(p: Any, activation: str = "softplus", construction: str = "tree",
                       dtype: npt.DTypeLike = "float64", lam: str | float = "auto", bias: str | float = "auto",
                       domain: Any = (-1, 1), centered: bool = False, depth: int | None = None,
                       tol: float | None = None, n_vars: int | None = None, _min_levels: int = 0,
                       _teeth: int | None = None) -> PolyNetwork:
    """Compile a polynomial into a feed-forward network of multiplication gates.

    The steps: validate the options (:func:`_validate`), plan the product terms
    (:func:`_plan_terms`), build the gate tree level by level (:func:`_build_gate_tree`),
    fold the coefficients into the output layer (:func:`_output_layer`), assemble the
    sparse and dense layers and the report (:func:`_finalize`).

    Parameters
    ----------
    p : Polynomial, str, sympy expression or dict
        The polynomial (anything :class:`fastpoly.Polynomial` accepts).
    activation : {"softplus", "exp", "silu", "gelu", "tanh", "sigmoid", "square", "relu"}
        Hidden activation.  ``"square"`` (t^2) is exact; ``"relu"`` uses Yarotsky's
        sawtooth squares and the polarisation product.
    construction : {"tree", "shallow"}
        Balanced product trees (depth ceil(log2 degree)) or one hidden layer.
    dtype : {"float64", "float32"}
        Arithmetic type the network is built and certified for (lambda depends on it).
    lam : "auto" or float
        ``"auto"``: per-block lambda minimising the certified bound for ``dtype`` and
        the block's input bounds over ``domain``; a float: that lambda for every block.
    bias : "auto", "paper", "fourth" or float
        Bias point b of the smooth gates: ``"paper"`` (0, or the shift artanh(1/sqrt3) /
        ln(2+sqrt3) for tanh / sigmoid), ``"fourth"`` (sigma''''(b) = 0: error
        O(lambda^4)), a number, or ``"auto"`` (per block, the candidate point with the
        smallest certified bound).  Degenerate choices raise ``ValueError``.
    domain : (lo, hi) or array (n_vars, 2)
        Input box over which the error is certified (and lambda chosen).
    centered : bool
        Neurons compute ``sigma(b + t) - sigma(b)`` (much less cancellation).
    depth : int or None
        Rolnick-Tegmark depth-k grouping (``depth=1`` is the shallow network).
    tol : float or None
        ReLU only: target relative error (``max|error| / sum |c| A``) that sets the number
        of teeth m; default 1e-6 (float64) or 1e-4 (float32).
    n_vars : int or None
        Number of inputs when ``p`` is not yet a Polynomial.

    Returns
    -------
    PolyNetwork
        ``net.report()`` has the neuron counts and the certified error bound.

    Raises
    ------
    ValueError
        Bad polynomial, unknown activation or construction, degenerate bias,
        non-positive lambda, empty or inverted domain, unsupported combinations.
    """
    opts = _validate(p, activation, construction, dtype, lam, bias, domain, centered, depth, tol, n_vars)
    return _compile(opts, (opts.poly,), _min_levels, _teeth)


def compile_polynomials(ps: Any, activation: str = "softplus", construction: str = "tree",
                        dtype: npt.DTypeLike = "float64", lam: str | float = "auto", bias: str | float = "auto",
                        domain: Any = (-1, 1), centered: bool = False, depth: int | None = None,
                        tol: float | None = None, n_vars: int | None = None) -> PolyNetwork:
    """Compile a vector of polynomials into one multi-output network with shared gates.

    Every distinct monomial of the vector (and every partial product of its product
    tree) is computed once; the outputs are different affine read-outs of the same
    last hidden layer (coefficients and constants folded into the output layer).
    A single polynomial gives exactly the network of :func:`compile_polynomial`.

    Parameters
    ----------
    ps : sequence of polynomials
        Anything :class:`fastpoly.Polynomial` accepts, one per output; polynomials with
        fewer variables are padded to the largest ``n_vars``.
    activation, construction, dtype, lam, bias, domain, centered, depth, tol, n_vars
        As in :func:`compile_polynomial` (one domain for every output).

    Returns
    -------
    PolyNetwork
        ``(N, len(ps))`` outputs; ``net.info["certified_errors"]`` holds the certified
        bound of every output over ``domain`` (``report().certified_error`` is their
        maximum) and ``report().extra`` what sharing the gates saved.

    Raises
    ------
    ValueError
        An empty vector, or any error of :func:`compile_polynomial`.
    """
    if isinstance(ps, (str, dict, Polynomial)) or not hasattr(ps, "__len__"):
        raise ValueError("ps must be a sequence of polynomials (a list), got a single "
                         f"{type(ps).__name__}; use compile_polynomial for one polynomial")
    if len(ps) == 0:
        raise ValueError("ps is empty: give at least one polynomial")
    polys = [q if isinstance(q, Polynomial) else Polynomial(q, n_vars=n_vars) for q in ps]
    n = max([q.n_vars for q in polys] + ([int(n_vars)] if n_vars is not None else []))
    polys = [q if q.n_vars == n else Polynomial(q, n_vars=n) for q in polys]
    opts = _validate(polys[0], activation, construction, dtype, lam, bias, domain, centered, depth, tol, n)
    return _compile(opts, tuple(polys), 0, None)


def _compile(opts, polys, min_levels, teeth):
    """The network of the polynomials ``polys`` (validated options ``opts``)."""
    terms = _plan_terms(polys, opts.depth, min_levels)
    bld = _Builder(polys[0].n_vars, opts.dtype, opts.centered, opts.activation)
    tree = _build_gate_tree(bld, opts, terms, teeth)
    errs = _output_layer(bld, terms, tree.slots)
    return _finalize(bld, opts, polys, terms, tree, errs)


# ------------------------------------------------------------------------------ 1. validation
@dataclass(frozen=True)
class _Options:
    """The validated arguments of :func:`compile_polynomial`."""

    poly: Polynomial
    activation: str
    construction: str
    #: None: balanced trees; k: Rolnick-Tegmark depth-k grouping (1 for ``construction="shallow"``)
    depth: int | None
    dtype: np.dtype
    #: (n_vars, 2) input box
    domain: np.ndarray
    lam: str | float
    bias: str | float
    #: centered neurons (never for ReLU)
    centered: bool
    #: ReLU only: target relative error
    tol: float | None
    #: the smooth activation (None for ReLU)
    act: Any

    @property
    def relu(self) -> bool:
        """Whether the gates are Yarotsky's ReLU constructions."""
        return self.activation == "relu"


def _check_depth(depth, construction):
    """The depth of the grouping: None (trees), or a positive int (1 for the shallow construction)."""
    if depth is not None:
        if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
            raise ValueError(f"depth must be a positive integer, got {depth!r}")
        depth = int(depth)
        if construction == "shallow" and depth != 1:
            raise ValueError("construction='shallow' means depth=1; pass construction='tree' with depth=k")
    elif construction == "shallow":
        depth = 1
    return depth


def _check_lam(lam, dt):
    """``"auto"`` or a positive float that does not underflow in ``dt``."""
    if isinstance(lam, str):
        if lam != "auto":
            raise ValueError(f"lam must be 'auto' or a positive number, got {lam!r}")
        return lam
    try:
        lamf = float(lam)
    except (TypeError, ValueError):
        raise ValueError(f"lam must be 'auto' or a positive number, got {lam!r}") from None
    if not (math.isfinite(lamf) and lamf > 0) or isinstance(lam, bool):
        raise ValueError(f"lam must be 'auto' or a positive finite number, got {lam!r}")
    if float(dt.type(lamf)) == 0:
        raise ValueError(f"lam={lam!r} underflows in {dt.name}")
    return lamf


def _check_bias(bias):
    """``"auto"``, ``"paper"``, ``"fourth"`` or a finite float."""
    if isinstance(bias, str):
        if bias not in ("auto", "paper", "fourth"):
            raise ValueError(f"bias must be 'auto', 'paper', 'fourth' or a number, got {bias!r}")
        return bias
    try:
        bias = float(bias)
    except (TypeError, ValueError):
        raise ValueError(f"bias must be 'auto', 'paper', 'fourth' or a number, got {bias!r}") from None
    if not math.isfinite(bias):
        raise ValueError("bias must be finite")
    return bias


def _check_relu_options(depth, lam, bias, centered, tol, dt):
    """The ReLU construction's ``tol`` (default by dtype); the smooth-only options must be left alone."""
    if depth is not None:
        raise ValueError("activation='relu' supports construction='tree' (Yarotsky) only")
    if lam != "auto" or bias != "auto":
        raise ValueError("lam and bias do not apply to activation='relu' (leave them 'auto')")
    if centered:
        raise ValueError("centered=True does not apply to activation='relu'")
    if tol is None:
        tol = 1e-6 if dt == np.float64 else 1e-4
    tol = float(tol)
    if not (math.isfinite(tol) and 0 < tol < 1):
        raise ValueError(f"tol must be in (0, 1), got {tol!r}")
    return tol


def _validate(p, activation, construction, dtype, lam, bias, domain, centered, depth, tol, n_vars):
    """Check every argument of :func:`compile_polynomial` (in the documented order); an :class:`_Options`."""
    poly = p if isinstance(p, Polynomial) else Polynomial(p, n_vars=n_vars)
    if not isinstance(activation, str) or activation not in ALL_ACTIVATIONS:
        raise ValueError(f"unsupported activation {activation!r}; valid: {', '.join(ALL_ACTIVATIONS)}")
    if construction not in CONSTRUCTIONS:
        raise ValueError(f"unknown construction {construction!r}; valid: {', '.join(CONSTRUCTIONS)}")
    depth = _check_depth(depth, construction)
    dt = _check_dtype(dtype)
    dom = _check_domain(domain, poly.n_vars)
    lam = _check_lam(lam, dt)
    bias = _check_bias(bias)
    if not isinstance(centered, (bool, np.bool_)):
        raise ValueError(f"centered must be True or False, got {centered!r}")
    relu = activation == "relu"
    if relu:
        tol = _check_relu_options(depth, lam, bias, centered, tol, dt)
    elif tol is not None:
        raise ValueError("tol applies to activation='relu' only (smooth gates choose lambda)")
    return _Options(poly=poly, activation=activation, construction=construction, depth=depth, dtype=dt,
                    domain=dom, lam=lam, bias=bias, centered=bool(centered) and not relu, tol=tol,
                    act=None if relu else get_smooth(activation))


# ---------------------------------------------------------------------------- 2. term planning
@dataclass(frozen=True)
class _TermPlan:
    """The monomials of the polynomials and the product nodes that compute them, level by level."""

    #: exponent tuples of the distinct monomials of degree >= 1 (first polynomial's order, then new ones)
    monos: list
    #: per output: exponents -> coefficient
    coefs: list
    #: per output: the constant term (folded into the output bias)
    const_terms: list
    #: node key (exponents, level) -> (level, [(child key, power)] or None for an input)
    nodes: dict
    #: the node key of every monomial (same order as ``monos``)
    finals: list
    #: gate levels (hidden levels of the network)
    levels: int

    def needed(self):
        """Level -> the node keys whose values must exist after that level (carried or computed)."""
        return _needed(self.nodes, self.finals, self.levels) if self.levels else {0: set(self.finals)}


def _plan_terms(polys, depth, min_levels):
    """Product trees (``depth`` None) or depth-k groupings of the distinct monomials, and the number of levels."""
    n = polys[0].n_vars
    zero = (0,) * n
    const_terms = [float(q.terms.get(zero, 0)) for q in polys]
    monos, seen = [], set()
    for q in polys:
        for e in q.terms:
            if sum(e) >= 1 and e not in seen:
                seen.add(e)
                monos.append(e)
    coefs = [{e: c for e, c in q.terms.items() if sum(e) >= 1} for q in polys]
    if monos and (depth is None):
        nodes, finals = _tree_plan(monos, n)
    elif monos:
        nodes, finals = _depth_plan(monos, n, depth)
    else:
        nodes, finals = {}, []
    L = max((nodes[k][0] for k in finals), default=0)
    if depth is not None and finals:
        L = max(L, depth) if any(sum(k[0]) >= 2 for k in finals) else L
    if finals:
        L = max(L, min_levels)
    return _TermPlan(monos, coefs, const_terms, nodes, finals, L)


# -------------------------------------------------------------------------------- 3. gate tree
@dataclass(frozen=True)
class _GateTree:
    """The hidden layers' outcome: the value of every final node, and what the report needs."""

    #: node key -> :class:`_Val` after the last level
    slots: dict
    #: bias points the smooth blocks used (sorted)
    bias_used: list
    #: ReLU teeth (0 for smooth gates)
    teeth: int
    #: hidden layers per level (1 + teeth for ReLU, else 1)
    layers_per_level: int


def _input_values(bld, dom):
    """Input ``x_i`` as a :class:`_Val` per input node, and the bound ``max |x_i|`` over the domain."""
    n = bld.n_inputs
    Mx = np.max(np.abs(dom), axis=1)
    in_err = bld.u * Mx if bld.dtype == np.float32 else np.zeros(n)
    slots = {}
    for i in range(n):
        slots[(_unit(n, i), 0)] = _Val({i: 1.0}, 0.0, float(Mx[i]), float(in_err[i]), float(Mx[i]), 1)
    return slots, Mx


def _relu_teeth(monos, tol, teeth):
    """Sawtooth teeth ``m`` of the ReLU squares for relative error ``tol`` (``teeth`` overrides)."""
    Dmax = max(sum(e) for e in monos)
    m = max(0, math.ceil((math.log2(max(Dmax - 1, 1) * 2 / tol) - 2) / 2))
    if teeth is not None:
        m = int(teeth)
    return m


def _relu_level(bld, keys, lvl, nodes, slots, m_teeth, A_of):
    """One level of ReLU gates and carries (``1 + m_teeth`` hidden layers); the new slots."""
    gens = []
    for key in keys:
        nl, ch = nodes[key]
        if nl == lvl:
            if len(ch) == 1:
                gens.append((key, _relu_square(bld, slots[ch[0][0]], m_teeth, A_of(key[0]))))
            else:
                gens.append((key, _relu_product(bld, slots[ch[0][0]], slots[ch[1][0]], m_teeth, A_of(key[0]))))
        else:
            gens.append((key, _relu_carry(bld, slots[key], m_teeth)))
    for _ in range(1 + m_teeth):
        bld.begin()
        for _, g in gens:
            next(g)
        bld.end()
    return {key: _finish(g) for key, g in gens}


def _smooth_level(bld, opts, keys, lvl, last, nodes, slots, A_of, bias_used):
    """One hidden layer of smooth gate and carry blocks; the new slots (adds the bias points used)."""
    new = {}
    bld.begin()
    for key in keys:
        nl, ch = nodes[key]
        if nl == lvl:
            factors = [(slots[c], pw) for c, pw in ch]
            v, _, b = _best_block(bld, opts.act, factors, A_of(key[0]), opts.lam, opts.bias, "gate", last)
            bias_used.add(b)
        else:
            v, _, b = _best_block(bld, opts.act, [(slots[key], 1)], A_of(key[0]), opts.lam, opts.bias, "carry",
                                  last)
        new[key] = v
    bld.end()
    return new


def _build_gate_tree(bld, opts, terms, teeth, start=None):
    """Emit the hidden layers level by level: a node is a gate at its own level and carried above it.

    ``start``: ``(slots, Mx)`` of the level-0 values (default: the inputs over ``opts.domain``;
    :func:`fastpoly.poly.hierarchy.compose_polynomials` passes the values of an inner map).
    """
    slots, Mx = _input_values(bld, opts.domain) if start is None else start

    def A_of(exps):
        return float(np.prod(Mx ** np.asarray(exps, dtype=np.float64)))

    L = terms.levels
    need = terms.needed()
    m_teeth = _relu_teeth(terms.monos, opts.tol, teeth) if opts.relu and L else 0
    bias_used = set()
    for lvl in range(1, L + 1):
        keys = sorted(need[lvl])
        if opts.relu:
            slots = _relu_level(bld, keys, lvl, terms.nodes, slots, m_teeth, A_of)
        else:
            slots = _smooth_level(bld, opts, keys, lvl, lvl == L, terms.nodes, slots, A_of, bias_used)
    return _GateTree(slots, sorted(bias_used), m_teeth, 1 + m_teeth if opts.relu else 1)


# ----------------------------------------------------------------------------- 4. output layer
def _output_layer(bld, terms, slots):
    """One affine output per polynomial (coefficients, sums of monomials, constants folded); their bounds."""
    bld.begin()
    errs = []
    for coefs, const_term in zip(terms.coefs, terms.const_terms):
        row, out_bias, ssum, K, err = {}, const_term, 0.0, 0, 0.0
        for key, e in zip(terms.finals, terms.monos):
            if e not in coefs:
                continue
            c = float(coefs[e])
            v = slots[key]
            for j, w in v.terms.items():
                row[j] = row.get(j, 0.0) + c * w
            out_bias += c * v.const
            ssum += abs(c) * v.S
            K += v.K
            err += abs(c) * v.E
        err += float(gamma(K + 3, bld.u)) * (abs(out_bias) + ssum)
        bld.cur["rows"].append(row)
        bld.cur["bias"].append(out_bias)
        bld.cur["shift"].append(None)
        errs.append(float(err))
    bld.end()
    return errs


# ----------------------------------------------------------------- 5. layer assembly and report
def _finalize(bld, opts, polys, terms, tree, errs):
    """The :class:`PolyNetwork`: sparse and dense layers of the built rows, and the report."""
    sparse, dense = _assemble_layers(bld, opts.act, opts.activation)
    err = max(errs)
    info = _report(bld, opts, terms.levels, tree, err)
    info["certified_errors"] = list(errs)
    info["distinct_monomials"] = len(terms.monos)
    info["n_outputs"] = len(polys)
    if len(polys) > 1:
        info["separate_hidden_neurons"] = [plan_neuron_count(_plan_terms((q,), opts.depth, 0), opts) for q in polys]
    single = len(polys) == 1
    name = str(polys[0]) if single else f"{len(polys)} polynomials"
    meta = {"polynomial": name, "activation": opts.activation, "dtype": bld.dtype.name,
            "construction": info["construction"], "certified_error": float(err)}
    return PolyNetwork(dense, meta, StructuredNetwork(sparse), opts.activation, bld.dtype,
                       polys[0] if single else None, opts.domain, info, polynomials=polys)


def plan_neuron_count(terms, opts):
    """Hidden neurons (with output bias) the network of a term plan has, counted without building it.

    Mirrors the builders: a smooth block of powers ``r`` has ``prod (r_i + 1)`` rows minus
    the constant ones (folded into the next bias), a smooth carry 2; a ReLU product
    ``4 + 6 m``, a ReLU square ``2 + 3 m``, a ReLU carry ``2 (1 + m)`` with ``m`` teeth.
    """
    L = terms.levels
    if not L:
        return 0
    need = terms.needed()
    m = _relu_teeth(terms.monos, opts.tol, None) if opts.relu else 0
    total = 0
    for lvl in range(1, L + 1):
        for key in need[lvl]:
            nl, ch = terms.nodes[key]
            if opts.relu:
                if nl != lvl:
                    total += 2 * (1 + m)
                elif len(ch) == 1:
                    total += 2 + 3 * m
                else:
                    total += 4 + 6 * m
            elif nl != lvl:
                total += 2
            else:
                _, _, const = _block_pattern([pw for _, pw in ch])
                total += int(np.count_nonzero(~const))
    return total


def _assemble_layers(bld, act, activation):
    """Sparse layers (weights rounded to the dtype) and the equivalent dense layers.

    A centered layer's ``-sigma(shift)`` terms move into the next dense layer's bias.
    """
    dt = bld.dtype.type
    sparse, dense = [], []
    fan_in = bld.n_inputs
    pending = None  # -sigma(shift) contributions for the next dense bias
    nl = len(bld.layers)
    for li, lay in enumerate(bld.layers):
        last = li == nl - 1
        act_name = "identity" if last else activation
        rows = lay["rows"]
        indptr = [0]
        indices, data = [], []
        for row in rows:
            for j in sorted(row):
                w = float(dt(row[j]))
                if w != 0.0:
                    indices.append(j)
                    data.append(w)
            indptr.append(len(indices))
        biasv = np.array([float(dt(x)) for x in lay["bias"]])
        shifts = lay["shift"]
        centered = any(s is not None for s in shifts)
        shift = np.array([float(dt(s)) for s in shifts]) if centered else None
        sl = SparseLayer(np.array(indptr), np.array(indices, dtype=np.int64), np.array(data), biasv,
                         act_name, shift, fan_in)
        sparse.append(sl)
        Wd, bd = sl.to_dense()
        if pending is not None:
            bd = bd - Wd @ pending
        if centered:
            bd = bd + shift
            pending = np.array([act.deriv_exact(0, s) for s in shift])
        else:
            pending = None
        dense.append(Layer(Wd.astype(dt), bd.astype(dt), act_name))
        fan_in = len(rows)
    return sparse, dense


def _report(bld, opts, L, tree, err):
    """The ``info`` dict of :meth:`PolyNetwork.report`."""
    depth = opts.depth
    return {
        "certified_error": float(err),
        "gate_neurons": bld.gate_neurons,
        "carry_neurons": bld.carry_neurons,
        "folded_constant_neurons": bld.folded_constants,
        "levels": L,
        "layers_per_level": tree.layers_per_level,
        "teeth": tree.teeth if opts.activation == "relu" else None,
        "lam_min": min(bld.lams) if bld.lams else None,
        "lam_max": max(bld.lams) if bld.lams else None,
        "lams": list(bld.lams),
        "bias_points": tree.bias_used,
        "centered": bld.centered,
        "construction": opts.construction if depth is None else ("shallow" if depth == 1 else f"depth={depth}"),
        "lam": opts.lam,
        "bias": opts.bias,
        "hidden_widths": [len(l["rows"]) for l in bld.layers[:-1]],
    }

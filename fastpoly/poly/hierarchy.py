"""Hierarchical composition: a vector polynomial map fed into another, compiled as one deeper network.

``compose_polynomials(outer, inner)`` builds ``x -> f(g(x))`` for ``g = (g_1 .. g_m)`` (polynomials
in the inputs) and ``f = (f_1 .. f_k)`` (polynomials in ``y_1 .. y_m``): the gates of ``g`` first,
then the gates of ``f`` reading ``g``'s values straight from ``g``'s last hidden layer (the
read-out of ``g`` is folded into the pre-activations of ``f``'s first gates: no extra layer).
This is Lin, Tegmark & Rolnick's hierarchical argument: a composition of low-degree maps needs
far fewer neurons than the flattened polynomial ``f o g``, whose degree is the product.

Bounds propagate through the composition with the compiler's error model
(:mod:`fastpoly.poly.bounds`): each ``g_i`` enters ``f``'s gates as a value with a bound
``A_i = sum |c| prod max|x_j|^r`` of ``|g_i|`` over the domain and the certified error ``E_i`` of
its network value; ``f``'s blocks certify their truncation on the widened interval ``A_i + E_i``
and carry ``E_i`` forward by ``prod (A + E)^r - prod A^r``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from fastpoly.poly.compile import (
    _build_gate_tree,
    _Builder,
    _finalize,
    _output_layer,
    _plan_terms,
    _unit,
    _Val,
    _validate,
    plan_neuron_count,
)
from fastpoly.poly.network import PolyNetwork
from fastpoly.poly.polynomial import MAX_TERMS, Polynomial, _add, _mul, _pow

__all__ = ["compose_polynomials", "flatten_composition"]


def _as_polys(ps, what, n_vars=None):
    if isinstance(ps, (str, dict, Polynomial)) or not hasattr(ps, "__len__") or len(ps) == 0:
        raise ValueError(f"{what} must be a non-empty sequence of polynomials")
    polys = [q if isinstance(q, Polynomial) else Polynomial(q) for q in ps]
    n = max([q.n_vars for q in polys] + ([n_vars] if n_vars else []))
    return [q if q.n_vars == n else Polynomial(q, n_vars=n) for q in polys]


def flatten_composition(outer: Any, inner: Any) -> list[Polynomial]:
    """The polynomials ``f_k(g(x))`` expanded into monomials of ``x`` (exact rational arithmetic)."""
    inner = _as_polys(inner, "inner")
    outer = _as_polys(outer, "outer")
    m, n = len(inner), inner[0].n_vars
    if outer[0].n_vars > m:
        raise ValueError(f"the outer polynomials use {outer[0].n_vars} variables but the inner map has {m} outputs")
    g = [q.terms for q in inner]
    out = []
    for f in outer:
        acc: dict = {}
        for e, c in f.terms.items():
            t = {(0,) * n: c}
            for i, r in enumerate(e):
                if r:
                    t = _mul(t, _pow(g[i], r, n), n)
            acc = _add(acc, t)
            if len(acc) > MAX_TERMS:
                raise ValueError(f"the flattened polynomial has more than {MAX_TERMS} terms")
        if not acc:
            raise ValueError("an outer polynomial composed with the inner map is identically zero")
        out.append(Polynomial(acc, n_vars=n))
    return out


def compose_polynomials(outer: Any, inner: Any, activation: str = "softplus", construction: str = "tree",
                        dtype: npt.DTypeLike = "float64", lam: str | float = "auto", bias: str | float = "auto",
                        domain: Any = (-1, 1), centered: bool = False, depth: int | None = None,
                        tol: float | None = None) -> PolyNetwork:
    """Compile ``x -> (f_1(g(x)), .., f_k(g(x)))`` as one network: ``g``'s gates, then ``f``'s.

    Parameters
    ----------
    outer : sequence of polynomials in ``x0 .. x(m-1)``
        ``f``: its variable ``x_i`` stands for the inner output ``g_i``.
    inner : sequence of m polynomials in the inputs
        ``g``.
    activation, construction, dtype, lam, bias, domain, centered, depth, tol
        As in :func:`fastpoly.poly.compile_polynomial`; ``domain`` is the box of the inputs ``x``.

    Returns
    -------
    PolyNetwork
        Outputs ``f(g(x))`` with a certified bound each (``info["certified_errors"]``);
        ``polynomials`` are the flattened ``f o g``; ``info["flattened_hidden_neurons"]``
        counts the neurons the flattened polynomials compiled directly would need, and the
        report shows both.

    Raises
    ------
    ValueError
        Empty maps, more outer variables than inner outputs, or any error of the compiler.
    """
    inner = _as_polys(inner, "inner")
    outer = _as_polys(outer, "outer", n_vars=len(inner))
    if outer[0].n_vars > len(inner):
        raise ValueError(f"the outer polynomials use {outer[0].n_vars} variables but the inner map has "
                         f"{len(inner)} outputs")
    flat = flatten_composition(outer, inner)
    opts = _validate(inner[0], activation, construction, dtype, lam, bias, domain, centered, depth, tol,
                     inner[0].n_vars)
    n = inner[0].n_vars
    bld = _Builder(n, opts.dtype, opts.centered, opts.activation)
    terms_in = _plan_terms(tuple(inner), opts.depth, 0)
    tree_in = _build_gate_tree(bld, opts, terms_in, None)
    m = len(inner)
    start_slots, Mg = {}, np.zeros(m)
    for i, (coefs, c0, q) in enumerate(zip(terms_in.coefs, terms_in.const_terms, inner)):
        terms: dict = {}
        const, E, S, K = c0, 0.0, abs(c0), 0
        for key, e in zip(terms_in.finals, terms_in.monos):
            if e not in coefs:
                continue
            c = float(coefs[e])
            v = tree_in.slots[key]
            for j, w in v.terms.items():
                terms[j] = terms.get(j, 0.0) + c * w
            const += c * v.const
            S += abs(c) * v.S
            K += v.K
            E += abs(c) * v.E
        A = q.abs_bound(opts.domain)
        Mg[i] = A
        start_slots[(_unit(m, i), 0)] = _Val(terms, const, A, E, S, max(K, 1))
    terms_out = _plan_terms(tuple(outer), opts.depth, 0)
    tree_out = _build_gate_tree(bld, opts, terms_out, None, start=(start_slots, Mg))
    errs = _output_layer(bld, terms_out, tree_out.slots)
    net = _finalize(bld, opts, tuple(flat), terms_out, tree_out, errs)
    net.info["levels"] = terms_in.levels + terms_out.levels
    net.info["inner_levels"] = terms_in.levels
    net.info["distinct_monomials"] = len({e for q in flat for e in q.terms if sum(e)})
    net.info["flattened_hidden_neurons"] = plan_neuron_count(_plan_terms(tuple(flat), opts.depth, 0), opts)
    net.info["composed"] = {"inner": [str(q) for q in inner], "outer": [str(q) for q in outer]}
    net.info.pop("separate_hidden_neurons", None)
    return net

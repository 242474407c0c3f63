"""Hypothesis: random polynomials (<= 6 variables, degree <= 6) with every smooth activation and both
dtypes agree with exact rational evaluation within the certified bound."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastpoly.poly import Polynomial, compile_polynomial

SMOOTH = ["softplus", "exp", "silu", "gelu", "tanh", "sigmoid", "square"]


@st.composite
def polynomials(draw):
    n = draw(st.integers(1, 6))
    n_terms = draw(st.integers(1, 4))
    terms = {}
    for _ in range(n_terms):
        deg = draw(st.integers(0, 6))
        e = [0] * n
        for _ in range(deg):
            e[draw(st.integers(0, n - 1))] += 1
        c = Fraction(draw(st.integers(-16, 16)), draw(st.sampled_from([1, 2, 4, 8])))
        if c:
            terms[tuple(e)] = c
    if not terms:
        terms[(1,) + (0,) * (n - 1)] = Fraction(1)
    return Polynomial(terms, n_vars=n)


@st.composite
def configs(draw):
    p = draw(polynomials())
    lo = draw(st.sampled_from([-2.0, -1.0, -0.5, 0.0]))
    hi = draw(st.sampled_from([0.5, 1.0, 1.5]))
    centered = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    return p, (lo, hi), centered, seed


def _check(p, domain, act, dtype, centered, seed, **kw):
    net = compile_polynomial(p, activation=act, dtype=dtype, domain=domain, centered=centered, **kw)
    g = np.random.default_rng(seed)
    X = g.uniform(domain[0], domain[1], (12, p.n_vars))
    X[0] = domain[1]
    X[1] = domain[0]
    exact = p.evaluate_exact(X)
    got = net(X)
    bound = net.report().certified_error
    for y, e in zip(got, exact):
        assert abs(Fraction(float(y)) - e) <= Fraction(bound), (float(y), float(e), bound)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("act", SMOOTH)
@settings(deadline=None, max_examples=6, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs())
def test_random_polynomials_within_certified_bound(act, dtype, cfg):
    p, domain, centered, seed = cfg
    _check(p, domain, act, dtype, centered, seed)


@settings(deadline=None, max_examples=8, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs(), dtype=st.sampled_from(["float64", "float32"]), act=st.sampled_from(SMOOTH[:-1]),
       depth=st.integers(1, 3))
def test_random_polynomials_depth_k(cfg, dtype, act, depth):
    p, domain, centered, seed = cfg
    _check(p, domain, act, dtype, centered, seed, depth=depth)


@settings(deadline=None, max_examples=8, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs(), dtype=st.sampled_from(["float64", "float32"]))
def test_random_polynomials_relu(cfg, dtype):
    p, domain, _, seed = cfg
    _check(p, domain, "relu", dtype, False, seed)

"""Polynomial input: parsing (safe), dict / SymPy construction, exact evaluation, bad input."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from fastpoly.poly import Polynomial


def test_string_parse_and_eval():
    p = Polynomial("3*x0*x1**2 - x2 + 1")
    assert p.n_vars == 3 and p.degree == 3 and p.n_terms == 3
    assert p.terms[(1, 2, 0)] == 3 and p.terms[(0, 0, 1)] == -1 and p.terms[(0, 0, 0)] == 1
    np.testing.assert_array_equal(p([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]]), [10.0, 2.5])


def test_caret_rationals_and_expansion():
    p = Polynomial("(x0 + x1)^2/3 - 0.5")
    assert p.terms == {(2, 0): Fraction(1, 3), (1, 1): Fraction(2, 3), (0, 2): Fraction(1, 3),
                       (0, 0): Fraction(-1, 2)}


def test_exact_evaluation_rationals():
    p = Polynomial({(2, 1): Fraction(1, 3), (0, 0): 1})
    (v,) = p.evaluate_exact([[0.1, 3.0]])
    assert v == Fraction(1, 3) * Fraction(0.1) ** 2 * 3 + 1


def test_sympy_and_variables_mapping():
    sympy = pytest.importorskip("sympy")
    x, y = sympy.symbols("x y")
    p = Polynomial(x * y**2 + 2, variables=["x", "y"])
    assert p.terms == {(1, 2): 1, (0, 0): 2}
    q = Polynomial(sympy.Symbol("x0") * sympy.Rational(1, 2))
    assert q.terms == {(1,): Fraction(1, 2)}
    assert Polynomial(p.to_sympy()) == p
    assert Polynomial("a*b", variables={"a": 0, "b": 2}).n_vars == 3


def test_dict_with_n_vars_and_float_coefficients_exact():
    p = Polynomial({(1, 0): 0.1, (0, 2): -2}, n_vars=2)
    assert p.terms[(1, 0)] == Fraction(0.1)
    assert Polynomial(p) == p
    assert Polynomial("x0", n_vars=3).n_vars == 3


@pytest.mark.parametrize("bad, msg", [
    ("sin(x0)", "not a polynomial"),
    ("1/x0", "not a polynomial"),
    ("x0**0.5", "not a polynomial"),
    ("exp(x0) + 1", "not a polynomial"),
    ("x0/(1 + x1)", "not a polynomial"),
    ("y + 1", "unknown symbol"),
    ("", "empty"),
    ("   ", "empty"),
    ("x0 - x0", "empty"),
    ("__import__('os').system('true')", "invalid characters"),
    ("x0.__class__", "invalid characters"),
    ("x0; x1", "invalid characters"),
    ("x0**100000", "exceeds"),
    ("1e400*x0", "not finite"),
    ("x0 +* ", "cannot parse"),
    ("x0**x1", "not a polynomial"),
])
def test_bad_strings_raise(bad, msg):
    with pytest.raises(ValueError, match=msg):
        Polynomial(bad)


def test_bad_dicts_and_types_raise():
    with pytest.raises(ValueError, match="empty"):
        Polynomial({})
    with pytest.raises(ValueError, match="not finite"):
        Polynomial({(1,): float("nan")})
    with pytest.raises(ValueError, match="not finite"):
        Polynomial({(1,): float("inf")})
    with pytest.raises(ValueError, match="different lengths"):
        Polynomial({(1, 0): 1, (1,): 2})
    with pytest.raises(ValueError, match="non-negative"):
        Polynomial({(-1,): 1})
    with pytest.raises(ValueError, match="empty"):
        Polynomial({(1,): 0})
    with pytest.raises(ValueError, match="n_vars"):
        Polynomial("x0*x3", n_vars=2)
    with pytest.raises(ValueError, match="cannot build"):
        Polynomial(3.5)
    with pytest.raises(ValueError, match="shape"):
        Polynomial("x0*x1")(np.zeros((3, 3)))


def test_sympy_nonfinite_and_nonpolynomial():
    sympy = pytest.importorskip("sympy")
    x0 = sympy.Symbol("x0")
    with pytest.raises(ValueError, match="not finite"):
        Polynomial(sympy.oo * x0)
    with pytest.raises(ValueError, match="not a polynomial"):
        Polynomial(sympy.sin(x0))
    with pytest.raises(ValueError, match="unknown symbol"):
        Polynomial(sympy.Symbol("z") + 1)


def test_abs_bound():
    p = Polynomial("2*x0*x1**2 - 3")
    assert p.abs_bound(np.array([[-1, 2], [-3, 1]])) == 2 * 2 * 9 + 3

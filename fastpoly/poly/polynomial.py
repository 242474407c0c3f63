"""Multivariate polynomials with exact rational coefficients: parsing, evaluation, bounds.

A :class:`Polynomial` is a mapping ``{exponent tuple: Fraction}`` over ``n_vars``
variables ``x0 .. x(n_vars-1)``.  It is built from a string (parsed with SymPy under
a whitelist, never ``eval`` of arbitrary Python), a SymPy expression, a dict, or
another Polynomial.  SymPy is imported only when a string or expression is given.
"""
from __future__ import annotations

import math
import re
from fractions import Fraction
from numbers import Integral, Rational, Real

import numpy as np

__all__ = ["Polynomial", "MAX_EXPONENT", "MAX_TERMS", "MAX_VARS"]

#: largest exponent accepted in a parsed ``**`` (guards against huge expansions)
MAX_EXPONENT = 64
#: largest number of terms of a parsed / expanded polynomial
MAX_TERMS = 100_000
_MAX_STRING = 20_000
#: most variables (x0 .. x4095): terms are dense exponent tuples, and compiled networks have one input
#: per variable, so ``x100000000*x0`` is refused up front instead of allocating gigabytes
MAX_VARS = 4096


def _check_n_vars(n, what="the polynomial"):
    if n > MAX_VARS:
        raise ValueError(
            f"{what} uses {n} variables (x0 .. x{n - 1}); at most {MAX_VARS} are supported "
            f"(x0 .. x{MAX_VARS - 1}): number the variables from x0"
        )

_VAR_RE = re.compile(r"^x(0|[1-9][0-9]*)$")
_ALLOWED_CHARS = re.compile(r"^[0-9A-Za-z_+\-*/^().,\s]*$")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
#: function names recognised (so the error says "not a polynomial" rather than "unknown name")
_FUNCS = ("sin", "cos", "tan", "exp", "log", "sqrt", "Abs", "abs", "tanh", "sinh", "cosh", "atan",
          "asin", "acos", "ln", "floor", "ceiling", "sign", "Max", "Min", "max", "min")


_INT_TYPE = {int}


def _to_fraction(c, what="coefficient"):
    """Exact Fraction of a number (int, Fraction, float, numpy scalar, SymPy Rational/Float)."""
    if isinstance(c, bool):
        raise ValueError(f"{what} must be a number, got {c!r}")
    if isinstance(c, Fraction):
        return c
    if isinstance(c, (Integral, np.integer)):
        return Fraction(int(c))
    if isinstance(c, Rational):
        return Fraction(int(c.numerator), int(c.denominator))
    mod = type(c).__module__
    if mod.startswith("sympy"):
        if getattr(c, "is_Rational", False):
            return Fraction(int(c.p), int(c.q))
        if getattr(c, "is_Float", False):
            c = float(c)
        elif getattr(c, "is_number", False):
            if c.is_finite is False or c.has(*_sympy_nonfinite()):
                raise ValueError(f"{what} is not finite: {c}")
            if getattr(c, "is_real", None) is False:
                raise ValueError(f"{what} must be real, got {c}")
            try:
                c = float(c)
            except TypeError:
                raise ValueError(f"{what} must be a real number, got {c}") from None
        else:
            raise ValueError(f"{what} must be a number, got {c}")
    if isinstance(c, (Real, np.floating)):
        f = float(c)
        if not math.isfinite(f):
            raise ValueError(f"{what} is not finite: {c!r}")
        return Fraction(f)
    if isinstance(c, complex) or np.iscomplexobj(c):
        raise ValueError(f"{what} must be real, got {c!r}")
    raise ValueError(f"{what} must be a number, got {c!r}")


def _sympy_nonfinite():
    import sympy

    return (sympy.oo, -sympy.oo, sympy.zoo, sympy.nan)


# ------------------------------------------------------------------- term arithmetic (dicts)
def _add(a, b, sign=1):
    out = dict(a)
    for e, c in b.items():
        v = out.get(e, 0) + sign * c
        if v:
            out[e] = v
        else:
            out.pop(e, None)
    return out


def _mul(a, b, n):
    out = {}
    for ea, ca in a.items():
        for eb, cb in b.items():
            e = tuple(x + y for x, y in zip(ea, eb))
            v = out.get(e, 0) + ca * cb
            if v:
                out[e] = v
            else:
                out.pop(e, None)
        if len(out) > MAX_TERMS:
            raise ValueError(f"polynomial expands to more than {MAX_TERMS} terms")
    return out


def _pow(a, k, n):
    out = {(0,) * n: Fraction(1)}
    base = a
    while k:
        if k & 1:
            out = _mul(out, base, n)
        k >>= 1
        if k:
            base = _mul(base, base, n)
    return out


class Polynomial:
    """A real polynomial in ``n_vars`` variables with exact rational coefficients.

    Parameters
    ----------
    spec : str, sympy.Expr, dict or Polynomial
        * a string such as ``"3*x0*x1**2 - x2 + 1"`` (``^`` also means power);
        * a SymPy expression in symbols ``x0, x1, ...`` (or any symbols with ``variables``);
        * a dict ``{exponent tuple: coefficient}`` (coefficients: int, float, Fraction,
          SymPy numbers; floats are taken exactly), which needs ``n_vars`` or tuples of
          equal length.
    n_vars : int, optional
        Number of variables (default: one more than the largest index used).
    variables : sequence of str or dict, optional
        Names of the variables in order (``["x", "y"]``) or a mapping name -> index,
        for expressions whose symbols are not named ``x0 .. x(n-1)``.

    Raises
    ------
    ValueError
        Non-polynomial expressions (``sin(x0)``, ``1/x0``, ``x0**0.5``), unknown symbols,
        empty or identically-zero polynomials, non-finite coefficients, bad exponents.

    Examples
    --------
    >>> p = Polynomial("3*x0*x1**2 - x2 + 1")
    >>> p.n_vars, p.degree
    (3, 3)
    >>> p([[1.0, 2.0, 3.0]])
    array([10.])
    """

    def __init__(self, spec, n_vars=None, variables=None):
        if n_vars is not None:
            if isinstance(n_vars, bool) or not isinstance(n_vars, (int, np.integer)) or n_vars < 1:
                raise ValueError(f"n_vars must be a positive integer, got {n_vars!r}")
            n_vars = int(n_vars)
            _check_n_vars(n_vars, "n_vars")
        if isinstance(spec, Polynomial):
            terms, n = dict(spec.terms), spec.n_vars
        elif isinstance(spec, dict):
            terms, n = self._from_dict(spec, n_vars)
        elif isinstance(spec, str):
            terms, n = self._from_string(spec, n_vars, variables)
        elif type(spec).__module__.startswith("sympy"):
            terms, n = self._from_sympy(spec, n_vars, variables)
        else:
            raise ValueError(
                f"cannot build a Polynomial from {type(spec).__name__}; "
                "give a string, a SymPy expression, a dict {exponents: coefficient} or a Polynomial"
            )
        if n_vars is not None:
            if n_vars < n:
                raise ValueError(f"polynomial uses {n} variables but n_vars={n_vars}")
            terms = {e + (0,) * (n_vars - len(e)): c for e, c in terms.items()}
            n = n_vars
        terms = {e: c for e, c in terms.items() if c != 0}
        if not terms:
            raise ValueError("empty polynomial: it has no nonzero terms")
        self.n_vars = int(n)
        self.terms = dict(sorted(terms.items(), key=lambda kv: (-sum(kv[0]), tuple(-x for x in kv[0]))))

    # ----------------------------------------------------------------------- parsers
    @staticmethod
    def _from_dict(d, n_vars):
        if not d:
            raise ValueError("empty polynomial: the dict has no terms")
        lengths = set()
        terms = {}
        for e, c in d.items():
            if isinstance(e, (int, np.integer)) and not isinstance(e, bool):
                e = (int(e),)
            if not isinstance(e, tuple) or not e:
                raise ValueError(f"dict keys must be exponent tuples, got {e!r}")
            # fast path (C-level loops): a tuple of plain non-negative ints is already canonical
            if not (set(map(type, e)) == _INT_TYPE and min(e) >= 0):
                for x in e:
                    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 0:
                        raise ValueError(f"exponents must be non-negative integers, got {e!r}")
                e = tuple(int(x) for x in e)
            _check_n_vars(len(e), "an exponent tuple")
            lengths.add(len(e))
            f = _to_fraction(c)
            terms[e] = terms.get(e, 0) + f
        if len(lengths) != 1:
            raise ValueError(f"exponent tuples have different lengths {sorted(lengths)}")
        (n,) = lengths
        if n_vars is not None and n != n_vars:
            raise ValueError(f"exponent tuples have length {n} but n_vars={n_vars}")
        return terms, n

    @staticmethod
    def _var_map(names, variables):
        """Map each symbol name to a variable index."""
        if variables is None:
            out = {}
            for nm in names:
                m = _VAR_RE.match(nm)
                if not m:
                    raise ValueError(
                        f"unknown symbol {nm!r}: variables must be named x0, x1, ... "
                        "(or pass variables=[...] to name them)"
                    )
                out[nm] = int(m.group(1))
            _check_n_vars(max(out.values(), default=-1) + 1)
            return out
        if isinstance(variables, dict):
            vm = {str(k): int(v) for k, v in variables.items()}
        else:
            variables = [str(v) for v in variables]
            if len(set(variables)) != len(variables):
                raise ValueError("variables has repeated names")
            vm = {v: i for i, v in enumerate(variables)}
        for nm in names:
            if nm not in vm:
                raise ValueError(f"unknown symbol {nm!r}; variables are {sorted(vm)}")
        if any(i < 0 for i in vm.values()):
            raise ValueError("variable indices must be non-negative")
        _check_n_vars(max(vm.values(), default=-1) + 1)
        return vm

    @classmethod
    def _from_string(cls, s, n_vars, variables):
        s = s.strip()
        if not s:
            raise ValueError("empty polynomial: the string is empty")
        if len(s) > _MAX_STRING:
            raise ValueError(f"polynomial string longer than {_MAX_STRING} characters")
        if not _ALLOWED_CHARS.match(s) or "__" in s or "lambda" in s:
            bad = sorted(set(ch for ch in s if not re.match(r"[0-9A-Za-z_+\-*/^().,\s]", ch)))
            raise ValueError(
                f"invalid characters in polynomial {s!r}"
                + (f": {''.join(bad)!r}" if bad else " (double underscores are not allowed)")
            )
        idents = set(_IDENT.findall(re.sub(r"\d+\.?\d*[eE][+-]?\d+", "0", s)))
        funcs = {i for i in idents if i in _FUNCS}
        if funcs:
            raise ValueError(f"not a polynomial: {s!r} uses the function(s) {', '.join(sorted(funcs))}")
        names = idents
        vm = cls._var_map(sorted(names), variables)
        import sympy
        from sympy.parsing.sympy_parser import (
            auto_number,
            convert_xor,
            factorial_notation,
            parse_expr,
        )

        syms = {nm: sympy.Symbol(nm) for nm in names}
        gdict = {"Integer": sympy.Integer, "Float": sympy.Float, "Rational": sympy.Rational,
                 "Symbol": sympy.Symbol, "Add": sympy.Add, "Mul": sympy.Mul, "Pow": sympy.Pow}
        try:
            expr = parse_expr(s, local_dict=syms, global_dict=gdict,
                              transformations=(auto_number, factorial_notation, convert_xor),
                              evaluate=False)
        except Exception as e:  # SyntaxError, TokenError, TypeError from the parser
            raise ValueError(f"cannot parse polynomial {s!r}: {e}") from None
        return cls._terms_of_expr(expr, vm, n_vars)

    @classmethod
    def _from_sympy(cls, expr, n_vars, variables):
        import sympy

        if not isinstance(expr, sympy.Basic):
            raise ValueError(f"not a SymPy expression: {expr!r}")
        names = sorted(str(x) for x in expr.free_symbols)
        vm = cls._var_map(names, variables)
        return cls._terms_of_expr(expr, vm, n_vars)

    @staticmethod
    def _terms_of_expr(expr, vm, n_vars):
        import sympy

        n = max(vm.values(), default=-1) + 1
        if n_vars is not None:
            n = max(n, n_vars)
        n = max(n, 1)

        def const(c):
            return {(0,) * n: c} if c != 0 else {}

        def walk(e):
            if e.is_Symbol:
                ex = [0] * n
                ex[vm[str(e)]] = 1
                return {tuple(ex): Fraction(1)}
            if e.is_Number:
                return const(_to_fraction(e))
            if isinstance(e, sympy.Add):
                out = {}
                for a in e.args:
                    out = _add(out, walk(a))
                return out
            if isinstance(e, sympy.Mul):
                out = const(Fraction(1))
                for a in e.args:
                    out = _mul(out, walk(a), n)
                return out
            if isinstance(e, sympy.Pow):
                base, ex = e.args
                if not ex.is_Integer:
                    raise ValueError(f"not a polynomial: non-integer exponent in {e}")
                k = int(ex)
                if abs(k) > MAX_EXPONENT:
                    raise ValueError(f"exponent {k} in {e} exceeds the limit {MAX_EXPONENT}")
                b = walk(base)
                if k < 0:
                    if len(b) == 1 and (0,) * n in b:
                        return const(b[(0,) * n] ** k)
                    if not b:
                        raise ValueError(f"division by zero in {e}")
                    raise ValueError(f"not a polynomial: {e} divides by a variable")
                return _pow(b, k, n)
            if e.is_number:
                return const(_to_fraction(e))
            raise ValueError(f"not a polynomial: {e} ({type(e).__name__})")

        try:
            terms = walk(expr)
        except RecursionError:
            raise ValueError("polynomial expression is nested too deeply") from None
        if not terms:
            raise ValueError(f"empty polynomial: {expr} is identically zero")
        return terms, n

    # ----------------------------------------------------------------------- properties
    @property
    def degree(self):
        """Total degree."""
        return max(sum(e) for e in self.terms)

    @property
    def n_terms(self):
        """Number of monomials with a nonzero coefficient."""
        return len(self.terms)

    @property
    def exponents(self):
        """``(n_terms, n_vars)`` int array of exponents (term order of :attr:`terms`)."""
        return np.array(list(self.terms), dtype=np.int64).reshape(len(self.terms), self.n_vars)

    @property
    def coefficients(self):
        """float64 coefficients (term order of :attr:`terms`)."""
        return np.array([float(c) for c in self.terms.values()])

    def __eq__(self, other):
        return isinstance(other, Polynomial) and self.n_vars == other.n_vars and self.terms == other.terms

    def __hash__(self):
        return hash((self.n_vars, tuple(self.terms.items())))

    def __repr__(self):
        return f"Polynomial({str(self)!r}, n_vars={self.n_vars})"

    def __str__(self):
        parts = []
        for e, c in self.terms.items():
            mono = "*".join(f"x{i}" + (f"**{k}" if k > 1 else "") for i, k in enumerate(e) if k)
            cs = str(c) if c.denominator == 1 else f"({c})"
            if not mono:
                parts.append(cs)
            elif c == 1:
                parts.append(mono)
            elif c == -1:
                parts.append("-" + mono)
            else:
                parts.append(f"{cs}*{mono}")
        return " + ".join(parts).replace("+ -", "- ")

    def to_sympy(self):
        """The polynomial as a SymPy expression in ``x0 .. x(n-1)``."""
        import sympy

        xs = sympy.symbols(f"x0:{self.n_vars}")
        return sympy.Add(*[sympy.Rational(c.numerator, c.denominator)
                           * sympy.Mul(*[x**k for x, k in zip(xs, e)]) for e, c in self.terms.items()])

    # ----------------------------------------------------------------------- evaluation
    def _check_X(self, X):
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1 and self.n_vars == 1:
            X = X[:, None]
        if X.ndim != 2 or X.shape[1] != self.n_vars:
            raise ValueError(f"X must have shape (N, {self.n_vars}), got {X.shape}")
        return X

    def __call__(self, X):
        """float64 values at the rows of ``X`` (shape ``(N, n_vars)``), returns ``(N,)``."""
        X = self._check_X(X)
        out = np.zeros(X.shape[0])
        for e, c in self.terms.items():
            t = np.full(X.shape[0], float(c))
            for i, k in enumerate(e):
                if k:
                    t = t * X[:, i] ** k
            out = out + t
        return out

    def evaluate_exact(self, X):
        """Exact values (list of ``Fraction``) at the rows of ``X`` (floats are taken exactly)."""
        X = self._check_X(X)
        out = []
        for row in X:
            xs = [Fraction(float(v)) for v in row]
            tot = Fraction(0)
            for e, c in self.terms.items():
                t = c
                for x, k in zip(xs, e):
                    if k:
                        t *= x**k
                tot += t
            out.append(tot)
        return out

    def abs_bound(self, domain):
        """Upper bound of ``|p(x)|`` over the box: ``sum |c| prod max|x_i|^r_i``."""
        M = np.max(np.abs(domain), axis=1)
        return float(sum(abs(float(c)) * float(np.prod(M ** np.array(e))) for e, c in self.terms.items()))

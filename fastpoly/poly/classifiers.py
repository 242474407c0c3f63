"""Lin-Tegmark-Rolnick classifiers: class Hamiltonians -> a gate network with logits and a softmax head.

``p(y|x) = softmax_y(z_y(x))`` with the logits ``z_y(x) = -H_y(x) + ln p(y)``.  The
logit polynomials are compiled into one multi-output network with shared gates
(:func:`fastpoly.poly.compile_polynomials`), which certifies ``|z'_y(x) - z_y(x)| <= eps_y``
for every ``x`` in ``domain`` (``z'``: the network's logits in ``dtype``).

Certified probability bound
---------------------------
**Claim.** If ``|z'_j - z_j| <= eps_j`` for every class ``j``, then for every class ``i``

    ``|softmax(z')_i - softmax(z)_i| <= delta_i / 4``,  ``delta_i = eps_i + max_{j != i} eps_j``.

*Proof.* Write ``p_i = softmax(z)_i = s(a_i)`` with the logistic function
``s(t) = 1 / (1 + e^-t)`` and ``a_i = z_i - LSE_{j != i}(z_j)``, where
``LSE(v) = ln sum_j e^{v_j}``.  LSE is monotone and ``LSE(v + c) = LSE(v) + c``, so
``|LSE(v') - LSE(v)| <= max_j |v'_j - v_j|``; hence ``|a'_i - a_i| <= eps_i + max_{j != i} eps_j
= delta_i``.  ``s`` is ``1/4``-Lipschitz (``s' = s (1 - s) <= 1/4``), so
``|p'_i - p_i| <= delta_i / 4``.  (Also ``p_i in [s(a'_i - delta_i), s(a'_i + delta_i)]``:
the per-point interval :meth:`PolyClassifier.proba_interval` returns.)  Trivially the
difference is also at most 1.  []

The probabilities are computed from the network's logits in float64 (max subtracted,
``exp``, normalised) and rounded once to ``dtype``.  That adds at most
``(KAPPA + C + 3) u64 + u_dtype`` (``KAPPA = 8`` ulps for ``exp``, ``C`` classes) plus the
rounding of ``z_i - max z``, which is a logit perturbation of at most ``2 u64 Z`` with
``Z`` a bound of ``|z|`` over the domain; :meth:`PolyClassifier.proba_error` includes both.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from fastpoly.poly.bounds import KAPPA, unit_roundoff
from fastpoly.poly.compile import compile_polynomials
from fastpoly.poly.network import PolyNetwork
from fastpoly.poly.polynomial import Polynomial

__all__ = ["classifier", "PolyClassifier", "softmax", "proba_bound", "OUTPUTS"]

#: values of ``output=`` for :func:`fastpoly.evaluate` and :meth:`PolyClassifier.apply_output`
OUTPUTS = ("logits", "proba")


def softmax(z: Any) -> np.ndarray:
    """Row-wise softmax in float64 (the largest logit subtracted first)."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def proba_bound(logit_errors: Any) -> np.ndarray:
    """``min(1, (eps_i + max_{j != i} eps_j) / 4)`` per class (see the module docstring for the proof)."""
    eps = np.asarray(logit_errors, dtype=np.float64)
    if eps.ndim != 1 or eps.size < 2:
        raise ValueError("need the logit bounds of at least 2 classes")
    other = np.array([np.max(np.delete(eps, i)) for i in range(eps.size)])
    return np.minimum(1.0, (eps + other) / 4.0)


class PolyClassifier(PolyNetwork):
    """A compiled classifier: a :class:`PolyNetwork` whose outputs are the class logits.

    Attributes
    ----------
    hamiltonians : tuple of Polynomial
        ``H_y`` per class.
    log_prior : float64 array (C,)
        ``ln p(y)``.
    classes : numpy.ndarray
        Class labels (default ``0 .. C-1``).
    """

    hamiltonians: tuple
    log_prior: np.ndarray
    classes: np.ndarray

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return int(self.log_prior.size)

    @property
    def logit_errors(self) -> np.ndarray:
        """Certified bound of every logit over the domain (in the network's dtype)."""
        return np.asarray(self.info["certified_errors"], dtype=np.float64)

    def proba_error(self, dtype: npt.DTypeLike | None = None) -> np.ndarray:
        """Certified ``max |p'_y(x) - p(y|x)|`` over the domain per class, softmax rounding included.

        ``dtype`` is the output type of the probabilities (default: the network's).
        """
        dt = self.dtype if dtype is None else np.dtype(dtype)
        u64 = unit_roundoff(np.float64)
        zmax = max(q.abs_bound(self.domain) for q in self.polynomials) + float(self.logit_errors.max())
        eps = self.logit_errors + 2.0 * u64 * zmax
        rnd = (KAPPA + self.n_classes + 3) * u64 + unit_roundoff(dt)
        return np.minimum(1.0, proba_bound(eps) + rnd)

    def apply_output(self, logits: Any, output: str) -> np.ndarray:
        """``output="logits"``: the logits as they are; ``"proba"``: their softmax in the logits' dtype."""
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        z = np.asarray(logits)
        if output == "logits":
            return z
        dt = z.dtype if z.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        return softmax(z).astype(dt)

    def proba_interval(self, logits: Any) -> tuple[np.ndarray, np.ndarray]:
        """Per point and class, an interval certain to hold the exact ``p(y|x)``, from the network's logits.

        ``[s(a'_i - delta_i), s(a'_i + delta_i)]`` with ``a'_i = z'_i - LSE_{j != i} z'_j``
        (module docstring), widened by the float64 rounding of these steps.
        """
        z = np.asarray(logits, dtype=np.float64)
        eps = self.logit_errors
        other = np.array([np.max(np.delete(eps, i)) for i in range(eps.size)])
        zmax = np.max(np.abs(z), axis=1, keepdims=True)
        delta = (eps + other)[None, :] + 64 * unit_roundoff(np.float64) * (1 + zmax)
        C = z.shape[1]
        a = np.empty_like(z)
        for i in range(C):
            rest = np.delete(z, i, axis=1)
            m = rest.max(axis=1)
            a[:, i] = z[:, i] - (m + np.log(np.exp(rest - m[:, None]).sum(axis=1)))
        lo = 1.0 / (1.0 + np.exp(-(a - delta)))
        hi = 1.0 / (1.0 + np.exp(-(a + delta)))
        slack = (KAPPA + 4) * unit_roundoff(np.float64)
        return np.clip(lo * (1 - slack), 0, 1), np.clip(hi * (1 + slack), 0, 1)

    def predict_proba(self, X: Any, dtype: npt.DTypeLike | None = None) -> np.ndarray:
        """``(N, C)`` class probabilities by the NumPy reference.

        ``fastpoly.evaluate(net, X, backend=..., output="proba")`` gives the same on a compiled backend.
        """
        dt = self.dtype if dtype is None else np.dtype(dtype)
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise ValueError(f"X must have shape (N, {self.n_inputs}), got {X.shape}")
        return self.apply_output(self.evaluate_reference(X, dt), "proba")

    def predict(self, X: Any, dtype: npt.DTypeLike | None = None) -> np.ndarray:
        """The most probable class label of every row (NumPy reference)."""
        return self.classes[np.argmax(self.predict_proba(X, dtype), axis=1)]

    def report(self):
        """:class:`fastpoly.poly.report.PolyReport` with the certified logit and probability bounds."""
        r = PolyNetwork.report(self)
        r.extra["classes"] = self.n_classes
        r.extra["certified logit"] = ", ".join(f"{e:.3g}" for e in self.logit_errors)
        r.extra["certified proba"] = ", ".join(f"{e:.3g}" for e in self.proba_error())
        r.extra.pop("certified per output", None)
        return r


def _logit_polynomial(h, lp):
    """The terms of ``-h + lp``, exactly (Fractions)."""
    n = h.n_vars
    zero = (0,) * n
    terms = {e: -c for e, c in h.terms.items()}
    terms[zero] = terms.get(zero, Fraction(0)) + Fraction(float(lp))
    return {e: c for e, c in terms.items() if c != 0}


def classifier(hamiltonians: Any, log_prior: Any = None, activation: str = "softplus",
               dtype: npt.DTypeLike = "float64", domain: Any = (-1, 1), classes: Any = None,
               **compile_kw: Any) -> PolyClassifier:
    """Compile class Hamiltonians into a softmax classifier network.

    Parameters
    ----------
    hamiltonians : sequence of polynomials
        ``H_y(x) = -ln p(x|y)`` (up to a constant shared by all classes), one per class;
        anything :class:`fastpoly.Polynomial` accepts.
    log_prior : array (C,) or None
        ``ln p(y)`` (None: uniform, i.e. all 0).
    activation, dtype, domain
        As in :func:`fastpoly.poly.compile_polynomial`; the certified bounds hold on ``domain``.
    classes : array (C,) or None
        Labels returned by :meth:`PolyClassifier.predict`.
    **compile_kw
        ``construction``, ``lam``, ``bias``, ``centered``, ``depth``, ``tol``.

    Returns
    -------
    PolyClassifier
        Outputs are the logits ``-H_y + ln p(y)``; ``fastpoly.evaluate(net, X, output="proba")``
        gives the probabilities, ``net.report()`` the certified bounds.

    Raises
    ------
    ValueError
        Fewer than 2 classes, a ``log_prior`` of the wrong length or not finite, or any
        error of :func:`fastpoly.poly.compile_polynomials`.
    """
    if isinstance(hamiltonians, (str, dict, Polynomial)) or not hasattr(hamiltonians, "__len__"):
        raise ValueError("hamiltonians must be a sequence of polynomials, one per class")
    hs = [h if isinstance(h, Polynomial) else Polynomial(h) for h in hamiltonians]
    C = len(hs)
    if C < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {C}")
    n = max(h.n_vars for h in hs)
    hs = [h if h.n_vars == n else Polynomial(h, n_vars=n) for h in hs]
    lp = np.zeros(C) if log_prior is None else np.asarray(log_prior, dtype=np.float64).ravel()
    if lp.shape != (C,):
        raise ValueError(f"log_prior must have one entry per class ({C}), got shape {lp.shape}")
    if not np.all(np.isfinite(lp)):
        raise ValueError("log_prior must be finite (a class of prior 0 cannot be predicted: drop it)")
    labels = np.arange(C) if classes is None else np.asarray(classes)
    if labels.shape != (C,):
        raise ValueError(f"classes must have one label per class ({C}), got shape {labels.shape}")
    dicts = [_logit_polynomial(h, v) for h, v in zip(hs, lp)]
    if any(not d for d in dicts):
        raise ValueError("a logit -H_y + ln p(y) is identically 0; add a constant to every Hamiltonian")
    logits = [Polynomial(d, n_vars=n) for d in dicts]
    net = compile_polynomials(logits, activation=activation, dtype=dtype, domain=domain, n_vars=n, **compile_kw)
    clf = PolyClassifier.__new__(PolyClassifier)
    clf.__dict__.update(net.__dict__)
    clf.hamiltonians = tuple(hs)
    clf.log_prior = lp
    clf.classes = labels
    clf.info["n_classes"] = C
    clf.meta["classifier"] = True
    return clf

"""Orthant probabilities ``P(sign f_i = s_i for all i)``, ``f ~ N(0, K)``, in log space.

:func:`orthant` is the one entry point; it validates ``K`` and the signs, applies
the output-bit convention exactly and dispatches to a method:

* ``"tilting"`` (default): minimax exponential tilting (Botev 2017,
  :mod:`fastpoly.gp.tilting`) -- unbiased, with an honest standard error far
  in the tails;
* ``"ep"``: expectation propagation (Cunningham et al. 2011, :mod:`fastpoly.gp.ep`)
  -- fast, no error bar, biased for strongly correlated orthants;
* ``"mc"``: plain Monte Carlo on the signs (any PSD ``K``, singular included) --
  for checks where P is not tiny.

Conventions (``docs/design.md#gp-posterior``): a sign of 1 means ``f_i > 0`` **strictly**; 0 (or
-1) means ``f_i <= 0``.  A row of zero variance has ``f_i = 0`` exactly, so its
output bit is 0: required sign 0 contributes a factor 1 and is dropped; required
sign 1 makes the probability 0 (``log_p = -inf``).  Rows that are exact copies
of each other (correlation 1 within 1e-12, e.g. duplicate inputs) carry the same
sign: they are merged, or give probability 0 if their required signs differ
(correlation -1 likewise with opposite signs).  Nothing is regularised silently:
``jitter`` (default 0) is the only regularisation and is reported.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fastpoly.gp.ep import ep_log_prob
from fastpoly.gp.tilting import tilting_log_prob

__all__ = ["ORTHANT_METHODS", "EP_OPTIONS", "OrthantResult", "check_covariance", "check_signs", "orthant",
           "zero_hit_upper_bound"]

ORTHANT_METHODS = ("tilting", "ep", "mc")

#: options of ``method="ep"`` (see :func:`fastpoly.gp.ep.ep_log_prob`)
EP_OPTIONS = ("damping", "tol", "max_iter", "schedule")

#: confidence of the upper bound reported when Monte Carlo has no hit
ZERO_HIT_CONFIDENCE = 0.95


def _real(x) -> bool:
    """True for a real number of any Python or NumPy type (not a bool)."""
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def zero_hit_upper_bound(n_samples: int, confidence: float = ZERO_HIT_CONFIDENCE) -> float:
    """Upper bound on a probability after zero hits in ``n_samples`` draws (one-sided Clopper-Pearson).

    ``1 - (1 - confidence)**(1/n)``, about ``3/n`` at 95% (the "rule of three").
    """
    return float(-math.expm1(math.log1p(-confidence) / int(n_samples)))


def _check_ep_options(options: dict) -> None:
    bad = sorted(set(options) - set(EP_OPTIONS))
    if bad:
        raise ValueError(f"unexpected options for method 'ep': {bad}; valid: {', '.join(EP_OPTIONS)}")
    mi = options.get("max_iter")
    if mi is not None and (isinstance(mi, (bool, np.bool_)) or not isinstance(mi, (int, np.integer)) or mi < 1):
        raise ValueError(f"max_iter must be an integer >= 1, got {mi!r}")
    tol = options.get("tol")
    if tol is not None and not (_real(tol) and math.isfinite(float(tol)) and float(tol) > 0):
        raise ValueError(f"tol must be a finite number > 0, got {tol!r}")
    d = options.get("damping")
    if d is not None and not (_real(d) and 0 < float(d) <= 1):
        raise ValueError(f"damping must be in (0, 1], got {d!r}")
    sc = options.get("schedule")
    if sc is not None and sc not in ("auto", "sequential", "parallel"):
        raise ValueError(f"unknown EP schedule {sc!r}; valid: auto, sequential, parallel")


@dataclass
class OrthantResult:
    """An orthant probability in log space.

    Attributes
    ----------
    log_p : float
        Natural log of the probability (``-inf`` if it is exactly 0).
    stderr : float or None
        Standard error of ``log_p`` (relative error of P); None for EP (no error bar);
        0.0 when the result is exact (d <= 1 after reduction, or P = 0).
    method : str
    diagnostics : dict
        Method details (convergence, solver, effective sample size, ...) and the
        exact reductions made: ``pinned_rows`` (zero variance), ``merged_rows``,
        ``n_effective`` (dimension actually integrated), ``jitter``.
    """

    log_p: float
    stderr: float | None
    method: str
    diagnostics: dict = field(default_factory=dict)

    @property
    def p(self) -> float:
        """The probability itself (may underflow to 0.0; use :attr:`log_p`)."""
        return math.exp(self.log_p)

    def __repr__(self) -> str:
        se = "None" if self.stderr is None else f"{self.stderr:.3g}"
        return f"OrthantResult(log_p={self.log_p:.6g}, stderr={se}, method={self.method!r})"


def check_covariance(K: np.ndarray) -> np.ndarray:
    """Validate a covariance: square, finite, symmetric and positive semi-definite (float64 copy).

    Raises
    ------
    ValueError
        With the reason (shape, non-finite, asymmetric, or a negative eigenvalue beyond
        rounding: ``-1e-10 * max eigenvalue``).
    """
    try:
        K = np.array(K, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("K must be a numeric (m, m) array") from None
    if K.ndim != 2 or K.shape[0] != K.shape[1] or K.shape[0] < 1:
        raise ValueError(f"K must be a square (m, m) matrix with m >= 1, got shape {K.shape}")
    if not np.all(np.isfinite(K)):
        raise ValueError("K contains non-finite values")
    scale = max(float(np.max(np.abs(K))), 1e-300)
    if np.max(np.abs(K - K.T)) > 1e-10 * scale:
        raise ValueError("K is not symmetric")
    K = 0.5 * (K + K.T)
    if np.any(np.diag(K) < 0):
        raise ValueError("K is not positive semi-definite (negative variance on the diagonal)")
    ev_min = float(np.linalg.eigvalsh(K)[0]) if K.shape[0] > 1 else float(K[0, 0])
    if ev_min < -1e-10 * scale * K.shape[0]:
        raise ValueError(f"K is not positive semi-definite (smallest eigenvalue {ev_min:.3g})")
    return K


def check_signs(signs, m: int) -> np.ndarray:
    """Signs as a bool array (True = strictly positive) from {0, 1}, {-1, +1} or bools."""
    s = np.asarray(signs)
    if s.ndim != 1 or s.size != m:
        raise ValueError(f"signs must be a 1-D array of length {m} (one per row of K), got shape {s.shape}")
    if s.dtype == bool:
        return s.copy()
    if not np.issubdtype(s.dtype, np.number) or not np.all(np.isin(s, (-1, 0, 1))):
        raise ValueError("signs must be 0/1 (1 means f_i > 0) or -1/+1")
    return s == 1


def _reduce(K: np.ndarray, pos: np.ndarray):
    """Exact reductions: drop zero-variance rows and merge perfectly correlated ones.

    Returns ``(K_red, pos_red, info)`` or ``(None, None, info)`` if P = 0 exactly.
    """
    K.shape[0]
    dg = np.diag(K).copy()
    pinned = np.flatnonzero(dg <= 0)
    info = {"pinned_rows": pinned.tolist(), "merged_rows": []}
    if pinned.size:
        scale = max(float(np.max(dg)), 1e-300)
        if np.any(np.abs(K[pinned]) > 1e-12 * scale):
            raise ValueError("K is not positive semi-definite (a zero-variance row has nonzero covariances)")
        if np.any(pos[pinned]):
            info["zero_reason"] = (
                f"row {int(pinned[pos[pinned]][0])} has zero variance (f = 0 exactly, output bit 0) "
                "but sign 1 is required"
            )
            return None, None, info
    keep = np.flatnonzero(dg > 0)
    if keep.size > 1:
        sd = np.sqrt(dg[keep])
        C = K[np.ix_(keep, keep)] / np.outer(sd, sd)
        np.fill_diagonal(C, 0.0)
        dup = np.abs(C) >= 1.0 - 1e-12
        if np.any(dup):
            alive = np.ones(keep.size, bool)
            for a in range(keep.size):
                if not alive[a]:
                    continue
                for b in np.flatnonzero(dup[a, a + 1:]) + a + 1:
                    if not alive[b]:
                        continue
                    same = C[a, b] > 0
                    ia, ib = int(keep[a]), int(keep[b])
                    if (pos[ia] == pos[ib]) != same:
                        info["zero_reason"] = (
                            f"rows {ia} and {ib} have correlation {C[a, b]:+.0f} but their required "
                            "signs contradict it"
                        )
                        return None, None, info
                    alive[b] = False
                    info["merged_rows"].append([ib, ia])
            keep = keep[alive]
    return K[np.ix_(keep, keep)], pos[keep], info


def _factor(K: np.ndarray):
    """A square root ``F`` with ``F F^T = K`` (Cholesky, or eigh for singular ``K``)."""
    try:
        return np.linalg.cholesky(K), "cholesky"
    except np.linalg.LinAlgError:
        w, V = np.linalg.eigh(K)
        return V * np.sqrt(np.clip(w, 0.0, None)), "eigh (negative eigenvalues clipped to 0)"


def _mc(K: np.ndarray, pos: np.ndarray, n_samples: int, seed) -> tuple[float, float | None, dict]:
    rng = np.random.default_rng(seed)
    F, how = _factor(K)
    hits = 0
    done = 0
    while done < n_samples:
        n = min(1 << 14, n_samples - done)
        g = rng.standard_normal((n, F.shape[1])) @ F.T
        hits += int(np.count_nonzero(np.all((g > 0) == pos[None, :], axis=1)))
        done += n
    p = hits / n_samples
    info = {"hits": hits, "n_samples": n_samples, "factor": how}
    if hits == 0:
        ub = zero_hit_upper_bound(n_samples)
        info["upper_bound"] = ub
        info["upper_bound_confidence"] = ZERO_HIT_CONFIDENCE
        info["warning"] = (f"no Monte Carlo sample of {n_samples:,} fell in the orthant: only an upper bound "
                           f"P < {ub:.3g} ({ZERO_HIT_CONFIDENCE:.0%} one-sided Clopper-Pearson, about 3/n); "
                           "use method 'tilting' for an estimate")
        return -math.inf, None, info
    return math.log(p), math.sqrt((1 - p) / hits), info


def orthant(
    K: np.ndarray,
    signs,
    method: str = "tilting",
    *,
    n_samples: int | None = None,
    seed: int = 0,
    jitter: float = 0.0,
    validated: bool = False,
    **options,
) -> OrthantResult:
    """``log P(sign f_i = s_i for all i)`` for ``f ~ N(0, K)``.

    Parameters
    ----------
    K : (m, m) array_like
        Covariance (symmetric PSD; zero-variance rows allowed and handled exactly).
    signs : (m,) array_like
        0/1 (1 means ``f_i > 0`` strictly, 0 means ``f_i <= 0``), -1/+1, or bools.
    method : {"tilting", "ep", "mc"}
        See the module docstring.
    n_samples : int or None
        Samples for ``tilting`` (default 20000) or ``mc`` (default 100000).
    seed : int
        Seed of the NumPy ``Generator`` (PCG64) used by ``tilting`` and ``mc``
        (the estimate is a pure function of the inputs, the seed and ``n_samples``).
    jitter : float
        Added to the diagonal (times the mean variance) of the reduced ``K`` before
        ``tilting``/``ep``; 0 by default (reported in the diagnostics when used).
    validated : bool
        ``K`` is the output of :func:`check_covariance` (or a principal submatrix of one): skip
        the O(m^3) eigenvalue check (callers estimating many orthants of one ``K``).
    **options
        Passed to the method: for ``ep``, ``damping``, ``tol``, ``max_iter``, ``schedule``.

    Returns
    -------
    OrthantResult

    Raises
    ------
    ValueError
        Bad ``K`` (shape, non-finite, asymmetric, not PSD), bad signs, unknown method,
        or (``tilting``/``ep``) a numerically singular ``K`` with ``jitter=0``.
    """
    if method not in ORTHANT_METHODS:
        raise ValueError(f"unknown orthant method {method!r}; valid: {', '.join(ORTHANT_METHODS)}")
    if not (_real(jitter) and math.isfinite(float(jitter)) and float(jitter) >= 0):
        raise ValueError(f"jitter must be a finite number >= 0, got {jitter!r}")
    jitter = float(jitter)
    if n_samples is not None and (isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer))
                                  or n_samples < 2):
        raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
    if options and method != "ep":
        raise ValueError(f"unexpected options for method {method!r}: {sorted(options)}")
    if method == "ep":
        _check_ep_options(options)
    K = np.asarray(K, dtype=np.float64) if validated else check_covariance(K)
    pos = check_signs(signs, K.shape[0])
    Kr, pr, info = _reduce(K, pos)
    info.update(n_rows=int(K.shape[0]), jitter=float(jitter))
    if Kr is None:
        info["n_effective"] = 0
        return OrthantResult(-math.inf, 0.0, method, info)
    d = Kr.shape[0]
    info["n_effective"] = int(d)
    if d == 0:
        return OrthantResult(0.0, 0.0, method, info)
    if method == "mc":
        lp, se, extra = _mc(Kr, pr, int(n_samples or 100_000), seed)
        info.update(extra)
        return OrthantResult(lp, se, method, info)
    if jitter:
        Kr = Kr + jitter * float(np.mean(np.diag(Kr))) * np.eye(d)
    sgn = np.where(pr, 1.0, -1.0)
    S = Kr * np.outer(sgn, sgn)  # h = diag(sgn) f: the required orthant becomes h > 0
    if d == 1:
        info["exact"] = True
        return OrthantResult(math.log(0.5), 0.0, method, info)
    if method == "ep":
        try:
            r = ep_log_prob(S, **options)
        except np.linalg.LinAlgError:
            raise ValueError("K is numerically singular on these rows; use method='mc' or pass jitter=...") from None
        info.update(converged=r.converged, iterations=r.iterations, max_change=r.max_change,
                    **{k: v for k, v in r.diagnostics.items() if k not in ("site_tau", "site_nu")})
        return OrthantResult(r.log_p, None, method, info)
    t = tilting_log_prob(S, n_samples=int(n_samples or 20_000), seed=seed)
    info.update(t.diagnostics)
    return OrthantResult(t.log_p, t.stderr, method, info)

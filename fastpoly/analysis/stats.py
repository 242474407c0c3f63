"""Binomial confidence intervals for probabilities estimated from counts."""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["INTERVALS", "interval", "wilson_interval", "clopper_pearson_interval"]

#: interval methods accepted by :func:`interval`
INTERVALS = ("wilson", "clopper-pearson")


def wilson_interval(k: ArrayLike, n: ArrayLike, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for ``k`` successes in ``n`` trials (vectorised).

    Returns
    -------
    (lower, upper) : numpy.ndarray of float64
    """
    from scipy.stats import norm

    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    z = norm.ppf(0.5 + confidence / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n > 0, k / n, 0.0)
        den = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / den
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
        lo = np.where(n > 0, np.clip(centre - half, 0, 1), 0.0)
        hi = np.where(n > 0, np.clip(centre + half, 0, 1), 1.0)
    return lo, hi


def clopper_pearson_interval(k: ArrayLike, n: ArrayLike, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Clopper--Pearson) interval for ``k`` successes in ``n`` trials (vectorised)."""
    from scipy.stats import beta

    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    a = 1 - confidence
    with np.errstate(invalid="ignore"):
        lo = np.where(k > 0, beta.ppf(a / 2, k, n - k + 1), 0.0)
        hi = np.where(k < n, beta.ppf(1 - a / 2, k + 1, n - k), 1.0)
    return lo, hi


def interval(k: ArrayLike, n: ArrayLike, confidence: float = 0.95, method: str = "wilson") -> tuple[np.ndarray, np.ndarray]:
    """Binomial interval of ``k`` in ``n`` by ``method`` (one of :data:`INTERVALS`), vectorised.

    Raises
    ------
    ValueError
        For a confidence outside (0, 1) or an unknown method.
    """
    if not isinstance(confidence, (float, int)) or isinstance(confidence, bool) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if method == "wilson":
        return wilson_interval(k, n, confidence)
    if method in ("clopper-pearson", "clopper_pearson", "cp", "exact"):
        return clopper_pearson_interval(k, n, confidence)
    raise ValueError(f"unknown interval method {method!r}; valid: {', '.join(INTERVALS)}")

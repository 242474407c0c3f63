"""Binomial confidence intervals for probabilities estimated from counts."""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["INTERVALS", "interval", "wilson_interval", "clopper_pearson_interval", "check_confidence"]

#: interval methods accepted by :func:`interval`
INTERVALS = ("wilson", "clopper-pearson")


def check_confidence(confidence: float, name: str = "confidence") -> float:
    """``confidence`` as a float in (0, 1) (any real NumPy scalar accepted), else a ``ValueError``."""
    if isinstance(confidence, (bool, np.bool_)) or not isinstance(confidence, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number in (0, 1), got {confidence!r}")
    c = float(confidence)
    if not 0 < c < 1:
        raise ValueError(f"{name} must be in (0, 1), got {confidence!r}")
    return c


def wilson_interval(k: ArrayLike, n: ArrayLike, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for ``k`` successes in ``n`` trials (vectorised).

    Returns
    -------
    (lower, upper) : numpy.ndarray of float64
    """
    from scipy.stats import norm

    confidence = check_confidence(confidence)
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    z = norm.ppf(0.5 + confidence / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n > 0, k / n, 0.0)
        den = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / den
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
        # exactly 0 / 1 at k = 0 / k = n (the formula leaves rounding residues such as 2e-19)
        lo = np.where((n > 0) & (k > 0), np.clip(centre - half, 0, 1), 0.0)
        hi = np.where((n > 0) & (k < n), np.clip(centre + half, 0, 1), 1.0)
    return lo, hi


def clopper_pearson_interval(k: ArrayLike, n: ArrayLike, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Clopper--Pearson) interval for ``k`` successes in ``n`` trials (vectorised)."""
    from scipy.stats import beta

    confidence = check_confidence(confidence)
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
    confidence = check_confidence(confidence)
    if method == "wilson":
        return wilson_interval(k, n, confidence)
    if method in ("clopper-pearson", "clopper_pearson", "cp", "exact"):
        return clopper_pearson_interval(k, n, confidence)
    raise ValueError(f"unknown interval method {method!r}; valid: {', '.join(INTERVALS)}")

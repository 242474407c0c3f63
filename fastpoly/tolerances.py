"""Per-dtype tolerances for comparing floating results of a backend with the NumPy reference.

Integer results (keys, counts) are always compared exactly.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["TOLERANCES", "tolerance", "network_atol", "assert_close_to_reference"]

#: dtype -> (rtol, atol) for network outputs compared with the reference
TOLERANCES = {
    np.dtype(np.float32): (2e-5, 2e-6),
    np.dtype(np.float64): (1e-12, 1e-13),
}


def tolerance(dtype: Any) -> tuple[float, float]:
    """``(rtol, atol)`` for ``dtype``."""
    try:
        return TOLERANCES[np.dtype(dtype)]
    except KeyError:
        raise ValueError(f"no tolerance defined for dtype {np.dtype(dtype).name}") from None


def network_atol(net: Any) -> float:
    """Extra absolute tolerance for networks whose outputs amplify last-bit differences.

    Compiled polynomial networks are built from second differences, so a 1-ulp
    difference between two libm implementations of an activation is amplified by
    about ``1/lambda**2``; for them backends are compared within 5% of the
    network's certified error bound (on top of the dtype's table).  Other
    networks get 0.
    """
    report = getattr(net, "report", None)
    if report is None:
        return 0.0
    try:
        return 0.05 * float(report().certified_error)
    except (AttributeError, TypeError, ValueError):
        return 0.0


def assert_close_to_reference(result: ArrayLike, reference: ArrayLike, dtype: Any, scale: float | None = None,
                              extra_atol: float = 0.0) -> None:
    """Raise ``AssertionError`` unless ``result`` matches ``reference`` within the dtype's tolerance.

    ``scale`` (default: ``max|reference|``, at least 1) multiplies ``atol`` so that
    outputs computed through large intermediate values are judged fairly.
    """
    rtol, atol = tolerance(dtype)
    result = np.asarray(result, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if scale is None:
        scale = max(1.0, float(np.max(np.abs(reference))) if reference.size else 1.0)
    np.testing.assert_allclose(result, reference, rtol=rtol, atol=max(atol * scale, extra_atol))

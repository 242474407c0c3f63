"""The one input rule: all Boolean inputs of ``n`` bits, and how many bits each use allows.

``X = None`` (API) or no ``--inputs`` (CLI) means "all ``2**n`` Boolean inputs".  How large
``n`` may be depends on what is then built over the ``2**n`` rows; every limit is here,
with its reason (see ``docs/design.md#inputs``):

* ``"array"`` (24): the input matrix itself, ``2**24 x 24`` float32 = 1.6 GB, and one
  key of ``2**24`` bits = 2 MB per sampled function -- the API's sampler and trainer;
* ``"cli"`` (20): the command line writes counts files of keys of ``2**n`` bits
  (128 kB per function at 20 bits) without being asked for a file of inputs;
* ``"gp"`` (16): the NNGP kernel is a dense float64 ``2**n x 2**n`` matrix
  (``2**16`` rows: 34 GB; pass the rows explicitly to go further).
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = ["BOOLEAN_INPUT_LIMITS", "all_boolean_inputs", "boolean_inputs", "check_boolean_bits", "check_input_rows"]

#: use -> the largest number of bits for which "all Boolean inputs" is built (reasons: module docstring)
BOOLEAN_INPUT_LIMITS: Mapping[str, int] = MappingProxyType({"array": 24, "cli": 20, "gp": 16})

_HINT = {
    "array": "pass the input rows X explicitly",
    "cli": "pass the rows with --inputs X.npy, or use the Python API",
    "gp": "pass the input rows X explicitly (the kernel is a dense 2**n x 2**n matrix)",
}


def check_boolean_bits(n: int, use: str = "array") -> int:
    """Check that "all Boolean inputs of ``n`` bits" is allowed for ``use``; return ``n``.

    Parameters
    ----------
    n : int
        Number of input bits.
    use : {"array", "cli", "gp"}
        Which limit of :data:`BOOLEAN_INPUT_LIMITS` applies.

    Raises
    ------
    ValueError
        If ``n`` is not an integer in ``[1, limit]`` (the message names the limit and what to do).
    """
    try:
        limit = BOOLEAN_INPUT_LIMITS[use]
    except KeyError:
        raise ValueError(f"unknown input use {use!r}; valid: {', '.join(BOOLEAN_INPUT_LIMITS)}") from None
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"the number of input bits must be a positive integer, got {n!r}")
    if n > limit:
        raise ValueError(
            f"all Boolean inputs of {n} bits is {2**n:,} rows; at most {limit} bits here: {_HINT[use]}"
        )
    return int(n)


def boolean_inputs(n: int, centered: bool = False) -> np.ndarray:
    """All ``2**n`` Boolean inputs of ``n`` bits, LSB first.

    Row ``i`` has ``x_j = (i >> j) & 1``.

    Parameters
    ----------
    n : int
        Number of bits, 1 <= n <= 24 (``BOOLEAN_INPUT_LIMITS["array"]``).
    centered : bool
        If True, map {0, 1} to {-1, +1}.

    Returns
    -------
    numpy.ndarray of float32, shape (2**n, n)
    """
    limit = BOOLEAN_INPUT_LIMITS["array"]
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= limit:
        raise ValueError(f"n must be an integer in [1, {limit}], got {n!r}")
    i = np.arange(2**n, dtype=np.int64)[:, None]
    X = ((i >> np.arange(n)) & 1).astype(np.float32)
    if centered:
        X = 2 * X - 1
    return np.ascontiguousarray(X, dtype=np.float32)


def all_boolean_inputs(n: int, use: str = "array", centered: bool = False) -> np.ndarray:
    """:func:`boolean_inputs` after :func:`check_boolean_bits` ``(n, use)``: the one place "X = None" is built."""
    return boolean_inputs(check_boolean_bits(n, use), centered)


def check_input_rows(X: Any, n_inputs: int, dtype: type = np.float32) -> np.ndarray:
    """Validate input rows (real, finite, shape ``(m, n_inputs)``, ``m >= 1``) as C-contiguous ``dtype``.

    The one validation of explicit inputs: the sampler and trainers use float32 (values must stay
    finite in float32), the NNGP kernel float64.

    Raises
    ------
    ValueError
        Non-numeric or complex data, a wrong shape, no rows, NaN or infinite values.
    """
    try:
        X = np.asarray(X)
    except (TypeError, ValueError):
        raise ValueError("X must be a numeric matrix") from None
    if np.iscomplexobj(X):
        raise ValueError("X must be real numbers, got a complex array")
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ValueError("X must be a numeric matrix") from None
    if X.ndim != 2 or X.shape[1] != n_inputs or X.shape[0] < 1:
        raise ValueError(f"X must have shape (m, {n_inputs}) with at least one row, got {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains non-finite values (NaN or infinite)")
    out = X.astype(dtype)
    if np.any(np.isinf(out)):
        raise ValueError(f"X has values outside the {np.dtype(dtype).name} range")
    return np.ascontiguousarray(out)

"""GP function sampling: the infinite-width prior P(f) by drawing ``g ~ N(0, K)`` and counting sign keys.

``g = F z`` with ``F F^T = K`` and ``z`` the project's Philox4x32-10 normals
(:func:`fastpoly.stream.rng.stream_normals`) of **stream 3** (counter word 1 = 3), so
sample ``i`` of seed ``s`` is a pure function of ``(s, i)`` and uses numbers
disjoint from the networks' weights (stream 0).  Normal ``j`` of sample ``i``
multiplies column ``j`` of ``F``.

* ``F``: Cholesky of ``K`` on the rows of positive variance; if that fails (singular
  ``K``), ``V sqrt(max(w, 0))`` from ``eigh`` on the positive eigenvalues
  (``meta['gp']`` reports the factor, its rank and how much was clipped).
  Rows of zero variance (``sigma_b = 0`` and ``x = 0``) get ``g = 0`` exactly:
  output bit 0, no regularisation.
* Arithmetic: float64; ``g_r = (((0 + F_r0 z_0) + F_r1 z_1) + ...)`` summed in
  increasing ``j``, every product and sum rounded separately (no FMA, no BLAS),
  so the NumPy and Numba paths give **bit-identical** ``g`` and keys.
* Keys: bit ``r`` = 1 iff ``g_r > 0`` strictly (``docs/design.md#keys``).

A CuPy path is not provided (no GPU to test it on); ``backend="cupy"`` raises.
"""
from __future__ import annotations

import numpy as np

from fastpoly.backends import VALID_NAMES, backend_for, lacks
from fastpoly.backends.counting import count_keys
from fastpoly.counts import FunctionCounts
from fastpoly.counts.merge import merge_sorted_counts
from fastpoly.gp.kernels import as_mlp, check_inputs, kernel
from fastpoly.gp.orthants import check_covariance
from fastpoly.keys import pack_bits
from fastpoly.plan import inputs_digest
from fastpoly.stream.rng import check_seed
from fastpoly.version import __version__

__all__ = ["GP_STREAM", "SAMPLE_BACKENDS", "gp_factor", "gp_values", "sample"]

#: the Philox stream id (counter word 1) of GP normals; networks' parameters use stream 0
GP_STREAM = 3
SAMPLE_BACKENDS = ("auto", "numpy", "numba")


def gp_factor(K: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(F, rows, info)``: ``F F^T == K[rows][:, rows]`` on the rows of positive variance.

    ``F`` is lower triangular (Cholesky) when possible, else ``V sqrt(w)`` over the
    positive eigenvalues of ``eigh``.  ``info`` reports the factor and its regularisation.
    """
    K = check_covariance(K)
    dg = np.diag(K)
    rows = np.flatnonzero(dg > 0)
    info = {"zero_variance_rows": np.flatnonzero(dg <= 0).tolist()}
    Kr = K[np.ix_(rows, rows)]
    if rows.size == 0:
        return np.zeros((0, 0)), rows, dict(info, factor="none", rank=0)
    try:
        F = np.linalg.cholesky(Kr)
        info.update(factor="cholesky", rank=int(rows.size))
    except np.linalg.LinAlgError:
        w, V = np.linalg.eigh(Kr)
        tol = 1e-12 * float(w[-1]) * rows.size
        keep = w > tol
        info.update(
            factor="eigh", rank=int(np.count_nonzero(keep)),
            clipped_eigenvalues=int(np.count_nonzero(~keep)),
            largest_clipped=float(np.max(np.abs(w[~keep]))) if np.any(~keep) else 0.0,
        )
        F = np.ascontiguousarray(V[:, keep] * np.sqrt(w[keep]))
    return np.ascontiguousarray(F), rows, info


def gp_values(F: np.ndarray, seed: int, indices, backend: str = "numpy", lower: bool | None = None) -> np.ndarray:
    """The GP values ``g`` (float64, ``(n, rows)``) of samples ``indices`` (for tests and diagnostics)."""
    idx = np.asarray(indices, np.uint64).reshape(-1)
    if lower is None:
        lower = F.shape[0] == F.shape[1] and not np.any(np.triu(F, 1))
    return backend_for("gp_values", backend).gp_values(F, seed, idx, GP_STREAM, bool(lower))


def _resolve_backend(backend: str) -> str:
    """The backend that draws: :func:`fastpoly.backends.backend_for` ``("gp_values", backend)``."""
    if not isinstance(backend, str) or backend not in VALID_NAMES:
        raise ValueError(f"unknown backend {backend!r}; valid for gp.sample: {', '.join(SAMPLE_BACKENDS)}")
    why = lacks(backend, "gp_values")
    if why:
        raise ValueError(f"gp.sample cannot use backend {backend!r}: {why}")
    return backend_for("gp_values", backend).name


def sample(
    arch,
    X=None,
    n_samples: int = 1,
    seed: int = 0,
    backend: str = "auto",
    *,
    start: int = 0,
    batch_size: int | None = None,
    K: np.ndarray | None = None,
):
    """Draw ``g ~ N(0, K)`` (the NNGP of ``arch`` on ``X``) and count the sign keys exactly.

    Parameters
    ----------
    arch : MLP or str
    X : array_like (m, n_inputs) or None
        Inputs (None: all Boolean inputs).
    n_samples : int
        Number of GP draws.
    seed : int
        Stream seed in ``[0, 2**64)``; draws use Philox stream :data:`GP_STREAM` (3).
    backend : {"auto", "numpy", "numba"}
        ``auto``: numba if importable.  Both give identical counts.
    start : int
        First sample index (runs over disjoint index ranges merge exactly).
    batch_size : int or None
        Samples per batch (the result does not depend on it).
    K : array or None
        A precomputed kernel over the rows of X.

    Returns
    -------
    FunctionCounts
        Keys over all rows of X; ``meta['arch']`` carries ``"limit": "nngp"`` (so GP
        counts never merge with finite-width counts) and ``meta['gp']`` the factor
        (``cholesky`` or ``eigh``), rank, clipped eigenvalues and zero-variance rows.
    """
    arch = as_mlp(arch)
    X = check_inputs(arch, X)
    seed = check_seed(seed)
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or not 0 <= start < 2**63:
        raise ValueError(f"start must be a non-negative integer, got {start!r}")
    be = _resolve_backend(backend)
    m = X.shape[0]
    if K is None:
        K = kernel(arch, X)
    elif np.shape(K) != (m, m):
        raise ValueError(f"K must have shape ({m}, {m}) for these inputs, got {np.shape(K)}")
    F, rows, info = gp_factor(K)
    lower = info["factor"] == "cholesky"
    bs = int(batch_size) if batch_size else max(256, (1 << 21) // max(m, 1))
    if bs < 1:
        raise ValueError("batch_size must be positive")
    parts = []
    for a in range(start, start + n_samples, bs):
        b = min(a + bs, start + n_samples)
        idx = np.arange(a, b, dtype=np.uint64)
        bits = np.zeros((b - a, m), bool)
        if rows.size:
            bits[:, rows] = gp_values(F, seed, idx, be, lower) > 0
        keys = pack_bits(bits)
        parts.append(count_keys(keys, idx))
    k, c, f = merge_sorted_counts(parts)
    meta = {
        "arch": dict(arch.to_dict(), limit="nngp"),
        "inputs_digest": inputs_digest(np.asarray(X, np.float32)),
        "n_rows": int(m),
        "train_rows": [],
        "train_labels": [],
        "seed": seed,
        "ranges": [[int(start), int(start + n_samples)]],
        "n_key_bits": int(m),
        "key_rows": None,
        "fastpoly_version": __version__,
        "gp": dict(info, stream=GP_STREAM),
    }
    out = FunctionCounts(k, c, f, n_samples, n_samples, meta)
    out.info = {"backend": be, "batch_size": bs}
    return out

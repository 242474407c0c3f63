"""Numba path of :func:`fastpoly.gp.sample`: Philox normals and ``g = F z`` in one parallel kernel.

Bit-identical to the NumPy path: the same normals (:mod:`fastpoly.backends.numba.rng`
reproduces :func:`fastpoly.stream.rng.stream_normals` bit for bit) and the same
float64 summation order over ``j`` (no FMA: the jit policy forbids contraction).
"""
from __future__ import annotations

import numpy as np

from fastpoly.backends.numba.jit import pjit, prange
from fastpoly.backends.numba.rng import normals_from_words, philox_sample_words, round_keys

__all__ = ["gp_values_numba"]


@pjit
def _gp_kernel(F, rk, idx, stream, lower, out):
    n = idx.shape[0]
    rdim = F.shape[1]
    nrows = F.shape[0]
    n_blocks = (rdim + 3) // 4
    for s in prange(n):
        words = np.empty(4 * n_blocks, np.uint32)
        z32 = np.empty(4 * n_blocks, np.float32)
        philox_sample_words(rk, idx[s], stream, n_blocks, words)
        normals_from_words(words, 2 * n_blocks, z32)
        for r in range(nrows):
            acc = 0.0
            jmax = r + 1 if lower else rdim
            for j in range(jmax):
                acc = acc + F[r, j] * np.float64(z32[j])
            out[s, r] = acc


def gp_values_numba(F: np.ndarray, seed: int, idx: np.ndarray, stream: int, lower: bool) -> np.ndarray:
    """``g`` (float64, ``(n, rows)``) for samples ``idx`` (see :func:`fastpoly.gp.sampling.gp_values`)."""
    F = np.ascontiguousarray(F, np.float64)
    idx = np.ascontiguousarray(idx, np.uint64)
    out = np.empty((idx.size, F.shape[0]), np.float64)
    _gp_kernel(F, round_keys(seed), idx, np.uint64(stream), lower, out)
    return out

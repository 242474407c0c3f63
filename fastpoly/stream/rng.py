"""The random stream: Philox4x32-10 keyed by (seed, sample index).

Stream layout (identical on every backend, so each sample is a pure function of
``(seed, sample index)`` whatever the batch size, partition or device):

* key  ``k = (lo32(seed), hi32(seed))``
* counter for sample ``i`` and block ``j``: ``c = (j, stream, lo32(i), hi32(i))``
  (``stream = 0`` for network parameters).  This equals cuRAND's
  ``curand_init(seed, i, 0)`` word stream.
* Each block yields 4 uint32 words.  Parameter ``p`` of a network (in the order
  W1 row-major, b1, W2, b2, ...) uses, for Gaussian weights, normal ``p``: block
  ``p // 4``; words (0, 1) give normals (0, 1) = (r cos, r sin) and words (2, 3)
  give normals (2, 3) by :func:`fastpoly.stream.fmath.box_muller_words`.  For uniform
  weights parameter ``p`` uses word ``p`` (block ``p // 4``, word ``p % 4``),
  mapped to ``2u - 1`` in (-1, 1) (exact).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from fastpoly.stream.fmath import box_muller_words, odd24_from_word

__all__ = [
    "PHILOX_M0", "PHILOX_M1", "PHILOX_W0", "PHILOX_W1",
    "philox4x32", "stream_words", "stream_normals", "stream_uniform_pm1",
    "check_seed", "SGD_STREAM", "blocks_per_epoch",
]

PHILOX_M0 = np.uint64(0xD2511F53)
PHILOX_M1 = np.uint64(0xCD9E8D57)
PHILOX_W0 = np.uint32(0x9E3779B9)
PHILOX_W1 = np.uint32(0xBB67AE85)
_MASK32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


def philox4x32(ctr: Sequence[ArrayLike], key: Sequence[ArrayLike], rounds: int = 10) -> tuple[np.ndarray, ...]:
    """Philox4x32 block function (Salmon et al. 2011), vectorised.

    Parameters
    ----------
    ctr : tuple of 4 array_like of uint32
        Counter words ``(c0, c1, c2, c3)`` (broadcast together).
    key : tuple of 2 array_like of uint32
        Key words ``(k0, k1)``.
    rounds : int
        Number of rounds (10 for Philox4x32-10).

    Returns
    -------
    tuple of 4 numpy.ndarray of uint32
    """
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint32) for c in ctr)
    k0, k1 = (np.asarray(k, dtype=np.uint32) for k in key)
    c0, c1, c2, c3 = np.broadcast_arrays(c0, c1, c2, c3)
    with np.errstate(over="ignore"):
        for r in range(rounds):
            if r:
                k0 = k0 + PHILOX_W0
                k1 = k1 + PHILOX_W1
            p0 = c0.astype(np.uint64) * PHILOX_M0
            p1 = c2.astype(np.uint64) * PHILOX_M1
            hi0 = (p0 >> _S32).astype(np.uint32)
            lo0 = (p0 & _MASK32).astype(np.uint32)
            hi1 = (p1 >> _S32).astype(np.uint32)
            lo1 = (p1 & _MASK32).astype(np.uint32)
            c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def check_seed(seed: Any) -> int:
    """Validate a seed (an integer in ``[0, 2**64)``) and return it as a Python int."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return seed


def _key(seed):
    seed = check_seed(seed)
    return np.uint32(seed & 0xFFFFFFFF), np.uint32(seed >> 32)


def stream_words(seed: int, indices: ArrayLike, n_blocks: int, stream: int = 0) -> np.ndarray:
    """Words of the stream for samples ``indices``: shape ``(len(indices), 4*n_blocks)``.

    Parameters
    ----------
    seed : int
        Stream seed in ``[0, 2**64)``.
    indices : array_like of uint64
        Sample indices.
    n_blocks : int
        Number of Philox blocks per sample (4 words each).
    stream : int
        The counter's word 1 (0 for network parameters).

    Returns
    -------
    numpy.ndarray of uint32, shape (n, 4 * n_blocks)
        Word ``4*j + t`` is word ``t`` of block ``j``.
    """
    idx = np.asarray(indices, dtype=np.uint64).reshape(-1, 1)
    j = np.arange(n_blocks, dtype=np.uint32).reshape(1, -1)
    lo = (idx & _MASK32).astype(np.uint32)
    hi = (idx >> _S32).astype(np.uint32)
    out = philox4x32((j, np.uint32(stream), lo, hi), _key(seed))
    return np.stack(out, axis=-1).reshape(idx.shape[0], 4 * n_blocks)


def stream_normals(seed: int, indices: ArrayLike, count: int, stream: int = 0) -> np.ndarray:
    """The first ``count`` standard normals (float32) of each sample's stream."""
    n_blocks = (count + 3) // 4
    w = stream_words(seed, indices, n_blocks, stream)
    w = w.reshape(w.shape[0], n_blocks, 4)
    z0, z1 = box_muller_words(w[..., 0], w[..., 1])
    z2, z3 = box_muller_words(w[..., 2], w[..., 3])
    z = np.stack([z0, z1, z2, z3], axis=-1).reshape(w.shape[0], 4 * n_blocks)
    return np.ascontiguousarray(z[:, :count])


def stream_uniform_pm1(seed: int, indices: ArrayLike, count: int, stream: int = 0) -> np.ndarray:
    """The first ``count`` uniforms on (-1, 1) (float32, ``2u - 1``, exact) of each sample."""
    n_blocks = (count + 3) // 4
    w = stream_words(seed, indices, n_blocks, stream)[:, :count]
    n = odd24_from_word(w) - (1 << 23)  # (2u - 1) * 2**23, odd integer, |.| < 2**23
    return np.ldexp(n.astype(np.float32), -23).astype(np.float32)


#: Philox counter word 1 of P_SGD's minibatch-order words (0 is the parameter stream)
SGD_STREAM = 1


def blocks_per_epoch(m: int) -> int:
    """Philox blocks (4 words each) per epoch shuffle of ``m`` train points (``m - 1`` words)."""
    return max(1, (m - 1 + 3) // 4)

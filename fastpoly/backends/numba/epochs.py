"""The per-run schedule shared by the Numba trainers (MLPs: ``train``; layer sequences: ``train_cnn``).

* :func:`epoch_order`: the Fisher–Yates order of the train points in one epoch, driven by the run's
  Philox words of stream :data:`~fastpoly.stream.rng.SGD_STREAM` (bit for bit the NumPy reference,
  :func:`fastpoly.sgd.plan.run_rule` and ``kernels/train.cuh``).
* :func:`stop_rule`: the run's minimum epochs and epochs-after-fit, with the anchor's leaked callback
  (one per emulated worker) where it applies.
"""
from __future__ import annotations

import numpy as np

from fastpoly.backends.numba.jit import jit
from fastpoly.backends.numba.rng import philox_block
from fastpoly.stream.rng import SGD_STREAM

__all__ = ["epoch_order", "stop_rule"]

_S32 = np.uint64(32)
_STREAM = np.uint64(SGD_STREAM)


@jit(inline="always")  # in the trainers' loops (a call costs ~4 % of the anchor trainer)
def epoch_order(e, bpe, m, lo32, hi32, rk, sw, perm):
    """``perm[:m]``: the order of the train points in epoch ``e`` (0-based) of the run ``(lo32, hi32)``.

    Philox blocks ``e * bpe .. e * bpe + bpe - 1`` of the stream fill ``sw`` (``4 * bpe`` words); swap
    ``t`` (from ``m - 1`` down to 1) exchanges ``perm[t]`` and ``perm[(sw[m - 1 - t] * (t + 1)) >> 32]``.
    """
    for jb in range(bpe):
        c0, c1, c2, c3 = philox_block(np.uint64(e * bpe + jb), _STREAM, lo32, hi32, rk)
        sw[4 * jb] = np.uint32(c0)
        sw[4 * jb + 1] = np.uint32(c1)
        sw[4 * jb + 2] = np.uint32(c2)
        sw[4 * jb + 3] = np.uint32(c3)
    for t in range(m):
        perm[t] = t
    for t in range(m - 1, 0, -1):
        u = np.int64((np.uint64(sw[m - 1 - t]) * np.uint64(t + 1)) >> _S32)
        tmp = perm[t]
        perm[t] = perm[u]
        perm[u] = tmp


@jit(inline="always")  # in the trainers' loops (a call costs ~4 % of the anchor trainer)
def stop_rule(index, leak_w, leak_from, leak_E, min_ep0, eaf0):
    """``(min_epochs, epochs_after_fit)`` of run ``index``.

    With the leaked callback (``leak_w`` workers > 0), a run after its worker's first fitted run
    ``leak_from[w]`` stops at the first fitted epoch end ``>= leak_E[w] + eaf0``.
    """
    min_ep = min_ep0
    eaf = eaf0
    if leak_w > 0:
        wk = np.int64(index % np.uint64(leak_w))
        if np.int64(index) > leak_from[wk]:
            min_ep = max(min_ep0, leak_E[wk] + eaf0)
            eaf = 0
    return min_ep, eaf

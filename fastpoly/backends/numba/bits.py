"""Word-level bit helpers shared by the Numba kernels on packed keys (K_LZ, the analysis tally)."""
from __future__ import annotations

import numpy as np

from fastpoly.backends.numba.jit import jit

__all__ = ["popcount64"]

_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)


@jit
def popcount64(x):
    """Number of set bits of a uint64 (SWAR; int64)."""
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return np.int64((x * _H01) >> np.uint64(56))

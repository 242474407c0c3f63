"""K_LZ phrase sums, T and critical-input counts on a CUDA device: ``kernels/klz.cu`` from Python.

:func:`complexity_ints_cuda` runs ``fastpoly_klz_ints`` (one thread per key, grid-stride loop; the
per-key math of ``kernels/klz.cuh``, the same bit-parallel algorithm as
:mod:`fastpoly.backends.numba.klz`, value for value) through the cupy backend's device interface
(:class:`~fastpoly.backends.cuda.backend.CupyDevice`: NVRTC with the backend's options and PTX cache,
launch, upload/download).  Keys are uploaded in chunks of at most ``chunk`` keys and the three
outputs downloaded per chunk, so device memory stays bounded (``(8 W + 16)`` bytes per key of a
chunk) whatever the number of keys.  The tests pass the CPU emulation's device
(``tests/cuda_emu``), which runs the same kernel source.

Importing this module imports neither CuPy nor anything compiled; the default device is the
process's one (:func:`default_device`: the cupy backend's, memoised in :mod:`fastpoly.backends.cuda.device`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["KLZ_FILE", "KLZ_KERNEL", "MAX_WORDS", "THREADS", "MAX_KEYS_PER_LAUNCH", "default_device",
           "complexity_ints_cuda"]

#: the kernel file and its kernel (a C++ name: NVRTC name expression)
KLZ_FILE = "klz.cu"
KLZ_KERNEL = "fastpoly_klz_ints"
#: FP_KLZ_MAX_WORDS of kernels/klz.cuh: the longest key (64-bit words) the kernel takes
MAX_WORDS = 16
#: threads per block (the kernel's __launch_bounds__)
THREADS = 256
#: keys per chunk (upload, launch, download) by default: 2**22 keys of 2 words use 128 MiB of device memory
MAX_KEYS_PER_LAUNCH = 1 << 22
#: blocks per multiprocessor of the default grid (the kernel loops over the keys with a grid stride)
_BLOCKS_PER_SM = 8


def _kernel(dev: Any) -> Any:
    return dev.compile(KLZ_FILE, [KLZ_KERNEL])[KLZ_KERNEL]


def complexity_ints_cuda(keys: np.ndarray, n: int, boolean_d: int = 0, device: Any = None, *,
                         chunk: int = MAX_KEYS_PER_LAUNCH, threads: int = THREADS,
                         max_blocks: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer complexity data of every key on a CUDA device: ``(phrase sums, ones, critical count)``.

    The same values as :func:`fastpoly.backends.numba.klz.complexity_ints`: ``c(s) + c(reversed s)``
    (LZ76 phrase counts; ``-1`` for a constant string), T, and for ``boolean_d > 0`` the number of
    inputs with a Hamming-1 neighbour of different output (zeros otherwise).

    Parameters
    ----------
    keys : uint64 array (K, W)
        Bits ``>= n`` must be zero (:func:`fastpoly.analysis.complexity.complexity_ints` clears them).
    n : int
        String length, ``1 <= n <= 64 W``; ``W <= MAX_WORDS``.
    boolean_d : int
        ``d`` with ``n = 2**d`` for the critical counts; 0 for none.
    device : object or None
        The device interface (default: :func:`default_device`); the tests pass the CPU emulation's.
    chunk : int
        Keys uploaded and processed per launch at most (bounds the device memory).
    threads : int
        Threads per block (a multiple of 32, at most 256).
    max_blocks : int or None
        Cap on the grid (default: 8 blocks per multiprocessor); the kernel strides over the keys.

    Returns
    -------
    tuple of three int64 arrays (K,)

    Raises
    ------
    ValueError
        Keys that are not a 2-D array, more words than the kernel takes, ``n`` outside ``[1, 64 W]``,
        ``n != 2**boolean_d``, bad launch parameters.
    fastpoly.backends.BackendUnavailable
        No device given and CuPy or a GPU missing.
    """
    keys = np.asarray(keys)
    if keys.ndim != 2:
        raise ValueError(f"keys must be a (K, n_words) array, got shape {keys.shape}")
    keys = np.ascontiguousarray(keys, np.uint64)
    K, W = keys.shape
    n, d = int(n), int(boolean_d)
    if W > MAX_WORDS:
        raise ValueError(f"the CUDA K_LZ kernel takes keys of at most {MAX_WORDS} words ({64 * MAX_WORDS} bits), "
                         f"got {W}")
    if not 1 <= n <= 64 * W:
        raise ValueError(f"n must be in [1, {64 * W}] for keys of {W} words, got {n}")
    if d < 0 or (d > 0 and n != 1 << d):
        raise ValueError(f"boolean_d must be 0 or log2(n) = log2({n}), got {d}")
    chunk, threads = int(chunk), int(threads)
    if chunk < 1:
        raise ValueError("chunk must be >= 1")
    if threads % 32 or not 32 <= threads <= THREADS:
        raise ValueError(f"threads must be a multiple of 32 in [32, {THREADS}], got {threads}")
    if max_blocks is not None and int(max_blocks) < 1:
        raise ValueError("max_blocks must be >= 1")
    sums = np.empty(K, np.int64)
    ones = np.empty(K, np.int64)
    crit = np.empty(K, np.int64)
    if K == 0:
        return sums, ones, crit
    dev = device if device is not None else default_device()
    kern = _kernel(dev)
    cap = int(dev.properties().get("sm_count", 1)) * _BLOCKS_PER_SM
    if max_blocks is not None:
        cap = min(cap, int(max_blocks))
    for a in range(0, K, chunk):
        b = min(K, a + chunk)
        m = b - a
        grid = max(1, min(-(-m // threads), cap))
        with dev.stream():
            kd = dev.upload(keys[a:b])
            sd = dev.empty(m, np.int64)
            td = dev.empty(m, np.int32)
            cd = dev.empty(m, np.int32)
            dev.launch(kern, (grid,), (threads,),
                       [kd, np.int64(m), np.int32(W), np.int32(n), np.int32(d), sd, td, cd], 0)
            s, t, c = dev.download(sd), dev.download(td), dev.download(cd)
            dev.synchronize()
        sums[a:b] = s
        ones[a:b] = t
        crit[a:b] = c
    return sums, ones, crit



def default_device() -> Any:
    """The process's one CUDA device: the one cupy backend object's (memoised in :mod:`fastpoly.backends.cuda.device`).

    Raises
    ------
    fastpoly.backends.BackendUnavailable
        CuPy or a CUDA device is missing (the message says which).
    """
    from fastpoly.backends import backend_for

    return backend_for("klz", "cupy").device()

"""Where the CUDA kernel sources live, and how they are compiled (no CuPy import here).

Installed, the sources are package data ``fastpoly/kernels``; in a source
checkout they are the top-level folder ``kernels/``.  :func:`kernel_dir` finds
either.  The same NVRTC options and template names are used by the CuPy
backend and by the offline compile checks (``ci/nvcc-check.sh``,
``tests/test_cuda_compile.py``).
"""
from __future__ import annotations

import functools
import hashlib
import importlib.resources
import os
from pathlib import Path

from fastpoly.activations import SAMPLER_CODES

__all__ = [
    "kernel_dir", "kernel_sources", "read_source", "source_digest", "NVRTC_OPTIONS", "NVCC_FLAGS",
    "fixed_kernel_name", "generic_kernel_name", "poly_kernel_name", "fixed_layout_floats",
    "MODE_KEYS", "MODE_COUNT",
]

#: NVRTC options: C++17, IEEE float32 (no fast math, no contraction of a*b+c, no flush to zero)
NVRTC_OPTIONS = ("-std=c++17", "--fmad=false", "--ftz=false", "--prec-div=true", "--prec-sqrt=true")
#: the matching nvcc flags of the offline compile check
NVCC_FLAGS = ("-std=c++17", "-fmad=false", "-ftz=false", "-prec-div=true", "-prec-sqrt=true")

MODE_KEYS = 0
MODE_COUNT = 1
_SUFFIXES = (".cu", ".cuh")


@functools.cache
def kernel_dir():
    """The folder holding ``sampler.cu``, ``poly.cu`` and their headers.

    Order: ``$FASTPOLY_KERNEL_DIR``; the installed package data ``fastpoly/kernels``;
    the source checkout's ``<repo>/kernels``.

    Raises
    ------
    FileNotFoundError
        If no folder with the kernel sources is found.
    """
    cands = []
    env = os.environ.get("FASTPOLY_KERNEL_DIR")
    if env:
        cands.append(Path(env))
    try:
        res = importlib.resources.files("fastpoly") / "kernels"
        cands.append(Path(str(res)))
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - namespace oddities
        pass
    cands.append(Path(__file__).resolve().parents[3] / "kernels")  # <repo>/fastpoly/backends/cuda/
    for c in cands:
        if (c / "sampler.cu").is_file() and (c / "network.cuh").is_file():
            return c
    raise FileNotFoundError(
        "fastpoly's CUDA kernel sources were not found (looked in: "
        + ", ".join(str(c) for c in cands) + ")"
    )


def kernel_sources():
    """Every ``.cu`` and ``.cuh`` file of :func:`kernel_dir` (sorted paths)."""
    d = kernel_dir()
    return sorted(p for p in d.iterdir() if p.suffix in _SUFFIXES and p.is_file())


def read_source(name):
    """Text of one kernel source file, e.g. ``"sampler.cu"``."""
    return (kernel_dir() / name).read_text(encoding="utf-8")


def source_digest():
    """sha256 over every kernel source (names and bytes): part of the compiled-module cache key."""
    h = hashlib.sha256()
    for p in kernel_sources():
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def fixed_kernel_name(n0, h1, h2, rows_per_lane, act_code, mode):
    """NVRTC name expression of the specialised sampler ``N0-H1-H2-1``."""
    return f"fastpoly_sample_fixed<{n0}, {h1}, {h2}, {rows_per_lane}, {act_code}, {mode}>"


def generic_kernel_name(mode):
    """Name expression of the generic sampler kernel for ``mode`` (keys or counts)."""
    return f"fastpoly_sample_generic<{mode}>"


def poly_kernel_name(dtype_name, fused):
    """``dtype_name`` is ``"float"`` or ``"double"``."""
    return f"fastpoly_csr_layer<{dtype_name}, {int(bool(fused))}>"


def _align4(v):
    return (v + 3) & ~3


def fixed_layout_floats(n0, h1, h2):
    """Shared-memory floats per warp of ``fastpoly_sample_fixed`` (mirrors ``fp_fixed_layout``)."""
    b1 = _align4(n0 * h1)
    w2 = _align4(b1 + h1)
    b2 = _align4(w2 + h1 * h2)
    w3 = _align4(b2 + h2)
    b3 = _align4(w3 + h2)
    return _align4(b3 + 1)


# --- plan -> kernel arguments (shared by the backend and the host-driver tests) -------------
def net_desc(mlp):
    """The ``desc`` (int64) and ``scales`` (float32) arrays of ``kernels/network.cuh`` for an MLP."""
    import numpy as np

    widths = list(mlp.widths)
    L = len(widths) - 1
    offs = mlp.param_offsets()
    desc = [L, SAMPLER_CODES[mlp.activation], int(mlp.weights == "uniform"), int(mlp.bias), mlp.n_params]
    desc += widths
    desc += [wo for wo, _ in offs]
    desc += [(-1 if bo is None else bo) for _, bo in offs]
    sc = mlp.scales()
    scales = [s[0] for s in sc] + [s[1] for s in sc]
    return np.asarray(desc, dtype=np.int64), np.asarray(scales, dtype=np.float32)


def row_order(plan):
    """Kernel row order: the key rows (ascending) then the train rows; and the train labels in that order.

    Returns
    -------
    order : int64 array (m,)
        ``Xp = X[order]`` is what the kernels see.
    labels : uint8 array (m - nkey,)
    """
    import numpy as np

    order = np.concatenate([plan.key_rows, plan.train_rows]).astype(np.int64)
    labels = np.ascontiguousarray(plan.train_labels, dtype=np.uint8)
    return order, labels

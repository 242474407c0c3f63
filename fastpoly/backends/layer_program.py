"""The layer program of the generic trainers: an architecture as one int row per layer (no Numba, no CuPy).

The Numba trainer (:mod:`fastpoly.backends.numba.train_cnn`) and the CUDA trainer
(``kernels/train_cnn.cu`` through :mod:`fastpoly.backends.cuda.train`) interpret the same program:
per layer its kind code, input and output ``(H, W, C)`` (a flat size ``n`` is ``(1, 1, n)``), kernel
size, stride, padding before (top, left; TensorFlow's "same" rule), the offsets of its ``W`` and
``b`` blocks in the flat parameter vector (``-1``: none), its per-row input and output sizes and
the offsets of its input and output buffers in the scratch of ``rows`` rows (layer ``l``'s output
buffer is layer ``l+1``'s input buffer).  ``kernels/train_cnn.cu`` repeats the codes and columns.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["COLUMNS", "compile_program", "is_generic"]

#: layer kind codes of the program
K_DENSE, K_CONV, K_AVG, K_MAX, K_GAP, K_FLAT, K_RELU, K_IDENT, K_TANH, K_ERF, K_SIGMOID = range(11)
#: program columns
COLUMNS = ("kind", "ih", "iw", "ic", "oh", "ow", "oc", "k", "s", "pt", "pl", "woff", "boff", "isz", "osz",
         "ain", "aout")
(C_KIND, C_IH, C_IW, C_IC, C_OH, C_OW, C_OC, C_K, C_S, C_PT, C_PL, C_WOFF, C_BOFF, C_ISZ, C_OSZ,
 C_AIN, C_AOUT) = range(len(COLUMNS))

#: layer ``kind`` names of the network model -> program codes
_KINDS = {"dense": K_DENSE, "conv2d": K_CONV, "conv": K_CONV, "avgpool": K_AVG, "avg_pool": K_AVG,
          "maxpool": K_MAX, "max_pool": K_MAX, "gap": K_GAP, "globalavgpool": K_GAP,
          "global_avg_pool": K_GAP, "flatten": K_FLAT}
#: activations the generic trainer compiles (tanh, erf, sigmoid: the training float32 functions)
_ACTS = {"relu": K_RELU, "identity": K_IDENT, "tanh": K_TANH, "erf": K_ERF, "sigmoid": K_SIGMOID}


def _hwc(shape):
    s = tuple(int(x) for x in shape)
    return s if len(s) == 3 else (1, 1, int(np.prod(s)))


def _attr(layer, *names):
    for n in names:
        if hasattr(layer, n):
            return getattr(layer, n)
    raise ValueError(f"layer {layer!r} lacks any of {names}")


def is_generic(arch: Any) -> bool:
    """True when ``arch`` has a layer other than dense and activation (it trains on this path)."""
    return any(getattr(layer, "kind", "dense") not in ("dense", "activation") for layer in arch.layers)


def compile_program(arch: Any, rows: int) -> tuple[np.ndarray, int, int]:
    """The program of ``arch`` for scratch of ``rows`` rows: ``(prog, buffer length, first weighted layer)``.

    Raises
    ------
    ValueError
        A layer kind or activation the generic trainer does not compile.
    """
    slots = arch.param_blocks()
    woff: dict[int, int] = {}
    boff: dict[int, int] = {}
    for s in slots:
        (woff if s.block.name == "W" else boff)[s.layer] = s.offset
    prog = np.zeros((len(arch.layers), len(COLUMNS)), np.int64)
    a = 0
    first_w = -1
    for i, layer in enumerate(arch.layers):
        ish, osh = arch.shapes[i], arch.shapes[i + 1]
        ih, iw, ic = _hwc(ish)
        oh, ow, oc = _hwc(osh)
        isz, osz = ih * iw * ic, oh * ow * oc
        row = prog[i]
        kind = layer.kind
        if kind == "activation":
            if layer.name not in _ACTS:
                raise ValueError(
                    f"the generic layer trainer trains relu and identity (and tanh, erf, sigmoid) networks, "
                    f"not {layer.name!r}")
            code = _ACTS[layer.name]
        elif kind in _KINDS:
            code = _KINDS[kind]
        else:
            raise ValueError(f"the generic layer trainer has no layer kind {kind!r}")
        row[C_KIND] = code
        row[C_IH], row[C_IW], row[C_IC], row[C_OH], row[C_OW], row[C_OC] = ih, iw, ic, oh, ow, oc
        row[C_WOFF] = woff.get(i, -1)
        row[C_BOFF] = boff.get(i, -1)
        if first_w < 0 and i in woff:
            first_w = i
        if code == K_CONV:
            k = int(_attr(layer, "kernel", "kernel_size"))
            st = int(getattr(layer, "stride", 1))
            if hasattr(layer, "padding_before"):
                pt, pl = (int(v) for v in layer.padding_before(ish))
            elif getattr(layer, "padding", "valid") == "same":  # TensorFlow's rule
                pt = max((oh - 1) * st + k - ih, 0) // 2
                pl = max((ow - 1) * st + k - iw, 0) // 2
            else:
                pt = pl = 0
            row[C_K], row[C_S], row[C_PT], row[C_PL] = k, st, pt, pl
        elif code in (K_AVG, K_MAX):
            k = int(_attr(layer, "size", "pool", "kernel"))
            row[C_K], row[C_S] = k, k
        row[C_ISZ], row[C_OSZ] = isz, osz
        row[C_AIN] = a
        a += rows * isz
        row[C_AOUT] = a
    a += rows * 1
    return prog, a, max(first_w, 0)



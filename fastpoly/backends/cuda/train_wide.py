"""The tiled wide-MLP CUDA trainer (``kernels/train_wide.cu``): one thread block per run.

:class:`PreparedWide` holds one plan's device arrays and launch configuration for
``fastpoly_train_wide``: the layer program of :func:`~fastpoly.backends.layer_program.compile_program`
(dense and elementwise layers only), the train and key rows, the recipe, the parameter scales of the
weight stream (the kernel draws the initial parameters itself, bit for bit
:meth:`~fastpoly.model.Architecture.draw_params`).  A block of 256 threads trains one run at a time;
the minibatch products are shared-memory-tiled matrix products in which every output element is one
float32 FMA chain in the reference's order, so the bits are those of
:func:`~fastpoly.sgd.reference.train_range_reference`.  Per-run scratch (parameters, optimiser state,
activations and errors of a minibatch, the epoch's permutation) is one slice of a global buffer per
block; the grid is capped so that the scratch takes at most half the device's free memory.
:func:`fastpoly.backends.cuda.train.train_range_cuda` sends wide MLPs here (``path="auto"`` or
``"tiled"``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from fastpoly.backends.cuda import source as src
from fastpoly.backends.cuda.train_io import ProgramTrainer, launch_and_fetch, run_outputs
from fastpoly.backends.layer_program import (
    C_KIND,
    C_OSZ,
    K_DENSE,
    K_ERF,
    K_FLAT,
    K_IDENT,
    K_RELU,
    K_SIGMOID,
    K_TANH,
    compile_program,
)
from fastpoly.stream.rng import blocks_per_epoch

__all__ = ["WIDE_FILE", "WIDE_KERNEL", "WIDE_THREADS", "PreparedWide", "check_wide", "tiled_by_size"]

#: the kernel file and its kernel
WIDE_FILE = "train_wide.cu"
WIDE_KERNEL = "fastpoly_train_wide"
#: threads per block (TW_THREADS of the kernel; one block trains one run)
WIDE_THREADS = 256
#: resident blocks per multiprocessor at most (its registers allow 2: __launch_bounds__(256, 2))
_MAX_BLOCKS_PER_SM = 8
#: layer kinds the tiled kernel runs
_KINDS = (K_DENSE, K_FLAT, K_RELU, K_IDENT, K_TANH, K_ERF, K_SIGMOID)
#: weight families -> the kernel's draw mode
_DRAW = {"gaussian": 0, "uniform": 1, "truncated_normal": 2}


def check_wide(arch: Any, rows: int = 1) -> tuple[np.ndarray, int, int]:
    """Check that the tiled trainer runs ``arch``; its layer program for ``rows`` rows.

    The tiled kernel trains sequences of dense and elementwise layers (relu, identity, tanh, erf,
    sigmoid, flatten) ending in one output; convolutions and pooling train on the layer kernel.

    Returns
    -------
    (prog, alen, first_w) : tuple
        :func:`~fastpoly.backends.layer_program.compile_program` of ``arch`` for ``rows`` rows.

    Raises
    ------
    ValueError
        A layer kind, activation, output width or weight family the kernel does not run (the
        message says which).
    """
    try:
        prog, alen, first_w = compile_program(arch, rows)
    except ValueError as exc:
        raise ValueError(f"the tiled CUDA trainer cannot train {arch.spec!r}: {exc}") from None
    bad = sorted({int(k) for k in prog[:, C_KIND]} - set(_KINDS))
    if bad:
        raise ValueError(f"the tiled CUDA trainer (path='tiled') trains dense and elementwise layers only; "
                         f"{arch.spec!r} has convolution or pooling layers (train it with path='layers' or 'auto')")
    if int(prog[-1, C_OSZ]) != 1:
        raise ValueError(f"the tiled CUDA trainer needs one output; {arch.spec!r} has {int(prog[-1, C_OSZ])}")
    if arch.weights not in _DRAW:
        raise ValueError(f"the tiled CUDA trainer has no weight family {arch.weights!r}")
    return prog, alen, first_w


def tiled_by_size(arch: Any) -> bool:
    """Whether ``path="auto"`` trains ``arch``, which has layers other than dense and activation, on the tiled kernel.

    When the tiled kernel runs it (:func:`check_wide`: flatten, dense and elementwise layers) and a
    dense layer has at least :data:`~fastpoly.backends.cuda.source.WIDE_MIN_WIDTH` neurons (the
    wide sampler's threshold): there one thread per run (the layer kernel) is memory-bound and the
    tiled products pay off.  Convolutions and pooling always train on the layer kernel.
    """
    try:
        check_wide(arch)
    except ValueError:
        return False
    return max((int(layer.units) for layer in arch.layers if layer.kind == "dense"), default=0) >= src.WIDE_MIN_WIDTH


class PreparedWide(ProgramTrainer):
    """``fastpoly_train_wide`` on one device: the program, the data, the scratch plan of one plan.

    Parameters
    ----------
    tp : TrainPlan
    dev : object
        The device interface (``CupyDevice`` or the tests' CPU emulation).
    max_blocks : int or None
        Cap on the grid (default: the blocks the device holds at once, within half its free memory).

    Raises
    ------
    ValueError
        A plan the kernel cannot train (layer kinds, activation, optimizer, sizes).
    """

    who = "the tiled CUDA trainer"

    def __init__(self, tp: Any, dev: Any, max_blocks: int | None) -> None:
        arch = tp.plan.mlp
        super().__init__(tp, dev, check_wide)
        self.per_block_f = 3 * self.n_params + 2 * self.alen
        self.per_block_i = self.m + 4 * blocks_per_epoch(self.m)
        pscale = np.empty(self.n_params, np.float32)
        trunc = np.zeros(self.n_params, np.uint8)
        for s in arch.param_blocks():
            pscale[s.offset:s.offset + s.block.size] = s.block.scale
            trunc[s.offset:s.offset + s.block.size] = bool(s.block.truncated)
        self.draw_mode = _DRAW[arch.weights]
        self.arrays["pscale"] = dev.upload(pscale)
        self.arrays["trunc"] = dev.upload(trunc)
        self.kern = dev.compile(WIDE_FILE, [WIDE_KERNEL])[WIDE_KERNEL]
        props = dev.properties()
        attrs = dev.attributes(self.kern)
        regs = max(int(attrs.get("num_regs", 64)), 16)
        by_regs = 65536 // (((regs + 7) // 8 * 8) * WIDE_THREADS)
        by_smem = int(props["smem_per_sm"]) // (int(attrs["static_smem"]) + 1024)
        per_sm = max(1, min(_MAX_BLOCKS_PER_SM, by_regs, by_smem))
        per_block = 4 * (self.per_block_f + self.per_block_i)
        self.max_grid = max(1, min(int(props["sm_count"]) * per_sm, int(dev.memory_free()) // 2 // per_block))
        if max_blocks:
            self.max_grid = min(self.max_grid, int(max_blocks))

    def launch(self, lo: int, hi: int, params: bool) -> list:
        """Train runs ``lo .. hi-1`` in one launch; host arrays of the outputs."""
        dev, a, tp = self.dev, self.arrays, self.tp
        n = hi - lo
        grid = max(1, min(n, self.max_grid))
        fs = dev.empty(grid * self.per_block_f, np.float32)
        js = dev.empty(grid * self.per_block_i, np.int32)
        outs = run_outputs(dev, n, self.W, self.n_params, params)
        args = [np.uint64(tp.plan.seed), np.uint64(lo), np.uint64(n), a["prog"], np.int32(self.nl),
                np.int32(self.first_w), np.int32(self.alen), a["pscale"], a["trunc"], np.int32(self.draw_mode),
                np.int32(self.n_params), a["rints"], a["rfloats"], a["Xtr"], a["ytr"], np.int32(self.m),
                np.int32(self.nin), a["Xkey"], np.int32(self.nkey), np.int64(self.leak_w), a["leak_E"],
                a["leak_from"], np.int32(self.W), *outs, np.int32(1 if params else 0), fs, js]
        return launch_and_fetch(dev, self.kern, grid, WIDE_THREADS, args, 0, outs, params)

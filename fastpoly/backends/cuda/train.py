"""The CUDA P_SGD trainer: ``kernels/train.cu`` through the cupy backend's device interface.

:func:`train_range_cuda` trains runs ``lo .. hi-1`` on the GPU and returns the same
:class:`~fastpoly.backends.base.TrainBatch` as :func:`~fastpoly.sgd.reference.train_range_reference`,
bit for bit (relu/identity networks, every optimiser and loss, the leaked-callback rule).

One warp trains one run at a time (``fastpoly_train``, see the kernel's header): parameters,
optimiser state, activations and errors in the warp's slice of shared memory, the train set in
the block's shared memory, nothing per step through global memory; warps take runs from an
atomic queue (run lengths vary from a few epochs to ``max_epochs``).  The kernel file is compiled
and loaded by the device interface of :mod:`fastpoly.backends.cuda.backend` (``CupyDevice``: NVRTC
with the backend's options -- ``--ftz=false``, no ``-ftz=true`` appended as
:class:`cupy.RawModule` would -- the PTX checked for flush-to-zero and cached on disk); the tests
pass the CPU emulation's device (``tests/cuda_emu``), which runs the same kernel source.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from fastpoly.backends.base import TrainBatch, check_range
from fastpoly.backends.cuda import source as src
from fastpoly.backends.cuda.train_io import (
    ProgramTrainer,
    check_train_plan,
    launch_and_fetch,
    run_outputs,
    upload_run_data,
)
from fastpoly.backends.cuda.train_wide import PreparedWide, tiled_by_size
from fastpoly.backends.layer_program import is_generic
from fastpoly.model.optimizers import OPTIMIZERS
from fastpoly.stream.rng import blocks_per_epoch

__all__ = ["LAYERS_FILE", "LAYERS_KERNEL", "MATH_KERNEL", "TRAIN_FILE", "TRAIN_KERNEL", "loss_math_cuda",
           "rows_capacity", "train_layout", "train_range_cuda"]

#: the kernel file and its kernel
TRAIN_FILE = "train.cu"
TRAIN_KERNEL = "fastpoly_train"
#: the generic layer-sequence trainer (CNNs: conv, pooling, flatten, dense), one thread per run
LAYERS_FILE = "train_cnn.cu"
LAYERS_KERNEL = "fastpoly_train_layers"
#: threads per block of the layer trainer (its __launch_bounds__)
_LAYERS_THREADS = 128
#: the loss math on an array (tests: bit for bit fastpoly.stream.fmath_train)
MATH_KERNEL = "fastpoly_train_math"
#: runs per launch at most (outputs: ~16 W + 13 bytes per run, plus the parameters when asked)
MAX_RUNS_PER_LAUNCH = 1 << 22
_SMEM_DEFAULT_LIMIT = 48 * 1024

_NAMES = (TRAIN_KERNEL, MATH_KERNEL)
_lock = threading.Lock()
_cache: dict = {}  # (id(plan), id(device), warps per block, max blocks) -> (plan, device, _Prepared)


def _align4(v):
    return (int(v) + 3) & ~3


def rows_capacity(batch_rows):
    """Rows of the activation buffers: the minibatch, and at least 8 rows per evaluation chunk."""
    return max(int(batch_rows), 8)


def train_layout(widths, bias, m, batch_rows, rows_cap, has_s1, has_s2, keep_z=False):
    """Floats of shared memory per warp of ``fastpoly_train`` (mirrors ``fp_tr_layout`` of ``kernels/train.cu``).

    Parameters
    ----------
    widths : sequence of int
        Layer widths ``(n_inputs, *hidden, 1)``.
    bias : bool
    m : int
        Train points.
    batch_rows : int
        ``min(batch_size, m)``.
    rows_cap : int
        Rows of the activation buffers (:func:`rows_capacity`).
    has_s1, has_s2 : bool
        Optimiser state: momentum buffer, Adam ``m``, Adagrad accumulator or RMSprop ``v``; Adam ``v``
        or RMSprop momentum.
    keep_z : bool
        A smooth hidden activation (tanh, erf, sigmoid): the pre-activations of the hidden layers are kept.
    """
    off = 0
    maxh = 1
    L = len(widths) - 1
    for l in range(L):
        fi, fo = widths[l], widths[l + 1]
        off += fo * (fi | 1)
        if bias:
            off += fo
        maxh = max(maxh, fo)
    np_pad = _align4(off)
    off = np_pad * (1 + int(bool(has_s1)) + int(bool(has_s2)))
    for l in range(L):
        off += _align4(widths[l] * rows_cap)
    if keep_z:
        for l in range(1, L):
            off += _align4(widths[l] * rows_cap)
    off += _align4(rows_cap)
    off += 2 * _align4(maxh * batch_rows)
    off += _align4(m)
    off += 4 * blocks_per_epoch(m)
    return _align4(off)


class _NotForWarpKernel(ValueError):
    """The warp-per-run kernel cannot take this MLP (too wide for shared memory, or too deep).

    One run does not fit in a block's shared memory (a wide network) or the MLP has more than
    ``MAX_LAYERS`` layers; ``path="auto"`` then takes the tiled kernel.
    """


class _Prepared:
    """Device copies of one plan's arrays and the launch configuration on one device."""

    def __init__(self, tp: Any, dev, warps_per_block, max_blocks):
        plan, r = tp.plan, tp.recipe
        mlp = plan.mlp
        check_train_plan(tp, "the CUDA trainer")
        if mlp.n_layers > src.MAX_LAYERS:
            raise _NotForWarpKernel(f"the warp-per-run CUDA trainer handles MLPs of at most {src.MAX_LAYERS} layers; "
                                    f"{mlp.spec} has {mlp.n_layers} (path='auto' or 'tiled' trains it)")
        self.dev = dev
        self.tp = tp
        m = tp.m_train
        B = min(r.batch_size, m)
        self.rows_cap = rows_capacity(B)
        n_state = len(OPTIMIZERS[r.optimizer].used_state(r.hyper()))  # state vectors s1, s2 (the table's)
        has_s1, has_s2 = n_state >= 1, n_state >= 2
        keep_z = mlp.activation not in ("relu", "identity")  # the smooth ones keep their pre-activations
        self.per_warp = train_layout(mlp.widths, mlp.bias, m, B, self.rows_cap, has_s1, has_s2, keep_z)
        n_in = mlp.widths[0]
        self.block_floats = _align4(m * n_in + m)
        self.m, self.nkey, self.W, self.n_params = m, int(plan.key_rows.size), int(plan.n_words), int(mlp.n_params)
        arrays, self.leak_w = upload_run_data(dev, tp)
        desc, scales = src.net_desc(mlp)
        self.arrays = {"desc": dev.upload(desc), "scales": dev.upload(scales), **arrays}
        self.kern = dev.compile(TRAIN_FILE, list(_NAMES))[TRAIN_KERNEL]
        props = dev.properties()
        attrs = dev.attributes(self.kern)
        static = int(attrs["static_smem"]) + 4 * self.block_floats
        limit = int(props.get("smem_per_block", _SMEM_DEFAULT_LIMIT))
        try:
            sp = src.shared_memory_plan(4 * self.per_warp, int(warps_per_block), static, limit,
                                        int(props.get("smem_per_block_optin", limit)))
        except ValueError as e:
            raise _NotForWarpKernel(str(e)) from None
        self.wpb = sp.warps
        self.smem = 4 * self.block_floats + sp.dynamic
        if sp.opt_in and self.smem > attrs["max_dynamic_smem"]:
            dev.set_max_dynamic_smem(self.kern, self.smem)
        regs = max(int(attrs.get("num_regs", 64)), 16)
        warps_sm = max(1, min(64, 65536 // (((regs + 7) // 8 * 8) * 32)))
        per_block = self.smem + int(attrs["static_smem"]) + 1024
        blocks_sm = max(1, min(32, warps_sm // self.wpb, int(props["smem_per_sm"]) // per_block))
        self.max_grid = int(props["sm_count"]) * blocks_sm
        if max_blocks:
            self.max_grid = min(self.max_grid, int(max_blocks))

    def launch(self, lo, hi, params):
        """Train runs ``lo .. hi-1`` in one launch; host arrays of the outputs."""
        dev, a, tp = self.dev, self.arrays, self.tp
        n = hi - lo
        outs = run_outputs(dev, n, self.W, self.n_params, params)
        queue = dev.zeros(2, np.uint64)  # [0] the run queue, [1] the kernel's status word
        grid = max(1, min(-(-n // self.wpb), self.max_grid))
        args = [np.uint64(tp.plan.seed), np.uint64(lo), np.uint64(n), a["desc"], a["scales"], a["rints"], a["rfloats"],
                a["Xtr"], a["ytr"], np.int32(self.m), a["Xkey"], np.int32(self.nkey), np.int32(self.rows_cap),
                np.int32(self.per_warp), np.int64(self.leak_w), a["leak_E"], a["leak_from"], *outs,
                np.int32(1 if params else 0), queue]
        out = launch_and_fetch(dev, self.kern, grid, 32 * self.wpb, args, self.smem, outs, params)
        src.check_status(int(dev.download(queue)[1]), "the P_SGD kernel (fastpoly_train)")
        return out


class _PreparedLayers(ProgramTrainer):
    """The generic layer trainer (``kernels/train_cnn.cu``) on one device: the program, the data, the scratch plan.

    One thread trains one run at a time from the initial parameters the host draws
    (:meth:`~fastpoly.model.Architecture.draw_params`: every weight family); its parameters, gradient,
    optimiser state and the activations and errors of a minibatch live in its slice of a global
    scratch buffer (``4 n_params + 2 alen`` floats and ``m + 4 bpe`` ints per thread).  The grid is
    capped so that the scratch of all its threads takes at most half the device's free memory.
    CNNs train here (wide MLPs on the tiled kernel, :mod:`fastpoly.backends.cuda.train_wide`).
    """

    who = "the CUDA layer trainer"

    def __init__(self, tp: Any, dev, max_blocks):
        super().__init__(tp, dev)
        self.per_thread_f = 4 * self.n_params + 2 * self.alen
        self.per_thread_i = self.m + 4 * blocks_per_epoch(self.m)
        self.kern = dev.compile(LAYERS_FILE, [LAYERS_KERNEL])[LAYERS_KERNEL]
        props = dev.properties()
        self.max_grid = 4 * int(props["sm_count"])
        per_block = 4 * _LAYERS_THREADS * (self.per_thread_f + self.per_thread_i)
        self.max_grid = max(1, min(self.max_grid, int(dev.memory_free()) // 2 // per_block))
        if max_blocks:
            self.max_grid = min(self.max_grid, int(max_blocks))

    def launch(self, lo, hi, params):
        """Train runs ``lo .. hi-1`` in one launch; host arrays of the outputs."""
        dev, a, tp = self.dev, self.arrays, self.tp
        n = hi - lo
        grid = max(1, min(-(-n // _LAYERS_THREADS), self.max_grid))
        threads = grid * _LAYERS_THREADS
        P0 = dev.upload(np.ascontiguousarray(self.arch.draw_params(tp.plan.seed, np.arange(lo, hi, dtype=np.uint64)),
                                             np.float32))
        fs = dev.empty(threads * self.per_thread_f, np.float32)
        js = dev.empty(threads * self.per_thread_i, np.int32)
        outs = run_outputs(dev, n, self.W, self.n_params, params)
        args = [np.uint64(tp.plan.seed), np.uint64(lo), np.uint64(n), a["prog"], np.int32(self.nl),
                np.int32(self.first_w), np.int32(self.alen), P0, np.int32(self.n_params), a["rints"], a["rfloats"],
                a["Xtr"], a["ytr"], np.int32(self.m), np.int32(self.nin), a["Xkey"], np.int32(self.nkey),
                np.int64(self.leak_w), a["leak_E"], a["leak_from"], np.int32(self.W), *outs,
                np.int32(1 if params else 0), fs, js]
        return launch_and_fetch(dev, self.kern, grid, _LAYERS_THREADS, args, 0, outs, params)


def _prepared(tp, dev, warps_per_block, max_blocks, path="auto"):
    """The memoised :class:`_Prepared` of a plan on a device (uploads once per plan, not per batch of runs)."""
    key = (id(tp), id(dev), warps_per_block, max_blocks, path)
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            return hit[2]
    if path not in ("auto", "warp", "layers", "tiled"):
        raise ValueError(f"path must be 'auto', 'warp', 'layers' or 'tiled', got {path!r}")
    prep: Any
    generic = is_generic(tp.plan.mlp)
    if path == "tiled" or (path == "auto" and generic and tiled_by_size(tp.plan.mlp)):
        prep = PreparedWide(tp, dev, max_blocks)  # (auto: flatten + wide dense layers)
    elif generic or path == "layers":
        prep = _PreparedLayers(tp, dev, max_blocks)
    else:
        try:
            prep = _Prepared(tp, dev, warps_per_block, max_blocks)
        except _NotForWarpKernel:
            if path == "warp":
                raise
            prep = PreparedWide(tp, dev, max_blocks)  # a wide or deep MLP: the tiled kernel, one block per run
    with _lock:
        _cache[key] = (tp, dev, prep)  # the references keep the ids valid
        while len(_cache) > 4:
            _cache.pop(next(iter(_cache)))
    return prep


def train_range_cuda(tp: Any, lo: int, hi: int, params: bool = False, device=None, *, warps_per_block=4,
                     max_blocks=None, max_runs_per_launch=MAX_RUNS_PER_LAUNCH, path="auto") -> TrainBatch:
    """Train runs ``lo .. hi-1`` on a CUDA device (bit-identical to the NumPy reference).

    Dense networks train on the warp-per-run kernel (``kernels/train.cu``); wide MLPs whose run (or
    train set) does not fit in one block's shared memory (e.g. 784-1024-1024-1), MLPs of more than
    16 layers and flatten + dense networks with a layer of >= 128 neurons on the tiled kernel
    (``kernels/train_wide.cu``, one thread block per run, the minibatch products as tiled matrix
    products); convolutions, pooling and narrower flatten + dense networks on the generic layer
    kernel (``kernels/train_cnn.cu``, one thread per run, initial parameters drawn on the host): the
    same bits on every path.

    Parameters
    ----------
    tp : TrainPlan
    lo, hi : int
    params : bool
        Also return the final parameters (MLP order).
    device : object or None
        The device interface (default: the process's ``CupyDevice``); the tests pass the CPU
        emulation's ``EmuDevice``.
    warps_per_block : int
        Runs trained at once per block (fewer when the shared memory of a block cannot hold them).
    max_blocks : int or None
        Cap on the grid (default: the blocks the device holds at once).
    max_runs_per_launch : int
    path : {"auto", "warp", "layers", "tiled"}
        ``"auto"``: a dense MLP on the warp kernel when a run fits in shared memory and it has at
        most 16 layers, else on the tiled kernel; flatten + dense networks with a dense layer of
        >= 128 neurons on the tiled kernel; convolutions, pooling and narrower flatten + dense
        networks on the layer kernel.  ``"warp"`` / ``"layers"`` / ``"tiled"`` force one
        (``"warp"`` raises where a run does not fit or the MLP is deeper, ``"tiled"`` for
        convolutions and pooling).

    Raises
    ------
    RuntimeError
        No device given and CuPy or a GPU missing.
    ValueError
        A plan the kernel cannot train (activation, depth; with ``path="warp"`` the shared memory of one warp,
        with ``path="tiled"`` a layer other than dense and elementwise).
    """
    lo, hi = check_range(lo, hi)
    if int(warps_per_block) < 1:
        raise ValueError("warps_per_block must be >= 1")
    W = tp.plan.n_words
    if hi == lo:
        z = np.zeros(0, np.int32)
        return TrainBatch(lo, hi, np.zeros((0, W), np.uint64), np.zeros((0, W), np.uint64), np.zeros(0, np.int8), z,
                          z.copy(), np.zeros(0, np.float32),
                          np.zeros((0, tp.plan.mlp.n_params), np.float32) if params else None)
    dev = device if device is not None else default_device()
    prep = _prepared(tp, dev, int(warps_per_block), max_blocks, path)
    step = max(1, int(max_runs_per_launch))
    parts = [prep.launch(a, min(hi, a + step), params) for a in range(lo, hi, step)]

    def cat(i):
        return np.concatenate([p[i] for p in parts])

    return TrainBatch(lo, hi, cat(0).reshape(-1, W), cat(1).reshape(-1, W), cat(2).astype(np.int8),
                      cat(3).astype(np.int32), cat(4).astype(np.int32), cat(5).astype(np.float32),
                      cat(6).reshape(-1, tp.plan.mlp.n_params) if params else None)


def loss_math_cuda(x, device=None):
    """``(exp, sigmoid, softplus, log1p(|x|))`` of float32 ``x`` by the kernels' own functions (``kernels/train.cuh``).

    Returns a float32 array ``(4, len(x))``; bit for bit :mod:`fastpoly.stream.fmath_train`.
    """
    x = np.ascontiguousarray(np.asarray(x, np.float32).ravel())
    dev = device if device is not None else default_device()
    n = x.size
    if n == 0:
        return np.zeros((4, 0), np.float32)
    kern = dev.compile(TRAIN_FILE, list(_NAMES))[MATH_KERNEL]
    xd = dev.upload(x)
    out = dev.empty(4 * n, np.float32)
    with dev.stream():
        dev.launch(kern, (max(1, min(-(-n // 256), 1024)),), (256,), [xd, out, np.int64(n)], 0)
        res = dev.download(out)
        dev.synchronize()
    return res.reshape(4, n)



def default_device() -> Any:
    """The process's one CUDA device: the one cupy backend object's (memoised in :mod:`fastpoly.backends.cuda.device`).

    Raises
    ------
    fastpoly.backends.BackendUnavailable
        CuPy or a CUDA device is missing (the message says which).
    """
    from fastpoly.backends import backend_for

    return backend_for("train", "cupy").device()

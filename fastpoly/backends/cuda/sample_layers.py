"""The CUDA layer-sequence sampler (CNNs): ``kernels/sample_layers.cu`` on one device.

One thread per sample: it draws the sample's parameters on the device (the stream of
:meth:`fastpoly.model.Architecture.draw_params`, truncated normals included), runs the layer program
of :func:`fastpoly.backends.layer_program.compile_program` (compiled for one row) on every input
row in the reference's float32 FMA order, and writes the key, the acceptance and the margin --
bit for bit :func:`fastpoly.backends.reference.sample_keys_reference`.  Counting (unique keys,
counts, first indices) is done on the host from the keys of the accepted samples.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from fastpoly.backends.layer_program import compile_program

__all__ = ["SAMPLE_LAYERS_FILE", "SAMPLE_LAYERS_KERNEL", "PreparedSampleLayers"]

SAMPLE_LAYERS_FILE = "sample_layers.cu"
SAMPLE_LAYERS_KERNEL = "fastpoly_sample_layers"
_THREADS = 128
_MODES = {"gaussian": 0, "uniform": 1, "truncated_normal": 2}


#: activations the CUDA layer sampler computes bit for bit like the reference sampler
_SAMPLED_ACTIVATIONS = ("relu", "identity")


def check_layers(arch: Any) -> None:
    """Raise ``ValueError`` when the CUDA layer sampler cannot run ``arch`` (the message says why)."""
    if arch.activation not in _SAMPLED_ACTIVATIONS:
        # the layer program's smooth kinds are the trainers' float32 functions; sampling defines tanh/erf
        # by float64 libm (the reference sampler), so only the exact activations are sampled here
        raise ValueError(f"the cupy backend cannot sample {arch.spec!r}: it samples relu and identity layer "
                         f"sequences, not {arch.activation!r} (sample it with backend='numba' or 'numpy')")
    try:
        compile_program(arch, 1)
    except ValueError as exc:
        raise ValueError(f"the cupy backend cannot sample {arch.spec!r}: {exc} "
                         "(sample it with backend='numba' or 'numpy')") from None
    if arch.weights not in _MODES:
        raise ValueError(f"the cupy backend has no weight family {arch.weights!r} for layer sequences")
    if arch.n_params >= 2**31:
        raise ValueError("the cupy layer sampler needs fewer than 2**31 parameters")


class PreparedSampleLayers:
    """Kernel-ready device arrays of a layer-sequence plan (uploaded once per plan).

    Parameters
    ----------
    plan : SamplerPlan
        A plan whose network is not an MLP.
    dev : object
        The device interface (``CupyDevice`` or the tests' CPU emulation).
    max_blocks : int or None
        Cap on the grid.
    """

    def __init__(self, plan: Any, dev: Any, max_blocks: int | None = None) -> None:
        arch = plan.mlp
        check_layers(arch)
        prog, alen, _ = compile_program(arch, 1)
        n = int(arch.n_params)
        pscale = np.empty(n, np.float32)
        trunc = np.zeros(n, np.uint8)
        for s in arch.param_blocks():
            pscale[s.offset:s.offset + s.block.size] = s.block.scale
            trunc[s.offset:s.offset + s.block.size] = bool(s.block.truncated)
        X = np.asarray(plan.X, np.float32).reshape(plan.X.shape[0], -1)
        order = np.concatenate([plan.train_rows, plan.key_rows]).astype(np.int64)
        Xo = np.ascontiguousarray(X[order])
        labels = np.ascontiguousarray(plan.train_labels, np.uint8)
        self.dev, self.seed = dev, int(plan.seed)
        self.nl, self.alen, self.n_params, self.mode = int(prog.shape[0]), int(alen), n, _MODES[arch.weights]
        self.n0, self.nk, self.nin, self.W = int(plan.train_rows.size), int(plan.key_rows.size), int(X.shape[1]), \
            int(plan.n_words)
        self.arrays = {
            "prog": dev.upload(np.ascontiguousarray(prog, np.int32)),
            "pscale": dev.upload(pscale),
            "trunc": dev.upload(trunc),
            "X": dev.upload(Xo if Xo.size else np.zeros(1, np.float32)),
            "labels": dev.upload(labels if labels.size else np.zeros(1, np.uint8)),
        }
        self.kern = dev.compile(SAMPLE_LAYERS_FILE, [SAMPLE_LAYERS_KERNEL])[SAMPLE_LAYERS_KERNEL]
        self.max_grid = 4 * int(dev.properties()["sm_count"])
        if max_blocks:
            self.max_grid = min(self.max_grid, int(max_blocks))

    def run(self, start: int, n: int, early_exit: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Host arrays ``(keys (n, W) uint64, accepted (n,) bool, margins (n,) float32)`` of samples ``start ..``.

        With ``early_exit`` a rejected sample's key is 0 and its margin is not the full one.
        """
        dev, a = self.dev, self.arrays
        grid = max(1, min(-(-n // _THREADS), self.max_grid))
        fs = dev.empty(grid * _THREADS * (self.n_params + self.alen), np.float32)
        keys = dev.empty((n, self.W), np.uint64)
        acc = dev.empty(n, np.uint8)
        marg = dev.empty(n, np.float32)
        args = [np.uint64(self.seed), np.uint64(start), np.uint64(n), a["prog"], np.int32(self.nl),
                np.int32(self.alen), a["pscale"], a["trunc"], np.int32(self.mode), np.int32(self.n_params), a["X"],
                np.int32(self.n0), np.int32(self.nk), np.int32(self.nin), a["labels"], np.int32(self.W),
                np.int32(1 if early_exit else 0), keys, acc, marg, fs]
        with dev.stream():
            dev.launch(self.kern, (grid,), (_THREADS,), args, 0)
            out = (dev.download(keys).reshape(n, self.W), dev.download(acc).astype(bool), dev.download(marg))
            dev.synchronize()
        return out

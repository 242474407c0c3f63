"""What the three CUDA trainers share on the host: the plan's checks, its data on the device, the outputs.

The warp kernel (``kernels/train.cu``), the layer kernel (``kernels/train_cnn.cu``) and the tiled
kernel (``kernels/train_wide.cu``) take the same recipe, train set, key rows and leaked-callback
arrays, and write the same per-run outputs (final and initial keys, status, first-fit epoch,
epochs, loss, optionally the final parameters); :func:`upload_run_data`, :func:`run_outputs` and
:func:`launch_and_fetch` hold that once.  :class:`ProgramTrainer` is the part of the two
layer-program trainers (layer and tiled kernels) that does not depend on the kernel.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fastpoly.activations import check_supported
from fastpoly.backends.layer_program import compile_program
from fastpoly.model.optimizers import OPTIMIZERS

__all__ = ["upload_run_data", "run_outputs", "launch_and_fetch", "check_train_plan", "ProgramTrainer"]


def check_train_plan(tp: Any, who: str) -> None:
    """Refuse a plan no CUDA trainer runs: an activation without a CUDA kernel, >= 2**31 parameters, an unknown optimizer.

    ``who`` names the trainer in the messages.
    """
    arch, r = tp.plan.mlp, tp.recipe
    for layer in arch.layers:
        if getattr(layer, "kind", "") == "activation":
            check_supported(layer.name, "train", "cupy")
    if arch.n_params >= 2**31:
        raise ValueError(f"{who} needs fewer than 2**31 parameters; {arch.spec} has {arch.n_params}")
    if r.optimizer not in OPTIMIZERS:
        raise ValueError(f"{who} has no optimizer {r.optimizer!r}")


def upload_run_data(dev: Any, tp: Any) -> tuple[dict[str, Any], int]:
    """The recipe, train set, key rows and leaked-callback arrays of a plan on the device.

    Returns
    -------
    (arrays, leak_w) : tuple
        Device arrays ``rints, rfloats, Xtr, ytr, Xkey, leak_E, leak_from`` (inputs flattened per
        row, float32) and the leaked callback's window.
    """
    plan, r = tp.plan, tp.recipe
    lw, lE, lf = tp.leak_arrays()
    X = np.asarray(plan.X, np.float32).reshape(plan.X.shape[0], -1)
    Xkey = np.ascontiguousarray(X[plan.key_rows])
    arrays = {
        "rints": dev.upload(np.asarray(r.ints(), np.int64)),
        "rfloats": dev.upload(np.asarray(r.floats(), np.float32)),
        "Xtr": dev.upload(np.ascontiguousarray(X[plan.train_rows])),
        "ytr": dev.upload(np.ascontiguousarray(plan.train_labels, np.float32)),
        "Xkey": dev.upload(Xkey if Xkey.size else np.zeros(1, np.float32)),
        "leak_E": dev.upload(np.ascontiguousarray(lE, np.int64)),
        "leak_from": dev.upload(np.ascontiguousarray(lf, np.int64)),
    }
    return arrays, int(lw)


def run_outputs(dev: Any, n: int, n_words: int, n_params: int, params: bool) -> list[Any]:
    """Device arrays of the outputs of ``n`` runs, in the kernels' argument order.

    ``keys, init_keys`` (uint64 ``(n, n_words)``), ``status`` (int8), ``first_fit``, ``epochs``
    (int32), ``losses`` (float32) and ``pout`` (float32 ``(n, n_params)``, one float when
    ``params`` is false).
    """
    return [dev.empty((n, n_words), np.uint64), dev.empty((n, n_words), np.uint64), dev.empty(n, np.int8),
            dev.empty(n, np.int32), dev.empty(n, np.int32), dev.empty(n, np.float32),
            dev.empty((n, n_params) if params else 1, np.float32)]


def launch_and_fetch(dev: Any, kern: Any, grid: int, block: int, args: list[Any], smem: int, outs: list[Any],
                     params: bool) -> list[Any]:
    """Launch a trainer on one stream and download the outputs of :func:`run_outputs` (``pout`` as None unless ``params``)."""
    with dev.stream():
        dev.launch(kern, (grid,), (block,), args, smem)
        got = [dev.download(x) for x in outs[:6]]
        got.append(dev.download(outs[6]) if params else None)
        dev.synchronize()
    return got


class ProgramTrainer:
    """The kernel-independent part of the layer-program trainers (the layer and tiled kernels).

    Checks the plan, compiles its layer program for one minibatch with ``compile``
    (:func:`~fastpoly.backends.layer_program.compile_program`, or a trainer's checking variant of
    it) and uploads the program and the run data.

    Attributes
    ----------
    nl, alen, first_w : int
        Program steps, floats of a minibatch's activations, the first weight's offset.
    m, nkey, W, n_params, nin : int
        Train rows, key rows, key words, parameters, inputs per row.
    arrays : dict
        ``prog`` and the arrays of :func:`upload_run_data`.
    leak_w : int
    """

    #: the trainer's name in messages
    who = "the CUDA trainer"

    def __init__(self, tp: Any, dev: Any,
                 compile: Callable[[Any, int], tuple[np.ndarray, int, int]] = compile_program) -> None:
        check_train_plan(tp, self.who)
        plan, r = tp.plan, tp.recipe
        arch = plan.mlp
        self.dev, self.tp, self.arch = dev, tp, arch
        m = tp.m_train
        prog, alen, first_w = compile(arch, max(1, min(int(r.batch_size), m)))
        if alen >= 2**31 or m * int(arch.n_inputs) >= 2**31:
            raise ValueError(f"{self.who}: the scratch of one run (or the train set) exceeds 2**31 floats")
        self.nl, self.alen, self.first_w = int(prog.shape[0]), int(alen), int(first_w)
        self.m, self.nkey, self.W, self.n_params = m, int(plan.key_rows.size), int(plan.n_words), int(arch.n_params)
        self.nin = int(arch.n_inputs)
        self.arrays, self.leak_w = upload_run_data(dev, tp)
        self.arrays["prog"] = dev.upload(np.ascontiguousarray(prog, np.int32))

"""The NumPy reference sampler: the oracle every kernel is compared with.

Readable and vectorised over samples, with no BLAS: each pre-activation
starts from the bias and accumulates the inputs in index order with exact
float32 fused multiply-adds (the FMA rule of :mod:`fastpoly.stream.fmath`).
"""
from __future__ import annotations

import numpy as np

from fastpoly.activations import get_activation
from fastpoly.backends.base import (
    Backend,
    CountBatch,
    SampleBatch,
    check_range,
    count_keys,
)
from fastpoly.keys import pack_bits
from fastpoly.network import forward_reference
from fastpoly.stream.fmath import _fma32_from_f64 as fma32_f64
from fastpoly.stream.rng import stream_normals

__all__ = ["forward_layers", "forward_samples", "sample_keys_reference", "count_range_reference", "gp_values_reference", "NumpyBackend"]


def forward_layers(arch, params, X):
    """Final pre-activations ``(S, m)`` (float32) of any architecture (a CNN): its layers' references.

    Every layer's float32 forward (:mod:`fastpoly.model.conv`, :class:`fastpoly.model.Dense`) follows
    the FMA rule, so these are the bits of every backend's layer-sequence sampler.
    """
    out = np.empty((params.shape[0], X.shape[0]), np.float32)
    for s in range(params.shape[0]):
        out[s] = arch.forward(params[s], X)[1].reshape(-1)
    return out


def forward_samples(plan, params):
    """Final pre-activations ``(S, m)`` (float32) of S networks with parameter vectors ``params``."""
    if not plan.is_mlp:
        return forward_layers(plan.mlp, params, plan.X)
    mlp = plan.mlp
    S = params.shape[0]
    w = mlp.widths
    h = plan.X[None, :, :].astype(np.float64)  # (1, m, n); float64 holding float32 values
    act = get_activation(mlp.activation)
    for i, (wo, bo) in enumerate(mlp.param_offsets()):
        fan_in, fan_out = w[i], w[i + 1]
        W = params[:, wo : wo + fan_in * fan_out].reshape(S, fan_out, fan_in).astype(np.float64)
        if bo is None:
            z = np.zeros((S, plan.m, fan_out), np.float64)
        else:
            z = np.broadcast_to(params[:, None, bo : bo + fan_out], (S, plan.m, fan_out)).astype(np.float64)
        for k in range(fan_in):  # sequential over the reduction index, one fma32 per step
            z = fma32_f64(W[:, None, :, k], h[:, :, k : k + 1], z).astype(np.float64)
        z = z.astype(np.float32)
        h = act(z, np.float32).astype(np.float64) if i < mlp.n_layers - 1 else z
    return h[:, :, 0]


def sample_keys_reference(plan, start, stop, margins=False):
    """Keys of samples ``start .. stop-1`` of the plan's stream, in index order (NumPy reference).

    Returns
    -------
    SampleBatch
    """
    start, stop = check_range(start, stop)
    idx = np.arange(start, stop, dtype=np.uint64) if stop > start else np.zeros(0, np.uint64)
    params = plan.mlp.draw_params(plan.seed, idx)
    z = forward_samples(plan, params)
    bits = z > 0
    if plan.conditioned:
        accepted = np.all(bits[:, plan.train_rows] == plan.train_labels.astype(bool), axis=1)
        keybits = bits[:, plan.key_rows]
    else:
        accepted = np.ones(bits.shape[0], bool)
        keybits = bits
    keys = pack_bits(keybits)
    marg = np.min(np.abs(z), axis=1).astype(np.float32) if margins else None
    return SampleBatch(keys, accepted, marg)


def count_range_reference(plan, start, stop):
    """Draw samples ``start .. stop-1``, reject, and count (NumPy reference)."""
    b = sample_keys_reference(plan, start, stop)
    idx = np.arange(start, stop, dtype=np.uint64)[b.accepted]
    k, c, f = count_keys(b.keys[b.accepted], idx)
    return CountBatch(k, c, f, stop - start, int(b.accepted.sum()))


def gp_values_reference(F: np.ndarray, seed: int, idx: np.ndarray, stream: int, lower: bool) -> np.ndarray:
    """GP values ``g = z F^T`` (float64, ``(n, rows)``) of samples ``idx``: the definition.

    ``z`` are the Philox normals of ``stream`` (:func:`fastpoly.stream.rng.stream_normals`); ``g``
    is summed over the columns ``j`` of ``F`` in increasing order, every product and sum
    rounded separately (no FMA, no BLAS), skipping the zeros above the diagonal of a
    lower-triangular ``F`` (``lower``) -- exactly as the compiled engines sum.
    """
    idx = np.asarray(idx, np.uint64).reshape(-1)
    Z = stream_normals(seed, idx, F.shape[1], stream=stream).astype(np.float64)
    n, r = Z.shape
    G = np.zeros((n, F.shape[0]))
    for j in range(r):
        if lower:
            G[:, j:] += Z[:, j:j + 1] * F[j:, j]
        else:
            G += Z[:, j:j + 1] * F[:, j]
    return G


class NumpyBackend(Backend):
    """Pure NumPy: the oracle for every other backend (slow, exact, readable).

    It offers sampling, evaluation and GP draws here; training, K_LZ, the histogram tables
    and the merge by the definitions of the rooms that own them (see :class:`~fastpoly.backends.base.Backend`: :attr:`reference` is True).
    """

    name = "numpy"
    reference = True
    lacks: dict[str, str] = {
        "codec": "the block codec's Python reference (fastpoly.counts.codec) is a test oracle; files use numba's",
    }

    def _lacking(self, what: str) -> NotImplementedError:
        return NotImplementedError(f"the numpy backend is the reference: {what} is computed by its definition in "
                                   "the room that owns it (e.g. fastpoly.sgd.reference, fastpoly.analysis.complexity)")

    def gp_values(self, F, seed, idx, stream, lower):
        """GP values of samples ``idx`` (:func:`gp_values_reference`)."""
        return gp_values_reference(F, seed, idx, stream, lower)

    def availability(self):
        """Always available."""
        return True, ""

    def sample_keys(self, plan, start, stop, margins=False):
        """Keys of samples ``start..stop-1`` (:func:`sample_keys_reference`)."""
        return sample_keys_reference(plan, start, stop, margins)

    def count_range(self, plan, start, stop):
        """Counts of samples ``start..stop-1`` (:func:`count_range_reference`)."""
        return count_range_reference(plan, start, stop)

    def prepare(self, plan):
        """Nothing to compile."""

    def evaluate(self, net, X, dtype):
        """Outputs of ``net`` on ``X`` with the reference forward pass."""
        if hasattr(net, "evaluate_reference"):
            return net.evaluate_reference(X, dtype)
        return forward_reference(net, X, dtype)

    def default_batch_size(self, plan):
        """Samples per batch: bounded by about 256 MB of float64 temporaries."""
        if plan.is_mlp:
            per = plan.m * max(plan.mlp.widths[1:]) * 8 * 6  # bytes of float64 temporaries per sample
        else:
            per = plan.m * max(int(np.prod(s)) for s in plan.mlp.shapes) * 8 * 6
        return int(max(16, min(1024, (256 << 20) // max(per, 1))))

    def describe(self):
        """One line for the CLI."""
        return "numpy (reference, single thread)"

"""The NumPy reference sampler: the oracle every kernel is compared with.

Readable and vectorised over samples, with no BLAS: each pre-activation
starts from the bias and accumulates the inputs in index order with exact
float32 fused multiply-adds (the FMA rule of :mod:`fastpoly.fmath`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import get_activation
from .fmath import _fma32_from_f64 as fma32_f64
from .keys import pack_bits, sort_order

__all__ = ["SampleBatch", "CountBatch", "forward_samples", "sample_keys_reference",
           "count_keys", "count_range_reference"]


@dataclass
class SampleBatch:
    """Per-sample results for samples ``start .. stop-1`` in index order.

    Attributes
    ----------
    keys : uint64 array (n, n_words) — bits over the plan's key rows
    accepted : bool array (n,) — agrees with the train labels (all True if unconditioned)
    margins : float32 array (n,) or None — smallest ``|output|`` over all rows of X
    """

    keys: np.ndarray
    accepted: np.ndarray
    margins: np.ndarray | None = None


@dataclass
class CountBatch:
    """Counted results of one index range: unique keys (sorted), counts, smallest index per key."""

    keys: np.ndarray
    counts: np.ndarray
    first_index: np.ndarray
    n_samples: int
    n_accepted: int


def forward_samples(plan, params):
    """Final pre-activations ``(S, m)`` (float32) of S networks with parameter vectors ``params``."""
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


def _check_range(start, stop):
    for v, what in ((start, "start"), (stop, "stop")):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{what} must be an integer, got {v!r}")
    start, stop = int(start), int(stop)
    if not 0 <= start <= stop <= 2**64:
        raise ValueError(f"need 0 <= start <= stop <= 2**64, got start={start}, stop={stop}")
    return start, stop


def sample_keys_reference(plan, start, stop, margins=False):
    """Keys of samples ``start .. stop-1`` of the plan's stream, in index order (NumPy reference).

    Returns
    -------
    SampleBatch
    """
    start, stop = _check_range(start, stop)
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


def count_keys(keys, indices):
    """Exact counting: unique keys (big-integer order), counts (int64), smallest index per key.

    Parameters
    ----------
    keys : uint64 array (n, W)
    indices : uint64 array (n,) — the sample index of each key
    """
    keys = np.asarray(keys, dtype=np.uint64)
    indices = np.asarray(indices, dtype=np.uint64)
    W = keys.shape[1]
    if keys.shape[0] == 0:
        return np.zeros((0, W), np.uint64), np.zeros(0, np.int64), np.zeros(0, np.uint64)
    order = sort_order(keys)
    sk = keys[order]
    si = indices[order]
    new = np.ones(sk.shape[0], bool)
    new[1:] = np.any(sk[1:] != sk[:-1], axis=1)
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, sk.shape[0])).astype(np.int64)
    first = np.minimum.reduceat(si, starts).astype(np.uint64)
    return np.ascontiguousarray(sk[starts]), counts, first


def count_range_reference(plan, start, stop):
    """Draw samples ``start .. stop-1``, reject, and count (NumPy reference)."""
    b = sample_keys_reference(plan, start, stop)
    idx = np.arange(start, stop, dtype=np.uint64)[b.accepted]
    k, c, f = count_keys(b.keys[b.accepted], idx)
    return CountBatch(k, c, f, stop - start, int(b.accepted.sum()))

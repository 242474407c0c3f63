"""Validated, immutable description of one sampling job (architecture, inputs, seed, train set).

Every backend receives a :class:`SamplerPlan`; it holds plain NumPy arrays so
compiled kernels can take them as arguments directly.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from fastpoly.activations import SAMPLER_CODES, check_supported
from fastpoly.model.architecture import Architecture
from fastpoly.model.inputs import BOOLEAN_INPUT_LIMITS, all_boolean_inputs, boolean_inputs, check_input_rows
from fastpoly.model.mlp import MLP
from fastpoly.model.spec import as_architecture
from fastpoly.stream.rng import check_seed

__all__ = ["SamplerPlan", "make_plan", "check_inputs", "check_train", "as_mlp", "inputs_digest", "check_memory",
           "physical_memory", "as_rows"]


def as_mlp(arch: MLP | str) -> MLP:
    """Accept an :class:`MLP` or an architecture string like ``"7-40-40-1"`` (the sampler's architectures)."""
    a = as_architecture(arch)
    if not isinstance(a, MLP):
        raise ValueError(f"the sampler handles fully connected architectures (MLP) only, got {a.spec!r}")
    return a


def as_rows(X: ArrayLike, arch: Architecture) -> ArrayLike:
    """Images ``(N, H, W, C)`` (the architecture's input shape) as flat rows ``(N, H*W*C)``, row-major.

    Flat rows and anything else are returned as given (:func:`check_inputs` validates them).
    """
    a = np.asarray(X)
    if a.ndim > 2:
        if a.shape[1:] != tuple(arch.input_shape):
            raise ValueError(
                f"input images must have shape (N, {', '.join(map(str, arch.input_shape))}) for architecture "
                f"{arch.spec!r} (or be flat rows (N, {arch.n_inputs})), got {a.shape}"
            )
        return a.reshape(a.shape[0], -1)
    return X


def check_inputs(X: ArrayLike, n_inputs: int) -> np.ndarray:
    """Validate an input matrix (finite, shape ``(m, n_inputs)``) and return it as C-contiguous float32."""
    return check_input_rows(X, n_inputs, np.float32)


def check_train(train: Any, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``train=(row indices, 0/1 labels)``; return ``(rows int64, labels uint8)``."""
    if train is None:
        return np.zeros(0, np.int64), np.zeros(0, np.uint8)
    try:
        idx, labels = train
    except (TypeError, ValueError):
        raise ValueError("train must be a pair (row indices, labels)") from None
    idx = np.asarray(idx)
    labels = np.asarray(labels)
    if idx.ndim != 1 or labels.ndim != 1 or idx.shape != labels.shape:
        raise ValueError(
            f"train indices and labels must be 1-D of equal length, got {idx.shape} and {labels.shape}"
        )
    if idx.size == 0:
        raise ValueError("train set is empty; pass train=None for no conditioning")
    if not np.issubdtype(idx.dtype, np.integer):
        if np.issubdtype(idx.dtype, np.floating) and np.all(idx == np.round(idx)):
            idx = idx.astype(np.int64)
        else:
            raise ValueError("train indices must be integers")
    idx = idx.astype(np.int64)
    if idx.min() < 0 or idx.max() >= m:
        raise ValueError(f"train indices must be in [0, {m}), got values in [{idx.min()}, {idx.max()}]")
    if np.unique(idx).size != idx.size:
        raise ValueError("train indices contain duplicates")
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError("train labels must be 0 or 1")
    if idx.size == m:
        raise ValueError("the train set covers every row of X; no rows are left for the key")
    return idx, labels.astype(np.uint8)


def physical_memory():
    """Bytes of RAM of this machine, or None where the OS does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def _fmt_bytes(n):
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.3g} {unit}" if unit != "bytes" else f"{n} bytes"
        n /= 1024
    return f"{n:.3g} PB"  # pragma: no cover


def check_memory(mlp, m, limit=None):
    """Refuse (ValueError) an architecture whose single network cannot fit in memory on ``m`` input rows.

    The estimate is a lower bound for every backend: the random parameters of one network
    (float32) and the float32 activations of two consecutive layers on all ``m`` rows.
    Computed with Python integers, so absurd widths (``7-99999999999999999999999-1``) are
    refused here instead of overflowing or exhausting memory later.

    Parameters
    ----------
    mlp : MLP
    m : int
        Input rows.
    limit : int or None
        Bytes available (default: the machine's RAM; no check if unknown).
    """
    if isinstance(mlp, MLP):
        w = mlp.widths
        need = 4 * (mlp.n_params + int(m) * max(a + b for a, b in zip(w[:-1], w[1:])))
    else:  # any architecture: its parameters and two consecutive layer outputs on every row
        sizes = [int(np.prod(s, dtype=object)) for s in mlp.shapes]
        need = 4 * (mlp.n_params + int(m) * max(a + b for a, b in zip(sizes[:-1], sizes[1:])))
    limit = physical_memory() if limit is None else limit
    if limit is not None and need > limit:
        raise ValueError(
            f"architecture {mlp.spec if len(mlp.spec) < 60 else mlp.spec[:57] + '...'} needs at least "
            f"{_fmt_bytes(need)} for one network on {m} input rows ({mlp.n_params:,} parameters), more "
            f"than this machine's {_fmt_bytes(limit)} of memory"
        )
    return need


def inputs_digest(X: np.ndarray) -> str:
    """sha256 of the float32 input matrix (shape and bytes)."""
    h = hashlib.sha256()
    h.update(repr(X.shape).encode())
    h.update(np.ascontiguousarray(X, dtype=np.float32).tobytes())
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class SamplerPlan:
    """Everything a backend needs to draw and count samples.

    Attributes
    ----------
    mlp : Architecture
        The architecture: an :class:`MLP` (the fused fully connected kernels) or any
        :class:`~fastpoly.model.Architecture` (convolutional networks: the layer-sequence path).
    X : float32 array (m, n_inputs)
        Flat rows (images row-major H, W, C).
    seed : int
    train_rows, train_labels : int64 / uint8 arrays (empty when unconditioned)
    key_rows : int64 array — the rows the key covers (all rows not in the train set), ascending
    n_words : int — uint64 words per key, ``ceil(len(key_rows) / 64)``
    boolean : bool — X is exactly :func:`boolean_inputs` (enables the subset-sum fast path)
    """

    mlp: Architecture
    X: np.ndarray
    seed: int
    train_rows: np.ndarray
    train_labels: np.ndarray
    key_rows: np.ndarray
    n_words: int
    boolean: bool
    digest: str = field(default="")

    @property
    def m(self) -> int:
        """Number of input rows."""
        return self.X.shape[0]

    @property
    def arch(self) -> Architecture:
        """The architecture (the same object as :attr:`mlp`)."""
        return self.mlp

    @property
    def dense(self) -> MLP:
        """The :class:`MLP` of a fully connected plan (``ValueError`` for any other architecture)."""
        if not isinstance(self.mlp, MLP):
            raise ValueError(f"this kernel samples fully connected networks (MLP) only, got {self.mlp.spec!r}")
        return self.mlp

    @property
    def is_mlp(self) -> bool:
        """True for a fully connected :class:`MLP` (the fused dense kernels), False for a layer sequence."""
        return isinstance(self.mlp, MLP)

    def flops_per_sample(self) -> int:
        """Multiply-adds of one network on every row (times 2), plus 60 per drawn parameter."""
        a = self.mlp
        if isinstance(a, MLP):
            w = a.widths
            return 2 * self.m * sum(x * y for x, y in zip(w[:-1], w[1:])) + 60 * a.n_params
        fma = 0
        for layer, shape in zip(a.layers, a.shapes):
            blocks = layer.param_layout(shape)
            if blocks:
                out = int(np.prod(layer.out_shape(shape)))
                fma += out * blocks[0].fan_in
            else:
                fma += int(np.prod(shape))
        return 2 * self.m * fma + 60 * a.n_params

    @property
    def conditioned(self) -> bool:
        """True when a train set is given (keys cover the test rows only)."""
        return self.train_rows.size > 0

    def compat_meta(self) -> dict[str, Any]:
        """Metadata that must match for two count results to be merged."""
        return {
            "arch": self.mlp.to_dict(),
            "inputs_digest": self.digest,
            "n_rows": int(self.m),
            "train_rows": self.train_rows.tolist(),
            "train_labels": self.train_labels.tolist(),
        }

    def layer_arrays(self):
        """Kernel-friendly arrays: widths (int64), activation code, w/b scales (float32), param offsets."""
        mlp = self.dense
        widths = np.asarray(mlp.widths, dtype=np.int64)
        sc = mlp.scales()
        ws = np.asarray([s[0] for s in sc], dtype=np.float32)
        bs = np.asarray([s[1] for s in sc], dtype=np.float32)
        return widths, SAMPLER_CODES[mlp.activation], ws, bs


def make_plan(arch: Architecture | str, X: ArrayLike | None = None, seed: int = 0, train: Any = None,
              use: str = "sample") -> SamplerPlan:
    """Validate and bundle a sampling job.

    Parameters
    ----------
    arch : Architecture (an MLP or a CNN) or str (``"7-40-40-1"``, ``"8x8x1-c16k3-c16k3-1"``)
    X : array_like (m, n_inputs), images (m, H, W, C), or None
        Input rows; None means all Boolean inputs of ``n_inputs`` bits (at most
        ``BOOLEAN_INPUT_LIMITS["array"]`` = 24, :mod:`fastpoly.model.inputs`).
    seed : int in [0, 2**64)
    train : (indices, labels) or None
    use : {"sample", "train"}
        What the plan is for: its activation must be supported there (sigmoid trains but has no sampler).
    """
    mlp = as_architecture(arch)
    check_supported(mlp.activation, use)
    if X is None:
        X = all_boolean_inputs(mlp.n_inputs, "array")
    X = check_inputs(as_rows(X, mlp), mlp.n_inputs)
    check_memory(mlp, X.shape[0])
    seed = check_seed(seed)
    rows, labels = check_train(train, X.shape[0])
    mask = np.ones(X.shape[0], bool)
    mask[rows] = False
    key_rows = np.flatnonzero(mask).astype(np.int64)
    n_words = (key_rows.size + 63) // 64
    boolean = (
        mlp.n_inputs <= BOOLEAN_INPUT_LIMITS["array"]
        and X.shape[0] == 2**mlp.n_inputs
        and np.array_equal(X, boolean_inputs(mlp.n_inputs))
    )
    return SamplerPlan(mlp, X, seed, rows, labels, key_rows, n_words, bool(boolean), inputs_digest(X))



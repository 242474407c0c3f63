"""The :class:`MLP`: the fully connected architecture, a constructor of the network model.

``MLP(7, (40, 40))`` and ``"7-40-40-1"`` build the same :class:`~fastpoly.model.architecture.Architecture`
(dense layers with the hidden activation between them); the class keeps the closed forms every
existing consumer reads (``widths``, ``param_offsets``, ``scales``) and the ``{"widths": ...}``
dict recorded in counts files, so every key, count and file stays bit-identical.
"""
from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from fastpoly.activations import TABLE, check_supported
from fastpoly.model.architecture import Architecture
from fastpoly.model.layers import Activation, Dense, Init
from fastpoly.model.layers import check_width as _check_width
from fastpoly.network import Layer, Network
from fastpoly.stream.rng import check_seed, stream_normals, stream_uniform_pm1

__all__ = ["MLP", "mlp_from_dict", "parse_arch"]


class MLP(Architecture):
    """A fully connected architecture with random initialisation (an :class:`Architecture` of dense layers).

    Parameters
    ----------
    n_inputs : int
        Input width.
    hidden : tuple of int
        Hidden widths; ``()`` is a perceptron.  The output width is 1.
    activation : str
        Hidden activation: ``relu``, ``tanh``, ``erf``, ``sign`` or ``identity``.
    weights : {"gaussian", "uniform"}
        ``gaussian``: ``W ~ N(0, sigma_w**2 / fan_in)``; ``uniform``: the same
        variance, ``U(+-sqrt(3) sigma_w / sqrt(fan_in))``.  Biases follow the same family.
    sigma_w, sigma_b : float
        Weight and bias scales (default both 1: the anchors' "LeCun with unit bias",
        ``docs/design.md#initialisation``).
    bias_scaling : {"none", "fan_in"}
        ``none``: ``b ~ N(0, sigma_b**2)`` (the anchors' default); ``fan_in``:
        ``b ~ N(0, sigma_b**2 / fan_in)``.
    bias : bool
        If False the network has no biases (they are not drawn from the stream either).

    Notes
    -----
    Parameter ``p`` (order W1 row-major, b1, W2, b2, ...) of sample ``i`` of
    stream ``seed`` is ``float32(z_p * scale)`` with ``z_p`` the ``p``-th draw
    of :mod:`fastpoly.stream.rng` and ``scale`` a float32 per layer and kind (see
    :meth:`scales`).  As an :class:`Architecture` its layers are ``Dense(h1), Activation,
    Dense(h2), Activation, ..., Dense(1)`` (:attr:`layers`); :meth:`to_dict` keeps the
    ``{"widths": ...}`` form recorded in every counts file.
    """

    def __init__(
        self,
        n_inputs,
        hidden=(40, 40),
        activation="relu",
        weights="gaussian",
        sigma_w=1.0,
        sigma_b=1.0,
        bias_scaling="none",
        bias=True,
    ):
        n_inputs = _check_width(n_inputs, "n_inputs")
        if isinstance(hidden, (int, np.integer)):
            hidden = (hidden,)
        try:
            hidden = tuple(hidden)
        except TypeError:
            raise ValueError(f"hidden must be a tuple of positive integers, got {hidden!r}") from None
        hidden = tuple(_check_width(h, "hidden width") for h in hidden)
        if not (isinstance(activation, str) and activation in TABLE and TABLE[activation].supports("train")):
            check_supported(activation, "sample")  # the activation table's message lists the valid ones
        init = Init(weights, sigma_w, sigma_b, bias_scaling, bias)
        if init.weights == "truncated_normal":
            raise ValueError(
                "an MLP draws gaussian or uniform weights; for truncated-normal weights build a generic "
                "architecture: fastpoly.model.parse('7-40-40-1', weights='truncated_normal')"
            )
        layers: list[Any] = []
        for h in hidden:
            layers += [Dense(h, init), Activation(activation)]
        layers.append(Dense(1, init))
        super().__init__((n_inputs,), layers)
        object.__setattr__(self, "hidden", hidden)
        object.__setattr__(self, "activation", activation)
        object.__setattr__(self, "init", init)
        for k, v in init.to_dict().items():
            if k != "weights":
                object.__setattr__(self, k, v)

    # --- description ----------------------------------------------------------------
    hidden: tuple[int, ...]
    activation: str
    init: Init
    sigma_w: float
    sigma_b: float
    bias_scaling: str
    bias: bool

    @classmethod
    def from_string(cls, spec: str, **kwargs: Any) -> MLP:
        """Build from ``"7-40-40-1"`` (inputs-hidden...-1)."""
        n_inputs, hidden = parse_arch(spec)
        return cls(n_inputs, hidden, **kwargs)

    @property
    def n_inputs(self) -> int:
        """Input width."""
        return self.input_shape[0]

    @property
    def weights(self) -> str:
        """``"gaussian"`` or ``"uniform"``."""
        return self.init.weights

    @property
    def widths(self) -> tuple[int, ...]:
        """Layer widths ``(n_inputs, *hidden, 1)``."""
        return (self.n_inputs,) + self.hidden + (1,)

    @property
    def spec(self) -> str:
        """The architecture as a string, e.g. ``"7-40-40-1"``."""
        return "-".join(str(w) for w in self.widths)

    @property
    def n_layers(self) -> int:
        """Number of weight layers (hidden layers + output)."""
        return len(self.widths) - 1

    @property
    def n_params(self) -> int:  # the closed form (the same as the layers' sum)
        """Number of random parameters per network."""
        w = self.widths
        return int(sum(w[i] * w[i + 1] + (w[i + 1] if self.bias else 0) for i in range(len(w) - 1)))

    def param_offsets(self) -> list[tuple[int, int | None]]:
        """``[(w_offset, b_offset_or_None), ...]`` per layer, into the parameter vector."""
        out, p, w = [], 0, self.widths
        for i in range(len(w) - 1):
            wo = p
            p += w[i] * w[i + 1]
            bo = None
            if self.bias:
                bo = p
                p += w[i + 1]
            out.append((wo, bo))
        return out

    def scales(self) -> list[tuple[np.float32, np.float32]]:
        """Per-layer float32 ``(weight_scale, bias_scale)`` applied to the unit draws.

        For gaussian weights the unit draw is N(0, 1); for uniform it is U(-1, 1)
        and the scale carries the factor sqrt(3) so the variances match.
        """
        k = math.sqrt(3.0) if self.weights == "uniform" else 1.0
        out = []
        for fan_in in self.widths[:-1]:
            ws = k * self.sigma_w / math.sqrt(fan_in)
            bs = k * self.sigma_b / (math.sqrt(fan_in) if self.bias_scaling == "fan_in" else 1.0)
            out.append((np.float32(ws), np.float32(bs)))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (inverse of :meth:`from_dict`)."""
        return {
            "widths": list(self.widths),
            "activation": self.activation,
            "weights": self.weights,
            "sigma_w": self.sigma_w,
            "sigma_b": self.sigma_b,
            "bias_scaling": self.bias_scaling,
            "bias": self.bias,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MLP:
        """Rebuild an architecture from :meth:`to_dict` output."""
        return mlp_from_dict(d)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MLP) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, str(v)) for k, v in self.to_dict().items())))

    def __repr__(self) -> str:
        d = self.to_dict()
        return (
            f"MLP({self.n_inputs}, hidden={self.hidden}, activation={d['activation']!r}, "
            f"weights={d['weights']!r}, sigma_w={d['sigma_w']}, sigma_b={d['sigma_b']}, "
            f"bias_scaling={d['bias_scaling']!r}, bias={d['bias']})"
        )

    # --- sampling ---------------------------------------------------------------------
    def draw_params(self, seed: int, indices: ArrayLike) -> np.ndarray:
        """Parameter vectors (float32, shape ``(len(indices), n_params)``) of samples ``indices``.

        The same bits as :meth:`Architecture.draw_params` (a test checks it), by the MLP's closed
        form of the layout.
        """
        indices = np.asarray(indices, dtype=np.uint64).reshape(-1)
        if self.weights == "gaussian":
            z = stream_normals(seed, indices, self.n_params)
        else:
            z = stream_uniform_pm1(seed, indices, self.n_params)
        scale = np.empty(self.n_params, dtype=np.float32)
        w = self.widths
        for i, ((wo, bo), (ws, bs)) in enumerate(zip(self.param_offsets(), self.scales())):
            scale[wo : wo + w[i] * w[i + 1]] = ws
            if bo is not None:
                scale[bo : bo + w[i + 1]] = bs
        return (z * scale).astype(np.float32)

    def instantiate(self, seed: int, index: int) -> Network:
        """The exact :class:`~fastpoly.Network` (float32) that sample ``index`` of stream ``seed`` draws.

        ``fastpoly.evaluate(net, X, dtype=np.float32)`` reproduces the sampler's
        outputs bit for bit (relu/sign/identity), so any sampled function can be
        reproduced and inspected.
        """
        seed = check_seed(seed)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= int(index) < 2**64:
            raise ValueError(f"index must be an integer in [0, 2**64), got {index!r}")
        theta = self.draw_params(seed, [int(index)])[0]
        layers, w = [], self.widths
        for i, (wo, bo) in enumerate(self.param_offsets()):
            W = theta[wo : wo + w[i] * w[i + 1]].reshape(w[i + 1], w[i]).copy()
            b = theta[bo : bo + w[i + 1]].copy() if bo is not None else np.zeros(w[i + 1], np.float32)
            act = self.activation if i < self.n_layers - 1 else "identity"
            layers.append(Layer(W, b, act))
        return Network(layers, {"arch": self.to_dict(), "seed": seed, "index": int(index)})


def mlp_from_dict(d: dict[str, Any]) -> MLP:
    """Rebuild an :class:`MLP` from its ``to_dict()`` (``{"widths": ..., "activation": ..., ...}``)."""
    w = d["widths"]
    return MLP(
        w[0], tuple(w[1:-1]), d["activation"], d["weights"], d["sigma_w"], d["sigma_b"],
        d["bias_scaling"], d["bias"],
    )


def parse_arch(spec: str) -> tuple[int, tuple[int, ...]]:
    """Parse ``"7-40-40-1"`` into ``(n_inputs, hidden)``; the last width must be 1."""
    if not isinstance(spec, str) or not re.fullmatch(r"\s*\d+(\s*-\s*\d+)+\s*", spec):
        raise ValueError(
            f"architecture must look like '7-40-40-1' (inputs-hidden...-1), got {spec!r}"
        )
    w = [int(t) for t in spec.split("-")]
    if any(x < 1 for x in w):
        raise ValueError(f"all widths must be >= 1 in {spec!r}")
    if w[-1] != 1:
        raise ValueError(f"the output width must be 1 (one output bit per input), got {spec!r}")
    return w[0], tuple(w[1:-1])

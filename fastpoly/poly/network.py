"""The compiled polynomial network type: dense layers + the structured (sparse) form + report."""
from __future__ import annotations

import numpy as np

from fastpoly.network import Network
from fastpoly.poly.report import make_report
from fastpoly.poly.structured import (
    SparseLayer,
    StructuredNetwork,
    evaluate_structured_reference,
)

__all__ = ["PolyNetwork"]


class PolyNetwork(Network):
    """A compiled polynomial network (a :class:`fastpoly.Network` with extras).

    Attributes
    ----------
    layers : list of fastpoly.Layer
        Plain dense layers ``(W, b, activation)`` in ``dtype``.  For ``centered=True``
        networks they are the mathematically equal non-centered form (shift folded
        into the bias, ``-sigma(shift)`` folded into the next bias): the same function,
        but evaluated with the non-centered cancellation, so the certified bound (which
        is for the structured form) does not cover it.
    structured : fastpoly.poly.structured.StructuredNetwork
        The sparse form the kernels evaluate (carries the centered shifts).
    activation : str
        Hidden activation (``"relu"``, ``"softplus"``, ...).
    dtype : numpy.dtype
        Arithmetic type the network (and its certified bound) was built for.
    polynomial : Polynomial or None
        The compiled polynomial (None for a multi-output network).
    polynomials : tuple of Polynomial
        The compiled polynomial of every output (``(polynomial,)`` for one output).
    domain : numpy.ndarray (n_vars, 2)
        Input box of the certified bound.
    info : dict
        Construction details (certified bound, neuron counts, lambdas, ...).
    """

    def __init__(self, layers, meta=None, structured=None, activation=None, dtype="float64",
                 polynomial=None, domain=None, info=None, polynomials=None):
        Network.__init__(self, layers, dict(meta or {}))
        if structured is None:
            structured = StructuredNetwork(
                [SparseLayer.from_dense(L.W, L.b, L.activation) for L in self.layers])
        self.structured = structured
        self.activation = activation or self.layers[0].activation
        self.dtype = np.dtype(dtype)
        self.polynomial = polynomial
        if polynomials is None:
            polynomials = () if polynomial is None else (polynomial,)
        self.polynomials = tuple(polynomials)
        self.domain = None if domain is None else np.asarray(domain, dtype=np.float64)
        self.info = dict(info or {})

    def __repr__(self):
        r = self.report()
        return (f"{type(self).__name__}(activation={self.activation!r}, dtype={self.dtype.name}, "
                f"widths={self.widths}, hidden_neurons={r.hidden_neurons}, "
                f"certified_error={r.certified_error:.3g})")

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    # ------------------------------------------------------------------ evaluation
    def evaluate_reference(self, X, dtype=None):
        """NumPy reference on the structured form; ``(N, n_outputs)`` array in ``dtype`` (default: own)."""
        dt = self.dtype if dtype is None else np.dtype(dtype)
        if dt not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dt.name}")
        return evaluate_structured_reference(self.structured, X, dt.type)

    def __call__(self, X, dtype=None):
        """Outputs on every row of ``X`` (NumPy reference)."""
        out = self.evaluate_reference(np.asarray(X), dtype)
        return out[:, 0] if out.shape[1] == 1 else out

    # ------------------------------------------------------------------ report
    def report(self):
        """Size and accuracy summary (:class:`fastpoly.poly.report.PolyReport`)."""
        return make_report(self)

    # ------------------------------------------------------------------ torch
    def to_torch(self):
        """The dense layers as a ``torch.nn.Sequential`` (same weights, float32/float64).

        Raises
        ------
        ImportError
            If PyTorch is not installed.
        """
        try:
            import torch
            from torch import nn
        except ImportError as e:  # pragma: no cover - exercised only without torch
            raise ImportError("to_torch() needs PyTorch (pip install torch)") from e

        class _Exp(nn.Module):
            def forward(self, x):
                return torch.exp(x)

        class _Square(nn.Module):
            def forward(self, x):
                return x * x

        acts = {"relu": nn.ReLU, "softplus": nn.Softplus, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
                "silu": nn.SiLU, "gelu": nn.GELU, "exp": _Exp, "square": _Square}
        tdt = torch.float32 if self.dtype == np.float32 else torch.float64
        mods = []
        for L in self.layers:
            lin = nn.Linear(L.fan_in, L.fan_out, bias=True).to(tdt)
            with torch.no_grad():
                lin.weight.copy_(torch.as_tensor(np.asarray(L.W, dtype=np.float64)))
                lin.bias.copy_(torch.as_tensor(np.asarray(L.b, dtype=np.float64)))
            mods.append(lin)
            if L.activation != "identity":
                mods.append(acts[L.activation]())
        return nn.Sequential(*mods)

"""Size and accuracy report of a compiled polynomial network."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["PolyReport", "make_report"]


@dataclass
class PolyReport:
    """Summary of a :class:`~fastpoly.poly.network.PolyNetwork`.

    Attributes
    ----------
    hidden_neurons : int
        Hidden neurons actually present (constant neurons folded into the next bias:
        the "with output bias" convention).
    hidden_neurons_bias_free : int
        The same plus the constant neurons a bias-free network needs
        (e.g. 3 instead of 2 for a square gate; ``prod (r_i + 1)`` for ``x^r`` shallow).
    gate_neurons, carry_neurons : int
        Split of ``hidden_neurons`` into gates and identity (carry) gates.
    hidden_layers : int
    widths : tuple of int
        Per-layer widths (inputs, hidden..., output).
    nonzero_weights : int
    max_abs_weight : float
    flops_per_point : int
        ``2 * nonzero_weights`` (a multiply and an add per weight), activations not included.
    activation_evals_per_point : int
    certified_error : float
        Certified bound of ``max |net(x) - p(x)|`` over ``domain`` in ``dtype``.
    domain : list
    """

    polynomial: str
    activation: str
    dtype: str
    construction: str
    hidden_neurons: int
    hidden_neurons_bias_free: int
    gate_neurons: int
    carry_neurons: int
    hidden_layers: int
    widths: tuple
    nonzero_weights: int
    max_abs_weight: float
    flops_per_point: int
    activation_evals_per_point: int
    certified_error: float
    domain: list = field(default_factory=list)
    centered: bool = False
    extra: dict = field(default_factory=dict)

    def as_dict(self):
        """The report as a JSON-serialisable dict."""
        return asdict(self)

    def __str__(self):
        dom = self.domain
        if dom and all(tuple(d) == tuple(dom[0]) for d in dom):
            dom_s = f"[{dom[0][0]:g}, {dom[0][1]:g}]^{len(dom)}"
        else:
            dom_s = " x ".join(f"[{a:g}, {b:g}]" for a, b in dom)
        lines = [
            f"polynomial          : {self.polynomial}",
            f"activation          : {self.activation}{' (centered)' if self.centered else ''}",
            f"construction        : {self.construction}",
            f"dtype               : {self.dtype}",
            f"hidden neurons      : {self.hidden_neurons} with output bias "
            f"({self.gate_neurons} gate + {self.carry_neurons} carry), {self.hidden_neurons_bias_free} bias-free"
            + (f" (+{self.hidden_neurons_bias_free - self.hidden_neurons} constant)"
               if self.hidden_neurons_bias_free > self.hidden_neurons else ""),
            f"hidden layers       : {self.hidden_layers}",
            f"widths              : {'-'.join(str(w) for w in self.widths)}",
            f"nonzero weights     : {self.nonzero_weights}",
            f"max |weight|        : {self.max_abs_weight:.6g}",
            f"FLOPs per point     : {self.flops_per_point} (+ {self.activation_evals_per_point} activations)",
            f"certified max error : {self.certified_error:.3e} over {dom_s}",
        ]
        for k, v in self.extra.items():
            lines.append(f"{k:<20s}: {v}")
        return "\n".join(lines)


def _poly_name(net, info):
    """The polynomial as a string, or a summary for multi-output networks and very long polynomials."""
    polys = getattr(net, "polynomials", ())
    if net.polynomial is not None:
        text = str(net.polynomial)
        if len(text) <= 2000:
            return text
        return (f"{net.polynomial.n_terms} terms of degree <= {net.polynomial.degree} in "
                f"{net.polynomial.n_vars} variables")
    if polys:
        deg = max(q.degree for q in polys)
        return (f"{len(polys)} polynomials of degree <= {deg} in {polys[0].n_vars} variables "
                f"({info.get('distinct_monomials', '?')} distinct monomials)")
    return info.get("name", "?")


def make_report(net):
    """Build the :class:`PolyReport` of a compiled network."""
    info = net.info
    sn = net.structured
    nnz = sum(L.nnz for L in sn.layers)
    maxw = max((float(np.max(np.abs(L.data))) for L in sn.layers if L.nnz), default=0.0)
    maxb = max((float(np.max(np.abs(L.bias))) for L in sn.layers if L.bias.size), default=0.0)
    hidden = [L.fan_out for L in sn.layers[:-1]]
    extra = {}
    if info.get("teeth") is not None:
        extra["teeth (m)"] = info["teeth"]
    if info.get("lam_min") is not None:
        extra["lambda range"] = f"{info['lam_min']:.3g} .. {info['lam_max']:.3g}"
    n_out = int(info.get("n_outputs", 1))
    if n_out > 1:
        errs = info.get("certified_errors", [])
        extra["outputs"] = n_out
        extra["distinct monomials"] = info.get("distinct_monomials")
        extra["certified per output"] = ", ".join(f"{e:.3g}" for e in errs)
        sep = info.get("separate_hidden_neurons")
        if sep:
            shared = int(sum(L.fan_out for L in sn.layers[:-1]))
            extra["sharing"] = (f"{shared} hidden neurons shared vs {sum(sep)} compiled separately "
                                f"(saved {sum(sep) - shared}, {1 - shared / max(sum(sep), 1):.1%})")
    if info.get("flattened_hidden_neurons") is not None:
        extra["hierarchy"] = (f"{sum(L.fan_out for L in sn.layers[:-1])} hidden neurons composed "
                              f"({info.get('inner_levels')} + {info['levels'] - info.get('inner_levels', 0)} levels) "
                              f"vs {info['flattened_hidden_neurons']} for the flattened polynomial")
    if info.get("bias_points"):
        extra["bias points"] = ", ".join(f"{b:.6g}" for b in info["bias_points"])
    extra["max |bias|"] = f"{maxb:.6g}"
    dom = [] if net.domain is None else [[float(a), float(b)] for a, b in net.domain]
    return PolyReport(
        polynomial=_poly_name(net, info),
        activation=net.activation,
        dtype=net.dtype.name,
        construction=info.get("construction", "?"),
        hidden_neurons=int(sum(hidden)),
        hidden_neurons_bias_free=int(sum(hidden) + info.get("folded_constant_neurons", 0)),
        gate_neurons=int(info.get("gate_neurons", sum(hidden))),
        carry_neurons=int(info.get("carry_neurons", 0)),
        hidden_layers=len(hidden),
        widths=tuple(net.widths),
        nonzero_weights=int(nnz),
        max_abs_weight=maxw,
        flops_per_point=int(2 * nnz),
        activation_evals_per_point=int(sum(hidden)),
        certified_error=float(info.get("certified_error", float("nan"))),
        domain=dom,
        centered=bool(info.get("centered", False)),
        extra=extra,
    )

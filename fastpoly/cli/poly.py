"""``fastpoly compile``: compile a polynomial, print the report and the measured error."""
from __future__ import annotations

import numpy as np

from fastpoly.poly.compile import compile_polynomial

__all__ = ["register", "run_compile", "measure_error"]


def register(subparsers):
    """Add the ``compile`` subcommand to an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "compile",
        help="compile a polynomial into a gate network and report size and error",
        description=(
            "Compile a polynomial (e.g. \"x0*x1*x2 + x3**2\") into a Lin-Tegmark-Rolnick network; "
            "print neuron counts, the certified error bound over the domain and the measured "
            "max error on random points of the domain (seeded)."
        ),
    )
    p.add_argument("polynomial", help='polynomial in x0, x1, ..., e.g. "x0*x1*x2 + x3**2"')
    p.add_argument("--activation", default="softplus",
                   help="softplus (default), exp, silu, gelu, tanh, sigmoid, square, relu")
    p.add_argument("--construction", default="tree", choices=["tree", "shallow"])
    p.add_argument("--depth", type=int, default=None, help="R&T depth-k grouping")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--lam", default="auto", help="'auto' (default) or a number")
    p.add_argument("--bias", default="auto", help="auto, paper, fourth or a number")
    p.add_argument("--domain", nargs=2, type=float, default=(-1.0, 1.0), metavar=("LO", "HI"))
    p.add_argument("--centered", action="store_true", help="neurons compute sigma(b+t) - sigma(b)")
    p.add_argument("--tol", type=float, default=None, help="relu: target relative error")
    p.add_argument("--points", type=int, default=10000, help="random test points (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the test points")
    p.set_defaults(func=run_compile)
    return p


def _num_or_str(s, names):
    if s in names:
        return s
    try:
        return float(s)
    except ValueError:
        raise ValueError(f"expected one of {', '.join(names)} or a number, got {s!r}") from None


def measure_error(net, n_points=10000, seed=0):
    """Max ``|net(x) - p(x)|`` over ``n_points`` uniform points of the domain plus its corners.

    Returns ``(max_abs_error, max_abs_p)``; p is evaluated in float64.
    """
    if n_points < 1:
        raise ValueError("--points must be positive")
    dom = net.domain
    g = np.random.default_rng(seed)
    X = g.uniform(dom[:, 0], dom[:, 1], (n_points, dom.shape[0]))
    n = dom.shape[0]
    if n <= 12:
        corners = (np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1
        X = np.vstack([X, np.where(corners == 1, dom[:, 1], dom[:, 0])])
    pv = net.polynomial(X)
    y = np.asarray(net(X), dtype=np.float64)
    return float(np.max(np.abs(y - pv))), float(np.max(np.abs(pv)))


def run_compile(args):
    """Implementation of ``fastpoly compile`` (returns the exit code)."""
    net = compile_polynomial(
        args.polynomial, activation=args.activation, construction=args.construction,
        dtype=args.dtype, lam=_num_or_str(args.lam, ("auto",)),
        bias=_num_or_str(args.bias, ("auto", "paper", "fourth")), domain=tuple(args.domain),
        centered=args.centered, depth=args.depth, tol=args.tol,
    )
    print(net.report())
    err, pmax = measure_error(net, args.points, args.seed)
    rel = err / pmax if pmax > 0 else float("nan")
    print(f"measured max error  : {err:.3e} on {args.points} random points + corners "
          f"(seed {args.seed}); relative {rel:.3e}")
    if err > net.report().certified_error:  # pragma: no cover - would be a bug
        print("WARNING: measured error exceeds the certified bound")
        return 1
    return 0

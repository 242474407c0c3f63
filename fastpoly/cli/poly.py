"""``fastpoly compile``: compile a polynomial (or a classifier), print the report and the measured error."""
from __future__ import annotations

import numpy as np

from fastpoly.poly.compile import compile_polynomial

__all__ = ["register", "run_compile", "run_classifier", "load_classifier_model", "measure_error"]


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
    p.add_argument("polynomial", nargs="?", default=None,
                   help='polynomial in x0, x1, ..., e.g. "x0*x1*x2 + x3**2" (omit with --classifier)')
    p.add_argument("--classifier", metavar="MODEL.npz", default=None,
                   help="compile a Lin-Tegmark-Rolnick classifier instead: an .npz with means, covariances "
                        "(C,d,d or d,d) and priors (Gaussian classes), or probs and priors (Bernoulli), or "
                        "hamiltonians (strings) and log_prior; reports the certified logit and probability "
                        "bounds and the measured error against the exact posterior")
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


def load_classifier_model(path):
    """``(hamiltonians, log_prior)`` from a model ``.npz`` (see ``fastpoly compile --help``)."""
    from fastpoly.poly.bridge import from_bernoulli, from_gaussians

    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read classifier model {path!r}: {e}") from None
    if {"means", "covariances", "priors"} <= d.keys():
        return from_gaussians(d["means"], d["covariances"], d["priors"])
    if {"probs", "priors"} <= d.keys():
        return from_bernoulli(d["probs"], d["priors"])
    if {"hamiltonians", "log_prior"} <= d.keys():
        return [str(h) for h in d["hamiltonians"]], d["log_prior"]
    raise ValueError(f"classifier model {path!r} has arrays {sorted(d)}; expected means, covariances, priors "
                     "or probs, priors or hamiltonians, log_prior")


def run_classifier(args):
    """``fastpoly compile --classifier MODEL.npz``: report and measured error vs the exact posterior."""
    from fastpoly.poly.classifiers import classifier, softmax

    if args.polynomial is not None:
        raise ValueError("give either a polynomial or --classifier MODEL.npz, not both")
    if args.points < 1:
        raise ValueError("--points must be positive")
    hs, lp = load_classifier_model(args.classifier)
    net = classifier(hs, lp, activation=args.activation, construction=args.construction, dtype=args.dtype,
                     lam=_num_or_str(args.lam, ("auto",)), bias=_num_or_str(args.bias, ("auto", "paper", "fourth")),
                     domain=tuple(args.domain), centered=args.centered, depth=args.depth, tol=args.tol)
    print(net.report())
    dom = net.domain
    X = np.random.default_rng(args.seed).uniform(dom[:, 0], dom[:, 1], (args.points, dom.shape[0]))
    exact = softmax(np.stack([-h(X) for h in net.hamiltonians], 1) + net.log_prior)
    p = net.apply_output(net.evaluate_reference(X), "proba")
    err = np.max(np.abs(p - exact), axis=0)
    bound = net.proba_error()
    print(f"measured proba error: {', '.join(f'{e:.3g}' for e in err)} on {args.points} random points "
          f"(seed {args.seed})")
    if np.any(err > bound):  # pragma: no cover - would be a bug
        print("WARNING: measured error exceeds the certified bound")
        return 1
    return 0


def run_compile(args):
    """Implementation of ``fastpoly compile`` (returns the exit code)."""
    if args.classifier is not None:
        return run_classifier(args)
    if args.polynomial is None:
        raise ValueError("give a polynomial (e.g. \"x0*x1 + x2**2\") or --classifier MODEL.npz")
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

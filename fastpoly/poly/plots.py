"""Figures: multiplication-gate error vs lambda, shallow vs deep neuron counts, LTR classifiers.

Matplotlib (Agg backend) is imported inside the functions; the output format
(PNG or PDF) follows the file suffix.
"""
from __future__ import annotations

import numpy as np

from fastpoly.plotting import check_figure_path, pyplot, save_figure
from fastpoly.poly.gates import multiply, neuron_counts

__all__ = ["plot_gate_error", "plot_shallow_vs_deep", "gate_error_curve", "plot_classifier", "random_gaussian_classes",
           "classifier_errors", "classifier_neurons"]


def gate_error_curve(lams, dtype, activation="softplus", n_points=4000, seed=0):
    """Measured max ``|m(u,v) - uv|`` of the compiled softplus gate on ``[-1,1]^2`` for each lambda."""
    g = np.random.default_rng(seed)
    X = g.uniform(-1, 1, (n_points, 2))
    X = np.vstack([X, [[1, 1], [1, -1], [-1, 1], [-1, -1]]])
    ref = X[:, 0] * X[:, 1]
    errs, bounds = [], []
    for lam in lams:
        net = multiply(activation, lam=float(lam), bias="paper", dtype=dtype)
        errs.append(float(np.max(np.abs(net(X) - ref))))
        bounds.append(net.report().certified_error)
    return np.array(errs), np.array(bounds)


def plot_gate_error(path="gate_error.png"):
    """Error vs lambda of the softplus multiplication gate in float32 and float64 (log-log).

    Shows the measured max error, the certified bound, the lambda^2 truncation slope,
    the 1/lambda^2 rounding slope and the lambda chosen by ``lam="auto"``.

    Returns
    -------
    str
        The path written.
    """
    path = check_figure_path(path)

    plt = pyplot()
    lams = np.logspace(-6, 0, 49)
    fig, ax = plt.subplots(figsize=(7, 5))
    for dt, col in (("float64", "C0"), ("float32", "C3")):
        err, bnd = gate_error_curve(lams, dt, n_points=1000)
        ax.loglog(lams, err, "o-", ms=3, color=col, label=f"{dt}: measured max error")
        ax.loglog(lams, bnd, "--", color=col, alpha=0.6, label=f"{dt}: certified bound")
        auto = multiply(lam="auto", bias="paper", dtype=dt)
        la = auto.info["lam_min"]
        ax.axvline(la, color=col, ls=":", alpha=0.8)
        # the label sits inside the axes (x in data, y in axes coordinates), so it is never clipped
        ax.text(la, 0.03, f"auto lambda = {la:.2g} ({dt})",
                transform=ax.get_xaxis_transform(), color=col, fontsize=7, rotation=90, va="bottom", ha="right")
        eps = 2.0**-53 if dt == "float64" else 2.0**-24
        ax.loglog(lams, 4 * np.log(2) * eps / lams**2, ":", color=col, lw=1,
                  label=f"{dt}: rounding slope 1/lambda^2")
    ax.loglog(lams, lams**2 * 8 / 48, "k-.", lw=1, label="truncation slope lambda^2")
    ax.set_ylim(1e-17, 1e2)
    ax.set_xlabel("lambda")
    ax.set_ylabel("max |m(u,v) - uv| on [-1,1]^2")
    ax.set_title("softplus multiplication gate (b = 0)")
    # the legend below the axes: inside, it covered the curves
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    return save_figure(fig, path, dpi=100)


def plot_shallow_vs_deep(path="shallow_vs_deep.png"):
    """Hidden neurons of the product ``x1...xn``: shallow (``2^n``) vs tree, n = 2..20 (log y).

    Returns
    -------
    str
        The path written.
    """
    path = check_figure_path(path)

    plt = pyplot()
    ns = np.arange(2, 21)
    shallow = [neuron_counts(int(n), "shallow")[0] for n in ns]
    tree = [neuron_counts(int(n), "tree") for n in ns]
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.semilogy(ns, shallow, "o-", label="shallow: 2^n (1 hidden layer)")
    ax.semilogy(ns, [t[0] for t in tree], "s-", label="tree: gates + carries")
    ax.semilogy(ns, 4 * (ns - 1), "k:", label="4(n-1) gate neurons")
    for n, t in zip(ns, tree):
        if n in (2, 4, 8, 16, 20):
            ax.annotate(f"{t[2]} layers", (n, t[0]), textcoords="offset points", xytext=(0, 6),
                        fontsize=7, ha="center")
    ax.set_xlabel("n (number of factors)")
    ax.set_ylabel("hidden neurons")
    ax.set_title("product of n inputs: shallow vs deep (softplus)")
    ax.legend()
    return save_figure(fig, path, dpi=100)


def random_gaussian_classes(n_classes, n_vars, seed=0):
    """Random Gaussian class-conditionals: ``(means, covariances, priors)`` (well conditioned, means in [-1, 1])."""
    g = np.random.default_rng(seed)
    mu = g.uniform(-1, 1, (n_classes, n_vars))
    A = g.standard_normal((n_classes, n_vars, n_vars)) * 0.5
    S = A @ A.transpose(0, 2, 1) + 0.5 * np.eye(n_vars)
    return mu, S, g.dirichlet(np.ones(n_classes) * 3)


def classifier_errors(dtype, n_classes=5, n_vars=4, activation="softplus", n_points=20000, seed=0):
    """Per class: (certified probability bound, measured max error vs the exact posterior) on [-2, 2]^n."""
    from fastpoly.poly.bridge import from_gaussians
    from fastpoly.poly.classifiers import classifier, softmax

    mu, S, pri = random_gaussian_classes(n_classes, n_vars, seed)
    hs, lp = from_gaussians(mu, S, pri)
    net = classifier(hs, lp, activation=activation, dtype=dtype, domain=(-2, 2))
    X = np.random.default_rng(seed + 1).uniform(-2, 2, (n_points, n_vars))
    exact = softmax(np.stack([-h(X) for h in hs], 1) + lp)
    p = net.apply_output(net.evaluate_reference(X), "proba")
    return net.proba_error(), np.max(np.abs(p - exact), axis=0)


def classifier_neurons(n_classes, n_vars, seed=0):
    """(shared, separate) hidden neurons of the QDA classifier of random Gaussian classes (softplus tree)."""
    from fastpoly.poly.bridge import from_gaussians
    from fastpoly.poly.classifiers import classifier

    hs, lp = from_gaussians(*random_gaussian_classes(n_classes, n_vars, seed))
    net = classifier(hs, lp)
    return net.report().hidden_neurons, int(sum(net.info["separate_hidden_neurons"]))


def plot_classifier(path="ltr_classifier.png"):
    """Two panels: certified probability bound vs measured error per class; neurons, shared vs separate.

    Left: a 5-class Gaussian QDA classifier in float32 and float64.  Right: hidden neurons
    of shared vs separate compilation vs the number of classes and of variables.

    Returns
    -------
    str
        The path written.
    """
    path = check_figure_path(path)
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    C = 5
    for dt, col, off in (("float64", "C0", -0.15), ("float32", "C3", 0.15)):
        bound, err = classifier_errors(dt, n_classes=C)
        x = np.arange(C) + off
        ax1.semilogy(x, bound, "v", color=col, ms=9, label=f"{dt}: certified bound")
        ax1.semilogy(x, np.maximum(err, 1e-17), "o", color=col, mfc="none", ms=8, label=f"{dt}: measured max error")
    ax1.set_xticks(range(C))
    ax1.set_xlabel("class y")
    ax1.set_ylabel("max |p_net(y|x) - p(y|x)| over [-2,2]^4")
    ax1.set_title(f"QDA classifier, {C} Gaussian classes in 4 variables (softplus)")
    ax1.legend(fontsize=8)
    classes = np.arange(2, 11)
    nv = 6
    sh, sep = zip(*[classifier_neurons(int(c), nv) for c in classes])
    ax2.plot(classes, sh, "o-", color="C0", label=f"shared gates, {nv} variables, vs classes")
    ax2.plot(classes, sep, "s--", color="C0", alpha=0.6, label=f"compiled separately, {nv} variables")
    nvars = np.arange(2, 11)
    sh2, sep2 = zip(*[classifier_neurons(5, int(d)) for d in nvars])
    ax2.plot(nvars, sh2, "o-", color="C2", label="shared gates, 5 classes, vs variables")
    ax2.plot(nvars, sep2, "s--", color="C2", alpha=0.6, label="compiled separately, 5 classes")
    ax2.plot(nvars, 2 * nvars * (nvars + 1), "k:", lw=1,
             label="2d(d+1): all d(d+1)/2 quadratic monomials + d carries")
    ax2.set_yscale("log")
    ax2.set_xlabel("number of classes (blue) / variables d (green)")
    ax2.set_ylabel("hidden neurons")
    ax2.set_title("neurons: one network with shared monomials vs one per class")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)

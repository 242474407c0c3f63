"""
A Lin-Tegmark-Rolnick classifier with a certified error bound
=============================================================

Lin, Tegmark & Rolnick (2017) observe that a softmax classifier is a physics formula:
``p(y|x) = softmax_y(-H_y(x) + ln p(y))`` with the class "Hamiltonian" ``H_y(x) = -ln p(x|y)``.
For Gaussian classes each ``H_y`` is a quadratic polynomial, so the exact Bayes posterior is
computed by a small network of multiplication gates. :func:`fastpoly.poly.classifier` compiles the
logit polynomials into one network (monomials shared between classes) and certifies, for every
``x`` in the domain, a bound on the error of each logit and hence of each class probability
(``|p'_y - p_y| <= (eps_y + max_{j != y} eps_j) / 4``; the proof is in
:mod:`fastpoly.poly.classifiers`).
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import fastpoly
from fastpoly.poly import classifier, from_gaussians, from_sklearn
from fastpoly.poly.classifiers import softmax
from fastpoly.poly.plots import plot_classifier


def show(path):
    """Display a figure file that fastpoly wrote (its figure functions write PNG or PDF files)."""
    img = plt.imread(path)
    fig, ax = plt.subplots(figsize=(9, 9 * img.shape[0] / img.shape[1]))
    ax.imshow(img)
    ax.set_axis_off()
    fig.subplots_adjust(0, 0, 1, 1)


def fmt(a):
    """Numbers in short scientific notation."""
    return "[" + ", ".join(f"{v:.2e}" for v in a) + "]"

# %%
# Three Gaussian classes in two variables, known exactly: their Hamiltonians and log-priors
# (:func:`fastpoly.poly.from_gaussians`), compiled into a softplus network on ``[-3, 3]^2``.
means = np.array([[-1.0, -0.5], [1.0, -0.5], [0.0, 1.2]])
covs = np.array([[[0.6, 0.2], [0.2, 0.4]],
                 [[0.5, -0.1], [-0.1, 0.7]],
                 [[0.9, 0.0], [0.0, 0.3]]])
priors = np.array([0.5, 0.3, 0.2])
hams, log_prior = from_gaussians(means, covs, priors)
print("H_0(x) =", hams[0])

nets = {dt: classifier(hams, log_prior, activation="softplus", dtype=dt, domain=(-3, 3))
        for dt in ("float32", "float64")}
print(nets["float64"].report())

# %%
# Certified bound vs measured error, per class: the network's probabilities
# (``fastpoly.evaluate(net, X, output="proba")``) against the exact posterior at 20 000 points of
# the domain.
X = np.random.default_rng(0).uniform(-3, 3, (20000, 2))
exact = softmax(np.stack([-h(X) for h in hams], axis=1) + log_prior)
fig, ax = plt.subplots(figsize=(6, 4))
for (dt, net), col, off in zip(nets.items(), ("C3", "C0"), (-0.1, 0.1)):
    p = fastpoly.evaluate(net, X, output="proba")
    err = np.max(np.abs(p - exact), axis=0)
    bound = net.proba_error()
    assert np.all(err <= bound), (dt, err, bound)
    print(f"{dt}: measured max error per class {fmt(err)}, certified {fmt(bound)}")
    x = np.arange(net.n_classes) + off
    ax.semilogy(x, bound, "v", color=col, ms=9, label=f"{dt}: certified bound")
    ax.semilogy(x, np.maximum(err, 1e-17), "o", color=col, mfc="none", ms=8, label=f"{dt}: measured max error")
ax.set_xticks(range(3))
ax.set_xlabel("class y")
ax.set_ylabel("max |p_net(y|x) - p(y|x)| on [-3,3]^2")
ax.legend(fontsize=8)
fig.tight_layout()

# %%
# The network is the Bayes classifier: its decision regions and the samples of each class.
g = np.random.default_rng(1)
n = g.multinomial(600, priors)
samples = [g.multivariate_normal(m, S, k) for m, S, k in zip(means, covs, n)]
xx, yy = np.meshgrid(np.linspace(-3, 3, 200), np.linspace(-3, 3, 200))
grid = np.column_stack([xx.ravel(), yy.ravel()])
fig, ax = plt.subplots(figsize=(5, 5))
ax.contourf(xx, yy, nets["float32"].predict(grid).reshape(xx.shape), levels=[-0.5, 0.5, 1.5, 2.5],
            colors=["C0", "C1", "C2"], alpha=0.25)
for y, s in enumerate(samples):
    ax.plot(s[:, 0], s[:, 1], ".", color=f"C{y}", ms=3, label=f"class {y}")
ax.set_xlim(-3, 3)
ax.set_ylim(-3, 3)
ax.set_aspect("equal")
ax.legend(fontsize=8)
ax.set_title("float32 network: decision regions")

# %%
# A fitted scikit-learn model converts the same way (:func:`fastpoly.poly.from_sklearn`:
# QDA, LDA, GaussianNB, BernoulliNB); the network reproduces ``predict_proba`` within its bound.
from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis  # noqa: E402

Xs = np.concatenate(samples)
ys = np.repeat(np.arange(3), n)
qda = QuadraticDiscriminantAnalysis(store_covariance=True).fit(Xs, ys)
net = classifier(*from_sklearn(qda), dtype="float32", domain=(-3, 3), classes=qda.classes_)
diff = np.max(np.abs(net.predict_proba(X) - qda.predict_proba(X)), axis=0)
print(f"QDA, float32 network: max |p_net - predict_proba| per class {fmt(diff)}, certified {fmt(net.proba_error())}")

# %%
# The package's figure (:func:`fastpoly.poly.plot_classifier`): a 5-class QDA classifier in 4 variables,
# and the hidden neurons of one network with shared monomials vs one network per class.
with tempfile.TemporaryDirectory() as tmp:
    show(plot_classifier(Path(tmp) / "ltr_classifier.png"))

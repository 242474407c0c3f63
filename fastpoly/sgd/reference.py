"""The NumPy reference trainer: plain, one run at a time, readable -- the oracle of every kernel.

Arithmetic (float32 throughout; the FMA rule of :mod:`fastpoly.stream.fmath`)
------------------------------------------------------------------------
The forward and backward passes are the network model's layer references
(:meth:`fastpoly.model.Architecture.forward` / ``.backward``: :class:`~fastpoly.model.Dense`,
:class:`~fastpoly.model.Activation` with the activation table's float32 trainer operations), and
the update is the optimizer table's NumPy step (:mod:`fastpoly.model.optimizers`); spelled out:

For a minibatch of ``nb`` train points (rows ``r = 0 .. nb-1`` in shuffle order):

* forward, layer ``l``: ``z[r, j] = b[j]``, then ``z = fma(W[j, k], h[r, k], z)``
  for ``k = 0, 1, ...`` (the sampler's order); hidden ``h = relu(z)``
  (``0 if z < 0 else z``); the output ``z`` is the logit.
* output error: ``ce``: ``d = (sigmoid(z) - y) / nb``; ``mse``:
  ``d = (2 * (z - y)) / nb`` (``sigmoid`` from the own ``exp`` of :mod:`fastpoly.stream.fmath_train`).
* gradients, layer ``l`` (input ``h``): ``gW[j, k] = 0`` then
  ``gW = fma(d[r, j], h[r, k], gW)`` for ``r = 0, 1, ...``; ``gb[j] = 0`` then
  ``gb = gb + d[r, j]`` for ``r = 0, 1, ...``;
  back-propagated ``e[r, k] = 0`` then ``e = fma(d[r, j], W[j, k], e)`` for
  ``j = 0, 1, ...``, and ``d_prev[r, k] = e[r, k] if z_prev[r, k] > 0 else 0``.
* update (per parameter, with ``g`` its gradient):
  SGD ``p = fma(-lr, s, p)`` with ``s = g`` (no momentum), else
  ``buf = fma(mu, buf, g)`` and ``s = buf`` or (nesterov) ``s = fma(mu, buf, g)``.
  Adam (step ``t``): ``m = fma(b1, m, (1-b1)*g)``, ``v = fma(b2, v, ((1-b2)*g)*g)``,
  ``b1t = b1t*b1``, ``b2t = b2t*b2`` (float32 powers, ``b1t = b2t = 1`` at start),
  ``p = fma(-lr, (m/(1-b1t)) / (sqrt(v/(1-b2t)) + eps), p)``.
* divergence check at each epoch end, before the fit check: a parameter that is not finite
  (inf or NaN: the loss is then not finite either) ends the run with status
  :data:`STATUS_DIVERGED` (not fitted, counted apart); a run whose final train loss is not
  finite (logits that overflow float32) gets that status too.
* fit check at each epoch end: all train points have ``(z > fit_threshold) == y``.
* final train loss: ``s = 0``; ``s = s + softplus(-z if y else z)`` (ce) or
  ``s = fma(z - y, z - y, s)`` (mse) over the train points in order; ``s / m``.
"""
from __future__ import annotations

import numpy as np

from fastpoly.backends.base import (
    STATUS_DIVERGED,
    STATUS_FAILED,
    STATUS_MAX_EPOCHS,
    STATUS_STOPPED,
    TrainBatch,
    check_range,
    count_batch,
)
from fastpoly.keys import pack_bits
from fastpoly.model.optimizers import OPTIMIZERS
from fastpoly.sgd.plan import SGD_STREAM, TrainPlan, blocks_per_epoch, run_rule
from fastpoly.sgd.recipe import LOSS_CE
from fastpoly.stream.fmath import fma32
from fastpoly.stream.fmath_train import sigmoid32, softplus32
from fastpoly.stream.rng import philox4x32

__all__ = [
    "STATUS_DIVERGED",
    "STATUS_FAILED",
    "STATUS_MAX_EPOCHS",
    "STATUS_STOPPED",
    "TrainBatch",
    "count_batch",
    "epoch_order",
    "train_range_reference",
    "train_run",
]

F = np.float32
def epoch_order(seed, index, epoch, m):
    """Order of the ``m`` train points in epoch ``epoch`` (0-based) of run ``index``: exact Fisher--Yates.

    Words ``w_0, w_1, ...`` of blocks ``epoch*B .. epoch*B + B - 1`` (counter
    ``(block, SGD_STREAM, lo32 index, hi32 index)``); starting from the identity,
    for ``t = m-1, ..., 1``: ``u = (w_{m-1-t} * (t+1)) >> 32`` (multiply-high,
    an integer in ``[0, t]``) and swap positions ``t`` and ``u``.
    """
    B = blocks_per_epoch(m)
    j = np.arange(epoch * B, epoch * B + B, dtype=np.uint64).astype(np.uint32)
    key = (np.uint32(seed & 0xFFFFFFFF), np.uint32(seed >> 32))
    c = philox4x32((j, np.uint32(SGD_STREAM), np.uint32(index & 0xFFFFFFFF), np.uint32(index >> 32)), key)
    words = np.stack(c, axis=-1).reshape(-1).astype(np.uint64)
    perm = np.arange(m)
    for t in range(m - 1, 0, -1):
        u = int((int(words[m - 1 - t]) * (t + 1)) >> 32)
        perm[t], perm[u] = perm[u], perm[t]
    return perm


def _gradient(arch, p, X, y, loss_code):
    """Flat gradient (parameter order) of the minibatch mean loss at ``p``: the layers' references."""
    hs, z = arch.forward(p, X)
    nb = F(X.shape[0])
    yy = y.astype(F)[:, None]
    if loss_code == LOSS_CE:
        d = ((sigmoid32(z) - yy).astype(F) / nb).astype(F)
    else:
        d = ((F(2) * (z - yy).astype(F)).astype(F) / nb).astype(F)
    return arch.backward(p, hs, d)


class _Optimizer:
    """Fresh optimiser state for one run; the update is the optimizer table's NumPy step."""

    def __init__(self, recipe, n):
        self.opt = OPTIMIZERS[recipe.optimizer]
        self.hp = recipe.hyper()
        self.state = self.opt.init(n, self.hp)

    def step(self, p, g):
        return self.opt.step(self.hp, self.state, p, g)


def _outputs(arch, p, X):
    return arch.forward(p, X)[1][:, 0]


def _train_loss(z, y, loss_code):
    s = F(0)
    for t in range(z.shape[0]):
        if loss_code == LOSS_CE:
            s = F(s + softplus32(-z[t] if y[t] else z[t]))
        else:
            dz = F(z[t] - F(y[t]))
            s = fma32(dz, dz, s)[()]
    return F(s / F(z.shape[0]))


def train_run(tp: TrainPlan, index: int):
    """Train run ``index`` from ``instantiate(seed, index)``; return a dict of its results.

    Keys: ``params`` (float32, MLP order), ``key``, ``init_key`` (uint64 words over
    the key rows), ``status``, ``first_fit``, ``epochs``, ``loss``.
    """
    plan, r = tp.plan, tp.recipe
    mlp = plan.mlp
    p = mlp.draw_params(plan.seed, [index])[0].astype(F)  # == instantiate(seed, index)
    Xtr = plan.X[plan.train_rows]
    ytr = plan.train_labels
    Xkey = plan.X[plan.key_rows]
    init_key = pack_bits(_outputs(mlp, p, Xkey) > 0)
    m = Xtr.shape[0]
    B = min(r.batch_size, m)
    thr = F(r.fit_threshold)
    min_epochs, eaf = run_rule(tp, index)
    opt = _Optimizer(r, p.size)
    first_fit, status, e = -1, STATUS_FAILED, 0
    fitted = False
    diverged = False
    for e in range(1, r.max_epochs + 1):
        order = epoch_order(plan.seed, index, e - 1, m)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is divergence, checked below
            for a in range(0, m, B):
                bt = order[a: a + B]
                p = opt.step(p, _gradient(mlp, p, Xtr[bt], ytr[bt], r.loss_code))
            if not np.all(np.isfinite(p)):
                diverged = True
                break
            z = _outputs(mlp, p, Xtr)
        fitted = bool(np.all((z > thr) == (ytr == 1)))
        if fitted:
            if first_fit < 0:
                first_fit = e
            if e - first_fit >= eaf and e >= min_epochs:
                status = STATUS_STOPPED
                break
    else:
        status = STATUS_MAX_EPOCHS if fitted else STATUS_FAILED
    with np.errstate(over="ignore", invalid="ignore"):
        z = _outputs(mlp, p, Xtr)
        loss = _train_loss(z, ytr, r.loss_code)
        key = pack_bits(_outputs(mlp, p, Xkey) > 0)
    if diverged or not np.isfinite(loss):
        status = STATUS_DIVERGED
    return {
        "params": p,
        "key": key,
        "init_key": init_key,
        "status": status,
        "first_fit": first_fit,
        "epochs": e,
        "loss": loss,
    }


def train_range_reference(tp: TrainPlan, lo: int, hi: int, params: bool = False) -> TrainBatch:
    """Train runs ``lo .. hi-1`` one after another (NumPy reference)."""
    lo, hi = check_range(lo, hi)
    res = [train_run(tp, i) for i in range(lo, hi)]
    W = tp.plan.n_words
    n = hi - lo

    def arr(k, dt):
        return np.array([x[k] for x in res], dtype=dt).reshape(n)

    return TrainBatch(
        lo, hi,
        np.array([x["key"] for x in res], np.uint64).reshape(n, W),
        np.array([x["init_key"] for x in res], np.uint64).reshape(n, W),
        arr("status", np.int8), arr("first_fit", np.int32), arr("epochs", np.int32), arr("loss", np.float32),
        np.array([x["params"] for x in res], np.float32).reshape(n, tp.plan.mlp.n_params) if params else None,
    )

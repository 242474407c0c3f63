"""The NumPy reference trainer: plain, one run at a time, readable -- the oracle of every kernel.

Arithmetic (float32 throughout; the FMA rule of :mod:`fastpoly.stream.fmath`)
------------------------------------------------------------------------
For a minibatch of ``nb`` train points (rows ``r = 0 .. nb-1`` in shuffle order):

* forward, layer ``l``: ``z[r, j] = b[j]``, then ``z = fma(W[j, k], h[r, k], z)``
  for ``k = 0, 1, ...`` (the sampler's order); hidden ``h = relu(z)``
  (``0 if z < 0 else z``); the output ``z`` is the logit.
* output error: ``ce``: ``d = (sigmoid(z) - y) / nb``; ``mse``:
  ``d = (2 * (z - y)) / nb`` (``sigmoid`` from the own ``exp`` of :mod:`fastpoly.sgd.fmath`).
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

from dataclasses import dataclass

import numpy as np

from fastpoly.backends.base import CountBatch, check_range
from fastpoly.backends.counting import count_keys
from fastpoly.keys import pack_bits
from fastpoly.sgd.fmath import sigmoid32, softplus32
from fastpoly.sgd.plan import SGD_STREAM, TrainPlan, blocks_per_epoch, run_rule
from fastpoly.sgd.recipe import LOSS_CE
from fastpoly.stream.fmath import fma32
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
#: run status: stopped by the rule / reached max_epochs fitting S / does not fit S at the end (n_failed) /
#: diverged (a parameter became inf or NaN, which ends the run, or the final loss is not finite; not fitted,
#: counted apart)
STATUS_STOPPED, STATUS_MAX_EPOCHS, STATUS_FAILED, STATUS_DIVERGED = 0, 1, 2, 3


@dataclass
class TrainBatch:
    """Per-run results of runs ``lo .. hi-1`` in index order.

    Attributes
    ----------
    keys : uint64 (n, W) -- the reached function on the key (test) rows (output > 0)
    init_keys : uint64 (n, W) -- the function of the initialisation on the key rows
    status : int8 (n,) -- :data:`STATUS_STOPPED`, :data:`STATUS_MAX_EPOCHS`, :data:`STATUS_FAILED` or
        :data:`STATUS_DIVERGED`
    first_fit : int32 (n,) -- first fitted epoch end (1-based), -1 if never
    epochs : int32 (n,) -- epochs trained
    loss : float32 (n,) -- final train loss
    params : float32 (n, n_params) or None -- final parameters (MLP order)
    """

    lo: int
    hi: int
    keys: np.ndarray
    init_keys: np.ndarray
    status: np.ndarray
    first_fit: np.ndarray
    epochs: np.ndarray
    loss: np.ndarray
    params: np.ndarray | None = None

    @property
    def fitted(self):
        """Per run: True if it fitted the train set (neither failed nor diverged)."""
        return self.status <= STATUS_MAX_EPOCHS

    @property
    def n_diverged(self) -> int:
        """Runs that diverged (status :data:`STATUS_DIVERGED`)."""
        return int(np.count_nonzero(self.status == STATUS_DIVERGED))


def count_batch(b: TrainBatch) -> CountBatch:
    """Count the functions of the fitted runs: ``CountBatch(keys, counts, first_index, n_runs, n_fitted)``."""
    ok = b.fitted
    idx = np.arange(b.lo, b.hi, dtype=np.uint64)[ok]
    k, c, f = count_keys(b.keys[ok], idx)
    return CountBatch(k, c, f, b.hi - b.lo, int(np.count_nonzero(ok)))


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


def _layers(mlp, p):
    """Views ``[(W (fo, fi), b (fo,) or None), ...]`` into the flat parameter vector ``p``."""
    w = mlp.widths
    out = []
    for i, (wo, bo) in enumerate(mlp.param_offsets()):
        W = p[wo: wo + w[i] * w[i + 1]].reshape(w[i + 1], w[i])
        b = None if bo is None else p[bo: bo + w[i + 1]]
        out.append((W, b))
    return out


def _forward(mlp, p, X):
    """``(inputs of each layer, pre-activations of each layer)`` for the rows of ``X`` (float32)."""
    hs, zs = [], []
    h = X
    layers = _layers(mlp, p)
    for i, (W, b) in enumerate(layers):
        fo, fi = W.shape
        z = np.zeros((h.shape[0], fo), F) if b is None else np.repeat(b[None, :], h.shape[0], 0).astype(F)
        for k in range(fi):
            z = fma32(W[None, :, k], h[:, k:k + 1], z)
        hs.append(h)
        zs.append(z)
        h = np.where(z < 0, F(0), z).astype(F) if (i < len(layers) - 1 and mlp.activation == "relu") else z
    return hs, zs


def _gradient(mlp, p, X, y, loss_code):
    """Flat gradient (MLP parameter order) of the minibatch mean loss at ``p``."""
    hs, zs = _forward(mlp, p, X)
    nb = F(X.shape[0])
    z = zs[-1]
    yy = y.astype(F)[:, None]
    if loss_code == LOSS_CE:
        d = ((sigmoid32(z) - yy).astype(F) / nb).astype(F)
    else:
        d = ((F(2) * (z - yy).astype(F)).astype(F) / nb).astype(F)
    g = np.zeros_like(p)
    layers = _layers(mlp, p)
    offs = mlp.param_offsets()
    for i in range(len(layers) - 1, -1, -1):
        W, _ = layers[i]
        fo, fi = W.shape
        h = hs[i]
        gW = np.zeros((fo, fi), F)
        gb = np.zeros(fo, F)
        for r in range(X.shape[0]):
            gW = fma32(d[r][:, None], h[r][None, :], gW)
            gb = (gb + d[r]).astype(F)
        wo, bo = offs[i]
        g[wo: wo + fo * fi] = gW.reshape(-1)
        if bo is not None:
            g[bo: bo + fo] = gb
        if i > 0:
            e = np.zeros((X.shape[0], fi), F)
            for j in range(fo):
                e = fma32(d[:, j:j + 1], W[None, j, :], e)
            if mlp.activation == "relu":
                e = np.where(zs[i - 1] > 0, e, F(0)).astype(F)
            d = e
    return g


class _Optimizer:
    """Fresh optimiser state for one run."""

    def __init__(self, recipe, n):
        fl = recipe.floats()
        self.lr, self.mu, self.b1, self.b2, self.eps, _, self.c1, self.c2 = (F(v) for v in fl)
        self.adam = recipe.optimizer == "adam"
        self.nesterov = recipe.nesterov
        self.buf = np.zeros(n, F)
        self.m = np.zeros(n, F)
        self.v = np.zeros(n, F)
        self.b1t = F(1)
        self.b2t = F(1)

    def step(self, p, g):
        if self.adam:
            self.m = fma32(self.b1, self.m, (self.c1 * g).astype(F))
            self.v = fma32(self.b2, self.v, ((self.c2 * g).astype(F) * g).astype(F))
            self.b1t = F(self.b1t * self.b1)
            self.b2t = F(self.b2t * self.b2)
            mhat = (self.m / F(F(1) - self.b1t)).astype(F)
            vhat = (self.v / F(F(1) - self.b2t)).astype(F)
            s = (mhat / (np.sqrt(vhat).astype(F) + self.eps).astype(F)).astype(F)
        elif self.mu == 0:
            s = g
        else:
            self.buf = fma32(self.mu, self.buf, g)
            s = fma32(self.mu, self.buf, g) if self.nesterov else self.buf
        return fma32(-self.lr, s, p)


def _outputs(mlp, p, X):
    return _forward(mlp, p, X)[1][-1][:, 0]


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

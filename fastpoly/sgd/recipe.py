"""The training recipe of a P_SGD run: a validated, frozen description of optimiser, loss and stopping rule.

Every float of the recipe is used in float32 (the arithmetic of the trainers);
:meth:`Recipe.to_dict` records the user's values and the kernels use
``numpy.float32(value)``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from fastpoly.model.optimizers import LOSSES as _LOSS_CODES
from fastpoly.model.optimizers import OPTIMIZERS as _TABLE
from fastpoly.model.optimizers import RECIPE_FLOATS, RECIPE_INTS, get_optimizer

__all__ = ["LOSSES", "LOSS_CE", "LOSS_MSE", "OPTIMIZERS", "Recipe"]

#: optimizer names (the rows of :data:`fastpoly.model.optimizers.OPTIMIZERS`)
OPTIMIZERS = tuple(_TABLE)
#: loss names
LOSSES = tuple(_LOSS_CODES)
LOSS_CE, LOSS_MSE = _LOSS_CODES["ce"], _LOSS_CODES["mse"]


def _num(v, what, lo=None, hi=None, lo_open=False, hi_open=False):
    if isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{what} must be a number, got {v!r}")  # noqa: TRY004
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {v!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{what} must be finite, got {v!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ValueError(f"{what} must be {'>' if lo_open else '>='} {lo}, got {v!r}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise ValueError(f"{what} must be {'<' if hi_open else '<='} {hi}, got {v!r}")
    if np.float32(v) != 0 and not np.isfinite(np.float32(v)):
        raise ValueError(f"{what} is outside the float32 range: {v!r}")
    return v


def _int(v, what, lo):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        if isinstance(v, (float, np.floating)) and math.isfinite(v) and v == int(v):
            v = int(v)
        else:
            raise ValueError(f"{what} must be an integer, got {v!r}")
    v = int(v)
    if v < lo:
        raise ValueError(f"{what} must be >= {lo}, got {v}")
    return v


#: the fields only Adagrad / RMSprop read, and their defaults (left out of :meth:`Recipe.to_dict` otherwise)
_KERAS_FIELDS = {"rho": 0.9, "initial_accumulator": 0.1, "eps_in_sqrt": True}
_KERAS_OWNER = {"rho": "'rmsprop'", "initial_accumulator": "'adagrad'", "eps_in_sqrt": "'adagrad' or 'rmsprop'"}


@dataclass(frozen=True)
class Recipe:
    """How each network is trained (one fresh optimiser state per run; nothing is carried between runs).

    Parameters
    ----------
    optimizer : {"sgd", "adam", "adagrad", "rmsprop"}
        ``sgd``: PyTorch-style SGD, ``buf = momentum*buf + g``, step ``g`` (no
        momentum), ``buf`` or (nesterov) ``g + momentum*buf``, ``p -= lr*step``.
        ``adam``: ``m = b1*m + (1-b1)*g``, ``v = b2*v + (1-b2)*g*g``,
        ``p -= lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps)``.
        ``adagrad`` (Keras 3): ``acc = acc + g*g`` (``acc`` starts at ``initial_accumulator``),
        ``p -= lr*g / sqrt(acc + eps)``.
        ``rmsprop`` (Keras 3, not centered): ``v = rho*v + (1-rho)*g*g``, ``inc = lr*g / sqrt(v + eps)``,
        ``p -= inc`` or, with momentum, ``mom = momentum*mom + inc``, ``p -= mom``.
        Every run starts from fresh optimiser state (zeros; Adagrad's accumulator at
        ``initial_accumulator``).
    lr : float or None
        Learning rate (> 0); None: 0.01 for sgd, 0.001 for adam, adagrad and rmsprop.
    momentum : float
        SGD / RMSprop momentum in [0, 1).
    nesterov : bool
        Nesterov momentum (needs momentum > 0).
    beta1, beta2 : float
        Adam decay rates in [0, 1).
    eps : float or None
        Adam / Adagrad / RMSprop epsilon (> 0); None: 1e-8 for adam (PyTorch), 1e-7 for adagrad and
        rmsprop (Keras).
    rho : float
        RMSprop decay rate in [0, 1) (Keras default 0.9).
    initial_accumulator : float
        Adagrad's initial accumulator value (>= 0; Keras default 0.1).
    eps_in_sqrt : bool
        Adagrad / RMSprop denominator ``sqrt(v + eps)`` (True: Keras 3 and the TF raw ops) or
        ``sqrt(v) + eps`` (False: tf.keras 2.x ``optimizer_v2`` Adagrad, and RMSprop without momentum,
        the Keras of the 2019-2021 anchors).
    loss : {"ce", "mse"}
        ``ce``: binary cross-entropy on the logit ``z`` (``softplus(z) - y*z``);
        ``mse``: ``(z - y)**2`` on the logit; both a mean over the minibatch.
    batch_size : int
        Minibatch size (the last minibatch of an epoch may be smaller; it is the
        mean over its own examples).
    max_epochs : int
        At most this many epochs.
    fit_threshold : float
        A train point counts as fitted when ``(logit > fit_threshold) == label``
        (checked at every epoch end).  The recorded function always thresholds
        the logit at 0.  The Keras anchors' "accuracy" used 0.5.
    epochs_after_fit : int
        Stop at the first fitted epoch end ``e`` with ``e - e_first >= epochs_after_fit``
        where ``e_first`` is the run's first fitted epoch end ...
    min_epochs : int
        ... and ``e >= min_epochs`` (with ``epochs_after_fit=0`` this is the rule
        of the anchors' leaked callback).
    """

    optimizer: str = "sgd"
    lr: float | None = None
    momentum: float = 0.0
    nesterov: bool = False
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float | None = None
    loss: str = "ce"
    batch_size: int = 8
    max_epochs: int = 3000
    fit_threshold: float = 0.0
    epochs_after_fit: int = 0
    min_epochs: int = 0
    rho: float = 0.9
    initial_accumulator: float = 0.1
    eps_in_sqrt: bool = True

    def __post_init__(self):
        opt = get_optimizer(self.optimizer)
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; valid: {', '.join(LOSSES)}")
        lr = opt.default_lr if self.lr is None else self.lr
        lr = _num(lr, "lr", lo=0.0, lo_open=True)
        if np.float32(lr) == 0:
            raise ValueError(f"lr={lr!r} rounds to 0 in float32")
        object.__setattr__(self, "lr", lr)
        object.__setattr__(self, "momentum", _num(self.momentum, "momentum", 0.0, 1.0, hi_open=True))
        if not isinstance(self.nesterov, (bool, np.bool_)):
            raise ValueError(f"nesterov must be True or False, got {self.nesterov!r}")  # noqa: TRY004
        object.__setattr__(self, "nesterov", bool(self.nesterov))
        if self.nesterov and ("nesterov" not in opt.options or self.momentum == 0):
            raise ValueError("nesterov=True needs optimizer='sgd' and momentum > 0")
        if "momentum" not in opt.options and self.momentum != 0:
            raise ValueError(f"momentum is an option of optimizer='sgd' or 'rmsprop' ({self.optimizer} has no "
                             "momentum buffer)")
        object.__setattr__(self, "beta1", _num(self.beta1, "beta1", 0.0, 1.0, hi_open=True))
        object.__setattr__(self, "beta2", _num(self.beta2, "beta2", 0.0, 1.0, hi_open=True))
        eps = _num(opt.default_eps if self.eps is None else self.eps, "eps", 0.0, lo_open=True)
        if np.float32(eps) == 0:
            raise ValueError(f"eps={eps!r} rounds to 0 in float32")
        object.__setattr__(self, "eps", eps)
        object.__setattr__(self, "batch_size", _int(self.batch_size, "batch_size", 1))
        object.__setattr__(self, "max_epochs", _int(self.max_epochs, "max_epochs", 1))
        object.__setattr__(self, "fit_threshold", _num(self.fit_threshold, "fit_threshold"))
        object.__setattr__(self, "epochs_after_fit", _int(self.epochs_after_fit, "epochs_after_fit", 0))
        object.__setattr__(self, "min_epochs", _int(self.min_epochs, "min_epochs", 0))
        object.__setattr__(self, "rho", _num(self.rho, "rho", 0.0, 1.0, hi_open=True))
        object.__setattr__(self, "initial_accumulator", _num(self.initial_accumulator, "initial_accumulator", 0.0))
        if not isinstance(self.eps_in_sqrt, (bool, np.bool_)):
            raise ValueError(f"eps_in_sqrt must be True or False, got {self.eps_in_sqrt!r}")  # noqa: TRY004
        object.__setattr__(self, "eps_in_sqrt", bool(self.eps_in_sqrt))
        for k in _KERAS_FIELDS:
            if k not in opt.options and getattr(self, k) != _KERAS_FIELDS[k]:
                raise ValueError(f"{k} is an option of optimizer={_KERAS_OWNER[k]}, not of {self.optimizer!r}")
        if self.max_epochs >= 2**24:
            raise ValueError("max_epochs must be < 2**24")

    # --- kernel view -----------------------------------------------------------------------
    @property
    def opt_code(self):
        """Optimiser code of the kernels (the optimizer table's)."""
        return _TABLE[self.optimizer].code

    @property
    def loss_code(self):
        """Loss code of the kernels."""
        return _LOSS_CODES[self.loss]

    def hyper(self):
        """Map every :data:`~fastpoly.model.optimizers.RECIPE_FLOATS` entry to its float32 value.

        ``nesterov`` and ``eps_in_sqrt`` map to bools.

        ``one_minus_beta1/2`` are computed in float32 from the float32 betas (exact for the
        usual values), the same on every backend.
        """
        f = np.float32
        b1, b2 = f(self.beta1), f(self.beta2)
        v = {"lr": f(self.lr), "momentum": f(self.momentum), "beta1": b1, "beta2": b2, "eps": f(self.eps),
             "fit_threshold": f(self.fit_threshold), "one_minus_beta1": f(1) - b1, "one_minus_beta2": f(1) - b2,
             "rho": f(self.rho), "one_minus_rho": f(1) - f(self.rho), "initial_accumulator": f(self.initial_accumulator)}
        return {**{k: v[k] for k in RECIPE_FLOATS}, "nesterov": bool(self.nesterov),
                "eps_in_sqrt": bool(self.eps_in_sqrt)}

    def floats(self):
        """The float32 array of the kernels, laid out by :data:`~fastpoly.model.optimizers.RECIPE_FLOATS`.

        ``[lr, momentum, beta1, beta2, eps, fit_threshold, 1-beta1, 1-beta2, rho, 1-rho, initial_accumulator]``.
        """
        h = self.hyper()
        return np.array([h[k] for k in RECIPE_FLOATS], dtype=np.float32)

    def ints(self):
        """The int64 array of the kernels, laid out by :data:`~fastpoly.model.optimizers.RECIPE_INTS`.

        ``[opt, loss, nesterov, batch_size, max_epochs, epochs_after_fit, min_epochs, eps_in_sqrt]``.
        """
        v = {"optimizer": self.opt_code, "loss": self.loss_code, "nesterov": int(self.nesterov),
             "batch_size": self.batch_size, "max_epochs": self.max_epochs,
             "epochs_after_fit": self.epochs_after_fit, "min_epochs": self.min_epochs,
             "eps_in_sqrt": int(self.eps_in_sqrt)}
        return np.array([v[k] for k in RECIPE_INTS], dtype=np.int64)

    def to_dict(self):
        """JSON-serialisable description (recorded in the counts' metadata).

        ``rho`` / ``initial_accumulator`` / ``eps_in_sqrt`` appear only for the optimizer that reads them, so the
        descriptions of SGD and Adam recipes are those of earlier versions.
        """
        d = asdict(self)
        for k in _KERAS_FIELDS:
            if k not in _TABLE[self.optimizer].options:
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d):
        """Rebuild a recipe from :meth:`to_dict` output."""
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__ and not k.startswith("_")})

    def replace(self, **kw):
        """A copy with some fields changed (validated again)."""
        d = self.to_dict()
        d.update(kw)
        return Recipe.from_dict(d)

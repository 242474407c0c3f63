"""The one optimizer table: name -> kernel code, defaults, the recipe's float/int layout and the NumPy step.

Every optimizer of the P_SGD trainers is an :class:`Optimizer` in :data:`OPTIMIZERS`.  The
compiled trainers read their codes and the offsets of the recipe's arrays from here: the Numba
trainer reads :data:`RF` / :data:`RI`, and the CUDA trainer includes ``kernels/optimizers.cuh``,
*generated* by :func:`cuda_preamble` (``tests/model/test_model_optimizers.py`` fails when it is stale or
when a kernel defines an ``FP_OPT_`` / ``FP_LOSS_`` / ``FP_RF_`` / ``FP_RI_`` constant by hand).

The recipe reaches the kernels as two arrays (:meth:`fastpoly.sgd.recipe.Recipe.floats` and
``.ints``) laid out by :data:`RECIPE_FLOATS` and :data:`RECIPE_INTS`.  Every float is used in
float32; ``one_minus_beta1/2`` are ``float32(1) - float32(beta)`` (exact for the usual values),
computed once so that every backend uses the same bits; so is ``one_minus_rho``.

Adding an optimizer = one row here (its code, default learning rate, the recipe
fields it reads, its state vectors and its NumPy :attr:`Optimizer.step`, which *is* the reference
trainer's update) + its update in each compiled trainer (see ``docs/design.md#optimizers``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from fastpoly.stream.fmath import fma32

__all__ = [
    "LOSSES", "OPTIMIZERS", "Optimizer", "RECIPE_FLOATS", "RECIPE_INTS", "RF", "RI", "cuda_preamble",
    "get_optimizer",
]

F = np.float32

#: the recipe's float32 array (``Recipe.floats()``), in this order
RECIPE_FLOATS = ("lr", "momentum", "beta1", "beta2", "eps", "fit_threshold", "one_minus_beta1", "one_minus_beta2",
                 "rho", "one_minus_rho", "initial_accumulator")
#: the recipe's int64 array (``Recipe.ints()``), in this order
RECIPE_INTS = ("optimizer", "loss", "nesterov", "batch_size", "max_epochs", "epochs_after_fit", "min_epochs",
               "eps_in_sqrt")
#: name -> offset in ``Recipe.floats()`` / ``Recipe.ints()``
RF: Mapping[str, int] = MappingProxyType({n: i for i, n in enumerate(RECIPE_FLOATS)})
RI: Mapping[str, int] = MappingProxyType({n: i for i, n in enumerate(RECIPE_INTS)})
#: loss name -> kernel code (``ce``: binary cross-entropy on the logit, ``mse``: squared error)
LOSSES: Mapping[str, int] = MappingProxyType({"ce": 0, "mse": 1})

State = dict  # name -> float32 array or scalar


def _sgd_init(n: int, hp: Mapping[str, float]) -> State:
    return {"buf": np.zeros(n, F)}


def _sgd_step(hp: Mapping[str, float], st: State, p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """SGD: ``p = fma(-lr, s, p)``.

    ``s = g`` (no momentum), else ``buf = fma(mu, buf, g)`` and ``s = buf`` or (nesterov) ``s = fma(mu, buf, g)``.
    """
    lr, mu = F(hp["lr"]), F(hp["momentum"])
    if mu == 0:
        s = g
    else:
        st["buf"] = fma32(mu, st["buf"], g)
        s = fma32(mu, st["buf"], g) if hp["nesterov"] else st["buf"]
    return fma32(-lr, s, p)


def _adam_init(n: int, hp: Mapping[str, float]) -> State:
    return {"m": np.zeros(n, F), "v": np.zeros(n, F), "b1t": F(1), "b2t": F(1)}


def _adam_step(hp: Mapping[str, float], st: State, p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Adam, step ``t``.

    ``m = fma(b1, m, (1-b1)*g)``, ``v = fma(b2, v, ((1-b2)*g)*g)``, ``b1t = b1t*b1``, ``b2t = b2t*b2``
    (float32 powers, 1 at the start), ``p = fma(-lr, (m/(1-b1t)) / (sqrt(v/(1-b2t)) + eps), p)``.
    """
    lr, b1, b2, eps = F(hp["lr"]), F(hp["beta1"]), F(hp["beta2"]), F(hp["eps"])
    c1, c2 = F(hp["one_minus_beta1"]), F(hp["one_minus_beta2"])
    st["m"] = fma32(b1, st["m"], (c1 * g).astype(F))
    st["v"] = fma32(b2, st["v"], ((c2 * g).astype(F) * g).astype(F))
    st["b1t"] = F(st["b1t"] * b1)
    st["b2t"] = F(st["b2t"] * b2)
    mhat = (st["m"] / F(F(1) - st["b1t"])).astype(F)
    vhat = (st["v"] / F(F(1) - st["b2t"])).astype(F)
    s = (mhat / (np.sqrt(vhat).astype(F) + eps).astype(F)).astype(F)
    return fma32(-lr, s, p)


def _adagrad_init(n: int, hp: Mapping[str, float]) -> State:
    return {"acc": np.full(n, F(hp["initial_accumulator"]), F)}


def _denominator(hp: Mapping[str, float], v: np.ndarray) -> np.ndarray:
    """``sqrt(v + eps)`` (Keras 3, the default) or ``sqrt(v) + eps`` (``eps_in_sqrt=False``: tf.keras 2.x)."""
    eps = F(hp["eps"])
    if hp["eps_in_sqrt"]:
        return np.sqrt((v + eps).astype(F)).astype(F)
    return (np.sqrt(v).astype(F) + eps).astype(F)


def _adagrad_step(hp: Mapping[str, float], st: State, p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Adagrad (Keras 3): ``acc = fma(g, g, acc)``, ``p = p - (lr*g) / sqrt(acc + eps)``.

    ``acc`` starts at ``initial_accumulator`` (Keras ``initial_accumulator_value``, default 0.1);
    with ``eps_in_sqrt=False`` the denominator is ``sqrt(acc) + eps`` (tf.keras 2.x).
    """
    lr = F(hp["lr"])
    st["acc"] = fma32(g, g, st["acc"])
    inc = ((lr * g).astype(F) / _denominator(hp, st["acc"])).astype(F)
    return (p - inc).astype(F)


def _rmsprop_init(n: int, hp: Mapping[str, float]) -> State:
    return {"v": np.zeros(n, F), "mom": np.zeros(n, F)}


def _rmsprop_step(hp: Mapping[str, float], st: State, p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """RMSprop (Keras 3, not centered): ``v = fma(rho, v, (1-rho)*(g*g))``, ``inc = (lr*g) / sqrt(v + eps)``.

    Without momentum ``p = p - inc``; with momentum ``mu`` (Keras' plain momentum on the increment)
    ``mom = fma(mu, mom, inc)``, ``p = p - mom``.  With ``eps_in_sqrt=False`` the denominator is
    ``sqrt(v) + eps`` (tf.keras 2.x without momentum).
    """
    lr, rho, c, mu = F(hp["lr"]), F(hp["rho"]), F(hp["one_minus_rho"]), F(hp["momentum"])
    st["v"] = fma32(rho, st["v"], (c * (g * g).astype(F)).astype(F))
    inc = ((lr * g).astype(F) / _denominator(hp, st["v"])).astype(F)
    if mu != 0:
        st["mom"] = fma32(mu, st["mom"], inc)
        inc = st["mom"]
    return (p - inc).astype(F)


@dataclass(frozen=True)
class Optimizer:
    """One optimizer of the trainers.

    Attributes
    ----------
    name : str
        ``Recipe(optimizer=name)``.
    code : int
        What the compiled trainers switch on (``FP_OPT_<NAME>`` in CUDA); never renumber.
    default_lr : float
        The learning rate when the recipe gives none (PyTorch / Keras defaults).
    default_eps : float
        The ``eps`` when the recipe gives none (PyTorch's 1e-8 for Adam, Keras' 1e-7 for Adagrad / RMSprop).
    options : tuple of str
        The recipe fields this optimizer reads besides ``lr`` (others must keep their defaults).
    state : tuple of str
        Its per-parameter state vectors (the trainers allocate them only when used).
    formula : str
        The update, for people.
    used_state : callable ``(hp) -> tuple of str``
        The state vectors a recipe actually uses (plain SGD without momentum keeps none).
    init : callable ``(n, hp) -> state``
        Fresh state for ``n`` parameters (every run starts from it).
    step : callable ``(hp, state, p, g) -> p``
        The NumPy float32 update (the FMA rule), the reference every compiled trainer matches bit for
        bit; ``hp`` maps :data:`RECIPE_FLOATS` names to float32 values and ``"nesterov"`` and
        ``"eps_in_sqrt"`` to bools.
    """

    name: str
    code: int
    default_lr: float
    default_eps: float
    options: tuple[str, ...]
    state: tuple[str, ...]
    formula: str
    used_state: Callable[[Mapping[str, float]], tuple[str, ...]]
    init: Callable[[int, Mapping[str, float]], State]
    step: Callable[[Mapping[str, float], State, np.ndarray, np.ndarray], np.ndarray]


#: the table (never renumber: the codes are part of compiled kernels)
OPTIMIZERS: Mapping[str, Optimizer] = MappingProxyType({o.name: o for o in (
    Optimizer("sgd", 0, 0.01, 1e-8, ("momentum", "nesterov"), ("buf",),
              "buf = mu*buf + g; p -= lr * (g | buf | g + mu*buf)  (PyTorch SGD: plain, momentum, nesterov)",
              lambda hp: ("buf",) if hp["momentum"] != 0 else (), _sgd_init, _sgd_step),
    Optimizer("adam", 1, 0.001, 1e-8, ("beta1", "beta2", "eps"), ("m", "v"),
              "m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g; p -= lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps)",
              lambda hp: ("m", "v"), _adam_init, _adam_step),
    Optimizer("adagrad", 2, 0.001, 1e-7, ("initial_accumulator", "eps", "eps_in_sqrt"), ("acc",),
              "acc = acc + g*g (acc starts at initial_accumulator); p -= lr * g / sqrt(acc + eps)  (Keras 3 Adagrad)",
              lambda hp: ("acc",), _adagrad_init, _adagrad_step),
    Optimizer("rmsprop", 3, 0.001, 1e-7, ("rho", "eps", "momentum", "eps_in_sqrt"), ("v", "mom"),
              "v = rho*v + (1-rho)*g*g; inc = lr * g / sqrt(v + eps); mom = mu*mom + inc (mu > 0); "
              "p -= (inc | mom)  (Keras 3 RMSprop, not centered)",
              lambda hp: ("v", "mom") if hp["momentum"] != 0 else ("v",), _rmsprop_init, _rmsprop_step),
)})


def get_optimizer(name: str) -> Optimizer:
    """The table row of optimizer ``name``.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones).
    """
    try:
        return OPTIMIZERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}") from None


def cuda_preamble() -> str:
    """The text of ``kernels/optimizers.cuh``: optimizer and loss codes, recipe array offsets."""
    lines = [
        "// GENERATED from the optimizer table in fastpoly/model/optimizers.py (cuda_preamble()). Do not edit;",
        "// regenerate: python -c 'import fastpoly.model.optimizers as o; print(o.cuda_preamble(), end=\"\")'"
        " > kernels/optimizers.cuh",
        "// tests/model/test_model_optimizers.py fails when this file is stale, and when a kernel defines one of",
        "// these constants by hand.",
        "#pragma once",
        "",
        "// optimizer codes (Recipe.ints()[FP_RI_OPTIMIZER])",
    ]
    for name, o in sorted(OPTIMIZERS.items(), key=lambda kv: kv[1].code):
        lines.append(f"#define FP_OPT_{name.upper()} {o.code}")
    lines.append("// loss codes (Recipe.ints()[FP_RI_LOSS])")
    for name, c in LOSSES.items():
        lines.append(f"#define FP_LOSS_{name.upper()} {c}")
    lines.append("// offsets in Recipe.floats() (float32)")
    for name, i in RF.items():
        lines.append(f"#define FP_RF_{name.upper()} {i}")
    lines.append(f"#define FP_RF_COUNT {len(RF)}")
    lines.append("// offsets in Recipe.ints() (int64)")
    for name, i in RI.items():
        lines.append(f"#define FP_RI_{name.upper()} {i}")
    lines.append(f"#define FP_RI_COUNT {len(RI)}")
    return "\n".join(lines) + "\n"

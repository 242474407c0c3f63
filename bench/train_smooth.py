"""Smooth activations in the Numba trainer: their cost against relu, and fastpoly's float32 functions against libm.

Run from the repository root: ``python bench/train_smooth.py`` (a few seconds after compilation).

1. runs/s of the Numba trainer on 7-40-40-1 (anchor inputs, m = 32, batch 8, plain SGD, exactly 30
   epochs per run: ``min_epochs = max_epochs``) for relu, tanh, erf, sigmoid, one thread, best of 5;
2. ns per element of fastpoly's float32 tanh / erf / sigmoid / erf' (``fastpoly.backends.numba.vecmath``,
   bit-identical on every backend) against the libm functions Numba would otherwise call (``math.tanh``,
   ``math.erf``, ``math.exp``), in the same vectorisable loop, best of 7.
"""
from __future__ import annotations

import math
import os
import sys
import time

import numba
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastpoly import MLP  # noqa: E402
from fastpoly.backends.numba import vecmath as V  # noqa: E402
from fastpoly.backends.numba.train import PreparedTrain  # noqa: E402
from fastpoly.sgd import Recipe, make_train_plan  # noqa: E402
from fastpoly.sgd.anchor import anchor_problem  # noqa: E402

F = np.float32


def trainer_rates(n=24, rounds=5):
    _, X, train, _ = anchor_problem(32)
    r = Recipe(lr=0.01, batch_size=8, max_epochs=30, min_epochs=30)
    pts = {a: PreparedTrain(make_train_plan(MLP(7, (40, 40), activation=a), X, train, 0, r))
           for a in ("relu", "tanh", "erf", "sigmoid")}
    for p in pts.values():
        p.run(0, 2, 1)
    best: dict[str, float] = {}
    for _ in range(rounds):
        for a, p in pts.items():
            t = time.perf_counter()
            p.run(0, n, 1)
            best[a] = min(best.get(a, 1e9), time.perf_counter() - t)
    for a in pts:
        print(f"trainer {a:8s} {n / best[a]:7.1f} runs/s   time / relu's {best[a] / best['relu']:.2f}")


def _loop(f):
    @numba.njit
    def run(x, o):
        for i in range(x.size):
            o[i] = f(x[i])
    return run


def function_costs(reps=3000, rounds=7):
    J = numba.njit
    fns = {
        "tanh own": _loop(V.tanh32), "tanh libm": _loop(J(lambda z: F(math.tanh(z)))),
        "erf own": _loop(V.erf32), "erf libm": _loop(J(lambda z: F(math.erf(z)))),
        "sigmoid own": _loop(V.sigmoid32), "sigmoid libm": _loop(J(lambda z: F(1.0) / (F(1.0) + F(math.exp(-z))))),
        "erf' own": _loop(J(lambda z: V.d_erf32(z, F(1.0)))),
        "erf' libm": _loop(J(lambda z: F(1.1283791670955126) * F(math.exp(-z * z)))),
    }
    x = (np.random.default_rng(0).standard_normal(320) * 2).astype(F)
    o = np.empty_like(x)
    for f in fns.values():
        f(x, o)
    best: dict[str, float] = {}
    for _ in range(rounds):
        for k, f in fns.items():
            t = time.perf_counter()
            for _ in range(reps):
                f(x, o)
            best[k] = min(best.get(k, 1e9), time.perf_counter() - t)
    for k in fns:
        print(f"function {k:13s} {best[k] / (reps * x.size) * 1e9:6.2f} ns/element")


if __name__ == "__main__":
    trainer_rates()
    function_costs()

"""The optimizer table: generated CUDA header, the recipe's array layout, and the NumPy steps."""
from __future__ import annotations

import re

import numpy as np
import pytest

from fastpoly.backends.cuda import source
from fastpoly.model.optimizers import LOSSES, OPTIMIZERS, RECIPE_FLOATS, RECIPE_INTS, RF, RI, cuda_preamble, get_optimizer
from fastpoly.sgd.recipe import Recipe

F = np.float32


def test_generated_header_is_current():
    path = source.kernel_dir() / "optimizers.cuh"
    assert path.read_text() == cuda_preamble(), (
        "kernels/optimizers.cuh is stale: regenerate it from fastpoly.model.optimizers.cuda_preamble()"
    )


def test_kernels_use_only_generated_optimizer_constants():
    text = cuda_preamble()
    generated = set(re.findall(r"#define (FP_(?:OPT|LOSS|RF|RI)_\w+)", text))
    assert {f"FP_OPT_{n.upper()}" for n in OPTIMIZERS} <= generated
    assert {f"FP_RF_{n.upper()}" for n in RECIPE_FLOATS} | {f"FP_RI_{n.upper()}" for n in RECIPE_INTS} <= generated
    for p in source.kernel_sources():
        if p.name == "optimizers.cuh":
            continue
        src = p.read_text()
        assert not re.search(r"#define\s+FP_(OPT|LOSS|RF|RI)_", src), f"{p.name} defines an optimizer constant by hand"
        used = set(re.findall(r"\bFP_(?:OPT|LOSS|RF|RI)_\w+", src))
        assert used <= generated, f"{p.name} uses constants not in the table: {sorted(used - generated)}"
        if used:
            assert '#include "optimizers.cuh"' in src or '#include "train.cuh"' in src, p.name
        # the recipe arrays are read through the generated offsets only
        assert not re.search(r"\br(?:floats|ints)\[\d", src), f"{p.name} indexes the recipe arrays by number"
        assert not re.search(r"\bf\[\d", src), f"{p.name} indexes the recipe floats by number"


def test_codes_are_fixed_and_recipe_layout_matches():
    # part of compiled kernels: never renumber
    assert {n: o.code for n, o in OPTIMIZERS.items()} == {"sgd": 0, "adam": 1, "adagrad": 2, "rmsprop": 3}
    assert dict(LOSSES) == {"ce": 0, "mse": 1}
    r = Recipe(optimizer="adam", lr=0.003, beta1=0.8, beta2=0.99, eps=1e-6, fit_threshold=0.5, loss="mse",
               batch_size=4, max_epochs=7, epochs_after_fit=2, min_epochs=3)
    fl, it = r.floats(), r.ints()
    assert fl.dtype == np.float32 and fl.size == len(RF) and it.dtype == np.int64 and it.size == len(RI)
    assert fl[RF["lr"]] == F(0.003) and fl[RF["beta2"]] == F(0.99) and fl[RF["fit_threshold"]] == F(0.5)
    assert fl[RF["one_minus_beta1"]] == F(1) - F(0.8)
    assert it[RI["optimizer"]] == 1 and it[RI["loss"]] == 1 and it[RI["max_epochs"]] == 7 and it[RI["min_epochs"]] == 3
    # the historic layout (the Numba and CUDA trainers' comments), Adagrad / RMSprop fields appended
    assert RECIPE_FLOATS == ("lr", "momentum", "beta1", "beta2", "eps", "fit_threshold", "one_minus_beta1",
                             "one_minus_beta2", "rho", "one_minus_rho", "initial_accumulator")


def test_defaults_and_errors_come_from_the_table():
    assert Recipe().lr == OPTIMIZERS["sgd"].default_lr == 0.01
    assert Recipe(optimizer="adam").lr == OPTIMIZERS["adam"].default_lr == 0.001
    with pytest.raises(ValueError, match="unknown optimizer 'adadelta'; valid: sgd, adam, adagrad, rmsprop"):
        Recipe(optimizer="adadelta")
    with pytest.raises(ValueError, match="unknown optimizer"):
        get_optimizer(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="momentum is an option of optimizer='sgd'"):
        Recipe(optimizer="adam", momentum=0.9)
    assert OPTIMIZERS["sgd"].used_state(Recipe().hyper()) == ()
    assert OPTIMIZERS["sgd"].used_state(Recipe(momentum=0.9).hyper()) == ("buf",)
    assert OPTIMIZERS["adam"].used_state(Recipe(optimizer="adam").hyper()) == ("m", "v")


def _fma64(a, b, c):
    return F(np.float64(a) * np.float64(b) + np.float64(c))  # exact product; one rounding of the sum (|.| small)


@pytest.mark.parametrize("kw", [dict(), dict(momentum=0.9), dict(momentum=0.9, nesterov=True),
                                dict(optimizer="adam")], ids=lambda k: "-".join(f"{a}={b}" for a, b in k.items()) or "sgd")
def test_steps_follow_their_formulas(kw):
    """Three steps of each row against the formula written out in float64-then-float32 scalars."""
    r = Recipe(**kw)
    hp = r.hyper()
    opt = OPTIMIZERS[r.optimizer]
    rng = np.random.default_rng(3)
    p = rng.normal(size=5).astype(F)
    st = opt.init(p.size, hp)
    q = p.copy()
    buf = np.zeros(5, F)
    m = np.zeros(5, F)
    v = np.zeros(5, F)
    b1t = b2t = F(1)
    for _ in range(3):
        g = rng.normal(size=5).astype(F)
        p = opt.step(hp, st, p, g)
        for i in range(5):
            if r.optimizer == "adam":
                m[i] = _fma64(hp["beta1"], m[i], F(hp["one_minus_beta1"] * g[i]))
                v[i] = _fma64(hp["beta2"], v[i], F(F(hp["one_minus_beta2"] * g[i]) * g[i]))
            elif hp["momentum"] != 0:
                buf[i] = _fma64(hp["momentum"], buf[i], g[i])
        if r.optimizer == "adam":
            b1t, b2t = F(b1t * hp["beta1"]), F(b2t * hp["beta2"])
            s = (m / F(F(1) - b1t)).astype(F) / (np.sqrt((v / F(F(1) - b2t)).astype(F)).astype(F) + hp["eps"]).astype(F)
        elif hp["momentum"] == 0:
            s = g
        else:
            s = np.array([_fma64(hp["momentum"], buf[i], g[i]) for i in range(5)], F) if hp["nesterov"] else buf
        q = np.array([_fma64(-hp["lr"], F(s[i]), q[i]) for i in range(5)], F)
        np.testing.assert_array_equal(p, q)

"""Every compiled backend gives the NumPy reference's results: keys and counts exactly (relu/sign/identity)."""
from __future__ import annotations

import numpy as np
import pytest

import fastpoly
from fastpoly.backends.reference import sample_keys_reference

CASES = {
    "7-40-40-1": (fastpoly.MLP(7, (40, 40)), None),
    "perceptron-5": (fastpoly.MLP(5, ()), None),
    "sign-4-9-3": (fastpoly.MLP(4, (9, 3), activation="sign"), None),
    "identity-uniform-nobias": (fastpoly.MLP(6, (7,), activation="identity", weights="uniform", bias=False), None),
    "gaussX-130rows": (fastpoly.MLP(3, (5, 5), bias_scaling="fan_in"), "gauss130"),
    "centered-6": (fastpoly.MLP(6, (10,)), "centered"),
}


def _inputs(kind, n):
    if kind is None:
        return fastpoly.boolean_inputs(n)
    if kind == "centered":
        return fastpoly.boolean_inputs(n, centered=True)
    return np.random.default_rng(7).standard_normal((130, n)).astype(np.float32)


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("seed", [3, 2**40 + 5], ids=["seed=3", "seed=2^40+5"])
def test_sample_keys_bit_identical(fast_backend, case, seed):
    arch, kind = CASES[case]
    X = _inputs(kind, arch.n_inputs)
    start = 2**33 - 40 if seed == 3 else 0
    got = fastpoly.sample_keys(arch, X, seed=seed, start=start, stop=start + 97, backend=fast_backend)
    ref = sample_keys_reference(fastpoly.make_plan(arch, X, seed), start, start + 97).keys
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("case", ["7-40-40-1", "sign-4-9-3", "gaussX-130rows"], ids=str)
def test_counts_identical_with_and_without_train(fast_backend, case):
    arch, kind = CASES[case]
    X = _inputs(kind, arch.n_inputs)
    m = X.shape[0]
    rows = np.arange(1, m, 3)[:20]
    for train in (None, (rows, (rows % 2).astype(np.uint8)), (rows, np.zeros(rows.size, np.uint8))):
        ref = fastpoly.sample(arch, X, 300, seed=9, backend="numpy", train=train, progress=False)
        got = fastpoly.sample(arch, X, 300, seed=9, backend=fast_backend, train=train, progress=False, batch_size=64)
        assert got == ref
        assert got.to_bytes() == ref.to_bytes()


def test_check_option_runs_reference(fast_backend):
    c = fastpoly.sample("5-8-1", None, 200, seed=1, backend=fast_backend, progress=False, check=True)
    assert c.n_samples == 200


def test_instantiate_reproduces_fast_backend_keys(fast_backend, X7):
    arch = fastpoly.MLP(7, (40, 40))
    keys = fastpoly.sample_keys(arch, X7, seed=5, start=100, stop=110, backend=fast_backend)
    for j in range(10):
        z = fastpoly.evaluate(arch.instantiate(5, 100 + j), X7, backend=fast_backend, dtype=np.float32)
        np.testing.assert_array_equal(fastpoly.keys.pack_bits(z > 0), keys[j])

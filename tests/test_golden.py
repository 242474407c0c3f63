"""Golden results: the exact bytes of small fixed runs and the keys of a few fixed networks.

The values were computed with fastpoly 0.1.0 (before the package was split into
subpackages).  Any refactor or new kernel that changes a result fails here: a change
to these numbers is a change of the science, and must be deliberate (and say so).
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

import fastpoly
from fastpoly.backends import availability
from fastpoly.keys import key_to_hex

X7 = fastpoly.boolean_inputs(7)
TRAIN16 = (np.arange(0, 128, 8), (np.arange(0, 128, 8) >> 1) & 1)

#: name -> (sample() keyword arguments, sha256 of the counts file bytes, backends to run)
RUNS = {
    "prior-7-40-40-1-seed0-n2000": (
        dict(arch="7-40-40-1", X=X7, n_samples=2000, seed=0),
        "f90d6f01c3d3b0f82dd95ea04c38b4f2029e6867938c899cc9a4580f6a7913df", ("numba",)),
    "post-7-40-40-1-seed5-n3000-train16": (
        dict(arch="7-40-40-1", X=X7, n_samples=3000, seed=5, train=TRAIN16),
        "277a446b50690e9671581f108a5a8a787238b72295773051c7fabac7d701b4ab", ("numba",)),
    "prior-5-8-8-1-sign-seed3-n2000": (
        dict(arch=fastpoly.MLP(5, (8, 8), activation="sign"), X=fastpoly.boolean_inputs(5), n_samples=2000, seed=3),
        "95b4fcb984c182a55f3f0685a311d4c5be2e796b582bc874a498265c79bbd677", ("numpy", "numba")),
    "prior-4-6-1-uniform-faninbias-across-2**32": (
        dict(arch=fastpoly.MLP(4, (6,), weights="uniform", bias_scaling="fan_in", sigma_b=0.5),
             X=fastpoly.boolean_inputs(4), n_samples=1500, seed=2**40 + 7, start=2**32 - 700),
        "cabc38f111332cd580aa4a24fbcbb0935f10f24264ccadb2ded56a4a62983da9", ("numpy", "numba")),
}

#: (seed, sample index) -> key (hex, bit i = row i) of 7-40-40-1 relu on the 128 Boolean inputs
KEYS = {
    (0, 2): "ccffccef8cef80ae00cc000000800000",
    (0, 3): "8cff00cdffff04cdffffccfffffffeff",
    (0, 4): "05050505050505050101050505050505",
    (0, 9): "0000c040000000000000c04000000000",
    (0, 28): "cfcf0f0f0f4d4f0fcfefffff0f4fcf0f",
    (2**63 + 5, 2**40 + 11): "ff0aff0000000000ff06ff0300000000",
}


def _require(backend):
    ok, why = availability(backend)
    if not ok:
        pytest.skip(f"backend {backend} unavailable: {why}")


@pytest.mark.parametrize(
    ("name", "backend"),
    [(n, b) for n, (_, _, bs) in RUNS.items() for b in bs],
    ids=[f"{n}-backend={b}" for n, (_, _, bs) in RUNS.items() for b in bs],
)
def test_counts_file_bytes_are_pinned(name, backend):
    _require(backend)
    kwargs, digest, _ = RUNS[name]
    c = fastpoly.sample(backend=backend, progress=False, **kwargs)
    assert hashlib.sha256(c.to_bytes()).hexdigest() == digest


@pytest.mark.parametrize("backend", ["numpy", "numba"], ids=lambda b: f"backend={b}")
def test_keys_of_fixed_networks_are_pinned(backend):
    _require(backend)
    arch = fastpoly.MLP(7, (40, 40))
    for (seed, index), want in KEYS.items():
        k = fastpoly.sample_keys(arch, X7, seed=seed, start=index, stop=index + 1, backend=backend)
        assert key_to_hex(k[0], 128) == want, (seed, index)

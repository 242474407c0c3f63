"""Golden results: the exact bytes of small fixed runs and the keys of a few fixed networks.

Two pins per run:

* the *content* (keys, counts, first indices, totals and metadata but the fastpoly version):
  computed with fastpoly 0.1.0 and unchanged since -- a change here is a change of the science;
* the *file bytes* (sha256 of the counts file): these changed once, deliberately, with counts
  file format version 2 (the digest now covers every byte of the file; issue 10), while the
  content pins stayed the same.

Any refactor or new kernel that changes a result fails here: a change to these numbers must
be deliberate (and say so).
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

import fastpoly
from fastpoly.backends import availability
from fastpoly.keys import key_to_hex

X7 = fastpoly.boolean_inputs(7)
TRAIN16 = (np.arange(0, 128, 8), (np.arange(0, 128, 8) >> 1) & 1)

#: name -> (sample() keyword arguments, sha256 of the counts file bytes (format 2), sha256 of the
#: content (see :func:`content_digest`; unchanged since 0.1.0), backends to run)
RUNS = {
    "prior-7-40-40-1-seed0-n2000": (
        dict(arch="7-40-40-1", X=X7, n_samples=2000, seed=0),
        "edb0f4206082700a6fd6e3a3af49b4eb3aa20ee23a1c51499f14527cf877c267",
        "00ba71a36710bd4ae0982782c09904d25caae6e223dc2dd980c6e3377355106a", ("numba",)),
    "post-7-40-40-1-seed5-n3000-train16": (
        dict(arch="7-40-40-1", X=X7, n_samples=3000, seed=5, train=TRAIN16),
        "736d1654f3af7a94916adb5331b583dd28f63f1d74c01c5d851ff8f82f0a89a6",
        "b267c1e27d9ace8783af23a5a824342d9acd47372abd37eecc1b7719a7557e28", ("numba",)),
    "prior-5-8-8-1-sign-seed3-n2000": (
        dict(arch=fastpoly.MLP(5, (8, 8), activation="sign"), X=fastpoly.boolean_inputs(5), n_samples=2000, seed=3),
        "936eef964302c9c203515742e183c7b889b2d70bab69c0abe88e33552a571c0e",
        "4ad56cda353b4ff65bd1d5ce0e5f5807d140cd9dcef78d84e2793267f5b401fb", ("numpy", "numba")),
    "prior-4-6-1-uniform-faninbias-across-2**32": (
        dict(arch=fastpoly.MLP(4, (6,), weights="uniform", bias_scaling="fan_in", sigma_b=0.5),
             X=fastpoly.boolean_inputs(4), n_samples=1500, seed=2**40 + 7, start=2**32 - 700),
        "0215ee902f3ad16941f40bf66d468e5a9deaafa1e41d5a85c42519202f9e461a",
        "15d819d1e955b44a8bbac69a5dc316d60a9b4664307542e916c399142166343a", ("numpy", "numba")),
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


def content_digest(c):
    """sha256 of what a result says: keys, counts, first indices, totals and metadata (not the version)."""
    h = hashlib.sha256()
    for a, dt in ((c.keys, "<u8"), (c.counts, "<i8"), (c.first_index, "<u8")):
        a = np.ascontiguousarray(a, dtype=dt)
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    meta = {k: v for k, v in c.meta.items() if k != "fastpoly_version"}
    h.update(json.dumps({"n_samples": c.n_samples, "n_accepted": c.n_accepted, "meta": meta}, sort_keys=True).encode())
    return h.hexdigest()


def _require(backend):
    ok, why = availability(backend)
    if not ok:
        pytest.skip(f"backend {backend} unavailable: {why}")


@pytest.mark.parametrize(
    ("name", "backend"),
    [(n, b) for n, (*_, bs) in RUNS.items() for b in bs],
    ids=[f"{n}-backend={b}" for n, (*_, bs) in RUNS.items() for b in bs],
)
def test_counts_file_bytes_are_pinned(name, backend):
    _require(backend)
    kwargs, digest, content, _ = RUNS[name]
    c = fastpoly.sample(backend=backend, progress=False, **kwargs)
    assert content_digest(c) == content, "the result changed (not only its file format)"
    assert hashlib.sha256(c.to_bytes()).hexdigest() == digest


@pytest.mark.parametrize("backend", ["numpy", "numba"], ids=lambda b: f"backend={b}")
def test_keys_of_fixed_networks_are_pinned(backend):
    _require(backend)
    arch = fastpoly.MLP(7, (40, 40))
    for (seed, index), want in KEYS.items():
        k = fastpoly.sample_keys(arch, X7, seed=seed, start=index, stop=index + 1, backend=backend)
        assert key_to_hex(k[0], 128) == want, (seed, index)

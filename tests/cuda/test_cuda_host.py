"""The CUDA headers' __host__ __device__ math, built for the host, against the NumPy reference (bit for bit).

``tests/cuda_host/host_driver.cpp`` includes ``kernels/network.cuh`` (and with it
``philox.cuh`` and ``fp_math.cuh``) and is compiled with g++ (``-x c++``) and with
nvcc (``-x cu``, host code); no GPU is needed.  Skipped when a compiler is
missing, except under ``CI`` (which has both): there a missing compiler fails.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fastpoly import MLP, boolean_inputs, make_plan
from fastpoly.backends.cuda.source import kernel_dir, net_desc, row_order
from fastpoly.backends.reference import forward_samples, sample_keys_reference
from fastpoly.stream.fmath import log_odd24, sincos2pi_odd24
from fastpoly.stream.rng import (
    philox4x32,
    stream_normals,
    stream_uniform_pm1,
    stream_words,
)

DRIVER = Path(__file__).resolve().parents[1] / "cuda_host" / "host_driver.cpp"


def _nvcc():
    return shutil.which("nvcc") or (
        "/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None
    )


COMPILERS = {
    "gxx": lambda: shutil.which("g++"),
    "nvcc": _nvcc,
}


def _build(kind, out):
    exe = COMPILERS[kind]()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail(f"{kind} is required under CI but was not found")
        pytest.skip(f"{kind} not found")
    inc = f"-I{kernel_dir()}"
    if kind == "gxx":
        cmd = [exe, "-std=c++17", "-O2", "-ffp-contract=off", "-fno-fast-math", inc, "-x", "c++", str(DRIVER), "-o", str(out)]
    else:
        cmd = [exe, "-std=c++17", "-O2", "-fmad=false", "-Xcompiler", "-ffp-contract=off", inc, "-x", "cu",
               str(DRIVER), "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"building the host driver failed:\n{' '.join(cmd)}\n{r.stdout}\n{r.stderr}"
    return out


@pytest.fixture(scope="module", params=sorted(COMPILERS), ids=lambda k: f"built-with-{k}")
def driver(request, tmp_path_factory):
    exe = _build(request.param, tmp_path_factory.mktemp(f"hd-{request.param}") / "host_driver")

    def run(*args, stdin=None):
        r = subprocess.run([str(exe), *map(str, args)], input=stdin, capture_output=True, timeout=600)
        assert r.returncode == 0, r.stderr.decode()
        return r.stdout

    return run


# --- Philox words -------------------------------------------------------------------------
KNOWN = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
]


def test_known_answer_through_stream_layout(driver):
    # ctr = (block 0, stream 0, lo i, hi i), key = (lo seed, hi seed): the all-zero answer
    out = np.frombuffer(driver("words", 0, 0, 1, 1), np.uint32)
    assert tuple(int(x) for x in out) == KNOWN[0][2]
    ref = np.stack(philox4x32((0, 0, 0, 0), (0, 0)))
    assert np.array_equal(out, ref.astype(np.uint32))


@pytest.mark.parametrize(
    "seed,start", [(0, 0), (12345, 7), (2**64 - 1, 2**32 - 3), (0xDEADBEEFCAFEF00D, 2**63 + 5)],
    ids=["seed0", "small", "wrap-lo32", "high-bits"],
)
def test_philox_words(driver, seed, start):
    count, nb = 5, 7
    out = np.frombuffer(driver("words", seed, start, count, nb), np.uint32).reshape(count, 4 * nb)
    ref = stream_words(seed, np.arange(start, start + count, dtype=np.uint64), nb)
    assert np.array_equal(out, ref)


# --- log, sincos, normals, uniforms -----------------------------------------------------------
def _odd24_sample():
    rng = np.random.default_rng(20240601)
    n = rng.integers(0, 2**23, size=200_000) * 2 + 1
    edges = np.array([1, 3, 5, 2**23 - 1, 2**23 + 1, 2**24 - 1, 2**24 - 3, 0xB504F3, 0xB504F1, 0xB504F5,
                      2**21 - 1, 2**21 + 1, 2**22 - 1, 2**22 + 1, 3 * 2**21 - 1, 3 * 2**21 + 1])
    return np.concatenate([edges, n, np.arange(1, 1 << 16, 2)]).astype(np.int32)


def test_log_odd24(driver):
    n = _odd24_sample()
    got = np.frombuffer(driver("log", stdin=n.tobytes()), np.float32)
    ref = log_odd24(n)
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))


def test_sincos2pi_odd24(driver):
    n = _odd24_sample()
    got = np.frombuffer(driver("sincos", stdin=n.tobytes()), np.float32).reshape(-1, 2)
    s, c = sincos2pi_odd24(n)
    assert np.array_equal(got[:, 0].view(np.uint32), s.view(np.uint32))
    assert np.array_equal(got[:, 1].view(np.uint32), c.view(np.uint32))


@pytest.mark.parametrize("dist", ["gaussian", "uniform"])
@pytest.mark.parametrize("seed,start", [(1, 0), (2**40 + 3, 2**33 + 11)], ids=["seed1", "big"])
def test_draws(driver, dist, seed, start):
    count, nd = 16, 2001
    out = np.frombuffer(driver("draws", seed, start, count, nd, int(dist == "uniform")), np.float32)
    out = out.reshape(count, nd)
    idx = np.arange(start, start + count, dtype=np.uint64)
    ref = stream_normals(seed, idx, nd) if dist == "gaussian" else stream_uniform_pm1(seed, idx, nd)
    assert np.array_equal(out.view(np.uint32), ref.view(np.uint32))


# --- one network's forward pass and key ---------------------------------------------------------
def _job(plan, start, count, path):
    desc, scales = net_desc(plan.mlp)
    order, labels = row_order(plan)
    Xt = np.ascontiguousarray(plan.X[order].T)
    parts = [str(plan.seed), str(start), str(count), str(desc.size), " ".join(map(str, desc.tolist())),
             str(scales.size), " ".join(map(str, scales.view(np.uint32).tolist())),
             str(plan.m), str(plan.key_rows.size), " ".join(map(str, Xt.view(np.uint32).ravel().tolist())),
             " ".join(map(str, labels.tolist()))]
    path.write_text("\n".join(parts) + "\n")
    return order


def _run_sample(driver, plan, start, count, tmp_path):
    order = _job(plan, start, count, tmp_path / "job.txt")
    raw = driver("sample", tmp_path / "job.txt")
    W, m = plan.n_words, plan.m
    rec = np.dtype([("key", "<u8", (W,)), ("acc", "u1"), ("margin", "<f4"), ("z", "<f4", (m,))])
    out = np.frombuffer(raw, rec)
    assert out.shape == (count,)
    z = np.empty((count, m), np.float32)
    z[:, order] = out["z"]  # back to the plan's row order
    return out["key"].reshape(count, W), out["acc"].astype(bool), out["margin"], z


def _rng_X(m, n, seed):
    return np.random.default_rng(seed).standard_normal((m, n)).astype(np.float32)


def _train(m, k, seed):
    rng = np.random.default_rng(seed)
    rows = rng.choice(m, size=k, replace=False)
    return rows, rng.integers(0, 2, size=k)


CASES = {
    "7-40-40-1-relu-boolean": dict(arch=MLP(7, (40, 40)), X=None, train=None),
    "7-40-40-1-relu-train": dict(arch=MLP(7, (40, 40)), X=None, train=_train(128, 3, 1)),
    "5-8-1-sign-boolean": dict(arch=MLP(5, (8,), activation="sign"), X=None, train=None),
    "4-6-6-6-1-identity-randX": dict(arch=MLP(4, (6, 6, 6), activation="identity"), X=_rng_X(100, 4, 2),
                                     train=_train(100, 30, 3)),
    "3-5-5-1-relu-uniform-nobias": dict(arch=MLP(3, (5, 5), weights="uniform", bias=False), X=None, train=None),
    "6-9-1-relu-faninbias-sigmab0.5": dict(arch=MLP(6, (9,), sigma_b=0.5, bias_scaling="fan_in"),
                                           X=_rng_X(70, 6, 4), train=None),
    "2-3-1-relu-130rows": dict(arch=MLP(2, (3,)), X=_rng_X(130, 2, 5), train=_train(130, 1, 6)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_and_keys_exact(driver, case, tmp_path):
    c = CASES[case]
    plan = make_plan(c["arch"], c["X"], seed=987654321, train=c["train"])
    start, count = 2**32 - 2, 6  # crosses the lo32 boundary of the counter
    keys, acc, margin, z = _run_sample(driver, plan, start, count, tmp_path)
    ref = sample_keys_reference(plan, start, start + count, margins=True)
    params = plan.mlp.draw_params(plan.seed, np.arange(start, start + count, dtype=np.uint64))
    zref = forward_samples(plan, params)
    assert np.array_equal(z.view(np.uint32), zref.view(np.uint32))
    assert np.array_equal(keys, ref.keys)
    assert np.array_equal(acc, ref.accepted)
    assert np.array_equal(margin.view(np.uint32), ref.margins.view(np.uint32))


@pytest.mark.parametrize("act", ["tanh", "erf"])
def test_smooth_activations_margin_rule(driver, act, tmp_path):
    plan = make_plan(MLP(5, (12, 12), activation=act), None, seed=3)
    keys, acc, margin, z = _run_sample(driver, plan, 0, 8, tmp_path)
    ref = sample_keys_reference(plan, 0, 8, margins=True)
    diff = np.any(keys != ref.keys, axis=1)
    assert np.all(ref.margins[diff] < 1e-4)
    params = plan.mlp.draw_params(plan.seed, np.arange(8, dtype=np.uint64))
    np.testing.assert_allclose(z, forward_samples(plan, params), rtol=1e-5, atol=1e-5)


def test_boolean_inputs_are_the_default_rows():
    # the host driver and the kernels rely on X=None meaning boolean_inputs(n)
    plan = make_plan("3-2-1")
    assert np.array_equal(plan.X, boolean_inputs(3))

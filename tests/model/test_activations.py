"""The one activation table: generated CUDA codes, Numba constants, references and derivatives."""
from __future__ import annotations

import re

import numpy as np
import pytest

from fastpoly.activations import (
    ACTIVATIONS,
    BACKENDS,
    CODES,
    EXACT_SAMPLER_ACTIVATIONS,
    SAMPLER_CODES,
    TABLE,
    USES,
    check_supported,
    codes_for,
    cuda_preamble,
    get_activation,
    supported,
)
from fastpoly.backends.cuda import source

NAMES = sorted(TABLE)


def test_codes_are_unique_and_sampler_codes_fixed():
    assert len(set(CODES.values())) == len(CODES)
    # part of compiled kernels and of every sampler plan: never renumber
    assert dict(SAMPLER_CODES) == {"relu": 0, "tanh": 1, "erf": 2, "sign": 3, "identity": 4}
    assert EXACT_SAMPLER_ACTIVATIONS == {"relu", "sign", "identity"}


def test_generated_cuda_preamble_is_current():
    path = source.kernel_dir() / "activations.cuh"
    assert path.read_text() == cuda_preamble(), (
        "kernels/activations.cuh is stale: regenerate it from fastpoly.activations.cuda_preamble()"
    )


def test_kernels_use_only_generated_activation_codes():
    generated = set(re.findall(r"#define (FP_ACT_\w+)", cuda_preamble()))
    assert generated == {f"FP_ACT_{n.upper()}" for n in TABLE}
    masks = set(re.findall(r"#define (FP_ACTMASK_\w+)", cuda_preamble()))
    assert masks == {f"FP_ACTMASK_{u.upper()}" for u in USES}
    for p in source.kernel_sources():
        if p.name == "activations.cuh":
            continue
        text = p.read_text()
        assert not re.search(r"#define\s+FP_P?ACT(MASK)?_", text), f"{p.name} defines an activation code by hand"
        assert "fp_train_act_ok" not in text, f"{p.name} keeps its own list of trainable activations"
        used = set(re.findall(r"\bFP_P?ACT_\w+", text))
        assert used <= generated, f"{p.name} uses codes not in the table: {sorted(used - generated)}"
        if used:
            assert '#include "activations.cuh"' in text or p.name == "sampler.cu", p.name


def test_compiled_backends_read_the_table():
    pytest.importorskip("numba")
    from fastpoly.backends.cuda import backend as cbackend
    from fastpoly.backends.numba import poly as npoly
    from fastpoly.backends.numba import sampler as nsampler
    from fastpoly.poly.structured import STRUCT_CODES

    for n in SAMPLER_CODES:
        assert getattr(nsampler, f"ACT_{n.upper()}") == CODES[n]
    for table in (npoly.DENSE_CODES, STRUCT_CODES, cbackend.POLY_ACT_CODES):
        assert all(CODES[k] == v for k, v in table.items())
    # the lists of supported activations are the table's support column, not lists of their own
    assert dict(npoly.DENSE_CODES) == dict(codes_for("evaluate", "numba"))
    assert not hasattr(cbackend, "DENSE_ACT_CODES")


def test_support_column_queries_and_messages():
    assert supported("sample", "numba") == tuple(SAMPLER_CODES)
    assert supported("train", "cupy") == ("relu", "tanh", "erf", "identity", "sigmoid")
    assert supported("nngp") == ("relu", "erf", "sign", "identity")
    assert "square" in supported("evaluate") and "square" not in supported("evaluate", "cupy")
    assert check_supported("relu", "train", "numba") is TABLE["relu"]
    with pytest.raises(ValueError, match="not supported for training on the numba backend; supported activations: relu"):
        check_supported("sign", "train", "numba")
    with pytest.raises(ValueError, match="'tanh' has no closed-form NNGP map; supported activations: relu, erf"):
        check_supported("tanh", "nngp")
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        check_supported("swish", "sample")
    with pytest.raises(ValueError, match="unknown activation use"):
        supported("fly")
    with pytest.raises(ValueError, match="unknown backend"):
        supported("train", "tpu")


@pytest.mark.parametrize("name", NAMES, ids=lambda n: f"act={n}")
def test_row_is_consistent(name):
    a = TABLE[name]
    assert set(a.support) <= set(USES) and all(b <= set(BACKENDS) for b in a.support.values())
    # a use a backend supports is supported by the NumPy reference (the oracle)
    for use, backends in a.support.items():
        assert not backends or "numpy" in backends, (name, use)
    assert (a.nngp is not None) == a.supports("nngp")
    assert (a.train is not None) == a.supports("train")
    assert a.sampler == a.supports("sample")
    # the generated masks are the cupy support column
    for use in USES:
        mask = int(re.search(rf"#define FP_ACTMASK_{use.upper()} 0x([0-9a-f]+)u", cuda_preamble())[1], 16)
        assert bool(mask >> a.code & 1) == a.supports(use, "cupy")


@pytest.mark.parametrize("name", supported("train"), ids=lambda n: f"act={n}")
def test_train_ops_match_reference_and_derivative(name):
    a = TABLE[name]
    assert a.train is not None
    z = np.array([-2.5, -1.0, -0.0, 0.0, 1e-30, 0.75, 3.0, np.inf, -np.inf], np.float32)
    fwd = a.train.forward(z)
    assert fwd.dtype == np.float32
    e = np.linspace(-2, 2, z.size).astype(np.float32)
    fin = np.isfinite(z)
    if a.exact:
        np.testing.assert_array_equal(fwd, a.reference(z, np.float32))  # equal values (relu keeps -0.0 as the kernels)
        np.testing.assert_array_equal(a.train.backward(z, e)[fin], (e * a.derivative(z, np.float32))[fin])
    else:  # fastpoly's own float32 functions (tests/test_train_smooth.py: their ulp bounds)
        np.testing.assert_array_max_ulp(fwd, a.reference(z, np.float32), maxulp=3)
        np.testing.assert_allclose(a.train.backward(z, e)[fin], (e * a.derivative(z, np.float32))[fin],
                                   rtol=1e-6, atol=1e-37)


@pytest.mark.parametrize("name", supported("nngp"), ids=lambda n: f"act={n}")
def test_nngp_map_by_monte_carlo(name):
    K = np.array([[1.3, 0.6, -0.2], [0.6, 0.8, 0.1], [-0.2, 0.1, 0.5]])
    E, dE = TABLE[name].nngp(K, np.diag(K).copy())
    rng = np.random.default_rng(7)
    u = rng.multivariate_normal(np.zeros(3), K, size=400_000)
    f = TABLE[name].reference(u, np.float64)
    mc = f.T @ f / u.shape[0]
    np.testing.assert_allclose(E, mc, atol=0.01)
    np.testing.assert_array_equal(np.diag(E), dE)


@pytest.mark.parametrize("name", NAMES, ids=lambda n: f"act={n}")
def test_derivative_matches_finite_differences(name):
    a = TABLE[name]
    z = np.linspace(-3.0, 3.0, 61) + 0.013  # avoid the kinks of relu/sign at 0
    h = 1e-6
    fd = (a.reference(z + h, np.float64) - a.reference(z - h, np.float64)) / (2 * h)
    np.testing.assert_allclose(a.derivative(z, np.float64), fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", NAMES, ids=lambda n: f"act={n}")
def test_reference_dtypes_and_elementwise_agree(name):
    a = TABLE[name]
    z = np.linspace(-4, 4, 101)
    for dt in (np.float32, np.float64):
        assert a.reference(z.astype(dt), dt).dtype == dt
    if a.elementwise is not None:
        np.testing.assert_allclose(a.elementwise(z), a.reference(z, np.float64), rtol=1e-14, atol=1e-300)


def test_table_is_read_only_and_lookup_errors_list_names():
    with pytest.raises(TypeError):
        ACTIVATIONS["mine"] = lambda z, dt: z  # type: ignore[index]
    with pytest.raises(ValueError, match="valid activations: .*relu"):
        get_activation("nope")

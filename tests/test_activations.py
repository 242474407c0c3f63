"""The one activation table: generated CUDA codes, Numba constants, references and derivatives."""
from __future__ import annotations

import re

import numpy as np
import pytest

from fastpoly.activations import (
    ACTIVATIONS,
    CODES,
    EXACT_SAMPLER_ACTIVATIONS,
    SAMPLER_CODES,
    TABLE,
    cuda_preamble,
    get_activation,
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
    for p in source.kernel_sources():
        if p.name == "activations.cuh":
            continue
        text = p.read_text()
        assert not re.search(r"#define\s+FP_P?ACT_", text), f"{p.name} defines an activation code by hand"
        used = set(re.findall(r"\bFP_P?ACT_\w+", text))
        assert used <= generated, f"{p.name} uses codes not in the table: {sorted(used - generated)}"
        if used:
            assert '#include "activations.cuh"' in text or p.name == "sampler.cu", p.name


def test_compiled_backends_read_the_table():
    pytest.importorskip("numba")
    from fastpoly.backends.cuda.backend import DENSE_ACT_CODES, POLY_ACT_CODES
    from fastpoly.backends.numba import poly as npoly
    from fastpoly.backends.numba import sampler as nsampler
    from fastpoly.poly.structured import STRUCT_CODES

    for n in SAMPLER_CODES:
        assert getattr(nsampler, f"ACT_{n.upper()}") == CODES[n]
    for table in (npoly.DENSE_CODES, STRUCT_CODES, POLY_ACT_CODES, DENSE_ACT_CODES):
        assert all(CODES[k] == v for k, v in table.items())


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

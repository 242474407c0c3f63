"""One backend object per name: capabilities, ``supports``, the one auto rule (``backend_for``), one CUDA device."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

import fastpoly
from fastpoly.backends import (
    AUTO_ORDERS,
    BACKENDS,
    BackendUnavailable,
    availability,
    backend_for,
    get_backend,
    lacks,
)
from fastpoly.backends.base import CAPABILITIES, structured_of
from fastpoly.backends.cuda import device as cuda_device
from fastpoly.backends.cuda.backend import CupyBackend


@pytest.fixture(autouse=True)
def _no_forced_backend(monkeypatch):
    monkeypatch.delenv("FASTPOLY_BACKEND", raising=False)


def test_every_use_has_an_auto_order_of_known_backends():
    assert set(AUTO_ORDERS) == set(CAPABILITIES)
    for order in AUTO_ORDERS.values():
        assert order and set(order) <= set(BACKENDS)


@pytest.mark.parametrize("use", list(CAPABILITIES), ids=lambda u: f"use={u}")
def test_auto_picks_the_first_backend_of_the_order_that_supports_the_use(use):
    be = backend_for(use)
    assert be.supports(use) is None
    for cand in AUTO_ORDERS[use]:
        if cand == be.name:
            break
        assert get_backend_or_none(cand) is None or get_backend_or_none(cand).supports(use) is not None


def get_backend_or_none(name):
    return get_backend(name) if availability(name)[0] else None


def test_same_object_for_every_use_of_a_name():
    be = backend_for("sample", "numpy")
    assert backend_for("train", "numpy") is be and get_backend("numpy") is be and be.reference


def test_unknown_names_and_capabilities_are_value_errors():
    with pytest.raises(ValueError, match="unknown backend 'torch'"):
        backend_for("sample", "torch")
    with pytest.raises(ValueError, match="unknown capability 'fly'"):
        backend_for("fly", "numpy")
    with pytest.raises(ValueError, match="unknown capability"):
        get_backend("numpy").supports("fly")


def test_cupy_says_what_it_cannot_do():
    be = CupyBackend()
    assert "no CUDA kernel for GP draws" in lacks("cupy", "gp_values")
    assert lacks("cupy", "train") is None and lacks("numba", "gp_values") is None
    reason = be.supports("gp_values")
    assert reason  # either the missing kernel or the missing device
    with pytest.raises(BackendUnavailable, match="backend 'cupy'"):
        backend_for("gp_values", "cupy")


def test_forced_backend_applies_only_where_it_offers_the_use(monkeypatch):
    monkeypatch.setenv("FASTPOLY_BACKEND", "numpy")
    assert backend_for("sample").name == "numpy" and backend_for("gp_values").name == "numpy"
    monkeypatch.setenv("FASTPOLY_BACKEND", "cupy")  # cupy lacks GP draws: "auto" falls back to the order
    assert backend_for("gp_values").name in ("numba", "numpy")
    if not availability("cupy")[0]:
        with pytest.raises(BackendUnavailable, match="not available"):
            backend_for("sample")


def test_a_backend_without_an_engine_raises_with_the_reason():
    with pytest.raises(NotImplementedError, match="GP draws"):
        CupyBackend().gp_values(np.eye(2), 0, np.arange(2, dtype=np.uint64), 3, True)
    with pytest.raises(NotImplementedError, match="reference"):
        get_backend("numpy").train_range(None, 0, 1)


def test_gp_values_capability_agrees_across_backends():
    pytest.importorskip("numba")
    F = np.linalg.cholesky(np.array([[2.0, 0.5, 0.1], [0.5, 1.0, 0.2], [0.1, 0.2, 1.5]]))
    idx = np.arange(10, 40, dtype=np.uint64)
    a = backend_for("gp_values", "numpy").gp_values(F, 7, idx, 3, True)
    b = backend_for("gp_values", "numba").gp_values(F, 7, idx, 3, True)
    np.testing.assert_array_equal(a, b)


def test_klz_capability_agrees_with_the_reference():
    pytest.importorskip("numba")
    from fastpoly.analysis.complexity import complexity_ints

    keys = np.random.default_rng(3).integers(0, 2**63, size=(50, 2), dtype=np.uint64)
    ref = complexity_ints(keys, 128, boolean=True, backend="numpy")
    got = complexity_ints(keys, 128, boolean=True, backend=backend_for("klz", "numba"))
    for k in ref:
        np.testing.assert_array_equal(ref[k], got[k])


def test_train_adapter_is_the_backend_train_range_and_pickles():
    pytest.importorskip("numba")
    from fastpoly.sgd import make_train_plan
    from fastpoly.sgd.api import TrainBackend
    from fastpoly.sgd.reference import train_range_reference

    tp = make_train_plan(fastpoly.MLP(4, (6,)), None, (np.arange(6), np.arange(6) % 2), 5, None)
    tb = TrainBackend("numba")
    assert tb.backend is get_backend("numba")
    got = tb.train(tp, 3, 9, params=True)
    ref = train_range_reference(tp, 3, 9, params=True)
    np.testing.assert_array_equal(got.keys, ref.keys)
    np.testing.assert_array_equal(got.params, ref.params)
    back = pickle.loads(pickle.dumps(tb))
    assert back.backend is tb.backend and back.name == "numba"
    with pytest.raises(ValueError, match="unknown training backend"):
        TrainBackend("torch")


def test_structured_networks_are_read_by_their_csr_layers():
    from fastpoly.poly.structured import SparseLayer, StructuredNetwork

    snet = StructuredNetwork([SparseLayer.from_dense(np.eye(2), np.zeros(2), "relu")])
    assert structured_of(snet) is snet
    dense = fastpoly.MLP(2, (3,)).instantiate(0, 0)
    assert structured_of(dense) is None


def test_one_memoised_cuda_device(monkeypatch):
    made = []
    monkeypatch.setattr(cuda_device, "_default", {})
    monkeypatch.setattr(cuda_device, "availability", lambda: (True, ""))
    a = cuda_device.default_device(lambda: made.append(1) or object())
    b = cuda_device.default_device(lambda: made.append(1) or object())
    assert a is b and len(made) == 1
    monkeypatch.setattr(cuda_device, "_default", {})
    monkeypatch.setattr(cuda_device, "availability", lambda: (False, "no CUDA device"))
    with pytest.raises(BackendUnavailable, match="no CUDA device"):
        cuda_device.default_device(object)

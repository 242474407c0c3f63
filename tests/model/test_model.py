"""The network model: architectures, the parser and its registry, layers' draw order, references, NNGP maps."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

import fastpoly
from fastpoly.model import (
    BOOLEAN_INPUT_LIMITS,
    MLP,
    Activation,
    Architecture,
    Dense,
    Init,
    NNGPState,
    all_boolean_inputs,
    architecture_from_dict,
    check_boolean_bits,
    parse,
)
from fastpoly.model import spec as parse_module
from fastpoly.network import forward_reference

F = np.float32
INITS = [dict(), dict(weights="uniform"), dict(bias=False), dict(bias_scaling="fan_in", sigma_w=1.7, sigma_b=0.3)]
INIT_IDS = ["gaussian", "uniform", "no-bias", "fan-in-bias"]


def _general(mlp: MLP) -> Architecture:
    """The same network as a plain Architecture (not the MLP class)."""
    return Architecture(mlp.input_shape, mlp.layers)


# --- architectures and strings -------------------------------------------------------------------------
def test_string_builds_the_mlp():
    a = parse("7-40-40-1")
    assert isinstance(a, MLP) and a == MLP(7, (40, 40)) and a.spec == "7-40-40-1"
    assert [type(x).__name__ for x in a.layers] == ["Dense", "Activation", "Dense", "Activation", "Dense"]
    assert a.shapes == ((7,), (40,), (40,), (40,), (40,), (1,))
    assert parse("3-4-1", activation="tanh", sigma_b=0.0) == MLP(3, (4,), activation="tanh", sigma_b=0.0)
    assert fastpoly.MLP is MLP and fastpoly.arch.MLP is MLP


def test_image_input_and_general_form_round_trip():
    a = parse("4x4x2-5-1", activation="erf")
    assert type(a) is Architecture and a.input_shape == (4, 4, 2) and a.n_inputs == 32
    assert a.spec == "4x4x2-5-1" and a.n_params == 32 * 5 + 5 + 5 + 1
    d = a.to_dict()
    assert Architecture.from_dict(d) == a == architecture_from_dict(d) and hash(Architecture.from_dict(d)) == hash(a)
    m = MLP(5, (3, 2), bias=False)
    assert architecture_from_dict(m.to_dict()) == m  # the counts files' {"widths": ...} form
    assert m.to_dict() == {"widths": [5, 3, 2, 1], "activation": "relu", "weights": "gaussian", "sigma_w": 1.0,
                           "sigma_b": 1.0, "bias_scaling": "none", "bias": False}


@pytest.mark.parametrize("spec,match", [
    ("7-0-1", "widths"), ("7-40-2", "output width"), ("abc", "architecture"), ("7", "architecture"),
    ("7--1", "architecture"), ("7-q3-1", "unknown layer token 'q3'.*known: 40"), ("2x3-4-1", "architecture"),
])
def test_bad_strings(spec, match):
    with pytest.raises(ValueError, match=match):
        parse(spec)


def test_frozen_hashable_and_validated():
    a = parse("3-4-1")
    with pytest.raises(AttributeError, match="frozen"):
        a.hidden = (5,)  # type: ignore[misc]
    assert len({a, parse("3-4-1"), parse("3-5-1")}) == 2
    with pytest.raises(ValueError, match="one unit"):
        Architecture(3, [Dense(2)])
    with pytest.raises(ValueError, match="at least one layer"):
        Architecture(3, [])
    with pytest.raises(ValueError, match="not a layer"):
        Architecture(3, ["dense"])
    with pytest.raises(ValueError, match="one family"):
        Architecture(3, [Dense(2, Init("uniform")), Dense(1)])
    with pytest.raises(ValueError, match="unknown activation"):
        Activation("swish")
    with pytest.raises(ValueError, match="sigma_w"):
        Init(sigma_w=-1)


# --- parameters: layout, draw order ---------------------------------------------------------------------
@pytest.mark.parametrize("kw", INITS, ids=INIT_IDS)
def test_param_layout_is_the_mlp_order(kw):
    m = MLP(5, (6, 3), **kw)
    a = _general(m)
    slots = a.param_blocks()
    offs = [(s.offset, s.block.name) for s in slots]
    expect = []
    for wo, bo in m.param_offsets():
        expect.append((wo, "W"))
        if bo is not None:
            expect.append((bo, "b"))
    assert offs == expect and a.n_params == m.n_params
    scales = [s.block.scale for s in slots if s.block.name == "W"]
    assert scales == [ws for ws, _ in m.scales()]
    np.testing.assert_array_equal(a.draw_params(11, [0, 3, 2**40]), m.draw_params(11, [0, 3, 2**40]))


# --- references -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ["relu", "identity", "sign"])
@pytest.mark.parametrize("kw", INITS, ids=INIT_IDS)
def test_forward_is_the_samplers_reference(act, kw):
    m = MLP(6, (9, 4), activation=act, **kw)
    X = fastpoly.boolean_inputs(6, centered=True)
    theta = m.draw_params(5, [7])[0]
    _, out = _general(m).forward(theta, X)
    ref = forward_reference(m.instantiate(5, 7), X, np.float32)
    np.testing.assert_array_equal(out, ref)  # bit for bit (the FMA rule)
    _, out64 = _general(m).forward(theta.astype(np.float64), X.astype(np.float64))
    np.testing.assert_array_equal(out64, forward_reference(m.instantiate(5, 7), X, np.float64))


@pytest.mark.parametrize("act", ["relu", "identity"])
def test_backward_is_the_gradient(act):
    """Float32 reference gradient against central differences of the float64 forward pass."""
    m = MLP(4, (5, 3), activation=act)
    a = _general(m)
    X = np.random.default_rng(1).normal(size=(6, 4)).astype(F)
    theta = m.draw_params(2, [1])[0]
    hs, z = a.forward(theta, X)
    g = a.backward(theta, hs, np.ones_like(z) / F(6))  # d(mean z)/d theta
    h = 1e-6
    t64 = theta.astype(np.float64)
    num = np.empty_like(t64)
    for p in range(t64.size):
        e = np.zeros_like(t64)
        e[p] = h
        num[p] = (a.forward(t64 + e, X.astype(np.float64))[1].mean() - a.forward(t64 - e, X.astype(np.float64))[1].mean()) / (2 * h)
    np.testing.assert_allclose(g, num, rtol=1e-4, atol=1e-5)


def test_activation_without_trainer_refuses_backward():
    with pytest.raises(ValueError, match="not supported for training"):
        Activation("sign").backward((), np.zeros((1, 2), F), np.zeros((1, 2), F))


# --- NNGP maps --------------------------------------------------------------------------------------------
def test_nngp_is_the_written_recursion():
    """One relu hidden layer, fan-in bias: the recursion spelled out independently of the layers."""
    X = np.random.default_rng(4).normal(size=(5, 3))
    m = MLP(3, (10,), sigma_w=1.3, sigma_b=0.4, bias_scaling="fan_in")
    sw2 = 1.3**2
    K0 = 0.4**2 / 3 + sw2 * X @ X.T / 3
    d = np.sqrt(np.diag(K0))
    rho = np.clip(K0 / np.outer(d, d), -1, 1)
    t = np.arccos(rho)
    E = np.outer(d, d) * (np.sin(t) + (math.pi - t) * rho) / (2 * math.pi)
    K1 = 0.4**2 / 10 + sw2 * E
    np.testing.assert_allclose(m.nngp(X), K1, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(m.nngp(X), fastpoly.gp.kernel(m, X))


def test_nngp_refusals():
    X = np.eye(3)
    with pytest.raises(ValueError, match="no closed-form"):
        MLP(3, (4,), activation="tanh").nngp(X)
    with pytest.raises(ValueError, match="gaussian weights"):
        MLP(3, (4,), weights="uniform").nngp(X)


# --- the extension point: a new layer type is a class + a token ----------------------------------------------
@dataclass(frozen=True)
class _Scale:
    """A toy parameter-free layer (multiply by k), standing in for the next issue's pooling layers."""

    k: int
    kind: ClassVar[str] = "scale"
    activated: ClassVar[bool] = False

    def out_shape(self, in_shape):
        return tuple(in_shape)

    def param_layout(self, in_shape):
        return ()

    def forward(self, params, h):
        return (h * h.dtype.type(self.k)).astype(h.dtype)

    def backward(self, params, h, dout, input_grad=True):
        return (dout * F(self.k) if input_grad else None), ()

    def nngp(self, state, in_shape):
        return NNGPState(state.K * self.k**2, state.diag * self.k**2, state.n)

    def token(self):
        return f"m{self.k}"

    def to_dict(self):
        return {"type": self.kind, "k": self.k}


def test_a_new_layer_type_is_a_class_and_a_token(monkeypatch):
    monkeypatch.setattr(parse_module, "TOKENS", list(parse_module.TOKENS))
    parse_module.register_token(r"m(\d+)", lambda mm, init: _Scale(int(mm[1])), "m2")
    a = parse("3-4-m2-1")
    assert type(a) is Architecture and a.spec == "3-4-m2-1"
    assert [type(x).__name__ for x in a.layers] == ["Dense", "Activation", "_Scale", "Dense"]
    m = MLP(3, (4,))
    X = np.random.default_rng(0).normal(size=(4, 3)).astype(F)
    np.testing.assert_array_equal(a.draw_params(1, [2]), m.draw_params(1, [2]))  # no parameters of its own
    K = a.nngp(X.astype(np.float64))
    assert np.all(np.isfinite(K)) and K.shape == (4, 4)


# --- the one input rule -----------------------------------------------------------------------------------------
def test_one_input_rule():
    assert dict(BOOLEAN_INPUT_LIMITS) == {"array": 24, "cli": 20, "gp": 16}
    np.testing.assert_array_equal(all_boolean_inputs(3, "gp", centered=True), fastpoly.boolean_inputs(3, True))
    for use, lim in BOOLEAN_INPUT_LIMITS.items():
        assert check_boolean_bits(lim, use) == lim
        with pytest.raises(ValueError, match=f"at most {lim} bits"):
            check_boolean_bits(lim + 1, use)
    with pytest.raises(ValueError, match="unknown input use"):
        check_boolean_bits(3, "moon")
    with pytest.raises(ValueError, match="Boolean inputs of 17 bits"):
        fastpoly.gp.kernel(MLP(17, (3,)))
    with pytest.raises(ValueError, match="Boolean inputs of 25 bits"):
        fastpoly.plan.make_plan(MLP(25, (3,)))

"""The GP consumers of the network model: the NNGP kernel as composed layer maps, one PSD check per posterior."""
from __future__ import annotations

import numpy as np
import pytest

import fastpoly
from fastpoly.gp import kernel, posterior
from fastpoly.gp.kernels import check_inputs, kernel_activations
from fastpoly.model import MLP


def test_kernel_activations_are_the_tables():
    assert kernel_activations() == fastpoly.activations.supported("nngp")


def test_kernel_inputs_follow_the_one_input_rule():
    X = check_inputs(MLP(3, (4,)), None)
    assert X.dtype == np.float64 and X.shape == (8, 3)
    with pytest.raises(ValueError, match="at most 16 bits"):
        check_inputs(MLP(17, (4,)), None)
    with pytest.raises(ValueError, match="non-finite"):
        check_inputs(MLP(3, (4,)), np.full((2, 3), np.inf))


@pytest.mark.parametrize("act", ["relu", "erf", "sign", "identity"])
def test_kernel_is_the_composition_of_layer_maps(act):
    m = MLP(4, (6, 5), activation=act, sigma_b=0.5)
    X = fastpoly.boolean_inputs(4, centered=True).astype(np.float64)
    state = fastpoly.model.NNGPState.of_inputs(X)
    for layer, shape in zip(m.layers, m.shapes):
        state = layer.nngp(state, shape)
    np.testing.assert_array_equal(kernel(m, X), state.K)


def test_posterior_checks_the_covariance_once(monkeypatch):
    """orthant() used to re-run a full eigvalsh per function; now the posterior checks K once."""
    calls = []
    real = np.linalg.eigvalsh

    def spy(a, *args, **kw):
        calls.append(np.shape(a))
        return real(a, *args, **kw)

    monkeypatch.setattr(np.linalg, "eigvalsh", spy)
    m = MLP(3, (8,))
    train = ([0, 5], [0, 1])
    funcs = ["000000", "010101", "111111", "001100"]
    r = posterior(m, None, train=train, functions=funcs, method="ep")
    assert len(r.log_p) == 4 and np.all(np.isfinite(r.log_p))
    assert calls.count((8, 8)) == 1


def _kernel_before_the_model(arch, X):
    """The NNGP kernel as fastpoly computed it before the network model (its loop, verbatim)."""
    from fastpoly.activations import TABLE

    def bias_var(fan_in):
        if not arch.bias:
            return 0.0
        return arch.sigma_b**2 / fan_in if arch.bias_scaling == "fan_in" else arch.sigma_b**2

    sw2 = arch.sigma_w**2
    d = X.shape[1]
    K = bias_var(d) + sw2 * (X @ X.T) / d
    diag = bias_var(d) + sw2 * np.einsum("ij,ij->i", X, X) / d
    K = 0.5 * (K + K.T)
    np.fill_diagonal(K, diag)
    for fan_in in arch.hidden:
        E, dE = TABLE[arch.activation].nngp(K, diag)
        bv = bias_var(fan_in)
        K = bv + sw2 * E
        diag = bv + sw2 * dE
        K = 0.5 * (K + K.T)
        np.fill_diagonal(K, diag)
    return K


@pytest.mark.parametrize("act", ["relu", "erf", "sign", "identity"])
@pytest.mark.parametrize("kw", [dict(), dict(sigma_b=0.0), dict(bias_scaling="fan_in", sigma_w=1.7, sigma_b=0.3),
                                dict(bias=False)], ids=["default", "sb0", "fan-in", "no-bias"])
def test_kernel_is_bit_identical_to_before(act, kw):
    m = MLP(5, (30, 7, 9), activation=act, **kw)
    X = np.random.default_rng(0).normal(size=(20, 5))
    np.testing.assert_array_equal(kernel(m, X), _kernel_before_the_model(m, X))
    Xb = fastpoly.boolean_inputs(5).astype(np.float64)
    np.testing.assert_array_equal(kernel(m), _kernel_before_the_model(m, Xb))

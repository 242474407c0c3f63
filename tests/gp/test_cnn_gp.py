"""NNGP kernels of convolutional networks (fastpoly.model.nngp_conv): Monte Carlo of wide CNNs, blocking,
the layer maps against hand formulas, and the anchor's variant."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import erf

from fastpoly.gp import kernel
from fastpoly.model import nngp_conv as nc
from fastpoly.model import parse
from fastpoly.model.conv import conv_geometry, patches


def _digits(idx=(0, 1, 10, 11)) -> np.ndarray:
    """A handful of real 8x8 images (sklearn digits, two 0s and two 1s), scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images[list(idx)] / 16.0)[..., None]


def _phi(name: str, z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0.0) if name == "relu" else erf(z)


def _mc_draw(arch, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random network (float64): E[f f^T | hidden layers] = s_b^2 + sigma_w^2 H H^T / fan_in of the readout.

    Conditioning on the readout's input (Rao-Blackwell) keeps the estimator unbiased for the
    output covariance and averages over all channels and positions of the last hidden layer.
    """
    h = X
    act = None
    for layer, shape in zip(arch.layers, arch.shapes):
        kind = layer.kind
        if kind in ("conv2d", "dense"):
            init = layer.init
            (Wb, *bb) = layer.param_layout(shape)
            fan_in = Wb.fan_in
            bv = init.bias_var(fan_in)
            if kind == "dense":
                H = h.reshape(h.shape[0], -1)
                return bv + init.sigma_w**2 * (H @ H.T) / fan_in
            W = rng.standard_normal((layer.filters, fan_in)) * (init.sigma_w / math.sqrt(fan_in))
            b = rng.standard_normal(layer.filters) * math.sqrt(bv)
            h = patches(layer, h) @ W.T + b
        elif kind == "activation":
            act = layer.name
            h = _phi(act, h)
        elif kind == "avgpool":
            k = layer.size
            N, Hh, Ww, C = h.shape
            h = h[:, :Hh // k * k, :Ww // k * k].reshape(N, Hh // k, k, Ww // k, k, C).mean(axis=(2, 4))
        elif kind == "gap":
            h = h.mean(axis=(1, 2))
        elif kind == "flatten":
            h = h.reshape(h.shape[0], -1)
    raise AssertionError("no readout")


#: (architecture, activation, init options, draws, allowed finite-width bias): every hidden layer
#: has 512 channels.  One conv layer: the conditional estimator is exactly unbiased (bias 0) and
#: cheap, so many draws; two conv layers: the O(1/channels) bias of the second layer is allowed.
MC_CASES = {
    "flatten-relu": ("8x8x1-c512k3-1", "relu", {"sigma_w": 1.5, "sigma_b": 0.3}, 100, 0.0),
    "flatten-erf-stride-same-fanin-bias": ("8x8x1-c512k3s2p-1", "erf",
                                           {"sigma_w": 1.2, "sigma_b": 0.5, "bias_scaling": "fan_in"}, 100, 0.0),
    "gap-relu-same": ("8x8x1-c512k2p-gap-1", "relu", {"sigma_w": 1.4, "sigma_b": 0.2}, 100, 0.0),
    "avgpool-erf-nobias": ("8x8x1-c512k3p-ap2-1", "erf", {"sigma_w": 1.3, "bias": False}, 100, 0.0),
    "two-conv-flatten-relu": ("8x8x1-c512k3s2p-c512k2-1", "relu", {"sigma_w": 1.5, "sigma_b": 0.3}, 48, 0.005),
    "two-conv-avgpool-gap-erf": ("8x8x1-c512k3p-ap2-c512k2p-gap-1", "erf", {"sigma_w": 1.3, "sigma_b": 0.3},
                                 12, 0.005),
}


def _one_thread():
    """BLAS on one thread: the draws' small matrix products are faster so on a shared machine."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - comes with scikit-learn
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1)


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=[pytest.mark.slow] if "two-conv" in c else []) for c in MC_CASES],
    ids=list(MC_CASES))
def test_kernel_matches_monte_carlo_of_wide_cnns(case):
    spec, act, init, draws, bias = MC_CASES[case]
    arch = parse(spec, activation=act, **init)
    X = _digits()
    K = kernel(arch, X.reshape(len(X), -1))
    rng = np.random.default_rng(20)
    with _one_thread():
        est = np.stack([_mc_draw(arch, X, rng) for _ in range(draws)])
    mc = est.mean(axis=0)
    se = est.std(axis=0, ddof=1) / math.sqrt(draws)
    assert np.all(se <= 0.02 * np.abs(K)), (se / np.abs(K)).max()  # the 2 % standard-error design
    np.testing.assert_array_less(np.abs(mc - K), 4 * se + bias * np.abs(K))


def test_monte_carlo_network_is_fastpoly_network():
    """The MC forward above draws the same network as Architecture.forward (float64, same parameters)."""
    arch = parse("8x8x1-c3k3s2p-ap2-c2k2p-gap-1", activation="relu", sigma_b=0.5)
    X = _digits()
    theta = arch.draw_params(3, [0])[0].astype(np.float64)
    ref = arch.forward(theta, X.reshape(len(X), -1))[1][:, 0]
    params = arch.split_params(theta)
    h = X
    for layer, p in zip(arch.layers, params):
        if layer.kind == "conv2d":
            h = patches(layer, h) @ p[0].reshape(layer.filters, -1).T + p[1]
        elif layer.kind == "activation":
            h = _phi(layer.name, h)
        elif layer.kind == "avgpool":
            N, Hh, Ww, C = h.shape
            h = h.reshape(N, Hh // 2, 2, Ww // 2, 2, C).mean(axis=(2, 4))
        elif layer.kind == "gap":
            h = h.mean(axis=(1, 2))
        elif layer.kind == "dense":
            h = h @ p[0].T + p[1]
    np.testing.assert_allclose(h[:, 0], ref, rtol=1e-12, atol=1e-12)


SPECS = {
    "flatten": "7x6x2-c3k3-c2k2p-1",
    "stride-same": "7x7x1-c3k3s2p-c3k2-4-1",
    "avgpool": "8x8x2-c3k3p-ap2-c3k2-1",
    "gap": "6x6x1-c3k2s2-c2k2p-gap-3-1",
    "hidden-stride-same": "9x9x1-c3k2-c3k3s2p-ap2-1",
}


@pytest.mark.parametrize("act", ["relu", "erf"])
@pytest.mark.parametrize("name", list(SPECS), ids=list(SPECS))
def test_blocked_kernel_equals_the_composed_layer_maps(name, act):
    """gp.kernel (blocked over pairs, diagonal state where pooling allows) == Architecture.nngp (one full state)."""
    arch = parse(SPECS[name], activation=act, sigma_b=0.7)
    X = np.random.default_rng(1).normal(size=(7, *arch.input_shape))
    K = kernel(arch, X)
    np.testing.assert_array_equal(K, K.T)
    np.testing.assert_allclose(K, arch.nngp(X), rtol=1e-13, atol=0)
    for max_bytes in (1, 40_000):  # blocks of 1 and a few rows: every cross-block path
        np.testing.assert_allclose(kernel(arch, X, max_bytes=max_bytes), K, rtol=1e-13, atol=0)
    assert np.all(np.linalg.eigvalsh(K) > -1e-10 * np.abs(K).max())
    np.testing.assert_array_equal(kernel(arch, X.reshape(7, -1)), K)  # flat rows == images


def _first_conv_by_hand(X, k, sw, sb, padding, stride, fan_in_bias=False):
    """The first conv layer's covariance from the definition: patches' dot products."""
    from fastpoly.model.conv import Conv2D
    from fastpoly.model.layers import Init

    layer = Conv2D(1, k, stride, padding, Init(sigma_w=sw, sigma_b=sb))
    P = patches(layer, X)  # (m, Ho, Wo, k*k*C)
    fan_in = P.shape[-1]
    bv = sb**2 / fan_in if fan_in_bias else sb**2
    return bv + sw**2 * np.einsum("aijq,bklq->abijkl", P, P) / fan_in


@pytest.mark.parametrize("padding,stride", [("valid", 1), ("same", 1), ("same", 2), ("valid", 2)])
def test_conv_map_is_the_patch_covariance(padding, stride):
    X = np.random.default_rng(2).normal(size=(3, 7, 6, 2))
    from fastpoly.model.conv import Conv2D
    from fastpoly.model.layers import Init

    layer = Conv2D(5, 3, stride, padding, Init(sigma_w=1.3, sigma_b=0.4))
    s = nc.conv2d_nngp(layer, nc.ConvNNGPState.of_images(X, None, "full"))
    np.testing.assert_allclose(s.K, _first_conv_by_hand(X, 3, 1.3, 0.4, padding, stride), rtol=1e-12, atol=1e-14)
    d = nc.conv2d_nngp(layer, nc.ConvNNGPState.of_images(X, None, "diag"))
    np.testing.assert_allclose(d.K, s.to_diag().K, rtol=1e-12)
    assert s.channels == 5 and s.K.shape[2:4] == tuple(conv_geometry(n, 3, stride, padding)[0] for n in (7, 6))


def test_geometry_is_the_layers():
    for n in range(1, 12):
        for k in range(1, 6):
            for s in range(1, 4):
                for pad in ("valid", "same"):
                    if pad == "valid" and k > n:
                        continue
                    out, before = conv_geometry(n, k, s, pad)
                    assert nc._geometry(n, k, s, pad)[:2] == (out, before)


def test_readouts_by_hand():
    """flatten + dense averages the same-location covariances; gap + dense averages all pairs of positions."""
    X = np.random.default_rng(3).normal(size=(4, 5, 5, 1))
    for spec, reduce in (("5x5x1-c4k2-1", lambda V: V.reshape(4, 4, 16, 16).diagonal(axis1=2, axis2=3).mean(-1)),
                         ("5x5x1-c4k2-gap-1", lambda V: V.reshape(4, 4, -1).mean(-1))):
        arch = parse(spec, activation="relu", sigma_w=1.1, sigma_b=0.3)
        K1 = _first_conv_by_hand(X, 2, 1.1, 0.3, "valid", 1)
        v = K1.reshape(4, 4, 16, 16)
        d = np.einsum("aapp->ap", v)
        norm = np.sqrt(d[:, None, :, None] * d[None, :, None, :])
        rho = np.clip(v / norm, -1, 1)
        t = np.arccos(rho)
        V = norm * (np.sin(t) + (np.pi - t) * rho) / (2 * np.pi)
        want = 0.3**2 + 1.1**2 * reduce(V)
        np.testing.assert_allclose(kernel(arch, X), want, rtol=1e-12)


def test_anchor_variant():
    """variant="nn-pacbayes": taps of variance sigma_w^2 (no 1/k^2) and pooling ignored."""
    X = np.random.default_rng(4).normal(size=(5, 8, 8, 1))
    kw = {"activation": "relu", "sigma_w": 1.2, "sigma_b": 0.4}
    plain = parse("8x8x1-c4k3-c4k2p-1", **kw)
    pooled = parse("8x8x1-c4k3-mp2-c4k2p-ap1-gap-1", **kw)
    Ka = kernel(plain, X, variant="nn-pacbayes")
    np.testing.assert_array_equal(kernel(pooled, X, variant="nn-pacbayes"), Ka)  # pooling ignored
    # the same as fastpoly's kernel of the network whose taps have variance sigma_w^2:
    # sigma_w -> sigma_w * k in each conv layer (k = 3, then 2), the readout unchanged
    from fastpoly.model.architecture import Architecture
    from fastpoly.model.conv import Conv2D
    from fastpoly.model.layers import Init

    layers = []
    for layer in plain.layers:
        if layer.kind == "conv2d":
            i = layer.init
            layer = Conv2D(layer.filters, layer.kernel, layer.stride, layer.padding,
                           Init(sigma_w=i.sigma_w * layer.kernel, sigma_b=i.sigma_b))
        layers.append(layer)
    np.testing.assert_allclose(Ka, kernel(Architecture(plain.input_shape, layers), X), rtol=1e-12)
    assert not np.allclose(Ka, kernel(plain, X))
    with pytest.raises(NotImplementedError, match="max pooling has no closed-form NNGP map"):
        kernel(pooled, X)
    with pytest.raises(ValueError, match="unknown kernel variant"):
        kernel(plain, X, variant="keras")


def test_mlp_kernels_unchanged_by_variant():
    from fastpoly.model import MLP

    m = MLP(5, (7,), activation="erf")
    X = np.random.default_rng(5).normal(size=(6, 5))
    np.testing.assert_array_equal(kernel(m, X, variant="nn-pacbayes"), m.nngp(X))


def test_bad_inputs_are_clear_errors():
    arch = parse("6x6x1-c3k3-1")
    with pytest.raises(ValueError, match="images must have shape"):
        kernel(arch, np.zeros((2, 5, 6, 1)))
    with pytest.raises(ValueError, match="shape"):
        kernel(arch, np.zeros((2, 35)))
    with pytest.raises(ValueError, match="non-finite"):
        kernel(arch, np.full((2, 6, 6, 1), np.nan))
    with pytest.raises(ValueError, match="no closed-form NNGP map"):
        kernel(parse("6x6x1-c3k3-1", activation="tanh"), np.zeros((2, 6, 6, 1)))
    with pytest.raises(ValueError, match="gaussian weights"):
        kernel(parse("6x6x1-c3k3-1", weights="uniform"), np.zeros((2, 6, 6, 1)))


def test_pair_floats_and_cost_rule():
    """Full spatial covariances only up to the last pooling layer; the diagonal after it."""
    # a first convolution is computed from the patches: the largest grid carried is its output (6x6)
    assert nc.pair_floats(parse("8x8x1-c4k3-c4k3-1")) == 36  # diag
    assert nc.pair_floats(parse("8x8x1-c4k3-c4k3-gap-1")) == 36 * 36  # full up to the pooling
    assert nc.pair_floats(parse("8x8x1-c4k3-c4k3-gap-1"), "nn-pacbayes") == 36
    assert nc.pair_floats(parse("8x8x1-ap2-c4k3-1")) == 64 * 64  # pooling the input itself


def test_anchor_family_kernels():
    """anchor_cnn builds kernels: its pooled variants under both variants; max pooling only as the anchor's."""
    from fastpoly.model.cnn import anchor_cnn

    X = _digits()
    kw = {"sigma_w": 1.3, "sigma_b": 0.2}
    plain = anchor_cnn((8, 8, 1), 2, filters=8, **kw)
    avg = anchor_cnn((8, 8, 1), 2, filters=8, pooling="avg", pool_after=[1], global_pool="avg", **kw)
    mx = anchor_cnn((8, 8, 1), 2, filters=8, pooling="max", pool_after=[1], **kw)
    K = kernel(avg, X)
    np.testing.assert_allclose(K, avg.nngp(X), rtol=1e-12)
    assert not np.allclose(K, kernel(plain, X))
    with pytest.raises(NotImplementedError, match="max pooling"):
        kernel(mx, X)
    Ka = kernel(plain, X, variant="nn-pacbayes")
    for arch in (avg, mx):
        np.testing.assert_array_equal(kernel(arch, X, variant="nn-pacbayes"), Ka)
    # truncated-normal weights (the anchor's first-run initialiser) have the same variance
    tn = anchor_cnn((8, 8, 1), 2, filters=8, weights="truncated_normal", **kw)
    np.testing.assert_array_equal(kernel(tn, X), kernel(plain, X))


def test_gp_kernel_cli_takes_cnns(tmp_path, capsys):
    from fastpoly.cli.main import main

    X = _digits()
    np.save(tmp_path / "X.npy", X)
    out = tmp_path / "K.npy"
    args = ["gp", "kernel", "8x8x1-c4k3-c4k2p-gap-1", "--inputs", str(tmp_path / "X.npy"), "--sigma-b", "0.5"]
    assert main([*args, "--out", str(out)]) == 0
    assert "4 x 4" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(out), kernel(parse("8x8x1-c4k3-c4k2p-gap-1", sigma_b=0.5), X))
    assert main([*args, "--variant", "nn-pacbayes", "--out", str(out), "--force"]) == 0
    np.testing.assert_array_equal(
        np.load(out), kernel(parse("8x8x1-c4k3-c4k2p-gap-1", sigma_b=0.5), X, variant="nn-pacbayes"))
    capsys.readouterr()
    assert main(["gp", "kernel", "8x8x1-c4k3-mp2-1", "--inputs", str(tmp_path / "X.npy")]) == 2
    assert "max pooling has no closed-form NNGP map" in capsys.readouterr().err

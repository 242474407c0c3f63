"""The spatial layers of the network model: shapes, strings, draw order, forward and backward references."""
from __future__ import annotations

import numpy as np
import pytest

from fastpoly.model import (
    CNN,
    Architecture,
    AvgPool,
    Conv2D,
    Dense,
    Flatten,
    GlobalAvgPool,
    Init,
    MaxPool,
    anchor_cnn,
    architecture_from_dict,
    parse,
)
from fastpoly.model.conv import conv_geometry
from fastpoly.stream.rng import stream_normals
from fastpoly.tolerances import assert_close_to_reference

F = np.float32


def conv_direct(x, W, b, stride, padding):
    """Straightforward float64 convolution (TensorFlow padding), loops over output positions."""
    N, H, Wd, C = x.shape
    Fo, K = W.shape[0], W.shape[1]
    Ho, ph = conv_geometry(H, K, stride, padding)
    Wo, pw = conv_geometry(Wd, K, stride, padding)
    xp = np.zeros((N, H + 2 * K, Wd + 2 * K, C))
    xp[:, ph:ph + H, pw:pw + Wd] = x
    out = np.zeros((N, Ho, Wo, Fo))
    for i in range(Ho):
        for j in range(Wo):
            patch = xp[:, i * stride:i * stride + K, j * stride:j * stride + K, :]
            out[:, i, j, :] = np.einsum("nklc,fklc->nf", patch, W) + b
    return out


@pytest.mark.parametrize("spec,shapes", [
    ("8x8x1-c16k3-c16k3-1", [(8, 8, 1), (6, 6, 16), (6, 6, 16), (4, 4, 16), (4, 4, 16), (256,), (1,)]),
    ("7x5x2-c3k2s2p-ap2-1", [(7, 5, 2), (4, 3, 3), (4, 3, 3), (2, 1, 3), (6,), (1,)]),
    ("28x28x1-c32k5-c32k2p-mp2-gap-1", [(28, 28, 1), (24, 24, 32), (24, 24, 32), (24, 24, 32), (24, 24, 32),
                                        (12, 12, 32), (32,), (1,)]),
])
def test_shapes_and_strings_round_trip(spec, shapes):
    a = parse(spec)
    assert type(a) is Architecture and a.spec == spec and [tuple(s) for s in a.shapes] == shapes
    assert Architecture.from_dict(a.to_dict()) == a == architecture_from_dict(a.to_dict()) == parse(a.spec)
    assert hash(Architecture.from_dict(a.to_dict())) == hash(a)


def test_same_padding_is_tensorflows():
    # ceil(H/S) outputs, total = max((out-1)*S + K - H, 0), total // 2 before
    assert conv_geometry(7, 2, 1, "same") == (7, 0)
    assert conv_geometry(7, 3, 1, "same") == (7, 1)
    assert conv_geometry(7, 4, 2, "same") == (4, 1)
    assert conv_geometry(8, 5, 1, "same") == (8, 2)
    assert conv_geometry(8, 5, 1, "valid") == (4, 0)
    assert conv_geometry(8, 3, 3, "valid") == (2, 0)


def test_constructor_and_anchor_family():
    a = parse("8x8x1-c16k3-c16k3-1", activation="tanh", sigma_b=0.5)
    assert CNN((8, 8, 1), ["c16k3", Conv2D(16, 3, init=Init(sigma_b=0.5)), 1], "tanh", sigma_b=0.5) == a
    assert [type(x).__name__ for x in a.layers] == ["Conv2D", "Activation", "Conv2D", "Activation", "Flatten",
                                                     "Dense"]
    c = anchor_cnn((28, 28, 1), 4, filters=200, pooling="avg", pool_after=[1, 3], global_pool="avg")
    assert c.spec == "28x28x1-c200k5-c200k2p-ap2-c200k5-c200k2p-ap2-gap-1"
    assert anchor_cnn((12, 12, 1), 2, filters=3).spec == "12x12x1-c3k5-c3k2p-1"


@pytest.mark.parametrize("spec,match", [
    ("8x8x1-c0k3-1", "filters"), ("4x4x1-c2k5-1", "does not fit"), ("8x8x1-c2k3-2", "one unit"),
    ("8-c2k3-1", "image inputs"), ("8x8x1-c2k3q-1", "unknown layer token"), ("3x3x1-mp4-1", "does not fit"),
    ("8x8x1-c2k3-gap-gap-1", "image inputs"),
])
def test_bad_cnn_strings(spec, match):
    with pytest.raises(ValueError, match=match):
        parse(spec)


def test_draw_order_continues_like_dense_layers():
    a = parse("6x6x2-c3k3-ap2-4-1", sigma_w=1.3, sigma_b=0.7)
    blocks = [(s.block.name, s.block.shape, s.offset) for s in a.param_blocks()]
    assert blocks == [("W", (3, 3, 3, 2), 0), ("b", (3,), 54), ("W", (4, 12), 57), ("b", (4,), 105),
                      ("W", (1, 4), 109), ("b", (1,), 113)]
    theta = a.draw_params(5, [7])[0]
    z = stream_normals(5, [7], a.n_params)[0]
    np.testing.assert_array_equal(theta[:54], (z[:54] * F(1.3 / np.sqrt(18))).astype(F))
    np.testing.assert_array_equal(theta[54:57], (z[54:57] * F(0.7)).astype(F))
    np.testing.assert_array_equal(theta[57:105], (z[57:105] * F(1.3 / np.sqrt(12))).astype(F))


def test_truncated_normal_draw_rule():
    a = parse("5x5x1-c2k3-1", weights="truncated_normal", sigma_w=2.0)
    theta = a.draw_params(9, [0, 3])
    for row, idx in zip(theta, (0, 3)):
        z = stream_normals(9, [idx], 400)[0]
        q, expect = 0, []
        for p in range(a.n_params):  # W (18) truncated, b (2) plain, W (18) truncated, b (1) plain
            trunc = p < 18 or 20 <= p < 38
            while trunc and abs(z[q]) > 2:
                q += 1
            expect.append(z[q])
            q += 1
        ws = F(2.0 / 3.0 / 0.87962566103423978)
        scale = np.array([ws] * 18 + [F(1)] * 2 + [F(2.0 / np.sqrt(18) / 0.87962566103423978)] * 18 + [F(1)], F)
        np.testing.assert_array_equal(row, (np.array(expect, F) * scale).astype(F))
        assert np.all(np.abs(row[:18]) <= 2 * ws)
    # a dense architecture with truncated weights is a generic architecture (the MLP fast path refuses it)
    d = parse("3-4-1", weights="truncated_normal")
    assert type(d) is Architecture and isinstance(d.layers[0], Dense)
    with pytest.raises(ValueError, match="truncated"):
        from fastpoly import MLP
        MLP(3, (4,), weights="truncated_normal")
    # the variance of the corrected truncated normal is sigma_w**2 / fan_in
    big = parse("10x10x1-c1k10-1", weights="truncated_normal", bias=False).draw_params(0, range(400))[:, :100]
    assert abs(big.var() * 100 - 1.0) < 0.03


@pytest.mark.parametrize("stride,padding", [(1, "valid"), (1, "same"), (2, "same"), (2, "valid")])
def test_conv_forward_against_direct_convolution(stride, padding):
    rng = np.random.default_rng(stride)
    layer = Conv2D(4, 3, stride, padding)
    x = rng.normal(size=(3, 7, 6, 2)).astype(F)
    W = rng.normal(size=(4, 3, 3, 2)).astype(F)
    b = rng.normal(size=4).astype(F)
    ref = conv_direct(x.astype(np.float64), W.astype(np.float64), b.astype(np.float64), stride, padding)
    z32 = layer.forward([W, b], x)
    assert z32.dtype == F and z32.shape == (3,) + layer.out_shape((7, 6, 2))
    assert_close_to_reference(z32, ref, F)
    z64 = layer.forward([W.astype(np.float64), b.astype(np.float64)], x.astype(np.float64))
    assert_close_to_reference(z64, ref, np.float64)


def test_conv_forward_is_the_fma_rule_per_patch():
    # one output = b, then fma over the patch in (kh, kw, c) order, padding zeros included
    from fastpoly.stream.fmath import fma32
    rng = np.random.default_rng(1)
    layer = Conv2D(2, 3, 1, "same")
    x = rng.normal(size=(1, 4, 4, 2)).astype(F)
    W = rng.normal(size=(2, 3, 3, 2)).astype(F)
    b = rng.normal(size=2).astype(F)
    z = layer.forward([W, b], x)
    xp = np.zeros((6, 6, 2), F)
    xp[1:5, 1:5] = x[0]
    for i, j, f in [(0, 0, 0), (2, 3, 1), (3, 3, 0)]:
        acc = b[f]
        for kh in range(3):
            for kw in range(3):
                for c in range(2):
                    acc = fma32(xp[i + kh, j + kw, c], W[f, kh, kw, c], acc)
        assert z[0, i, j, f] == acc


def test_pooling_forward():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 5, 4, 3)).astype(F)
    ap = AvgPool(2).forward([], x)
    ref = x[:, :4].reshape(2, 2, 2, 2, 2, 3).mean(axis=(2, 4))
    assert ap.shape == (2, 2, 2, 3) and ap.dtype == F
    assert_close_to_reference(ap, ref, F)
    w = x[:, 0:2, 0:2, :]
    exact = ((((F(0) + w[:, 0, 0]) + w[:, 0, 1]) + w[:, 1, 0]) + w[:, 1, 1]) / F(4)
    np.testing.assert_array_equal(ap[:, 0, 0], exact)
    mp = MaxPool(2).forward([], x)
    np.testing.assert_array_equal(mp, x[:, :4].reshape(2, 2, 2, 2, 2, 3).max(axis=(2, 4)))
    g = GlobalAvgPool().forward([], x)
    assert g.shape == (2, 3)
    assert_close_to_reference(g, x.astype(np.float64).mean(axis=(1, 2)), F)
    assert Flatten().forward([], x).shape == (2, 60)


def _loss(a, theta, X, r):
    return float(np.sum(a.forward(theta, X)[1].astype(np.float64).ravel() * r))


@pytest.mark.parametrize("spec", ["6x5x2-c3k3-2-1", "6x6x1-c2k2s2p-ap2-1", "5x5x2-c3k2p-mp2-gap-1",
                                  "7x7x1-c2k3s2-c2k2-1"])
def test_backward_against_finite_differences(spec):
    a = parse(spec, activation="relu")
    rng = np.random.default_rng(3)
    X64 = rng.normal(size=(3, a.n_inputs))
    theta64 = a.draw_params(1, [0])[0].astype(np.float64)
    r = rng.normal(size=3)
    hs, out = a.forward(theta64.astype(F), X64.astype(F))
    g = a.backward(theta64.astype(F), hs, r.reshape(3, 1).astype(F))
    assert g.dtype == F and g.shape == theta64.shape
    eps = 1e-6
    for p in rng.choice(a.n_params, size=min(25, a.n_params), replace=False):
        tp, tm = theta64.copy(), theta64.copy()
        tp[p] += eps
        tm[p] -= eps
        fd = (_loss(a, tp, X64, r) - _loss(a, tm, X64, r)) / (2 * eps)
        assert abs(fd - g[p]) < 1e-3 * max(1.0, abs(fd)), (p, fd, g[p])


@pytest.mark.parametrize("layer,shape", [(Conv2D(3, 3, 1, "same"), (5, 4, 2)), (Conv2D(2, 2, 2), (5, 5, 1)),
                                         (AvgPool(2), (5, 4, 2)), (MaxPool(2), (4, 5, 2)), (GlobalAvgPool(), (3, 4, 2)),
                                         (Flatten(), (3, 2, 2))])
def test_input_error_against_finite_differences(layer, shape):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2,) + shape)
    params = [rng.normal(size=b.shape) for b in layer.param_layout(shape)]
    out_shape = layer.out_shape(shape)
    r = rng.normal(size=(2,) + out_shape)
    e, _ = layer.backward([p.astype(F) for p in params], x.astype(F), r.astype(F))
    assert e.shape == x.shape
    eps = 1e-6
    for idx in [tuple(rng.integers(0, s) for s in x.shape) for _ in range(12)]:
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        fd = (np.sum(layer.forward(params, xp) * r) - np.sum(layer.forward(params, xm) * r)) / (2 * eps)
        assert abs(fd - e[idx]) < 1e-4 * max(1.0, abs(fd)), (idx, fd, e[idx])


def test_max_pool_has_no_nngp():
    with pytest.raises(NotImplementedError, match="max pooling has no closed-form NNGP map"):
        MaxPool(2).nngp(None, (4, 4, 2))  # type: ignore[arg-type]


def test_images_or_flat_rows():
    a = parse("5x5x1-c2k3-1")
    theta = a.draw_params(0, [1])[0]
    X = np.random.default_rng(5).normal(size=(4, 5, 5, 1)).astype(F)
    np.testing.assert_array_equal(a.forward(theta, X)[1], a.forward(theta, X.reshape(4, 25))[1])

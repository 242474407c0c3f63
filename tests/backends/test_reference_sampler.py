"""The NumPy reference sampler and the public sampling API (any backend)."""
from __future__ import annotations

import numpy as np
import pytest

import fastpoly
from fastpoly.backends.counting import count_keys
from fastpoly.backends.reference import sample_keys_reference
from fastpoly.keys import pack_bits, unpack_bits

ARCHS = {
    "7-40-40-1": fastpoly.MLP(7, (40, 40)),
    "perceptron": fastpoly.MLP(5, ()),
    "deep-tanh": fastpoly.MLP(4, (6, 5, 3), activation="tanh"),
    "uniform-nobias": fastpoly.MLP(6, (9,), weights="uniform", bias=False),
    "fanin-bias": fastpoly.MLP(3, (4, 4), bias_scaling="fan_in", sigma_b=2.0, activation="sign"),
    "erf": fastpoly.MLP(3, (5,), activation="erf", sigma_w=2.0),
}


def _net_bits(arch, X, seed, index):
    net = arch.instantiate(seed, index)
    z = fastpoly.evaluate(net, X, backend="numpy", dtype=np.float32)
    return z > 0, z


@pytest.mark.parametrize("name", ARCHS, ids=str)
def test_keys_equal_instantiated_networks(name):
    arch = ARCHS[name]
    X = fastpoly.boolean_inputs(arch.n_inputs)
    plan = fastpoly.make_plan(arch, X, seed=11)
    b = sample_keys_reference(plan, 3, 9, margins=True)
    for row, i in enumerate(range(3, 9)):
        bits, z = _net_bits(arch, X, 11, i)
        np.testing.assert_array_equal(b.keys[row], pack_bits(bits))
        assert b.margins[row] == np.min(np.abs(z))


def test_dense_network_forward_by_hand():
    arch = fastpoly.MLP(3, (4,))
    net = arch.instantiate(5, 17)
    X = np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32)
    got = fastpoly.evaluate(net, X, backend="numpy", dtype=np.float32)
    W1, b1, W2, b2 = net.layers[0].W, net.layers[0].b, net.layers[1].W, net.layers[1].b
    h = np.maximum(X.astype(np.float64) @ W1.T.astype(np.float64) + b1, 0)
    want = h @ W2.T.astype(np.float64) + b2
    np.testing.assert_allclose(got, want[:, 0], rtol=1e-5, atol=1e-5)


def test_parameters_follow_documented_stream():
    arch = fastpoly.MLP(2, (3,), sigma_w=2.0, sigma_b=0.5)
    theta = arch.draw_params(9, [4])[0]
    z = fastpoly.stream.rng.stream_normals(9, [4], arch.n_params)[0]
    scale = np.array([2 / np.sqrt(2)] * 6 + [0.5] * 3 + [2 / np.sqrt(3)] * 3 + [0.5], np.float32)
    np.testing.assert_array_equal(theta, z * scale)
    net = arch.instantiate(9, 4)
    np.testing.assert_array_equal(net.layers[0].W.ravel(), theta[:6])
    np.testing.assert_array_equal(net.layers[0].b, theta[6:9])
    assert arch.n_params == 13


def test_sigma_b_zero_gives_f0_zero():
    arch = fastpoly.MLP(4, (8,), sigma_b=0.0)
    keys = fastpoly.sample_keys(arch, None, seed=1, start=0, stop=200, backend="numpy")
    assert np.all(keys[:, 0] & 1 == 0)


@pytest.mark.parametrize("batch_size", [1, 7, 64, 1000], ids=lambda b: f"batch={b}")
def test_batch_size_invariance(batch_size):
    arch = fastpoly.MLP(4, (6, 6))
    ref = fastpoly.sample(arch, None, 300, seed=5, backend="numpy", progress=False, batch_size=300)
    got = fastpoly.sample(arch, None, 300, seed=5, backend="numpy", progress=False, batch_size=batch_size)
    assert got == ref
    assert got.to_bytes() == ref.to_bytes()


def test_partition_and_merge_equal_single_run():
    arch = fastpoly.MLP(3, (5,))
    whole = fastpoly.sample(arch, None, 400, seed=2, backend="numpy", progress=False)
    a = fastpoly.sample(arch, None, 150, seed=2, backend="numpy", progress=False)
    b = fastpoly.sample(arch, None, 250, seed=2, start=150, backend="numpy", progress=False)
    assert b.merge(a) == whole
    assert a.merge(b).to_bytes() == whole.to_bytes()
    with pytest.raises(ValueError, match="overlap"):
        a.merge(a)
    other = fastpoly.sample(fastpoly.MLP(3, (6,)), None, 10, seed=2, backend="numpy", progress=False)
    with pytest.raises(ValueError, match="incompatible arch"):
        a.merge(other)


def test_counts_match_per_sample_keys_and_first_index():
    arch = fastpoly.MLP(3, (4,))
    keys = fastpoly.sample_keys(arch, None, seed=8, start=0, stop=500, backend="numpy")
    c = fastpoly.sample(arch, None, 500, seed=8, backend="numpy", progress=False, batch_size=37)
    assert c.counts.sum() == 500 == c.n_samples == c.n_accepted
    for k, n, f in zip(c.keys, c.counts, c.first_index):
        hits = np.flatnonzero(np.all(keys == k, axis=1))
        assert hits.size == n and hits[0] == f
    # sorted as big integers
    vals = [int(k[0]) for k in c.keys]
    assert vals == sorted(vals)


def test_train_rejection_semantics():
    arch = fastpoly.MLP(4, (8,))
    X = fastpoly.boolean_inputs(4)
    rows = np.array([0, 3, 9, 15])
    labels = np.array([0, 1, 1, 0], np.uint8)
    keys_all = fastpoly.sample_keys(arch, X, seed=4, start=0, stop=2000, backend="numpy")
    bits = unpack_bits(keys_all, 16).astype(bool)
    acc_want = np.all(bits[:, rows] == labels.astype(bool), axis=1)
    keys, acc = fastpoly.sample_keys(arch, X, seed=4, start=0, stop=2000, backend="numpy", train=(rows, labels))
    np.testing.assert_array_equal(acc, acc_want)
    test_rows = np.setdiff1d(np.arange(16), rows)
    np.testing.assert_array_equal(keys, pack_bits(bits[:, test_rows]))
    c = fastpoly.sample(arch, X, 2000, seed=4, backend="numpy", train=(rows, labels), progress=False)
    assert c.n_samples == 2000 and c.n_accepted == acc_want.sum() > 0
    k, n, f = count_keys(keys[acc], np.flatnonzero(acc).astype(np.uint64))
    np.testing.assert_array_equal(c.keys, k)
    np.testing.assert_array_equal(c.counts, n)
    np.testing.assert_array_equal(c.first_index, f)
    assert c.n_key_bits == 12


def test_non_boolean_inputs_and_many_words():
    X = np.random.default_rng(3).standard_normal((150, 2))
    c = fastpoly.sample(fastpoly.MLP(2, (5,)), X, 50, seed=1, backend="numpy", progress=False)
    assert c.n_words == 3 and c.n_key_bits == 150
    assert np.all(c.keys[:, 2] >> np.uint64(22) == 0)


def test_top_probability_and_intervals():
    c = fastpoly.sample("3-5-1", None, 400, seed=0, backend="numpy", progress=False)
    top = c.top(3)
    assert top[0]["count"] >= top[1]["count"] >= top[2]["count"]
    t = top[0]
    assert t["lower"] <= t["probability"] <= t["upper"]
    assert c.probability(t["key"]) == t["probability"]
    bits = fastpoly.keys.key_to_bits(fastpoly.keys.hex_to_key(t["key"], 8), 8)
    assert c.count(bits) == t["count"]
    assert c.count("ff") + c.count("00") <= 400
    p, lo, hi = c.probability(t["key"], confidence=0.95)
    assert lo < p < hi


def test_save_load_roundtrip_and_tamper(tmp_path):
    c = fastpoly.sample("3-4-1", None, 200, seed=1, backend="numpy", progress=False)
    path = tmp_path / "c.npz"
    c.save(path)
    assert fastpoly.FunctionCounts.load(path) == c
    data = path.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(fastpoly.CountsFileError):
        fastpoly.FunctionCounts.load(tmp_path / "trunc.npz")
    # flip one count byte inside the stored array: checksum must catch it
    i = data.find(b"counts.npy")
    j = data.find(b"\x93NUMPY", i) + 128
    bad = bytearray(data)
    bad[j] ^= 1
    (tmp_path / "bad.npz").write_bytes(bytes(bad))
    with pytest.raises(fastpoly.CountsFileError):
        fastpoly.FunctionCounts.load(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a counts file")
    with pytest.raises(fastpoly.CountsFileError):
        fastpoly.FunctionCounts.load(tmp_path / "junk.npz")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(n_samples=0), "n_samples"),
        (dict(n_samples=-5), "n_samples"),
        (dict(n_samples=2.5), "n_samples"),
        (dict(seed=-1), "seed"),
        (dict(seed=2**64), "seed"),
        (dict(X=np.zeros((8, 2))), "shape"),
        (dict(X=np.full((8, 3), np.nan)), "NaN"),
        (dict(X=np.full((8, 3), np.inf)), "NaN or infinite"),
        (dict(train=([0, 9], [0, 1])), "train indices"),
        (dict(train=([1, 1], [0, 1])), "duplicates"),
        (dict(train=([1, 2], [0, 2])), "labels"),
        (dict(train=([1, 2], [0])), "equal length"),
        (dict(train=(list(range(8)), [0] * 8)), "every row"),
        (dict(batch_size=0), "batch_size"),
        (dict(arch="3-0-1"), "widths"),
        (dict(arch="3-4-2"), "output width"),
        (dict(arch="abc"), "architecture"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_input_raises_value_error(kwargs, match):
    args = dict(arch="3-4-1", X=None, n_samples=10, seed=0, backend="numpy", progress=False)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fastpoly.sample(args.pop("arch"), args.pop("X"), **args)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(hidden=(0,)), "hidden width"),
        (dict(activation="swish"), "activation"),
        (dict(weights="cauchy"), "distribution"),
        (dict(sigma_w=-1), "sigma_w"),
        (dict(sigma_b=float("nan")), "sigma_b"),
        (dict(bias_scaling="sqrt"), "bias_scaling"),
        (dict(n_inputs=0), "n_inputs"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_architecture(kwargs, match):
    args = dict(n_inputs=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fastpoly.MLP(**args)


def test_boolean_inputs_convention():
    X = fastpoly.boolean_inputs(3)
    assert X.shape == (8, 3) and X.dtype == np.float32
    np.testing.assert_array_equal(X[6], [0, 1, 1])  # row i: x_j = (i >> j) & 1
    np.testing.assert_array_equal(fastpoly.boolean_inputs(3, centered=True)[6], [-1, 1, 1])
    with pytest.raises(ValueError):
        fastpoly.boolean_inputs(0)


def test_backend_table_errors():
    with pytest.raises(ValueError, match="valid backends: numpy, numba, cupy, auto"):
        fastpoly.get_backend("tpu")
    rep = fastpoly.backends()
    assert rep["numpy"] == {"available": True, "reason": ""}
    assert rep["auto"] in ("numpy", "numba", "cupy")
    for name in ("numba", "cupy"):
        if not rep[name]["available"]:
            assert rep[name]["reason"]
            with pytest.raises(fastpoly.BackendUnavailable, match=name):
                fastpoly.get_backend(name)


def test_network_serialisation(tmp_path):
    net = fastpoly.MLP(3, (4,)).instantiate(1, 2)
    back = fastpoly.Network.from_dict(net.to_dict())
    net.save(tmp_path / "n.npz")
    loaded = fastpoly.Network.load(tmp_path / "n.npz")
    X = fastpoly.boolean_inputs(3)
    for other in (back, loaded):
        np.testing.assert_array_equal(fastpoly.evaluate(net, X, backend="numpy"), fastpoly.evaluate(other, X, backend="numpy"))
    assert loaded.meta["index"] == 2

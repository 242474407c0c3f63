"""fastpoly.data: IDX and CIFAR-10 round trips, every refusal, the loaders' splits, binarisations and normalisations."""
from __future__ import annotations

import gzip
import math
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from fastpoly.data import DataError, load, read_cifar_batch, read_idx, write_cifar_batch, write_idx

IDX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
MNIST_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("dtype", IDX_DTYPES, ids=lambda d: np.dtype(d).name)
def test_idx_round_trip(tmp_path, dtype, gz):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    p = tmp_path / ("a.idx.gz" if gz else "a.idx")
    write_idx(p, a)
    raw = p.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == gz
    b = read_idx(p)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative and b.shape == a.shape
    np.testing.assert_array_equal(a, b)


def test_idx_header_is_big_endian(tmp_path):
    p = tmp_path / "l"
    write_idx(p, np.array([1, 2, 300], np.int16))
    assert p.read_bytes() == bytes([0, 0, 0x0B, 1, 0, 0, 0, 3, 0, 1, 0, 2, 1, 44])
    # a hand-written MNIST-style label file
    q = tmp_path / "m"
    q.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9]))
    np.testing.assert_array_equal(read_idx(q), np.array([7, 9], np.uint8))


@pytest.mark.parametrize("content, message", [
    (b"\x00\x00", "only 2 bytes"),
    (bytes([1, 0, 8, 1, 0, 0, 0, 1, 5]), "magic"),
    (bytes([0, 0, 0x0A, 1, 0, 0, 0, 1, 5]), "unknown IDX type code 0x0A"),
    (bytes([0, 0, 8, 0]), "0 dimensions"),
    (bytes([0, 0, 8, 2, 0, 0, 0, 1]), "truncated IDX header"),
    (bytes([0, 0, 8, 1, 0, 0, 0, 3, 5, 6]), "truncated IDX data"),
    (bytes([0, 0, 8, 1, 0, 0, 0, 1, 5, 6]), "1 bytes after"),
    (gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 3, 5, 6, 7]))[:-6], "gzip"),
], ids=["short", "magic", "type", "ndim0", "header", "truncated", "trailing", "gzip-truncated"])
def test_idx_refusals(tmp_path, content, message):
    p = tmp_path / "bad"
    p.write_bytes(content)
    with pytest.raises(DataError, match=message) as e:
        read_idx(p)
    assert "\n" not in str(e.value) and str(p) in str(e.value)


def test_idx_missing_file_and_unwritable_dtype(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "nope")
    with pytest.raises(DataError, match="cannot hold dtype"):
        write_idx(tmp_path / "x", np.zeros(2, np.uint16))


def _mnist_dir(root, n_train=12, n_test=7, gz=(True, False, True, False), prefix="", labels=None, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    tri = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    tei = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    trl = (np.arange(n_train) % 10).astype(np.uint8) if labels is None else labels[0]
    tel = (np.arange(n_test)[::-1] % 10).astype(np.uint8) if labels is None else labels[1]
    for name, arr, z in zip(MNIST_NAMES, (tri, trl, tei, tel), gz):
        write_idx(os.path.join(root, prefix + name + (".gz" if z else "")), arr)
    return tri, trl, tei, tel


def test_mnist_official_split_and_preset(tmp_path):
    tri, trl, tei, tel = _mnist_dir(tmp_path)
    d = load("mnist", tmp_path, preset="nn-pacbayes", n_train=5, n_test=4, seed=3)
    tr = np.random.default_rng(3).permutation(12)[:5]
    np.testing.assert_array_equal(d.train_index, tr)
    np.testing.assert_array_equal(d.test_index, np.arange(4))  # the first test images, in order
    np.testing.assert_array_equal(d.X_train, (tri[tr].reshape(5, -1) / 255).astype(np.float32))
    np.testing.assert_array_equal(d.X_test, (tei[:4].reshape(4, -1) / 255).astype(np.float32))
    np.testing.assert_array_equal(d.y_train, (trl[tr] >= 5).astype(np.uint8))  # threshold: 5-9 -> 1
    np.testing.assert_array_equal(d.y_test, (tel[:4] >= 5).astype(np.uint8))
    assert d.X_train.dtype == np.float32 and not d.X_train.flags.writeable
    with pytest.raises(ValueError):
        d.X_train[0, 0] = 1
    m = d.meta
    assert m["dataset"] == "mnist" and m["preset"] == "nn-pacbayes"
    assert m["split"] == {**m["split"], "kind": "official", "seed": 3, "n_train": 5, "n_test": 4,
                          "test_order": "first"}
    assert m["transform"]["binarize"] == "threshold" and m["transform"]["normalize"] == "scale"
    import json
    json.dumps(m)  # fit for a counts file's meta
    # the preset's n_test default is 100: more than this tiny split holds
    with pytest.raises(DataError, match="official split has 12 / 7"):
        load("mnist", tmp_path, preset="nn-pacbayes", n_train=5)
    # same seed, same data; the digest covers the raw files
    d2 = load("mnist", tmp_path, preset="nn-pacbayes", n_train=5, n_test=4, seed=3)
    assert d2.meta == d.meta
    assert load("mnist", tmp_path, n_train=5, n_test=4, seed=4).meta["source_digest"] == m["source_digest"]


def test_fastpoly_data_env_and_subdirectories(tmp_path, monkeypatch):
    _mnist_dir(tmp_path / "fashion-mnist")
    _mnist_dir(tmp_path / "KMNIST" / "raw", seed=1)
    monkeypatch.setenv("FASTPOLY_DATA", str(tmp_path))
    assert load("fashion-mnist", n_test=2).X_test.shape == (2, 784)
    assert load("kmnist", n_train=3, n_test=2).meta["files"][0].startswith("train-images")
    monkeypatch.delenv("FASTPOLY_DATA")
    with pytest.raises(DataError, match="FASTPOLY_DATA"):
        load("mnist")


def test_missing_files_name_what_was_expected(tmp_path):
    _mnist_dir(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte")
    with pytest.raises(DataError) as e:
        load("mnist", tmp_path)
    msg = str(e.value)
    assert "t10k-labels-idx1-ubyte" in msg and str(tmp_path) in msg and "never downloads" in msg
    with pytest.raises(DataError, match="does not exist"):
        load("mnist", tmp_path / "nope")


def test_label_image_count_mismatch_and_range(tmp_path):
    _mnist_dir(tmp_path, labels=(np.zeros(11, np.uint8), np.zeros(7, np.uint8)))
    with pytest.raises(DataError, match="12 images but .* 11 labels"):
        load("mnist", tmp_path)
    _mnist_dir(tmp_path / "b", labels=(np.full(12, 10, np.uint8), np.zeros(7, np.uint8)))
    with pytest.raises(DataError, match=r"labels must lie in 0..9"):
        load("mnist", tmp_path / "b")
    write_idx(tmp_path / "b" / "train-labels-idx1-ubyte", np.zeros((12, 1), np.uint8))
    with pytest.raises(DataError, match="1-D"):
        load("mnist", tmp_path / "b")


def test_emnist_images_transposed_back(tmp_path):
    tri, trl, tei, tel = _mnist_dir(tmp_path, prefix="emnist-letters-",
                                    labels=(np.arange(12, dtype=np.uint8) % 26 + 1, np.full(7, 26, np.uint8)))
    d = load("emnist-letters", tmp_path, binarize=None, normalize=None, flatten=False, split="official",
             n_train=12, n_test=7)
    np.testing.assert_array_equal(d.X_test[..., 0], tei.transpose(0, 2, 1))
    assert d.meta["transform"]["emnist_transposed"]
    # threshold on 26 classes labelled 1..26: labels >= 1 + 13 -> 1
    b = load("emnist-letters", tmp_path, n_train=12, n_test=7)
    np.testing.assert_array_equal(b.y_test, np.ones(7, np.uint8))
    with pytest.raises(DataError, match="files not found.*emnist-digits-train-images"):
        load("emnist", tmp_path)


def _cifar_dir(root, n=4, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    batches = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        img = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        lab = rng.integers(0, 10, n)
        write_cifar_batch(os.path.join(root, name), img, lab)
        batches.append((img, lab))
    return batches


def test_cifar_round_trip_chw_to_hwc(tmp_path):
    img = np.zeros((1, 32, 32, 3), np.uint8)
    img[0, 1, 2, 0], img[0, 3, 4, 2] = 200, 100
    write_cifar_batch(tmp_path / "b", img, [7])
    with open(tmp_path / "b", "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")
    assert raw[b"data"][0, 0 * 1024 + 1 * 32 + 2] == 200 and raw[b"data"][0, 2 * 1024 + 3 * 32 + 4] == 100
    im, lab = read_cifar_batch(tmp_path / "b")
    np.testing.assert_array_equal(im, img)
    assert lab.tolist() == [7]
    batches = _cifar_dir(tmp_path / "cifar-10-batches-py")
    d = load("cifar10", tmp_path, binarize="oddeven", n_test=3)
    tr = np.random.default_rng(0).permutation(20)[:20]
    allimg = np.concatenate([b[0] for b in batches[:5]])
    alllab = np.concatenate([b[1] for b in batches[:5]])
    np.testing.assert_array_equal(d.X_train, (allimg[tr].reshape(20, -1) / 255).astype(np.float32))
    np.testing.assert_array_equal(d.y_train, (alllab[tr] % 2 == 0).astype(np.uint8))
    np.testing.assert_array_equal(d.X_test.reshape(3, 32, 32, 3), (batches[5][0][:3] / 255).astype(np.float32))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("obj, message", [
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, "1 labels for 2 images"),
    ({b"data": np.zeros((2, 3072), np.uint8)}, "no 'labels' entry"),
    ({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}, r"uint8 \(N, 3072\)"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 12]}, "0..9"),
    ([1, 2], "not a dict"),
    ({b"data": _Evil(), b"labels": []}, "refusing to load"),
], ids=["count", "keys", "shape", "range", "list", "code"])
def test_cifar_refusals(tmp_path, obj, message):
    p = tmp_path / "test_batch"
    with open(p, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)
    with pytest.raises(DataError, match=message) as e:
        read_cifar_batch(p)
    assert "\n" not in str(e.value)
    p.write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="not a CIFAR-10 batch"):
        read_cifar_batch(p)


def test_digits_matches_the_gp_example():
    pytest.importorskip("sklearn")
    from fastpoly.experiments.gp_digits import load_digits_binary

    d = load("digits", binarize="lt5", n_train=300, n_test=50, seed=2, dtype=np.float64)
    X, y, Xt, yt = load_digits_binary(300, 50, seed=2)
    np.testing.assert_array_equal(d.X_train, X)
    np.testing.assert_array_equal(d.y_train, y)
    np.testing.assert_array_equal(d.X_test, Xt)
    np.testing.assert_array_equal(d.y_test, yt)
    assert d.meta["split"]["kind"] == "pooled" and d.meta["transform"]["pixel_max"] == 16
    assert float(d.X_train.max()) == 1.0
    with pytest.raises(DataError, match="needs an official"):
        load("digits", preset="nn-pacbayes")
    empty = load("digits", n_test=0)
    assert empty.X_train.shape == (1797, 64) and empty.X_test.shape == (0, 64)
    with pytest.raises(DataError, match="at most 1797"):
        load("digits", n_train=1797, n_test=1)


@pytest.mark.parametrize("rule, expect", [
    ("threshold", lambda y: y >= 5), ("oddeven", lambda y: y % 2 == 0), ("lt3", lambda y: y < 3),
    ("ovr7", lambda y: y == 7), (lambda y: y > 8, lambda y: y > 8),
], ids=["threshold", "oddeven", "lt3", "ovr7", "callable"])
def test_binarisations(rule, expect):
    pytest.importorskip("sklearn")
    d = load("digits", binarize=rule, n_train=200, n_test=20)
    full = load("digits", binarize=None, n_train=200, n_test=20)
    np.testing.assert_array_equal(d.y_train, expect(full.y_train).astype(np.uint8))
    np.testing.assert_array_equal(d.y_test, expect(full.y_test).astype(np.uint8))
    assert d.y_train.dtype == np.uint8 and full.y_train.dtype == np.int64


@pytest.mark.parametrize("bad, message", [
    ({"binarize": "lt11"}, "k must lie"), ({"binarize": "nope"}, "unknown binarize"),
    ({"binarize": lambda y: y * 3}, "0/1 value"), ({"binarize": lambda y: 1 / 0}, "ZeroDivisionError"),
    ({"normalize": "minmax"}, "unknown normalize"), ({"split": "official"}, "no official"),
    ({"n_train": -1}, "n_train"), ({"seed": 1.5}, "seed"), ({"dtype": np.int32}, "dtype"),
    ({"preset": "keras"}, "unknown preset"), ({"test_order": "last"}, "test_order"),
], ids=["lt11", "rule", "callable-values", "callable-raises", "normalize", "split", "n_train", "seed", "dtype",
        "preset", "order"])
def test_bad_options(bad, message):
    pytest.importorskip("sklearn")
    with pytest.raises(DataError, match=message):
        load("digits", **{"n_train": 10, **bad})
    with pytest.raises(DataError, match="unknown dataset"):
        load("svhn")


@pytest.mark.parametrize("how", ["scale", "center", "standardize", None], ids=str)
def test_normalisations_from_train_statistics(tmp_path, how):
    tri, _, tei, _ = _mnist_dir(tmp_path)
    d = load("mnist", tmp_path, normalize=how, n_train=8, n_test=7, seed=1, dtype=np.float64)
    tr = np.random.default_rng(1).permutation(12)[:8]
    a = tri[tr].reshape(8, -1).astype(np.float64)
    b = tei.reshape(7, -1).astype(np.float64)
    if how is not None:
        a, b = a / 255, b / 255
    if how in ("center", "standardize"):
        mu = a.mean(0)
        a, b = a - mu, b - mu
        if how == "standardize":
            sd = a.std(0)
            sd[sd == 0] = 1
            a, b = a / sd, b / sd
    np.testing.assert_allclose(d.X_train, a, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d.X_test, b, rtol=1e-12, atol=1e-12)


def test_flatten_is_row_major_hwc_and_random_test_draw(tmp_path):
    _cifar_dir(tmp_path)
    a = load("cifar10", tmp_path, flatten=False, n_train=6, n_test=3, test_order="random", seed=5)
    b = load("cifar10", tmp_path, flatten=True, n_train=6, n_test=3, test_order="random", seed=5)
    assert a.X_train.shape == (6, 32, 32, 3)
    np.testing.assert_array_equal(b.X_train, a.X_train.reshape(6, -1))
    np.testing.assert_array_equal(a.test_index, np.random.default_rng([5, 1]).permutation(4)[:3])
    assert not math.isnan(float(b.X_train.sum()))


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "fastpoly", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_cli_data_info(tmp_path):
    _mnist_dir(tmp_path / "mnist")
    r = _cli("data", "info", "mnist", "--path", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "train images  12 x (28, 28, 1) uint8" in r.stdout and "source digest" in r.stdout
    r = _cli("data", "info", "kmnist", "--path", str(tmp_path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "t10k-images-idx3-ubyte" in r.stderr
    (tmp_path / "mnist" / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09\x01")
    r = _cli("data", "info", "mnist", "--path", str(tmp_path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "truncated IDX data" in r.stderr


def test_image_file_dimensions_refused(tmp_path):
    _mnist_dir(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((12, 784), np.uint8))
    with pytest.raises(DataError, match="3-D IDX array"):
        load("mnist", tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((12, 27, 28), np.uint8))
    with pytest.raises(DataError, match=r"test images are \(28, 28\)"):
        load("mnist", tmp_path)

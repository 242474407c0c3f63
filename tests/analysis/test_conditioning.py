"""Offline conditioning == online rejection; P_B(f|S), P(S), generalisation errors; to_frame."""
from __future__ import annotations

import numpy as np
import pytest

import fastpoly
from fastpoly import MLP
from fastpoly.analysis.conditioning import generalization_error, parse_target
from fastpoly.analysis.stats import clopper_pearson_interval, wilson_interval
from fastpoly.keys import unpack_bits

ARCH = MLP(4, (5,))
N = 6000


@pytest.fixture(scope="module")
def prior():
    return fastpoly.sample(ARCH, n_samples=N, seed=9, backend="numpy", progress=False)


TARGET = np.array([(i & 1) ^ ((i >> 2) & 1) for i in range(16)], np.uint8)  # x_0 XOR x_2


@pytest.mark.parametrize("rows", [[3], [0, 7, 12], [15, 2, 9, 4], [1, 2, 3, 4, 5, 6]])
def test_offline_equals_online_byte_for_byte(prior, rows):
    labels = TARGET[rows]
    online = fastpoly.sample(ARCH, n_samples=N, seed=9, backend="numpy", progress=False, train=(rows, labels))
    offline = prior.condition(rows, labels)
    assert offline == online
    assert offline.to_bytes() == online.to_bytes()
    # with the target stored on both sides, still identical
    on_t = fastpoly.sample(ARCH, n_samples=N, seed=9, backend="numpy", progress=False, train=(rows, labels),
                           annotations={"target": "".join(map(str, TARGET))})
    off_t = prior.condition(rows, target="".join(map(str, TARGET)))
    on_t.meta["target"] = off_t.meta["target"]  # same function, canonical hex form
    assert off_t.to_bytes() == on_t.to_bytes()


def test_conditioning_twice_equals_conditioning_once(prior):
    a = prior.condition([3, 8], TARGET[[3, 8]]).condition([11], TARGET[[11]])
    b = prior.condition([3, 8, 11], TARGET[[3, 8, 11]])
    assert a.to_bytes() == b.to_bytes()


def test_posterior_statistics(prior):
    rows = [0, 5, 10]
    post = prior.condition(rows, target=TARGET)
    s = post.posterior()
    assert s["n_samples"] == N and s["n_accepted"] == post.n_accepted == int(post.counts.sum())
    # marginal likelihood: fraction of prior samples consistent with S, with its interval
    bits = unpack_bits(prior.keys, 16)
    consistent = np.all(bits[:, rows] == TARGET[rows], axis=1)
    assert post.n_accepted == int(prior.counts[consistent].sum())
    assert s["p_S"] == post.n_accepted / N
    lo, hi = wilson_interval(post.n_accepted, N)
    assert s["p_S_interval"] == (float(lo), float(hi))
    lo_cp, hi_cp = clopper_pearson_interval(post.n_accepted, N)
    assert post.posterior(method="clopper-pearson")["p_S_interval"] == (float(lo_cp), float(hi_cp))
    assert lo < s["p_S"] < hi
    # P_B(f|S) sums to one, intervals contain the estimates
    assert s["probability"].sum() == pytest.approx(1.0)
    assert np.all(s["lower"] <= s["probability"]) and np.all(s["probability"] <= s["upper"])
    # generalisation error on the held-out rows, computed by hand
    full = unpack_bits(post.full_keys(), 16)
    test_rows = [r for r in range(16) if r not in rows]
    by_hand = np.mean(full[:, test_rows] != TARGET[test_rows], axis=1)
    np.testing.assert_allclose(s["error"], by_hand)
    assert s["mean_error"] == pytest.approx(float(np.dot(s["probability"], by_hand)))
    assert s["error_hist"].sum() == pytest.approx(1.0)
    assert s["error_values"].size == len(test_rows) + 1
    assert np.dot(s["error_values"], s["error_hist"]) == pytest.approx(s["mean_error"])


def test_bad_input(prior):
    with pytest.raises(ValueError, match="labels or a target"):
        prior.condition([1, 2])
    with pytest.raises(ValueError, match="duplicates"):
        prior.condition([1, 1], [0, 0])
    with pytest.raises(ValueError, match="0 or 1"):
        prior.condition([1], [2])
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        prior.condition([16], [0])
    with pytest.raises(ValueError, match="disagree"):
        prior.condition([0], [1], target=TARGET)
    with pytest.raises(ValueError, match="already"):
        prior.condition([0], [0]).condition([0], [0])
    with pytest.raises(ValueError, match="every"):
        prior.condition(list(range(16)), TARGET)
    with pytest.raises(ValueError, match="no target"):
        generalization_error(prior.condition([0], [0]))
    with pytest.raises(ValueError, match="one 0/1 value per row"):
        parse_target([0, 1, 0], 16)
    with pytest.raises(ValueError, match="interval method"):
        prior.posterior(target=TARGET, method="bayes")


def test_to_frame(prior):
    pd = pytest.importorskip("pandas")
    post = prior.condition([0, 5], target=TARGET)
    df = post.to_frame()
    assert isinstance(df, pd.DataFrame) and len(df) == post.n_distinct
    assert list(df.columns[:5]) == ["key", "count", "probability", "lower", "upper"]
    for col in ("klz", "entropy", "ones", "csr", "first_index", "error"):
        assert col in df.columns
    assert df["count"].is_monotonic_decreasing
    assert df["probability"].sum() == pytest.approx(1.0)


def test_to_frame_without_pandas_is_clear(prior, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_pandas(name, *a, **k):
        if name == "pandas":
            raise ImportError("no pandas")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(ImportError, match="pip install pandas"):
        prior.to_frame()

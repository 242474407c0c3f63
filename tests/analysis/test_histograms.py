"""Exact analysis by histograms (streaming) against the materialised analysis it replaced.

The ``_old_*`` functions are verbatim copies of fastpoly 0.1's in-memory analysis and figures
(every function's K_LZ, entropy, T, CSR and probability as full arrays); the streaming versions
must print byte-identical tables, write byte-identical PNGs and return the same values, on files
spanning many blocks; past ``max_points`` the figures must look the same.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

import fastpoly
from fastpoly.analysis import figures
from fastpoly.analysis.complexity import critical_sample_ratio, klz
from fastpoly.analysis.figures import _check_counts, _legend_outside, _title, upper_bound_fit
from fastpoly.analysis.histograms import (
    spearman_from_table,
    summarize,
    top_indices,
)
from fastpoly.analysis.stats import interval as binomial_interval
from fastpoly.analysis.wording import wording
from fastpoly.atomic import atomic_write_bytes
from fastpoly.cli import analysis as cli_analysis
from fastpoly.cli.main import main
from fastpoly.counts import FunctionCounts
from fastpoly.counts.table import write_table
from fastpoly.keys import sort_order
from fastpoly.plotting import pyplot, save_figure

T128 = "".join("1" if bin(i).count("1") % 2 else "0" for i in range(128))  # parity


def _old_analyze(counts, top=20, interval="wilson", order="rows", backend="auto"):
    """fastpoly 0.1's ``analyze`` (materialised arrays), the oracle (``backend``: of the new CLI, unused)."""
    c = counts
    out = {"n_samples": c.n_samples, "n_accepted": c.n_accepted, "n_distinct": c.n_distinct}
    if c.n_samples:
        lo, hi = binomial_interval(c.n_accepted, c.n_samples, 0.95, interval)
        out["p_S"] = (c.n_accepted / c.n_samples, float(lo), float(hi))
    counts_arr = np.asarray(c.counts)
    out["singletons"] = int(np.count_nonzero(counts_arr == 1))
    if c.n_distinct == 0:
        out["top"] = []
        return out
    cx = c.complexity(order)
    p, plo, phi = c.probabilities(0.95, interval)
    w = p
    out["mean_klz"] = float(np.dot(w, cx["klz"]))
    out["mean_entropy"] = float(np.dot(w, cx["entropy"]))
    out["mean_ones"] = float(np.dot(w, cx["ones"]))
    if "csr" in cx:
        out["mean_csr"] = float(np.dot(w, cx["csr"]))
    lp = np.log10(p)
    if c.n_distinct > 2 and np.ptp(cx["klz"]) > 0 and np.ptp(lp) > 0:
        from scipy.stats import spearmanr

        out["spearman_logp_klz"] = float(spearmanr(lp, cx["klz"]).statistic)
    out["bound"] = upper_bound_fit(cx["klz"], lp, counts_arr)
    out["bound_basis"] = _old_bound_support(cx["klz"], counts_arr)[0]
    err = None
    if c.meta.get("target") is not None:
        s = c.posterior(method=interval)
        err = s["error"]
        out["mean_error"] = s["mean_error"]
    order_idx = np.lexsort((np.arange(c.n_distinct), -counts_arr))[:max(0, int(top))]
    rows = []
    for i in order_idx:
        r = {
            "key": c.hex(int(i)), "count": int(counts_arr[i]), "probability": float(p[i]),
            "lower": float(plo[i]), "upper": float(phi[i]), "klz": float(cx["klz"][i]),
            "entropy": float(cx["entropy"][i]), "ones": int(cx["ones"][i]),
            "first_index": int(c.first_index[i]),
        }
        if "csr" in cx:
            r["csr"] = float(cx["csr"][i])
        if err is not None:
            r["error"] = float(err[i])
        rows.append(r)
    out["top"] = rows
    return out


def _old_bound_support(k, counts, min_count=5):
    """What upper_bound_fit fits (the functions seen >= min_count times, else all) and their K_LZ range."""
    well = np.asarray(counts) >= min_count
    if np.unique(k[well]).size >= 2:
        return f"envelope of functions seen >= {min_count} times", k[well].min(), k[well].max()
    return (f"envelope of all functions: fewer than two K_LZ values among functions seen >= {min_count} times",
            k.min(), k.max())


def _synthetic(template, n, rng, heavy=True):
    """Counts over 128-bit keys with the template's metadata: many ties, low- and high-K_LZ keys."""
    W = template.n_words
    nbits = template.n_key_bits
    keys = rng.integers(0, 2**63, size=(n, W), dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, size=(n, W),
                                                                                                  dtype=np.uint64)
    # simple functions: periodic patterns, constants, few ones
    k = n // 8
    keys[:k] = np.where(rng.random((k, 1)) < 0.5, np.uint64(0x5555555555555555), np.uint64(0x0F0F0F0F0F0F0F0F))
    keys[k: 2 * k] = np.uint64(1) << rng.integers(0, 64, size=(k, W), dtype=np.uint64)
    keys[2 * k] = 0
    keys[2 * k + 1] = np.uint64(0xFFFFFFFFFFFFFFFF)
    if nbits % 64:
        keys[:, -1] &= np.uint64((1 << (nbits % 64)) - 1)
    keys = np.unique(keys, axis=0)
    keys = keys[sort_order(keys)]
    m = keys.shape[0]
    counts = rng.geometric(0.3 if heavy else 0.7, size=m).astype(np.int64)
    counts[rng.integers(0, m, size=5)] = rng.integers(100, 5000, size=5)
    first = rng.permutation(m * 3)[:m].astype(np.uint64)
    meta = dict(template.meta)
    return FunctionCounts(keys, counts, first, int(counts.sum()) + 7, int(counts.sum()), meta)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("hist")
    X = fastpoly.boolean_inputs(7)
    prior = fastpoly.sample(fastpoly.MLP(7, [3]), X, 3000, seed=3, backend="numpy")
    post = fastpoly.sample(fastpoly.MLP(7, [3]), X, 3000, seed=3, backend="numpy")
    rng = np.random.default_rng(7)
    out = {}
    big = _synthetic(prior, 6000, rng)
    big.save(d / "big.npz")
    out["big"] = d / "big.npz"
    prior.save(d / "prior.npz")
    out["prior"] = d / "prior.npz"
    tgt = np.array([int(ch) for ch in T128])
    tgt[[5, 70, 101]] = 0
    post = big.condition([5, 70, 101], target=tgt)
    assert post.n_distinct > 300
    post.save(d / "post.npz")
    out["post"] = d / "post.npz"
    del post
    return out


@pytest.mark.parametrize("name", ["big", "prior", "post"])
@pytest.mark.parametrize("interval", ["wilson", "clopper-pearson"])
def test_analyze_table_byte_identical(files, name, interval, capsys, monkeypatch):
    path = str(files[name])
    capsys.readouterr()
    monkeypatch.setattr(cli_analysis, "analyze", functools.partial(_REAL_ANALYZE, block=997))
    assert main(["analyze", path, "--top", "25", "--interval", interval]) == 0
    new = capsys.readouterr().out
    monkeypatch.setattr(cli_analysis, "analyze", _old_analyze)
    assert main(["analyze", path, "--top", "25", "--interval", interval]) == 0
    old = capsys.readouterr().out
    assert new == old
    assert "Spearman" in new and "upper bound" in new


_REAL_ANALYZE = cli_analysis.analyze


@pytest.mark.parametrize("name", ["big", "post"])
@pytest.mark.parametrize("order", ["rows", "msb"])
def test_analyze_values_match(files, name, order):
    c = FunctionCounts.load(files[name], mmap=True)
    new = _REAL_ANALYZE(c, 30, "wilson", order, block=1000)
    old = _old_analyze(FunctionCounts.load(files[name]), 30, "wilson", order)
    assert new["top"] == old["top"]
    assert new["bound"] == old["bound"]
    assert new["singletons"] == old["singletons"]
    for k in ("mean_klz", "mean_entropy", "mean_ones", "mean_csr", "spearman_logp_klz", "mean_error"):
        if k in old:
            assert new[k] == pytest.approx(old[k], rel=1e-12, abs=1e-12), k


def test_summary_histograms_exact(files):
    c = FunctionCounts.load(files["big"], mmap=True)
    sm = summarize(c, block=333, top=0)
    full = FunctionCounts.load(files["big"])
    cnt = full.counts
    cx = full.complexity()
    v, m = sm.count_histogram()
    ev, em = np.unique(cnt, return_counts=True)
    assert np.array_equal(v, ev) and np.array_equal(m, em)
    # K_LZ of each (count, sum) cell matches the per-function values
    cc, ss, mm = sm.count_sum_table
    assert mm.sum() == c.n_distinct
    pairs = {}
    for a, b in zip(cnt, cx["klz"]):
        pairs[(int(a), float(b))] = pairs.get((int(a), float(b)), 0) + 1
    got = {(int(a), float(b)): int(k) for a, b, k in zip(cc, sm.klz_of(ss), mm)}
    assert got == pairs
    t = np.bincount(cx["ones"], weights=cnt.astype(np.float64), minlength=129)
    assert np.array_equal(sm.ones_weight, t)
    assert np.array_equal(sm.crit_weight, np.bincount(np.rint(cx["csr"] * 128).astype(int), weights=cnt, minlength=129))


def test_spearman_from_table_matches_scipy():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a = rng.integers(0, 6, 500)
    b = a + rng.integers(0, 4, 500)
    codes, mult = np.unique(a * 100 + b, return_counts=True)
    got = spearman_from_table(codes // 100, codes % 100, mult)
    assert got == pytest.approx(spearmanr(a, b).statistic, rel=1e-13)


@pytest.mark.parametrize("k", [0, 1, 5, 40])
def test_top_indices_streaming(k):
    rng = np.random.default_rng(k)
    c = rng.integers(1, 6, 5000)
    want = np.lexsort((np.arange(c.size), -c))[:k]
    assert np.array_equal(top_indices(c, k, block=97), want)


def test_klz_and_csr_unchanged_on_regression_keys():
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 2**64, size=(3000, 2), dtype=np.uint64)
    keys[:100, 1] = 0
    ref = klz(keys, 128, compiled=False)
    assert np.array_equal(klz(keys, 128), ref)
    bits = np.unpackbits(keys.astype("<u8").view(np.uint8).reshape(3000, -1), axis=1, bitorder="little").astype(bool)
    crit = np.zeros_like(bits)
    for j in range(7):
        crit |= bits != bits[:, np.arange(128) ^ (1 << j)]
    assert np.array_equal(critical_sample_ratio(keys, 128), crit.mean(axis=1))


# --- figures: fastpoly 0.1's code, verbatim (the oracle) ------------------------------------
def _old_plot_rank(counts, out="rank.png"):
    """Rank-frequency plot on log-log axes with Zipf's law ``P = 1/(rank ln 2^m)`` for reference.

    Parameters
    ----------
    counts : FunctionCounts
    out : path (.png or .pdf)

    Returns
    -------
    str
        The path written.
    """
    c = _check_counts(counts)
    plt = pyplot()
    p = np.sort(c.counts)[::-1] / max(c.n_accepted, 1)
    r = np.arange(1, p.size + 1)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    if p.size:
        ax.loglog(r, p, ".", ms=3, label="sampled functions")
        # Zipf's law normalised over all 2^m functions of m key bits (Valle-Perez et al. 2019):
        # P(r) = 1 / (r ln 2^m)
        m = max(int(c.n_key_bits), 1)
        ax.loglog(r, 1.0 / (r * m * np.log(2.0)), "--", lw=1, color="gray",
                  label=rf"Zipf $1/(\mathrm{{rank}}\,\ln 2^{{{m}}})$")
    # presentation of the current figures (worded from the estimator, legend outside the data)
    ax.set_xlabel("rank")
    ax.set_ylabel(wording(c.meta).quantity_tex)
    ax.set_title(_title(c), fontsize=9)
    if p.size:
        _legend_outside(ax)
    return save_figure(fig, out)


def _old_plot_complexity(counts, out="complexity.png", order="rows"):
    """P(f) against K_LZ (log scale), with the fitted upper-bound line.

    Parameters
    ----------
    counts : FunctionCounts
    out : path (.png or .pdf)
    order : {"rows", "msb"}
        String order for K_LZ (see :func:`fastpoly.analysis.complexity.klz`).

    Returns
    -------
    str
    """
    c = _check_counts(counts)
    wd = wording(c.meta)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.6))
    if c.n_distinct:
        k = c.complexity(order)["klz"]
        p = c.counts / c.n_accepted
        lp = np.log10(p)
        ax.scatter(k, p, s=4, alpha=0.5, lw=0, label="counted functions", zorder=3)
        a, b = upper_bound_fit(k, lp, c.counts)
        if np.isfinite(a):
            basis, k0, k1 = _old_bound_support(k, c.counts)
            xs = np.linspace(k0, k1, 50)
            ax.plot(xs, 10 ** (a + b * xs), "--", color="gray", lw=1, zorder=2,
                    label=rf"bound $\log_{{10}}P = {a:.2f} {b:+.3f}\,K$ ({basis})")
        ax.set_yscale("log")
        ax.axhline(1 / c.n_accepted, color="lightgray", lw=0.8, zorder=0, label=f"1/n (one {wd.accepted[:-1]})")
    ax.set_xlabel(r"$K_{LZ}(f)$")
    ax.set_ylabel(wd.quantity_tex)
    ax.set_title(_title(c), fontsize=9)
    if c.n_distinct:
        _legend_outside(ax)
    return save_figure(fig, out)


def _old_plot_ones(counts, out="ones.png"):
    """P(T): probability that a function has T ones, T = 0..n (log y axis).

    Returns
    -------
    str
    """
    c = _check_counts(counts)
    plt = pyplot()
    n = c.n_rows
    t = c.complexity()["ones"]
    pt = np.bincount(t, weights=c.counts.astype(np.float64), minlength=n + 1) / max(c.n_accepted, 1)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    nz = pt > 0
    ax.bar(np.arange(n + 1)[nz], pt[nz], width=1.0, color="C0")
    ax.set_yscale("log")
    ax.set_xlim(-1, n + 1)
    ax.set_xlabel("T (number of ones)")
    ax.set_ylabel(f"P(T) under {wording(c.meta).quantity}")
    ax.set_title(_title(c), fontsize=9)
    return save_figure(fig, out)


def _old_plot_error(counts, out="error.png", target=None):
    """Generalisation error: posterior histogram and P_B(f|S) against error.

    Needs a target function: stored by ``fastpoly sample --target`` /
    ``fastpoly condition`` / ``counts.condition(..., target=...)``, or passed here.
    For unconditioned counts with a target the "error" is over all rows.

    Returns
    -------
    str
    """
    c = _check_counts(counts)
    if target is None and c.meta.get("target") is None:
        raise ValueError(
            "the error plot needs a target function: use a conditioned run made with --target "
            "(fastpoly sample --train-size K --target T, or fastpoly condition COUNTS --target T --train-size K)"
        )
    s = c.posterior(target=target)
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.8))
    ev, eh = s["error_values"], s["error_hist"]
    nz = eh > 0
    w = (ev[1] - ev[0]) if ev.size > 1 else 0.02
    ax1.bar(ev[nz], eh[nz], width=w, color="C0")
    wd = wording(c.meta)
    ax1.axvline(s["mean_error"], color="C3", lw=1, label=f"mean {s['mean_error']:.3f}")
    ax1.set_xlabel("generalisation error (held-out rows)")
    ax1.set_ylabel(f"probability under {wd.quantity_tex}")
    _legend_outside(ax1)
    if c.n_distinct:
        yerr = np.vstack([s["probability"] - s["lower"], s["upper"] - s["probability"]])
        ax2.errorbar(s["error"], s["probability"], yerr=yerr, fmt=".", ms=3, lw=0.5, alpha=0.6)
        ax2.set_yscale("log")
    ax2.set_xlabel("generalisation error")
    ax2.set_ylabel(wd.quantity_tex)
    extra = ""
    if wd.rate_name and c.n_samples:
        lo, hi = s["p_S_interval"]
        extra = f"  {wd.rate_name}={s['p_S']:.3g} [{lo:.2g}, {hi:.2g}]"
    fig.suptitle(_title(c, extra), fontsize=9)
    return save_figure(fig, out)


CASES = [("rank", "big"), ("rank", "prior"), ("complexity", "big"), ("complexity", "prior"), ("ones", "big"),
         ("ones", "post"), ("error", "post")]


@pytest.mark.parametrize("kind,name", CASES)
def test_figures_byte_identical_on_small_files(files, kind, name, tmp_path):  # noqa: F811
    c = FunctionCounts.load(files[name], mmap=True)
    new = getattr(figures, f"plot_{kind}")(c, tmp_path / "new.png")
    old = globals()[f"_old_plot_{kind}"](FunctionCounts.load(files[name]), tmp_path / "old.png")
    assert open(new, "rb").read() == open(old, "rb").read()


@pytest.mark.parametrize("kind", ["rank", "complexity"])
def test_figures_past_max_points_look_the_same(files, kind, tmp_path):  # noqa: F811
    from matplotlib.image import imread

    c = FunctionCounts.load(files["big"], mmap=True)
    full = imread(getattr(figures, f"plot_{kind}")(c, tmp_path / "a.png"))
    few = imread(getattr(figures, f"plot_{kind}")(c, tmp_path / "b.png", max_points=10))
    assert full.shape == few.shape
    diff = np.abs(full - few).max(axis=-1)
    assert np.mean(diff > 0.1) < 0.002  # at most a few hundred pixels differ visibly


# --- the per-function table: fastpoly 0.1's writer, verbatim (the oracle) ------------------------
def _old_write_csv(c, path, interval, order):
    cx = c.complexity(order)
    p, lo, hi = c.probabilities(0.95, interval)
    err = c.generalization_error() if c.meta.get("target") is not None else None
    cols = ["key", "count", "probability", "lower", "upper", "klz", "entropy", "ones"]
    cols += ["csr"] if "csr" in cx else []
    cols += ["first_index"] + (["error"] if err is not None else [])
    lines = [",".join(cols)]
    idx = np.lexsort((np.arange(c.n_distinct), -np.asarray(c.counts)))
    for i in idx:
        vals = [c.hex(int(i)), str(int(c.counts[i])), repr(float(p[i])), repr(float(lo[i])), repr(float(hi[i])),
                repr(float(cx["klz"][i])), repr(float(cx["entropy"][i])), str(int(cx["ones"][i]))]
        if "csr" in cx:
            vals.append(repr(float(cx["csr"][i])))
        vals.append(str(int(c.first_index[i])))
        if err is not None:
            vals.append(repr(float(err[i])))
        lines.append(",".join(vals))
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


@pytest.mark.parametrize("name", ["big", "prior", "post"])
@pytest.mark.parametrize("rows_per_pass", [50, 1 << 20])
def test_table_byte_identical(files, name, rows_per_pass, tmp_path):
    c = FunctionCounts.load(files[name], mmap=True)
    n = write_table(c, tmp_path / "new.csv", "clopper-pearson", "msb", rows_per_pass=rows_per_pass, block=777)
    _old_write_csv(FunctionCounts.load(files[name]), tmp_path / "old.csv", "clopper-pearson", "msb")
    assert (tmp_path / "new.csv").read_bytes() == (tmp_path / "old.csv").read_bytes()
    assert n == c.n_distinct


def test_table_min_count_and_cli(files, tmp_path, capsys):
    c = FunctionCounts.load(files["big"])
    assert main(["analyze", str(files["big"]), "--table", str(tmp_path / "t.csv"), "--min-count", "3"]) == 0
    assert "seen >= 3 times" in capsys.readouterr().out
    lines = (tmp_path / "t.csv").read_text().splitlines()
    _old_write_csv(c, tmp_path / "all.csv", "wilson", "rows")
    full = (tmp_path / "all.csv").read_text().splitlines()
    want = [ln for ln in full[1:] if int(ln.split(",")[1]) >= 3]
    assert lines[0] == full[0] and lines[1:] == want and 0 < len(want) < c.n_distinct
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert main(["analyze", str(files["big"]), "--table", str(tmp_path / "x.csv"), "--min-count", "0"]) == 2


# --- the compiled, parallel tally of summarize ---------------------------------------------------
def _fields(sm):
    out = {}
    for k, v in vars(sm).items():
        if isinstance(v, tuple):
            out[k] = tuple((u.dtype.str, u.tobytes()) for u in v)
        elif isinstance(v, np.ndarray):
            out[k] = (v.dtype.str, v.tobytes())
        elif isinstance(v, dict):
            out[k] = {q: (u.dtype.str, u.tobytes()) for q, u in v.items()}
        else:
            out[k] = v
    return out


@pytest.mark.parametrize("name", ["big", "prior", "post"])
def test_blocked_parallel_tally_equals_one_block(files, name, monkeypatch):
    """Every field byte for byte: the compiled tally over many blocks, over one block, and the NumPy tally."""
    from fastpoly.analysis import histograms
    from fastpoly.backends.numba import tally

    c = FunctionCounts.load(files[name], mmap=True)
    one = _fields(summarize(c, block=1 << 30, keep_points=100_000))
    for block in (1, 97, 4096):
        assert _fields(summarize(c, block=block, keep_points=100_000)) == one, block
    real = tally.tally_block
    monkeypatch.setattr(tally, "tally_block", lambda *a, **k: real(*a, **dict(k, parts=7)))  # 7 row ranges per block
    assert _fields(summarize(c, block=2000, keep_points=100_000)) == one
    monkeypatch.setattr(histograms, "_tally_module", lambda: None)  # the NumPy tally (no Numba)
    assert _fields(summarize(c, block=1 << 30, keep_points=100_000)) == one
    assert _fields(summarize(c, block=333, keep_points=100_000)) == one


def test_tally_maxima_ties_go_to_the_earliest_row():
    from fastpoly.backends.numba.tally import tally_block

    rng = np.random.default_rng(3)
    K = 50_000
    cnt = rng.integers(1, 4, K)
    cnt[[10, 30_000, 49_999]] = 500  # equal maxima of class 2 in different parts
    cls = rng.integers(0, 5, K)
    cls[[10, 30_000, 49_999]] = 2
    ones = rng.integers(0, 9, K)
    for parts in (1, 2, 7, 64):
        r = tally_block(cnt, cls, 5, ones, 9, parts=parts)
        assert r["max_first"][2] == 10 and r["max_count"][2] == 500
        for k in range(5):
            sel = np.flatnonzero(cls == k)
            assert r["max_count"][k] == cnt[sel].max() and r["max_first"][k] == sel[np.argmax(cnt[sel])]
        assert np.array_equal(r["ones_w"], np.bincount(ones, weights=cnt, minlength=9).astype(np.int64))
        assert np.array_equal(np.flatnonzero(cnt >= 64), r["big"])
    with pytest.raises(ValueError, match="out of range"):
        tally_block(cnt, cls, 2, ones, 9)
    with pytest.raises(ValueError, match="out of range"):
        tally_block(cnt, cls, 5, ones - 1, 9)


def test_error_table_with_counts_above_the_test_rows(files):
    """(errors, count) pairs are exact also when counts exceed the number of test rows."""
    c = FunctionCounts.load(files["post"])
    cnt = c.counts.copy()
    cnt[:: 5] += 400  # > n_test = 125
    c = FunctionCounts(c.keys, cnt, c.first_index, c.n_samples + int(cnt.sum()), int(cnt.sum()), c.meta)
    from fastpoly.analysis.conditioning import _target_of

    tkey = fastpoly.keys.pack_bits(_target_of(c, None)[c.key_rows()].astype(bool))
    e = np.bitwise_count(c.keys ^ tkey[None, :]).sum(axis=1).astype(np.int64)
    codes, mult = np.unique(e * (1 << 32) + cnt, return_counts=True)
    for block in (50, 1 << 20):
        ev, ec, em = summarize(c, block=block).error_table
        assert np.array_equal(ev, codes >> 32) and np.array_equal(ec, codes & 0xFFFFFFFF)
        assert np.array_equal(em, mult)

"""``fastpoly experiment psgd-vs-gp`` at tiny sizes: files, consistency, the GP values, resume, bad input."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

pytest.importorskip("numba")
pytest.importorskip("sklearn")

from fastpoly.cli.main import main  # noqa: E402
from fastpoly.counts import FunctionCounts  # noqa: E402
from fastpoly.experiments import psgd_vs_gp as X  # noqa: E402

#: tiny: 40 train and 16 test digits, 24 runs of two optimizers, a few epochs after the fit
KW = dict(data="digits", n_train=40, n_test=16, n_runs=24, optimizers=("adam", "rmsprop"), min_count=1,
          epochs_after_fit=2, max_epochs=300, minibatch=10, backend="numba", n_boot=50, linalg="numpy")


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _stable(meta):
    """results.json without the wall-clock timings and resume bookkeeping."""
    m = json.loads(json.dumps(meta))
    m.pop("timings")
    for p in m["optimizers"].values():
        p.pop("seconds")
        p.pop("resumed_from")
        p.pop("read_back")
    for k in ("seconds_kernel", "seconds_posterior", "conditioning"):
        m["gp"].pop(k, None)
    return m


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    return out, X.psgd_vs_gp(out, **KW)


def test_files_and_counts_are_consistent(ref):
    out, meta = ref
    for name in X.OUTPUT_FILES:
        assert (out / name).stat().st_size > 0, name
    assert json.loads((out / "results.json").read_text())["n_runs"] == 24
    rows = _csv(out / "functions.csv")
    assert rows and set(rows[0]) == set(X._CSV_FIELDS)
    for o in ("adam", "rmsprop"):
        p = meta["optimizers"][o]
        c = FunctionCounts.load(out / "runs" / o / "counts.npz")
        assert c.n_samples == 24 and c.n_accepted == p["n_fitted"] > 0
        assert int(np.sum(c.counts)) == p["n_fitted"]
        mine = [r for r in rows if r["optimizer"] == o]
        # min_count 1: every function found is in the table; counts sum to the fitted runs, P_SGD to 1
        assert len(mine) == p["distinct"] == p["functions_min_count"]
        assert sum(int(r["count"]) for r in mine) == p["n_fitted"]
        assert math.isclose(sum(float(r["p_sgd"]) for r in mine), 1.0, rel_tol=1e-9)
        assert all(math.isclose(math.log(float(r["p_sgd"])), float(r["log_p_sgd"]), abs_tol=1e-5) for r in mine)
        mass = meta["stats"][o]["mass_by_errors"]
        assert math.isclose(sum(r["p_sgd_all"] for r in mass), 1.0, rel_tol=1e-9)
        assert sum(r["p_gp_evaluated"] for r in mass) <= 1.0 + 1e-9
        # test errors: the key's bits against the true test labels
        d = X.experiment_data("digits", None, 40, 16, 0)
        for r in mine:
            bits = [(int(r["key"], 16) >> i) & 1 for i in range(16)]
            assert int(r["test_errors"]) == sum(b != y for b, y in zip(bits, d.y_test))
    assert meta["gp"]["n_functions"] == len({r["key"] for r in rows})
    assert meta["data"]["dataset"] == "digits" and meta["data"]["source_digest"]
    assert meta["arch_spec"] == "64-40-40-1" and math.isclose(meta["arch"]["sigma_b"], 0.125)


def test_min_count_leaves_out_rare_functions(ref, tmp_path):
    _, meta1 = ref
    meta = X.psgd_vs_gp(tmp_path, **dict(KW, min_count=2, optimizers=("adam",)))
    rows = _csv(tmp_path / "functions.csv")
    p = meta["optimizers"]["adam"]
    assert p["n_fitted"] == meta1["optimizers"]["adam"]["n_fitted"]
    assert all(int(r["count"]) >= 2 for r in rows) and len(rows) == p["functions_min_count"]
    assert sum(int(r["count"]) for r in rows) == p["runs_min_count"] <= p["n_fitted"]
    assert math.isclose(sum(float(r["p_sgd"]) for r in rows), p["p_sgd_min_count"], rel_tol=1e-9)


def test_gp_values_match_a_direct_posterior_gp_call(ref):
    from fastpoly.gp.scale import posterior_gp

    out, meta = ref
    rows = _csv(out / "functions.csv")
    keys = sorted({r["key"] for r in rows})
    d = X.experiment_data("digits", None, 40, 16, 0)
    arch = X.experiment_arch("fcn", d.meta["image_shape"])
    post = posterior_gp(arch, d.X_train, d.y_train, d.X_test, keys, linalg="numpy")
    direct = dict(zip(keys, post.log_p))
    for r in rows:
        assert math.isclose(float(r["log_p_gp"]), direct[r["key"]], rel_tol=1e-5, abs_tol=1e-5)
    assert math.isclose(meta["gp"]["log_p_S"], post.log_p_S, rel_tol=1e-9)


def test_resume_of_a_finished_run_gives_identical_results(ref):
    out, meta = ref
    before = {n: (out / n).read_bytes() for n in ("functions.csv",)}
    again = X.psgd_vs_gp(out, **dict(KW, resume=True))
    assert {n: (out / n).read_bytes() for n in before} == before
    assert _stable(again) == _stable(meta)


def test_interrupted_run_resumes_identically(ref, tmp_path, monkeypatch):
    import fastpoly.run.driver as driver

    _, meta = ref
    real = driver.local_batches
    calls = []

    def stop_in_second_optimizer(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        yield from real(*a, **k)

    monkeypatch.setattr(driver, "local_batches", stop_in_second_optimizer)
    with pytest.raises(KeyboardInterrupt):
        X.psgd_vs_gp(tmp_path, **KW)
    monkeypatch.setattr(driver, "local_batches", real)
    assert not (tmp_path / "results.json").exists()
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        X.psgd_vs_gp(tmp_path, **KW)
    got = X.psgd_vs_gp(tmp_path, **dict(KW, resume=True))
    assert _stable(got) == _stable(meta)
    assert (tmp_path / "functions.csv").read_bytes() == (ref[0] / "functions.csv").read_bytes()


def test_correlations_and_bootstrap():
    from scipy.stats import pearsonr, spearmanr

    rng = np.random.default_rng(1)
    x = rng.normal(size=30)
    y = x + 0.5 * rng.normal(size=30)
    st = X.correlations(x, y, n_boot=200, seed=3)
    assert math.isclose(st["pearson"], pearsonr(x, y)[0], rel_tol=1e-12)
    assert math.isclose(st["spearman"], spearmanr(x, y)[0], rel_tol=1e-12)
    assert st["pearson_ci"][0] < st["pearson"] < st["pearson_ci"][1]
    assert st == X.correlations(x, y, n_boot=200, seed=3)
    assert st["pearson_ci"] != X.correlations(x, y, n_boot=200, seed=4)["pearson_ci"]
    assert X.correlations(x[:2], y[:2])["pearson"] is None
    assert X.correlations(np.ones(5), y[:5])["spearman"] is None


def test_arch_presets_and_lr():
    assert X.experiment_arch("cnn", (8, 8, 1)).spec.startswith("8x8x1-c16k3-c16k3")
    a = X.experiment_arch("784-512-512-1", (28, 28, 1))
    assert a.n_inputs == 784 and math.isclose(a.sigma_b, 1 / 28)
    with pytest.raises(ValueError, match="inputs"):
        X.experiment_arch("10-5-1", (8, 8, 1))
    with pytest.raises(ValueError, match="images"):
        X.experiment_arch("4x16x1-c4k3-1", (8, 8, 1))
    assert X.parse_lr("sgd=0.05,adagrad=0.01", ["sgd", "adam", "adagrad"]) == {"sgd": 0.05, "adam": None,
                                                                               "adagrad": 0.01}
    assert X.parse_lr("0.1", ["sgd", "adam"]) == {"sgd": 0.1, "adam": 0.1}
    for bad in ("fast", "sgd=x", "rmsprop=0.1", "sgd"):
        with pytest.raises(ValueError, match="lr"):
            X.parse_lr(bad, ["sgd", "adam"])


@pytest.mark.parametrize("kw, match", [
    (dict(linalg="lapack"), "linalg"), (dict(gp_mode="both"), "gp mode"), (dict(n_runs=0), "runs"),
    (dict(min_count=0), "min_count"), (dict(max_functions=0), "max_functions"), (dict(optimizers=()), "optimizers"),
], ids=["linalg", "gp-mode", "runs", "min-count", "max-functions", "no-optimizer"])
def test_bad_options_fail_before_training(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        X.psgd_vs_gp(tmp_path / "o", **dict(KW, **kw))
    assert not (tmp_path / "o" / "runs").exists()


def test_cli_runs_and_refuses_an_existing_result(tmp_path, capsys):
    out = tmp_path / "o"
    args = ["experiment", "psgd-vs-gp", "--data", "digits", "--arch", "fcn", "--optimizer", "adam",
            "--train", "40", "--test", "16", "--runs", "24", "--min-count", "1", "--batch", "10",
            "--epochs-after-fit", "2", "--max-epochs", "300", "--bootstrap", "50", "--backend", "numba",
            "--linalg", "numpy", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    assert "Pearson r" in capsys.readouterr().out
    assert (out / "psgd_vs_gp.png").exists()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--resume" in err
    assert main([*args, "--resume"]) == 0


@pytest.mark.parametrize("extra, match", [
    (["--optimizer", "adam,nope"], "optimizers"),
    (["--optimizer", "adam,adam"], "repeat"),
    (["--data", "nosuch"], "nosuch"),
    (["--arch", "10-5-1"], "inputs"),
    (["--arch", "64-x-1"], "64-x-1"),
    (["--train", "5000"], "5000"),
    (["--lr", "adam=fast"], "lr"),
    (["--data", "mnist", "--data-path", "/nonexistent-folder"], "nonexistent-folder"),
], ids=["optimizer", "repeated", "data", "arch-inputs", "arch-syntax", "too-many", "lr", "missing-files"])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, extra, match):
    args = ["experiment", "psgd-vs-gp", "--train", "40", "--test", "16", "--runs", "2", "--out",
            str(tmp_path / "o"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err and "Traceback" not in err


@pytest.mark.parametrize("extra", [["--runs", "0"], ["--min-count", "x"]], ids=["runs-0", "min-count"])
def test_bad_counts_are_usage_errors(tmp_path, capsys, extra):
    assert main(["experiment", "psgd-vs-gp", "--out", str(tmp_path / "o"), *extra]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_mnist_script_on_small_idx_files(tmp_path):
    """bench/psgd_vs_gp_mnist.sh end to end on fake MNIST files (tiny network, CPU backends)."""
    import os
    import pathlib
    import subprocess
    import sys

    from fastpoly.data import write_idx

    rng = np.random.default_rng(0)
    data = tmp_path / "mnist"
    data.mkdir()
    for split, n in (("train", 60), ("t10k", 100)):
        write_idx(data / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(data / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8))
    root = pathlib.Path(__file__).resolve().parents[2]
    env = dict(os.environ, RUNS="3", M="20", ARCH="784-8-1", OPTIMIZERS="adam", BACKEND="numba", LINALG="numpy",
               MAX_FUNCTIONS="5",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    out = tmp_path / "out"
    r = subprocess.run(["bash", str(root / "bench" / "psgd_vs_gp_mnist.sh"), str(data), str(out)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:] + r.stdout[-2000:]
    meta = json.loads((out / "results.json").read_text())
    assert meta["data"]["dataset"] == "mnist" and meta["n_train"] == 20 and meta["n_test"] == 100
    assert math.isclose(meta["arch"]["sigma_b"], 1 / 28) and meta["optimizers"]["adam"]["recipe"]["batch_size"] == 128
    assert meta["data"]["split"]["test_order"] == "first" and meta["gp"]["max_functions"] == 5
    bad = subprocess.run(["bash", str(root / "bench" / "psgd_vs_gp_mnist.sh"), str(tmp_path / "none"), str(out)],
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "not a folder" in bad.stderr


@pytest.mark.slow
def test_cnn_preset_uses_the_conv_kernel(tmp_path):
    from fastpoly.gp.kernels import kernel
    from fastpoly.gp.scale import posterior_gp

    kw = dict(KW, arch="cnn", n_train=24, n_test=12, n_runs=6, optimizers=("adam",), lr=0.003)
    meta = X.psgd_vs_gp(tmp_path, **kw)
    assert meta["arch_spec"].startswith("8x8x1-c16k3-c16k3") and math.isclose(meta["sigma_b"], 0.125)
    rows = _csv(tmp_path / "functions.csv")
    assert sum(int(r["count"]) for r in rows) == meta["optimizers"]["adam"]["n_fitted"]
    d = X.experiment_data("digits", None, 24, 12, 0)
    arch = X.experiment_arch("cnn", d.meta["image_shape"])
    K = kernel(arch, np.vstack([d.X_train, d.X_test]).astype(np.float32))
    keys = [r["key"] for r in rows]
    post = posterior_gp(arch, d.X_train, d.y_train, d.X_test, keys, K=K, linalg="numpy")
    for r, lp in zip(rows, post.log_p):
        assert math.isclose(float(r["log_p_gp"]), lp, rel_tol=1e-5, abs_tol=1e-5)


# --------------------------------------------------------------------------- the EP check (check=N)

@pytest.fixture(scope="module")
def checked(ref, tmp_path_factory):
    """The reference run re-read with ``check=3`` (same runs, the GP part recomputed with the check)."""
    import shutil

    out = tmp_path_factory.mktemp("checked")
    shutil.copytree(ref[0] / "runs", out / "runs")
    return out, X.psgd_vs_gp(out, **dict(KW, check=3, check_samples=4000, check_seed=5, resume=True))


def test_check_columns_and_block(ref, checked):
    out, meta = checked
    rows = _csv(out / "functions.csv")
    assert list(rows[0]) == list(X._CSV_FIELDS) + list(X._CHECK_FIELDS)
    c = meta["gp"]["check"]
    assert c["n"] == 3 and len(c["functions"]) == 3 and c["agrees"] + c["differs"] + c["unreliable"] == 3
    assert c["n_samples"] == 4000 and c["seed"] == 5 and "S part" in c["not_covered"]
    keys = {f["key"] for f in c["functions"]}
    for r in rows:  # the checked functions carry the columns (every optimizer's row), the others are empty
        if r["key"] in keys:
            assert r["check"] in ("agrees", "differs", "unreliable") and float(r["check_tilting_ess"]) > 0
            assert math.isclose(float(r["log_p_gp"]) - float(r["check_ep_shared"]),
                                float(r["check_joint_minus_shared"]), abs_tol=2e-6)
        else:
            assert all(r[f] == "" for f in X._CHECK_FIELDS)
    # the check does not change any other number
    base = _csv(ref[0] / "functions.csv")
    assert [{f: r[f] for f in X._CSV_FIELDS} for r in rows] == base
    text = (out / "summary.txt").read_text()
    assert "EP check on the 3 most frequent" in text and "does NOT cover" in text and "S part of EP" in text


def test_check_matches_direct_calls(checked):
    from fastpoly.gp.scale import condition_ep, gaussian_orthants, kernel_blocked, posterior_gp

    out, meta = checked
    c = meta["gp"]["check"]
    d = X.experiment_data("digits", None, 40, 16, 0)
    arch = X.experiment_arch("fcn", d.meta["image_shape"])
    keys = [f["key"] for f in c["functions"]]
    # the most frequent functions: the first ones of the evaluation order (largest count over the optimizers)
    rows = _csv(out / "functions.csv")
    best = {}
    for r in rows:
        best[r["key"]] = max(best.get(r["key"], 0), int(r["count"]))
    order = sorted(best, key=lambda kk: (-best[kk], int(kk, 16).to_bytes(8, "little")))
    assert set(keys) == set(order[:3])
    K = kernel_blocked(arch, np.vstack([d.X_train, d.X_test]))
    m = d.X_train.shape[0]
    cond = condition_ep(K[:m, :m], d.y_train, linalg="numpy")
    mean, cov = cond.predictive(K[:m, m:], K[m:, m:])
    bits = np.array([[(int(kk, 16) >> i) & 1 for i in range(16)] for kk in keys], np.uint8)
    lp, _, diags = gaussian_orthants(mean, cov, bits, check=True, n_samples=4000, seed=5)
    joint = posterior_gp(arch, d.X_train, d.y_train, d.X_test, keys, K=K, linalg="numpy")
    for j, f in enumerate(c["functions"]):
        assert math.isclose(f["log_p_shared"], lp[j], rel_tol=1e-6, abs_tol=1e-6)
        assert f["tilting_log_p"] == diags[j]["tilting_log_p"] and f["tilting_ess"] == diags[j]["tilting_ess"]
        assert f["check"] == diags[j]["check"]
        assert math.isclose(f["joint_minus_shared"], joint.log_p[j] - lp[j], rel_tol=1e-5, abs_tol=1e-5)


def test_check_is_unreliable_when_tilting_has_few_samples(ref, tmp_path):
    import shutil

    shutil.copytree(ref[0] / "runs", tmp_path / "runs")
    meta = X.psgd_vs_gp(tmp_path, **dict(KW, check=2, check_samples=40, resume=True))
    c = meta["gp"]["check"]
    # 40 samples: the effective sample size is below tilting's floor of 50, so no verdict is claimed
    assert c["unreliable"] == 2 and c["agrees"] == c["differs"] == 0 and c["max_abs_diff"] is None
    assert all(f["check"].startswith("unreliable: effective sample size") and f["check_diff"] is None
               for f in c["functions"])
    rows = [r for r in _csv(tmp_path / "functions.csv") if r["check"]]
    assert rows and all(r["check"] == "unreliable" and r["check_diff"] == "" for r in rows)
    assert "2 unreliable" in (tmp_path / "summary.txt").read_text()


def test_check_resume_is_identical(checked):
    out, meta = checked
    before = {n: (out / n).read_bytes() for n in ("functions.csv", "summary.txt")}
    again = X.psgd_vs_gp(out, **dict(KW, check=3, check_samples=4000, check_seed=5, resume=True))
    assert {n: (out / n).read_bytes() for n in before} == before
    st = _stable(again)
    st["gp"].pop("seconds_check")
    ref_ = _stable(meta)
    ref_["gp"].pop("seconds_check")
    assert st == ref_


@pytest.mark.parametrize("value, match", [("-1", "--check"), ("x", "--check"), ("1.5", "--check")],
                         ids=["negative", "text", "fraction"])
def test_bad_check_is_one_line_exit_2(tmp_path, capsys, value, match):
    args = ["experiment", "psgd-vs-gp", "--train", "40", "--test", "16", "--runs", "2", "--out",
            str(tmp_path / "o"), "--check", value]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err and "Traceback" not in err
    assert not (tmp_path / "o" / "runs").exists()
    assert main([*args[:-2], "--check-samples", "1"]) == 2
    assert "--check-samples" in capsys.readouterr().err


def test_check_option_is_validated(tmp_path):
    for kw in (dict(check=-1), dict(check=True), dict(check_samples=1)):
        with pytest.raises(ValueError, match="check"):
            X.psgd_vs_gp(tmp_path / "o", **dict(KW, **kw))


def test_check_full_matches_tilting_of_both_orthants(ref, tmp_path):
    import shutil

    from fastpoly.gp.scale import kernel_blocked
    from fastpoly.gp.tilting import tilting_log_prob

    shutil.copytree(ref[0] / "runs", tmp_path / "runs")
    meta = X.psgd_vs_gp(tmp_path, **dict(KW, check=2, check_samples=3000, check_seed=7, check_full=True,
                                         resume=True))
    c = meta["gp"]["check"]
    rows = _csv(tmp_path / "functions.csv")
    assert list(rows[0]) == list(X._CSV_FIELDS) + list(X._CHECK_FIELDS) + list(X._CHECK_FULL_FIELDS)
    assert "(c) the whole log P_B^GP" in c["covers"] and c["not_covered"] == X.CHECK_FULL_NOTE
    d = X.experiment_data("digits", None, 40, 16, 0)
    arch = X.experiment_arch("fcn", d.meta["image_shape"])
    K = kernel_blocked(arch, np.vstack([d.X_train, d.X_test]))
    sS = np.where(np.asarray(d.y_train) == 1, 1.0, -1.0)
    tS = tilting_log_prob(K[:40, :40] * np.outer(sS, sS), n_samples=3000, seed=np.random.default_rng([7, 1]))
    assert c["full"]["tilting_log_p_S"] == tS.log_p and c["full"]["ep_log_p_S"] == meta["gp"]["log_p_S"]
    for j, f in enumerate(c["functions"]):
        bits = np.array([(int(f["key"], 16) >> i) & 1 for i in range(16)])
        s_all = np.concatenate([sS, np.where(bits == 1, 1.0, -1.0)])
        t = tilting_log_prob(K * np.outer(s_all, s_all), n_samples=3000, seed=np.random.default_rng([7, 2, j]))
        assert f["full_tilting"] == t.log_p - tS.log_p
        assert math.isclose(f["full_stderr"], math.hypot(t.stderr, tS.stderr))
        # m + |E| = 56 dimensions: tilting's effective sample size holds, so there is a verdict by the 5-se rule
        assert f["full_check"] in ("agrees", "differs") and f["full_diff"] == f["log_p_gp"] - f["full_tilting"]
        assert (f["full_check"] == "agrees") == (abs(f["full_diff"]) <= max(5 * f["full_stderr"], 0.01))
        row = next(r for r in rows if r["key"] == f["key"])
        assert row["check_full"] == f["full_check"] and math.isclose(float(row["check_full_tilting"]),
                                                                     f["full_tilting"], abs_tol=1e-6)
    assert "the whole log P_B^GP by tilting of both orthants" in (tmp_path / "summary.txt").read_text()
    # few samples: the effective sample size is below tilting's floor, and the check says so
    few = X.psgd_vs_gp(tmp_path, **dict(KW, check=2, check_samples=30, check_full=True, resume=True))
    assert all(f["full_check"] == "unreliable" and f["full_diff"] is None for f in few["gp"]["check"]["functions"])


def test_check_full_needs_check(tmp_path, capsys):
    with pytest.raises(ValueError, match="check_full needs check"):
        X.psgd_vs_gp(tmp_path / "o", **dict(KW, check_full=True))
    args = ["experiment", "psgd-vs-gp", "--train", "40", "--test", "16", "--runs", "2", "--out",
            str(tmp_path / "o"), "--check-full"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "check" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "runs").exists()

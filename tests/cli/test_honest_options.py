"""Every option works or is refused; targets are unambiguous; API entries validate up front (issue 23).

Defects 2, 3, 5, 9 and 10 of the issue, each with the issue's command (scaled down where the
original trains thousands of networks) and the annoyances about ignored options.
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import pytest

import fastpoly
from fastpoly.cli.main import build_parser, main
from fastpoly.keys import key_to_hex, pack_bits

T = "0011" * 32  # the anchor target of the issue (128 rows)


def one_line_error(capsys, rc, *words):
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in err and ": error: " in lines[0], err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def prior_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("opts") / "prior.npz"
    fastpoly.sample("3-4-1", None, 1000, backend="numpy", progress=False).save(p)
    return p


# --- defect 2: train ignores options ---------------------------------------------------------
def test_anchor_refuses_the_options_it_sets(tmp_path, capsys):
    out = tmp_path / "ign"
    line = one_line_error(capsys, main(["train", "--anchor", "32", "--runs", "200", "--optimizer", "adam", "--lr", "0.5",
                                        "--batch", "32", "--start", "1000", "--out", str(out)]),
                          "--anchor 32", "--optimizer", "--lr", "--batch", "--start")
    assert "drop them" in line
    assert not out.exists()
    for extra in (["--target", T], ["--train-size", "8"], ["--momentum", "0.9"], ["--fit-threshold", "0"],
                  ["7-20-1"]):
        one_line_error(capsys, main(["train", "--anchor", "32", "--runs", "2", "--out", str(out), *extra]), "--anchor")


def test_anchor_keeps_epochs_after_fit_zero_and_leak_options_need_the_anchor(capsys):
    from fastpoly.cli.sgd import check_train_options

    p = build_parser()
    a = p.parse_args(["train", "--anchor", "32", "--epochs-after-fit", "0"])
    check_train_options(a)
    assert a.epochs_after_fit == 0  # was silently made 1
    a = p.parse_args(["train", "--anchor", "32"])
    check_train_options(a)
    assert a.epochs_after_fit == 1 and a.workers == 400
    with pytest.raises(ValueError, match="--callback-leak applies only to the anchor"):
        check_train_options(p.parse_args(["train", "7-40-1", "--callback-leak"]))
    with pytest.raises(ValueError, match="--workers"):
        check_train_options(p.parse_args(["train", "--anchor", "32", "--workers", "8"]))


def test_train_count_errors_name_runs(tmp_path, capsys):
    one_line_error(capsys, main(["train", "3-4-1", "--runs", "x", "--out", str(tmp_path / "r")]), "--runs")


def test_anchor_target_and_target_given_twice_refused(capsys, tmp_path):
    one_line_error(capsys, main(["sample", "7-40-1", "--train", "anchor:32", "--target", T, "--samples", "5",
                                 "--out", str(tmp_path / "a")]), "brings its own target")


# --- defect 3: short 0/1 strings read as hex --------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["gp", "logp", "7-40-40-1", "--target", "0101", "--train-size", "32"],
    ["sample", "7-40-40-1", "--target", "0101", "--train-size", "32", "--samples", "10"],
    ["train", "7-40-40-1", "--target", "0101", "--train-size", "32", "--runs", "2"],
    ["gp", "posterior", "3-16-1", "--target", "01101001", "--train-size", "4", "--functions", "01"],
], ids=["gp-logp", "sample", "train", "gp-posterior-functions"])
def test_short_bit_string_refused(argv, tmp_path, capsys):
    out = ["--out", str(tmp_path / "o")] if argv[0] in ("sample", "train") else []
    line = one_line_error(capsys, main(argv + out), "0/1 string of exactly", "0x")
    assert "of 4 characters" in line or "of 2 characters" in line


def test_condition_short_target_refused(prior_file, tmp_path, capsys):
    one_line_error(capsys, main(["condition", str(prior_file), "--target", "0101", "--train-size", "2",
                                 "--out", str(tmp_path / "c.npz")]), "exactly 8 characters")


def test_api_compare_short_target_refused(prior_file):
    post = fastpoly.FunctionCounts.load(prior_file).condition([0, 3], target="01101001")
    with pytest.raises(ValueError, match="exactly 8 characters"):
        fastpoly.compare(post, post, target="0101")
    assert fastpoly.compare(post, post, target="0x96").errors is not None


def test_unambiguous_target_forms():
    from fastpoly.keys import parse_key_text

    bits = np.array([int(c) for c in T], bool)
    ref = pack_bits(bits)
    hexkey = key_to_hex(ref, 128)
    for text in (T, hexkey, "0x" + hexkey, "0x" + hexkey.lstrip("0"), hexkey.upper()):
        assert np.array_equal(parse_key_text(text, 128), ref), text
    for bad, why in (("0101", "0/1 string of 4"), ("ccc", "hex string of 3 digits"), ("0xzz", "not hexadecimal"),
                     ("0x1" + "0" * 32, "beyond the 128 rows"), ("", "got ''")):
        with pytest.raises(ValueError, match=why):
            parse_key_text(bad, 128, "--target")
    # a 0/1 string of the exact length is bits even where it would also be hex of the exact length
    assert np.array_equal(parse_key_text("1", 1), pack_bits([True]))
    assert np.array_equal(parse_key_text("0110", 16), parse_key_text("0x0110", 16))


# --- defect 5: train rows out of range --------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["sample", "7-40-40-1", "--train", "5,500", "--target", T, "--samples", "10"],
    ["train", "7-40-40-1", "--train", "1,200", "--target", T, "--runs", "2"],
], ids=["sample", "train"])
def test_train_rows_out_of_range(argv, tmp_path, capsys):
    out = tmp_path / "x"
    one_line_error(capsys, main(argv + ["--out", str(out)]), "--train rows must be in [0, 127]")
    assert not out.exists(), "a failed command leaves no empty --out folder"


def test_train_rows_repeated_or_all_rows(tmp_path, capsys):
    one_line_error(capsys, main(["sample", "3-4-1", "--train", "1,1", "--target", "01101001", "--samples", "5",
                                 "--out", str(tmp_path / "x")]), "more than once")
    one_line_error(capsys, main(["sample", "3-4-1", "--train", "0,1,2,3,4,5,6,7", "--target", "01101001",
                                 "--samples", "5", "--out", str(tmp_path / "x")]), "at least one test row")


# --- defect 9: unvalidated API inputs ---------------------------------------------------------
def test_orthant_validates_ep_options_and_numpy_scalars():
    from fastpoly.gp.orthants import orthant

    K = np.array([[1.0, 0.5, 0.2], [0.5, 1.0, 0.3], [0.2, 0.3, 1.0]])
    s = np.array([1, 0, 1])
    with pytest.raises(ValueError, match="max_iter must be an integer >= 1"):
        orthant(K, s, "ep", max_iter=0)
    with pytest.raises(ValueError, match="tol"):
        orthant(K, s, "ep", tol=-1.0)
    with pytest.raises(ValueError, match="unexpected options"):
        orthant(K, s, "ep", maxiter=3)
    a = orthant(K, s, "ep", jitter=np.float32(0.1))
    b = orthant(K, s, "ep", jitter=float(np.float32(0.1)))
    assert a.log_p == b.log_p
    assert orthant(K, s, "ep", max_iter=np.int64(50), damping=np.float64(0.9)).log_p < 0


def test_sample_sgd_anchor_refuses_unknown_options_before_training():
    t = time.perf_counter()
    with pytest.raises(ValueError, match=r"unexpected options \['start'\]"):
        fastpoly.sample_sgd_anchor(start=5, backend="numpy")
    assert time.perf_counter() - t < 5


def test_compare_validates_top_and_confidence(prior_file):
    c = fastpoly.FunctionCounts.load(prior_file)
    for kw, msg in (({"top": -5}, "top must be a positive integer"), ({"confidence": 1.5}, "confidence"),
                    ({"confidence": 0}, "confidence"), ({"names": "ab"}, "names")):
        with pytest.raises(ValueError, match=msg):
            fastpoly.compare(c, c, **kw)
    assert fastpoly.compare(c, c, confidence=np.float32(0.9)).n_common > 0


def test_kernel_overflow_refused_without_warnings():
    from fastpoly.gp.kernels import kernel

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="overflows float64"):
            kernel("2-8-1", np.full((3, 2), 1e200))
        assert np.all(np.isfinite(kernel("2-8-1", np.full((3, 2), 1e3))))


def test_pac_bayes_accepts_numpy_delta():
    from fastpoly.gp.bayes import pac_bayes_bound

    assert pac_bayes_bound(-5.0, 32, np.float32(0.01)) == pytest.approx(pac_bayes_bound(-5.0, 32, float(np.float32(0.01))))


@pytest.mark.parametrize("argv, msg", [
    (["gp", "logp", "3-16-1", "--target", "01101001", "--train-size", "3", "--delta", "0"], "--delta"),
    (["gp", "logp", "3-16-1", "--target", "01101001", "--train-size", "3", "--method", "ep", "--samples", "100"],
     "--samples does not apply to --method ep"),
    (["gp", "logp", "3-16-1", "--target", "01101001", "--train-size", "3", "--method", "exact"], "--method"),
    (["gp", "sample", "3-16-1", "--top", "-1"], "--top"),
    (["gp", "posterior", "3-16-1", "--target", "01101001", "--train-size", "3", "--functions", "00", "--top", "0"],
     "--top"),
], ids=["delta-0", "ep-samples", "method", "sample-top", "posterior-top"])
def test_gp_options_refused_before_the_work(argv, msg, tmp_path, capsys, monkeypatch):
    import fastpoly.gp.bayes as bayes
    import fastpoly.gp.sampling as sampling

    def boom(*a, **k):
        raise AssertionError("the work started before the options were checked")

    monkeypatch.setattr(bayes, "log_marginal", boom)
    monkeypatch.setattr(bayes, "posterior", boom)
    monkeypatch.setattr(sampling, "sample", boom)
    out = ["--out", str(tmp_path / "g")] if argv[1] == "sample" else []
    one_line_error(capsys, main(argv + out), msg)


# --- defect 10 and one overwrite policy -------------------------------------------------------
def test_merge_into_an_input_refused(tmp_path, capsys):
    a, b = tmp_path / "h1.npz", tmp_path / "h2.npz"
    fastpoly.sample("3-4-1", None, 300, backend="numpy", progress=False).save(a)
    fastpoly.sample("3-4-1", None, 300, backend="numpy", progress=False, start=300).save(b)
    before = a.read_bytes()
    one_line_error(capsys, main(["merge", str(a), str(b), "--out", str(a)]), "is also an input")
    one_line_error(capsys, main(["merge", str(a), str(b), "--out", str(tmp_path / "." / "h1.npz"), "--force"]),
                   "is also an input")
    assert a.read_bytes() == before
    out = tmp_path / "m.npz"
    assert main(["merge", str(a), str(b), "--out", str(out)]) == 0
    one_line_error(capsys, main(["merge", str(a), str(b), "--out", str(out)]), "exists", "--force")
    assert main(["merge", str(a), str(b), "--out", str(out), "--force"]) == 0


def test_condition_and_gp_kernel_need_force(prior_file, tmp_path, capsys):
    out = tmp_path / "c.npz"
    cond = ["condition", str(prior_file), "--target", "01101001", "--train-size", "2", "--out", str(out)]
    assert main(cond) == 0
    one_line_error(capsys, main(cond), "exists", "--force")
    assert main(cond + ["--force"]) == 0
    one_line_error(capsys, main(["condition", str(prior_file), "--target", "01101001", "--train-size", "2",
                                 "--out", str(prior_file), "--force"]), "is also an input")
    k = tmp_path / "k.npy"
    assert main(["gp", "kernel", "3-16-1", "--out", str(k)]) == 0
    one_line_error(capsys, main(["gp", "kernel", "3-16-1", "--out", str(k)]), "exists", "--force")
    assert main(["gp", "kernel", "3-16-1", "--out", str(k), "--force"]) == 0


def test_condition_refuses_two_train_sets(prior_file, tmp_path, capsys):
    one_line_error(capsys, main(["condition", str(prior_file), "--target", "01101001", "--train-size", "4",
                                 "--train-rows", "1,2", "--out", str(tmp_path / "c.npz")]), "not both")


def test_plot_one_overwrite_policy(prior_file, tmp_path, capsys, monkeypatch):
    out = tmp_path / "r.png"
    assert main(["plot", "rank", str(prior_file), "--out", str(out)]) == 0
    before = out.read_bytes()
    one_line_error(capsys, main(["plot", "rank", str(prior_file), "--out", str(out)]), "exists", "--force")
    assert out.read_bytes() == before
    assert main(["plot", "rank", str(prior_file), "--out", str(out), "--force"]) == 0
    one_line_error(capsys, main(["plot", "rank", str(prior_file), "--out", str(prior_file), "--force"]),
                   ".png or .pdf")  # an input is never a figure path
    monkeypatch.chdir(tmp_path)  # the default name (rank.png) follows the same rule
    assert main(["plot", "rank", str(prior_file)]) == 0
    one_line_error(capsys, main(["plot", "rank", str(prior_file)]), "exists", "--force")


# --- annoyances -----------------------------------------------------------------------------
def test_check_prints_a_confirmation(tmp_path, capsys):
    assert main(["sample", "3-4-1", "--samples", "100", "--backend", "numpy", "--check", "--no-plot", "--no-progress",
                 "--out", str(tmp_path / "s")]) == 0
    assert "check          the numpy backend is the reference itself" in capsys.readouterr().out


def test_check_with_dask_refused(tmp_path, capsys):
    one_line_error(capsys, main(["sample", "3-4-1", "--samples", "100", "--check", "--dask", "1",
                                 "--out", str(tmp_path / "s")]), "--check")


def test_failed_command_leaves_no_empty_out_folder_but_keeps_an_existing_one(tmp_path, capsys):
    # train checks its train set after claiming --out: the folder it created goes again
    argv = ["train", "3-4-1", "--runs", "2", "--train-size", "3", "--target", "0101", "--backend", "numpy"]
    new = tmp_path / "new"
    one_line_error(capsys, main(argv + ["--out", str(new)]), "--target")
    assert not new.exists()
    old = tmp_path / "old"
    old.mkdir()
    one_line_error(capsys, main(argv + ["--out", str(old)]), "--target")
    assert old.is_dir() and os.listdir(old) == []


def test_train_options_not_given_keep_their_defaults():
    from fastpoly.cli.options import apply_defaults
    from fastpoly.cli.sgd import SPEC, check_train_options

    a = build_parser().parse_args(["train", "7-40-1", "--train-size", "8", "--target", T])
    check_train_options(a)
    apply_defaults(a, SPEC)
    assert isinstance(a, argparse.Namespace)
    assert (a.optimizer, a.batch, a.start, a.epochs_after_fit, a.max_epochs, a.loss) == ("sgd", 8, 0, 0, 3000, "ce")


def test_condition_refuses_results_that_are_not_sampled_networks(tmp_path, capsys):
    from fastpoly.sgd import Recipe, sample_sgd

    X = fastpoly.boolean_inputs(3)
    res = sample_sgd("3-4-1", X, (np.array([0, 3]), np.array([0, 1])), n_runs=4, backend="numpy",
                     recipe=Recipe(lr=0.1, max_epochs=20))
    res.save(tmp_path / "psgd.npz")
    one_line_error(capsys, main(["condition", str(tmp_path / "psgd.npz"), "--target", "01101001", "--train-rows", "5",
                                 "--out", str(tmp_path / "c.npz")]), "condition rejects samples of a prior", "P_SGD")

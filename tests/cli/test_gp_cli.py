"""``fastpoly gp kernel|logp|posterior|sample``."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

import fastpoly
from fastpoly.cli.main import main

TARGET = "0011" * 32


def test_kernel_subcommand(tmp_path, capsys):
    out = tmp_path / "K.npy"
    assert main(["gp", "kernel", "7-40-40-1", "--out", str(out)]) == 0
    assert "128 x 128" in capsys.readouterr().out
    assert np.array_equal(np.load(out), fastpoly.gp.kernel("7-40-40-1"))


def test_logp_subcommand(capsys):
    assert main(["gp", "logp", "7-40-40-1", "--target", TARGET, "--train-size", "32", "--method", "ep"]) == 0
    out = capsys.readouterr().out
    assert "log P(S)" in out and "PAC-Bayes" in out


def test_sample_and_posterior_subcommands(tmp_path, capsys):
    assert main(["gp", "sample", "3-16-1", "--samples", "2e4", "--out", str(tmp_path / "prior")]) == 0
    prior = fastpoly.FunctionCounts.load(tmp_path / "prior" / "counts.npz")
    assert prior.n_samples == 20000 and prior.meta["arch"]["limit"] == "nngp"
    post = fastpoly.sample("3-16-1", None, 4000, seed=0, backend="numpy", progress=False,
                           train=(np.array([0, 2, 5]), np.array([0, 1, 1])))
    post.save(tmp_path / "post.npz")
    capsys.readouterr()
    assert main(["gp", "posterior", "--counts", str(tmp_path / "post.npz"), "--top", "3", "--samples", "5000",
                 "--out", str(tmp_path / "t.tsv")]) == 0
    out = capsys.readouterr().out
    assert "log P_B exact" in out and (tmp_path / "t.tsv").exists()
    assert main(["gp", "posterior", "3-16-1", "--target", "01100110", "--train-size", "4", "--functions",
                 "0000", "1111", "--method", "ep"]) == 0


def test_errors_are_one_line_exit_2(capsys):
    cases = [
        ["gp", "logp", "7-40-40-1", "--target", TARGET],
        ["gp", "logp", "7-40-40-1", "--target", TARGET, "--train-size", "32", "--method", "genz"],
        ["gp", "kernel", "7-40-40-1", "--activation", "tanh"],
        ["gp", "kernel", "7-40-40-1", "--inputs", "/nonexistent.npy"],
        ["gp", "sample", "7-40-40-1", "--backend", "cupy"],
        ["gp", "posterior", "7-40-40-1"],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("fastpoly gp: error:"), (argv, err)
    assert main(["gp"]) == 2


def test_cli_import_stays_light():
    code = ("import sys, fastpoly.cli.main; fastpoly.cli.main.build_parser(); "
            "print([m for m in ('scipy', 'numba', 'matplotlib') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert "scipy" not in r.stdout and "numba" not in r.stdout

"""The command line: the main job, identical files for any batch size, help texts, exit code 2 on bad input."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import fastpoly
from fastpoly.cli.main import build_parser, main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "fastpoly", *args], capture_output=True, text=True, timeout=300)


def test_sample_main_job_and_batch_size_invariance(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["sample", "5-8-8-1", "--samples", "3e2", "--backend", "numpy", "--out", str(a), "--no-progress"]) == 0
    out = capsys.readouterr().out
    for word in ("backend", "samples/s", "distinct", "P(f)", "95% interval", "ones"):
        assert word in out
    assert (a / "rank.png").stat().st_size > 1000
    assert main(["sample", "5-8-8-1", "--samples", "300", "--backend", "numpy", "--out", str(b),
                 "--batch-size", "17", "--no-progress", "--no-plot"]) == 0
    assert (a / "counts.npz").read_bytes() == (b / "counts.npz").read_bytes()
    c = fastpoly.FunctionCounts.load(a / "counts.npz")
    assert c == fastpoly.sample("5-8-8-1", None, 300, backend="numpy", progress=False)


def test_sample_conditioned(tmp_path, capsys):
    target = "01" * 16
    assert main(["sample", "5-8-1", "--samples", "400", "--backend", "numpy", "--out", str(tmp_path),
                 "--train-size", "4", "--target", target, "--no-progress", "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "P(S)" in out
    c = fastpoly.FunctionCounts.load(tmp_path / "counts.npz")
    assert c.n_key_bits == 28 and c.n_samples == 400 and 0 < c.n_accepted < 400
    rows = np.array(c.meta["train_rows"])
    np.testing.assert_array_equal(c.meta["train_labels"], rows % 2)
    # the hex form of the same target gives the same result
    hex_target = format(int(target[::-1], 2), "08x")
    assert main(["sample", "5-8-1", "--samples", "400", "--backend", "numpy", "--out", str(tmp_path / "h"),
                 "--train-size", "4", "--target", hex_target, "--no-progress", "--no-plot"]) == 0
    assert fastpoly.FunctionCounts.load(tmp_path / "h" / "counts.npz") == c


@pytest.mark.parametrize(
    "args,match",
    [
        (["sample", "7-40-40-1", "--samples", "0"], "--samples"),
        (["sample", "7-40-40-1", "--samples", "-3"], "--samples"),
        (["sample", "7-x-1"], "architecture"),
        (["sample", "7-0-1"], "widths"),
        (["sample", "3-4-1", "--activation", "swish"], "activation"),
        (["sample", "3-4-1", "--weights", "cauchy"], "distribution"),
        (["sample", "3-4-1", "--seed", "-1"], "seed"),
        (["sample", "3-4-1", "--backend", "tpu"], "choose from"),
        (["sample", "3-4-1", "--train-size", "2", "--target", "0101"], "target"),
        (["sample", "3-4-1", "--train-size", "2"], "both"),
        (["sample", "3-4-1", "--train-size", "9", "--target", "01010101"], "train-size"),
        (["plot", "rank"], "COUNTS_FILE"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_input_exit_code_2(args, match, capsys, tmp_path):
    rc = main(args + (["--out", str(tmp_path)] if args[0] == "sample" else []))
    assert rc == 2
    assert match in capsys.readouterr().err


def test_help_is_complete():
    r = run_cli("--help")
    assert r.returncode == 0
    for cmd in ("sample", "plot", "backends"):
        assert cmd in r.stdout
    r = run_cli("sample", "--help")
    assert r.returncode == 0
    for opt in ("--samples", "--seed", "--backend", "--sigma-w", "--sigma-b", "--activation",
                "--train-size", "--target", "--out", "--batch-size"):
        assert opt in r.stdout
    sub = build_parser()._subparsers._group_actions[0].choices
    for name, p in sub.items():
        assert p.description or p.format_help(), name


def test_argparse_errors_exit_2():
    r = run_cli("sample")
    assert r.returncode == 2 and "arch" in r.stderr
    r = run_cli("nonsense")
    assert r.returncode == 2


def test_backends_command():
    r = run_cli("backends")
    assert r.returncode == 0 and "numpy" in r.stdout and "<- auto" in r.stdout

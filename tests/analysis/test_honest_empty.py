"""Empty results are results, and killed commands leave nothing behind (issue 23, defects 6, 7, 8)."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastpoly
from fastpoly.cli.main import main

T = "0011" * 32
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --- defect 7: no consistent function --------------------------------------------------------
@pytest.fixture(scope="module")
def prior_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("empty") / "prior.npz"
    fastpoly.sample("3-4-1", None, 2000, backend="numpy", progress=False).save(p)
    return p


def test_condition_with_no_consistent_function(prior_file, tmp_path, capsys):
    out = tmp_path / "c.npz"
    # parity on 7 of the 8 rows: no 3-4-1 network of 2000 computes it
    rc = main(["condition", str(prior_file), "--target", "01101001", "--train-rows", "0,1,2,3,4,5,6",
               "--out", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "none of the 2,000 samples fits the train set: P(S) <= " in cap.out and "posterior file is empty" in cap.out
    post = fastpoly.FunctionCounts.load(out)
    assert post.n_accepted == 0 and post.n_distinct == 0
    s = post.posterior()  # raised "cannot reshape array of size 0" before
    assert s["p_S"] == 0 and s["p_S_interval"][0] == 0 and 0 < s["p_S_interval"][1] < 0.01
    assert math.isnan(s["mean_error"]) and s["error"].size == 0
    assert main(["analyze", str(out), "--backend", "numpy"]) == 0
    a = capsys.readouterr().out
    assert "no sample fits the train set: P(S) <= " in a and "distinct       0 functions" in a


def test_posterior_of_an_empty_online_run():
    c = fastpoly.sample("3-4-1", None, 200, backend="numpy", progress=False,
                        train=(np.arange(7), np.array([0, 1, 1, 0, 1, 0, 0])), annotations={"target": "96"})
    assert c.n_accepted == 0
    s = c.posterior()
    assert s["p_S"] == 0 and s["error_hist"].shape == (2,)


# --- defect 8: Monte Carlo without a hit ------------------------------------------------------
def test_mc_zero_hits_gives_an_upper_bound(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rc = main(["gp", "logp", "7-40-40-1", "--target", T, "--train-size", "64", "--method", "mc",
                   "--samples", "10000"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "-inf" not in out and "+- inf" not in out
    ub = 1 - 0.05 ** (1 / 10000)
    assert f"P(S) < {ub:.3g}, 95% upper bound: 0 hits in 10,000 Monte Carlo samples" in out
    assert "PAC-Bayes      not available" in out and "1.0000" not in out
    assert "warning        no Monte Carlo sample of 10,000 fell in the orthant" in out


def test_orthant_zero_hits_result():
    from fastpoly.gp.orthants import orthant, zero_hit_upper_bound

    K = np.eye(30)
    r = orthant(K, np.ones(30), "mc", n_samples=1000, seed=0)  # P = 2**-30: no hit in 1000
    assert r.log_p == -math.inf and r.stderr is None
    assert r.diagnostics["upper_bound"] == pytest.approx(zero_hit_upper_bound(1000))
    assert zero_hit_upper_bound(1000) == pytest.approx(3 / 1000, rel=0.01)  # the rule of three
    from fastpoly.gp.bayes import posterior

    X = fastpoly.boolean_inputs(5)
    with pytest.raises(ValueError, match="needs an estimate of P"):
        posterior("5-8-1", X, (np.arange(30), (np.arange(30) % 2).astype(np.uint8)), ["0"], "mc", n_samples=100)


# --- defect 6: temporary files of killed commands ---------------------------------------------
def _killed_writer(folder):
    """A process killed with SIGKILL while writing through atomic_open (its temporary file stays)."""
    from fastpoly.atomic import TEMP_PATTERN

    code = ("import os, signal; from fastpoly.atomic import atomic_open; "
            f"cm = atomic_open({str(folder / 'out.npz')!r}, 'wb'); fh = cm.__enter__(); fh.write(b'x' * 1000); fh.flush(); "
            "os.kill(os.getpid(), signal.SIGKILL)")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    assert p.returncode == -9
    left = [f for f in os.listdir(folder) if f.startswith(".tmp-")]
    assert len(left) == 1 and TEMP_PATTERN.match(left[0])
    return left[0]


def test_temporary_names_carry_the_pid():
    from fastpoly.atomic import TEMP_PATTERN, temp_prefix

    pid = os.getpid()
    for kind in ("", "probe", "k", "c", "f"):
        m = TEMP_PATTERN.match(temp_prefix(kind) + "abc_123")
        assert m is not None and int(m.group(1)) == pid
    assert int(TEMP_PATTERN.match(f"merge-{pid}-3.run").group(2)) == pid
    for other in (".tmp-abcdefgh", "counts.npz", "run-3.run", ".fastpoly-lock", f"merge-{pid}-3.run.x"):
        assert TEMP_PATTERN.match(other) is None, other


def test_next_command_removes_a_killed_writers_files(prior_file, tmp_path, capsys):
    from fastpoly.atomic import TEMP_PATTERN, temp_prefix

    d = tmp_path / "out"
    d.mkdir()
    stale = _killed_writer(d)
    dead = int(TEMP_PATTERN.match(stale).group(1))
    (d / f"merge-{dead}-0.run").write_bytes(b"y" * 10)
    (d / f".tmp-k-{dead}-zz").write_bytes(b"z")
    live = d / f"{temp_prefix()}live"  # this (live) process's file stays
    live.write_bytes(b"")
    (d / "keep.npz").write_bytes(b"")
    assert main(["condition", str(prior_file), "--target", "01101001", "--train-size", "2",
                 "--out", str(d / "c.npz")]) == 0
    assert sorted(os.listdir(d)) == sorted(["c.npz", live.name, "keep.npz"])


def test_clean_command(tmp_path, capsys):
    from fastpoly.atomic import remove_stale_temporaries

    stale = _killed_writer(tmp_path)
    (tmp_path / "other.txt").write_text("x")
    capsys.readouterr()
    assert main(["clean", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert stale in out and "1 stale temporary file removed (1,000 bytes)" in out
    assert os.listdir(tmp_path) == ["other.txt"]
    assert remove_stale_temporaries(tmp_path) == []
    assert main(["clean", str(tmp_path / "nope")]) == 2

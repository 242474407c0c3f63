"""CLI and figures on small runs: fastpoly analyze, plot rank|complexity|ones|error, condition."""
from __future__ import annotations

import numpy as np
import pytest

import fastpoly
from fastpoly.analysis.figures import (
    plot_complexity,
    plot_error,
    plot_ones,
    plot_rank,
    upper_bound_fit,
)
from fastpoly.cli.main import main
from fastpoly.counts import FunctionCounts

T16 = "0110100110010110"  # parity of 4 bits (character i = row i)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    assert main(["sample", "4-5-1", "--samples", "3000", "--backend", "numpy", "--out", str(d / "prior"),
                 "--no-progress", "--no-plot", "--memory-budget", "2k"]) == 0
    assert main(["sample", "4-5-1", "--samples", "3000", "--backend", "numpy", "--out", str(d / "post"),
                 "--no-progress", "--no-plot", "--train-size", "3", "--target", T16]) == 0
    return d


def test_analyze_prints_summary_table(run, capsys, tmp_path):
    capsys.readouterr()
    assert main(["analyze", str(run / "prior" / "counts.npz"), "--top", "4", "--csv", str(tmp_path / "t.csv")]) == 0
    out = capsys.readouterr().out
    for s in ("checksum verified", "4-5-1", "samples        3,000", "distinct", "K_LZ", "upper bound",
              "Spearman", "CSR", "first index"):
        assert s in out, s
    table = [ln for ln in out.splitlines() if ln.strip()[:2] in ("1 ", "2 ", "3 ", "4 ")]
    assert len(table) == 4
    csv = (tmp_path / "t.csv").read_text().splitlines()
    c = fastpoly.FunctionCounts.load(run / "prior" / "counts.npz")
    assert len(csv) == c.n_distinct + 1 and csv[0].startswith("key,count,probability,lower,upper,klz")


def test_analyze_conditioned_and_offline_condition_cli(run, capsys, tmp_path):
    capsys.readouterr()
    assert main(["analyze", str(run / "post" / "counts.npz"), "--interval", "clopper-pearson"]) == 0
    out = capsys.readouterr().out
    assert "P(S) =" in out and "Clopper-Pearson" in out and "posterior mean generalisation error" in out
    assert main(["condition", str(run / "prior" / "counts.npz"), "--target", T16, "--train-size", "3",
                 "--out", str(tmp_path / "off.npz")]) == 0
    assert (tmp_path / "off.npz").read_bytes() == (run / "post" / "counts.npz").read_bytes()


@pytest.mark.parametrize("suffix", ["png", "pdf"])
def test_plots_via_cli(run, tmp_path, suffix):
    prior, post = str(run / "prior" / "counts.npz"), str(run / "post" / "counts.npz")
    for kind, src in (("rank", prior), ("complexity", prior), ("ones", prior), ("error", post)):
        out = tmp_path / f"{kind}.{suffix}"
        assert main(["plot", kind, src, "--out", str(out)]) == 0
        data = out.read_bytes()
        assert len(data) > 2000
        assert data[:4] == (b"\x89PNG" if suffix == "png" else b"%PDF")


def test_plot_errors_are_clear(run, tmp_path, capsys):
    assert main(["plot", "error", str(run / "prior" / "counts.npz"), "--out", str(tmp_path / "e.png")]) == 2
    assert "target" in capsys.readouterr().err
    with pytest.raises(ValueError, match=".png or .pdf"):
        plot_ones(FunctionCounts.load(run / "prior" / "counts.npz"), tmp_path / "x.jpg")
    # a prior with an explicit target: error over all rows
    p = plot_error(FunctionCounts.load(run / "prior" / "counts.npz"), tmp_path / "e2.png", target=T16)
    assert p.endswith("e2.png")


def test_upper_bound_fit_is_an_upper_bound():
    rng = np.random.default_rng(0)
    k = rng.uniform(5, 40, 500)
    lp = -0.1 * k - rng.exponential(1.0, 500)
    a, b = upper_bound_fit(k, lp)
    assert np.all(lp <= a + b * k + 1e-12)
    assert -0.2 < b < 0
    # rare functions (on the sampling floor) are left out of the fit when counts are given
    counts = np.where(k > 30, 1, 100)
    a2, b2 = upper_bound_fit(k, lp, counts, min_count=5)
    well = counts >= 5
    assert np.all(lp[well] <= a2 + b2 * k[well] + 1e-12)
    assert np.isnan(upper_bound_fit([7.0, 7.0], [-1.0, -2.0])[0])


def test_figure_functions_accept_objects(tmp_path):
    c = fastpoly.sample("3-4-1", n_samples=500, seed=1, backend="numpy", progress=False)
    for f in (plot_rank, plot_complexity, plot_ones):
        assert (tmp_path / f"{f.__name__}.png").exists() is False
        f(c, tmp_path / f"{f.__name__}.png")
        assert (tmp_path / f"{f.__name__}.png").stat().st_size > 1000


def test_cli_sample_checkpoint_and_bad_resume(tmp_path, capsys):
    d = tmp_path / "o"
    assert main(["sample", "3-4-1", "--samples", "800", "--backend", "numpy", "--out", str(d), "--no-progress",
                 "--no-plot", "--checkpoint", str(tmp_path / "ck"), "--checkpoint-every", "0"]) == 0
    ref = fastpoly.sample("3-4-1", n_samples=800, seed=0, backend="numpy", progress=False)
    assert (d / "counts.npz").read_bytes() == ref.to_bytes()
    # resuming a finished run just reports it
    assert main(["sample", "--resume", str(tmp_path / "ck"), "--no-progress"]) == 0
    assert main(["sample", "--resume", str(tmp_path / "nothing"), "--no-progress"]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert main(["sample", "--no-progress"]) == 2

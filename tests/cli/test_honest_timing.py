"""Honest timings and layouts (issue 23, annoyances): compilation reported apart and only when it
happened, rates without the final merge, progress for long steps, figures that do not clip or cover,
the compile report's arithmetic."""
from __future__ import annotations

import re

import numpy as np
import pytest

import fastpoly
from fastpoly.cli.main import main


def test_compilations_counts_what_numba_compiled(tmp_path, monkeypatch):
    pytest.importorskip("numba")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    from fastpoly.backends.numba import jit as J

    def twice(x):
        return 2 * x

    f = J.jit(twice, cache=False)
    n0 = J.compilations()
    assert f(3) == 6
    assert J.compilations() == n0 + 1
    assert f(4) == 8 and J.compilations() == n0 + 1  # the same signature: nothing compiled
    assert f(4.5) == 9.0 and J.compilations() == n0 + 2


def test_sample_reports_compiling_only_when_it_compiled(tmp_path, capsys):
    pytest.importorskip("numba")
    args = ["sample", "3-4-1", "--samples", "2000", "--backend", "numba", "--no-plot", "--no-progress"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0  # compiles or loads from the disk cache
    capsys.readouterr()
    assert main(args + ["--out", str(tmp_path / "b")]) == 0  # everything is loaded in this process now
    out = capsys.readouterr().out
    assert "\ncompiling " not in out
    c = fastpoly.sample("3-4-1", None, 500, backend="numba", progress=False)
    assert c.info["compiled"] is False


def test_train_numpy_has_no_compiling_line_and_rates_exclude_the_merge(tmp_path, capsys):
    assert main(["train", "3-4-1", "--train", "0,3,5", "--target", "01101001", "--runs", "12", "--lr", "0.1",
                 "--max-epochs", "50", "--backend", "numpy", "--out", str(tmp_path / "t"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "\ncompiling " not in out
    assert re.search(r"runs/s +[\d,]+ +\([\d.]+ s training and counting; [\d.]+ s in all\)", out), out


def test_counting_and_finish_times_are_parts_of_the_run():
    c = fastpoly.sample("3-4-1", None, 3000, backend="numpy", progress=False, batch_size=500)
    i = c.info
    assert 0 <= i["counting_s"] and 0 <= i["finish_s"]
    assert i["counting_s"] + i["finish_s"] <= i["elapsed_s"] + 1e-6


def test_digits_example_says_what_each_step_does():
    pytest.importorskip("sklearn")
    from fastpoly.experiments.gp_digits import digits_example

    lines = []
    digits_example(60, ("ep",), seed=1, log=lines.append)
    assert lines[0].startswith("loading 60 digits and computing the 60 x 60 NNGP kernel")
    assert any(x.startswith("log P(S) by ep over 60 train digits") for x in lines)
    assert re.match(r"  ep done in [\d.]+ s", lines[-1])


def test_compile_report_arithmetic(capsys):
    assert main(["compile", "x0*x1*x2 + x3**2", "--points", "100"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("hidden neurons"))
    m = re.search(r": (\d+) with output bias \((\d+) gate \+ (\d+) carry\), (\d+) bias-free(?: \(\+(\d+) constant\))?",
                  line)
    assert m, line
    hidden, gate, carry, free, const = (int(g) if g else 0 for g in m.groups())
    assert gate + carry == hidden and hidden + const == free  # "15 bias-free (10 gate + 4 carry)" before


def _boxes(fig):
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    return r


def test_gate_error_labels_inside_and_legend_outside(monkeypatch):
    import fastpoly.poly.plots as plots

    seen = {}

    def fake_save(fig, out, **kw):
        r = _boxes(fig)
        ax = fig.axes[0]
        axbox = ax.get_window_extent(r)
        seen["legend"] = ax.get_legend().get_window_extent(r)
        seen["texts"] = [t.get_window_extent(r) for t in ax.texts]
        seen["axes"] = axbox
        return str(out)

    monkeypatch.setattr(plots, "save_figure", fake_save)
    plots.plot_gate_error("g.png")
    ax = seen["axes"]
    assert seen["legend"].y1 <= ax.y0, "the legend sits below the axes, not over the curves"
    assert len(seen["texts"]) == 2
    for t in seen["texts"]:  # the auto-lambda labels are inside the axes (not clipped)
        assert ax.x0 <= t.x0 and t.x1 <= ax.x1 and ax.y0 <= t.y0 and t.y1 <= ax.y1


def test_complexity_points_above_the_bound_and_legend_outside(tmp_path, monkeypatch):
    import fastpoly.analysis.figures as figures

    seen = {}

    def fake_save(fig, out, **kw):
        r = _boxes(fig)
        ax = fig.axes[0]
        seen["legend"] = ax.get_legend().get_window_extent(r)
        seen["axes"] = ax.get_window_extent(r)
        seen["scatter_z"] = [c.get_zorder() for c in ax.collections]
        seen["line_z"] = [ln.get_zorder() for ln in ax.lines if "bound" in ln.get_label()]
        return str(out)

    monkeypatch.setattr(figures, "save_figure", fake_save)
    c = fastpoly.sample("3-4-1", None, 3000, backend="numpy", progress=False)
    figures.plot_complexity(c, "x.png", backend="numpy")
    assert seen["legend"].y1 <= seen["axes"].y0
    assert seen["line_z"] and min(seen["scatter_z"]) > max(seen["line_z"])


def test_rank_plot_of_a_posterior_is_labelled_p_b(monkeypatch):
    import fastpoly.analysis.figures as figures

    seen = {}
    monkeypatch.setattr(figures, "save_figure",
                        lambda fig, out, **kw: seen.update(y=fig.axes[0].get_ylabel(), t=fig.axes[0].get_title())
                        or str(out))
    post = fastpoly.sample("3-4-1", None, 2000, backend="numpy", progress=False,
                           train=(np.array([0, 3, 5]), np.array([0, 0, 1])))
    figures.plot_rank(post, "r.png")
    assert seen["y"] == r"$P_B(f\,|\,S)$" and "P_B(f|S)" in seen["t"] and "accepted samples" in seen["t"]


def test_gp_sample_reports_compiling_apart_and_only_when_it_compiled(tmp_path, capsys, monkeypatch):
    pytest.importorskip("numba")
    import fastpoly.cli.gp as cli_gp

    args = ["gp", "sample", "3-16-1", "--samples", "2000", "--backend", "numba", "--top", "0"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    assert main(args + ["--out", str(tmp_path / "b")]) == 0  # loaded in this process: nothing compiled
    assert "\ncompiling " not in capsys.readouterr().out
    calls = iter([0, 3])  # pretend the warm-up draw compiled three kernels
    monkeypatch.setattr(cli_gp, "numba_compilations", lambda: next(calls))
    assert main(args + ["--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\ncompiling +[\d.]+ s \(GP sampling kernels", out), out

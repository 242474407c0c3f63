"""``fastpoly compile`` and the two figures."""
from __future__ import annotations

import argparse

import pytest

from fastpoly.cli import poly as pcli


def _run(argv, capsys):
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    pcli.register(sub)
    args = p.parse_args(argv)
    try:
        rc = args.func(args)
    except ValueError as e:
        return 2, "", str(e)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_compile_command_prints_report_and_measured_error(capsys):
    rc, out, _ = _run(["compile", "x0*x1*x2 + x3**2", "--activation", "softplus", "--points", "500"], capsys)
    assert rc == 0
    assert "certified max error" in out and "measured max error" in out and "hidden neurons" in out


@pytest.mark.parametrize("extra", [["--construction", "shallow"], ["--dtype", "float32"], ["--centered"],
                                   ["--activation", "relu"], ["--depth", "2"], ["--lam", "0.01", "--bias", "paper"],
                                   ["--domain", "-2", "2"], ["--activation", "tanh", "--bias", "fourth"]])
def test_compile_options(extra, capsys):
    rc, out, _ = _run(["compile", "x0*x1*x2 + x3**2", "--points", "300"] + extra, capsys)
    assert rc == 0, out


@pytest.mark.parametrize("argv", [["compile", "sin(x0)"], ["compile", "x0", "--activation", "swish"],
                                  ["compile", "x0*x1", "--domain", "1", "0"], ["compile", "x0", "--lam", "big"],
                                  ["compile", "x0*x1", "--points", "0"]])
def test_compile_bad_input(argv, capsys):
    rc, _, err = _run(argv, capsys)
    assert rc == 2 and err


def test_main_cli_integration(capsys):
    main = pytest.importorskip("fastpoly.cli.main").main
    assert main(["compile", "x0*x1", "--points", "100"]) == 0
    assert "certified" in capsys.readouterr().out
    assert main(["compile", "1/x0"]) == 2


def test_plots(tmp_path):
    pytest.importorskip("matplotlib")
    from fastpoly.poly.plots import plot_gate_error, plot_shallow_vs_deep

    a = plot_gate_error(tmp_path / "g.png")
    b = plot_shallow_vs_deep(tmp_path / "s.pdf")
    assert (tmp_path / "g.png").stat().st_size > 10_000 and open(a, "rb").read(4) == b"\x89PNG"
    assert open(b, "rb").read(4) == b"%PDF"
    with pytest.raises(ValueError, match="png"):
        plot_gate_error(tmp_path / "g.svg")


def test_gate_error_curve_shows_both_slopes():
    import numpy as np

    from fastpoly.poly.plots import gate_error_curve

    lams = np.array([1e-1, 5e-2, 1e-7, 5e-8])
    err, bound = gate_error_curve(lams, "float64", n_points=300)
    assert np.all(err <= bound)
    assert 3.5 < err[0] / err[1] < 4.5        # truncation: lambda^2
    assert 2.5 < err[3] / err[2] < 6.0        # rounding: 1/lambda^2 (noisy)

"""Every result says what it is (issue 23, defect 1 and the figure annoyances).

One place words results (:mod:`fastpoly.analysis.wording`): the estimator of a counts file --
``meta["estimator"]`` where recorded, else inferred from today's metadata -- decides the quantity
(P(f), P_B(f|S), P_SGD(f|S), P^GP(f), P_B^GP(f|S)), whether P(S) applies, and every summary line,
table header, axis and title.  Checked here for each estimator, through the commands users run.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastpoly
from fastpoly.cli.main import main
from fastpoly.sgd import Recipe, sample_sgd

X3 = fastpoly.boolean_inputs(3)
ROWS = np.array([0, 3, 5])
TARGET = "01101001"  # parity of 3 bits, character i = row i
LABELS = np.array([int(TARGET[r]) for r in ROWS])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One small counts file per estimator (all on 3-4-1 / 3-16-1, NumPy backends)."""
    d = tmp_path_factory.mktemp("wording")
    out = {}
    fastpoly.sample("3-4-1", None, 2000, backend="numpy", progress=False).save(d / "prior.npz")
    out["prior"] = d / "prior.npz"
    post = fastpoly.sample("3-4-1", None, 4000, backend="numpy", progress=False, train=(ROWS, LABELS),
                           annotations={"target": "96"})
    post.save(d / "post.npz")
    out["posterior"] = d / "post.npz"
    res = sample_sgd("3-4-1", X3, (ROWS, LABELS), n_runs=60, backend="numpy",
                     recipe=Recipe(lr=0.1, max_epochs=200), annotations={"target": "96"})
    res.save(d / "psgd.npz")
    out["psgd"] = d / "psgd.npz"
    assert main(["gp", "sample", "3-16-1", "--samples", "3000", "--out", str(d / "gp"), "--top", "0"]) == 0
    out["gp_draws"] = d / "gp" / "counts.npz"
    from fastpoly.gp.bayes import posterior

    table = posterior("3-16-1", X3, (ROWS, LABELS), ["00", "1f", "0a"], n_samples=4000)
    table.to_counts().save(d / "gpp.npz")
    out["gp_posterior"] = d / "gpp.npz"
    return out


def test_estimator_inferred_from_legacy_meta_and_read_from_the_key(files):
    from fastpoly.analysis.wording import ESTIMATORS, estimator_of

    for est, path in files.items():
        meta = fastpoly.FunctionCounts.load(path).meta
        assert estimator_of(meta) == est
        assert estimator_of(dict(meta, estimator=est)) == est  # the key of the typed meta wins
    assert estimator_of({"estimator": "psgd", "train_rows": [1]}) == "psgd"
    assert estimator_of({"train_rows": [1, 2]}) == "posterior"
    assert estimator_of({}) == "prior"
    with pytest.raises(ValueError, match="unknown estimator"):
        estimator_of({"estimator": "mystery"})
    assert set(ESTIMATORS) == set(files)


@pytest.mark.parametrize("est, quantity, p_s", [
    ("prior", "P(f)", False), ("posterior", "P_B(f|S)", True), ("psgd", "P_SGD(f|S)", False),
    ("gp_draws", "P^GP(f)", False), ("gp_posterior", "P_B^GP(f|S)", False),
])
def test_wording_of_each_estimator(est, quantity, p_s):
    from fastpoly.analysis.wording import title, wording

    w = wording({"estimator": est})
    assert (w.quantity, w.p_s_applies) == (quantity, p_s)
    assert w.means_under == f"means under {quantity}"
    assert quantity in title({"estimator": est, "arch": {"widths": [3, 4, 1]}}, 10)
    if est == "psgd":
        assert w.rate_name == "fit rate" and "does not apply" in w.p_s_note and w.accepted == "fitted runs"
    if est == "gp_draws":
        assert "NNGP" in w.description and "infinite-width" in w.description


def _analyze(capsys, path):
    capsys.readouterr()
    assert main(["analyze", str(path), "--backend", "numpy", "--top", "3"]) == 0
    return capsys.readouterr().out


def test_analyze_of_a_train_result_says_p_sgd(files, capsys):
    # issue: "P(S) = 1", "means under P_B(f|S)", "posterior mean generalisation error" on a train result
    out = _analyze(capsys, files["psgd"])
    assert "P(S)" not in out.replace("P(S) does not apply", "")
    assert "P_B" not in out and "posterior mean" not in out
    assert "means under P_SGD(f|S)" in out and "fit rate" in out and "fitted runs" in out
    assert "mean generalisation error of the fitted runs" in out
    assert "P_SGD(f|S)" in out.split("rank")[1]  # the table's probability column


def test_analyze_of_each_other_estimator(files, capsys):
    post = _analyze(capsys, files["posterior"])
    assert "P(S) = " in post and "means under P_B(f|S)" in post and "posterior mean generalisation error" in post
    prior = _analyze(capsys, files["prior"])
    assert "means under P(f)" in prior and "P(S)" not in prior and "P_B" not in prior
    gp = _analyze(capsys, files["gp_draws"])
    assert "NNGP" in gp and "means under P^GP(f)" in gp and "P(S) =" not in gp


def test_gp_posterior_of_a_train_result_names_p_sgd(files, capsys):
    # issue: "P(S) exact 1" and a "log P_B exact" column filled with P_SGD values
    capsys.readouterr()
    assert main(["gp", "posterior", "--counts", str(files["psgd"]), "--top", "3", "--samples", "2000"]) == 0
    out = capsys.readouterr().out
    assert "P(S) exact" not in out and "log P_B exact" not in out
    assert "log P_SGD (file)" in out and "does not apply" in out
    assert main(["gp", "posterior", "--counts", str(files["posterior"]), "--top", "3", "--samples", "2000"]) == 0
    out = capsys.readouterr().out
    assert "P(S) exact" in out and "log P_B exact" in out
    assert main(["gp", "posterior", "--counts", str(files["gp_posterior"]), "--top", "3"]) == 2
    assert "pseudo-counts already" in capsys.readouterr().err


def _texts(fig):
    out = [fig._suptitle.get_text()] if fig._suptitle is not None else []
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        leg = ax.get_legend()
        if leg is not None:
            out += [t.get_text() for t in leg.get_texts()]
    return " | ".join(out)


@pytest.fixture()
def captured_figures(monkeypatch):
    """The figures the plot functions save (their texts), without writing images."""
    import fastpoly.analysis.figures as figures

    seen = []

    def fake_save(fig, out, **kw):
        seen.append(_texts(fig))
        return str(out)

    monkeypatch.setattr(figures, "save_figure", fake_save)
    return seen


@pytest.mark.parametrize("est, quantity_tex", [("prior", "$P(f)$"), ("posterior", r"$P_B(f\,|\,S)$"),
                                               ("psgd", "$P_{SGD}(f\\,|\\,S)$"), ("gp_draws", "$P^{GP}(f)$")])
def test_figure_axes_and_titles_name_the_estimator(files, captured_figures, est, quantity_tex):
    from fastpoly.analysis.figures import plot_complexity, plot_error, plot_rank
    from fastpoly.analysis.wording import wording

    c = fastpoly.FunctionCounts.load(files[est])
    plot_rank(c, "x.png")
    plot_complexity(c, "x.png", backend="numpy")
    if c.meta.get("target") is not None:
        plot_error(c, "x.png", backend="numpy")
    q = wording(c.meta).quantity
    for text in captured_figures:
        assert quantity_tex in text and q in text, text
    if est == "psgd":
        joined = " ".join(captured_figures)
        assert "P_B" not in joined.replace("P_B^", "") and "P(S)" not in joined and "fit rate" in joined


def test_complexity_bound_drawn_only_where_fitted(files, captured_figures, monkeypatch):
    """The bound line spans the K_LZ range it was fitted on, and the legend says what it was fitted to."""
    import fastpoly.analysis.figures as figures

    lines = []
    real = figures.pyplot

    def spy():
        plt = real()
        orig = plt.Axes.plot

        def plot(self, *a, **kw):
            lines.append((np.asarray(a[0]), kw.get("label", "")))
            return orig(self, *a, **kw)

        monkeypatch.setattr(plt.Axes, "plot", plot)
        return plt

    monkeypatch.setattr(figures, "pyplot", spy)
    c = fastpoly.FunctionCounts.load(files["prior"])
    figures.plot_complexity(c, "x.png", backend="numpy")
    from fastpoly.analysis.histograms import summarize

    basis, k0, k1 = summarize(c, top=0, errors=False, backend="numpy").bound_support()
    (xs, label), = [x for x in lines if "bound" in x[1]]
    assert xs.min() == pytest.approx(k0) and xs.max() == pytest.approx(k1)
    assert basis in label


def test_few_points_caveat():
    from fastpoly.analysis.wording import few_points_caveat

    assert few_points_caveat(2) == " (only 2 functions: not meaningful)"
    assert "rough guide" in few_points_caveat(5)
    assert few_points_caveat(10) == ""


def test_plot_compare_axes_title_and_table_agree(files, tmp_path, capsys):
    # issue: axes "P_a"/"P_b"; title "Pearson 0.783 over 29" (k = 1) vs table "Pearson 1.0000 over 2" (k = 2)
    out = tmp_path / "cmp.png"
    post = fastpoly.FunctionCounts.load(files["posterior"])
    psgd = fastpoly.FunctionCounts.load(files["psgd"])
    assert np.array_equal(post.key_rows(), psgd.key_rows())
    assert main(["plot", "compare", str(files["psgd"]), str(files["posterior"]), "--out", str(out)]) == 0
    txt = (tmp_path / "cmp.txt").read_text()
    from fastpoly.sgd.api import compare

    c = compare(psgd, post, k=2)
    assert f"over {c.n_common} functions seen >= 2 times in both: Pearson {c.pearson:.4f}" in txt
    assert txt.startswith("P_SGD(f|S): ") and "P_B(f|S): " in txt
    # a second run refuses to overwrite; --force replaces; an input as output is refused
    assert main(["plot", "compare", str(files["psgd"]), str(files["posterior"]), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["plot", "compare", str(files["psgd"]), str(files["posterior"]), "--out", str(out), "--force"]) == 0


def test_plot_compare_title_matches_table(files, monkeypatch):
    import fastpoly.plotting as plotting
    from fastpoly.sgd.api import compare, plot_compare

    seen = []
    monkeypatch.setattr(plotting, "save_figure", lambda fig, out, **kw: seen.append(_texts(fig)) or str(out))
    plot_compare(files["psgd"], files["posterior"], "x.png", k=2)
    c = compare(files["psgd"], files["posterior"], k=2)
    text = seen[0]
    assert f"Pearson log P = {c.pearson:.3f} over {c.n_common} functions seen >= 2 times in both" in text
    assert "P_SGD(f|S)" in text and "P_B(f|S)" in text and "P_a" not in text
    if c.n_common < 10:
        assert "only" in text


def test_sample_table_header_of_a_posterior(tmp_path, capsys):
    assert main(["sample", "3-4-1", "--samples", "500", "--backend", "numpy", "--train", "0,3,5", "--target",
                 TARGET, "--out", str(tmp_path / "s"), "--no-plot", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "P_B(f|S)" in out.split("rank")[1]


def test_wilson_lower_bound_of_zero_is_zero():
    from fastpoly.analysis.stats import wilson_interval

    for n in (3, 10, 1000, 2000, 123456789):  # printed 2e-19 / 0.9999999999999999 before
        lo, hi = wilson_interval(np.array([0, n]), n)
        assert lo[0] == 0.0 and hi[1] == 1.0, n
        assert 0 < lo[1] < 1 and 0 < hi[0] < 1

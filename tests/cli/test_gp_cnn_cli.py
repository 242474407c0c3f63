"""``fastpoly gp kernel|logp|posterior|sample`` with CNN architecture strings and image inputs (tiny sizes)."""
from __future__ import annotations

import numpy as np
import pytest

import fastpoly
from fastpoly.cli.main import main
from fastpoly.model.spec import parse

ARCH = "4x4x1-c2k3-1"
M = 10
TARGET = "0110100110"
TRAIN_SIZE = 4


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Ten 4x4x1 images as (m, H, W, C) and as flat rows, saved as .npy files."""
    X = np.random.default_rng(7).random((M, 4, 4, 1))
    d = tmp_path_factory.mktemp("cnn-gp")
    np.save(d / "img.npy", X)
    np.save(d / "flat.npy", X.reshape(M, -1))
    return X, str(d / "img.npy"), str(d / "flat.npy")


def _train_rows():
    """The train set the CLI picks (--train-size 4, --train-seed 0)."""
    rows = np.sort(np.random.default_rng(0).choice(M, TRAIN_SIZE, replace=False))
    return rows, np.array([int(TARGET[r]) for r in rows])


def test_kernel_of_images_and_flat_rows(images, tmp_path, capsys):
    X, img, flat = images
    K = fastpoly.gp.kernel(parse(ARCH), X)
    for i, path in enumerate((img, flat)):
        out = tmp_path / f"K{i}.npy"
        assert main(["gp", "kernel", ARCH, "--inputs", path, "--out", str(out)]) == 0
        assert np.array_equal(np.load(out), K)
    assert f"{M} x {M}" in capsys.readouterr().out


def test_logp_of_a_cnn(images, capsys):
    X, img, flat = images
    ref = fastpoly.gp.log_marginal(parse(ARCH), X, _train_rows(), "ep")
    for path in (img, flat):
        assert main(["gp", "logp", ARCH, "--inputs", path, "--target", TARGET, "--train-size", str(TRAIN_SIZE),
                     "--method", "ep"]) == 0
        out = capsys.readouterr().out
        assert f"log P(S)       {ref.log_p:.6f}" in out and "4x4x1-c2k3-1" in out and "PAC-Bayes" in out


def test_posterior_of_a_cnn(images, tmp_path, capsys):
    X, img, _ = images
    funcs = ["010101", "111111"]
    ref = fastpoly.gp.posterior(parse(ARCH), X, _train_rows(), funcs, "ep")
    out_file = tmp_path / "t.tsv"
    assert main(["gp", "posterior", ARCH, "--inputs", img, "--target", TARGET, "--train-size", str(TRAIN_SIZE),
                 "--functions", *funcs, "--method", "ep", "--out", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert f"{ref.log_p_S:.6f}" in out and out_file.exists()
    for i in range(len(ref)):
        assert f"{ref.log_p[i]:.4f}" in out


def test_sample_of_a_cnn(images, tmp_path, capsys):
    X, img, flat = images
    ref = fastpoly.gp.sample(parse(ARCH), X, 3000, seed=2, backend="numpy")
    for i, path in enumerate((img, flat)):
        d = tmp_path / f"prior{i}"
        assert main(["gp", "sample", ARCH, "--inputs", path, "--samples", "3000", "--seed", "2", "--backend", "numpy",
                     "--out", str(d)]) == 0
        got = fastpoly.FunctionCounts.load(d / "counts.npz")
        assert got == ref and got.meta["arch"]["limit"] == "nngp"
    assert "4x4x1-c2k3-1" in capsys.readouterr().out


def test_cnn_input_errors_are_one_line_exit_2(images, tmp_path, capsys):
    X, img, flat = images
    np.save(tmp_path / "bad_img.npy", np.zeros((3, 5, 5, 1)))
    np.save(tmp_path / "bad_flat.npy", np.zeros((3, 15)))
    cases = [
        ["gp", "kernel", ARCH],  # images needed
        ["gp", "logp", ARCH, "--target", TARGET, "--train-size", "4"],
        ["gp", "sample", ARCH, "--samples", "10", "--out", str(tmp_path / "o1")],
        ["gp", "kernel", ARCH, "--inputs", str(tmp_path / "bad_img.npy")],
        ["gp", "logp", ARCH, "--inputs", str(tmp_path / "bad_flat.npy"), "--target", "010", "--train-size", "1"],
        ["gp", "sample", ARCH, "--inputs", str(tmp_path / "bad_img.npy"), "--samples", "10",
         "--out", str(tmp_path / "o2")],
        ["gp", "logp", "4x4x1-c2k3-mp2-1", "--inputs", img, "--target", TARGET, "--train-size", "4"],  # no NNGP map
        ["gp", "kernel", "4x4x1-c2k3-zz-1", "--inputs", img],
        ["gp", "posterior", ARCH, "--inputs", img, "--activation", "tanh", "--target", TARGET, "--train-size", "4",
         "--functions", "010101"],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("fastpoly gp: error:"), (argv, err)


def test_sample_of_a_cnn_resumes_to_the_same_bytes(images, tmp_path, capsys, monkeypatch):
    """An interrupted CNN ``gp sample`` resumes from its checkpoint (the architecture rebuilt from its dict)."""
    from fastpoly.run import driver

    _, img, _ = images
    args = ["gp", "sample", ARCH, "--inputs", img, "--samples", "2000", "--backend", "numpy", "--no-progress",
            "--batch-size", "200"]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    real = driver.local_batches

    def stopping(be, plan, todo, bs, **kw):
        for i, item in enumerate(real(be, plan, todo, bs, **kw)):
            if i == 2:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(driver, "local_batches", stopping)
    assert main([*args, "--out", str(tmp_path / "part"), "--checkpoint", str(tmp_path / "ck"),
                 "--checkpoint-every", "0"]) == 130
    monkeypatch.setattr(driver, "local_batches", real)
    capsys.readouterr()
    assert main(["gp", "sample", "--resume", str(tmp_path / "ck"), "--no-progress"]) == 0
    assert "resumed        from draw 400" in capsys.readouterr().out
    whole = fastpoly.FunctionCounts.load(tmp_path / "whole" / "counts.npz")
    part = fastpoly.FunctionCounts.load(tmp_path / "part" / "counts.npz")
    assert part.to_bytes() == whole.to_bytes()

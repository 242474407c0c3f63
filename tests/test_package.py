"""Packaging: light import, the wheel's file list (kernels shipped, nothing untracked)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_is_light():
    code = (
        "import sys, fastpoly; fastpoly.MLP(3, (4,)); fastpoly.backends.__doc__;"
        "heavy = [m for m in ('numba', 'cupy', 'sympy', 'matplotlib', 'llvmlite', 'torch', 'dask', 'pandas')"
        " if m in sys.modules]; print(heavy)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def _tracked_files():
    try:
        r = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, timeout=60)
    except FileNotFoundError:
        pytest.skip("git is not installed")
    if r.returncode != 0:
        pytest.skip("not a git checkout")
    return [f for f in r.stdout.decode().split("\0") if f]


def test_wheel_ships_kernels_and_nothing_untracked(tmp_path):
    pytest.importorskip("hatchling", reason="hatchling (in the test extra) builds the wheel")
    files = _tracked_files()
    src = tmp_path / "src"
    for f in files:
        if not (ROOT / f).is_file():
            continue
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, src / f)
    # stray files that git ignores must not end up in the wheel
    (src / "kernels" / "scratch").mkdir(parents=True, exist_ok=True)
    (src / "kernels" / "scratch" / "stray.cu").write_text("// ignored scratch file\n")
    (src / "kernels" / "experiment.local.cu").write_text("// ignored local file\n")
    (src / "fastpoly" / "__pycache__").mkdir(exist_ok=True)
    (src / "fastpoly" / "__pycache__" / "junk.cpython-311.pyc").write_bytes(b"junk")
    out = tmp_path / "dist"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PIP_NO_INPUT": "1"},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = out.glob("fastpoly-*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    payload = {n for n in names if ".dist-info/" not in n}
    tracked_pkg = {f for f in files if f.startswith("fastpoly/")}
    tracked_kernels = {"fastpoly/" + f for f in files if f.startswith("kernels/")}
    assert payload == tracked_pkg | tracked_kernels
    assert "fastpoly/kernels/README.md" in payload
    assert not any("stray" in n or ".local." in n or "__pycache__" in n for n in names)


def test_kernel_sources_found_with_importlib_resources():
    from importlib import resources

    import fastpoly

    try:
        root = resources.files("fastpoly") / "kernels"
        found = root.is_dir()
    except (ModuleNotFoundError, FileNotFoundError):
        found = False
    if not found:  # source checkout: the kernels live at the repository's top level
        root = Path(fastpoly.__file__).resolve().parents[1] / "kernels"
    assert (root / "README.md").is_file()

"""``ci/gpu-check.sh``: what one device call brings back (at most 8 files), its exit status, per-test limits.

The whole ``--emulate`` dry run is CI's own step (``ci/test.sh``); these tests cover the check's
contract at small cost: a usage error, a check whose every step fails (still <= 8 files, the
log and the packed results, exit status 1), one emulated step that passes (exit status 0,
summary.json), and the per-test time limit of ``tests/conftest.py`` (``FASTPOLY_TEST_TIMEOUT``)
that lets pytest write its JUnit XML when a test hangs.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.cuda_emu

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "ci" / "gpu-check.sh"
MAX_FILES = 8  # what one device call brings back from $OUT


def _env(**kw):
    env = dict(os.environ)
    env.pop("FASTPOLY_REQUIRE_GPU", None)
    env["PYTHON"] = sys.executable
    env.update(kw)
    return env


def _files(out):
    return sorted(str(p.relative_to(out)) for p in Path(out).rglob("*") if p.is_file())


def _members(out):
    with tarfile.open(Path(out) / "results.tar.gz") as t:
        return {m.name.lstrip("./") for m in t.getmembers() if m.isfile()}


pytest.importorskip("numpy")
if shutil.which("bash") is None or shutil.which("timeout") is None:  # pragma: no cover
    pytest.skip("bash and coreutils' timeout are needed", allow_module_level=True)


def test_usage_error_exits_2(tmp_path):
    r = subprocess.run(["bash", str(CHECK)], capture_output=True, text=True, env=_env(), timeout=60)
    assert r.returncode == 2 and "usage" in r.stderr
    r = subprocess.run(["bash", str(CHECK), "--emulate", str(tmp_path / "a"), str(tmp_path / "b")],
                       capture_output=True, text=True, env=_env(), timeout=60)
    assert r.returncode == 2


def test_every_step_failing_still_reports_in_few_files(tmp_path):
    """A broken interpreter: every step fails fast; exit status 1, and still the log and the packed results."""
    out = tmp_path / "out"
    r = subprocess.run(["bash", str(CHECK), "--emulate", str(out)], capture_output=True, text=True,
                       env=_env(PYTHON="false"), timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    files = _files(out)
    assert len(files) <= MAX_FILES and {"gpu-check.log", "results.tar.gz"} <= set(files), files
    log = (out / "gpu-check.log").read_text()
    assert "FAILED: smoke" in log and "FAILED: GPU tests" in log and "done, status 1" in log
    members = _members(out)
    assert "steps.jsonl" in members and "gpu-check.log" in members
    with tarfile.open(out / "results.tar.gz") as t:
        steps = [json.loads(ln) for ln in t.extractfile("./steps.jsonl").read().decode().splitlines()]
    assert [s["step"] for s in steps][:3] == ["env", "smoke", "tests"]
    assert all(s["rc"] != 0 for s in steps)


def test_one_emulated_step_passes(tmp_path, emu):
    """The smoke step on the CPU emulation: every kernel compiled and launched, exit status 0, summary.json."""
    out = tmp_path / "out"
    r = subprocess.run(["bash", str(CHECK), "--emulate", str(out)], capture_output=True, text=True,
                       env=_env(GPU_CHECK_STEPS="smoke"), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    files = _files(out)
    assert files == ["gpu-check.log", "results.tar.gz", "summary.json"], files
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["smoke"]["rows"]
    assert len(rows) == 8 and all(row["ok"] for row in rows), rows
    assert summary["smoke"]["complete"] is True
    assert [s["step"] for s in summary["steps"]] == ["env", "smoke"]
    assert {"smoke.json", "smoke.log", "env.txt", "summary.json", "steps.jsonl"} <= _members(out)


def test_per_test_time_limit_fails_the_test_and_the_session_goes_on(tmp_path):
    (tmp_path / "test_hang.py").write_text(
        "import time\n\n\ndef test_hangs():\n    time.sleep(30)\n\n\ndef test_after():\n    assert True\n")
    xml = tmp_path / "r.xml"
    env = _env(FASTPOLY_TEST_TIMEOUT="1", PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT)]))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest",
                        "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path / "test_hang.py"),
                        f"--junitxml={xml}"], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "exceeded FASTPOLY_TEST_TIMEOUT=1 s" in r.stdout
    assert "1 failed, 1 passed" in r.stdout
    assert xml.is_file() and 'failures="1"' in xml.read_text()


def test_gpu_modules_warnings_policy(tmp_path):
    """In ``gpu`` tests a warning issued by the GPU stack's own modules is shown, not an error; fastpoly's
    warnings (and everyone's outside ``gpu`` tests) stay errors under ``filterwarnings = error``."""
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    gpu: gpu\nfilterwarnings =\n    error\n")
    body = (
        "import warnings\n\nimport pytest\n\n\n"
        "def _warn(module):\n"
        "    warnings.warn_explicit('note', DeprecationWarning, 'x.py', 1, module=module)\n\n\n"
        "@pytest.mark.gpu\n@pytest.mark.parametrize('mod', ['cupy', 'cupy._core.core', 'cupy_backends.cuda', "
        "'numba.core', 'torch.cuda'])\ndef test_stack(mod):\n    _warn(mod)\n\n\n"
        "@pytest.mark.gpu\ndef test_own():\n    _warn('fastpoly.backends.cuda.backend')\n\n\n"
        "def test_not_gpu():\n    _warn('cupy')\n"
    )
    (tmp_path / "test_w.py").write_text(body)
    env = _env(PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT)]))
    env.pop("FASTPOLY_TEST_TIMEOUT", None)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest",
                        "-rf", str(tmp_path / "test_w.py")], capture_output=True, text=True, env=env, timeout=120,
                       cwd=tmp_path)
    assert "2 failed, 5 passed" in r.stdout, r.stdout + r.stderr
    assert "test_own" in r.stdout and "test_not_gpu" in r.stdout

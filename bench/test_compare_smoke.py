"""Smoke test: bench/compare.py runs end to end in --quick mode and writes JSON."""
import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_compare_quick(tmp_path):
    here = os.path.dirname(os.path.abspath(__file__))
    out = tmp_path / "c.json"
    r = subprocess.run([sys.executable, os.path.join(here, "compare.py"), "--quick", "--rounds", "1", "--no-torch",
                        "--json", str(out)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = json.loads(out.read_text())["rows"]
    assert any(r["name"] == "fastpoly numpy (reference)" and r["samples_per_s"] > 0 for r in rows)
    assert any(r["name"] == "numpy batched BLAS" for r in rows)

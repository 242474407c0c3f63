"""Smoke test: bench/ep_error.py runs end to end in --quick mode and its numbers are consistent."""
import csv
import json
import math
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_ep_error_quick(tmp_path):
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.path.dirname(here) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               MPLBACKEND="Agg")
    r = subprocess.run([sys.executable, os.path.join(here, "ep_error.py"), str(tmp_path), "--quick"],
                       capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for name in ("ep_error.csv", "ep_error.json", "ep_error.txt", "ep_error.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    rows = json.loads((tmp_path / "ep_error.json").read_text())["rows"]
    assert {r["m"] for r in rows} == {8, 16} and any(r["kind"].startswith("labels") for r in rows)
    for r in rows:
        assert math.isclose(r["err_joint"], r["ep_joint"] - r["tilting"], abs_tol=1e-9)
        assert r["tilting"] < 0 and r["tilting_stderr"] > 0 and r["ess_joint"] > 0
        assert r["reliable"] == (r["ess_joint"] >= 50 and r["ess_S"] >= 50)  # 2,000 samples: the floor is 50
    with open(tmp_path / "ep_error.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    bad = subprocess.run([sys.executable, os.path.join(here, "ep_error.py"), str(tmp_path), "--sizes", "x"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1

"""Scale test: a spill-heavy run in a tiny memory budget stays within budget + a fixed overhead.

A child process counts ``N`` distinct 128-bit keys (random batches with repeats, as a sampler's
counted batches) through :class:`~fastpoly.counts.spill.CountAccumulator` with a budget of a few
MB, assembles the result the way ``fastpoly sample --out`` does (streamed k-way merge into the
counts file), then runs the post-processing of ``fastpoly sample`` (top-k, rank-plot histogram)
and ``fastpoly analyze`` on the memory-mapped file.  Its peak resident memory
(``getrusage(RUSAGE_CHILDREN)``) is compared with the same script on a tiny input (the fixed
overhead: Python, NumPy, Numba, compiled kernels).

The margin cannot pass by accident: the keys alone are larger than it, so holding all distinct
keys in memory once more anywhere (as 0.1 did several times) fails the test.  The checksum pass
of ``FunctionCounts.load(mmap=True)`` maps every page of the file (reclaimable page cache, but
counted in the resident set), so the file size is allowed for on top of the budget.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent('''
    import os, sys
    import numpy as np
    import fastpoly
    from fastpoly.analysis.histograms import count_histogram
    from fastpoly.cli.analysis import analyze
    from fastpoly.counts.spill import CountAccumulator
    from fastpoly.keys import sort_order
    from fastpoly.run.driver import _finish, result_meta

    n_keys, budget, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    plan = fastpoly.make_plan(fastpoly.MLP(7, [3]), fastpoly.boolean_inputs(7), seed=0)
    rng = np.random.default_rng(0)
    acc = CountAccumulator(2, budget, spill_dir=os.path.dirname(out))
    B = 1 << 15
    for a in range(0, n_keys, B):
        m = min(B, n_keys - a)
        k = rng.integers(0, 2**64, size=(m, 2), dtype=np.uint64)
        k[: m // 4, 1] = rng.integers(0, 1024, m // 4)  # keys that repeat across batches
        k = np.unique(k, axis=0)
        k = k[sort_order(k)]
        acc.add(k, rng.integers(1, 4, k.shape[0]), np.arange(a, a + k.shape[0], dtype=np.uint64), m, m, a, a + m)
    meta = result_meta(plan)
    meta["ranges"] = [[0, n_keys]]
    res = _finish(acc, meta, out)
    top = res.top(10)
    v, mult = count_histogram(res.counts)
    a = analyze(res, top=10)
    assert len(top) == 10 and int(mult.sum()) == res.n_distinct == a["n_distinct"]
    print(res.n_distinct, len(acc.runs), os.path.getsize(out))
    acc.cleanup()
''')


def _run_child(tmp_path, n_keys, budget):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")])
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = tmp_path / f"counts-{n_keys}.npz"
    r = subprocess.run([sys.executable, "-c", CHILD, str(n_keys), str(budget), str(out)],
                       capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stderr
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # kB on Linux: the largest child so far
    n_distinct, n_runs, size = (int(v) for v in r.stdout.split())
    return peak, before, n_distinct, n_runs, size


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in kB and madvise: Linux")
def test_spill_heavy_run_stays_within_budget(tmp_path):
    budget = 8 << 20
    margin = 32 << 20
    # the fixed overhead first: RUSAGE_CHILDREN reports the largest child so far, so small first
    base, before, *_ = _run_child(tmp_path, 20_000, budget)
    assert before <= base
    peak, _, n_distinct, n_runs, size = _run_child(tmp_path, 3_000_000, budget)
    keys_bytes = 16 * n_distinct
    assert n_distinct > 2_900_000 and n_runs >= 8 and size >= 32 * n_distinct
    assert keys_bytes > margin + budget, "the test must be able to see all keys held in memory"
    grew = (peak - base) * 1024
    assert grew <= budget + size + margin, (
        f"peak {peak / 1024:.0f} MB = overhead {base / 1024:.0f} MB + {grew / 2**20:.0f} MB, more than the budget "
        f"{budget >> 20} MB + file pages {size >> 20} MB + margin {margin >> 20} MB"
    )

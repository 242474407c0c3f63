"""Scale test: a spill-heavy run in a tiny memory budget stays within budget + a fixed overhead.

A child process counts ``N`` distinct 128-bit keys (random batches with repeats, as a sampler's
counted batches) through :class:`~fastpoly.counts.spill.CountAccumulator` with a budget of a few
MB, assembles the result the way ``fastpoly sample --out`` does (streamed k-way merge into the
counts file, format 2 or compressed format 3), then runs the post-processing of ``fastpoly sample`` (top-k, rank-plot histogram)
and ``fastpoly analyze`` on the memory-mapped file.  Its peak resident memory
(``getrusage(RUSAGE_SELF)`` in the child) is compared with the same script on a tiny input (the fixed
overhead: Python, NumPy, Numba, compiled kernels).

The margin cannot pass by accident: the keys alone are larger than it, so holding all distinct
keys in memory once more anywhere (as 0.1 did several times) fails the test.  The checksum pass
of ``FunctionCounts.load(mmap=True)`` maps every page of the file (reclaimable page cache, but
counted in the resident set), so the file size is allowed for on top of the budget.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent('''
    import os, sys
    import numpy as np
    import fastpoly
    from fastpoly.analysis.figures import plot_rank
    from fastpoly.analysis.histograms import count_histogram
    from fastpoly.cli.analysis import analyze
    from fastpoly.counts.spill import CountAccumulator
    from fastpoly.keys import sort_order
    from fastpoly.run.driver import _finish, result_meta

    import resource
    n_keys, budget, out, compress = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
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
    res = _finish(acc, meta, out, compress=compress)
    top = res.top(10)
    v, mult = count_histogram(res)
    a = analyze(res, top=10)
    plot_rank(res, os.path.join(os.path.dirname(out), "rank.png"))
    assert len(top) == 10 and int(mult.sum()) == res.n_distinct == a["n_distinct"]
    print(res.n_distinct, len(acc.runs), os.path.getsize(out), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    acc.cleanup()
''')


def _run_child(tmp_path, n_keys, budget, compress=False):
    """Run the child; returns ``(peak RSS kB, distinct keys, runs spilled, file bytes)``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")])
    out = tmp_path / f"counts-{n_keys}-{int(compress)}.npz"
    r = subprocess.run([sys.executable, "-c", CHILD, str(n_keys), str(budget), str(out), str(int(compress))],
                       capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stderr
    n_distinct, n_runs, size, peak = (int(v) for v in r.stdout.split())  # ru_maxrss: kB on Linux
    return peak, n_distinct, n_runs, size


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in kB and madvise: Linux")
@pytest.mark.parametrize("compress", [False, True], ids=["format2", "format3-compressed"])
def test_spill_heavy_run_stays_within_budget(tmp_path, compress):
    budget = 8 << 20
    margin = 32 << 20
    base, *_ = _run_child(tmp_path, 20_000, budget, compress)  # the fixed overhead
    peak, n_distinct, n_runs, size = _run_child(tmp_path, 3_000_000, budget, compress)
    keys_bytes = 16 * n_distinct
    assert n_distinct > 2_900_000 and n_runs >= 8
    assert size >= 32 * n_distinct if not compress else size < 24 * n_distinct
    assert keys_bytes > margin + budget, "the test must be able to see all keys held in memory"
    grew = (peak - base) * 1024
    print(f"overhead {base >> 10} MB, grew {grew >> 20} MB, file {size >> 20} MB, {n_runs} runs")
    assert grew <= budget + size + margin, (
        f"peak {peak / 1024:.0f} MB = overhead {base / 1024:.0f} MB + {grew / 2**20:.0f} MB, more than the budget "
        f"{budget >> 20} MB + file pages {size >> 20} MB + margin {margin >> 20} MB"
    )

"""pytest-benchmark: P_SGD training (the anchor recipe, m = 32) with the Numba kernel and the NumPy reference.

Every benchmark checks its result.  Under ``pytest bench --benchmark-disable`` each runs
once on a reduced size.  Full figures::

    NUMBA_CACHE_DIR=/tmp/nbcache python -m pytest bench/bench_sgd.py --benchmark-min-rounds=3

runs/s = runs / best time (other processes share the cores: take the best of N).
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from fastpoly.backends.numba.train import PreparedTrain  # noqa: E402
from fastpoly.sgd.anchor import anchor_problem, anchor_recipe  # noqa: E402
from fastpoly.sgd.plan import make_train_plan  # noqa: E402
from fastpoly.sgd.reference import train_range_reference  # noqa: E402


@pytest.fixture(scope="module")
def anchor_plan():
    arch, X, train, _ = anchor_problem(32)
    return make_train_plan(arch, X, train, 0, anchor_recipe(1))


def _n(request, full, smoke):
    return smoke if request.config.getoption("benchmark_disable", False) else full


def test_numba_train_anchor32(benchmark, anchor_plan, request):
    """Runs of the m = 32 anchor recipe (7-40-40-1, SGD lr 0.01, batch 8, ce, fit + 1 epoch)."""
    import numba

    pt = PreparedTrain(anchor_plan)
    pt.run(0, 4, numba.get_num_threads())  # compile / load from cache outside the timing
    n = _n(request, 2000, 16)
    b = benchmark.pedantic(pt.run, args=(0, n, numba.get_num_threads()), rounds=3, iterations=1)
    assert b.keys.shape[0] == n and np.all(b.status != 2)  # every anchor run fits S
    assert 20 < b.epochs.mean() < 300
    benchmark.extra_info["runs_per_s"] = n / benchmark.stats["min"] if benchmark.stats else None
    benchmark.extra_info["mean_epochs"] = float(b.epochs.mean())


def test_numpy_reference_train_anchor32(benchmark, anchor_plan, request):
    """One run of the anchor recipe with the NumPy reference (the oracle; slow by design)."""
    b = benchmark.pedantic(train_range_reference, args=(anchor_plan, 0, 1), rounds=1, iterations=1)
    assert b.status[0] != 2

"""A/B of the Numba P_SGD trainer against the one of an earlier git revision, in one process.

``python bench/trainer_ab.py REV [N_RUNS] [ROUNDS]`` loads ``fastpoly/backends/numba/train.py`` of ``REV``
(``git show``) as a second module beside the current one, checks both give the same keys, and times
``PreparedTrain.run`` of runs ``1000 .. 1000 + N_RUNS`` on the anchor problem (7-40-40-1 relu,
m = 32, one epoch after fit), alternating the order per round; prints the best rate of each.
The earlier revision must have the trainer at that path (the move under backends/ is ``ceb71f7``).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastpoly.sgd.anchor import anchor_problem, anchor_recipe  # noqa: E402
from fastpoly.sgd.plan import make_train_plan  # noqa: E402


def _module_at(rev: str):
    text = subprocess.run(["git", "show", f"{rev}:fastpoly/backends/numba/train.py"], check=True,
                          capture_output=True, text=True).stdout
    d = tempfile.mkdtemp(prefix="trainer-ab-")
    path = os.path.join(d, "train_rev.py")
    with open(path, "w") as fh:
        fh.write(text)
    spec = importlib.util.spec_from_file_location("fastpoly.backends.numba._train_rev", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    import numba

    rev = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 6
    before = _module_at(rev)
    after = importlib.import_module("fastpoly.backends.numba.train")
    arch, X, train, _ = anchor_problem(32)
    tp = make_train_plan(arch, X, train, 0, anchor_recipe(1))
    th = numba.get_num_threads()
    pb, pa = before.PreparedTrain(tp), after.PreparedTrain(tp)
    rb, ra = pb.run(0, 64, th), pa.run(0, 64, th)  # compile, and check
    assert np.array_equal(rb.keys, ra.keys) and np.array_equal(rb.epochs, ra.epochs)
    best = {"before": 1e9, "after": 1e9}
    for r in range(rounds):
        order = (("before", pb), ("after", pa)) if r % 2 == 0 else (("after", pa), ("before", pb))
        for name, p in order:
            t = time.perf_counter()
            p.run(1000, 1000 + n, th)
            best[name] = min(best[name], time.perf_counter() - t)
    b, a = n / best["before"], n / best["after"]
    print(f"threads={th} runs={n} best of {rounds}: {rev} {b:.1f} runs/s, now {a:.1f} runs/s, now/{rev} = {a / b:.4f}")


if __name__ == "__main__":
    main()

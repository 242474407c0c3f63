"""Helpers shared by the test modules (``import support``; the tests folder is on ``sys.path``).

* :func:`subprocess_env` -- the environment of a child ``python`` that imports this checkout;
* :func:`backend_or_skip` -- a backend name, or skip with the reason (an unavailable ``cupy``
  fails instead under ``FASTPOLY_REQUIRE_GPU=1``, so a GPU run never passes by skipping);
* :func:`wait_for`, :func:`checkpoint_generation`, :func:`wait_for_generation` -- wait on a file
  or a checkpoint generation instead of sleeping a guessed time;
* :func:`float_bits`, :func:`assert_same_train` -- float32 arrays as their bits, and two
  :class:`~fastpoly.backends.base.TrainBatch` results compared bit for bit.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fastpoly.backends import availability

ROOT = Path(__file__).resolve().parents[1]
REQUIRE_GPU = os.environ.get("FASTPOLY_REQUIRE_GPU", "") not in ("", "0")

__all__ = ["ROOT", "REQUIRE_GPU", "assert_same_train", "backend_or_skip", "checkpoint_generation", "float_bits",
           "subprocess_env", "wait_for", "wait_for_generation"]


def subprocess_env(**extra: str) -> dict[str, str]:
    """``os.environ`` with this checkout first on ``PYTHONPATH`` (plus ``extra`` variables)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def backend_or_skip(name: str) -> str:
    """Return the backend name if it can run here; skip with the reason otherwise.

    With ``FASTPOLY_REQUIRE_GPU=1`` an unavailable ``cupy`` backend fails instead.
    """
    ok, why = availability(name)
    if not ok:
        if name == "cupy" and REQUIRE_GPU:
            pytest.fail(f"FASTPOLY_REQUIRE_GPU=1 but the cupy backend is unavailable: {why}")
        pytest.skip(f"backend {name} unavailable: {why}")
    return name


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120.0,
             proc: subprocess.Popen | None = None, poll: float = 0.005) -> None:
    """Poll ``condition`` until it holds; fail (naming ``what``) on timeout or if ``proc`` ended first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            out = proc.communicate()
            pytest.fail(f"the process ended (rc {proc.returncode}) before {what}: {out}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


def checkpoint_generation(ck: str | os.PathLike[str]) -> int:
    """The generation of the checkpoint in ``ck`` (0: none saved yet)."""
    try:
        with open(os.path.join(ck, "state.json")) as fh:
            return int(json.load(fh)["generation"])
    except (OSError, ValueError, KeyError):
        return 0


def wait_for_generation(ck: str | os.PathLike[str], generation: int, proc: subprocess.Popen | None = None,
                        timeout: float = 120.0) -> int:
    """Wait until the checkpoint in ``ck`` reaches ``generation`` (or more); return the generation seen."""
    wait_for(lambda: checkpoint_generation(ck) >= generation, f"checkpoint generation {generation} in {ck}",
             timeout, proc)
    return checkpoint_generation(ck)


def float_bits(a) -> np.ndarray:
    """The bits of a float32 array (uint32): equal bits, not merely equal values (``-0.0 != +0.0``)."""
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


def assert_same_train(ref, got, params: bool = True) -> None:
    """Assert that two ``TrainBatch`` results are the same bit for bit (keys, status, epochs, loss bits).

    With ``params`` the final parameters must be present in both and bit-identical.
    """
    assert (got.lo, got.hi) == (ref.lo, ref.hi)
    for f in ("keys", "init_keys", "status", "first_fit", "epochs"):
        a, b = getattr(ref, f), getattr(got, f)
        assert a.shape == b.shape and a.dtype == b.dtype, f
        assert np.array_equal(a, b), (f, a, b)
    assert got.loss.dtype == np.float32
    assert np.array_equal(float_bits(ref.loss), float_bits(got.loss)), (ref.loss, got.loss)
    if params:
        assert ref.params is not None and got.params is not None and got.params.shape == ref.params.shape
        assert np.array_equal(float_bits(ref.params), float_bits(got.params))

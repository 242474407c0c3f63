"""Shared pieces of the GPU check scripts (``ci/gpu-check.sh``): partial JSON, the emulated device.

* :class:`PartialJSON` rewrites its file atomically after every row, so a script stopped by
  its time slot still leaves every finished row behind (``"complete": false``).
* :func:`emu_device` is the CPU emulation of the CUDA execution model (``tests/cuda_emu``): the
  real kernels compiled with g++, behind the cupy backend's device interface.  ``--emulate``
  runs of the scripts use it to prove the check's steps, slots and outputs without a GPU.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class PartialJSON:
    """A JSON document ``{"info": ..., "rows": [...], "complete": bool}`` rewritten after every change."""

    def __init__(self, path: str | None, info: dict | None = None) -> None:
        self.path = path
        self.doc: dict[str, Any] = {"info": dict(info or {}), "rows": [], "complete": False,
                                    "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.write()

    @property
    def rows(self) -> list:
        return self.doc["rows"]

    def add(self, row: dict) -> dict:
        """Append a row and write the file."""
        self.doc["rows"].append(row)
        self.write()
        return row

    def set(self, key: str, value: Any) -> None:
        self.doc[key] = value
        self.write()

    def finish(self, **extra: Any) -> None:
        self.doc.update(extra)
        self.doc["complete"] = True
        self.write()

    def write(self) -> None:
        if not self.path:
            return
        d = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(d, exist_ok=True)
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            json.dump(self.doc, fh, indent=2, default=str)
        os.replace(tmp, self.path)


def emu_device(**kw: Any) -> Any:
    """An :class:`EmuDevice` of ``tests/cuda_emu`` (its library is built with g++ on first use)."""
    tests = os.path.join(ROOT, "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from cuda_emu.device import EmuDevice

    return EmuDevice(**kw)


def cupy_backend(emulate: bool, **kw: Any) -> Any:
    """The cupy backend on the GPU, or on the emulation with ``emulate``."""
    from fastpoly.backends.cuda.backend import CupyBackend

    if emulate:
        kw.setdefault("device", emu_device())
    return CupyBackend(**kw)

"""The one CUDA device of a process: availability and the memoised default device (its module loader and stream).

Every CUDA user -- the cupy sampling backend (:mod:`fastpoly.backends.cuda.backend`), the
P_SGD trainer (:mod:`fastpoly.backends.cuda.train`) and the K_LZ kernels of the analysis
(:mod:`fastpoly.backends.cuda.klz`) -- runs on the device memoised here unless it is handed a
device interface (the tests hand the CPU emulation of ``tests/cuda_emu``).  So a process
opens one CuPy device, one non-blocking stream and one cache of loaded kernel modules
(:meth:`CupyDevice.compile <fastpoly.backends.cuda.backend.CupyDevice.compile>`, the loader
of :mod:`fastpoly.backends.cuda.source`), whichever entry point came first.

This module is the lowest of the CUDA room (it imports no other module of it): the device
class is passed in by :func:`fastpoly.backends.cuda.backend.default_device`, which is what the
other modules call.  Importing it imports neither CuPy nor the kernels.
"""
from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from typing import Any

from fastpoly.backends.cuda import source as src

__all__ = ["availability", "default_device"]

_lock = threading.Lock()
_default: dict[str, Any] = {}


def availability() -> tuple[bool, str]:
    """``(True, "")`` when CuPy imports, a CUDA device is present and the kernel sources are found.

    Else ``(False, reason)``; never raises.
    """
    if importlib.util.find_spec("cupy") is None:
        return False, "cupy is not installed"
    try:
        import cupy  # noqa: F401  (import errors are the reason to report)
        from cupy.cuda import runtime
    except Exception as exc:  # broken installs raise many kinds of errors
        return False, f"cupy cannot be imported: {exc}"
    try:
        n = runtime.getDeviceCount()
    except Exception as exc:
        return False, f"no CUDA device ({exc})"
    if n < 1:
        return False, "no CUDA device"
    try:
        src.kernel_dir()
    except FileNotFoundError as exc:
        return False, str(exc)
    return True, ""


def default_device(make: Callable[[], Any]) -> Any:
    """The process's device, created by ``make()`` on first use (memoised; checked available first).

    ``make`` is :class:`~fastpoly.backends.cuda.backend.CupyDevice`
    (:func:`fastpoly.backends.cuda.backend.default_device` passes it).

    Raises
    ------
    fastpoly.backends.BackendUnavailable
        CuPy or a CUDA device is missing (the message says which).
    """
    from fastpoly.backends import BackendUnavailable

    with _lock:
        dev = _default.get("device")
        if dev is None:
            ok, why = availability()
            if not ok:
                raise BackendUnavailable(f"backend 'cupy' is not available: {why}")
            dev = _default["device"] = make()
        return dev



"""The one name -> backend table, availability reports and the ``"auto"`` choice.

Backends are imported lazily (``import fastpoly`` imports neither Numba nor
CuPy) and instantiated once (memoised).  Every backend implements the
interface of :class:`fastpoly.backends.base.Backend`.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from typing import Any

__all__ = ["BACKENDS", "AUTO_ORDER", "ANALYSIS_AUTO_ORDER", "backends", "get_backend", "resolve_backend_name",
           "BackendUnavailable"]

#: name -> "module:class" of the implementation (one table for the whole package)
BACKENDS = {
    "numpy": "fastpoly.backends.reference:NumpyBackend",
    "numba": "fastpoly.backends.numba.backend:NumbaBackend",
    "cupy": "fastpoly.backends.cuda.backend:CupyBackend",
}
#: preference order of ``"auto"``
AUTO_ORDER = ("cupy", "numba", "numpy")
#: preference order of ``"auto"`` for the analysis of counts (K_LZ, T, critical inputs of stored keys):
#: the CPU kernels; the GPU only when asked for (``"cupy"``), since a pass over a counts file is bound by
#: reading the file and start-up (CuPy, NVRTC) would dominate small analyses
ANALYSIS_AUTO_ORDER = ("numba", "numpy")
VALID_NAMES = tuple(BACKENDS) + ("auto",)

_instances: dict[str, Any] = {}
_lock = threading.Lock()


class BackendUnavailable(RuntimeError):
    """The requested backend exists but cannot run here (the message says why)."""


def _check_name(name: object) -> None:
    if not isinstance(name, str) or name not in VALID_NAMES:
        raise ValueError(f"unknown backend {name!r}; valid backends: {', '.join(VALID_NAMES)}")


def _load(name: str) -> Any:
    with _lock:
        inst = _instances.get(name)
        if inst is None:
            mod_name, cls_name = BACKENDS[name].split(":")
            spec = importlib.util.find_spec(mod_name)
            if spec is None:
                return None
            inst = getattr(importlib.import_module(mod_name), cls_name)()
            _instances[name] = inst
        return inst


def availability(name: str) -> tuple[bool, str]:
    """``(available, reason)`` for backend ``name`` (``reason`` is '' when available)."""
    _check_name(name)
    if name == "auto":
        return True, ""
    inst = _load(name)
    if inst is None:
        return False, f"the {name} backend is not part of this fastpoly build"
    return inst.availability()


def backends() -> dict[str, Any]:
    """Report every backend and whether it can run here.

    Returns
    -------
    dict
        ``{name: {"available": bool, "reason": str}}`` plus ``"auto"`` -> the name
        ``"auto"`` resolves to.

    Examples
    --------
    >>> import fastpoly
    >>> fastpoly.backends()["numpy"]
    {'available': True, 'reason': ''}
    """
    out: dict[str, Any] = {}
    for name in BACKENDS:
        ok, why = availability(name)
        out[name] = {"available": ok, "reason": why}
    out["auto"] = resolve_backend_name("auto")
    return out


def resolve_backend_name(name: str, auto_order: tuple[str, ...] = AUTO_ORDER) -> str:
    """Resolve ``"auto"`` (cupy with a GPU, else numba, else numpy); validate other names.

    The environment variable ``FASTPOLY_BACKEND`` overrides what ``"auto"`` picks.

    Parameters
    ----------
    name : str
        A name of :data:`BACKENDS` or ``"auto"``.
    auto_order : tuple of str
        Preference order of ``"auto"``: :data:`AUTO_ORDER` (sampling) or :data:`ANALYSIS_AUTO_ORDER`.
    """
    _check_name(name)
    if name != "auto":
        return name
    forced = os.environ.get("FASTPOLY_BACKEND")
    if forced:
        _check_name(forced)
        if forced != "auto":
            return forced
    for cand in auto_order:
        if availability(cand)[0]:
            return cand
    return "numpy"


def get_backend(name: Any = "auto") -> Any:
    """Return the (memoised) backend object for ``name``.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid names).
    BackendUnavailable
        If the backend cannot run here (e.g. "cupy is not installed", "no CUDA device").
    """
    if not isinstance(name, str) and hasattr(name, "count_range"):
        return name  # already a backend object (e.g. a fastpoly.sgd trainer)
    name = resolve_backend_name(name)
    ok, why = availability(name)
    if not ok:
        raise BackendUnavailable(f"backend {name!r} is not available: {why}")
    return _load(name)

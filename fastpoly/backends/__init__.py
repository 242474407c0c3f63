"""The one name -> backend table, availability reports and the ``"auto"`` choice.

Backends are imported lazily (``import fastpoly`` imports neither Numba nor
CuPy) and instantiated once (memoised): one object per name.  Every backend implements the
interface of :class:`fastpoly.backends.base.Backend` and says, per capability
(:data:`fastpoly.backends.base.CAPABILITIES`: sampling, training, GP draws, K_LZ, codec...),
whether it can do it here (:meth:`~fastpoly.backends.base.Backend.supports`).
:func:`backend_for` is the one rule that turns a name (or ``"auto"``) into the backend
object for a use; every entry point (sampling, P_SGD, GP draws, the analysis of counts)
goes through it.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from typing import Any

__all__ = ["BACKENDS", "AUTO_ORDER", "ANALYSIS_AUTO_ORDER", "AUTO_ORDERS", "backends", "get_backend",
           "resolve_backend_name", "backend_for", "lacks", "BackendUnavailable"]

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
#: preference order of ``"auto"`` per capability (:data:`fastpoly.backends.base.CAPABILITIES`): the
#: first backend in the order that supports the capability here is chosen
AUTO_ORDERS = {
    "sample": AUTO_ORDER,
    "evaluate": AUTO_ORDER,
    "train": AUTO_ORDER,
    "gp_values": ("cupy", "numba", "numpy"),
    "klz": ANALYSIS_AUTO_ORDER,
    "tally": ANALYSIS_AUTO_ORDER,
    "codec": ("numba",),
    "merge": ("numba", "numpy"),
}
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
    return _auto_name(auto_order) or "numpy"


def _auto_name(order: tuple[str, ...], use: str | None = None) -> str | None:
    """The one ``"auto"`` rule (None if no backend qualifies).

    ``$FASTPOLY_BACKEND`` if set (and that backend offers ``use``), else the first backend of
    ``order`` that is available (and supports ``use``).
    """
    forced = os.environ.get("FASTPOLY_BACKEND")
    if forced:
        _check_name(forced)
    if forced and forced != "auto" and (use is None or use not in getattr(_load(forced), "lacks", {})):
        return forced
    for cand in order:
        inst = _load(cand)
        if inst is not None and (inst.availability()[0] if use is None else inst.supports(use) is None):
            return cand
    return None


def _is_device(obj: Any) -> bool:
    """A CUDA device interface (``CupyDevice`` or the tests' emulation) rather than a name or backend."""
    return not isinstance(obj, str) and callable(getattr(obj, "compile", None)) and \
        callable(getattr(obj, "launch", None))


def _is_backend(obj: Any) -> bool:
    return not isinstance(obj, str) and callable(getattr(obj, "supports", None)) and hasattr(obj, "count_range")


def backend_for(use: str, name: Any = "auto") -> Any:
    """The backend object that does ``use`` for ``name``: the one availability/auto rule.

    Parameters
    ----------
    use : str
        A capability of :data:`fastpoly.backends.base.CAPABILITIES` (``"sample"``, ``"train"``,
        ``"gp_values"``, ``"klz"``...).
    name : str, Backend or CUDA device interface
        A name of :data:`BACKENDS`; ``"auto"``: ``$FASTPOLY_BACKEND`` if set (and that
        backend offers ``use``), else the first backend of :data:`AUTO_ORDERS` ``[use]``
        that supports it here; a backend object (returned if it supports ``use``); a CUDA
        device interface (``CupyDevice``, the tests' CPU emulation): the cupy backend on it.

    Raises
    ------
    ValueError
        An unknown name or capability (the message lists the valid ones).
    BackendUnavailable
        The backend cannot run here, or cannot do ``use`` (the message says why).
    """
    from fastpoly.backends.base import CAPABILITIES, check_capability

    check_capability(use)
    if _is_device(name):
        from fastpoly.backends.cuda.backend import CupyBackend

        be = CupyBackend(device=name)
    elif _is_backend(name):
        be = name
    else:
        _check_name(name)
        if name == "auto":
            name = _auto_name(AUTO_ORDERS[use], use)
            if name is None:
                raise BackendUnavailable(f"no backend can do {CAPABILITIES[use]} here")
        ok, why = availability(name)
        if not ok:
            raise BackendUnavailable(f"backend {name!r} is not available: {why}")
        be = _load(name)
    gap = be.supports(use)
    if gap is not None:
        if not be.availability()[0]:
            raise BackendUnavailable(f"backend {be.name!r} is not available: {gap}")
        raise BackendUnavailable(f"backend {be.name!r} cannot do {CAPABILITIES[use]}: {gap}")
    return be


def lacks(name: str, use: str) -> str | None:
    """Why backend ``name`` never does ``use`` (whatever the machine), or None if it has an engine for it."""
    from fastpoly.backends.base import check_capability

    check_capability(use)
    _check_name(name)
    if name == "auto":
        return None
    inst = _load(name)
    if inst is None:
        return f"the {name} backend is not part of this fastpoly build"
    return inst.lacks.get(use)


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
        return name  # already a backend object (or a plan-bound adapter such as fastpoly.sgd's TrainBackend)
    return backend_for("sample", name)

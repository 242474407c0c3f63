"""The ``"numba"`` backend: fused, multi-threaded CPU kernels, bit-identical to the NumPy reference.

Numba is imported only when the backend is first checked or used; the kernel
modules (:mod:`fastpoly.backends.numba.sampler`, :mod:`fastpoly.backends.numba.count`,
:mod:`fastpoly.backends.numba.poly`) are imported and compiled (or loaded from the
on-disk cache) on first use.  Threads: ``numba.set_num_threads`` /
``FASTPOLY_NUM_THREADS`` (see :mod:`fastpoly.backends.numba.jit`).
"""
from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from fastpoly.backends.base import Backend, CountBatch, SampleBatch, check_range
from fastpoly.backends.numba.count import count_keys
from fastpoly.backends.numba.jit import configure_threads, set_num_threads
from fastpoly.backends.numba.poly import (
    _StructuredArrays,
    evaluate_dense,
    evaluate_structured,
)
from fastpoly.backends.numba.sampler import PreparedPlan
from fastpoly.network import Network, forward_reference

if TYPE_CHECKING:
    from fastpoly.plan import SamplerPlan

__all__ = ["NumbaBackend"]

#: target wall time of one default batch (seconds), at the measured ~1e11 FLOP/s of 2 cores
_BATCH_FLOP = 2e11


class NumbaBackend(Backend):
    """Compiled CPU backend (Numba): fused sampler, hash-table counting, network evaluation."""

    name = "numba"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._prepared: weakref.WeakKeyDictionary[SamplerPlan, PreparedPlan] = weakref.WeakKeyDictionary()
        self._structured: weakref.WeakKeyDictionary[Network, dict] = weakref.WeakKeyDictionary()
        self._ready = False
        self._avail: tuple[bool, str] | None = None

    # --- availability and set-up -------------------------------------------------------------
    def availability(self) -> tuple[bool, str]:
        """``(True, "")`` when Numba imports, else ``(False, reason)``."""
        if self._avail is None:
            try:
                import numba  # noqa: F401
            except ImportError:
                self._avail = (False, "numba is not installed")
            except Exception as exc:  # pragma: no cover - broken installations
                self._avail = (False, f"numba failed to import: {exc}")
            else:
                self._avail = (True, "")
        return self._avail

    def _setup(self):
        if not self._ready:
            configure_threads()
            self._ready = True

    @property
    def num_threads(self) -> int:
        """Threads the kernels use now (``numba.get_num_threads()``)."""
        import numba

        self._setup()
        return numba.get_num_threads()

    def set_num_threads(self, n: int) -> None:
        """Use ``n`` threads from now on (in the calling thread, as :func:`numba.set_num_threads`)."""
        self._setup()
        set_num_threads(n)

    def _prepare(self, plan: SamplerPlan) -> PreparedPlan:
        self._setup()
        with self._lock:
            pp = self._prepared.get(plan)
            if pp is None:
                pp = PreparedPlan(plan)
                self._prepared[plan] = pp
        return pp

    # --- sampling ---------------------------------------------------------------------------
    def sample_keys(self, plan: SamplerPlan, start: int, stop: int, margins: bool = False) -> SampleBatch:
        """Keys (and acceptance, optional margins) of samples ``start..stop-1`` in index order."""
        start, stop = check_range(start, stop)
        pp = self._prepare(plan)
        keys, acc, marg = pp.run(start, stop - start, self.num_threads, early_exit=False,
                                 want_margins=bool(margins))
        return SampleBatch(keys, acc, marg)

    def count_range(self, plan: SamplerPlan, start: int, stop: int) -> CountBatch:
        """Draw, reject (early, after the train rows) and count samples ``start..stop-1``."""
        start, stop = check_range(start, stop)
        n = stop - start
        pp = self._prepare(plan)
        keys, acc, _ = pp.run(start, n, self.num_threads, early_exit=True, want_margins=False)
        idx = np.uint64(start) + np.arange(n, dtype=np.uint64) if n else np.zeros(0, np.uint64)
        mask = acc if plan.conditioned else None
        k, c, f = count_keys(keys, idx, mask=mask, n_bits=int(plan.key_rows.size))
        n_acc = int(np.count_nonzero(acc))
        return CountBatch(k, c, f, n, n_acc)

    def default_batch_size(self, plan: SamplerPlan) -> int:
        """Samples per batch when the user gives none."""
        w = plan.mlp.widths
        flop = 2 * plan.m * sum(a * b for a, b in zip(w[:-1], w[1:])) + 60 * plan.mlp.n_params
        return int(min(1 << 20, max(4096, _BATCH_FLOP // max(flop, 1))))

    # --- evaluation ---------------------------------------------------------------------------
    def evaluate(self, net: Network, X: np.ndarray, dtype: npt.DTypeLike) -> np.ndarray:
        """Outputs ``(N, n_outputs)`` of ``net`` on every row of ``X`` in ``dtype``."""
        self._setup()
        dt = np.dtype(dtype)
        snet = getattr(net, "structured", None)
        if snet is not None:
            with self._lock:
                per = self._structured.setdefault(net, {})
                arr = per.get(dt)
                if arr is None:
                    arr = per[dt] = _StructuredArrays(snet, dt)
            return evaluate_structured(snet, X, dt, prepared=arr)
        out = evaluate_dense(net, X, dt)
        if out is None:  # an activation without a compiled form: the (exact) reference

            out = forward_reference(net, X, dt.type)
        return out

    def describe(self) -> str:
        """One line for the CLI (device, threads)."""
        import numba

        try:
            import llvmlite.binding as llb

            cpu = llb.get_host_cpu_name()
        except Exception:  # pragma: no cover
            cpu = "cpu"
        return f"numba {numba.__version__} ({self.num_threads} threads, {cpu})"

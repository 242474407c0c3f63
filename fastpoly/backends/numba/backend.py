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
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from fastpoly.backends.base import Backend, CountBatch, SampleBatch, TrainBatch, check_range, structured_of
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
    """Compiled CPU backend (Numba): fused sampler, hash-table counting, network evaluation.

    Offers every capability: the P_SGD trainer (:mod:`fastpoly.backends.numba.train`), GP draws
    (:mod:`~fastpoly.backends.numba.gaussian`), K_LZ (:mod:`~fastpoly.backends.numba.klz`), the
    histogram tables (:mod:`~fastpoly.backends.numba.tally`), the block codec
    (:mod:`~fastpoly.backends.numba.codec`) and the sorted merge (:mod:`~fastpoly.backends.numba.merge`).
    """

    name = "numba"
    lacks: dict[str, str] = {}

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._prepared: weakref.WeakKeyDictionary[SamplerPlan, PreparedPlan] = weakref.WeakKeyDictionary()
        self._structured: weakref.WeakKeyDictionary[Network, dict] = weakref.WeakKeyDictionary()
        self._trainers: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
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
            got: Any = self._prepared.get(plan)
            if got is None:
                if plan.is_mlp:
                    got = PreparedPlan(plan)
                else:  # a CNN (any layer sequence): the layer-sequence kernel, the same run() interface
                    from fastpoly.backends.numba.layers import PreparedLayers

                    got = PreparedLayers(plan)
                self._prepared[plan] = got
        return got

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
        flop = plan.flops_per_sample()
        return int(min(1 << 20, max(4096, _BATCH_FLOP // max(flop, 1))))

    # --- training, GP draws, K_LZ, codec, merge ---------------------------------------------
    def train_range(self, tp: Any, lo: int, hi: int, params: bool = False) -> TrainBatch:
        """P_SGD runs ``lo .. hi-1`` with the fused trainer (kernel-ready arrays built once per plan)."""
        from fastpoly.backends.layer_program import is_generic
        from fastpoly.backends.numba.train import PreparedTrain
        from fastpoly.backends.numba.train_cnn import PreparedLayerTrain

        lo, hi = check_range(lo, hi)
        self._setup()
        with self._lock:
            pt = self._trainers.get(tp)
            if pt is None:  # dense networks: the fused MLP trainer; CNNs: the generic layer trainer
                pt = self._trainers[tp] = (PreparedLayerTrain if is_generic(tp.plan.mlp) else PreparedTrain)(tp)
        return pt.run(lo, hi, self.num_threads, params)

    def gp_values(self, F: np.ndarray, seed: int, idx: np.ndarray, stream: int, lower: bool) -> np.ndarray:
        """GP values of samples ``idx`` (:func:`fastpoly.backends.numba.gaussian.gp_values_numba`)."""
        from fastpoly.backends.numba.gaussian import gp_values_numba

        self._setup()
        return gp_values_numba(F, seed, np.asarray(idx, np.uint64).reshape(-1), stream, bool(lower))

    def complexity_ints(self, keys: np.ndarray, n: int, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(phrase sums, ones, critical counts)`` (:func:`fastpoly.backends.numba.klz.complexity_ints`)."""
        from fastpoly.backends.numba import klz

        self._setup()
        return klz.complexity_ints(keys, n, d)

    def phrase_sums(self, keys: np.ndarray, n: int) -> np.ndarray:
        """Lempel--Ziv phrase counts of each key (:func:`fastpoly.backends.numba.klz.phrase_sums`)."""
        from fastpoly.backends.numba import klz

        self._setup()
        return klz.phrase_sums(keys, n)

    def encode_blocks(self, keys: np.ndarray, counts: np.ndarray, first: np.ndarray, block: int) -> Any:
        """The block codec's bytes and block index (:func:`fastpoly.backends.numba.codec.encode_blocks`)."""
        from fastpoly.backends.numba.codec import encode_blocks

        return encode_blocks(keys, counts, first, block)

    def decode_blocks(self, buf: np.ndarray, index: np.ndarray, n_words: int) -> Any:
        """Records of encoded blocks (:func:`fastpoly.backends.numba.codec.decode_blocks`)."""
        from fastpoly.backends.numba.codec import decode_blocks

        return decode_blocks(buf, index, n_words)

    def tally_engine(self) -> Any:
        """The compiled per-block tables of the streaming histograms (:mod:`fastpoly.backends.numba.tally`)."""
        from fastpoly.backends.numba import tally

        self._setup()
        return tally

    def merge_sorted(self, a: Any, b: Any) -> Any:
        """Merge two sorted unique ``(keys, counts, first)`` triples (:func:`fastpoly.backends.numba.merge.merge2`)."""
        from fastpoly.backends.numba.merge import merge2

        return merge2(a, b)

    # --- evaluation ---------------------------------------------------------------------------
    def evaluate(self, net: Network, X: np.ndarray, dtype: npt.DTypeLike) -> np.ndarray:
        """Outputs ``(N, n_outputs)`` of ``net`` on every row of ``X`` in ``dtype``."""
        self._setup()
        dt = np.dtype(dtype)
        snet = structured_of(net)
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

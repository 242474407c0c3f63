"""The ``"cupy"`` backend: fused CUDA sampler with exact counting, and structured-network evaluation.

Kernels live in ``kernels/`` (package data ``fastpoly/kernels`` once installed;
see :mod:`fastpoly.backends.cuda.source`).  They are compiled on first use with NVRTC
through :class:`cupy.RawModule` (memoised per process; CuPy caches the binaries
on disk), templates instantiated through ``name_expressions``:

* ``fastpoly_sample_fixed<N0, H1, H2, R, ACT, MODE>`` for ``N0-H1-H2-1``
  networks on at most 128 rows (the anchor ``7-40-40-1`` on 128 Boolean inputs),
* ``fastpoly_sample_generic<MODE>`` for everything else,
* ``fastpoly_csr_layer<T, FUSED>`` for :meth:`CupyBackend.evaluate`.

Importing this module does not import CuPy; :meth:`CupyBackend.availability`
reports why the backend cannot run (no CuPy, no device) without raising.

Counting (``count_range``): each GPU sub-batch tallies the two constant
functions per block before one global atomic per block, appends every other
accepted ``(key, index)`` to a buffer, sorts it on the GPU (stable radix
argsorts, least significant first) and run-length encodes it; the sorted runs
are copied to the host and merged with :func:`fastpoly.counts.merge_sorted_counts`.
Sub-batches are sized from a device-memory budget; an out-of-memory error
halves the sub-batch (with a ``RuntimeWarning``) and redoes it, so no sample is
ever lost or counted twice.
"""
from __future__ import annotations

import importlib.util
import os
import threading
import warnings

import numpy as np

from fastpoly.activations import CODES, SAMPLER_CODES
from fastpoly.backends.base import Backend, CountBatch, SampleBatch, check_range
from fastpoly.backends.counting import merge_sorted_counts_reference as merge_sorted_counts
from fastpoly.backends.cuda import source as src
from fastpoly.network import Network, forward_reference
from fastpoly.poly.structured import StructuredNetwork

__all__ = ["CupyBackend", "POLY_ACT_CODES", "DENSE_ACT_CODES"]

#: activation name -> code of kernels/poly.cu (FP_ACT_*, generated from the activation table)
POLY_ACT_CODES = dict(CODES)
#: dense-network activations the evaluation kernel supports (fastpoly.activations names)
DENSE_ACT_CODES = {k: POLY_ACT_CODES[k] for k in ("identity", "relu", "tanh", "sign", "erf")}

_MAX_SUB_BATCH = 1 << 26
_MIN_SUB_BATCH = 1 << 10
_SMEM_STATIC_LIMIT = 48 * 1024


def _round_up(a, b):
    return -(-a // b) * b


class CupyBackend(Backend):
    """NVIDIA GPUs through CuPy.

    Parameters
    ----------
    threads_per_block : int
        Threads per block (a multiple of 32; the fixed-size sampler uses at
        most 128).  Tests shrink it to 32 so tiny inputs span several blocks.
    max_blocks : int or None
        Cap on the grid (None: enough blocks to fill the device a few times).
        Small values make every warp loop over many samples.
    memory_budget : int or None
        Bytes of device memory a sub-batch may use; None: ``memory_fraction``
        of the free memory at first use (``$FASTPOLY_CUPY_MEMORY`` overrides).
    memory_fraction : float
    kernel : {"auto", "fixed", "generic"}
        Force the generic sampler (or, where possible, the fixed-size one).
    wchunk : int
        Weights per warp per chunk of the generic sampler (shared memory).
    max_sub_batch : int or None
        Upper bound on the samples of one kernel launch.
    """

    name = "cupy"

    def __init__(self, threads_per_block=128, max_blocks=None, memory_budget=None, memory_fraction=0.5,
                 kernel="auto", wchunk=256, max_sub_batch=None):
        if threads_per_block % 32 or not 32 <= threads_per_block <= 1024:
            raise ValueError("threads_per_block must be a multiple of 32 in [32, 1024]")
        if kernel not in ("auto", "fixed", "generic"):
            raise ValueError(f"unknown kernel {kernel!r}; valid: auto, fixed, generic")
        self.threads_per_block = int(threads_per_block)
        self.max_blocks = None if max_blocks is None else int(max_blocks)
        self._budget = None if memory_budget is None else int(memory_budget)
        self.memory_fraction = float(memory_fraction)
        self.kernel = kernel
        self.wchunk = int(wchunk)
        self.max_sub_batch = int(max_sub_batch) if max_sub_batch else _MAX_SUB_BATCH
        self._lock = threading.RLock()
        self._modules = {}
        self._plan_cache = {}
        self._cp = None
        self._stream = None
        self._props = None
        self._shrunk = {}  # (kind, plan-ish key) -> sub-batch cap learnt from OOM

    # --- availability and set-up --------------------------------------------------------
    def availability(self):
        """``(True, "")`` or ``(False, reason)``."""
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

    def _cupy(self):
        if self._cp is None:
            with self._lock:
                if self._cp is None:
                    import cupy

                    self._stream = cupy.cuda.Stream(non_blocking=True)
                    dev = cupy.cuda.Device()
                    p = cupy.cuda.runtime.getDeviceProperties(dev.id)
                    name = p.get("name", b"")
                    self._props = {
                        "name": name.decode() if isinstance(name, bytes) else str(name),
                        "sm_count": int(p.get("multiProcessorCount", 1)),
                        "cc": f"{p.get('major', '?')}.{p.get('minor', '?')}",
                        "smem_per_sm": int(p.get("sharedMemPerMultiprocessor", 100 * 1024)),
                    }
                    self._cp = cupy
        return self._cp

    def memory_budget(self):
        """Bytes of device memory one sub-batch may use."""
        if self._budget is not None:
            return self._budget
        env = os.environ.get("FASTPOLY_CUPY_MEMORY")
        if env:
            return int(float(env))
        cp = self._cupy()
        free, _total = cp.cuda.runtime.memGetInfo()
        pool = cp.get_default_memory_pool()
        return int(self.memory_fraction * (free + pool.free_bytes()))

    def _module(self, filename, names):
        """Memoised RawModule of one kernel file with the given template instantiations."""
        key = (filename, tuple(names))
        mod = self._modules.get(key)
        if mod is None:
            cp = self._cupy()
            # the digest of every source makes CuPy's on-disk cache see header edits too
            code = f"// fastpoly kernel sources {src.source_digest()}\n" + src.read_source(filename)
            options = tuple(src.NVRTC_OPTIONS) + (f"-I{src.kernel_dir()}",)
            mod = cp.RawModule(code=code, options=options, name_expressions=list(names))
            self._modules[key] = mod
        return mod

    def describe(self):
        """One line for the CLI (device, threads)."""
        ok, why = self.availability()
        if not ok:
            return f"cupy (unavailable: {why})"
        self._cupy()
        p = self._props
        return f"cupy on {p['name']} (compute capability {p['cc']}, {p['sm_count']} SMs)"

    def default_batch_size(self, plan):
        """Samples per batch when the user gives none."""
        flops = 2 * plan.m * sum(a * b for a, b in zip(plan.mlp.widths[:-1], plan.mlp.widths[1:]))
        return int(min(1 << 25, max(1 << 14, 2e13 / max(flops, 1))))

    # --- per-plan device data -----------------------------------------------------------
    def _plan_data(self, plan):
        key = (plan.digest, plan.train_rows.tobytes(), plan.train_labels.tobytes(), repr(plan.mlp))
        d = self._plan_cache.get(key)
        if d is not None:
            return d
        cp = self._cupy()
        desc, scales = src.net_desc(plan.mlp)
        order, labels = src.row_order(plan)
        Xt = np.ascontiguousarray(plan.X[order].T, dtype=np.float32)
        with self._stream:
            d = {
                "desc": cp.asarray(desc),
                "scales": cp.asarray(scales),
                "Xt": cp.asarray(Xt),
                "labels": cp.asarray(labels if labels.size else np.zeros(1, np.uint8)),
                "m": int(plan.m),
                "nkey": int(plan.key_rows.size),
                "W": int(plan.n_words),
            }
            d.update(self._choose_kernel(plan))
        if len(self._plan_cache) >= 4:
            self._plan_cache.pop(next(iter(self._plan_cache)))
        self._plan_cache[key] = d
        return d

    def _choose_kernel(self, plan):
        w = plan.mlp.widths
        m = plan.m
        R = max(1, -(-m // 32))
        fits = (
            len(w) == 4 and m <= 128 and w[0] <= 32 and w[1] <= 64 and w[2] <= 64 and R * w[1] <= 160
            and plan.mlp.n_params < 2**31
        )
        if fits:
            total = src.fixed_layout_floats(w[0], w[1], w[2])
            wpb = min(self.threads_per_block, 128) // 32
            wpb = min(wpb, _SMEM_STATIC_LIMIT // (4 * total))
            fits = wpb >= 1
        if self.kernel == "generic" or not fits:
            if self.kernel == "fixed" and not fits:
                warnings.warn("kernel='fixed' does not fit this architecture; using the generic sampler",
                              RuntimeWarning, stacklevel=3)
            maxw = max(w[1:])
            W = plan.n_words
            stride = _round_up(2 * maxw * m + 2 * W, 4)
            return {"kind": "generic", "wpb": min(self.threads_per_block, 256) // 32, "maxw": maxw, "stride": stride}

        return {"kind": "fixed", "wpb": wpb, "R": R, "shape": (w[0], w[1], w[2]),
                "act": SAMPLER_CODES[plan.mlp.activation], "smem_per_warp": 4 * total}

    def _kernel(self, d, mode):
        if d["kind"] == "fixed":
            n0, h1, h2 = d["shape"]
            names = [src.fixed_kernel_name(n0, h1, h2, d["R"], d["act"], md)
                     for md in (src.MODE_KEYS, src.MODE_COUNT)]
            return self._module("sampler.cu", names).get_function(names[mode])
        names = [src.generic_kernel_name(md) for md in (src.MODE_KEYS, src.MODE_COUNT)]
        return self._module("sampler.cu", names).get_function(names[mode])

    def _grid(self, d, kern, n):
        """Blocks for n samples (one warp each), and the dynamic shared memory per block."""
        wpb = d["wpb"]
        need = -(-n // wpb)
        smem = wpb * (d["smem_per_warp"] if d["kind"] == "fixed" else 4 * self.wchunk)
        regs = max(int(getattr(kern, "num_regs", 64)), 16)
        warps_sm = max(1, min(64, 65536 // (_round_up(regs, 8) * 32)))
        blocks_sm = max(1, min(32, warps_sm // wpb, self._props["smem_per_sm"] // max(smem + 1024, 1)))
        cap = self._props["sm_count"] * blocks_sm * 2
        if self.max_blocks:
            cap = min(cap, self.max_blocks)
        if d["kind"] == "generic":  # scratch of every warp within half the memory budget
            cap = min(cap, max(1, (self.memory_budget() // 2) // (wpb * d["stride"] * 4)))
        return max(1, min(need, cap)), smem

    # --- launches ------------------------------------------------------------------------
    def _launch(self, d, mode, seed, start, n, outs):
        cp = self._cp
        kern = self._kernel(d, mode)
        grid, smem = self._grid(d, kern, n)
        args = [np.uint64(seed), np.uint64(start), np.uint64(n), d["desc"], d["scales"], d["Xt"],
                np.int32(d["m"]), np.int32(d["nkey"]), d["labels"]] + list(outs)
        if d["kind"] == "generic":
            nwarps = grid * d["wpb"]
            scratch = cp.empty(nwarps * d["stride"], dtype=cp.float32)
            args += [scratch, np.int64(d["stride"]), np.int32(d["maxw"]), np.int32(self.wchunk)]
        kern((grid,), (32 * d["wpb"],), tuple(args), shared_mem=smem)

    def _sub_batch(self, d, per_sample, kind):
        budget = self.memory_budget()
        if d["kind"] == "generic":
            budget //= 2  # the other half is for the scratch of the warps (see _grid)
        sb = max(_MIN_SUB_BATCH, budget // max(per_sample, 1))
        sb = min(sb, self.max_sub_batch, self._shrunk.get(kind, _MAX_SUB_BATCH))
        return int(max(1, sb))

    def _run_chunked(self, kind, d, per_sample, start, stop, work):
        """Call ``work(a, b)`` over [start, stop) in sub-batches; on OOM halve and redo (never lose samples)."""
        cp = self._cupy()
        oom = cp.cuda.memory.OutOfMemoryError
        sb = self._sub_batch(d, per_sample, kind)
        out = []
        a = start
        while a < stop:
            b = min(stop, a + sb)
            try:
                with self._stream:
                    res = work(a, b)
                    self._stream.synchronize()
            except oom as exc:
                cp.get_default_memory_pool().free_all_blocks()
                if b - a <= 1:
                    raise
                sb = max(1, (b - a) // 2)
                self._shrunk[kind] = sb
                warnings.warn(
                    f"cupy backend: out of device memory with {b - a} samples per launch ({exc}); "
                    f"retrying with {sb}",
                    RuntimeWarning, stacklevel=3,
                )
                continue
            out.append(res)
            a = b
        return out

    # --- the Backend API ---------------------------------------------------------------------
    def sample_keys(self, plan, start, stop, margins=False):
        """Keys (and acceptance, optional margins) of samples ``start..stop-1`` in index order."""
        start, stop = check_range(start, stop)
        W = plan.n_words
        if stop == start:
            return SampleBatch(np.zeros((0, W), np.uint64), np.zeros(0, bool),
                               np.zeros(0, np.float32) if margins else None)
        cp = self._cupy()
        d = self._plan_data(plan)

        def work(a, b):
            n = b - a
            keys = cp.empty((n, W), dtype=cp.uint64)
            acc = cp.empty(n, dtype=cp.uint8)
            marg = cp.empty(n, dtype=cp.float32)
            dummy64 = cp.zeros(1, dtype=cp.uint64)
            self._launch(d, src.MODE_KEYS, plan.seed, a, n,
                         [keys, acc, marg, dummy64, dummy64, dummy64])
            return keys.get(stream=self._stream), acc.get(stream=self._stream), marg.get(stream=self._stream)

        parts = self._run_chunked("keys", d, 8 * W + 5 + 16, start, stop, work)
        keys = np.concatenate([p[0] for p in parts]).reshape(-1, W)
        acc = np.concatenate([p[1] for p in parts]).astype(bool)
        marg = np.concatenate([p[2] for p in parts]) if margins else None
        return SampleBatch(keys, acc, marg)

    def count_range(self, plan, start, stop):
        """Draw, reject and count samples ``start..stop-1``; returns a :class:`CountBatch`."""
        start, stop = check_range(start, stop)
        W = plan.n_words
        nkey = int(plan.key_rows.size)
        empty = CountBatch(np.zeros((0, W), np.uint64), np.zeros(0, np.int64), np.zeros(0, np.uint64),
                           stop - start, 0)
        if stop == start:
            return empty
        cp = self._cupy()
        d = self._plan_data(plan)
        ones = np.full((1, W), np.uint64(0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
        if nkey % 64:
            ones[0, -1] = np.uint64((1 << (nkey % 64)) - 1)
        zero = np.zeros((1, W), np.uint64)

        def work(a, b):
            n = b - a
            stats = cp.zeros(6, dtype=cp.uint64)
            stats[4:] = cp.uint64(0xFFFFFFFFFFFFFFFF)
            bkeys = cp.empty((n, W), dtype=cp.uint64)
            bidx = cp.empty(n, dtype=cp.uint64)
            dummy8 = cp.zeros(1, dtype=cp.uint8)
            dummyf = cp.zeros(1, dtype=cp.float32)
            dummy64 = cp.zeros(1, dtype=cp.uint64)
            self._launch(d, src.MODE_COUNT, plan.seed, a, n, [dummy64, dummy8, dummyf, bkeys, bidx, stats])
            st = stats.get(stream=self._stream)
            n_out = int(st[0])
            parts = []
            if n_out:
                parts.append(self._sort_rle(bkeys[:n_out], bidx[:n_out]))
            if st[2]:
                parts.append((zero.copy(), np.array([st[2]], np.int64), np.array([st[4]], np.uint64)))
            if st[3]:
                parts.append((ones.copy(), np.array([st[3]], np.int64), np.array([st[5]], np.uint64)))
            return parts, int(st[1])

        per_sample = 4 * (8 * W + 8) + 16
        res = self._run_chunked("count", d, per_sample, start, stop, work)
        parts = [p for r in res for p in r[0]]
        n_acc = sum(r[1] for r in res)
        merged = merge_sorted_counts(parts)
        if merged is None:
            empty.n_accepted = n_acc
            return empty
        k, c, f = merged
        return CountBatch(k, c, f, stop - start, n_acc)

    def _sort_rle(self, keys, idx):
        """Sort (key, index) pairs as big integers then by index (GPU), run-length encode, copy to host."""
        cp = self._cp
        n, W = keys.shape
        order = cp.argsort(idx)  # stable radix sorts, least significant key first
        for w in range(W):
            col = keys[:, w][order]
            order = order[cp.argsort(col)]
        sk = keys[order]
        si = idx[order]
        new = cp.ones(n, dtype=cp.bool_)
        if n > 1:
            new[1:] = cp.any(sk[1:] != sk[:-1], axis=1)
        starts = cp.flatnonzero(new)
        counts = cp.diff(cp.concatenate([starts, cp.asarray([n], dtype=starts.dtype)]))
        return (sk[starts].get(stream=self._stream), counts.astype(cp.int64).get(stream=self._stream),
                si[starts].get(stream=self._stream))

    # --- evaluation --------------------------------------------------------------------------
    def evaluate(self, net, X, dtype):
        """Outputs ``(N, n_outputs)`` of ``net`` on every row of ``X`` in ``dtype``."""
        dtype = np.dtype(dtype).type
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dtype).name}")
        snet = net if isinstance(net, StructuredNetwork) else getattr(net, "structured", None)
        if snet is not None:
            layers = [self._csr_layer(L.indptr, L.indices, L.data, L.bias, L.activation, L.shift, POLY_ACT_CODES)
                      for L in snet.layers]
            fused = False
        elif isinstance(net, Network):
            if any(layer.activation not in DENSE_ACT_CODES for layer in net.layers):
                warnings.warn("cupy backend: an activation has no CUDA kernel; evaluating with NumPy",
                              RuntimeWarning, stacklevel=2)
                return forward_reference(net, X, dtype)
            layers = []
            for layer in net.layers:
                fo, fi = layer.W.shape
                indptr = np.arange(fo + 1, dtype=np.int64) * fi
                indices = np.tile(np.arange(fi, dtype=np.int64), fo)
                layers.append(self._csr_layer(indptr, indices, np.asarray(layer.W, np.float64).ravel(),
                                              layer.b, layer.activation, None, DENSE_ACT_CODES))
            fused = dtype == np.float32  # the FMA rule of dense float32 networks
        else:
            raise ValueError(f"cannot evaluate a {type(net).__name__} on the cupy backend")
        return self._eval_layers(layers, np.asarray(X), dtype, fused)

    @staticmethod
    def _csr_layer(indptr, indices, data, bias, act, shift, table):
        if act not in table:
            raise ValueError(f"activation {act!r} has no CUDA kernel; valid: {', '.join(table)}")
        return {"indptr": np.ascontiguousarray(indptr, np.int64), "indices": np.ascontiguousarray(indices, np.int64),
                "data": np.asarray(data, np.float64), "bias": np.asarray(bias, np.float64),
                "act": table[act], "shift": None if shift is None else np.asarray(shift, np.float64),
                "fan_out": int(len(bias))}

    def _eval_layers(self, layers, X, dtype, fused):
        cp = self._cupy()
        tname = "float" if dtype == np.float32 else "double"
        names = [src.poly_kernel_name(t, f) for t in ("float", "double") for f in (0, 1)]
        kern = self._module("poly.cu", names).get_function(src.poly_kernel_name(tname, fused))
        N = X.shape[0]
        n_out = layers[-1]["fan_out"]
        if N == 0:
            return np.zeros((0, n_out), dtype)
        itemsize = np.dtype(dtype).itemsize
        maxw = max([X.shape[1]] + [L["fan_out"] for L in layers])
        with self._stream:
            dev = [{k: (cp.asarray(v.astype(dtype) if k in ("data", "bias", "shift") else v)
                        if isinstance(v, np.ndarray) else v) for k, v in L.items()} for L in layers]
        tpb = min(self.threads_per_block, 256)

        def work(a, b):
            n = b - a
            h = cp.asarray(np.ascontiguousarray(X[a:b].T, dtype=dtype))
            for L in dev:
                out = cp.empty((L["fan_out"], n), dtype=dtype)
                gy = min(L["fan_out"], 65535)
                # a null pointer (uint64 0) means no centering shift
                args = (np.int64(n), np.int32(L["fan_out"]), L["indptr"], L["indices"], L["data"], L["bias"],
                        L["shift"] if L["shift"] is not None else np.uint64(0), np.int32(L["act"]), h, out)
                kern((-(-n // tpb), gy), (tpb,), args)
                h = out
            return cp.ascontiguousarray(h.T).get(stream=self._stream)

        per_row = 3 * maxw * itemsize + 16
        parts = self._run_chunked("eval", {"kind": "eval"}, per_row, 0, N, work)
        return np.concatenate(parts).reshape(N, n_out)

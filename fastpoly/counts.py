"""Exact function counts: :class:`FunctionCounts`, its merge, and its self-checking file format."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile

import numpy as np

from .keys import as_key, key_to_hex, sort_order
from .stats import wilson_interval

__all__ = ["FunctionCounts", "merge_sorted_counts", "CountsFileError", "atomic_write_bytes", "merge_files"]

FORMAT = "fastpoly.counts"
FORMAT_VERSION = 1


class CountsFileError(ValueError):
    """A counts file is truncated, tampered with, or not a fastpoly counts file."""


def merge_sorted_counts(parts):
    """Merge ``[(keys, counts, first_index), ...]`` (each sorted, unique) into one sorted, unique triple."""
    parts = [p for p in parts if p[0].shape[0]]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    if _numba_merge_available() and sum(p[0].shape[0] for p in parts) >= _NUMBA_MERGE_MIN:
        from ._numba_merge import merge2

        while len(parts) > 1:  # pairwise, smallest first: linear work per level
            parts.sort(key=lambda p: p[0].shape[0])
            parts = [merge2(parts[0], parts[1])] + parts[2:]
        return parts[0]
    return _merge_sorted_counts_numpy(parts)


#: below this many records the NumPy path is as fast as compiling/calling the kernel
_NUMBA_MERGE_MIN = 1 << 15


def _numba_merge_available():
    import importlib.util

    return importlib.util.find_spec("numba") is not None


def _merge_sorted_counts_numpy(parts):
    """Reference implementation of :func:`merge_sorted_counts` (concatenate, sort, reduce)."""
    keys = np.concatenate([p[0] for p in parts])
    counts = np.concatenate([p[1] for p in parts])
    first = np.concatenate([p[2] for p in parts])
    order = sort_order(keys)
    keys, counts, first = keys[order], counts[order], first[order]
    new = np.ones(keys.shape[0], bool)
    new[1:] = np.any(keys[1:] != keys[:-1], axis=1)
    starts = np.flatnonzero(new)
    return (
        np.ascontiguousarray(keys[starts]),
        np.add.reduceat(counts, starts).astype(np.int64),
        np.minimum.reduceat(first, starts).astype(np.uint64),
    )


def _merge_ranges(ranges):
    rs = sorted((int(a), int(b)) for a, b in ranges if b > a)
    out = []
    for a, b in rs:
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def _overlap(r1, r2):
    for a, b in r1:
        for c, d in r2:
            if a < d and c < b:
                return (max(a, c), min(b, d))
    return None


def public_mode():
    """The mode a plain ``open(path, "w")`` would give (0o666 minus the umask); mkstemp uses 0o600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, rename)."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        os.chmod(tmp, public_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class FunctionCounts:
    """Exact counts of the Boolean functions drawn by a sampler.

    Attributes
    ----------
    keys : uint64 array (K, n_words)
        Distinct keys, sorted as big integers (see :mod:`fastpoly.keys`).
    counts : int64 array (K,)
    first_index : uint64 array (K,)
        Smallest sample index that produced each key (reproduce it with
        ``MLP.instantiate(seed, index)``).
    n_samples : int
        Samples drawn (accepted or not).
    n_accepted : int
        Samples consistent with the train set (``== n_samples`` when unconditioned).
    meta : dict
        ``arch``, ``seed``, ``ranges`` (list of ``[start, stop)`` index ranges),
        ``inputs_digest``, ``n_rows``, ``n_key_bits``, ``train_rows``, ``train_labels``,
        ``fastpoly_version``.
    """

    _COMPAT = ("arch", "inputs_digest", "n_rows", "train_rows", "train_labels", "n_key_bits", "sgd_recipe")

    def __init__(self, keys, counts, first_index, n_samples, n_accepted, meta):
        self.keys = np.ascontiguousarray(keys, dtype=np.uint64)
        self.counts = np.ascontiguousarray(counts, dtype=np.int64)
        self.first_index = np.ascontiguousarray(first_index, dtype=np.uint64)
        self.n_samples = int(n_samples)
        self.n_accepted = int(n_accepted)
        self.meta = dict(meta)
        #: run information that is not part of the result (backend, timing); not saved
        self.info = {}
        if self.keys.ndim != 2 or self.counts.shape != (self.keys.shape[0],) or self.first_index.shape != self.counts.shape:
            raise ValueError("keys (K, W), counts (K,) and first_index (K,) do not match")

    @classmethod
    def empty(cls, n_words, meta):
        """No samples yet."""
        return cls(np.zeros((0, n_words), np.uint64), np.zeros(0, np.int64), np.zeros(0, np.uint64), 0, 0, meta)

    # --- basic queries ---------------------------------------------------------------
    @property
    def n_words(self):
        return self.keys.shape[1]

    @property
    def n_key_bits(self):
        return int(self.meta.get("n_key_bits", 64 * self.n_words))

    @property
    def n_distinct(self):
        return int(self.keys.shape[0])

    def __len__(self):
        return self.n_distinct

    def __repr__(self):
        return (
            f"FunctionCounts({self.n_distinct} distinct functions, n_samples={self.n_samples}, "
            f"n_accepted={self.n_accepted}, arch={self.meta.get('arch', {}).get('widths')})"
        )

    def __eq__(self, other):
        if not isinstance(other, FunctionCounts):
            return NotImplemented
        return (
            self.n_samples == other.n_samples
            and self.n_accepted == other.n_accepted
            and np.array_equal(self.keys, other.keys)
            and np.array_equal(self.counts, other.counts)
            and np.array_equal(self.first_index, other.first_index)
            and {k: self.meta.get(k) for k in self._COMPAT + ("seed", "ranges")}
            == {k: other.meta.get(k) for k in self._COMPAT + ("seed", "ranges")}
        )

    def _find(self, key):
        key = as_key(key, self.n_key_bits)
        if self.n_distinct == 0:
            return None
        hit = np.flatnonzero(np.all(self.keys == key[None, :], axis=1))
        return int(hit[0]) if hit.size else None

    def count(self, key):
        """How many accepted samples produced ``key`` (hex string, 0/1 string, int or words)."""
        i = self._find(key)
        return 0 if i is None else int(self.counts[i])

    def probability(self, key, confidence=None):
        """Estimated probability of ``key`` among accepted samples.

        With ``confidence`` (e.g. 0.95) returns ``(p, lower, upper)`` (Wilson interval).
        """
        k = self.count(key)
        n = self.n_accepted
        p = k / n if n else float("nan")
        if confidence is None:
            return p
        lo, hi = wilson_interval(k, n, confidence)
        return p, float(lo), float(hi)

    def hex(self, i):
        """Hex string of the ``i``-th stored key."""
        return key_to_hex(self.keys[i], self.n_key_bits)

    def ones(self):
        """Number of ones (T) of each key."""
        return _popcount_rows(self.keys)

    def top(self, k=10, confidence=0.95):
        """The ``k`` most frequent functions, as a list of dicts.

        Each dict has ``key`` (hex), ``count``, ``probability``, ``lower``, ``upper``
        (Wilson interval at ``confidence``), ``ones`` and ``first_index``.  Ties are
        broken by key order, so the result is deterministic.
        """
        if k < 0:
            raise ValueError("k must be >= 0")
        order = np.lexsort((np.arange(self.n_distinct), -self.counts))[:k]
        lo, hi = wilson_interval(self.counts[order], self.n_accepted, confidence)
        ones = _popcount_rows(self.keys[order])
        return [
            {
                "key": self.hex(int(i)),
                "count": int(self.counts[i]),
                "probability": float(self.counts[i]) / self.n_accepted if self.n_accepted else float("nan"),
                "lower": float(lo[j]),
                "upper": float(hi[j]),
                "ones": int(ones[j]),
                "first_index": int(self.first_index[i]),
            }
            for j, i in enumerate(order)
        ]

    # --- merging ---------------------------------------------------------------------
    def compatible_with(self, other):
        """Return None if the two results can be merged, else the reason (a string)."""
        for k in self._COMPAT:
            if self.meta.get(k) != other.meta.get(k):
                return f"incompatible {k}: {self.meta.get(k)!r} != {other.meta.get(k)!r}"
        if self.n_words != other.n_words:
            return "keys of different lengths"
        if self.meta.get("seed") == other.meta.get("seed"):
            ov = _overlap(self.meta.get("ranges", []), other.meta.get("ranges", []))
            if ov is not None:
                return (
                    f"index ranges overlap on [{ov[0]}, {ov[1]}) for seed {self.meta.get('seed')}: "
                    "merging would double count"
                )
        return None

    def merge(self, other):
        """Exact union of two results of the same job (returns a new object).

        Raises
        ------
        ValueError
            If architectures, inputs or train sets differ, or if both come from
            the same seed with overlapping index ranges (that would double count).
        """
        why = self.compatible_with(other)
        if why is not None:
            raise ValueError(f"cannot merge counts: {why}")
        m = merge_sorted_counts(
            [(self.keys, self.counts, self.first_index), (other.keys, other.counts, other.first_index)]
        )
        if m is None:
            m = (self.keys[:0], self.counts[:0], self.first_index[:0])
        meta = dict(self.meta)
        if self.meta.get("seed") == other.meta.get("seed"):
            meta["ranges"] = _merge_ranges(list(self.meta.get("ranges", [])) + list(other.meta.get("ranges", [])))
        else:
            # first_index is only meaningful within one seed: keep per-seed ranges
            meta["seed"] = None
            meta["ranges_by_seed"] = _merge_seed_ranges(self.meta, other.meta)
            meta["ranges"] = []
        return FunctionCounts(*m, self.n_samples + other.n_samples, self.n_accepted + other.n_accepted, meta)

    def _add_batch(self, batch, start, stop):
        """Merge a backend's CountBatch for ``[start, stop)`` in place (internal)."""
        m = merge_sorted_counts(
            [(self.keys, self.counts, self.first_index), (batch.keys, batch.counts, batch.first_index)]
        )
        if m is not None:
            self.keys, self.counts, self.first_index = m
        self.n_samples += int(batch.n_samples)
        self.n_accepted += int(batch.n_accepted)
        self.meta["ranges"] = _merge_ranges(list(self.meta.get("ranges", [])) + [[start, stop]])

    # --- file format -----------------------------------------------------------------
    def _payload(self):
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "n_samples": self.n_samples,
            "n_accepted": self.n_accepted,
            "meta": self.meta,
        }
        return json.dumps(header, sort_keys=True)

    def _digest(self, header_json):
        h = hashlib.sha256()
        h.update(header_json.encode())
        for a in (self.keys, self.counts, self.first_index):
            h.update(repr(a.shape).encode())
            h.update(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes())
        return h.hexdigest()

    def to_bytes(self):
        """Serialise to the self-describing ``.npz`` counts format (with a sha256 checksum)."""
        header = self._payload()
        return _npz_bytes(
            {
                "header": np.array(header),
                "sha256": np.array(self._digest(header)),
                "keys": self.keys.astype("<u8"),
                "counts": self.counts.astype("<i8"),
                "first_index": self.first_index.astype("<u8"),
            }
        )

    def save(self, path):
        """Write to ``path`` atomically (temp file + rename); the checksum is verified on :meth:`load`."""
        atomic_write_bytes(path, self.to_bytes())

    @classmethod
    def from_bytes(cls, data, source="<bytes>"):
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                header = str(z["header"])
                digest = str(z["sha256"])
                keys = z["keys"].astype(np.uint64)
                counts = z["counts"].astype(np.int64)
                first = z["first_index"].astype(np.uint64)
        except CountsFileError:
            raise
        except Exception as e:  # zip/npz damage of any kind
            raise CountsFileError(f"{source}: not a readable fastpoly counts file ({e})") from None
        try:
            h = json.loads(header)
        except ValueError:
            raise CountsFileError(f"{source}: corrupted header") from None
        if h.get("format") != FORMAT:
            raise CountsFileError(f"{source}: not a fastpoly counts file")
        if h.get("version") != FORMAT_VERSION:
            raise CountsFileError(f"{source}: unsupported counts format version {h.get('version')}")
        obj = cls(keys, counts, first, h["n_samples"], h["n_accepted"], h["meta"])
        if obj._digest(header) != digest:
            raise CountsFileError(f"{source}: checksum mismatch (file truncated or modified)")
        return obj

    @classmethod
    def load(cls, path, mmap=False):
        """Read a counts file written by :meth:`save`, verifying its checksum.

        Parameters
        ----------
        path : path
        mmap : bool
            Memory-map the arrays instead of reading them (for results larger
            than RAM, e.g. written by ``sample(..., out=PATH)``); the checksum is
            still verified, streaming over the file.

        Raises
        ------
        CountsFileError
            If the file is truncated, modified or not a fastpoly counts file.
        """
        if mmap:
            return _load_mmap(cls, os.fspath(path))
        with open(path, "rb") as fh:
            data = fh.read()
        return cls.from_bytes(data, source=os.fspath(path))

    # --- research API (see fastpoly.conditioning, fastpoly.complexity) ----------------
    @property
    def conditioned(self):
        """True if the keys cover only the test rows (a posterior run)."""
        return bool(self.meta.get("train_rows"))

    def key_rows(self):
        """Rows of X that the key's bits stand for (ascending)."""
        kr = self.meta.get("key_rows")
        if kr is None:
            return np.arange(int(self.meta.get("n_rows", self.n_key_bits)), dtype=np.int64)
        return np.asarray(kr, dtype=np.int64)

    def full_keys(self):
        """Keys over all rows of X: for conditioned runs the train rows carry the train labels.

        Returns
        -------
        uint64 array (K, ceil(n_rows / 64))
        """
        from .keys import pack_bits, unpack_bits

        if not self.conditioned:
            return self.keys
        n_rows = int(self.meta["n_rows"])
        full = np.zeros((self.n_distinct, n_rows), bool)
        full[:, self.key_rows()] = unpack_bits(self.keys, self.n_key_bits).astype(bool)
        full[:, np.asarray(self.meta["train_rows"], np.int64)] = np.asarray(self.meta["train_labels"], bool)
        return pack_bits(full)

    @property
    def n_rows(self):
        return int(self.meta.get("n_rows", self.n_key_bits))

    def is_boolean(self):
        """True if X was all ``2**n_inputs`` Boolean inputs in the standard order ({0,1} or {-1,1})."""
        n_in = self.meta.get("arch", {}).get("widths", [0])[0]
        if not n_in or self.n_rows != 2**n_in:
            return False
        from .arch import boolean_inputs
        from .plan import inputs_digest

        d = self.meta.get("inputs_digest")
        return d in (inputs_digest(boolean_inputs(n_in)), inputs_digest(boolean_inputs(n_in, centered=True)))

    def complexity(self, order="rows"):
        """Complexity of every stored function (over all rows of X; see :mod:`fastpoly.complexity`).

        Returns
        -------
        dict of arrays (K,)
            ``klz``, ``entropy``, ``ones`` (T) and, for Boolean inputs, ``csr``.
            Cached per ``order``.
        """
        from .complexity import complexity_table

        cache = self.__dict__.setdefault("_cx_cache", {})
        if order not in cache:
            cache[order] = complexity_table(self.full_keys(), self.n_rows, boolean=self.is_boolean(), order=order)
        return cache[order]

    def probabilities(self, confidence=0.95, method="wilson"):
        """``(p, lower, upper)`` arrays of every stored function (Wilson or Clopper--Pearson)."""
        from .conditioning import _interval

        n = self.n_accepted
        p = self.counts / n if n else np.full(self.n_distinct, np.nan)
        lo, hi = _interval(self.counts, n, confidence, method)
        return p, lo, hi

    def condition(self, train_idx, labels=None, target=None):
        """Condition a prior on a train set offline (see :func:`fastpoly.conditioning.condition`)."""
        from .conditioning import condition

        return condition(self, train_idx, labels=labels, target=target)

    def posterior(self, target=None, confidence=0.95, method="wilson"):
        """Posterior summary: P(S), P_B(f|S) with intervals, generalisation errors.

        See :func:`fastpoly.conditioning.posterior_summary`.
        """
        from .conditioning import posterior_summary

        return posterior_summary(self, target=target, confidence=confidence, method=method)

    def generalization_error(self, target=None):
        """Error of every stored function on the held-out (key) rows against ``target``."""
        from .conditioning import generalization_error

        return generalization_error(self, target)

    def to_frame(self, confidence=0.95, method="wilson", order="rows"):
        """A pandas DataFrame, one row per function, most frequent first.

        Columns: ``key`` (hex, bit i = row i, over the key rows), ``count``,
        ``probability``, ``lower``, ``upper`` (interval at ``confidence``),
        ``klz``, ``entropy``, ``ones`` (T), ``csr`` (Boolean inputs only),
        ``first_index`` and, when a target is known, ``error``.

        Raises
        ------
        ImportError
            If pandas is not installed (``pip install pandas``).
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "FunctionCounts.to_frame needs pandas, which is not installed: pip install pandas"
            ) from None
        from .keys import key_to_hex

        order_idx = np.lexsort((np.arange(self.n_distinct), -self.counts))
        p, lo, hi = self.probabilities(confidence, method)
        cx = self.complexity(order)
        cols = {
            "key": [key_to_hex(self.keys[i], self.n_key_bits) for i in order_idx],
            "count": self.counts[order_idx],
            "probability": p[order_idx],
            "lower": lo[order_idx],
            "upper": hi[order_idx],
        }
        for name in ("klz", "entropy", "ones", "csr"):
            if name in cx:
                cols[name] = cx[name][order_idx]
        cols["first_index"] = self.first_index[order_idx]
        if self.meta.get("target") is not None:
            cols["error"] = self.generalization_error()[order_idx]
        return pd.DataFrame(cols)

    def key_strings(self, convention="rows"):
        """The stored keys as 0/1 strings over all rows (see :mod:`fastpoly.anchors`).

        ``convention``: ``rows`` (character i = row i), ``cpp`` (the C++ anchor's
        reversed strings) or ``python`` (the Python anchors' MSB-first strings).
        """
        from .anchors import keys_to_strings

        return keys_to_strings(self.full_keys(), self.n_rows, convention)


def _digest_stream(header_json, arrays):
    """The checksum of :meth:`FunctionCounts._digest` over ``[(shape, raw little-endian file or array)]``."""
    h = hashlib.sha256()
    h.update(header_json.encode())
    for shape, src in arrays:
        h.update(repr(tuple(int(v) for v in shape)).encode())
        if isinstance(src, np.ndarray):
            for a in range(0, src.shape[0], 1 << 20):
                h.update(np.ascontiguousarray(src[a:a + (1 << 20)]).tobytes())
        else:
            with open(src, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
    return h.hexdigest()


def _load_mmap(cls, path):
    """Memory-map a (stored, uncompressed) counts file and verify its checksum by streaming."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            header = str(np.load(zf.open("header.npy"), allow_pickle=False))
            digest = str(np.load(zf.open("sha256.npy"), allow_pickle=False))
            arrays = {}
            with open(path, "rb") as raw:
                for name in ("keys", "counts", "first_index"):
                    info = zf.getinfo(name + ".npy")
                    if info.compress_type != zipfile.ZIP_STORED:
                        raise CountsFileError(f"{path}: compressed member {name}; cannot memory-map")
                    raw.seek(info.header_offset)
                    lh = raw.read(30)
                    if lh[:4] != b"PK\x03\x04":
                        raise CountsFileError(f"{path}: damaged zip entry {name}")
                    nlen, xlen = int.from_bytes(lh[26:28], "little"), int.from_bytes(lh[28:30], "little")
                    start = info.header_offset + 30 + nlen + xlen
                    raw.seek(start)
                    version = np.lib.format.read_magic(raw)
                    rd = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                        else np.lib.format.read_array_header_2_0
                    shape, fortran, dtype = rd(raw)
                    off = raw.tell()
                    if off - start + int(np.prod(shape)) * dtype.itemsize != info.file_size:
                        raise CountsFileError(f"{path}: truncated member {name}")
                    arrays[name] = np.memmap(path, dtype=dtype, mode="r", offset=off, shape=shape) \
                        if int(np.prod(shape)) else np.zeros(shape, dtype)
    except CountsFileError:
        raise
    except Exception as e:
        raise CountsFileError(f"{path}: not a readable fastpoly counts file ({e})") from None
    try:
        h = json.loads(header)
    except ValueError:
        raise CountsFileError(f"{path}: corrupted header") from None
    if h.get("format") != FORMAT or h.get("version") != FORMAT_VERSION:
        raise CountsFileError(f"{path}: not a fastpoly counts file of version {FORMAT_VERSION}")
    got = _digest_stream(header, [(a.shape, a) for a in (arrays["keys"], arrays["counts"], arrays["first_index"])])
    if got != digest:
        raise CountsFileError(f"{path}: checksum mismatch (file truncated or modified)")
    obj = cls.__new__(cls)
    obj.keys, obj.counts, obj.first_index = arrays["keys"], arrays["counts"], arrays["first_index"]
    if obj.keys.ndim != 2 or obj.counts.shape != (obj.keys.shape[0],) or obj.first_index.shape != obj.counts.shape:
        raise CountsFileError(f"{path}: inconsistent array shapes")
    obj.n_samples, obj.n_accepted, obj.meta, obj.info = int(h["n_samples"]), int(h["n_accepted"]), h["meta"], {}
    return obj


def merge_files(paths, out, memory_budget="1GB", tmpdir=None):
    """Merge counts files of compatible runs into ``out`` with bounded memory.

    Checks compatibility like :meth:`FunctionCounts.merge` (same architecture,
    inputs and train set; no overlapping index ranges of one seed), then streams
    a k-way merge of the memory-mapped inputs.

    Returns
    -------
    FunctionCounts
        The merged result, memory-mapped from ``out``.
    """
    from .spill import merge_runs, parse_memory, write_counts_file

    if len(paths) < 1:
        raise ValueError("merge_files needs at least one counts file")
    parts = [FunctionCounts.load(p, mmap=True) for p in paths]
    acc = parts[0]
    meta_only = FunctionCounts.empty(acc.n_words, acc.meta)
    meta_only.n_samples, meta_only.n_accepted = acc.n_samples, acc.n_accepted
    for p in parts[1:]:
        other = FunctionCounts.empty(p.n_words, p.meta)
        other.n_samples, other.n_accepted = p.n_samples, p.n_accepted
        meta_only = meta_only.merge(other)  # checks compatibility and merges metadata only
    budget = parse_memory(memory_budget)
    srcs = [(np.asarray(p.keys), np.asarray(p.counts), np.asarray(p.first_index)) for p in parts]
    chunks = merge_runs(srcs, budget, acc.n_words, tmpdir=tmpdir or os.path.dirname(os.path.abspath(out)))
    write_counts_file(out, meta_only._payload(), chunks, acc.n_words)
    return FunctionCounts.load(out, mmap=True)


def _npz_bytes(arrays):
    """A deterministic ``.npz`` (fixed zip timestamps), readable by :func:`numpy.load`."""
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(arr), allow_pickle=False)
    return buf.getvalue()


def _merge_seed_ranges(a, b):
    out = {}
    for m in (a, b):
        if m.get("seed") is not None:
            out.setdefault(str(m["seed"]), []).extend(m.get("ranges", []))
        for s, r in (m.get("ranges_by_seed") or {}).items():
            out.setdefault(s, []).extend(r)
    return {s: _merge_ranges(r) for s, r in out.items()}


def _popcount_rows(keys):
    keys = np.ascontiguousarray(keys, dtype="<u8")
    if keys.shape[0] == 0:
        return np.zeros(0, np.int64)
    by = keys.view(np.uint8).reshape(keys.shape[0], -1)
    return np.unpackbits(by, axis=1).sum(axis=1).astype(np.int64)

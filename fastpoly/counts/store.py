"""Exact function counts: :class:`FunctionCounts` and its merge.

The file format is in :mod:`fastpoly.counts.fileformat`, bounded-memory merging in
:mod:`fastpoly.counts.spill`.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from fastpoly.analysis import complexity, conditioning
from fastpoly.analysis.blocks import DEFAULT_BLOCK, iter_blocks
from fastpoly.analysis.histograms import top_indices
from fastpoly.analysis.stats import interval, wilson_interval
from fastpoly.arch import boolean_inputs
from fastpoly.atomic import atomic_write_bytes
from fastpoly.counts.fileformat import (
    FORMAT,
    FORMAT_VERSION,
    CountsFileError,
    counts_file_bytes,
    read_counts_file,
    search_sorted_keys,
    write_counts_file,
)
from fastpoly.counts.merge import merge_sorted_counts
from fastpoly.counts.meta import ResultMeta
from fastpoly.counts.ranges import first_overlap, merge_ranges, merge_seed_ranges
from fastpoly.counts.spill import merge_runs, parse_memory
from fastpoly.keys import (
    as_key,
    key_to_hex,
    keys_to_strings,
    pack_bits,
    unpack_bits,
)
from fastpoly.plan import inputs_digest

__all__ = ["FunctionCounts", "CountsFileError", "merge_files"]


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
        ``fastpoly_version``; P_SGD, GP draw and GP posterior files also ``estimator``,
        ``meta_version`` and ``inputs`` (see :mod:`fastpoly.counts.meta` and :attr:`result_meta`).

    Notes
    -----
    A compressed (format 3) file loaded with ``load(path, mmap=True)`` keeps its blocks on disk:
    ``n_distinct``, ``len()``, ``n_words``, ``meta`` come from the header, :meth:`iter_blocks`,
    :meth:`rows`, :meth:`top` and the streaming analysis decode block by block, and the first
    access to ``keys``, ``counts`` or ``first_index`` decodes the whole file into memory (fine
    for small files; for large ones use the block methods).
    """

    _COMPAT = ("arch", "inputs_digest", "n_rows", "train_rows", "train_labels", "n_key_bits", "sgd_recipe")

    def __init__(self, keys: ArrayLike, counts: ArrayLike, first_index: ArrayLike, n_samples: int, n_accepted: int,
                 meta: dict[str, Any]) -> None:
        self.keys = np.ascontiguousarray(keys, dtype=np.uint64)
        self.counts = np.ascontiguousarray(counts, dtype=np.int64)
        self.first_index = np.ascontiguousarray(first_index, dtype=np.uint64)
        self.n_samples = int(n_samples)
        self.n_accepted = int(n_accepted)
        self.meta = dict(meta)
        #: run information that is not part of the result (backend, timing); not saved
        self.info: dict[str, Any] = {}
        if self.keys.ndim != 2 or self.counts.shape != (self.keys.shape[0],) or self.first_index.shape != self.counts.shape:
            raise ValueError("keys (K, W), counts (K,) and first_index (K,) do not match")

    @classmethod
    def empty(cls, n_words: int, meta: dict[str, Any]) -> FunctionCounts:
        """No samples yet."""
        return cls(np.zeros((0, n_words), np.uint64), np.zeros(0, np.int64), np.zeros(0, np.uint64), 0, 0, meta)

    # --- basic queries ---------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        # only reached for attributes not set: the arrays of a lazily loaded compressed file
        packed = self.__dict__.get("_packed")
        if packed is None or name not in ("keys", "counts", "first_index"):
            raise AttributeError(name)
        self.keys, self.counts, self.first_index = packed.decode()
        return self.__dict__[name]

    def _lazy(self) -> Any:
        """The :class:`~fastpoly.counts.fileformat.PackedCounts` of a not yet decoded compressed file, or None."""
        d = self.__dict__
        return d.get("_packed") if "keys" not in d else None

    @property
    def n_words(self) -> int:
        """uint64 words per key."""
        p = self._lazy()
        return p.n_words if p is not None else self.keys.shape[1]

    @property
    def result_meta(self) -> ResultMeta:
        """What this result estimates (:class:`~fastpoly.counts.meta.ResultMeta`; old files are read too).

        ``result_meta.estimator`` is one of ``"prior"``, ``"posterior"`` (P_B by rejection), ``"psgd"``,
        ``"gp_draws"``, ``"gp_posterior"``.
        """
        return ResultMeta.from_meta(self.meta)

    @property
    def n_key_bits(self) -> int:
        """Rows the key covers (all rows, or the test rows of a conditioned run)."""
        return int(self.meta.get("n_key_bits", 64 * self.n_words))

    @property
    def n_distinct(self) -> int:
        """Number of distinct functions stored."""
        p = self._lazy()
        return p.n_records if p is not None else int(self.keys.shape[0])

    def iter_blocks(self, columns: Sequence[str] = ("keys", "counts", "first_index"),
                    block: int = DEFAULT_BLOCK) -> Iterator[tuple[int, list[np.ndarray]]]:
        """Yield ``(start, [arrays])``: consecutive rows of the named columns, about ``block`` at a time.

        ``columns``: names among ``keys``, ``counts``, ``first_index``.  Memory-mapped arrays are
        copied block by block (:func:`fastpoly.analysis.blocks.iter_blocks`); a lazily loaded
        compressed file is decoded block by block.  Memory: about one block.
        """
        for name in columns:
            if name not in ("keys", "counts", "first_index"):
                raise ValueError(f"unknown column {name!r}")
        p = self._lazy()
        if p is not None:
            yield from p.iter_blocks(columns, block)
        else:
            yield from iter_blocks([getattr(self, name) for name in columns], block)

    def rows(self, idx: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(keys, counts, first_index)`` of the rows ``idx`` (in memory; a compressed file decodes only their blocks)."""
        idx = np.asarray(idx, np.int64).reshape(-1)
        p = self._lazy()
        if p is not None:
            return p.rows(idx)
        return (np.asarray(self.keys[idx], np.uint64), np.asarray(self.counts[idx], np.int64),
                np.asarray(self.first_index[idx], np.uint64))

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
        p = self._lazy()  # keys are sorted: a binary search (a compressed file decodes one block)
        return p.find(key) if p is not None else search_sorted_keys(self.keys, key)

    def count(self, key: Any) -> int:
        """How many accepted samples produced ``key`` (hex string, 0/1 string, int or words)."""
        i = self._find(key)
        return 0 if i is None else int(self.rows([i])[1][0])

    def probability(self, key: Any, confidence: float | None = None) -> Any:
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

    def hex(self, i: int) -> str:
        """Hex string of the ``i``-th stored key."""
        return key_to_hex(self.rows([i])[0][0], self.n_key_bits)

    def ones(self) -> np.ndarray:
        """Number of ones (T) of each key."""
        return _popcount_rows(self.keys)

    def top(self, k: int = 10, confidence: float = 0.95) -> list[dict[str, Any]]:
        """The ``k`` most frequent functions, as a list of dicts.

        Each dict has ``key`` (hex), ``count``, ``probability``, ``lower``, ``upper``
        (Wilson interval at ``confidence``), ``ones`` and ``first_index``.  Ties are
        broken by key order, so the result is deterministic.
        """
        if k < 0:
            raise ValueError("k must be >= 0")
        order = top_indices(self, k)  # streaming: memory ~ one block, also for huge mmap'ed or compressed files
        keys, counts, first = self.rows(order)
        lo, hi = wilson_interval(counts, self.n_accepted, confidence)
        ones = _popcount_rows(keys)
        return [
            {
                "key": key_to_hex(keys[j], self.n_key_bits),
                "count": int(counts[j]),
                "probability": float(counts[j]) / self.n_accepted if self.n_accepted else float("nan"),
                "lower": float(lo[j]),
                "upper": float(hi[j]),
                "ones": int(ones[j]),
                "first_index": int(first[j]),
            }
            for j in range(order.size)
        ]

    # --- merging ---------------------------------------------------------------------
    def compatible_with(self, other: FunctionCounts) -> str | None:
        """Return None if the two results can be merged, else the reason (a string)."""
        for k in self._COMPAT:
            if self.meta.get(k) != other.meta.get(k):
                return f"incompatible {k}: {self.meta.get(k)!r} != {other.meta.get(k)!r}"
        if self.n_words != other.n_words:
            return "keys of different lengths"
        if self.meta.get("seed") == other.meta.get("seed"):
            ov = first_overlap(self.meta.get("ranges", []), other.meta.get("ranges", []))
            if ov is not None:
                return (
                    f"index ranges overlap on [{ov[0]}, {ov[1]}) for seed {self.meta.get('seed')}: "
                    "merging would double count"
                )
        return None

    def merge(self, other: FunctionCounts) -> FunctionCounts:
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
            meta["ranges"] = merge_ranges(list(self.meta.get("ranges", [])) + list(other.meta.get("ranges", [])))
        else:
            # first_index is only meaningful within one seed: keep per-seed ranges
            meta["seed"] = None
            meta["ranges_by_seed"] = merge_seed_ranges(self.meta, other.meta)
            meta["ranges"] = []
        k, c, f = m
        return FunctionCounts(k, c, f, self.n_samples + other.n_samples, self.n_accepted + other.n_accepted, meta)

    def _add_batch(self, batch, start, stop):
        """Merge a backend's CountBatch for ``[start, stop)`` in place (internal)."""
        m = merge_sorted_counts(
            [(self.keys, self.counts, self.first_index), (batch.keys, batch.counts, batch.first_index)]
        )
        if m is not None:
            self.keys, self.counts, self.first_index = m
        self.n_samples += int(batch.n_samples)
        self.n_accepted += int(batch.n_accepted)
        self.meta["ranges"] = merge_ranges(list(self.meta.get("ranges", [])) + [[start, stop]])

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

    def to_bytes(self, compress: bool = False) -> bytes:
        """Serialise to the counts file format (:mod:`fastpoly.counts.fileformat`, with its sha256 digest).

        ``compress``: format 3 (compressed) instead of format 2.
        """
        return counts_file_bytes(self._payload(), self.keys, self.counts, self.first_index, compress=compress)

    def save(self, path: str | os.PathLike[str], compress: bool = False) -> None:
        """Write to ``path`` atomically (temp file + rename); the checksum is verified on :meth:`load`.

        ``compress``: format 3 (compressed, about half the size of format 2 for 128-bit keys;
        see :mod:`fastpoly.counts.fileformat`), streamed block by block.
        """
        if compress:
            write_counts_file(path, self._payload(), self.iter_triples(), self.n_words, compress=True)
        else:
            atomic_write_bytes(path, self.to_bytes())

    def iter_triples(self, block: int = DEFAULT_BLOCK) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The records as consecutive ``(keys, counts, first_index)`` chunks (see :meth:`iter_blocks`)."""
        for _, (k, c, f) in self.iter_blocks(("keys", "counts", "first_index"), block):
            yield k, c, f

    @classmethod
    def _from_content(cls, content):
        h = content.header
        obj = cls.__new__(cls)
        if content.packed is not None:
            obj.__dict__["_packed"] = content.packed  # arrays decoded on first access (__getattr__)
        else:
            obj.keys, obj.counts, obj.first_index = content.keys, content.counts, content.first_index
        obj.n_samples, obj.n_accepted = int(h["n_samples"]), int(h["n_accepted"])
        obj.meta, obj.info = dict(h["meta"]), {}
        return obj

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<bytes>") -> FunctionCounts:
        """Parse the bytes of :meth:`to_bytes`, verifying every byte (raises :class:`CountsFileError`)."""
        return cls._from_content(read_counts_file(source, data=bytes(data)))

    @classmethod
    def load(cls, path: str | os.PathLike[str], mmap: bool = False) -> FunctionCounts:
        """Read a counts file written by :meth:`save`, verifying its checksum.

        Parameters
        ----------
        path : path
        mmap : bool
            Memory-map the arrays instead of reading them (for results larger
            than RAM, e.g. written by ``sample(..., out=PATH)``); the file is
            verified exactly as in memory, streaming over it.  A compressed
            (format 3) file is verified the same way and its blocks are decoded
            on demand (see the class notes).  The format is detected from the file.

        Raises
        ------
        CountsFileError
            If the file is truncated, modified (any bit) or not a fastpoly counts file.
        OSError
            If it cannot be read (missing, a folder, no permission).
        """
        return cls._from_content(read_counts_file(path, mmap=mmap))

    # --- research API (see fastpoly.analysis.conditioning, fastpoly.analysis.complexity) ----------------
    @property
    def conditioned(self) -> bool:
        """True if the keys cover only the test rows (a posterior run)."""
        return bool(self.meta.get("train_rows"))

    def key_rows(self) -> np.ndarray:
        """Rows of X that the key's bits stand for (ascending)."""
        kr = self.meta.get("key_rows")
        if kr is None:
            return np.arange(int(self.meta.get("n_rows", self.n_key_bits)), dtype=np.int64)
        return np.asarray(kr, dtype=np.int64)

    def full_keys(self) -> np.ndarray:
        """Keys over all rows of X: for conditioned runs the train rows carry the train labels.

        Returns
        -------
        uint64 array (K, ceil(n_rows / 64))
        """
        if not self.conditioned:
            return self.keys
        n_rows = int(self.meta["n_rows"])
        full = np.zeros((self.n_distinct, n_rows), bool)
        full[:, self.key_rows()] = unpack_bits(self.keys, self.n_key_bits).astype(bool)
        full[:, np.asarray(self.meta["train_rows"], np.int64)] = np.asarray(self.meta["train_labels"], bool)
        return pack_bits(full)

    @property
    def n_rows(self) -> int:
        """Rows of X (train rows included)."""
        return int(self.meta.get("n_rows", self.n_key_bits))

    def is_boolean(self) -> bool:
        """True if X was all ``2**n_inputs`` Boolean inputs in the standard order ({0,1} or {-1,1})."""
        n_in = self.meta.get("arch", {}).get("widths", [0])[0]
        if not n_in or self.n_rows != 2**n_in:
            return False
        d = self.meta.get("inputs_digest")
        return d in (inputs_digest(boolean_inputs(n_in)), inputs_digest(boolean_inputs(n_in, centered=True)))

    def complexity(self, order: str = "rows") -> dict[str, np.ndarray]:
        """Complexity of every stored function (over all rows of X; see :mod:`fastpoly.analysis.complexity`).

        Returns
        -------
        dict of arrays (K,)
            ``klz``, ``entropy``, ``ones`` (T) and, for Boolean inputs, ``csr``.
            Cached per ``order``.
        """
        cache = self.__dict__.setdefault("_cx_cache", {})
        if order not in cache:
            cache[order] = complexity.complexity_table(self.full_keys(), self.n_rows, boolean=self.is_boolean(), order=order)
        return cache[order]

    def probabilities(self, confidence: float = 0.95, method: str = "wilson") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(p, lower, upper)`` arrays of every stored function (Wilson or Clopper--Pearson)."""
        n = self.n_accepted
        p = self.counts / n if n else np.full(self.n_distinct, np.nan)
        lo, hi = interval(self.counts, n, confidence, method)
        return p, lo, hi

    def condition(self, train_idx: ArrayLike, labels: ArrayLike | None = None, target: Any = None) -> FunctionCounts:
        """Condition a prior on a train set offline (see :func:`fastpoly.analysis.conditioning.condition`).

        Raises
        ------
        ValueError
            For train rows outside ``[0, n_rows)`` (and the other errors of the function).
        """
        try:
            rows = np.asarray(train_idx)
            out_of_range = rows.size and np.issubdtype(rows.dtype, np.number) and (
                rows.min() < 0 or rows.max() >= self.n_rows)
        except (TypeError, ValueError):
            out_of_range = False
        if out_of_range:
            raise ValueError(f"train indices must be in [0, {self.n_rows}), got values in [{rows.min()}, {rows.max()}]")
        return conditioning.condition(self, train_idx, labels=labels, target=target)

    def posterior(self, target: Any = None, confidence: float = 0.95, method: str = "wilson") -> dict[str, Any]:
        """Posterior summary: P(S), P_B(f|S) with intervals, generalisation errors.

        See :func:`fastpoly.analysis.conditioning.posterior_summary`.
        """
        return conditioning.posterior_summary(self, target=target, confidence=confidence, method=method)

    def generalization_error(self, target: Any = None) -> np.ndarray:
        """Error of every stored function on the held-out (key) rows against ``target``."""
        return conditioning.generalization_error(self, target)

    def to_frame(self, confidence: float = 0.95, method: str = "wilson", order: str = "rows") -> Any:
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

    def key_strings(self, convention: str = "rows") -> list[str]:
        """The stored keys as 0/1 strings over all rows (see :mod:`fastpoly.counts.anchors`).

        ``convention``: ``rows`` (character i = row i), ``cpp`` (the C++ anchor's
        reversed strings) or ``python`` (the Python anchors' MSB-first strings).
        """
        return keys_to_strings(self.full_keys(), self.n_rows, convention)


def merge_files(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], memory_budget: int | str = "1GB",
                tmpdir: str | None = None, compress: bool = False) -> FunctionCounts:
    """Merge counts files of compatible runs into ``out`` with bounded memory.

    Checks compatibility like :meth:`FunctionCounts.merge` (same architecture,
    inputs and train set; no overlapping index ranges of one seed), then streams
    a k-way merge of the memory-mapped (or block by block decoded, for compressed
    files) inputs.  ``compress``: write ``out`` in format 3 (compressed).

    Returns
    -------
    FunctionCounts
        The merged result, memory-mapped from ``out``.
    """
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
    srcs: list[Any] = [p if p._lazy() is not None else (np.asarray(p.keys), np.asarray(p.counts),
                                                          np.asarray(p.first_index)) for p in parts]
    chunks = merge_runs(srcs, budget, acc.n_words, tmpdir=tmpdir or os.path.dirname(os.path.abspath(out)))
    write_counts_file(out, meta_only._payload(), chunks, acc.n_words, compress=compress)
    return FunctionCounts.load(out, mmap=True)


def _popcount_rows(keys):
    keys = np.ascontiguousarray(keys, dtype="<u8")
    if keys.shape[0] == 0:
        return np.zeros(0, np.int64)
    by = keys.view(np.uint8).reshape(keys.shape[0], -1)
    return np.unpackbits(by, axis=1).sum(axis=1).astype(np.int64)

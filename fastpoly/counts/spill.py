"""Counting beyond RAM: sorted runs on disk and a bounded-memory k-way merge.

A *run* is a file of distinct keys in big-integer order with their counts and
smallest sample index (the same triple as :class:`fastpoly.FunctionCounts`).
:class:`CountAccumulator` collects counted batches in memory; when they exceed
its memory budget it writes them out as a run.  :func:`merge_runs` merges any
number of runs with memory bounded by the budget (several passes when there
are more runs than fit at once) and yields the exact result in sorted chunks,
which :func:`write_counts_file` streams into an ordinary counts file.

Run file layout (little-endian), written by :func:`write_run` and :func:`_write_stream_run`::

    b"FPRUN002" | n_words (u8) | n_records (u8) | block 0 | block 1 | ...

where every block is a 32-byte header ``(records, keys bytes, counts bytes, first bytes)`` (u8
each) followed by the block in the codec of :mod:`fastpoly.counts.codec` (at most
:data:`RUN_BLOCK` records; ~16 B per record for 128-bit keys instead of 32).  Runs are written
in one sequential pass (no side files) to a temporary name, fsync'ed and renamed.  Version-1
runs (``b"FPRUN001"``: raw arrays ``keys | counts | first``) are still read.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import tempfile

import numpy as np

from fastpoly.atomic import atomic_open, temp_prefix
from fastpoly.counts.merge import merge_sorted_counts
from fastpoly.counts.ranges import merge_ranges

__all__ = [
    "SpillError", "CountAccumulator", "write_run", "RunReader", "merge_runs",
    "parse_memory", "record_bytes",
]

RUN_MAGIC = b"FPRUN002"
RUN_MAGIC_V1 = b"FPRUN001"
_HEADER = len(RUN_MAGIC) + 16
#: records per block of a run file (one decoded block is what a reader holds at least)
RUN_BLOCK = 1 << 12
#: blocks encoded together (in parallel) when writing a run
_RUN_GROUP = 64
_BLOCK_HEAD = 32
#: smallest budget accepted (bytes); tests use tiny budgets to force many runs and passes
MIN_BUDGET = 1024


class SpillError(OSError):
    """Writing a sorted run (or the merged result) to disk failed, e.g. the disk is full."""


def record_bytes(n_words):
    """Bytes one distinct key takes in memory or in a run (key words + count + first index)."""
    return 8 * int(n_words) + 16


def parse_memory(value):
    """Parse a memory budget: bytes (int) or a string like ``"512MB"``, ``"2 GiB"``, ``"64k"``.

    Returns
    -------
    int or None
        Bytes (None stays None: no budget).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"memory_budget must be bytes or a string like '2GB', got {value!r}")
    if isinstance(value, (int, np.integer)):
        v = int(value)
    elif isinstance(value, float) and np.isfinite(value) and value == int(value):
        v = int(value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([kKmMgGtT]?)(i?[bB])?\s*", value)
        if not m:
            raise ValueError(f"memory_budget must be bytes or a string like '2GB', got {value!r}")
        try:
            num = float(m.group(1))
        except ValueError:
            raise ValueError(f"memory_budget must be bytes or a string like '2GB', got {value!r}") from None
        mult = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[m.group(2).lower()]
        v = int(num * mult)
    else:
        raise ValueError(f"memory_budget must be bytes or a string like '2GB', got {value!r}")
    if v < MIN_BUDGET:
        raise ValueError(f"memory_budget must be at least {MIN_BUDGET} bytes, got {v}")
    return v


# --- ordering helpers ----------------------------------------------------------------
def _count_le(keys, key):
    """Number of rows of the sorted ``keys`` that are <= ``key`` (big-integer order)."""
    if keys.shape[0] == 0:
        return 0
    if keys.shape[1] == 1:
        return int(np.searchsorted(keys[:, 0], key[0], side="right"))
    lt = np.zeros(keys.shape[0], bool)
    eq = np.ones(keys.shape[0], bool)
    for w in range(keys.shape[1] - 1, -1, -1):
        lt |= eq & (keys[:, w] < key[w])
        eq &= keys[:, w] == key[w]
    return int(np.count_nonzero(lt | eq))


def _key_less(a, b):
    for w in range(a.shape[0] - 1, -1, -1):
        if a[w] != b[w]:
            return bool(a[w] < b[w])
    return False


def _merge(parts):
    return merge_sorted_counts(parts)


# --- run files -----------------------------------------------------------------------
def raise_spill(e, path):
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        raise SpillError(
            e.errno,
            f"disk full while writing {path}: free space or pass a folder on a larger disk "
            f"(earlier checkpoints are left intact)",
        ) from e
    if isinstance(e, OSError):
        msg = str(e.strerror or e)
        # atomic_open's errors already name the file
        raise SpillError(e.errno, msg if msg.startswith("cannot write") else f"cannot write {path}: {msg}") from e
    raise e


def _write_chunks(fh, parts):
    """Write byte strings or arrays (their raw bytes) to ``fh`` (the one write path of runs)."""
    for a in parts:
        fh.write(a if isinstance(a, (bytes, bytearray, memoryview)) else _bytes_view(a))


def _bytes_view(a):
    """The bytes of a contiguous array without copying them (for hashing and writing)."""
    return memoryview(np.ascontiguousarray(a)).cast("B")


def _encode_run_blocks(keys, counts, first):
    """The bytes of the blocks (each with its 32-byte header) of a sorted triple."""
    from fastpoly.backends.numba.codec import encode_blocks

    buf, index = encode_blocks(keys, counts, first, RUN_BLOCK)
    out = []
    pos = 0
    for row in index:
        size = int(row[1:].sum())
        out.append(np.asarray(row, "<u8").tobytes())
        out.append(buf[pos:pos + size].tobytes())
        pos += size
    return b"".join(out)


def _run_groups(keys, counts, first):
    step = RUN_BLOCK * _RUN_GROUP
    for a in range(0, keys.shape[0], step):
        yield _encode_run_blocks(keys[a:a + step], counts[a:a + step], first[a:a + step])


def write_run(path, keys, counts, first):
    """Write one sorted run atomically (temp file + fsync + rename), encoded block by block.

    Returns
    -------
    dict
        ``{"name": basename, "n": records, "n_words": W, "sha256": hex}``

    Raises
    ------
    SpillError
        If the disk is full or the file cannot be written (no partial file is left).
    """
    path = os.fspath(path)
    keys = np.ascontiguousarray(keys, dtype="<u8")
    counts = np.ascontiguousarray(counts, dtype="<i8")
    first = np.ascontiguousarray(first, dtype="<u8")
    n, W = keys.shape
    head = RUN_MAGIC + np.array([W, n], "<u8").tobytes()
    h = hashlib.sha256(head)
    try:
        with atomic_open(path, "wb") as fh:
            fh.write(head)
            for part in _run_groups(keys, counts, first):
                h.update(part)
                _write_chunks(fh, (part,))
    except OSError as e:
        raise_spill(e, path)
    return {"name": os.path.basename(path), "n": int(n), "n_words": int(W), "sha256": h.hexdigest()}


def run_sha256(path):
    """sha256 of a run file's content (to validate a checkpoint's runs)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class RunReader:
    """Read a run file sequentially in chunks of at most ``chunk`` records.

    The block headers are checked on opening (records and sizes add up to the file); a
    corrupt block raises ``ValueError`` when read.  Memory: one decoded block plus the chunk.
    """

    def __init__(self, path, chunk):
        self.path = os.fspath(path)
        with open(self.path, "rb") as fh:
            head = fh.read(_HEADER)
        if len(head) != _HEADER or head[: len(RUN_MAGIC)] not in (RUN_MAGIC, RUN_MAGIC_V1):
            raise ValueError(f"{self.path}: not a fastpoly run file")
        self.version = 2 if head[: len(RUN_MAGIC)] == RUN_MAGIC else 1
        self.n_words, self.n = (int(v) for v in np.frombuffer(head[len(RUN_MAGIC):], "<u8"))
        size = os.path.getsize(self.path)
        if self.version == 1:
            expect = _HEADER + self.n * record_bytes(self.n_words)
            if size != expect:
                raise ValueError(f"{self.path}: run file truncated ({size} of {expect} bytes)")
        else:
            self._scan(size)
        self.chunk = max(1, int(chunk))
        self.pos = 0
        self._buf = None
        self._at = 0
        self._off = _HEADER

    def _scan(self, size):
        """Check that the block headers add up to the file and to ``n`` records."""
        pos, n = _HEADER, 0
        with open(self.path, "rb") as fh:
            while pos < size:
                fh.seek(pos)
                raw = fh.read(_BLOCK_HEAD)
                if len(raw) != _BLOCK_HEAD:
                    raise ValueError(f"{self.path}: run file truncated (block header at byte {pos})")
                rec, lk, lc, lf = (int(v) for v in np.frombuffer(raw, "<u8"))
                if not 1 <= rec <= self.n or max(lk, lc, lf) > size:
                    raise ValueError(f"{self.path}: damaged run file (block header at byte {pos})")
                pos += _BLOCK_HEAD + lk + lc + lf
                n += rec
        if pos != size or n != self.n:
            raise ValueError(f"{self.path}: run file truncated or damaged ({n} of {self.n} records, "
                             f"{size} bytes)")

    @property
    def remaining(self):
        """Records not yet read."""
        return self.n - self.pos

    def read(self):
        """The next chunk ``(keys, counts, first)`` (empty arrays at the end)."""
        if self.version == 1:
            return self._read_v1()
        from fastpoly.backends.numba.codec import decode_blocks
        from fastpoly.counts.codec import CodecError

        want = min(self.chunk, self.n - self.pos)
        # decoded straight into the chunk (no list of pieces + concatenation: that held the chunk
        # twice, i.e. the merge's share of the budget twice); memory: the chunk + one block
        keys = np.empty((want, self.n_words), np.uint64)
        counts = np.empty(want, np.int64)
        first = np.empty(want, np.uint64)
        got = 0
        with open(self.path, "rb") as fh:
            while got < want:
                if self._buf is None or self._at >= self._buf[0].shape[0]:
                    fh.seek(self._off)
                    row = np.frombuffer(fh.read(_BLOCK_HEAD), "<u8").astype(np.int64)
                    size = int(row[1:].sum())
                    data = np.frombuffer(fh.read(size), np.uint8)
                    try:
                        self._buf = decode_blocks(data, row.reshape(1, 4), self.n_words)
                    except CodecError as e:
                        raise ValueError(f"{self.path}: damaged run file ({e})") from None
                    self._at = 0
                    self._off += _BLOCK_HEAD + size
                a = self._at
                b = min(self._buf[0].shape[0], a + want - got)
                keys[got:got + b - a] = self._buf[0][a:b]
                counts[got:got + b - a] = self._buf[1][a:b]
                first[got:got + b - a] = self._buf[2][a:b]
                self._at = b
                got += b - a
        self.pos += got
        return keys, counts, first

    def _read_v1(self):
        k = min(self.chunk, self.n - self.pos)
        W = self.n_words
        o_keys = _HEADER + self.pos * 8 * W
        o_counts = _HEADER + self.n * 8 * W + self.pos * 8
        o_first = _HEADER + self.n * 8 * W + self.n * 8 + self.pos * 8
        with open(self.path, "rb") as fh:
            fh.seek(o_keys)
            keys = np.frombuffer(fh.read(k * 8 * W), "<u8").astype(np.uint64).reshape(k, W)
            fh.seek(o_counts)
            counts = np.frombuffer(fh.read(k * 8), "<i8").astype(np.int64)
            fh.seek(o_first)
            first = np.frombuffer(fh.read(k * 8), "<u8").astype(np.uint64)
        self.pos += k
        return keys, counts, first


class _MemReader:
    """A sorted in-memory triple behaving like a :class:`RunReader`."""

    def __init__(self, triple, chunk):
        self.keys, self.counts, self.first = triple
        self.n = self.keys.shape[0]
        self.n_words = self.keys.shape[1]
        self.chunk = max(1, int(chunk))
        self.pos = 0

    @property
    def remaining(self):
        return self.n - self.pos

    def read(self):
        a, b = self.pos, min(self.n, self.pos + self.chunk)
        self.pos = b
        return self.keys[a:b], self.counts[a:b], self.first[a:b]


def _kway(readers, out_chunk):
    """Merge sorted, unique readers into sorted, unique chunks (memory ~ sum of reader chunks)."""
    bufs = []
    for r in readers:
        bufs.append(list(r.read()))
    pending = []
    pending_n = 0
    while True:
        live = [i for i, b in enumerate(bufs) if b[0].shape[0] or readers[i].remaining]
        if not live:
            break
        # refill empty buffers of readers with unread data
        for i in live:
            if bufs[i][0].shape[0] == 0:
                bufs[i] = list(readers[i].read())
        # frontier: smallest last-buffered key among readers that still have unread data
        frontier = None
        for i in live:
            if readers[i].remaining and bufs[i][0].shape[0]:
                last = bufs[i][0][-1]
                if frontier is None or _key_less(last, frontier):
                    frontier = last
        parts = []
        for i in live:
            k, c, f = bufs[i]
            if k.shape[0] == 0:
                continue
            n = k.shape[0] if frontier is None else _count_le(k, frontier)
            if n:
                parts.append((k[:n], c[:n], f[:n]))
                bufs[i] = [k[n:], c[n:], f[n:]]
        m = _merge(parts)
        if m is not None:
            pending.append(m)
            pending_n += m[0].shape[0]
            if pending_n >= out_chunk:
                yield _concat(pending)
                pending, pending_n = [], 0
    if pending:
        yield _concat(pending)


def _concat(parts):
    if len(parts) == 1:
        return parts[0]
    return tuple(np.concatenate([p[j] for p in parts]) for j in range(3))


def merge_runs(sources, memory_budget, n_words, tmpdir=None):
    """Exact k-way merge of sorted runs with bounded memory.

    Parameters
    ----------
    sources : list of run paths, in-memory ``(keys, counts, first)`` triples and/or counts objects
        (with ``n_distinct``, ``n_words`` and ``iter_blocks``, e.g. a lazily loaded compressed file).
        Each sorted (big-integer key order) and without repeated keys.
    memory_budget : int
        Bytes the merge may hold at once (buffers of all inputs plus one output chunk).
        With more runs than fit, groups of runs are first merged into larger runs in
        ``tmpdir`` (several passes).
    n_words : int
    tmpdir : path or None
        Folder for intermediate runs (needed only with many runs).

    Yields
    ------
    (keys, counts, first)
        Consecutive sorted chunks of the merged result; concatenated, they are the
        same arrays :func:`fastpoly.counts.merge_sorted_counts` gives in memory.
    """
    rb = record_bytes(n_words)
    budget_records = max(8, int(memory_budget) // rb)
    # each input holds a buffer; the merge step may hold one more buffer's worth per input
    fan_in = max(2, min(64, budget_records // 8))
    sources = list(sources)
    tmp_paths = []
    try:
        gen = 0
        while len(sources) > fan_in:
            if tmpdir is None:
                raise ValueError("merging this many runs needs a tmpdir for intermediate runs")
            group, sources = sources[:fan_in], sources[fan_in:]
            gen += 1
            path = os.path.join(tmpdir, f"merge-{os.getpid()}-{gen}.run")
            _write_stream_run(path, _kway(_readers(group, budget_records), budget_records), n_words)
            tmp_paths.append(path)
            sources.append(path)
        k = max(1, len(sources))
        chunk = max(1, budget_records // (2 * k + 1))
        yield from _kway(_readers(sources, chunk), chunk)
    finally:
        for p in tmp_paths:
            try:
                os.unlink(p)
            except OSError:
                pass


class _BlockSourceReader:
    """A counts object (``n_distinct``, ``n_words``, ``iter_blocks``) behaving like a :class:`RunReader`.

    Used for compressed counts files, which are decoded block by block (memory: one decoded
    group of blocks, whatever ``chunk``).
    """

    def __init__(self, src, chunk):
        self.n = int(src.n_distinct)
        self.n_words = int(src.n_words)
        self.chunk = max(1, int(chunk))
        self.pos = 0
        self._it = src.iter_blocks(("keys", "counts", "first_index"), self.chunk)
        self._buf = None
        self._at = 0

    @property
    def remaining(self):
        return self.n - self.pos

    def read(self):
        if self._buf is None or self._at >= self._buf[0].shape[0]:
            if self.pos >= self.n:
                return (np.zeros((0, self.n_words), np.uint64), np.zeros(0, np.int64), np.zeros(0, np.uint64))
            _, arrays = next(self._it)
            self._buf, self._at = tuple(arrays), 0
        a = self._at
        b = min(self._buf[0].shape[0], a + self.chunk)
        self._at = b
        self.pos += b - a
        return tuple(x[a:b] for x in self._buf)


def _readers(sources, chunk):
    out = []
    for s in sources:
        if isinstance(s, tuple):
            out.append(_MemReader(s, chunk))
        elif hasattr(s, "iter_blocks"):
            out.append(_BlockSourceReader(s, chunk))
        else:
            out.append(RunReader(s, chunk))
    return out


def write_side_files(chunks, d, files):
    """Stream sorted ``(keys, counts, first)`` chunks into three temporary files in folder ``d``.

    ``files`` (a list owned by the caller, who removes the files) receives ``(handle, path)``
    for keys, counts and first indices, in that order; all handles are closed on return.
    Returns the number of records written.
    """
    for name in ("k", "c", "f"):
        fd, p = tempfile.mkstemp(prefix=temp_prefix(name), dir=d)
        files.append((os.fdopen(fd, "wb"), p))
    n = 0
    for k, c, f in chunks:
        files[0][0].write(_bytes_view(np.ascontiguousarray(k, "<u8")))
        files[1][0].write(_bytes_view(np.ascontiguousarray(c, "<i8")))
        files[2][0].write(_bytes_view(np.ascontiguousarray(f, "<u8")))
        n += k.shape[0]
    for fh, _ in files:
        fh.close()
    return n


def remove_side_files(files):
    """Close and delete the temporary side files of :func:`write_side_files` (best effort)."""
    for fh, p in files:
        try:
            fh.close()
            os.unlink(p)
        except OSError:
            pass


def block_aligned(chunks, block):
    """Re-cut a stream of sorted ``(keys, counts, first)`` chunks into pieces of whole blocks.

    Yields pieces whose lengths are multiples of ``block`` (the last piece may be shorter), in
    order, without concatenating large chunks: at most ``block - 1`` records are carried from one
    chunk to the next (copied), the rest are views of the incoming chunks.  So a writer that
    encodes block by block holds the incoming chunk plus one block, whatever the chunk sizes.
    """
    carry = None
    for k, c, f in chunks:
        if k.shape[0] == 0:
            continue
        if carry is not None:
            need = block - carry[0].shape[0]
            head = _concat([carry, (k[:need], c[:need], f[:need])])
            k, c, f = k[need:], c[need:], f[need:]
            if head[0].shape[0] < block:
                carry = head
                continue
            carry = None
            yield head
        full = k.shape[0] // block * block
        if full:
            yield k[:full], c[:full], f[:full]
        if full < k.shape[0]:
            carry = (k[full:].copy(), c[full:].copy(), f[full:].copy())
    if carry is not None:
        yield carry


def _write_stream_run(path, chunks, n_words):
    """Write a run from a stream of sorted chunks in one pass (no side files; the record count is filled in last)."""
    try:
        with atomic_open(path, "wb") as out:
            out.write(RUN_MAGIC + np.array([n_words, 0], "<u8").tobytes())
            n = 0
            for k, c, f in block_aligned(chunks, RUN_BLOCK):
                for part in _run_groups(k, c, f):  # one group's bytes at a time
                    _write_chunks(out, (part,))
                n += k.shape[0]
            out.seek(len(RUN_MAGIC) + 8)
            out.write(np.array([n], "<u8").tobytes())
    except OSError as e:
        raise_spill(e, path)


class CountAccumulator:
    """Exact running union of counted batches, spilling sorted runs to disk past a memory budget.

    Parameters
    ----------
    n_words : int
    memory_budget : int or None
        Bytes of distinct keys (plus counts and first indices) held in memory before
        they are written out as a sorted run.  None: never spill.
    spill_dir : path or None
        Where runs go (created on first spill; a temporary folder if None).
    run_prefix : str
        File name prefix of the runs (checkpoints use it to tell their own files).
    """

    def __init__(self, n_words, memory_budget=None, spill_dir=None, run_prefix="run"):
        self.n_words = int(n_words)
        self.memory_budget = memory_budget
        self.spill_dir = spill_dir
        self.run_prefix = run_prefix
        self._own_tmp = None
        self.runs = []  # dicts from write_run (name, n, sha256), in spill_dir
        self.mem = (np.zeros((0, self.n_words), np.uint64), np.zeros(0, np.int64), np.zeros(0, np.uint64))
        self.pending = []
        self.pending_n = 0
        self.n_samples = 0
        self.n_accepted = 0
        #: diverged training runs among the samples (None: unknown, resumed from a checkpoint without the tally)
        self.n_diverged: int | None = 0
        self.ranges = []
        self._next_run = 0

    # -- state ------------------------------------------------------------------------
    @property
    def mem_records(self):
        """Distinct keys held in memory (pending batches included)."""
        return self.mem[0].shape[0] + self.pending_n

    def _dir(self):
        if self.spill_dir is None:
            self._own_tmp = tempfile.mkdtemp(prefix="fastpoly-spill-")
            self.spill_dir = self._own_tmp
        os.makedirs(self.spill_dir, exist_ok=True)
        return self.spill_dir

    def run_path(self, name):
        """Path of the run file ``name`` in the spill folder."""
        return os.path.join(self.spill_dir, name)

    def add(self, keys, counts, first, n_samples, n_accepted, lo, hi, n_diverged=0):
        """Add one counted batch for index range ``[lo, hi)`` (``n_diverged``: its diverged training runs)."""
        part = (np.asarray(keys, np.uint64), np.asarray(counts, np.int64), np.asarray(first, np.uint64))
        ranges = merge_ranges(self.ranges + [[int(lo), int(hi)]])
        # all state changes below are plain assignments after the computations
        self.pending = self.pending + [part]
        self.pending_n += part[0].shape[0]
        self.n_samples += int(n_samples)
        self.n_accepted += int(n_accepted)
        if self.n_diverged is not None:
            self.n_diverged += int(n_diverged)
        self.ranges = ranges
        if self.pending_n >= max(1 << 16, self.mem[0].shape[0]) or self._over_budget():
            self.flush()

    @property
    def held_limit(self):
        """Most distinct keys held in memory (None: no limit).

        Merging the held keys into one sorted triple needs as much again for its output, so
        the budget pays for twice the held records: in memory, counting never exceeds the budget.
        """
        if self.memory_budget is None:
            return None
        return max(1, int(self.memory_budget) // (2 * record_bytes(self.n_words)))

    def _over_budget(self):
        lim = self.held_limit
        return lim is not None and self.mem_records > lim

    def _merge_pending(self):
        """Merge the pending batches, then the result into ``mem`` (peak: twice the held records)."""
        if not self.pending:
            return
        parts, self.pending, self.pending_n = self.pending, [], 0
        p = _merge(parts)
        del parts
        if p is not None:
            m = _merge([self.mem, p])
            del p
            if m is not None:
                self.mem = m

    def flush(self):
        """Merge pending batches into the in-memory part; spill it if over budget."""
        self._merge_pending()
        if self._over_budget():
            self.spill()

    def spill(self):
        """Write the in-memory part as a sorted run and empty it (SpillError if the disk is full)."""
        self._merge_pending()
        if self.mem[0].shape[0] == 0:
            return
        d = self._dir()
        name = self._new_run_name()
        info = write_run(os.path.join(d, name), *self.mem)
        self.runs = self.runs + [info]
        self.mem = (self.mem[0][:0].copy(), self.mem[1][:0].copy(), self.mem[2][:0].copy())

    def release_memory(self):
        """Drop the in-memory part once the merged result is safely elsewhere (e.g. in a counts file)."""
        self.pending, self.pending_n = [], 0
        self.mem = (self.mem[0][:0].copy(), self.mem[1][:0].copy(), self.mem[2][:0].copy())

    def _new_run_name(self):
        while True:
            self._next_run += 1
            name = f"{self.run_prefix}-{self._next_run:06d}.run"
            if self.spill_dir is None or not os.path.exists(os.path.join(self.spill_dir, name)):
                return name

    def chunks(self):
        """The exact merged result as sorted chunks (bounded memory when runs exist)."""
        self.flush()
        if not self.runs:
            if self.mem[0].shape[0]:
                yield self.mem
            return
        budget = self.memory_budget or (256 << 20)
        srcs = [self.run_path(r["name"]) for r in self.runs]
        if self.mem[0].shape[0]:
            # the in-memory part is one of the inputs: the merge buffers get what is left of the budget
            srcs.append(self.mem)
            budget = max(MIN_BUDGET, budget - self.mem[0].shape[0] * record_bytes(self.n_words))
        yield from merge_runs(srcs, budget, self.n_words, tmpdir=self._dir())

    def result_arrays(self):
        """The merged result in memory: ``(keys, counts, first)``."""
        parts = list(self.chunks())
        if not parts:
            return self.mem
        return _concat(parts)

    def cleanup(self):
        """Delete this accumulator's run files (and its temporary folder)."""
        for r in self.runs:
            try:
                os.unlink(self.run_path(r["name"]))
            except OSError:
                pass
        self.runs = []
        if self._own_tmp is not None:
            shutil.rmtree(self._own_tmp, ignore_errors=True)
            self._own_tmp = None
            self.spill_dir = None

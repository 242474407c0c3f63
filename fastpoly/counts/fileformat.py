"""The counts file format: one writer, one reader, one digest, for in-memory saves and streamed results.

A counts file (format version 2) is an uncompressed zip64 archive that :func:`numpy.load` reads
as an ``.npz``.  Its members, in this order, are ``.npy`` files:

``header``
    0-d unicode string: JSON with ``format``, ``version``, ``n_samples``, ``n_accepted``, ``meta``.
``keys``, ``counts``, ``first_index``
    ``<u8`` (K, W), ``<i8`` (K,) and ``<u8`` (K,) arrays; their data starts on a 64-byte
    boundary of the file, so memory-mapped arrays are aligned.
``sha256``
    0-d unicode string: the sha256 over the four members above -- each member's *entire*
    serialized ``.npy`` bytes (``.npy`` header with dtype and shape, then the data), preceded by
    its name and length.

Every byte of the file is fixed by this module (own ``.npy`` headers and zip framing, fixed
timestamps, no compression, no free padding), so the file is a pure function of its content.
The reader -- the same for the in-memory and the memory-mapped path -- recomputes the digest
*and* rebuilds the expected zip framing from the content and compares it byte for byte: every
single-bit change anywhere in a file is refused with :class:`CountsFileError`.

Format version 3 (``compress=True``) is a compressed file written in one sequential pass (no
side files, no second copy), read block by block::

    MAGIC3 (16 bytes) | block 0 | block 1 | ... | header JSON (utf-8) | block index | footer

Each block holds :data:`BLOCK_RECORDS` records (the last one fewer) in the block codec of
:mod:`fastpoly.counts.codec` (keys as length-prefixed deltas to the previous key, counts and
first indices as LEB128 varints).  The header JSON is format 2's with ``"version": 3``.  The
block index is ``(n_blocks, 4)`` ``<u8``: records, bytes of the keys, counts and first
sections of each block (block offsets follow by summing).  The footer is ``<5Q``: header
length, number of blocks, records, key words, records per block; then the raw 32-byte sha256
over every byte before it; then :data:`END3`.  The reader checks the framing (sizes add up,
every block but the last full), streams the digest over the file (bounded memory), and the
decoder checks every length while decoding (corrupt data never reads out of bounds).  Loaded
with ``mmap=True`` the blocks stay on disk and are decoded on demand
(:class:`PackedCounts`).  The bytes are a pure function of the content.

Version-1 files (fastpoly 0.1.0: digest over the JSON header, shapes and raw array bytes; zip
framing by :mod:`zipfile`) are still read and verified with their own digest; their dtypes must
be exactly the ones fastpoly writes.
"""
from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from fastpoly.analysis.blocks import drop_pages
from fastpoly.atomic import atomic_open
from fastpoly.counts.spill import block_aligned, raise_spill, remove_side_files, write_side_files

__all__ = [
    "FORMAT", "FORMAT_VERSION", "READABLE_VERSIONS", "CountsFileError", "CountsFileContent", "PackedCounts",
    "counts_file_bytes", "write_counts_file", "read_counts_file", "MAGIC3", "COMPRESSED_VERSION",
]

FORMAT = "fastpoly.counts"
FORMAT_VERSION = 2
#: versions :func:`read_counts_file` accepts (version 1: fastpoly 0.1.0)
READABLE_VERSIONS = (1, 2, 3)
#: the version of compressed files (``compress=True``)
COMPRESSED_VERSION = 3
#: first bytes of a compressed (version 3) file
MAGIC3 = b"\x93FASTPOLY-CNT\x03\n"
#: last bytes of a compressed file
END3 = b"FPC3-END"
#: records per block of a compressed file
BLOCK_RECORDS = 1 << 16
_FOOTER3 = struct.Struct("<5Q")
_TAIL3 = _FOOTER3.size + 32 + len(END3)

#: array members: name -> dtype as written
ARRAY_DTYPES = {"keys": "<u8", "counts": "<i8", "first_index": "<u8"}
#: members in file order; the digest covers all but the last
MEMBERS = ("header", "keys", "counts", "first_index", "sha256")
#: array data starts on a multiple of this many bytes in the file
ALIGN = 64
_BLOCK = 1 << 22

# zip structures (APPNOTE.TXT 6.3): local header, central header, zip64 end record and locator, end record
_LFH = struct.Struct("<IHHHHHIIIHH")
_CDH = struct.Struct("<IHHHHHHIIIHHHHHII")
_Z64_END = struct.Struct("<IQHHIIQQQQ")
_Z64_LOC = struct.Struct("<IIQI")
_END = struct.Struct("<IHHHHIIH")
_ZIP_VERSION = 45  # zip64
_MADE_BY = (3 << 8) | _ZIP_VERSION  # unix
_DOS_DATE = (1 << 5) | 1  # 1980-01-01, time 00:00:00
_ALIGN_TAG = 0xD935  # the extra field zipalign uses for padding
_FFFF32 = 0xFFFFFFFF
_NPY_MAGIC = b"\x93NUMPY\x01\x00"


class CountsFileError(ValueError):
    """A counts file is truncated, tampered with, or not a fastpoly counts file."""


@dataclass(frozen=True)
class CountsFileContent:
    """What :func:`read_counts_file` returns (after every check passed)."""

    header_json: str
    header: dict[str, Any]
    keys: np.ndarray
    counts: np.ndarray
    first_index: np.ndarray
    #: a compressed file read lazily (``mmap=True``): the arrays above are empty, decode from here
    packed: PackedCounts | None = None


# --- .npy members ------------------------------------------------------------------------
def npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    """The ``.npy`` (version 1.0) header of a C-ordered array, padded to 64 bytes.

    Written here rather than by NumPy so that the bytes of a counts file do not depend on
    the NumPy version (NumPy's own header padding changed over the years).
    """
    shape_repr = repr(tuple(int(s) for s in shape))
    d = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape_repr}, }}"
    pad = -(len(_NPY_MAGIC) + 2 + len(d) + 1) % 64
    text = (d + " " * pad + "\n").encode("latin1")
    return _NPY_MAGIC + struct.pack("<H", len(text)) + text


def _str_member(s: str) -> bytes:
    """A 0-d unicode ``.npy`` array holding ``s`` (NumPy stores UCS-4)."""
    return npy_header(f"<U{len(s)}", ()) + s.encode("utf-32-le")


def _parse_npy_header(raw: bytes, what: str, strict: bool = True) -> tuple[str, tuple[int, ...], int]:
    """``(descr, shape, header length)`` of a ``.npy`` member; ``strict``: the header must be our canonical one."""
    if raw[:8] != _NPY_MAGIC or len(raw) < 10:
        raise CountsFileError(f"member {what} is not a version-1.0 .npy array")
    hlen = 10 + struct.unpack("<H", raw[8:10])[0]
    try:
        d = ast.literal_eval(raw[10:hlen].decode("latin1"))
        descr, shape = d["descr"], tuple(int(s) for s in d["shape"])
    except (ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError):
        raise CountsFileError(f"member {what} has a damaged .npy header") from None
    if not isinstance(descr, str) or (strict and raw[:hlen] != npy_header(descr, shape)):
        raise CountsFileError(f"member {what} has a modified .npy header")
    return descr, shape, hlen


def _parse_str_member(raw: bytes, what: str, strict: bool = True) -> str:
    descr, shape, hlen = _parse_npy_header(raw, what, strict)
    body = raw[hlen:]
    if shape != () or not descr.startswith("<U") or len(body) != 4 * int(descr[2:] or -1):
        raise CountsFileError(f"member {what} is not a string")
    try:
        s = body.decode("utf-32-le")
    except UnicodeDecodeError:
        raise CountsFileError(f"member {what} is not a valid string") from None
    if strict and _str_member(s) != raw:
        raise CountsFileError(f"member {what} is not a canonical string")
    return s


# --- zip framing -------------------------------------------------------------------------
def _local_header(name: str, offset: int, size: int, crc: int) -> bytes:
    """The local file header of member ``name`` at ``offset``, padded so that its data starts aligned."""
    nb = (name + ".npy").encode()
    fixed = _LFH.size + len(nb) + 20 + 6
    pad = -(offset + fixed) % ALIGN
    extra = struct.pack("<HHQQ", 1, 16, size, size) + struct.pack("<HHH", _ALIGN_TAG, 2 + pad, ALIGN) + bytes(pad)
    return _LFH.pack(0x04034B50, _ZIP_VERSION, 0, 0, 0, _DOS_DATE, crc, _FFFF32, _FFFF32, len(nb), len(extra)) + nb + extra


def _tail(entries: list[tuple[str, int, int, int]], cd_offset: int) -> bytes:
    """Central directory, zip64 end record, its locator and the end record for ``(name, offset, size, crc)``."""
    cd = b""
    for name, offset, size, crc in entries:
        nb = (name + ".npy").encode()
        extra = struct.pack("<HHQQQ", 1, 24, size, size, offset)
        cd += _CDH.pack(0x02014B50, _MADE_BY, _ZIP_VERSION, 0, 0, 0, _DOS_DATE, crc, _FFFF32, _FFFF32,
                        len(nb), len(extra), 0, 0, 0, 0o100644 << 16, _FFFF32) + nb + extra
    n = len(entries)
    z64 = _Z64_END.pack(0x06064B50, _Z64_END.size - 12, _MADE_BY, _ZIP_VERSION, 0, 0, n, n, len(cd), cd_offset)
    loc = _Z64_LOC.pack(0x07064B50, 0, cd_offset + len(cd), 1)
    end = _END.pack(0x06054B50, 0, 0, n, n, _FFFF32, _FFFF32, 0)
    return cd + z64 + loc + end


def _digest_prefix(name: str, size: int) -> bytes:
    return name.encode() + b"\0" + struct.pack("<Q", size)


# --- writing -----------------------------------------------------------------------------
#: a member to write: name, .npy header, number of data bytes, data blocks
_Member = tuple[str, bytes, int, Iterable[Any]]


def _write_zip(fh: IO[bytes], members: list[_Member]) -> str:
    """Write the members and then the ``sha256`` member and the zip tail to a seekable ``fh``; return the digest."""
    h = hashlib.sha256()
    entries: list[tuple[str, int, int, int]] = []
    pos = fh.tell()
    for name, head, nbytes, blocks in members:
        size = len(head) + nbytes
        lh = _local_header(name, pos, size, 0)
        fh.write(lh)
        fh.write(head)
        h.update(_digest_prefix(name, size))
        h.update(head)
        crc = zlib.crc32(head)
        n = 0
        for b in blocks:
            mv = memoryview(b).cast("B")
            fh.write(mv)
            h.update(mv)
            crc = zlib.crc32(mv, crc)
            n += mv.nbytes
        if n != nbytes:  # pragma: no cover - internal consistency
            raise RuntimeError(f"member {name}: wrote {n} data bytes, expected {nbytes}")
        end = pos + len(lh) + size
        fh.seek(pos + 14)
        fh.write(struct.pack("<I", crc))
        fh.seek(end)
        entries.append((name, pos, size, crc))
        pos = end
    digest = h.hexdigest()
    sm = _str_member(digest)
    crc = zlib.crc32(sm)
    lh = _local_header("sha256", pos, len(sm), crc)
    fh.write(lh + sm)
    entries.append(("sha256", pos, len(sm), crc))
    fh.write(_tail(entries, pos + len(lh) + len(sm)))
    return digest


def _array_blocks(a: np.ndarray) -> Iterator[memoryview]:
    flat = a.reshape(-1).view(np.uint8)
    for i in range(0, flat.shape[0], _BLOCK):
        yield flat[i:i + _BLOCK].data


def _file_blocks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        yield from iter(lambda: fh.read(_BLOCK), b"")


def _v3_header(header_json: str) -> str:
    """Format 2's header JSON with ``"version": 3`` (same keys, sorted)."""
    try:
        h = json.loads(header_json)
    except ValueError:
        raise ValueError("header_json is not JSON") from None
    h["version"] = COMPRESSED_VERSION
    return json.dumps(h, sort_keys=True)


def _key_le(a: np.ndarray, b: np.ndarray) -> bool:
    """``a <= b`` for two keys (big-integer order, word ``W-1`` most significant)."""
    for w in range(a.shape[0] - 1, -1, -1):
        if a[w] != b[w]:
            return bool(a[w] < b[w])
    return True


def _write_v3(fh: IO[bytes], header_json: str, chunks: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
              n_words: int) -> int:
    """Write a compressed (version 3) file to ``fh`` in one sequential pass; return the number of records."""
    from fastpoly.backends.numba.codec import encode_blocks
    from fastpoly.backends.numba.jit import get_num_threads

    W = int(n_words)
    B = int(BLOCK_RECORDS)
    # blocks encoded together (in parallel, one per thread); the writer holds the incoming chunk,
    # one carried block and one group's encoded bytes, whatever the chunk sizes and the file size
    group = B * max(1, min(16, get_num_threads()))
    h = hashlib.sha256()

    def put(b: Any) -> None:
        if isinstance(b, np.ndarray):
            b = np.ascontiguousarray(b).reshape(-1).view(np.uint8)
        if len(b) == 0:
            return
        mv = memoryview(b).cast("B")
        fh.write(mv)
        h.update(mv)

    def checked() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for k, c, f in chunks:
            k = np.asarray(k, np.uint64)
            if k.ndim != 2 or k.shape[1] != W:
                raise ValueError(f"chunk keys have shape {k.shape}, expected (K, {W})")
            yield k, np.asarray(c, np.int64), np.asarray(f, np.uint64)

    put(MAGIC3)
    index: list[np.ndarray] = []
    last: np.ndarray | None = None
    n = 0
    for k, c, f in block_aligned(checked(), B):
        if last is not None and _key_le(k[0], last):
            raise ValueError(f"keys are not strictly increasing at record {n}")
        for a in range(0, k.shape[0], group):  # the encoded bytes of one group at a time
            b = min(k.shape[0], a + group)
            buf, idx = encode_blocks(k[a:b], c[a:b], f[a:b], B)
            put(buf)
            index.append(idx)
            del buf
        last = np.array(k[-1])
        n += k.shape[0]
    idx_all = np.concatenate(index) if index else np.zeros((0, 4), np.int64)
    hb = _v3_header(header_json).encode()
    put(hb)
    put(np.ascontiguousarray(idx_all, "<u8"))
    put(_FOOTER3.pack(len(hb), idx_all.shape[0], n, W, B))
    fh.write(h.digest() + END3)
    return n


def counts_file_bytes(header_json: str, keys: np.ndarray, counts: np.ndarray, first_index: np.ndarray,
                      compress: bool = False) -> bytes:
    """The bytes of a counts file (what :meth:`FunctionCounts.to_bytes` returns).

    Parameters
    ----------
    header_json : str
        ``FunctionCounts._payload()`` (metadata and totals).
    keys, counts, first_index : arrays (K, W), (K,), (K,)
    compress : bool
        Format 3 (compressed) instead of format 2.
    """
    if compress:
        out = io.BytesIO()
        _write_v3(out, header_json, [(keys, counts, first_index)], np.asarray(keys).shape[1])
        return out.getvalue()
    sm = _str_member(header_json)
    members: list[_Member] = [("header", b"", len(sm), [sm])]
    for name, a in (("keys", keys), ("counts", counts), ("first_index", first_index)):
        a = np.ascontiguousarray(a, dtype=ARRAY_DTYPES[name])
        members.append((name, npy_header(ARRAY_DTYPES[name], a.shape), a.nbytes, _array_blocks(a)))
    buf = io.BytesIO()
    _write_zip(buf, members)
    return buf.getvalue()


def write_counts_file(path: str | os.PathLike[str], header_json: str,
                      chunks: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], n_words: int,
                      compress: bool = False) -> int:
    """Stream sorted chunks into a counts file byte-identical to ``FunctionCounts.save``.

    Format 2 (default): the chunks go to temporary side files next to ``path`` first (their
    number is not known in advance).  Format 3 (``compress=True``): the chunks are encoded and
    written in one sequential pass, no side files.  Either way the file is written to a
    temporary name, fsync'ed and renamed.

    Parameters
    ----------
    path : path
    header_json : str
        ``FunctionCounts._payload()`` of the result (metadata and totals).
    chunks : iterable of (keys, counts, first)
    n_words : int
    compress : bool
        Write format 3 (compressed) instead of format 2.

    Returns
    -------
    int
        Number of distinct keys written.

    Raises
    ------
    fastpoly.counts.spill.SpillError
        If the disk is full or the file cannot be written (no partial file is left).
    ValueError
        (format 3) If keys are not strictly increasing or a count is below 1.
    """
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    side: list[Any] = []
    try:
        if compress:
            with atomic_open(path, "wb") as fh:
                return _write_v3(fh, header_json, chunks, n_words)
        n = write_side_files(chunks, d, side)
        shapes = {"keys": (n, n_words), "counts": (n,), "first_index": (n,)}
        sm = _str_member(header_json)
        members: list[_Member] = [("header", b"", len(sm), [sm])]
        for (name, shape), (_, p) in zip(shapes.items(), side):
            nbytes = 8 * int(np.prod(shape))
            members.append((name, npy_header(ARRAY_DTYPES[name], shape), nbytes, _file_blocks(p)))
        with atomic_open(path, "wb") as fh:
            _write_zip(fh, members)
        return n
    except OSError as e:
        raise_spill(e, path)
        raise  # pragma: no cover - raise_spill always raises
    finally:
        remove_side_files(side)


# --- reading -----------------------------------------------------------------------------
def read_counts_file(source: str | os.PathLike[str], data: bytes | None = None, mmap: bool = False) -> CountsFileContent:
    """Read and verify a counts file; the one reader behind every load path.

    Parameters
    ----------
    source : path
        The file (read when ``data`` is None), or a name for messages.
    data : bytes or None
        The file's bytes, when already in memory.
    mmap : bool
        Memory-map the arrays (``data`` must be None); otherwise they are copied into memory.
        The same checks run either way: the digest over every member and the zip framing.

    Raises
    ------
    CountsFileError
        If the file is truncated, modified in any bit, or not a fastpoly counts file.
    OSError
        If the file cannot be read at all (missing, a folder, no permission).
    """
    src = os.fspath(source)
    if data is None:
        if not mmap:
            with open(src, "rb") as fh:
                data = fh.read()
        elif os.path.getsize(src) == 0:
            raise CountsFileError(f"{src}: empty file, not a fastpoly counts file")
    try:
        buf = np.frombuffer(data, np.uint8) if data is not None else np.memmap(src, np.uint8, mode="r")
        if bytes(buf[:len(MAGIC3)]) == MAGIC3:
            return _read_v3(buf, src, copy=not mmap)
        return _read(buf, src, data, copy=not mmap)
    except CountsFileError as e:
        raise CountsFileError(str(e) if str(e).startswith(f"{src}: ") else f"{src}: {e}") from None
    except (ValueError, IndexError, struct.error, zipfile.BadZipFile, KeyError, EOFError) as e:
        raise CountsFileError(f"{src}: not a readable fastpoly counts file ({e})") from None


def key_int(key: np.ndarray) -> int:
    """A key (W uint64 words, word 0 least significant) as one Python integer: its sort order."""
    return sum(int(w) << (64 * i) for i, w in enumerate(np.asarray(key, np.uint64).reshape(-1)))


def search_sorted_keys(keys: np.ndarray, key: np.ndarray) -> int | None:
    """Row of ``key`` in sorted, unique ``keys`` (K, W) or None: a binary search (O(log K) rows read).

    Works on memory-mapped arrays without touching more than ~log2(K) of their pages.
    """
    key = np.asarray(key, np.uint64).reshape(-1)
    K = int(keys.shape[0])
    if K == 0:
        return None
    if keys.shape[1] == 1:
        i = int(np.searchsorted(keys[:, 0], key[0]))
        return i if i < K and keys[i, 0] == key[0] else None
    k = key_int(key)
    lo, hi = 0, K
    while lo < hi:
        mid = (lo + hi) // 2
        if key_int(keys[mid]) < k:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < K and key_int(keys[lo]) == k else None


class PackedCounts:
    """The blocks of a compressed (version 3) counts file, decoded on demand.

    Built by :func:`read_counts_file` after every check of the file passed (digest, framing).
    Decoding a block re-checks every length (a corrupt block raises :class:`CountsFileError`).

    Attributes
    ----------
    n_records, n_words, block : int
        Records, key words, records per block.
    index : int64 array (n_blocks, 4)
        Records and section lengths of each block.
    starts : int64 array (n_blocks + 1,)
        Index of the first record of each block (and the total).
    """

    def __init__(self, source: str, buf: np.ndarray, index: np.ndarray, n_words: int, n_records: int,
                 block: int) -> None:
        self.source = source
        self.buf = buf
        self.index = index
        self.n_words = int(n_words)
        self.n_records = int(n_records)
        self.block = int(block)
        self.offsets = len(MAGIC3) + np.concatenate([[0], np.cumsum(index[:, 1:].sum(axis=1))]).astype(np.int64)
        self.starts = np.concatenate([[0], np.cumsum(index[:, 0])]).astype(np.int64)

    @property
    def n_blocks(self) -> int:
        """Number of blocks."""
        return int(self.index.shape[0])

    def decode(self, b0: int = 0, b1: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Records of blocks ``[b0, b1)`` (default: all) as ``(keys, counts, first_index)`` arrays."""
        from fastpoly.backends.numba.codec import decode_blocks
        from fastpoly.counts.codec import CodecError

        b1 = self.n_blocks if b1 is None else int(b1)
        o0, o1 = int(self.offsets[b0]), int(self.offsets[b1])
        try:
            out = decode_blocks(np.asarray(self.buf[o0:o1]), self.index[b0:b1], self.n_words)
        except CodecError as e:
            raise CountsFileError(f"{self.source}: corrupt compressed data ({e})") from None
        drop_pages(self.buf, o0, o1)
        return out

    def iter_blocks(self, columns: Iterable[str], block: int) -> Iterator[tuple[int, list[np.ndarray]]]:
        """Yield ``(start, [column arrays])`` over all records, about ``block`` records at a time.

        ``columns``: names among ``keys``, ``counts``, ``first_index``.  Memory: one group of
        decoded blocks (at least one block of :attr:`block` records).
        """
        cols = list(columns)
        g = max(1, int(block) // self.block)
        for b0 in range(0, self.n_blocks, g):
            k, c, f = self.decode(b0, min(self.n_blocks, b0 + g))
            arrays = {"keys": k, "counts": c, "first_index": f}
            yield int(self.starts[b0]), [arrays[name] for name in cols]

    def first_key(self, b: int) -> int:
        """The first key of block ``b`` as a Python integer (read from the block's first record only)."""
        o = int(self.offsets[b])
        L = int(self.buf[o])
        if L > 8 * self.n_words or L > int(self.index[b, 1]) - 1:
            raise CountsFileError(f"{self.source}: corrupt compressed data (first key of block {b})")
        return int.from_bytes(bytes(self.buf[o + 1:o + 1 + L]), "little")

    def find(self, key: np.ndarray) -> int | None:
        """Position of ``key`` (W uint64 words) or None: a binary search over the blocks' first keys, then one block."""
        if self.n_records == 0:
            return None
        k = key_int(key)
        lo, hi = 0, self.n_blocks  # last block whose first key <= k
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.first_key(mid) <= k:
                lo = mid
            else:
                hi = mid
        keys = self.decode(lo, lo + 1)[0]
        i = search_sorted_keys(keys, key)
        return None if i is None else int(self.starts[lo]) + i

    def rows(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Records at positions ``idx`` (decodes only the blocks they are in)."""
        idx = np.asarray(idx, np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_records):
            raise IndexError(f"record index out of range [0, {self.n_records})")
        keys = np.zeros((idx.size, self.n_words), np.uint64)
        counts = np.zeros(idx.size, np.int64)
        first = np.zeros(idx.size, np.uint64)
        blk = np.searchsorted(self.starts, idx, side="right") - 1
        for b in np.unique(blk):
            k, c, f = self.decode(int(b), int(b) + 1)
            sel = np.flatnonzero(blk == b)
            r = idx[sel] - self.starts[b]
            keys[sel], counts[sel], first[sel] = k[r], c[r], f[r]
        return keys, counts, first


def _read_v3(buf: np.ndarray, src: str, copy: bool) -> CountsFileContent:
    """A compressed (version 3) file: framing, digest, header; the blocks decoded now (copy) or lazily."""
    size = int(buf.shape[0])
    if size < len(MAGIC3) + _TAIL3:
        raise CountsFileError("file truncated")
    tail = bytes(buf[size - _TAIL3:])
    if tail[-len(END3):] != END3:
        raise CountsFileError("no end marker (truncated or modified file)")
    hlen, nb, n, W, B = _FOOTER3.unpack(tail[:_FOOTER3.size])
    if not 1 <= W <= 31 or not 1 <= B <= 1 << 30 or nb > size or hlen > size:
        raise CountsFileError("damaged footer (modified file)")
    data_end = size - _TAIL3 - 32 * nb - hlen
    if data_end < len(MAGIC3):
        raise CountsFileError("damaged footer (truncated or modified file)")
    h = hashlib.sha256()
    stop = size - 32 - len(END3)
    for a in range(0, stop, _BLOCK):
        b = min(a + _BLOCK, stop)
        h.update(buf[a:b].data)
        drop_pages(buf, a, b)
    if h.digest() != tail[_FOOTER3.size:_FOOTER3.size + 32]:
        raise CountsFileError("checksum mismatch (file truncated or modified)")
    raw_index = np.frombuffer(bytes(buf[data_end + hlen:data_end + hlen + 32 * nb]), "<u8").reshape(nb, 4)
    if nb and int(raw_index.max()) >= 1 << 62:
        raise CountsFileError("damaged block index")
    index = raw_index.astype(np.int64)
    rec = index[:, 0]
    if (int(rec.sum()) != n or int(index[:, 1:].sum()) != data_end - len(MAGIC3)
            or (nb and (np.any(rec[:-1] != B) or not 1 <= int(rec[-1]) <= B)) or (nb == 0) != (n == 0)):
        raise CountsFileError("block index does not match the data")
    try:
        header_json = bytes(buf[data_end:data_end + hlen]).decode("utf-8")
        header = json.loads(header_json)
    except ValueError:
        raise CountsFileError("corrupted header") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("version") != COMPRESSED_VERSION:
        raise CountsFileError("not a fastpoly compressed counts file")
    packed = PackedCounts(src, buf, index, W, n, B)
    if copy:
        k, c, f = packed.decode()
        return _content(header_json, header, {"keys": k, "counts": c, "first_index": f}, True)
    content = _content(header_json, header, {"keys": np.zeros((0, W), np.uint64), "counts": np.zeros(0, np.int64),
                                             "first_index": np.zeros(0, np.uint64)}, False)
    return CountsFileContent(content.header_json, header, content.keys, content.counts, content.first_index, packed)


def _locate(buf: np.ndarray, pos: int, name: str) -> tuple[int, int]:
    """``(data offset, size)`` of member ``name`` whose local header is at ``pos``."""
    lh = bytes(buf[pos:pos + _LFH.size])
    if len(lh) < _LFH.size or _LFH.unpack(lh)[0] != 0x04034B50:
        raise CountsFileError(f"no member {name} where expected (truncated or modified file)")
    nlen, xlen = _LFH.unpack(lh)[9:11]
    if bytes(buf[pos + _LFH.size:pos + _LFH.size + nlen]) != (name + ".npy").encode():
        raise CountsFileError(f"no member {name} where expected (modified file)")
    extra = bytes(buf[pos + _LFH.size + nlen:pos + _LFH.size + nlen + min(xlen, 20)])
    if len(extra) < 20 or struct.unpack("<HH", extra[:4]) != (1, 16):
        raise CountsFileError(f"member {name}: damaged zip64 header")
    size = struct.unpack("<Q", extra[4:12])[0]
    start = pos + _LFH.size + nlen + xlen
    if start + size > buf.shape[0]:
        raise CountsFileError("file truncated")
    return start, size


def _read(buf: np.ndarray, src: str, data: bytes | None, copy: bool) -> CountsFileContent:
    start, size = _locate(buf, 0, "header")
    raw_header = bytes(buf[start:start + size])
    header_json = _parse_str_member(raw_header, "header", strict=False)
    try:
        header = json.loads(header_json)
    except ValueError:
        raise CountsFileError("corrupted header") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CountsFileError("not a fastpoly counts file")
    version = header.get("version")
    if version == 1:
        return _read_v1(buf, src, data, header_json, header, copy)
    if version != FORMAT_VERSION:
        raise CountsFileError(f"unsupported counts format version {version!r} (this fastpoly reads {READABLE_VERSIONS})")
    _parse_str_member(raw_header, "header")  # canonical
    # locate every member (cheap), then stream over them once: digest and CRCs
    spans = {"header": (0, start, size)}
    pos = start + size
    for name in MEMBERS[1:]:
        s, n = _locate(buf, pos, name)
        spans[name] = (pos, s, n)
        pos = s + n
    arrays = {}
    for name, descr in ARRAY_DTYPES.items():
        _, s, n = spans[name]
        d, shape, hlen = _parse_npy_header(bytes(buf[s:s + min(n, 1 << 16)]), name)
        if d != descr:
            raise CountsFileError(f"member {name} has dtype {d!r}, expected {descr!r}")
        if len(shape) != (2 if name == "keys" else 1) or hlen + 8 * int(np.prod(shape)) != n:
            raise CountsFileError(f"member {name} has a wrong shape or size")
        arrays[name] = buf[s + hlen:s + n].view(descr).reshape(shape)
    _, s, n = spans["sha256"]
    digest = _parse_str_member(bytes(buf[s:s + n]), "sha256")
    h = hashlib.sha256()
    crcs = {}
    for name in MEMBERS:
        _, s, n = spans[name]
        crc = 0
        if name != "sha256":
            h.update(_digest_prefix(name, n))
        for a in range(s, s + n, _BLOCK):
            block = buf[a:min(a + _BLOCK, s + n)].data
            crc = zlib.crc32(block, crc)
            if name != "sha256":
                h.update(block)
            drop_pages(buf, a, min(a + _BLOCK, s + n))  # verified pages need not stay resident (mmap)
        crcs[name] = crc
    if h.hexdigest() != digest:
        raise CountsFileError("checksum mismatch (file truncated or modified)")
    entries = []
    for name in MEMBERS:
        lh_pos, s, n = spans[name]
        if bytes(buf[lh_pos:s]) != _local_header(name, lh_pos, n, crcs[name]):
            raise CountsFileError(f"damaged zip header of member {name} (modified file)")
        entries.append((name, lh_pos, n, crcs[name]))
    if bytes(buf[pos:]) != _tail(entries, pos):
        raise CountsFileError("damaged zip directory (truncated or modified file)")
    return _content(header_json, header, arrays, copy)


def _content(header_json: str, header: dict[str, Any], arrays: dict[str, np.ndarray], copy: bool) -> CountsFileContent:
    k, c, f = arrays["keys"], arrays["counts"], arrays["first_index"]
    if copy:
        k, c, f = k.astype(np.uint64), c.astype(np.int64), f.astype(np.uint64)
    if k.ndim != 2 or c.shape != (k.shape[0],) or f.shape != c.shape:
        raise CountsFileError("inconsistent array shapes")
    for field in ("n_samples", "n_accepted", "meta"):
        if field not in header:
            raise CountsFileError(f"header lacks {field}")
    return CountsFileContent(header_json, header, k, c, f)


def _digest_v1(header_json: str, arrays: list[np.ndarray]) -> str:
    """The checksum of format version 1: JSON header, then each array's shape and raw little-endian bytes."""
    h = hashlib.sha256()
    h.update(header_json.encode())
    for a in arrays:
        h.update(repr(tuple(int(v) for v in a.shape)).encode())
        flat = a.reshape(-1).view(np.uint8)
        for i in range(0, flat.shape[0], _BLOCK):
            h.update(flat[i:i + _BLOCK].data)
    return h.hexdigest()


def _read_v1(buf: np.ndarray, src: str, data: bytes | None, header_json: str, header: dict[str, Any],
             copy: bool) -> CountsFileContent:
    """A version-1 file (fastpoly 0.1.0), verified with its own digest and exact dtypes."""
    with zipfile.ZipFile(io.BytesIO(data) if data is not None else src) as zf:
        infos = {name: zf.getinfo(name + ".npy") for name in ("header", "sha256", *ARRAY_DTYPES)}
        with zf.open(infos["sha256"]) as fh:
            digest = str(np.lib.format.read_array(fh, allow_pickle=False))
    arrays = {}
    for name, descr in ARRAY_DTYPES.items():
        info = infos[name]
        if info.compress_type != zipfile.ZIP_STORED:
            raise CountsFileError(f"compressed member {name}")
        lh = bytes(buf[info.header_offset:info.header_offset + _LFH.size])
        if len(lh) < _LFH.size or lh[:4] != b"PK\x03\x04":
            raise CountsFileError(f"damaged zip entry {name}")
        nlen, xlen = _LFH.unpack(lh)[9:11]
        s = info.header_offset + _LFH.size + nlen + xlen
        fh = io.BytesIO(bytes(buf[s:s + min(info.file_size, 1 << 16)]))
        version = np.lib.format.read_magic(fh)
        rd = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = rd(fh)
        if dtype.str != descr or fortran:
            raise CountsFileError(f"member {name} has dtype {dtype.str!r}, expected {descr!r}")
        off = s + fh.tell()
        nbytes = 8 * int(np.prod(shape))
        if fh.tell() + nbytes != info.file_size or off + nbytes > buf.shape[0]:
            raise CountsFileError(f"truncated member {name}")
        arrays[name] = buf[off:off + nbytes].view(descr).reshape(shape)
    got = _digest_v1(header_json, [arrays[n] for n in ARRAY_DTYPES])
    if got != digest:
        raise CountsFileError("checksum mismatch (file truncated or modified)")
    return _content(header_json, header, arrays, copy)

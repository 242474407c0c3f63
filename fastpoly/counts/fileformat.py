"""The counts file format: one writer, one digest, shared by in-memory saves and streamed results.

A counts file is a deterministic, uncompressed ``.npz`` (fixed zip timestamps) with members
``header`` (JSON: format, version, totals, metadata), ``sha256`` (the digest), ``keys`` (<u8),
``counts`` (<i8) and ``first_index`` (<u8).  :func:`write_counts_file` streams sorted chunks into
exactly the bytes :meth:`fastpoly.counts.FunctionCounts.save` writes in memory.
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
import zipfile

import numpy as np

from fastpoly.atomic import public_mode
from fastpoly.counts.spill import raise_spill, remove_side_files, write_side_files

__all__ = ["FORMAT", "FORMAT_VERSION", "CountsFileError", "digest_stream", "npz_bytes", "write_counts_file"]

FORMAT = "fastpoly.counts"
FORMAT_VERSION = 1


class CountsFileError(ValueError):
    """A counts file is truncated, tampered with, or not a fastpoly counts file."""


def digest_stream(header_json, arrays):
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


def npz_bytes(arrays):
    """A deterministic ``.npz`` (fixed zip timestamps), readable by :func:`numpy.load`."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(arr), allow_pickle=False)
    return buf.getvalue()


def write_counts_file(path, header_json, chunks, n_words):
    """Stream sorted chunks into a counts file byte-identical to ``FunctionCounts.save``.

    Parameters
    ----------
    path : path
    header_json : str
        ``FunctionCounts._payload()`` of the result (metadata and totals).
    chunks : iterable of (keys, counts, first)
    n_words : int

    Returns
    -------
    int
        Number of distinct keys written.
    """
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    side = []
    tmp = None
    try:
        n = write_side_files(chunks, d, side)
        shapes = [(n, n_words), (n,), (n,)]
        digest = digest_stream(header_json, [(s, p) for s, (_, p) in zip(shapes, side)])
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
        os.close(fd)
        os.chmod(tmp, public_mode())
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, arr in (("header", np.array(header_json)), ("sha256", np.array(digest))):
                info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                with zf.open(info, "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, arr, allow_pickle=False)
            for (name, descr), shape, (_, p) in zip(
                (("keys", "<u8"), ("counts", "<i8"), ("first_index", "<u8")), shapes, side
            ):
                info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                with zf.open(info, "w", force_zip64=True) as fh:
                    np.lib.format.write_array_header_1_0(
                        fh, {"descr": descr, "fortran_order": False, "shape": shape}
                    )
                    with open(p, "rb") as src:
                        for block in iter(lambda: src.read(1 << 22), b""):
                            fh.write(block)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
        return n
    except OSError as e:
        raise_spill(e, path)
    finally:
        remove_side_files(side)
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass

"""The IDX file format of the MNIST family (MNIST, Fashion-MNIST, KMNIST, EMNIST).

An IDX file is big-endian: a 4-byte magic ``0x00 0x00 TYPE NDIM`` (TYPE one of
:data:`IDX_TYPES`), then one unsigned 32-bit size per dimension, then the data in
row-major order and nothing else.  The files are often gzip-compressed; both
forms are read (gzip is recognised by its own magic bytes, not by the file name).
"""
from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

__all__ = ["IDX_TYPES", "DataError", "read_idx", "write_idx"]


class DataError(ValueError):
    """A data file is missing, malformed or truncated (the message is one line naming the file)."""


#: IDX type code -> big-endian NumPy dtype
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in IDX_TYPES.items()}


def read_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of ``path``, gunzipped when the file starts with the gzip magic ``1f 8b``.

    Raises
    ------
    DataError
        Unreadable file or a corrupt or truncated gzip stream (one line).
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as e:
        raise DataError(f"cannot read {os.fspath(path)}: {e.strerror or e}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{os.fspath(path)}: corrupt or truncated gzip data ({e})") from None
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array an IDX file holds (gzip-compressed or raw).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    numpy.ndarray
        Shape = the file's dimensions, native byte order, dtype uint8, int8,
        int16, int32, float32 or float64 (type codes 0x08, 0x09, 0x0B, 0x0C,
        0x0D, 0x0E).

    Raises
    ------
    DataError
        Bad magic, unknown type code, zero dimensions, a header or data size that
        does not match the dimensions (truncated, or trailing bytes).
    """
    name = os.fspath(path)
    buf = read_bytes(path)
    if len(buf) < 4:
        raise DataError(f"{name}: not an IDX file (only {len(buf)} bytes)")
    if buf[0] != 0 or buf[1] != 0:
        raise DataError(f"{name}: not an IDX file (magic {buf[:4].hex()} does not start with 0000)")
    code, ndim = buf[2], buf[3]
    if code not in IDX_TYPES:
        raise DataError(f"{name}: unknown IDX type code 0x{code:02X} (valid: 08, 09, 0B, 0C, 0D, 0E)")
    if ndim == 0:
        raise DataError(f"{name}: IDX header declares 0 dimensions")
    head = 4 + 4 * ndim
    if len(buf) < head:
        raise DataError(f"{name}: truncated IDX header ({len(buf)} bytes, {ndim} dimensions need {head})")
    dims = tuple(int(d) for d in np.frombuffer(buf, ">u4", count=ndim, offset=4))
    dt = IDX_TYPES[code]
    need = int(np.prod(dims, dtype=np.int64)) * dt.itemsize
    have = len(buf) - head
    if have < need:
        raise DataError(f"{name}: truncated IDX data: dimensions {dims} need {need} bytes, the file has {have}")
    if have > need:
        raise DataError(f"{name}: {have - need} bytes after the IDX data of dimensions {dims}")
    return np.frombuffer(buf, dt, offset=head).astype(dt.newbyteorder("="), copy=True).reshape(dims)


def write_idx(path: str | os.PathLike, array, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file (gzip-compressed if ``compress``, default: the name ends in ``.gz``).

    Raises
    ------
    DataError
        A dtype IDX cannot hold, a 0-d array or more than 255 dimensions, or a size >= 2**32.
    """
    a = np.asarray(array)
    code = _CODES.get(a.dtype.newbyteorder("="))
    if code is None:
        raise DataError(f"IDX cannot hold dtype {a.dtype} (valid: uint8, int8, int16, int32, float32, float64)")
    if not 1 <= a.ndim <= 255 or any(s >= 2**32 for s in a.shape):
        raise DataError(f"IDX cannot hold an array of shape {a.shape}")
    body = bytes([0, 0, code, a.ndim]) + np.asarray(a.shape, ">u4").tobytes() + a.astype(IDX_TYPES[code]).tobytes()
    if compress is None:
        compress = os.fspath(path).endswith(".gz")
    if compress:
        body = gzip.compress(body, mtime=0)
    with open(path, "wb") as fh:
        fh.write(body)

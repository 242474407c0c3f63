"""CIFAR-10's python batches, read without running code from the file.

Each batch (``data_batch_1`` ... ``data_batch_5``, ``test_batch``) is a pickled
dict with ``b"data"`` (N x 3072 uint8: the R, G and B planes of a 32 x 32 image,
each row-major) and ``b"labels"`` (N ints in 0..9).  A pickle can run arbitrary
code when loaded, so it is read with a restricted unpickler that allows only
NumPy's array reconstruction (and ``_codecs.encode``, which protocol-2 pickles
written by Python 3 use for bytes) and refuses anything else with one line.
"""
from __future__ import annotations

import io
import os
import pickle

import numpy as np

from fastpoly.data.idx import DataError, read_bytes

__all__ = ["read_cifar_batch", "write_cifar_batch"]

#: the only globals a CIFAR batch may reference (NumPy's ndarray reconstruction)
_ALLOWED = {
    (mod, name)
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.numeric", "_frombuffer"),
     ("numpy._core.numeric", "_frombuffer"),
     ("_codecs", "encode")}  # Python 3's protocol-2 pickles spell bytes as _codecs.encode(str, "latin1")


class _Restricted(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only NumPy arrays are allowed)")
        return super().find_class(module, name)


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one CIFAR-10 python batch (gzip-compressed or raw).

    Returns
    -------
    images : uint8 array (N, 32, 32, 3)
        In height, width, channel order (the file's channel-major rows transposed).
    labels : int64 array (N,)

    Raises
    ------
    DataError
        Not a pickle, a global other than NumPy's array reconstruction, missing or
        malformed ``data``/``labels`` entries, or a label/image count mismatch.
    """
    name = os.fspath(path)
    buf = read_bytes(path)
    try:
        obj = _Restricted(io.BytesIO(buf), encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise DataError(f"{name}: not a CIFAR-10 batch ({e})") from None
    except Exception as e:  # noqa: BLE001 - any failure of a malformed pickle is a bad file
        raise DataError(f"{name}: not a CIFAR-10 batch (unreadable pickle: {type(e).__name__})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{name}: not a CIFAR-10 batch (the pickle holds a {type(obj).__name__}, not a dict)")

    def entry(key):
        for k in (key.encode(), key):
            if k in obj:
                return obj[k]
        raise DataError(f"{name}: not a CIFAR-10 batch (no {key!r} entry; keys: "
                        f"{sorted(str(k) for k in obj)[:6]})")

    data, labels = entry("data"), entry("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{name}: CIFAR-10 'data' must be a uint8 (N, 3072) array, got {desc}")
    try:
        lab = np.asarray(labels)
    except Exception:  # noqa: BLE001
        raise DataError(f"{name}: CIFAR-10 'labels' is not a list of integers") from None
    if lab.ndim != 1 or not np.issubdtype(lab.dtype, np.integer):
        raise DataError(f"{name}: CIFAR-10 'labels' must be a list of integers")
    if lab.size != data.shape[0]:
        raise DataError(f"{name}: {lab.size} labels for {data.shape[0]} images")
    if lab.size and (lab.min() < 0 or lab.max() > 9):
        raise DataError(f"{name}: CIFAR-10 labels must lie in 0..9, got {int(lab.min())}..{int(lab.max())}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), lab.astype(np.int64)


def write_cifar_batch(path: str | os.PathLike, images, labels) -> None:
    """Write a CIFAR-10 python batch (``images`` uint8 (N, 32, 32, 3) in HWC order; pickle protocol 2)."""
    images = np.asarray(images, np.uint8)
    if images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise DataError(f"CIFAR-10 images must have shape (N, 32, 32, 3), got {images.shape}")
    data = np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(images.shape[0], 3072)
    obj = {b"batch_label": b"fastpoly", b"labels": [int(v) for v in labels], b"data": data,
           b"filenames": [b"%d.png" % i for i in range(images.shape[0])]}
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)

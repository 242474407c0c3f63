"""Where each dataset's files are and how their raw arrays are read (never downloaded).

Files are looked for in the directory the user gives (``path=``) or, without one,
in ``$FASTPOLY_DATA``; in that directory, in a subdirectory named like the
dataset (``mnist/``, ``fashion-mnist/``, ``kmnist/``, ``emnist/``,
``cifar-10-batches-py/``, torchvision's ``MNIST/``, ``FashionMNIST/``, ``KMNIST/``,
``EMNIST/``) and in the ``raw/`` folder of each.  Every IDX file may be gzip
compressed (``NAME.gz``) or raw (``NAME``).

Raw arrays: images ``(N, H, W, C)`` with their stored pixel type and labels
``int64 (N,)``.  EMNIST's IDX images are stored transposed (each 28 x 28 image
column by column); they are transposed back here so that every dataset's images
are upright, row-major.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from fastpoly.data.cifar import read_cifar_batch
from fastpoly.data.idx import DataError, read_idx

__all__ = ["DATASETS", "EMNIST_SPLITS", "DataSource", "RawData", "find_dir", "read_raw", "source"]

_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

#: EMNIST split -> (number of classes, smallest label)
EMNIST_SPLITS = {"balanced": (47, 0), "byclass": (62, 0), "bymerge": (47, 0), "digits": (10, 0),
                 "letters": (26, 1), "mnist": (10, 0)}


@dataclass(frozen=True)
class DataSource:
    """A dataset's files and conventions.

    Attributes
    ----------
    name : str
    kind : {"sklearn", "idx", "cifar"}
    files : tuple of str
        File names (IDX: train images, train labels, test images, test labels; CIFAR: the
        train batches then ``test_batch``); empty for scikit-learn's digits.
    dirs : tuple of str
        Subdirectory names the files may sit in.
    n_classes, first_label : int
        Labels run over ``first_label .. first_label + n_classes - 1``.
    pixel_max : int
        Largest pixel value ("scale" divides by it: 255, or 16 for the 8 x 8 digits).
    official_split : bool
        Whether the files hold an official train/test split (digits: no).
    transposed : bool
        Images stored transposed (EMNIST).
    """

    name: str
    kind: str
    files: tuple = ()
    dirs: tuple = ()
    n_classes: int = 10
    first_label: int = 0
    pixel_max: int = 255
    official_split: bool = True
    transposed: bool = False


def _emnist(split: str) -> DataSource:
    n, lo = EMNIST_SPLITS[split]
    files = tuple(f"emnist-{split}-{f}" for f in _MNIST_FILES)
    return DataSource(f"emnist-{split}", "idx", files, ("emnist", "EMNIST", "gzip"), n, lo, transposed=True)


#: dataset name -> source (``emnist`` is ``emnist-digits``)
DATASETS: dict[str, DataSource] = {
    "digits": DataSource("digits", "sklearn", n_classes=10, pixel_max=16, official_split=False),
    "mnist": DataSource("mnist", "idx", _MNIST_FILES, ("mnist", "MNIST")),
    "fashion-mnist": DataSource("fashion-mnist", "idx", _MNIST_FILES,
                                ("fashion-mnist", "fashion_mnist", "FashionMNIST")),
    "kmnist": DataSource("kmnist", "idx", _MNIST_FILES, ("kmnist", "KMNIST")),
    **{f"emnist-{s}": _emnist(s) for s in EMNIST_SPLITS},
    "emnist": _emnist("digits"),
    "cifar10": DataSource("cifar10", "cifar",
                          tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",),
                          ("cifar-10-batches-py", "cifar10", "cifar-10")),
}


def source(name: str) -> DataSource:
    """The :class:`DataSource` of a dataset name (case-insensitive; ``fashion_mnist``, ``cifar-10`` accepted)."""
    if not isinstance(name, str):
        raise DataError(f"dataset name must be a string, got {type(name).__name__}")
    key = name.strip().lower().replace("_", "-")
    key = {"cifar-10": "cifar10", "fashion": "fashion-mnist", "fmnist": "fashion-mnist"}.get(key, key)
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid: {', '.join(sorted(DATASETS))}")
    return DATASETS[key]


def _base_dir(path) -> str:
    if path is None:
        path = os.environ.get("FASTPOLY_DATA")
        if not path:
            raise DataError("no data directory: pass path=... (CLI: --path) or set FASTPOLY_DATA "
                            "(fastpoly never downloads data)")
    path = os.path.expanduser(os.fspath(path))
    if not os.path.isdir(path):
        raise DataError(f"data directory {path} does not exist or is not a directory")
    return path


def _candidates(base: str, src: DataSource) -> list[str]:
    out = []
    for d in ("",) + tuple(src.dirs):
        for sub in ("", "raw"):
            p = os.path.join(base, d, sub) if (d or sub) else base
            if os.path.isdir(p) and p not in out:
                out.append(p)
    return out


def _locate(folder: str, fname: str) -> str | None:
    for n in (fname, fname + ".gz"):
        p = os.path.join(folder, n)
        if os.path.isfile(p):
            return p
    return None


def find_dir(src: DataSource, path=None) -> tuple[str, list[str]]:
    """The first candidate directory holding all of ``src``'s files, and their paths.

    Raises
    ------
    DataError
        One line naming the expected files and the directories searched.
    """
    base = _base_dir(path)
    searched = _candidates(base, src)
    for folder in searched:
        found = [_locate(folder, f) for f in src.files]
        if all(found):
            return folder, [str(f) for f in found]
    gz = " (each raw or .gz)" if src.kind == "idx" else " (raw or .gz)"
    raise DataError(f"{src.name}: files not found; expected {', '.join(src.files)}{gz} in one of "
                    f"{', '.join(searched)} (fastpoly never downloads data)")


@dataclass(frozen=True)
class RawData:
    """A dataset's raw arrays: images ``(N, H, W, C)``, int64 labels, and the files read."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray | None
    test_labels: np.ndarray | None
    files: tuple
    folder: str | None


def _idx_pair(img_path: str, lab_path: str, src: DataSource):
    img = read_idx(img_path)
    lab = read_idx(lab_path)
    if img.ndim != 3:
        raise DataError(f"{img_path}: images must be a 3-D IDX array (N, H, W), got {img.ndim} dimensions")
    if lab.ndim != 1:
        raise DataError(f"{lab_path}: labels must be a 1-D IDX array, got {lab.ndim} dimensions")
    if img.shape[0] != lab.shape[0]:
        raise DataError(f"{img_path}: {img.shape[0]} images but {lab_path} holds {lab.shape[0]} labels")
    if not np.issubdtype(lab.dtype, np.integer):
        raise DataError(f"{lab_path}: labels must be integers, got {lab.dtype}")
    lo, hi = src.first_label, src.first_label + src.n_classes - 1
    if lab.size and (lab.min() < lo or lab.max() > hi):
        raise DataError(f"{lab_path}: labels must lie in {lo}..{hi} for {src.name}, "
                        f"got {int(lab.min())}..{int(lab.max())}")
    if src.transposed:
        img = img.transpose(0, 2, 1)
    return np.ascontiguousarray(img)[..., None], lab.astype(np.int64)


def read_raw(src: DataSource, path=None) -> RawData:
    """Read a dataset's raw arrays (see the module docstring for where files are looked for)."""
    if src.kind == "sklearn":
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise DataError('the digits dataset needs scikit-learn: pip install scikit-learn') from None
        d = load_digits()
        img = np.rint(d.images).astype(np.uint8)[..., None]
        return RawData(img, np.asarray(d.target, np.int64), None, None, ("sklearn.datasets.load_digits",), None)
    folder, paths = find_dir(src, path)
    if src.kind == "idx":
        tri, trl = _idx_pair(paths[0], paths[1], src)
        tei, tel = _idx_pair(paths[2], paths[3], src)
        if tri.shape[1:] != tei.shape[1:]:
            raise DataError(f"{paths[2]}: test images are {tei.shape[1:3]}, train images {tri.shape[1:3]}")
    else:
        parts = [read_cifar_batch(p) for p in paths[:-1]]
        tri = np.concatenate([p[0] for p in parts])
        trl = np.concatenate([p[1] for p in parts])
        tei, tel = read_cifar_batch(paths[-1])
    return RawData(tri, trl, tei, tel, tuple(os.path.basename(p) for p in paths), folder)

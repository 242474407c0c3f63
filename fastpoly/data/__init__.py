"""Real image datasets from local files: scikit-learn's digits, MNIST, Fashion-MNIST, KMNIST, EMNIST, CIFAR-10.

* :func:`load` -- a frozen :class:`Dataset` (``X_train, y_train, X_test, y_test`` and a
  JSON-ready ``meta`` with the source digest, split and transform) with the anchors'
  binarisations and normalisations and seeded splits (preset ``"nn-pacbayes"``);
* :func:`read_idx` / :func:`write_idx` -- the IDX format of the MNIST family (gzip or raw);
* :func:`read_cifar_batch` / :func:`write_cifar_batch` -- CIFAR-10's python batches, read
  with a restricted unpickler (no code from the file runs).

Nothing is ever downloaded: files come from the directory given (``path=``) or
``$FASTPOLY_DATA``.  Pure NumPy and the standard library (scikit-learn only for the
digits, imported when they are loaded).  Every bad file or option raises
:class:`DataError` (a ``ValueError``) with a one-line message.
"""
from __future__ import annotations

from fastpoly.data.cifar import read_cifar_batch, write_cifar_batch
from fastpoly.data.core import BINARIZATIONS, NORMALIZATIONS, PRESETS, Dataset, binarize_labels, load
from fastpoly.data.idx import IDX_TYPES, DataError, read_idx, write_idx
from fastpoly.data.sources import DATASETS, EMNIST_SPLITS, find_dir, source

__all__ = [
    "BINARIZATIONS", "DATASETS", "EMNIST_SPLITS", "IDX_TYPES", "NORMALIZATIONS", "PRESETS", "DataError",
    "Dataset", "binarize_labels", "find_dir", "load", "read_cifar_batch", "read_idx", "source",
    "write_cifar_batch", "write_idx",
]

"""``load``: a dataset's raw arrays -> a frozen, binarised, normalised, split :class:`Dataset`.

Binarisations (label -> 0/1; ``binarize=None`` keeps the class labels):

* ``"threshold"``: label >= first + ceil(C/2) -> 1 (the upper half of the classes; digits 5-9
  for the ten-class datasets) -- the nn-pacbayes convention;
* ``"oddeven"``: even label -> 1 (nn-pacbayes' convention);
* ``"lt<k>"`` (e.g. ``"lt5"``): label < k -> 1;
* ``"ovr<k>"`` (e.g. ``"ovr3"``): one-vs-rest, label == k -> 1;
* a callable ``labels -> 0/1 array`` (recorded by its qualified name).

Normalisations (applied to the selected images, statistics from the training images only):

* ``"scale"``: pixels / pixel_max, in [0, 1] (pixel_max = 255; 16 for scikit-learn's 8 x 8
  digits, whose pixels are 0..16 -- there "/255" of the anchors is "/16");
* ``"center"``: scaled to [0, 1], then the per-pixel train mean subtracted;
* ``"standardize"``: scaled to [0, 1], then per pixel ``(x - mean) / std`` with the train
  mean and standard deviation (pixels constant over the training images get std 1);
* ``None``: the raw pixel values.

Splits: ``"official"`` (default where the files have one) draws ``n_train`` images from the
official train split (the first ``n_train`` of ``numpy.random.default_rng(seed).permutation``)
and takes ``n_test`` test images from the official test split, the first ones in order
(``test_order="first"``) or a seeded draw (``"random"``); ``"pooled"`` (the only split of
the digits) draws a seeded permutation of all images: the first ``n_train`` are the train
set, the next ``n_test`` the test set.

Preset ``"nn-pacbayes"`` (the anchor's conventions): binarize="threshold", normalize="scale"
(pixels / 255), flatten=True, split="official", test_order="first", n_test=100 -- unless
given explicitly.
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field

import numpy as np

from fastpoly.data.idx import DataError
from fastpoly.data.sources import DataSource, RawData, read_raw, source
from fastpoly.plan import inputs_digest

__all__ = ["BINARIZATIONS", "NORMALIZATIONS", "PRESETS", "Dataset", "binarize_labels", "load", "raw_digest"]

BINARIZATIONS = ("threshold", "oddeven", "lt<k>", "ovr<k>", "callable", None)
NORMALIZATIONS = ("scale", "center", "standardize", None)
#: preset name -> defaults it sets
PRESETS = {
    "nn-pacbayes": {"binarize": "threshold", "normalize": "scale", "flatten": True, "split": "official",
                    "test_order": "first", "n_test": 100},
}
_UNSET = object()


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded dataset: read-only arrays and the meta that reproduces them.

    Attributes
    ----------
    name : str
    X_train, X_test : float array (n, H*W*C) when flattened (row-major H, W, C) or (n, H, W, C)
    y_train, y_test : uint8 (binarised) or int64 (class labels) array (n,)
    train_index, test_index : int64 array
        Rows of the source split the images came from (the pooled index for ``split="pooled"``).
    meta : dict
        JSON-ready: ``dataset``, ``files``, ``source_digest`` (sha256 of the raw arrays),
        ``split`` and ``transform`` dicts, ``X_train_digest``/``X_test_digest``
        (:func:`fastpoly.plan.inputs_digest`), ``label_counts``; fit for a counts file's meta.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    train_index: np.ndarray
    test_index: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def n_inputs(self) -> int:
        """Inputs per image (pixels times channels)."""
        return int(np.prod(self.X_train.shape[1:]))

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={self.X_train.shape}, test={self.X_test.shape}, "
                f"binarize={self.meta['transform']['binarize']!r}, normalize={self.meta['transform']['normalize']!r})")


def raw_digest(raw: RawData) -> str:
    """sha256 over the raw arrays (dtype, shape, bytes of train images, labels, test images, labels)."""
    h = hashlib.sha256()
    for a in (raw.train_images, raw.train_labels, raw.test_images, raw.test_labels):
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def binarize_labels(labels: np.ndarray, rule, src: DataSource) -> tuple[np.ndarray, str]:
    """0/1 labels (uint8) by ``rule`` and its recorded name (see the module docstring)."""
    labels = np.asarray(labels, np.int64)
    if rule is None:
        return labels.copy(), "none"
    if callable(rule):
        try:
            out = np.asarray(rule(labels.copy()))
        except Exception as e:  # noqa: BLE001 - a user function failing is a bad argument
            raise DataError(f"the binarize callable failed: {type(e).__name__}: {e}") from None
        if out.shape != labels.shape or not np.all((out == 0) | (out == 1)):
            raise DataError(f"the binarize callable must return one 0/1 value per label (shape {labels.shape})")
        return out.astype(np.uint8), "callable:" + getattr(rule, "__qualname__", type(rule).__name__)
    if not isinstance(rule, str):
        raise DataError(f"binarize must be a string, a callable or None, got {type(rule).__name__}")
    lo, n = src.first_label, src.n_classes
    if rule == "threshold":
        return (labels >= lo + math.ceil(n / 2)).astype(np.uint8), rule
    if rule == "oddeven":
        return (labels % 2 == 0).astype(np.uint8), rule
    mt = re.fullmatch(r"(lt|ovr)(-?\d+)", rule)
    if mt:
        k = int(mt.group(2))
        if not lo <= k <= lo + n - (1 if mt.group(1) == "ovr" else 0):
            raise DataError(f"binarize {rule!r}: k must lie in the labels {lo}..{lo + n - 1} of {src.name}")
        return ((labels < k) if mt.group(1) == "lt" else (labels == k)).astype(np.uint8), rule
    raise DataError(f"unknown binarize {rule!r}; valid: threshold, oddeven, lt<k> (e.g. lt5), ovr<k> (e.g. ovr3), "
                    "a callable or None")


def _count(name: str, v, lo: int = 0) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise DataError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def _normalize(Xtr: np.ndarray, Xte: np.ndarray, how, pixel_max: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    Xtr = Xtr.astype(np.float64)
    Xte = Xte.astype(np.float64)
    if how is None:
        return Xtr.astype(dtype), Xte.astype(dtype)
    if how not in NORMALIZATIONS:
        raise DataError(f"unknown normalize {how!r}; valid: scale, center, standardize, None")
    Xtr /= pixel_max
    Xte /= pixel_max
    if how in ("center", "standardize"):
        if Xtr.shape[0] == 0:
            raise DataError(f"normalize={how!r} needs at least one training image")
        mean = Xtr.mean(axis=0)
        Xtr -= mean
        Xte -= mean
        if how == "standardize":
            sd = Xtr.std(axis=0)
            sd[sd == 0] = 1.0
            Xtr /= sd
            Xte /= sd
    return Xtr.astype(dtype), Xte.astype(dtype)


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def _index_digest(ix: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(ix, "<i8").tobytes()).hexdigest()


def load(
    name: str,
    path=None,
    *,
    binarize=_UNSET,
    normalize=_UNSET,
    n_train: int | None = None,
    n_test=_UNSET,
    seed: int = 0,
    flatten=_UNSET,
    split=_UNSET,
    test_order=_UNSET,
    preset: str | None = None,
    dtype=np.float32,
) -> Dataset:
    """Load a dataset from local files (never downloaded), binarised, normalised and split.

    Parameters
    ----------
    name : str
        ``digits`` (scikit-learn's bundled 8 x 8 digits, 1797 images), ``mnist``,
        ``fashion-mnist``, ``kmnist``, ``emnist-<split>`` (balanced, byclass, bymerge,
        digits, letters, mnist; ``emnist`` = ``emnist-digits``) or ``cifar10``.
    path : str, path-like or None
        Directory holding the files (None: ``$FASTPOLY_DATA``); see
        :mod:`fastpoly.data.sources` for the file names and subdirectories searched.
    binarize : str, callable or None
        Default ``"threshold"`` (see the module docstring).
    normalize : {"scale", "center", "standardize", None}
        Default ``"scale"``.
    n_train, n_test : int or None
        Train and test images (None: all of the official split; pooled: all remaining
        images for training, 0 test images unless given).
    seed : int
        Seed of the train draw (and of the test draw with ``test_order="random"``).
    flatten : bool
        Default True: rows of ``H*W*C`` inputs in row-major (H, W, C) order; False: ``(N, H, W, C)``.
    split : {"official", "pooled"}
        Default ``"official"`` (``"pooled"`` for the digits, which have no official split).
    test_order : {"first", "random"}
        Official split only: the first ``n_test`` test images in order (default) or a seeded draw.
    preset : {"nn-pacbayes"} or None
        Defaults of the anchor (see the module docstring); explicit arguments win.
    dtype : float32 (default) or float64

    Returns
    -------
    Dataset

    Raises
    ------
    DataError (a ValueError)
        Unknown names or options, missing files (naming the expected files and where they
        were looked for), malformed or truncated files, or sizes larger than the split.
    """
    src = source(name)
    opts = {"binarize": "threshold", "normalize": "scale", "flatten": True,
            "split": "official" if src.official_split else "pooled", "test_order": "first", "n_test": None}
    if preset is not None:
        if preset not in PRESETS:
            raise DataError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
        if not src.official_split:
            raise DataError(f"preset {preset!r} needs an official train/test split; {src.name} has none")
        opts.update(PRESETS[preset])
    given = {"binarize": binarize, "normalize": normalize, "flatten": flatten, "split": split,
             "test_order": test_order, "n_test": n_test}
    opts.update({k: v for k, v in given.items() if v is not _UNSET})
    if opts["split"] not in ("official", "pooled"):
        raise DataError(f"unknown split {opts['split']!r}; valid: official, pooled")
    if opts["split"] == "official" and not src.official_split:
        raise DataError(f"{src.name} has no official train/test split; use split='pooled'")
    if opts["test_order"] not in ("first", "random"):
        raise DataError(f"unknown test_order {opts['test_order']!r}; valid: first, random")
    if not isinstance(opts["flatten"], (bool, np.bool_)):
        raise DataError(f"flatten must be True or False, got {opts['flatten']!r}")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise DataError(f"dtype must be float32 or float64, got {dtype}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be an integer >= 0, got {seed!r}")
    n_train = _count("n_train", n_train)
    nt = _count("n_test", opts["n_test"])
    if opts["normalize"] not in NORMALIZATIONS:
        raise DataError(f"unknown normalize {opts['normalize']!r}; valid: scale, center, standardize, None")
    raw = read_raw(src, path)
    rng = np.random.default_rng(int(seed))
    if opts["split"] == "official":
        assert raw.test_images is not None and raw.test_labels is not None  # official_split sources have one
        Ntr, Nte = raw.train_images.shape[0], raw.test_images.shape[0]
        n_train = Ntr if n_train is None else n_train
        nt = Nte if nt is None else nt
        if n_train > Ntr or nt > Nte:
            raise DataError(f"{src.name}: asked for {n_train} train / {nt} test images, the official split "
                            f"has {Ntr} / {Nte}")
        tr = rng.permutation(Ntr)[:n_train]
        if opts["test_order"] == "first":
            te = np.arange(nt)
        else:
            te = np.random.default_rng([int(seed), 1]).permutation(Nte)[:nt]
        Xtr, ytr = raw.train_images[tr], raw.train_labels[tr]
        Xte, yte = raw.test_images[te], raw.test_labels[te]
    else:
        imgs, labs = raw.train_images, raw.train_labels
        if raw.test_images is not None and raw.test_labels is not None:
            imgs = np.concatenate([imgs, raw.test_images])
            labs = np.concatenate([labs, raw.test_labels])
        N = imgs.shape[0]
        nt = 0 if nt is None else nt
        n_train = N - nt if n_train is None else n_train
        if n_train + nt > N:
            raise DataError(f"{src.name}: n_train + n_test must be at most {N}, got {n_train} + {nt}")
        p = rng.permutation(N)
        tr, te = p[:n_train], p[n_train:n_train + nt]
        Xtr, ytr, Xte, yte = imgs[tr], labs[tr], imgs[te], labs[te]
    ytr, rule = binarize_labels(ytr, opts["binarize"], src)
    yte, _ = binarize_labels(yte, opts["binarize"], src)
    Xtr, Xte = _normalize(Xtr, Xte, opts["normalize"], src.pixel_max, dtype)
    image_shape = tuple(int(s) for s in raw.train_images.shape[1:])
    if opts["flatten"]:
        n_in = int(np.prod(image_shape))
        Xtr = Xtr.reshape(Xtr.shape[0], n_in)
        Xte = Xte.reshape(Xte.shape[0], n_in)
    meta = {
        "dataset": src.name,
        "files": list(raw.files),
        "source_digest": raw_digest(raw),
        "image_shape": list(image_shape),
        "split": {"kind": opts["split"], "seed": int(seed), "n_train": int(n_train), "n_test": int(nt),
                  "test_order": opts["test_order"] if opts["split"] == "official" else "pooled",
                  "train_index_digest": _index_digest(tr), "test_index_digest": _index_digest(te)},
        "transform": {"binarize": rule, "normalize": opts["normalize"], "pixel_max": src.pixel_max,
                      "flatten": bool(opts["flatten"]), "layout": "HWC", "dtype": dtype.name,
                      "emnist_transposed": src.transposed},
        "preset": preset,
        "X_train_digest": inputs_digest(Xtr),
        "X_test_digest": inputs_digest(Xte),
        "label_counts": {"train": np.bincount(ytr).tolist() if ytr.size else [],
                         "test": np.bincount(yte).tolist() if yte.size else []},
    }
    if opts["binarize"] is None:
        meta["label_counts"] = {"train": np.bincount(ytr - src.first_label, minlength=src.n_classes).tolist(),
                                "test": np.bincount(yte - src.first_label, minlength=src.n_classes).tolist()}
    return Dataset(src.name, _frozen(Xtr), _frozen(ytr), _frozen(Xte), _frozen(yte),
                   _frozen(tr.astype(np.int64)), _frozen(te.astype(np.int64)), meta)

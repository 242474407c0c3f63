"""Posterior over functions: offline conditioning of a counted prior, P_B(f|S), P(S), generalisation error.

Online conditioning (``sample(..., train=(rows, labels))``) keeps only the
networks that fit the train set.  :func:`condition` does the same to a
counted prior after the fact: a sample fits the train set iff its function
does, so keeping the consistent functions and dropping the train rows from
their keys gives **exactly** the counts file online rejection gives for the
same stream (same seed and index range).

Estimates (``docs/design.md#sources-and-estimates``): P_B(f|S) = count(f) / accepted; the marginal
likelihood P(S) = accepted / samples; both with binomial intervals (Wilson or
Clopper--Pearson).  The generalisation error of f is its error rate on the
held-out rows (the key rows) against the target function.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from fastpoly.analysis.blocks import iter_columns
from fastpoly.analysis.stats import INTERVALS, interval
from fastpoly.keys import as_key, key_to_hex, pack_bits, sort_order, unpack_bits
from fastpoly.plan import check_train

__all__ = ["condition", "generalization_error", "posterior_summary", "parse_target", "INTERVALS"]

def parse_target(target: Any, n_rows: int) -> np.ndarray:
    """A target function over all ``n_rows`` rows as a uint8 0/1 array.

    Accepts a 0/1 array of length ``n_rows``, a 0/1 string (character i = row i),
    a hex string or int (bit i = row i), or key words.
    """
    if isinstance(target, (str, int, np.integer)) and not isinstance(target, bool):
        return unpack_bits(as_key(target, n_rows)[None, :], n_rows)[0].astype(np.uint8)
    arr = np.asarray(target)
    if arr.dtype == np.uint64 and arr.ndim == 1 and arr.size == (n_rows + 63) // 64 and arr.size != n_rows:
        return unpack_bits(arr[None, :], n_rows)[0].astype(np.uint8)
    if arr.ndim != 1 or arr.size != n_rows:
        raise ValueError(f"target must have one 0/1 value per row ({n_rows}), got shape {arr.shape}")
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError("target values must be 0 or 1")
    return arr.astype(np.uint8)


def condition(counts: Any, train_idx: ArrayLike, labels: ArrayLike | None = None, target: Any = None) -> Any:
    """Condition counted functions on a train set: keep the consistent ones, renormalise.

    Parameters
    ----------
    counts : FunctionCounts
        A prior (or an already conditioned result: the new rows are added to its train set).
        The result is of the same class.
    train_idx : array_like of int
        Rows of X in the train set (order is kept, as in ``sample(train=...)``).
    labels : array_like of 0/1 or None
        Labels on those rows; taken from ``target`` if None.
    target : target function or None
        Full target (see :func:`parse_target`); stored in the result so that
        generalisation errors can be computed later.

    Returns
    -------
    FunctionCounts
        Keys over the remaining rows, ``n_accepted`` = consistent samples,
        ``n_samples`` unchanged: identical to online rejection on the same stream.
    """
    n_rows = counts.n_rows
    tgt = None if target is None else parse_target(target, n_rows)
    if labels is None:
        if tgt is None:
            raise ValueError("condition needs labels or a target")
        idx = np.asarray(train_idx)
        if idx.size and (not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 or idx.max() >= n_rows):
            raise ValueError(f"train rows must be integers in [0, {n_rows}), got {np.asarray(train_idx).tolist()[:8]}")
        labels = tgt[idx.astype(np.int64)] if idx.size else []
    rows, labs = check_train((train_idx, labels), n_rows)
    if tgt is not None and not np.array_equal(tgt[rows], labs):
        raise ValueError("labels disagree with the target on the train rows")
    key_rows = counts.key_rows()
    pos = np.searchsorted(key_rows, rows)
    bad = (pos >= key_rows.size) | (key_rows[np.minimum(pos, key_rows.size - 1)] != rows)
    if np.any(bad):
        raise ValueError(f"train rows {rows[bad].tolist()[:5]} are already in the train set of these counts")
    if rows.size == key_rows.size:
        raise ValueError("the train set covers every remaining row; no rows are left for the key")
    keep_cols = np.ones(key_rows.size, bool)
    keep_cols[pos] = False
    old_train = list(counts.meta.get("train_rows") or [])
    old_labels = list(counts.meta.get("train_labels") or [])
    new_key_rows = key_rows[keep_cols]
    # stream block by block (memory-mapped or compressed files: one block at a time); the train-set
    # test runs on the packed words, only the consistent functions are unpacked to drop the train rows
    nw = (key_rows.size + 63) // 64
    mask = np.zeros(nw, np.uint64)
    want = np.zeros(nw, np.uint64)
    for p, lab in zip(pos.tolist(), labs.tolist()):
        mask[p >> 6] |= np.uint64(1 << (p & 63))
        if lab:
            want[p >> 6] |= np.uint64(1 << (p & 63))
    ks, cs, fs = [], [], []
    n_acc = 0
    for _, (k, c, f) in iter_columns(counts, ("keys", "counts", "first_index"), 1 << 16):
        ok = np.all((np.asarray(k, np.uint64) & mask) == want, axis=1)
        if np.any(ok):
            bits = unpack_bits(np.asarray(k, np.uint64)[ok], counts.n_key_bits)
            ks.append(pack_bits(bits[:, keep_cols].astype(bool)))
            cs.append(np.asarray(c, np.int64)[ok])
            fs.append(np.asarray(f, np.uint64)[ok])
            n_acc += int(cs[-1].sum())
    W = (new_key_rows.size + 63) // 64
    if ks:
        keys = np.concatenate(ks)
        order = sort_order(keys)
        keys, cnt, first = keys[order], np.concatenate(cs)[order], np.concatenate(fs)[order]
    else:
        keys, cnt, first = np.zeros((0, W), np.uint64), np.zeros(0, np.int64), np.zeros(0, np.uint64)
    meta = dict(counts.meta)
    meta.update(
        train_rows=old_train + rows.tolist(),
        train_labels=old_labels + labs.astype(int).tolist(),
        key_rows=new_key_rows.tolist(),
        n_key_bits=int(new_key_rows.size),
    )
    if tgt is not None:
        meta["target"] = key_to_hex(pack_bits(tgt.astype(bool)), n_rows)
    return type(counts)(keys, cnt, first, counts.n_samples, n_acc, meta)


def _target_of(counts, target):
    if target is None:
        target = counts.meta.get("target")
        if target is None:
            raise ValueError(
                "no target function: pass target=... (or condition with target=..., or sample with "
                "the CLI's --target, which stores it)"
            )
    tgt = parse_target(target, counts.n_rows)
    tr = counts.meta.get("train_rows") or []
    if tr and not np.array_equal(tgt[np.asarray(tr, np.int64)], np.asarray(counts.meta["train_labels"], np.uint8)):
        raise ValueError("the target disagrees with the train labels of these counts")
    return tgt


def generalization_error(counts: Any, target: Any = None) -> np.ndarray:
    """Error rate of each stored function on the held-out rows (the key rows) against the target.

    Returns
    -------
    float64 array (K,)
        Fraction of key rows where the function differs from the target.
    """
    tgt = _target_of(counts, target)
    kr = counts.key_rows()
    tkey = pack_bits(tgt[kr].astype(bool))
    diff = np.bitwise_xor(np.asarray(counts.keys), tkey[None, :])
    # explicit width: reshape(0, -1) is ambiguous for an empty result (no consistent function)
    by = np.ascontiguousarray(diff.astype("<u8")).view(np.uint8).reshape(diff.shape[0], 8 * diff.shape[1])
    nerr = np.unpackbits(by, axis=1).sum(axis=1)
    return nerr / float(kr.size)


def posterior_summary(counts: Any, target: Any = None, confidence: float = 0.95, method: str = "wilson") -> dict[str, Any]:
    """What a researcher reports about a conditioned run.

    Returns
    -------
    dict
        ``n_samples``, ``n_accepted``, ``p_S`` with ``p_S_interval`` (the marginal
        likelihood P(S) = accepted / samples), ``probability``, ``lower``, ``upper``
        (P_B(f|S) of each stored function, in storage order) and, when a target is
        known, ``error`` (per function), ``mean_error`` (posterior mean),
        ``error_values`` and ``error_hist`` (posterior mass at each error value).
    """
    lo, hi = interval(counts.n_accepted, counts.n_samples, confidence, method)
    p, plo, phi = counts.probabilities(confidence, method)
    out = {
        "n_samples": counts.n_samples,
        "n_accepted": counts.n_accepted,
        "p_S": counts.n_accepted / counts.n_samples if counts.n_samples else float("nan"),
        "p_S_interval": (float(lo), float(hi)),
        "probability": p,
        "lower": plo,
        "upper": phi,
        "confidence": confidence,
        "method": method,
    }
    if target is not None or counts.meta.get("target") is not None:
        err = generalization_error(counts, target)
        n_test = counts.key_rows().size
        k = np.rint(err * n_test).astype(np.int64)
        hist = np.bincount(k, weights=counts.counts.astype(np.float64), minlength=n_test + 1)
        hist = hist / counts.n_accepted if counts.n_accepted else hist
        out.update(
            error=err,
            mean_error=float(np.dot(p, err)) if counts.n_accepted else float("nan"),
            error_values=np.arange(n_test + 1) / n_test,
            error_hist=hist,
        )
    return out

"""The named anchor recipe: the Boolean experiment of Mingard et al. (JMLR 2021, nn-pacbayes), in one line.

7-40-40-1 relu, sigma_w = sigma_b = 1 (W ~ N(0, 1/fan_in), b ~ N(0, 1)), all 128
Boolean inputs, target ``0011`` x 32 (f(i) = bit 1 of i), train set
``numpy.random.RandomState(42069).choice(128, m, replace=False)`` (m = 32 or 64;
the first 32 of the 64 draws are the m = 32 set), plain SGD lr 0.01 without
momentum, batch 8, binary cross-entropy on the logit, fit threshold 0.5,
1 (or 64) epochs after fit, at most 3000 epochs (``docs/design.md#psgd-anchor-experiment``).

Input convention: the anchor lists inputs MSB-first (its input ``i`` is
``format(i, '07b')`` with x0 the high bit); fastpoly's row ``i`` is LSB-first.
The prior and SGD are equivariant under permutations of the input
coordinates, so the experiment on fastpoly rows with the *same row indices*
(target and S expressed by row index) has exactly the anchor's distribution
over functions, with function strings in the anchor's ``python`` convention
equal to fastpoly's ``rows`` strings.  ``fastpoly sample 7-40-40-1 --train anchor:32``
uses the very same S, so P_B and P_SGD are directly comparable.
"""
from __future__ import annotations

import numpy as np

from fastpoly.arch import MLP, boolean_inputs
from fastpoly.keys import key_to_hex, pack_bits
from fastpoly.sgd.recipe import Recipe

__all__ = [
    "ANCHOR_ARCH",
    "ANCHOR_TRAIN_SEED",
    "anchor_problem",
    "anchor_recipe",
    "anchor_target",
    "anchor_train_set",
    "parse_train_spec",
]

ANCHOR_ARCH = "7-40-40-1"
ANCHOR_TRAIN_SEED = 42069
ANCHOR_SIZES = (32, 64)


def anchor_target():
    """The anchor target on the 128 rows: ``f(i) = (i >> 1) & 1`` (``0011`` x 32), uint8."""
    return ((np.arange(128) >> 1) & 1).astype(np.uint8)


def anchor_train_set(m=32):
    """``(rows, labels)``: ``RandomState(42069).choice(128, m, replace=False)`` in draw order, and the target there."""
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 1 <= int(m) <= 127:
        raise ValueError(f"the anchor train size must be an integer in [1, 127] (published: 32, 64), got {m!r}")
    rows = np.random.RandomState(ANCHOR_TRAIN_SEED).choice(128, int(m), replace=False).astype(np.int64)
    return rows, anchor_target()[rows]


def anchor_recipe(epochs_after_fit=1):
    """The anchor's training recipe (plain SGD lr 0.01, batch 8, ce, fit threshold 0.5, max 3000 epochs)."""
    return Recipe(optimizer="sgd", lr=0.01, momentum=0.0, loss="ce", batch_size=8, max_epochs=3000,
                  fit_threshold=0.5, epochs_after_fit=epochs_after_fit)


def anchor_problem(m=32):
    """``(arch, X, train, target_hex)`` of the anchor experiment on fastpoly rows."""
    arch = MLP(7, (40, 40), activation="relu", sigma_w=1.0, sigma_b=1.0)
    return arch, boolean_inputs(7), anchor_train_set(m), key_to_hex(pack_bits(anchor_target().astype(bool)), 128)


def parse_train_spec(spec, n_rows):
    """Parse ``--train``: ``anchor:M`` (the anchor's S and target, 128 rows) or ``ROWS`` (comma-separated rows).

    Returns ``(rows int64, target uint8 or None)``: for ``anchor:M`` the anchor
    target; for explicit rows the caller supplies the target.
    """
    s = str(spec).strip()
    if s.startswith("anchor"):
        _, _, m = s.partition(":")
        if n_rows != 128:
            raise ValueError("--train anchor:M needs the 128 Boolean inputs of 7 bits")
        try:
            m = int(m or 32)
        except ValueError:
            raise ValueError(f"--train anchor:M needs an integer M, got {spec!r}") from None
        rows, _ = anchor_train_set(m)
        return rows, anchor_target()
    try:
        rows = np.array([int(t) for t in s.replace(" ", "").split(",") if t != ""], np.int64)
    except ValueError:
        raise ValueError(f"--train must be anchor:M or comma-separated row indices, got {spec!r}") from None
    if rows.size == 0:
        raise ValueError("--train gives no rows")
    return rows, None

"""Merging sorted count triples: the compiled linear merge when a backend offers it, else the reference."""
from __future__ import annotations

from fastpoly.backends import backend_for
from fastpoly.backends.counting import merge_sorted_counts_reference

__all__ = ["merge_sorted_counts"]


def merge_sorted_counts(parts):
    """Merge ``[(keys, counts, first_index), ...]`` (each sorted, unique) into one sorted, unique triple."""
    parts = [p for p in parts if p[0].shape[0]]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    be = backend_for("merge") if sum(p[0].shape[0] for p in parts) >= _NUMBA_MERGE_MIN else None
    if be is not None and not be.reference:
        while len(parts) > 1:  # pairwise, smallest first: linear work per level
            parts.sort(key=lambda p: p[0].shape[0])
            parts = [be.merge_sorted(parts[0], parts[1])] + parts[2:]
        return parts[0]
    return merge_sorted_counts_reference(parts)


#: below this many records the NumPy path is as fast as compiling/calling the kernel
_NUMBA_MERGE_MIN = 1 << 15

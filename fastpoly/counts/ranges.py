"""Bookkeeping of the sample-index ranges a result covers (per seed)."""
from __future__ import annotations

__all__ = ["merge_ranges", "first_overlap", "merge_seed_ranges"]


def merge_ranges(ranges):
    """Union of ``[a, b)`` ranges as a sorted list of disjoint ``[a, b]`` pairs."""
    rs = sorted((int(a), int(b)) for a, b in ranges if b > a)
    out = []
    for a, b in rs:
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def first_overlap(r1, r2):
    """The first overlap ``(lo, hi)`` of two range lists, or None."""
    for a, b in r1:
        for c, d in r2:
            if a < d and c < b:
                return (max(a, c), min(b, d))
    return None


def merge_seed_ranges(a, b):
    """Per-seed ranges (``{str(seed): ranges}``) of two results' metadata, merged."""
    out = {}
    for m in (a, b):
        if m.get("seed") is not None:
            out.setdefault(str(m["seed"]), []).extend(m.get("ranges", []))
        for s, r in (m.get("ranges_by_seed") or {}).items():
            out.setdefault(s, []).extend(r)
    return {s: merge_ranges(r) for s, r in out.items()}

"""Reading large (memory-mapped) arrays in blocks with bounded resident memory.

A memory-mapped counts file is read page by page; every page touched stays mapped into the
process (and counts towards its resident set) until the mapping is closed, so one pass over a
57 GB file would make the process "use" 57 GB.  :func:`iter_blocks` copies one block of rows at a
time and then tells the kernel it may drop the pages of that block from this process
(``madvise(MADV_DONTNEED)``; they stay in the page cache, the file is untouched), so a pass over
a file of any size holds about one block in memory.  Plain in-memory arrays are sliced as they are.
"""
from __future__ import annotations

import mmap
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

__all__ = ["DEFAULT_BLOCK", "iter_blocks", "iter_columns", "drop_pages"]

#: rows per block of a streaming pass (about 8 MB of 128-bit keys)
DEFAULT_BLOCK = 1 << 18


def _mmap_of(arr: np.ndarray) -> mmap.mmap | None:
    base: object = arr
    while base is not None:
        mm = getattr(base, "_mmap", None)
        if isinstance(mm, mmap.mmap):
            return mm
        base = getattr(base, "base", None)
    return None


def drop_pages(arr: np.ndarray, start: int, stop: int) -> None:
    """Let the kernel unmap the pages of rows ``[start, stop)`` of a memory-mapped ``arr`` (a hint).

    Only whole pages inside the rows are dropped; the data stays readable (it is read back from
    the file on the next access).  Does nothing for arrays that are not memory-mapped or where
    ``madvise`` is unavailable.
    """
    mm = _mmap_of(arr)
    if mm is None or not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED") or stop <= start:
        return
    try:
        base_addr = np.frombuffer(mm, np.uint8).ctypes.data
    except (TypeError, ValueError):
        return
    row = arr.strides[0]
    lo = arr.ctypes.data + start * row - base_addr
    hi = arr.ctypes.data + stop * row - base_addr
    page = mmap.PAGESIZE
    lo = -(-lo // page) * page
    hi = min(hi // page * page, len(mm))
    if hi > lo >= 0:
        try:
            mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
        except (OSError, ValueError):
            pass


def iter_blocks(arrays: Sequence[np.ndarray], block: int = DEFAULT_BLOCK,
                start: int = 0, stop: int | None = None) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Yield ``(offset, [a[offset:offset + block] for a in arrays])`` over rows ``[start, stop)``.

    The blocks are in-memory copies for memory-mapped arrays, whose pages are dropped after
    each block (see :func:`drop_pages`); views for in-memory arrays.
    """
    n = int(arrays[0].shape[0]) if stop is None else int(stop)
    block = max(1, int(block))
    for a in range(int(start), n, block):
        b = min(n, a + block)
        out = []
        for arr in arrays:
            if isinstance(arr, np.memmap):
                out.append(np.array(arr[a:b]))
                drop_pages(arr, a, b)
            else:
                out.append(arr[a:b])
        yield a, out


def iter_columns(source: Any, columns: Sequence[str], block: int = DEFAULT_BLOCK) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Blocks of the named columns of ``source``: a counts object or one array.

    ``source`` is either an object with an ``iter_blocks(columns, block)`` method (a
    :class:`fastpoly.FunctionCounts`, which also decodes compressed files block by block) or a
    plain / memory-mapped array, taken as the single column asked for.
    """
    if hasattr(source, "iter_blocks"):
        return source.iter_blocks(tuple(columns), block)
    if len(columns) != 1:
        raise ValueError("an array source holds one column")
    return iter_blocks([source], block)

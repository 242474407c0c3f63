"""The counts store: exact function counts, their file format, merging and spilling to disk.

* :mod:`~fastpoly.counts.store` -- :class:`FunctionCounts` (top-k, probabilities, merge, save/load);
* :mod:`~fastpoly.counts.fileformat` -- the one writer, reader and digest of counts files (format 2);
* :mod:`~fastpoly.counts.ranges` -- which sample indices a result covers;
* :mod:`~fastpoly.counts.spill` -- sorted runs on disk and the bounded-memory k-way merge;
* :mod:`~fastpoly.counts.anchors` -- the anchor pipelines' text formats;
* :mod:`~fastpoly.counts.meta` -- :class:`~fastpoly.counts.meta.ResultMeta`: what a result estimates.
"""
from __future__ import annotations

from fastpoly.counts.fileformat import CountsFileError
from fastpoly.counts.store import FunctionCounts, merge_files

__all__ = ["FunctionCounts", "CountsFileError", "merge_files"]

"""Keeping a finished result when its counts file cannot be written (full disk, lost permission).

A run that has drawn every sample must not lose them to a failed final write.  With a
checkpoint, the complete progress is saved there (resume to write the file once there is
space); without one, the result is written to the first fallback path that works: next to the
requested file, then the temporary folder, then the home folder.
"""
from __future__ import annotations

import os
import tempfile
import time
from typing import Any

from fastpoly.counts.fileformat import write_counts_file
from fastpoly.counts.spill import CountAccumulator
from fastpoly.counts.store import FunctionCounts
from fastpoly.run.checkpoint import Checkpoint

__all__ = ["ResultNotSaved", "rescue_result", "fallback_paths"]


class ResultNotSaved(OSError):
    """The final counts file could not be written; ``saved_to`` says where the result was kept (or None)."""

    def __init__(self, err: int | None, message: str, saved_to: str | None) -> None:
        super().__init__(err, message)
        self.saved_to = saved_to


def fallback_paths(out: str) -> list[str]:
    """Where a result that cannot be written to ``out`` is put instead, in order of preference."""
    base = os.path.splitext(os.path.basename(out))[0] or "counts"
    name = f"fastpoly-rescue-{base}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.npz"
    out_dir = os.path.dirname(os.path.abspath(out))
    dirs = [out_dir, tempfile.gettempdir(), os.path.expanduser("~"), os.getcwd()]
    seen: set[str] = set()
    paths = []
    for d in dirs:
        key = os.path.realpath(d)
        if key not in seen:
            seen.add(key)
            paths.append(os.path.join(d, name))
    return paths


def rescue_result(err: OSError, acc: CountAccumulator, meta: dict[str, Any], out: str,
                  ck: Checkpoint | None, compress: bool = False) -> ResultNotSaved:
    """Keep the result of ``acc`` after writing ``out`` failed with ``err``; return the error to raise.

    The message (one line) says what failed and where the result is now.
    """
    reason = err.strerror or str(err)
    if ck is not None:
        try:
            ck.save(acc)
        except OSError:
            return ResultNotSaved(
                err.errno,
                f"could not write {out} ({reason}), nor save the checkpoint; the last checkpoint in {ck.dir} "
                f"is intact: free space, then resume it (CLI: --resume {ck.dir})",
                ck.dir,
            )
        return ResultNotSaved(
            err.errno,
            f"could not write {out} ({reason}); all {acc.n_samples:,} samples are saved in the checkpoint "
            f"{ck.dir}: free space, then resume it (CLI: --resume {ck.dir}) to write the result",
            ck.dir,
        )
    head = FunctionCounts.empty(acc.n_words, meta)
    head.n_samples, head.n_accepted = acc.n_samples, acc.n_accepted
    for path in fallback_paths(out):
        try:
            write_counts_file(path, head._payload(), acc.chunks(), acc.n_words, compress=compress)
        except OSError:
            continue
        return ResultNotSaved(err.errno, f"could not write {out} ({reason}); the result was saved to {path} instead",
                              path)
    return ResultNotSaved(err.errno, f"could not write {out} ({reason}), nor a rescue copy "
                                     f"({', '.join(os.path.dirname(p) for p in fallback_paths(out))}); "
                                     "the result is lost", None)

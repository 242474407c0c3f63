"""Atomic file output: every file fastpoly writes appears whole or not at all.

A temporary file in the target's folder is written, flushed and fsync'ed, then
renamed over the target (``os.replace`` is atomic on POSIX and Windows).
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

__all__ = ["public_mode", "atomic_write_bytes", "atomic_open"]


def public_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give (0o666 minus the umask); mkstemp uses 0o600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, rename)."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        os.chmod(tmp, public_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Stream a file atomically: yield a temporary file in the target's folder, rename it on success.

    On an exception (disk full, Ctrl-C) the temporary file is removed and ``path`` is untouched.
    ``mode`` is ``"w"`` (text; ``kwargs`` go to :func:`open`, e.g. ``newline=""``) or ``"wb"``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes new files only (mode 'w' or 'wb'), got {mode!r}")
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        os.chmod(tmp, public_mode())
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise

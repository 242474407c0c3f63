"""Atomic file output: every file fastpoly writes appears whole or not at all.

A temporary file in the target's folder is written, flushed and fsync'ed, then
renamed over the target (``os.replace`` is atomic on POSIX and Windows).
"""
from __future__ import annotations

import os
import tempfile

__all__ = ["public_mode", "atomic_write_bytes"]


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

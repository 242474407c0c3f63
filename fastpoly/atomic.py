"""Atomic file output and exclusive folders: every file fastpoly writes appears whole or not at all.

A temporary file in the target's folder is written, flushed and fsync'ed, then
renamed over the target (``os.replace`` is atomic on POSIX and Windows).  Temporary files carry
their writer's pid (:func:`temp_prefix`); those of a killed process are removed by the next
command that checks the folder (:func:`remove_stale_temporaries`, ``fastpoly clean DIR``).
:class:`FolderLock` claims a folder (a checkpoint, a CLI output folder) for one run at a time.
"""
from __future__ import annotations

import errno
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

fcntl: Any
try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["public_mode", "atomic_write_bytes", "atomic_open", "check_writable", "check_writable_folder", "FolderLock",
           "FolderInUse", "LOCK_NAME", "check_output_file", "temp_prefix", "remove_stale_temporaries", "TEMP_PATTERN"]

#: names of fastpoly's temporary files, each carrying its writer's pid: ``.tmp-PID-*``,
#: ``.tmp-KIND-PID-*`` (probes, side files of the compressed writer) and ``merge-PID-GEN.run``
TEMP_PATTERN = re.compile(r"^(?:\.tmp-(?:[a-z]+-)?(\d+)-[^/]*|merge-(\d+)-\d+\.run)$")


def temp_prefix(kind: str = "") -> str:
    """The prefix of a temporary file of this process: ``.tmp-PID-`` or ``.tmp-KIND-PID-``.

    Files with it are removed by :func:`remove_stale_temporaries` once this process is gone.
    """
    return f".tmp-{kind + '-' if kind else ''}{os.getpid()}-"


def remove_stale_temporaries(directory: str | os.PathLike[str]) -> list[tuple[str, int]]:
    """Remove the temporary files of dead fastpoly processes in ``directory`` (not recursive).

    A temporary file (:data:`TEMP_PATTERN`) names its writer's pid; it is removed when no process
    with that pid runs on this machine (a command killed with ``kill -9`` cannot clean up after
    itself; the next command writing in the folder, or ``fastpoly clean DIR``, does).  Files of
    live processes, and any other file, are kept.  Errors are ignored (best effort).

    Returns
    -------
    list of (path, size in bytes)
        The files removed.
    """
    removed: list[tuple[str, int]] = []
    me = os.getpid()
    try:
        entries = list(os.scandir(os.fspath(directory)))
    except OSError:
        return removed
    for e in entries:
        m = TEMP_PATTERN.match(e.name)
        if m is None:
            continue
        pid = int(m.group(1) or m.group(2))
        if pid == me or _pid_alive(pid):
            continue
        try:
            if not e.is_file(follow_symlinks=False):
                continue
            size = e.stat(follow_symlinks=False).st_size
            os.unlink(e.path)
        except OSError:
            continue
        removed.append((e.path, size))
    return removed


def public_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give (0o666 minus the umask); mkstemp uses 0o600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, rename)."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def _with_path(e: OSError, path: str) -> OSError:
    """``e`` with a message naming ``path`` (not the temporary file)."""
    try:
        return type(e)(e.errno, f"cannot write {path}: {e.strerror or e}")
    except TypeError:  # pragma: no cover - an OSError subclass with another signature
        return e


def check_writable(path: str | os.PathLike[str], what: str = "output file") -> str:
    """Check, before a long run, that a file can be written at ``path`` (creating its folder).

    Creates the folder and a probe file there (removed again).

    Returns
    -------
    str
        ``path`` as a string.

    Raises
    ------
    OSError
        With a one-line message: ``path`` is a folder, the folder cannot be created, or is not writable.
    """
    p = os.fspath(path)
    if os.path.isdir(p):
        raise IsADirectoryError(errno.EISDIR, f"the {what} {p} is a folder; give a file name")
    d = os.path.dirname(os.path.abspath(p))
    try:
        os.makedirs(d, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=temp_prefix("probe"), dir=d)
    except OSError as e:
        raise type(e)(e.errno, f"cannot write the {what} {p}: {e.strerror or e}") from None
    os.close(fd)
    os.unlink(probe)
    remove_stale_temporaries(d)  # what killed commands left in this folder
    return p


def check_output_file(path: str | os.PathLike[str], inputs: Any = (), force: bool = False,
                      what: str = "output file (--out)") -> str:
    """The one overwrite policy of the commands that write a file: check ``path`` before any work.

    Refuses ``path`` when it is one of ``inputs`` (the same file, whatever the spelling; even
    with ``force``), and when it exists and ``force`` is False; then checks it can be written
    (:func:`check_writable`).

    Raises
    ------
    ValueError
        The output is an input, or exists without ``force``.
    OSError
        It cannot be written.
    """
    p = os.fspath(path)
    real = os.path.realpath(p)
    for x in inputs or ():
        if x is not None and os.path.realpath(os.fspath(x)) == real:
            raise ValueError(f"the {what} {p} is also an input; write the result to another file")
    if os.path.exists(p) and not os.path.isdir(p) and not force:
        raise ValueError(f"the {what} {p} exists; pass --force to replace it or choose another name")
    return check_writable(p, what)


def check_writable_folder(directory: str | os.PathLike[str], what: str = "output folder") -> str:
    """Create ``directory`` if needed and check that files can be written in it (a probe file).

    Raises
    ------
    OSError
        With a one-line message: ``directory`` is a file, cannot be created, or is not writable.
    """
    d = os.fspath(directory)
    if os.path.exists(d) and not os.path.isdir(d):
        raise NotADirectoryError(errno.ENOTDIR, f"the {what} {d} is an existing file, not a folder")
    check_writable(os.path.join(d, "probe"), what)
    return d


class FolderInUse(OSError):
    """Another live process holds the folder's lock (the message names it)."""


LOCK_NAME = ".fastpoly-lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


class FolderLock:
    """An exclusive claim on a folder for the lifetime of a run (a checkpoint or an output folder).

    The lock is the file ``.fastpoly-lock`` in the folder, holding the owner's pid, host and start
    time.  Where :mod:`fcntl` exists it is held with ``flock``, which the kernel releases when the
    process dies, so a lock left by a killed run is never stale; elsewhere it is created with an
    atomic exclusive create, and a lock whose process no longer runs on this host is taken over.
    Use as a context manager, or :meth:`acquire` / :meth:`release`.

    Raises
    ------
    FolderInUse
        From :meth:`acquire`, if another live process holds the folder.
    """

    def __init__(self, directory: str | os.PathLike[str], what: str = "folder", remove_empty: bool = False) -> None:
        self.dir = os.fspath(directory)
        self.path = os.path.join(self.dir, LOCK_NAME)
        self.what = what
        #: remove the folder on release when nothing else is in it (a command that failed before writing)
        self.remove_empty = bool(remove_empty)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def _owner(self) -> str:
        try:
            with open(self.path, encoding="utf-8") as fh:
                d = json.loads(fh.read() or "{}")
            return f"pid {d.get('pid')} on {d.get('host')} since {d.get('started')}"
        except (OSError, ValueError):
            return "another process"

    def _busy(self) -> FolderInUse:
        return FolderInUse(
            errno.EBUSY,
            f"{self.what} {self.dir} is in use by {self._owner()}; wait for that run to end or use another folder",
        )

    def acquire(self) -> FolderLock:
        """Claim the folder (creating it); raise :class:`FolderInUse` if a live process holds it."""
        if self._fd is not None:
            return self
        os.makedirs(self.dir, exist_ok=True)
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode()
        fd = self._acquire_flock() if fcntl is not None else None
        if fd is None:
            fd = self._acquire_exclusive()
        os.ftruncate(fd, 0)
        os.write(fd, info)
        self._fd = fd
        return self

    def _acquire_flock(self) -> int | None:
        """Lock with ``flock``; None if the file system does not support it."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._busy() from None
            except OSError:  # e.g. ENOLCK on some network file systems: use the exclusive create
                if os.fstat(fd).st_size == 0:
                    os.unlink(self.path)  # the empty file just opened is nobody's lock
                os.close(fd)
                return None
            try:  # the holder before us may have removed the file while we opened it
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)

    def _acquire_exclusive(self) -> int:
        """Lock by creating the file exclusively, taking over locks of dead processes on this host."""
        while True:
            try:
                return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if not self._stale():
                    raise self._busy() from None
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass

    def _stale(self) -> bool:
        """True if the lock file's process is gone (same host), or it is unreadable and a minute old."""
        try:
            with open(self.path, encoding="utf-8") as fh:
                d = json.loads(fh.read() or "{}")
        except (OSError, ValueError):
            d = {}
        if "pid" not in d:
            try:
                return time.time() - os.stat(self.path).st_mtime > 60
            except OSError:
                return True
        return d.get("host") == socket.gethostname() and isinstance(d.get("pid"), int) and not _pid_alive(d["pid"])

    def release(self) -> None:
        """Give the folder up (removes the lock file); does nothing if not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(fd)
        if self.remove_empty:
            try:
                os.rmdir(self.dir)  # fails, as it should, when the folder holds anything
            except OSError:
                pass

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Stream a file atomically: yield a temporary file in the target's folder, rename it on success.

    On an exception (disk full, Ctrl-C) the temporary file is removed and ``path`` is untouched;
    an ``OSError`` is re-raised naming ``path`` (not the temporary file).
    ``mode`` is ``"w"`` (text; ``kwargs`` go to :func:`open`, e.g. ``newline=""``) or ``"wb"``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes new files only (mode 'w' or 'wb'), got {mode!r}")
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(), dir=d)
    except OSError as e:
        raise _with_path(e, path) from None
    try:
        os.chmod(tmp, public_mode())
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise _with_path(e, path) from None
        raise

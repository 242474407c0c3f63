"""The one Numba jit policy: no fastmath, and a disk cache that notices edits to any fastpoly source."""
from __future__ import annotations

import pytest

pytest.importorskip("numba")


def test_policy_has_no_fastmath_and_caches():
    from fastpoly.backends.numba.jit import JIT_OPTIONS

    assert JIT_OPTIONS["fastmath"] is False and JIT_OPTIONS["cache"] is True


def test_source_digest_follows_every_file(tmp_path):
    from fastpoly.backends.numba.jit import source_digest

    (tmp_path / "a.py").write_text("X = 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.py").write_text("Y = 2\n")
    d0 = source_digest(str(tmp_path))
    source_digest.cache_clear()
    (tmp_path / "sub" / "b.py").write_text("Y = 3\n")  # a helper in another module changes
    d1 = source_digest(str(tmp_path))
    source_digest.cache_clear()
    (tmp_path / "sub" / "b.py").rename(tmp_path / "sub" / "c.py")  # same bytes, another module
    d2 = source_digest(str(tmp_path))
    source_digest.cache_clear()
    assert len({d0, d1, d2}) == 3


def test_kernel_cache_stamp_carries_the_package_digest():
    """Numba stamps a cache entry with the kernel's own file only; ours must carry the package digest too
    (if a Numba upgrade moves the internals, this fails instead of silently loading stale code)."""
    from fastpoly.backends.numba.jit import jit, source_digest

    @jit
    def twice(x):
        return 2 * x

    assert twice(3) == 6
    stamp = twice._cache._cache_file._source_stamp
    assert isinstance(stamp, tuple) and stamp[-1] == source_digest()

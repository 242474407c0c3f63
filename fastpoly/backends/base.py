"""The interface every backend implements (NumPy reference semantics are the contract)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastpoly.backends.counting import count_keys

__all__ = ["Backend", "SampleBatch", "CountBatch", "check_range"]


@dataclass
class SampleBatch:
    """Per-sample results for samples ``start .. stop-1`` in index order.

    Attributes
    ----------
    keys : uint64 array (n, n_words) — bits over the plan's key rows
    accepted : bool array (n,) — agrees with the train labels (all True if unconditioned)
    margins : float32 array (n,) or None — smallest ``|output|`` over all rows of X
    """

    keys: np.ndarray
    accepted: np.ndarray
    margins: np.ndarray | None = None


@dataclass
class CountBatch:
    """Counted results of one index range: unique keys (sorted), counts, smallest index per key."""

    keys: np.ndarray
    counts: np.ndarray
    first_index: np.ndarray
    n_samples: int
    n_accepted: int


def check_range(start, stop):
    """Validate an index range ``[start, stop)`` of a stream (``0 <= start <= stop <= 2**64``)."""
    for v, what in ((start, "start"), (stop, "stop")):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{what} must be an integer, got {v!r}")
    start, stop = int(start), int(stop)
    if not 0 <= start <= stop <= 2**64:
        raise ValueError(f"need 0 <= start <= stop <= 2**64, got start={start}, stop={stop}")
    return start, stop


class Backend:
    """Base class of the backends in :data:`fastpoly.backends.BACKENDS`.

    Subclasses implement :meth:`availability`, :meth:`sample_keys` and
    :meth:`evaluate`; :meth:`count_range` has a generic implementation on top
    of :meth:`sample_keys` that fused backends override.
    """

    name = "base"

    def availability(self):
        """``(True, "")`` or ``(False, reason)``."""
        raise NotImplementedError

    def sample_keys(self, plan, start, stop, margins=False):
        """Keys (and acceptance, optional margins) of samples ``start..stop-1`` in index order.

        Returns
        -------
        fastpoly.backends.reference.SampleBatch
        """
        raise NotImplementedError

    def count_range(self, plan, start, stop):
        """Draw, reject and count samples ``start..stop-1``; returns a :class:`CountBatch`."""
        b = self.sample_keys(plan, start, stop)
        idx = np.arange(start, stop, dtype=np.uint64)[b.accepted]
        k, c, f = count_keys(b.keys[b.accepted], idx)
        return CountBatch(k, c, f, stop - start, int(np.count_nonzero(b.accepted)))

    def for_workers(self):
        """What a Dask worker needs to rebuild this backend: its name (workers memoise their own)."""
        return self.name

    def prepare(self, plan):
        """Compile (or load from cache) this backend's kernels for ``plan``; results are discarded.

        The driver calls this before timing a run, so that throughput excludes the one-off
        compilation of a first run.
        """
        self.count_range(plan, 0, 1)

    def evaluate(self, net, X, dtype):
        """Outputs ``(N, n_outputs)`` of ``net`` on every row of ``X`` in ``dtype``."""
        raise NotImplementedError

    def default_batch_size(self, plan):
        """Samples per batch for :func:`fastpoly.sample` when the user gives none."""
        return 256

    def describe(self):
        """One line for the CLI (device, threads)."""
        return self.name

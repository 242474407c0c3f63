"""The interface every backend implements (NumPy reference semantics are the contract)."""
from __future__ import annotations

import numpy as np

from .reference import CountBatch, count_keys

__all__ = ["Backend"]


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
        fastpoly.reference.SampleBatch
        """
        raise NotImplementedError

    def count_range(self, plan, start, stop):
        """Draw, reject and count samples ``start..stop-1``; returns a :class:`CountBatch`."""
        b = self.sample_keys(plan, start, stop)
        idx = np.arange(start, stop, dtype=np.uint64)[b.accepted]
        k, c, f = count_keys(b.keys[b.accepted], idx)
        return CountBatch(k, c, f, stop - start, int(np.count_nonzero(b.accepted)))

    def evaluate(self, net, X, dtype):
        """Outputs ``(N, n_outputs)`` of ``net`` on every row of ``X`` in ``dtype``."""
        raise NotImplementedError

    def default_batch_size(self, plan):
        """Samples per batch for :func:`fastpoly.sample` when the user gives none."""
        return 256

    def describe(self):
        """One line for the CLI (device, threads)."""
        return self.name

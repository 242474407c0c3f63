"""The ``"numpy"`` backend: the reference implementation (always available)."""
from __future__ import annotations

from ._backend_base import Backend
from .network import forward_reference
from .reference import count_range_reference, sample_keys_reference


class NumpyBackend(Backend):
    """Pure NumPy: the oracle for every other backend (slow, exact, readable)."""

    name = "numpy"

    def availability(self):
        return True, ""

    def sample_keys(self, plan, start, stop, margins=False):
        return sample_keys_reference(plan, start, stop, margins)

    def count_range(self, plan, start, stop):
        return count_range_reference(plan, start, stop)

    def evaluate(self, net, X, dtype):
        if hasattr(net, "evaluate_reference"):
            return net.evaluate_reference(X, dtype)
        return forward_reference(net, X, dtype)

    def default_batch_size(self, plan):
        per = plan.m * max(plan.mlp.widths[1:]) * 8 * 6  # bytes of float64 temporaries per sample
        return int(max(16, min(1024, (256 << 20) // max(per, 1))))

    def describe(self):
        return "numpy (reference, single thread)"

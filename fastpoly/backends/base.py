"""The interface every backend implements (NumPy reference semantics are the contract)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastpoly.backends.counting import count_keys

__all__ = ["Backend", "CAPABILITIES", "SampleBatch", "CountBatch", "TrainBatch", "STATUS_STOPPED", "STATUS_MAX_EPOCHS",
           "STATUS_FAILED", "STATUS_DIVERGED", "count_batch", "check_range", "structured_of", "CodecError", "MAX_COUNT"]

#: what a backend may offer -> the methods that offer it (each backend says what it lacks and why)
CAPABILITIES = {
    "sample": "draw, reject and count networks (count_range, sample_keys)",
    "evaluate": "outputs of a network on input rows (evaluate)",
    "train": "P_SGD training runs (train_range)",
    "gp_values": "GP draws g = F z of the NNGP (gp_values)",
    "klz": "K_LZ, T and critical inputs of stored keys (complexity_ints, phrase_sums)",
    "tally": "per-block tables of the streaming histograms",
    "codec": "the counts file's block codec (encode_blocks, decode_blocks)",
    "merge": "sorted merge of counted runs (merge_sorted)",
}

#: largest count the counting primitives and the block codec store (int64)
MAX_COUNT = 2**63 - 1


class CodecError(ValueError):
    """Encoded blocks are corrupt (a length or varint runs past its section, is not minimal, or out of range)."""


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
    #: runs of the range that diverged (training only; always 0 for sampling)
    n_diverged: int = 0


#: run status: stopped by the rule / reached max_epochs fitting S / does not fit S at the end (n_failed) /
#: diverged (a parameter became inf or NaN, which ends the run, or the final loss is not finite; not fitted,
#: counted apart)
STATUS_STOPPED, STATUS_MAX_EPOCHS, STATUS_FAILED, STATUS_DIVERGED = 0, 1, 2, 3


@dataclass
class TrainBatch:
    """Per-run results of runs ``lo .. hi-1`` in index order.

    Attributes
    ----------
    keys : uint64 (n, W) -- the reached function on the key (test) rows (output > 0)
    init_keys : uint64 (n, W) -- the function of the initialisation on the key rows
    status : int8 (n,) -- :data:`STATUS_STOPPED`, :data:`STATUS_MAX_EPOCHS`, :data:`STATUS_FAILED` or
        :data:`STATUS_DIVERGED`
    first_fit : int32 (n,) -- first fitted epoch end (1-based), -1 if never
    epochs : int32 (n,) -- epochs trained
    loss : float32 (n,) -- final train loss
    params : float32 (n, n_params) or None -- final parameters (MLP order)
    """

    lo: int
    hi: int
    keys: np.ndarray
    init_keys: np.ndarray
    status: np.ndarray
    first_fit: np.ndarray
    epochs: np.ndarray
    loss: np.ndarray
    params: np.ndarray | None = None

    @property
    def fitted(self):
        """Per run: True if it fitted the train set (neither failed nor diverged)."""
        return self.status <= STATUS_MAX_EPOCHS

    @property
    def n_diverged(self) -> int:
        """Runs that diverged (status :data:`STATUS_DIVERGED`)."""
        return int(np.count_nonzero(self.status == STATUS_DIVERGED))


def count_batch(b: TrainBatch) -> CountBatch:
    """Count the functions of the fitted runs: ``CountBatch(keys, counts, first_index, n_runs, n_fitted, n_diverged)``."""
    ok = b.fitted
    idx = np.arange(b.lo, b.hi, dtype=np.uint64)[ok]
    k, c, f = count_keys(b.keys[ok], idx)
    return CountBatch(k, c, f, b.hi - b.lo, int(np.count_nonzero(ok)), b.n_diverged)


def check_range(start, stop):
    """Validate an index range ``[start, stop)`` of a stream (``0 <= start <= stop <= 2**64``)."""
    for v, what in ((start, "start"), (stop, "stop")):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{what} must be an integer, got {v!r}")
    start, stop = int(start), int(stop)
    if not 0 <= start <= stop <= 2**64:
        raise ValueError(f"need 0 <= start <= stop <= 2**64, got start={start}, stop={stop}")
    return start, stop


def structured_of(net):
    """The structured (sparse CSR) network to evaluate for ``net``, or None for a dense one.

    ``net`` itself when its layers are CSR layers (a :class:`fastpoly.poly.structured.StructuredNetwork`),
    else its ``structured`` attribute if it has one (a compiled polynomial network), else None.
    The backends read only the layers' ``indptr``, ``indices``, ``data``, ``bias``, ``activation``,
    ``shift``, ``fan_in`` and ``fan_out``, so they need not import the polynomial room.
    """
    layers = getattr(net, "layers", None)
    if layers and all(hasattr(L, "indptr") for L in layers):
        return net
    return getattr(net, "structured", None)


def check_capability(what: object) -> str:
    """Validate a capability name (a key of :data:`CAPABILITIES`)."""
    if not isinstance(what, str) or what not in CAPABILITIES:
        raise ValueError(f"unknown capability {what!r}; valid: {', '.join(CAPABILITIES)}")
    return what


class Backend:
    """Base class of the backends in :data:`fastpoly.backends.BACKENDS`: one object per name.

    Subclasses implement :meth:`availability`, :meth:`sample_keys` and
    :meth:`evaluate`; :meth:`count_range` has a generic implementation on top
    of :meth:`sample_keys` that fused backends override.  The other capabilities
    (:data:`CAPABILITIES`: :meth:`train_range`, :meth:`gp_values`,
    :meth:`complexity_ints`, ...) are offered by the backends that have an engine for
    them; :attr:`lacks` names, per capability a backend does not offer, the reason, and
    :meth:`supports` answers for one capability (the one rule behind every ``"auto"``:
    :func:`fastpoly.backends.backend_for`).

    The NumPy backend (:attr:`reference` True) is the definition every engine is tested
    against: for sampling and evaluation it runs the domain model's reference; for
    the capabilities whose definition lives in the room that owns the quantity
    (P_SGD: :mod:`fastpoly.sgd.reference`; K_LZ: :mod:`fastpoly.analysis.complexity`;
    the block codec and the merge: :mod:`fastpoly.counts`) that room computes it with its
    own reference when handed the reference backend.
    """

    name = "base"
    #: True only for the NumPy reference backend (see the class docstring)
    reference = False
    #: capability -> why this backend does not offer it (absent: offered)
    lacks: dict[str, str] = {}

    def supports(self, what: str) -> str | None:
        """``None`` if this backend can do ``what`` here, else the reason it cannot.

        Parameters
        ----------
        what : str
            A capability of :data:`CAPABILITIES`.

        Raises
        ------
        ValueError
            For an unknown capability name.
        """
        check_capability(what)
        why = self.lacks.get(what)
        if why is not None:
            return why
        ok, why = self.availability()
        return None if ok else why

    def _lacking(self, what: str) -> NotImplementedError:
        return NotImplementedError(f"the {self.name} backend cannot do {CAPABILITIES[what]}: "
                                   f"{self.lacks.get(what, 'not implemented')}")

    def train_range(self, tp, lo: int, hi: int, params: bool = False) -> TrainBatch:
        """Train P_SGD runs ``lo .. hi-1`` of the train plan ``tp``; per-run results in index order.

        Bit-identical on every backend to :func:`fastpoly.sgd.reference.train_range_reference`.
        """
        raise self._lacking("train")

    def gp_values(self, F: np.ndarray, seed: int, idx: np.ndarray, stream: int, lower: bool) -> np.ndarray:
        """GP values ``g = z F^T`` (float64, ``(n, rows)``) of samples ``idx`` (normals of Philox ``stream``)."""
        raise self._lacking("gp_values")

    def complexity_ints(self, keys: np.ndarray, n: int, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(phrase sums, ones, critical counts)`` of cleared keys of ``n`` bits (critical zeros unless ``d > 0``)."""
        raise self._lacking("klz")

    def phrase_sums(self, keys: np.ndarray, n: int) -> np.ndarray:
        """Lempel--Ziv phrase counts (forward + reversed) of each key of ``n`` bits."""
        return self.complexity_ints(keys, n, 0)[0]

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

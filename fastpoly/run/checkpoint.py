"""Checkpoint and resume of long sampling runs.

A checkpoint folder holds

``job.json`` and ``inputs.npy``
    The job (architecture, inputs, seed, train set, index range, the estimator's
    plan -- e.g. a training recipe -- and the result's annotations, optional caller data
    such as the CLI options), written once when the run starts.  Plans that need more
    arrays (a GP draw plan's kernel) store them beside it as ``<name>.npy``, with their
    sha256 in ``job.json``.  :func:`fastpoly.resume` rebuilds any estimator's plan from it.
``state.json``
    Progress: the index ranges already counted, totals, and the files that
    hold the counts so far (sorted runs ``run-*.run`` spilled past the memory
    budget plus ``partial-*.run``, the in-memory part at the last save), each
    with its sha256.  The state carries its own checksum.
``result.npz``
    The final counts, once the run is complete.

Every file is written to a temporary name, flushed, fsync'ed and renamed, and
``state.json`` is replaced last, so a run killed at any moment (SIGKILL, power
loss) leaves the previous checkpoint intact; files that no state refers to are
removed on resume.  Because each sample is a pure function of (seed, index)
and the merge is exact, the final counts file of a resumed run is identical,
byte for byte, to an uninterrupted run's.  A foreign checkpoint (another job)
or a corrupted one (bad checksum, missing or modified file) is refused with
:class:`CheckpointError`.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import re

import numpy as np

from fastpoly.atomic import FolderLock, atomic_write_bytes, check_writable_folder
from fastpoly.counts.spill import RunReader, run_sha256, write_run
from fastpoly.counts.store import FunctionCounts
from fastpoly.model.spec import architecture_from_dict
from fastpoly.plan import inputs_digest
from fastpoly.run.plans import job_arrays_of, job_spec_of

__all__ = ["CheckpointError", "Checkpoint", "job_of"]

FORMAT = "fastpoly.checkpoint"
VERSION = 1
_OWN_FILE = re.compile(r"^(run-\d+\.run|partial-\d+\.run|merge-\d+-\d+\.run|\.tmp-.*)$")


class CheckpointError(ValueError):
    """A checkpoint folder is foreign (another job), corrupted, or unusable."""


def _sha_json(d):
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def _job_dict(plan, start, stop, annotations=None):
    job = {
        "format": FORMAT,
        "version": VERSION,
        "compat": plan.compat_meta(),
        "seed": plan.seed,
        "start": int(start),
        "stop": int(stop),
    }
    # absent for sampling plans without annotations: checkpoints written before these keys stay valid
    spec = job_spec_of(plan)
    if spec is not None:
        job["plan"] = spec
    arrays = job_arrays_of(plan)
    if arrays:
        job["arrays"] = {k: hashlib.sha256(_npy_bytes(v)).hexdigest() for k, v in sorted(arrays.items())}
    if annotations:
        job["annotations"] = dict(annotations)
    return job


class Checkpoint:
    """One checkpoint folder (see the module docstring)."""

    def __init__(self, directory):
        self.dir = os.fspath(directory)
        self.arrays = {}
        self.job = None
        self.state = None
        self.lock = None

    @classmethod
    def claim(cls, directory, plan, start, stop, resume=False, extra=None, annotations=None):
        """Lock the folder for this process, then create its checkpoint or reopen it (``resume``).

        The lock (:class:`fastpoly.atomic.FolderLock`) is held until :meth:`release`, so two runs
        can never share one checkpoint folder.

        Raises
        ------
        fastpoly.atomic.FolderInUse
            If another live process holds the folder.
        CheckpointError
            If the folder holds a checkpoint and ``resume`` is False, or holds another job's.
        OSError
            If the folder cannot be created or written.
        """
        directory = check_writable_folder(directory, "checkpoint folder")
        lock = FolderLock(directory, "checkpoint folder").acquire()
        try:
            if not cls(directory).exists:
                ck = cls.create(directory, plan, start, stop, extra=extra, annotations=annotations)
            elif not resume:
                raise CheckpointError(
                    f"{directory} already holds a checkpoint; pass resume=True (CLI: --resume) "
                    "to continue it, or choose another folder"
                )
            else:
                ck = cls.open(directory)
                ck.check_job(plan, start, stop, annotations)
        except BaseException:
            lock.release()
            raise
        ck.lock = lock
        return ck

    def release(self):
        """Give up the folder's lock (taken by :meth:`claim`)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    # -- paths --------------------------------------------------------------------------
    def path(self, name):
        """Path of file ``name`` in the checkpoint folder."""
        return os.path.join(self.dir, name)

    @property
    def exists(self):
        """True if the folder holds a checkpoint (``job.json``)."""
        return os.path.exists(self.path("job.json"))

    # -- creation / opening ---------------------------------------------------------------
    @classmethod
    def create(cls, directory, plan, start, stop, extra=None, annotations=None):
        """Start a new checkpoint for a job (the folder must not hold one)."""
        ck = cls(directory)
        os.makedirs(ck.dir, exist_ok=True)
        if ck.exists:
            raise CheckpointError(
                f"{ck.dir} already holds a checkpoint; resume it (resume=True / --resume) or use another folder"
            )
        job = _job_dict(plan, start, stop, annotations)
        job["extra"] = extra or {}
        job["sha256"] = _sha_json({k: v for k, v in job.items() if k != "sha256"})
        buf = _npy_bytes(plan.X)
        atomic_write_bytes(ck.path("inputs.npy"), buf)
        for name, a in job_arrays_of(plan).items():
            atomic_write_bytes(ck.path(f"{name}.npy"), _npy_bytes(a))
        atomic_write_bytes(ck.path("job.json"), json.dumps(job, sort_keys=True, indent=1).encode())
        ck.job = job
        ck.state = None
        return ck

    @classmethod
    def open(cls, directory):
        """Open and validate an existing checkpoint (raises :class:`CheckpointError`)."""
        ck = cls(directory)
        if not os.path.isdir(ck.dir):
            raise CheckpointError(f"{ck.dir}: no such checkpoint folder")
        if not ck.exists:
            raise CheckpointError(f"{ck.dir}: not a fastpoly checkpoint (no job.json)")
        ck.job = _read_checked_json(ck.path("job.json"), "job")
        try:
            X = np.load(ck.path("inputs.npy"), allow_pickle=False)
        except Exception as e:
            raise CheckpointError(f"{ck.dir}: unreadable inputs.npy ({e})") from None

        if inputs_digest(np.asarray(X, np.float32)) != ck.job["compat"]["inputs_digest"]:
            raise CheckpointError(f"{ck.dir}: inputs.npy does not match the job (modified file)")
        ck.X = np.asarray(X, np.float32)
        ck.arrays = {}
        for name, sha in (ck.job.get("arrays") or {}).items():
            p = ck.path(f"{name}.npy")
            try:
                with open(p, "rb") as fh:
                    raw = fh.read()
            except OSError as e:
                raise CheckpointError(f"{ck.dir}: unreadable {name}.npy ({e})") from None
            if hashlib.sha256(raw).hexdigest() != sha:
                raise CheckpointError(f"{ck.dir}: {name}.npy does not match the job (modified file)")
            ck.arrays[name] = np.load(p, allow_pickle=False)
        if os.path.exists(ck.path("state.json")):
            ck.state = _read_checked_json(ck.path("state.json"), "state")
            if ck.state.get("job_sha256") != ck.job["sha256"]:
                raise CheckpointError(f"{ck.dir}: state.json belongs to another job")
        return ck

    def check_job(self, plan, start, stop, annotations=None):
        """Raise :class:`CheckpointError` unless this checkpoint is for the same job."""
        mine = {k: v for k, v in self.job.items() if k not in ("extra", "sha256")}
        theirs = _job_dict(plan, start, stop, annotations)
        if "annotations" not in mine:  # written before checkpoints kept the annotations
            theirs.pop("annotations", None)
        if mine != theirs:
            diffs = [k for k in theirs if mine.get(k) != theirs[k]]
            if "compat" in diffs:
                diffs = [f"compat.{k}" for k in theirs["compat"] if mine["compat"].get(k) != theirs["compat"][k]]
            raise CheckpointError(
                f"{self.dir} is a checkpoint of another job (differs in: {', '.join(diffs)}); refusing to resume"
            )

    # -- state ----------------------------------------------------------------------------
    @property
    def complete(self):
        """True once the run finished and its result was saved."""
        return bool(self.state and self.state.get("complete"))

    def restore(self, acc):
        """Load the saved progress into a fresh :class:`fastpoly.counts.spill.CountAccumulator`."""
        self.collect_garbage()
        if self.state is None:
            return
        st = self.state
        files = list(st["runs"]) + ([st["partial"]] if st.get("partial") else [])
        for f in files:
            p = self.path(f["name"])
            if not os.path.exists(p):
                raise CheckpointError(f"{self.dir}: missing file {f['name']} (checkpoint damaged)")
            if run_sha256(p) != f["sha256"]:
                raise CheckpointError(f"{self.dir}: {f['name']} fails its checksum (checkpoint damaged)")
            if f["n_words"] != acc.n_words:
                raise CheckpointError(f"{self.dir}: {f['name']} has keys of another length")
        acc.runs = [dict(r) for r in st["runs"]]
        acc._next_run = max([int(r["name"][4:10]) for r in acc.runs] + [0])
        if st.get("partial"):
            r = RunReader(self.path(st["partial"]["name"]), chunk=1 << 62)
            acc.mem = r.read()
        acc.n_samples = int(st["n_samples"])
        acc.n_accepted = int(st["n_accepted"])
        # checkpoints written before the tally existed leave it unknown
        acc.n_diverged = int(st["n_diverged"]) if st.get("n_diverged") is not None else None
        acc.ranges = [list(map(int, x)) for x in st["ranges"]]

    def save(self, acc):
        """Write the accumulator's progress (atomic; the previous checkpoint stays valid until the end)."""
        acc.flush()
        gen = int(self.state["generation"]) + 1 if self.state else 1
        partial = None
        if acc.mem[0].shape[0]:
            partial = write_run(self.path(f"partial-{gen:06d}.run"), *acc.mem)
        state = {
            "format": FORMAT,
            "version": VERSION,
            "job_sha256": self.job["sha256"],
            "generation": gen,
            "n_samples": int(acc.n_samples),
            "n_accepted": int(acc.n_accepted),
            "n_diverged": None if acc.n_diverged is None else int(acc.n_diverged),
            "ranges": [list(map(int, r)) for r in acc.ranges],
            "runs": [dict(r) for r in acc.runs],
            "partial": partial,
            "complete": False,
        }
        self._write_state(state)
        self.collect_garbage()

    def finish(self, result=None, out=None, n_diverged=None):
        """Mark the run complete: the final counts are ``result.npz`` here (or the file ``out``).

        ``n_diverged``: the run's tally of diverged training runs (kept in the state; None: unknown).
        """
        if out is None:
            result.save(self.path("result.npz"))
            target = self.path("result.npz")
        else:
            target = os.path.abspath(out)

        state = dict(self.state or {}, format=FORMAT, version=VERSION, job_sha256=self.job["sha256"])
        state.update(
            generation=int(state.get("generation", 0)) + 1, complete=True, runs=[], partial=None,
            result=os.path.relpath(target, self.dir) if out is None else target,
            result_sha256=run_sha256(target),
        )
        if result is not None:
            state.update(n_samples=result.n_samples, n_accepted=result.n_accepted, ranges=result.meta["ranges"],
                         n_diverged=None if n_diverged is None else int(n_diverged))
        self._write_state(state)
        self.collect_garbage()

    def load_result(self, mmap=False):
        """The final counts of a complete checkpoint (its checksums verified)."""
        p = self.state["result"]
        p = p if os.path.isabs(p) else self.path(p)
        if not os.path.exists(p):
            raise CheckpointError(f"{self.dir}: the final counts file {p} is missing")
        if run_sha256(p) != self.state["result_sha256"]:
            raise CheckpointError(f"{self.dir}: the final counts file {p} was modified")
        return FunctionCounts.load(p, mmap=mmap)

    def _write_state(self, state):
        state = dict(state)
        state.pop("sha256", None)
        state["sha256"] = _sha_json(state)
        atomic_write_bytes(self.path("state.json"), json.dumps(state, sort_keys=True, indent=1).encode())
        self.state = state

    def collect_garbage(self):
        """Remove run and temporary files that the current state does not refer to."""
        keep = set()
        if self.state:
            keep |= {r["name"] for r in self.state.get("runs", [])}
            if self.state.get("partial"):
                keep.add(self.state["partial"]["name"])
        for p in glob.glob(os.path.join(self.dir, "*")) + glob.glob(os.path.join(self.dir, ".tmp-*")):
            name = os.path.basename(p)
            if name not in keep and _OWN_FILE.match(name):
                try:
                    os.unlink(p)
                except OSError:
                    pass

    # -- the job --------------------------------------------------------------------------
    @property
    def estimator(self):
        """The estimator of the stored job (``"prior"``/``"posterior"`` for sampling checkpoints)."""
        spec = self.job.get("plan")
        if spec:
            return spec["estimator"]
        return "posterior" if self.job["compat"].get("train_rows") else "prior"

    def train_set(self):
        """``(rows, labels)`` of the stored job, or None."""
        c = self.job["compat"]
        if not c["train_rows"]:
            return None
        return np.asarray(c["train_rows"], np.int64), np.asarray(c["train_labels"], np.uint8)

    def job_arguments(self):
        """``dict(arch=MLP, X=..., seed=..., train=..., start=..., n_samples=...)`` to rerun the job."""
        c = self.job["compat"]
        train = (np.asarray(c["train_rows"], np.int64), np.asarray(c["train_labels"], np.uint8)) \
            if c["train_rows"] else None
        return dict(arch=architecture_from_dict(c["arch"]), X=self.X, seed=self.job["seed"], train=train,
                    start=self.job["start"], n_samples=self.job["stop"] - self.job["start"])


def _read_checked_json(path, what):
    try:
        with open(path, "rb") as fh:
            d = json.loads(fh.read().decode())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable checkpoint {what} ({e})") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a fastpoly checkpoint {what}")
    if d.get("version") != VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint version {d.get('version')}")
    if d.get("sha256") != _sha_json({k: v for k, v in d.items() if k != "sha256"}):
        raise CheckpointError(f"{path}: checkpoint {what} fails its checksum (corrupted or edited)")
    return d


def _npy_bytes(a):
    import io

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def job_of(directory):
    """The job stored in a checkpoint folder: ``(arguments dict for sample, extra dict)``.

    For checkpoints of other estimators (training, GP draws) the arguments are those of the
    sampling job underneath (architecture, inputs, seed, train set, range); use
    :func:`fastpoly.resume` to resume any of them.
    """
    ck = Checkpoint.open(directory)
    return ck.job_arguments(), dict(ck.job.get("extra") or {})

"""P_B by the Gaussian process: log P(S), log P_B^GP(f|S) for given functions, the PAC-Bayes bound.

With ``f ~ N(0, K)`` the NNGP of the architecture on all rows of ``X`` and
``y_S`` the train labels, (``docs/design.md#gp-posterior``)

* ``log P(S) = log P(sign f_S = y_S)`` -- an orthant probability over the train rows;
* ``log P_B^GP(g|S) = log P(sign f = y_S u g) - log P(S)`` for a function ``g`` on the
  test rows (every row not in the train set, in increasing order -- the rows
  a conditioned :class:`~fastpoly.FunctionCounts` keys).

Output: :class:`GPPosterior`, a table with the keys (the project's key
format over the test rows), ``log_p``, ``stderr`` and FunctionCounts-style
``meta``; :meth:`GPPosterior.to_counts` turns it into pseudo-counts so the
tools that read :class:`~fastpoly.FunctionCounts` work on it unchanged.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

from fastpoly.atomic import atomic_write_bytes
from fastpoly.counts import FunctionCounts
from fastpoly.counts.meta import ResultMeta, build_meta, describe_inputs, estimator_of
from fastpoly.gp.kernels import as_mlp, check_inputs, kernel
from fastpoly.gp.orthants import OrthantResult, check_covariance, orthant
from fastpoly.keys import as_key, key_to_hex, pack_bits, sort_order, unpack_bits
from fastpoly.plan import check_train, inputs_digest

__all__ = ["GPPosterior", "log_marginal", "pac_bayes_bound", "posterior", "test_rows"]


def pac_bayes_bound(log_p_S: float, m: int, delta: float = 2.0**-10) -> float:
    """The anchors' PAC-Bayes bound on the expected generalisation error.

    ``eps <= 1 - exp(-[-ln P(S) + 2 ln m + 1 - ln delta] / m)``
    (``docs/design.md#gp-posterior``; Valle-Perez et al. 2019).

    Parameters
    ----------
    log_p_S : float
        Natural log of the marginal likelihood P(S) (<= 0).
    m : int
        Number of train points (>= 1).
    delta : float
        Confidence parameter in (0, 1) (default 2**-10).

    Returns
    -------
    float in [0, 1]
    """
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"m must be a positive integer, got {m!r}")
    if isinstance(delta, (bool, np.bool_)) or not (isinstance(delta, (int, float, np.integer, np.floating)) and 0 < delta < 1):
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    log_p_S = float(log_p_S)
    if math.isnan(log_p_S) or log_p_S > 1e-12:
        raise ValueError(f"log_p_S must be a log-probability (<= 0), got {log_p_S!r}")
    if log_p_S == -math.inf:
        return 1.0
    x = (-min(log_p_S, 0.0) + 2.0 * math.log(m) + 1.0 - math.log(delta)) / m
    return float(-math.expm1(-x))


def test_rows(m: int, train_rows: np.ndarray) -> np.ndarray:
    """The rows not in the train set, in increasing order (the rows a conditioned key covers)."""
    keep = np.ones(m, bool)
    keep[np.asarray(train_rows, np.int64)] = False
    return np.flatnonzero(keep)


def _check_train_all(train, m: int):
    """Like :func:`fastpoly.plan.check_train`, but the train set may cover every row (for log P(S))."""
    try:
        return check_train(train, m)
    except ValueError as e:
        if "covers every row" not in str(e):
            raise
    return check_train(train, m + 1)  # every row of X, each once: valid for P(S)


def _setup(arch, X, train, K, allow_all=False):
    arch = as_mlp(arch)
    X = check_inputs(arch, X)
    m = X.shape[0]
    rows, labels = _check_train_all(train, m) if allow_all else check_train(train, m)
    if K is None:
        K = kernel(arch, X)
    else:
        K = check_covariance(K)
        if K.shape != (m, m):
            raise ValueError(f"K must have shape ({m}, {m}) for these inputs, got {K.shape}")
    return arch, X, rows, labels, K


def log_marginal(
    arch,
    X=None,
    train=None,
    method: str = "tilting",
    *,
    K: np.ndarray | None = None,
    **orthant_options,
) -> OrthantResult:
    """``log P(S)``: the NNGP probability that the network's signs match the train labels.

    Parameters
    ----------
    arch : Architecture (MLP or CNN) or str
    X : array_like (m, n_inputs), (m, H, W, C) or None
        Inputs: rows, or images for a CNN (None: all Boolean inputs).
    train : (row indices, 0/1 labels)
        The train set (rows of X).
    method : {"tilting", "ep", "mc"}
        Orthant method (see :func:`fastpoly.gp.orthant`).
    K : array or None
        A precomputed kernel over all rows of X (skips :func:`fastpoly.gp.kernel`).
    **orthant_options
        ``n_samples``, ``seed``, ``jitter`` and EP options.

    Returns
    -------
    OrthantResult
    """
    if train is None:
        raise ValueError("log_marginal needs train=(row indices, 0/1 labels)")
    _, _, rows, labels, K = _setup(arch, X, train, K, allow_all=True)
    return orthant(K[np.ix_(rows, rows)], labels, method, **orthant_options)


def _function_bits(functions, n_test: int, rows: np.ndarray, labels: np.ndarray, test: np.ndarray):
    """0/1 matrix (n_functions, n_test) from FunctionCounts, keys, strings or a bit matrix."""
    if isinstance(functions, FunctionCounts):
        meta = functions.meta
        tr = meta.get("train_rows")
        if tr:
            a = dict(zip(np.asarray(tr, np.int64).tolist(), np.asarray(meta["train_labels"]).tolist()))
            b = dict(zip(rows.tolist(), labels.astype(int).tolist()))
            if a != b:
                raise ValueError("the counts' train set (rows and labels) differs from train")
        if functions.n_key_bits != n_test:
            raise ValueError(f"the counts' keys cover {functions.n_key_bits} rows, but {n_test} rows are not in the train set")
        kr = meta.get("key_rows")
        if kr is not None and not np.array_equal(np.asarray(kr, np.int64), test):
            raise ValueError("the counts' key rows differ from the test rows of this train set")
        return unpack_bits(np.asarray(functions.keys), n_test)
    if isinstance(functions, (str, int, np.integer)):
        functions = [functions]
    if isinstance(functions, np.ndarray) and functions.dtype != np.uint64 and functions.dtype != object:
        bits = np.asarray(functions)
        if bits.ndim == 1:
            bits = bits[None, :]
        if bits.ndim != 2 or bits.shape[1] != n_test:
            raise ValueError(f"a bit matrix of functions must have shape (k, {n_test}), got {bits.shape}")
        if not np.all((bits == 0) | (bits == 1)):
            raise ValueError("function bits must be 0 or 1")
        return bits.astype(np.uint8)
    if isinstance(functions, np.ndarray) and functions.dtype == np.uint64:
        arr = functions.reshape(-1, (n_test + 63) // 64) if functions.ndim <= 2 else None
        if arr is None:
            raise ValueError("keys must be a (k, n_words) uint64 array")
        return unpack_bits(arr, n_test)
    keys = [as_key(f, n_test) for f in functions]
    if not keys:
        raise ValueError("no functions given")
    return unpack_bits(np.stack(keys), n_test)


class GPPosterior:
    """A table of GP posterior probabilities ``log P_B^GP(f|S)`` for given functions.

    Attributes
    ----------
    keys : uint64 array (k, n_words)
        The functions, in the project's key format over the test rows (bit i = i-th test row).
    log_p : float64 array (k,)
        ``log P(y_S u f) - log P(y_S)`` (natural log).
    stderr : float64 array (k,)
        Standard errors of ``log_p`` (independent estimates combined in quadrature);
        ``nan`` for EP.
    log_p_S, stderr_S : float, float or None
        ``log P(S)`` and its standard error.
    method : str
    meta : dict
        FunctionCounts-style metadata (``arch`` with ``"limit": "nngp"``, ``inputs_digest``,
        ``n_rows``, ``train_rows``, ``train_labels``, ``key_rows``, ``n_key_bits``,
        ``fastpoly_version``) plus ``gp`` (method, samples, seed, pac_bayes_bound).
    diagnostics : list of dict
        Per function, the orthant diagnostics of ``log P(y_S u f)``.
    """

    def __init__(self, keys, log_p, stderr, log_p_S, stderr_S, method, meta, diagnostics=None):
        self.keys = np.ascontiguousarray(keys, np.uint64)
        self.log_p = np.asarray(log_p, np.float64)
        self.stderr = np.asarray(stderr, np.float64)
        self.log_p_S = float(log_p_S)
        self.stderr_S = stderr_S
        self.method = method
        self.meta = dict(meta)
        self.diagnostics = list(diagnostics or [])

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def __repr__(self) -> str:
        return (f"GPPosterior({len(self)} functions, method={self.method!r}, log P(S)={self.log_p_S:.6g}, "
                f"train rows={len(self.meta.get('train_rows', []))}, test rows={self.n_key_bits})")

    @property
    def n_key_bits(self) -> int:
        """Test rows the keys cover."""
        return int(self.meta["n_key_bits"])

    def probabilities(self) -> np.ndarray:
        """``P_B^GP(f|S)`` of each function (``exp(log_p)``)."""
        return np.exp(self.log_p)

    def hex(self, i: int) -> str:
        """Hex string of the ``i``-th key (bit i = i-th test row)."""
        return key_to_hex(self.keys[i], self.n_key_bits)

    def top(self, k: int = 10) -> list[dict]:
        """The ``k`` most probable listed functions: key (hex), log_p, stderr, probability."""
        order = np.lexsort((np.arange(len(self)), -self.log_p))[:k]
        return [{"key": self.hex(int(i)), "log_p": float(self.log_p[i]), "stderr": float(self.stderr[i]),
                 "probability": float(math.exp(self.log_p[i]))} for i in order]

    def to_counts(self, scale: int = 2**40) -> FunctionCounts:
        """Pseudo-counts ``round(P_B^GP(f|S) * scale)`` as a :class:`~fastpoly.FunctionCounts`.

        ``n_accepted = n_samples = scale``, so ``probability(f)`` reads back
        ``P_B^GP(f|S)`` to a resolution of ``1/scale``; keys are sorted as the
        format requires (duplicates are refused); ``first_index`` is 0;
        ``meta['gp']`` records that these are GP pseudo-counts (``meta['arch']``
        carries ``"limit": "nngp"``, so they never merge with sampled counts).
        """
        if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or not 1 <= scale <= 2**62:
            raise ValueError(f"scale must be an integer in [1, 2**62], got {scale!r}")
        order = sort_order(self.keys)
        keys = self.keys[order]
        if keys.shape[0] > 1 and np.any(np.all(keys[1:] == keys[:-1], axis=1)):
            raise ValueError("duplicate functions in the table")
        counts = np.rint(np.exp(self.log_p[order]) * scale).astype(np.int64)
        meta = dict(self.meta)
        table = {"log_p": _finite_or_none(self.log_p[order]), "stderr": _finite_or_none(self.stderr[order]),
                 "log_p_S": self.log_p_S, "stderr_S": self.stderr_S, "method": self.method}
        meta["gp"] = dict(meta.get("gp", {}), pseudo_counts_scale=int(scale), table=table)
        return FunctionCounts(keys, counts, np.zeros(keys.shape[0], np.uint64), int(scale), int(scale), meta)

    @classmethod
    def from_counts(cls, counts: FunctionCounts) -> GPPosterior:
        """The table stored in a counts file by :meth:`to_counts` / :meth:`save` (exact ``log_p``, not the pseudo-counts).

        Raises
        ------
        ValueError
            If ``counts`` is not a GP posterior table.
        """
        table = (counts.meta.get("gp") or {}).get("table")
        if estimator_of(counts.meta) != "gp_posterior" or not isinstance(table, dict):
            raise ValueError("not a GP posterior table (write one with GPPosterior.save(PATH.npz))")
        nan = float("nan")
        log_p = [nan if v is None else v for v in table["log_p"]]
        se = [nan if v is None else v for v in table["stderr"]]
        meta = dict(counts.meta)
        meta["gp"] = {k: v for k, v in meta["gp"].items() if k not in ("table", "pseudo_counts_scale")}
        return cls(np.asarray(counts.keys), log_p, se, table["log_p_S"], table["stderr_S"], table["method"], meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> GPPosterior:
        """Read a table saved as a counts file (``save(PATH.npz)``)."""
        return cls.from_counts(FunctionCounts.load(path))

    def to_text(self) -> str:
        """Tab-separated table: key (hex), log_p, stderr, probability; header lines start with '#'."""
        lines = [(f"# fastpoly GP posterior: method={self.method} log_P(S)={self.log_p_S:.10g} "
                 f"stderr_S={self.stderr_S} train_rows={len(self.meta.get('train_rows', []))} "
                 f"test_rows={self.n_key_bits}"),
                 "# meta " + json.dumps(self.meta, sort_keys=True),
                 "key\tlog_p\tstderr\tprobability"]
        for i in range(len(self)):
            lines.append(f"{self.hex(i)}\t{self.log_p[i]:.10g}\t{self.stderr[i]:.4g}\t{math.exp(self.log_p[i]):.6g}")
        return "\n".join(lines) + "\n"

    def save(self, path: str | os.PathLike, scale: int = 2**40) -> None:
        """Write the table atomically: a counts-store file for ``.npz`` paths, else the text of :meth:`to_text`.

        The counts file (:meth:`to_counts`, ``meta["estimator"] == "gp_posterior"``) is read by every
        fastpoly command as counts and by :meth:`load` back into this table, exact ``log_p`` included.
        """
        if os.fspath(path).endswith(".npz"):
            self.to_counts(scale).save(path)
        else:
            atomic_write_bytes(path, self.to_text().encode())


def _gp_meta(arch, X, rows, labels, test, method):
    rm = ResultMeta(
        estimator="gp_posterior", arch=dict(arch.to_dict(), limit="nngp"),
        inputs_digest=inputs_digest(np.asarray(X, np.float32)), n_rows=int(X.shape[0]),
        inputs=describe_inputs(X, arch.n_inputs), seed=None,
        train_rows=tuple(int(r) for r in rows), train_labels=tuple(int(v) for v in labels),
    )
    return build_meta(rm, n_key_bits=int(test.size), key_rows=test, annotations={"gp": {"method": method}})


def _finite_or_none(a):
    return [None if not math.isfinite(v) else float(v) for v in np.asarray(a, np.float64)]


def _sub_seed(seed: int, i: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(i)]).generate_state(1, np.uint64)[0])


def posterior(
    arch,
    X=None,
    train=None,
    functions=None,
    method: str = "tilting",
    *,
    K: np.ndarray | None = None,
    seed: int = 0,
    n_samples: int | None = None,
    **orthant_options,
) -> GPPosterior:
    """``log P_B^GP(f|S)`` of given functions on the test rows.

    Parameters
    ----------
    arch : Architecture (MLP or CNN) or str
    X : array_like (m, n_inputs), (m, H, W, C) or None
    train : (row indices, 0/1 labels) or None
        None: the train set of ``functions`` (a conditioned FunctionCounts).
    functions : FunctionCounts, keys, strings or bit matrix
        Functions on the test rows (every row not in the train set, increasing order):
        a conditioned :class:`~fastpoly.FunctionCounts` (its keys; its train set must
        equal ``train``), a ``(k, n_words)`` uint64 key array, a list of 0/1 strings
        (character i = i-th test row) or hex keys, or a ``(k, n_test)`` 0/1 matrix.
    method : {"tilting", "ep", "mc"}
    K : array or None
        Precomputed kernel over all rows of X.
    seed : int
        Base seed; ``log P(S)`` uses ``seed``, function ``i`` an independent
        sub-seed (``SeedSequence([seed, i + 1])``), so the error bars of
        differences add in quadrature.
    n_samples : int or None
        Samples per orthant estimate (tilting, mc).
    **orthant_options
        ``jitter`` and EP options.

    Returns
    -------
    GPPosterior
    """
    if functions is None:
        raise ValueError("posterior needs functions (e.g. a conditioned FunctionCounts)")
    if train is None:
        if not (isinstance(functions, FunctionCounts) and functions.meta.get("train_rows")):
            raise ValueError("posterior needs train=(rows, labels) unless functions is a conditioned FunctionCounts")
        train = (np.asarray(functions.meta["train_rows"], np.int64),
                 np.asarray(functions.meta["train_labels"], np.uint8))
    arch, X, rows, labels, K = _setup(arch, X, train, K)
    m = X.shape[0]
    test = test_rows(m, rows)
    bits = _function_bits(functions, test.size, rows, labels, test)
    kw = dict(orthant_options, n_samples=n_samples) if method != "ep" else dict(orthant_options)
    K = check_covariance(K)  # once (eigvalsh is O(m^3)): every orthant below is of K or a principal submatrix
    kw["validated"] = True
    rS = orthant(K[np.ix_(rows, rows)], labels, method, seed=seed, **kw)
    if "upper_bound" in rS.diagnostics:
        raise ValueError(f"P(S): {rS.diagnostics['warning']}; P_B^GP(f|S) needs an estimate of P(S)")
    y = np.zeros(m, np.uint8)
    y[rows] = labels
    log_p, se, diags = [], [], []
    for i, b in enumerate(bits):
        y[test] = b
        r = orthant(K, y, method, seed=_sub_seed(seed, i + 1), **kw)
        log_p.append(r.log_p - rS.log_p)
        if r.stderr is None or rS.stderr is None:
            se.append(math.nan)
        else:
            se.append(math.hypot(r.stderr, rS.stderr))
        diags.append(r.diagnostics)
    meta = _gp_meta(arch, X, rows, labels, test, method)
    meta["gp"].update(seed=int(seed), n_samples=n_samples, log_p_S=rS.log_p,
                      pac_bayes_bound=pac_bayes_bound(rS.log_p, int(rows.size)))
    keys = pack_bits(bits.astype(bool))
    return GPPosterior(keys, log_p, se, rS.log_p, rS.stderr, method, meta, diags)

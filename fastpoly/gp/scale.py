"""P_B^GP(f|S) at the paper's scale: blocked NNGP kernels, EP conditioning shared by all test functions.

The paper's definition (Mingard et al. 2021): with ``g ~ N(0, K)`` on the train set S
(m rows, labels ``y_S``) and a test set E, ``P_B^GP(f|S) = P(S u f_E) / P(S)``, both
orthant probabilities under the Heaviside (noise-free sign) likelihood, approximated by EP.

Routes (:func:`posterior_gp`):

* ``route="ep", mode="joint"`` (default: the paper's definition): EP on S once
  (parallel EP, :func:`condition_ep`) for ``log P(S)``; then for each f full EP on all
  m + |E| points (S sites warm-started at their S-only values, E sites at 0, every site
  updated until convergence) for ``log P(S u f_E)``.  The S sites move when the E sites
  are added -- strongly for functions far from the posterior mode -- so each function
  costs a few tens of O((m + |E|)^3) sweeps (measured: ``bench/ep_scale.py``).
* ``route="ep", mode="shared"`` (fast approximation): the S sites are held at their
  S-only fixed point; the EP normaliser of S u E then factorises exactly into
  ``Z_EP(S) * Z_EP(f_E | q_S)``, ``q_S(g_E) = N(mean_E, Sigma_E)`` the EP predictive on E,
  so ``log P_B^GP(f|S) ~ log Z_EP(f_E | q_S)``: one O(m^3) factorisation and an O(m^2 |E|)
  predictive shared by all functions, then O(|E|^3) per function.  It agrees with
  ``joint`` for functions near the posterior mode (digits, m = 1000, |E| = 100: the
  labels' own function within 0.03 nats) and over-estimates far ones badly (a function
  with half the test labels flipped: -163 vs -208 nats): use it to rank or screen, and
  ``joint`` for values.
* ``route="mse"``: the anchor's alternative (nn-pacbayes' GP_prob MSE route): exact GP
  regression of the train targets (``+-1`` by default, or ``0/1`` with threshold 1/2) with
  noise variance ``noise_var`` gives ``N(mean_E, Sigma_E)``; ``P(f)`` is its orthant
  probability of ``f``.

The E orthant of the shared and MSE routes is computed by EP (``orthant_method="ep"``, no
error bar) or minimax tilting (``"tilting"``, unbiased with a standard error).  ``check=True`` runs tilting next to EP
on every E orthant and records both; where tilting's effective sample size is too small
(its own warning) the check says so instead of claiming agreement.

Scale (float64 throughout): :func:`kernel_blocked` builds the kernel of up to ~10^4 rows
in row blocks of the upper triangle (memory: the n x n output plus O(block * n)).  The
parallel EP keeps K (a view) and one m x m work matrix: per sweep the work matrix holds
``B = I + W K W`` (``W = diag(sqrt(tau) * sign)``), its Cholesky factor (LAPACK ``dpotrf``
in place) and then the factor's inverse (``dtrtri`` in place); the marginal variances are
``(1 - (B^-1)_ii) / tau_i`` (column norms of ``L^-1``; sites with ``tau_i K_ii < 1e-4``
directly as ``K_ii - |L^-1 w * K_:i|^2``), the means three matrix-vector products.
That is ``2 m^3 / 3`` flops per sweep and ``K`` plus ``m^2`` doubles of memory.
On a machine shared with other jobs set ``OPENBLAS_NUM_THREADS=1``: OpenBLAS's spinning
threads made a 1000 x 1000 Cholesky 100x slower there.

With CuPy and a GPU (``linalg="cupy"``, or ``"auto"`` when one is usable) the same
algorithm runs through CuPy's NumPy-compatible API (cuSOLVER Cholesky, triangular solve
for the inverse); the site updates stay on the host (O(m) per sweep).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.linalg import lapack

from fastpoly.gp.ep import _log_z, _match, ep_log_prob
from fastpoly.gp.kernels import as_mlp, check_inputs, kernel
from fastpoly.gp.tilting import tilting_log_prob

__all__ = ["EPConditioning", "LINALG_BACKENDS", "condition_ep", "gaussian_orthants", "kernel_blocked",
           "mse_predictive", "posterior_gp"]

LINALG_BACKENDS = ("auto", "numpy", "cupy")
#: sites with tau_i * K_ii below this get their marginal variance from the direct formula
_SMALL_TAU = 1e-4


# --------------------------------------------------------------------------- blocked kernel

def _bias_var(arch, fan_in: int) -> float:
    if not arch.bias:
        return 0.0
    s2 = arch.sigma_b**2
    return s2 / fan_in if arch.bias_scaling == "fan_in" else s2


def _layer_rect(K: np.ndarray, dr: np.ndarray, dc: np.ndarray, act: str) -> np.ndarray:
    """``E[phi(u) phi(u')]`` on a rectangular block (rows with variances ``dr``, columns ``dc``), in place."""
    if act == "identity":
        return K
    if act == "erf":
        K *= 2.0
        K /= np.sqrt(1.0 + 2.0 * dr)[:, None]
        K /= np.sqrt(1.0 + 2.0 * dc)[None, :]
        np.clip(K, -1.0, 1.0, out=K)
        np.arcsin(K, out=K)
        K *= 2.0 / math.pi
        return K
    norm = np.sqrt(dr)[:, None] * np.sqrt(dc)[None, :]
    pos = norm > 0
    rho = np.zeros_like(K)
    np.divide(K, norm, out=rho, where=pos)
    np.clip(rho, -1.0, 1.0, out=rho)
    if act == "relu":
        t = np.arccos(rho)
        out = np.sin(t)
        t *= -1.0
        t += math.pi
        t *= rho
        out += t
        out *= norm
        out /= 2.0 * math.pi
        return out
    if act == "sign":
        return np.where(pos, (2.0 / math.pi) * np.arcsin(rho), 0.0)
    raise ValueError(act)  # pragma: no cover - guarded by kernel()


def _diag_layer(d: np.ndarray, act: str) -> np.ndarray:
    if act == "identity":
        return d
    if act == "erf":
        return (2.0 / math.pi) * np.arcsin(2.0 * d / (1.0 + 2.0 * d))
    if act == "relu":
        return d / 2.0
    return (d > 0).astype(np.float64)  # sign


def kernel_blocked(arch, X: np.ndarray, block: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """The NNGP kernel of :func:`fastpoly.gp.kernel`, built in row blocks (float64, exactly symmetric).

    Parameters
    ----------
    arch : MLP or str
    X : array_like (n, n_inputs)
    block : int or None
        Rows per block (default: about 4M entries per block, at least 64 rows).
    out : (n, n) float64 C-contiguous array or None
        Where to write the kernel (default: a new array).

    Returns
    -------
    numpy.ndarray (n, n)
        Equal to ``kernel(arch, X)`` up to the rounding of the blocked ``X @ X.T``;
        memory: the output plus O(block * n) temporaries.
    """
    arch = as_mlp(arch)
    X = check_inputs(arch, X)
    kernel(arch, X[:1])  # the same validation (activation, weights) as the dense kernel
    n, d0 = X.shape
    if block is None:
        block = max(64, (1 << 22) // max(n, 1))
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"block must be a positive integer, got {block!r}")
    if out is None:
        out = np.empty((n, n))
    elif out.shape != (n, n) or out.dtype != np.float64 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float64 ({n}, {n}) array")
    sw2 = arch.sigma_w**2
    diags = [_bias_var(arch, d0) + sw2 * np.einsum("ij,ij->i", X, X) / d0]
    for fan_in in arch.hidden:
        diags.append(_bias_var(arch, fan_in) + sw2 * _diag_layer(diags[-1], arch.activation))
    for a in range(0, n, block):
        b = min(n, a + block)
        G = X[a:b] @ X[a:].T
        sq = G[:, :b - a]
        sq[...] = 0.5 * (sq + sq.T)
        G *= sw2 / d0
        G += _bias_var(arch, d0)
        for li, fan_in in enumerate(arch.hidden):
            G = _layer_rect(G, diags[li][a:b], diags[li][a:], arch.activation)
            G *= sw2
            G += _bias_var(arch, fan_in)
        blk = G[:, :b - a]
        blk[...] = np.triu(blk) + np.triu(blk, 1).T
        np.fill_diagonal(blk, diags[-1][a:b])
        out[a:b, a:] = G
        out[b:, a:b] = G[:, b - a:].T
    return out


# --------------------------------------------------------------------------- linear algebra backends

class _NumpyLinalg:
    name = "numpy"
    xp = np

    def asarray(self, a):
        return np.asarray(a, np.float64)

    def host(self, a) -> np.ndarray:
        return np.asarray(a)

    def work(self, m: int):
        return np.empty((m, m))

    def chol_inv(self, K, w, work):
        """``L^-1`` (lower, zero above) of ``B = I + diag(w) K diag(w)`` in ``work``; ``sum log diag L``."""
        m = K.shape[0]
        np.multiply(K, w[:, None], out=work)
        work *= w[None, :]
        work.flat[::m + 1] += 1.0
        # work is C-contiguous and symmetric: its transpose is the same matrix, Fortran-contiguous,
        # so LAPACK works in place; the upper factor of work.T is the lower factor of work
        c, info = lapack.dpotrf(work.T, lower=0, clean=1, overwrite_a=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"Cholesky of I + W K W failed (info {info})")
        if not np.shares_memory(c, work):  # pragma: no cover - f2py copied after all
            work[...] = c.T
        logdet_half = float(np.sum(np.log(np.diagonal(work))))
        c, info = lapack.dtrtri(work.T, lower=0, overwrite_c=1)
        if info != 0:  # pragma: no cover - a successful Cholesky has a nonzero diagonal
            raise np.linalg.LinAlgError(f"triangular inverse failed (info {info})")
        if not np.shares_memory(c, work):  # pragma: no cover
            work[...] = c.T
        return work, logdet_half

    def col_sq_norms(self, A) -> np.ndarray:
        return np.einsum("ij,ij->j", A, A)


class _CupyLinalg:
    name = "cupy"

    def __init__(self):
        import cupy
        import cupyx.scipy.linalg

        self.xp = cupy
        self._solve_triangular = cupyx.scipy.linalg.solve_triangular

    def asarray(self, a):
        return self.xp.asarray(a, dtype=self.xp.float64)

    def host(self, a) -> np.ndarray:
        return np.asarray(self.xp.asnumpy(a))

    def work(self, m: int):
        return None

    def chol_inv(self, K, w, work):
        xp = self.xp
        m = K.shape[0]
        B = K * w[:, None]
        B *= w[None, :]
        idx = xp.arange(m)
        B[idx, idx] += 1.0
        L = xp.linalg.cholesky(B)
        del B
        dg = self.host(xp.diagonal(L))
        if not np.all(np.isfinite(dg)) or np.any(dg <= 0):
            raise np.linalg.LinAlgError("Cholesky of I + W K W failed")
        Linv = self._solve_triangular(L, xp.eye(m), lower=True)
        return Linv, float(np.sum(np.log(dg)))

    def col_sq_norms(self, A) -> np.ndarray:
        return self.host((A * A).sum(axis=0))


def _linalg(name: str):
    if name not in LINALG_BACKENDS:
        raise ValueError(f"unknown linalg {name!r}; valid: {', '.join(LINALG_BACKENDS)}")
    if name == "numpy":
        return _NumpyLinalg()
    try:
        ops = _CupyLinalg()
        if ops.xp.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device")
        return ops
    except Exception as e:  # noqa: BLE001 - CuPy missing, no driver, no device
        if name == "cupy":
            raise ValueError(f"linalg='cupy' needs CuPy and a CUDA GPU: {type(e).__name__}: {e}") from None
        return _NumpyLinalg()


# --------------------------------------------------------------------------- parallel EP

def _marginals(ops, K, Kd, sgn, tau, nu, work):
    """Posterior marginal variances ``d``, means ``mu`` (of h = sign * g), ``L^-1``, ``w``, ``sum log diag L``."""
    xp = ops.xp
    if not np.any(tau > 0):  # no site has precision: the prior, shifted by the linear site terms
        return Kd.copy(), sgn * ops.host(K @ ops.asarray(sgn * nu)), None, None, 0.0
    w = np.sqrt(tau) * sgn
    wd = ops.asarray(w)
    Linv, ldh = ops.chol_inv(K, wd, work)
    binv = ops.col_sq_norms(Linv)
    d = np.empty_like(tau)
    big = tau * Kd >= _SMALL_TAU
    d[big] = (1.0 - binv[big]) / tau[big]
    small = np.flatnonzero(~big)
    if small.size:
        for c0 in range(0, small.size, 64):  # 64 columns at a time: O(64 m) temporaries
            cols = small[c0:c0 + 64]
            V = Linv @ (wd[:, None] * K[:, xp.asarray(cols)])
            d[cols] = Kd[cols] - ops.col_sq_norms(V)
    u = ops.asarray(sgn * nu)
    a = K @ u
    b = Linv.T @ (Linv @ (wd * a))
    c = K @ (wd * b)
    mu = sgn * ops.host(a - c)
    return d, mu, Linv, wd, ldh


def _ep_parallel(ops, K, sgn, lower, tau=None, nu=None, damping=0.8, tol=1e-6, max_iter=300, work=None):
    """Parallel EP for ``P(sign_i g_i > lower_i for all i)``, ``g ~ N(0, K)``; K stays where ``ops`` keeps it."""
    m = K.shape[0]
    Kd = ops.host(ops.xp.diagonal(K)).astype(np.float64)
    tau = np.zeros(m) if tau is None else np.array(tau, np.float64)
    nu = np.zeros(m) if nu is None else np.array(nu, np.float64)
    if work is None:
        work = ops.work(m)
    d, mu, Linv, wd, ldh = _marginals(ops, K, Kd, sgn, tau, nu, work)
    damping0 = damping
    history: list[float] = []
    skipped = 0
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - reported after the loop
        tau_c = 1.0 / d - tau
        ok = tau_c > 0
        skipped += int(np.count_nonzero(~ok))
        nu_c = mu / d - nu
        tc = np.where(ok, tau_c, 1.0)
        _, mh, vh = _match(nu_c / tc, 1.0 / tc, lower)
        tau_new = np.maximum(1.0 / vh - tc, 0.0)
        nu_new = mh / vh - nu_c
        tau_n = np.where(ok, (1 - damping) * tau + damping * tau_new, tau)
        nu_n = np.where(ok, (1 - damping) * nu + damping * nu_new, nu)
        change = float(max(np.max(np.abs(tau_n - tau) / (np.abs(tau_n) + 1e-12)),
                           np.max(np.abs(nu_n - nu) / (np.abs(nu_n) + 1e-12))))
        tau, nu = tau_n, nu_n
        d, mu, Linv, wd, ldh = _marginals(ops, K, Kd, sgn, tau, nu, work)
        if len(history) >= 3 and change > history[-2]:
            damping = max(0.5 * damping, 0.01)
        history.append(change)
        if change < tol:
            converged = True
            break
    log_z = _log_z(tau, nu, lower, d, mu, ldh)
    diag = {"schedule": "parallel", "damping": damping0, "final_damping": damping, "tol": tol,
            "iterations": it, "converged": converged, "change_history": history, "skipped_updates": skipped,
            "linalg": ops.name}
    return log_z, tau, nu, Linv, wd, diag


@dataclass
class EPConditioning:
    """EP on the train set: ``log P(S)``, the sites, and the factor shared by every test function.

    Attributes
    ----------
    log_p_S : float
        The EP ``log P(S)``.
    tau, nu : float64 arrays (m,)
        Site precisions and natural means (in ``h = sign * g``).
    signs : float64 array (m,)
        +1 / -1 per train row (label 1 / 0).
    diagnostics : dict
        Convergence (iterations, change history, damping), seconds, backend.
    """

    log_p_S: float
    tau: np.ndarray
    nu: np.ndarray
    signs: np.ndarray
    diagnostics: dict = field(default_factory=dict)
    _ops: Any = None
    _K: Any = None
    _Linv: Any = None
    _w: Any = None

    def predictive(self, K_SE, K_EE) -> tuple[np.ndarray, np.ndarray]:
        """EP predictive ``N(mean_E, Sigma_E)`` of ``g_E`` given the S sites (host float64 arrays).

        ``mean_E = K_ES (u - w * B^-1 (w * K u))``, ``Sigma_E = K_EE - V^T V``,
        ``V = L^-1 (w * K_SE)``, ``u = sign * nu``, ``w = sqrt(tau) * sign``: O(m^2 |E|).
        """
        ops = self._ops
        K_SE = ops.asarray(K_SE)
        K_EE = ops.host(ops.asarray(K_EE)).astype(np.float64)
        u = ops.asarray(self.signs * self.nu)
        if self._Linv is None:  # no informative site (tau = 0): the prior
            return ops.host(K_SE.T @ u), K_EE.copy()
        a = self._K @ u
        b = self._Linv.T @ (self._Linv @ (self._w * a))
        mean = ops.host(K_SE.T @ (u - self._w * b))
        V = self._Linv @ (self._w[:, None] * K_SE)
        cov = K_EE - ops.host(V.T @ V)
        return mean, 0.5 * (cov + cov.T)


def _signs(labels, m: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or y.size != m:
        raise ValueError(f"labels must be a 1-D array of length {m}, got shape {y.shape}")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0 or 1 (1 means g > 0)")
    return np.where(y == 1, 1.0, -1.0)


def condition_ep(
    K_SS,
    labels,
    *,
    linalg: str = "auto",
    damping: float = 0.8,
    tol: float = 1e-6,
    max_iter: int = 300,
) -> EPConditioning:
    """Parallel EP for ``log P(S)`` (Heaviside likelihood) keeping the factor for predictions.

    Parameters
    ----------
    K_SS : (m, m) float64 array (a view is fine; it is not modified or copied on the host)
    labels : (m,) 0/1 array
    linalg : {"auto", "numpy", "cupy"}
        ``auto``: CuPy when a GPU is usable, else NumPy/LAPACK in place.
    damping, tol, max_iter
        As :func:`fastpoly.gp.ep.ep_log_prob`'s parallel schedule (damping halves when
        the sweep changes grow; stop when no site changes by more than ``tol`` relative).
        Default damping 0.8: fewest sweeps on the digits kernels (0.5: 46 sweeps, 0.8: 28,
        1.0: 63 at m = 1000).

    Returns
    -------
    EPConditioning
    """
    if not 0 < damping <= 1:
        raise ValueError(f"damping must be in (0, 1], got {damping!r}")
    ops = _linalg(linalg)
    t0, c0 = time.perf_counter(), time.process_time()
    K = ops.asarray(K_SS)
    if K.ndim != 2 or K.shape[0] != K.shape[1] or K.shape[0] < 1:
        raise ValueError(f"K_SS must be a square (m, m) matrix, got shape {K.shape}")
    m = K.shape[0]
    sgn = _signs(labels, m)
    kd = ops.host(ops.xp.diagonal(K))
    if not np.all(np.isfinite(kd)) or np.any(kd <= 0):
        raise ValueError("K_SS has non-finite or zero variances (e.g. an all-zero input with sigma_b = 0); "
                         "fastpoly.gp.orthant handles zero-variance rows exactly")
    try:
        log_z, tau, nu, Linv, wd, diag = _ep_parallel(ops, K, sgn, np.zeros(m), damping=damping, tol=tol,
                                                      max_iter=max_iter)
    except np.linalg.LinAlgError as e:
        raise ValueError(f"EP failed: {e} (is K_SS positive semi-definite and finite?)") from None
    diag["seconds"] = time.perf_counter() - t0
    diag["cpu_seconds"] = time.process_time() - c0
    return EPConditioning(log_z, tau, nu, sgn, diag, ops, K, Linv, wd)


# --------------------------------------------------------------------------- E orthants

def gaussian_orthants(
    mean: np.ndarray,
    cov: np.ndarray,
    bits: np.ndarray,
    *,
    threshold: float = 0.0,
    method: str = "ep",
    check: bool = False,
    n_samples: int = 20_000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """``log P(sign(g - threshold) = f)`` for ``g ~ N(mean, cov)`` and each row ``f`` of ``bits``.

    Bit 1 means ``g_i > threshold``.  ``method="ep"`` (no error bar: stderr nan) or
    ``"tilting"``; ``check=True`` with EP also runs tilting on every orthant and records
    ``tilting_log_p``, ``tilting_stderr``, ``tilting_ess``, ``check_diff`` (EP minus tilting)
    and ``check``: ``"agrees"`` (within 5 standard errors or 0.01 nats, i.e. 1 % of P),
    ``"differs"``, or ``"unreliable: ..."`` when tilting's effective sample size is too small
    to judge (tilting's own warning).
    """
    if method not in ("ep", "tilting"):
        raise ValueError(f"unknown orthant method {method!r}; valid: ep, tilting")
    mean = np.asarray(mean, np.float64) - threshold
    cov = np.asarray(cov, np.float64)
    out = np.empty(bits.shape[0])
    se = np.full(bits.shape[0], math.nan)
    diags: list[dict] = []
    for j, f in enumerate(np.asarray(bits)):
        s = np.where(f == 1, 1.0, -1.0)
        S = cov * np.outer(s, s)
        lower = -s * mean
        info: dict = {}
        try:
            if method == "ep":
                r = ep_log_prob(S, lower)
                out[j] = r.log_p
                info.update(converged=r.converged, iterations=r.iterations)
            if method == "tilting" or check:
                t = tilting_log_prob(S, lower, n_samples=int(n_samples), seed=seed + j)
                if method == "tilting":
                    out[j], se[j] = t.log_p, t.stderr
                info.update(tilting_log_p=t.log_p, tilting_stderr=t.stderr, tilting_ess=t.diagnostics["ess"])
                if check and method == "ep":
                    if "warning" in t.diagnostics:
                        info["check"] = "unreliable: " + t.diagnostics["warning"]
                    else:
                        diff = out[j] - t.log_p
                        info["check_diff"] = diff
                        info["check"] = "agrees" if abs(diff) <= max(5 * t.stderr, 0.01) else "differs"
        except np.linalg.LinAlgError:
            raise ValueError("the test-set covariance is numerically singular (duplicate test inputs?)") from None
        diags.append(info)
    return out, se, diags


def mse_predictive(K_SS, K_SE, K_EE, labels, noise_var: float = 1e-3, targets: str = "pm1"):
    """GP regression posterior ``N(mean_E, Sigma_E)`` on E from the train labels (the MSE route).

    ``mean_E = K_ES (K_SS + s2 I)^-1 t``, ``Sigma_E = K_EE - K_ES (K_SS + s2 I)^-1 K_SE`` with
    ``s2 = noise_var`` and targets ``t = 2y - 1`` (``"pm1"``, threshold 0) or ``t = y``
    (``"01"``, threshold 1/2).  One in-place Cholesky (memory: one m x m work matrix).

    Returns
    -------
    mean, cov, threshold
    """
    if targets not in ("pm1", "01"):
        raise ValueError(f"unknown targets {targets!r}; valid: pm1, 01")
    if not (isinstance(noise_var, (int, float)) and math.isfinite(noise_var) and noise_var >= 0):
        raise ValueError(f"noise_var must be a finite number >= 0, got {noise_var!r}")
    K_SS = np.asarray(K_SS, np.float64)
    m = K_SS.shape[0]
    y = np.asarray(labels)
    _signs(y, m)
    t = (2.0 * y - 1.0) if targets == "pm1" else y.astype(np.float64)
    A = np.array(K_SS, order="C")
    A.flat[::m + 1] += noise_var
    c, info = lapack.dpotrf(A.T, lower=0, clean=1, overwrite_a=1)
    if info != 0:
        raise ValueError("K_SS + noise_var I is not positive definite: increase noise_var")
    if not np.shares_memory(c, A):  # pragma: no cover
        A[...] = c.T
    from scipy.linalg import solve_triangular

    K_SE = np.asarray(K_SE, np.float64)
    V = solve_triangular(A, K_SE, lower=True, check_finite=False)
    z = solve_triangular(A, t, lower=True, check_finite=False)
    mean = V.T @ z
    cov = np.asarray(K_EE, np.float64) - V.T @ V
    return mean, 0.5 * (cov + cov.T), 0.0 if targets == "pm1" else 0.5


# --------------------------------------------------------------------------- the user entry point

def posterior_gp(
    arch,
    X_train,
    y_train,
    X_test,
    functions,
    *,
    route: str = "ep",
    mode: str = "joint",
    orthant_method: str = "ep",
    check: bool = False,
    K: np.ndarray | None = None,
    linalg: str = "auto",
    noise_var: float = 1e-3,
    targets: str = "pm1",
    n_samples: int = 20_000,
    seed: int = 0,
    tol: float = 1e-6,
    damping: float = 0.8,
    data_meta: dict | None = None,
):
    """``log P_B^GP(f|S)`` of given functions on a test set, as the paper defines it (see the module docstring).

    Parameters
    ----------
    arch : MLP or str
        Architecture of the NNGP kernel (ignored when ``K`` is given, except for the meta).
    X_train, y_train : (m, n_inputs) array, (m,) 0/1 array
    X_test : (k, n_inputs) array
    functions : (n_f, k) 0/1 matrix, list of 0/1 strings / hex keys, or uint64 keys over the test rows
    route : {"ep", "mse"}
    mode : {"shared", "joint"}
        EP route only.
    orthant_method : {"ep", "tilting"}
        How the E orthants are computed (shared and MSE routes).
    check : bool
        Tilting next to EP on every E orthant (see :func:`gaussian_orthants`).
    K : (m + k, m + k) array or None
        Precomputed kernel over ``vstack(X_train, X_test)`` (default :func:`kernel_blocked`).
    linalg : {"auto", "numpy", "cupy"}
    noise_var, targets
        MSE route (see :func:`mse_predictive`).
    n_samples, seed
        Tilting.
    tol, damping : float
        EP convergence tolerance and initial damping for ``P(S)`` and the joint EP.
    data_meta : dict or None
        Recorded as ``meta["data"]``: e.g. a :class:`fastpoly.data.Dataset`'s ``meta``
        (dataset digest, split, transform).

    Returns
    -------
    fastpoly.gp.GPPosterior
        Keys over the test rows (bit i = i-th test image), ``log_p``, ``stderr`` (nan for
        EP), ``log_p_S`` (the EP ``log P(S)``; nan for the MSE route, which has none), meta
        with ``gp.route``, ``gp.mode`` and timings, per-function diagnostics.
    """
    from fastpoly.gp.bayes import GPPosterior, _function_bits, _gp_meta, pac_bayes_bound
    from fastpoly.keys import pack_bits

    if route not in ("ep", "mse"):
        raise ValueError(f"unknown route {route!r}; valid: ep, mse")
    if mode not in ("shared", "joint"):
        raise ValueError(f"unknown mode {mode!r}; valid: shared, joint")
    arch = as_mlp(arch)
    Xtr = check_inputs(arch, X_train)
    Xte = check_inputs(arch, X_test)
    m, k = Xtr.shape[0], Xte.shape[0]
    y = np.asarray(y_train)
    _signs(y, m)
    X = np.vstack([Xtr, Xte])
    rows, test = np.arange(m), np.arange(m, m + k)
    bits = _function_bits(functions, k, rows, y.astype(np.uint8), test)
    t0 = time.perf_counter()
    if K is None:
        K = kernel_blocked(arch, X)
    else:
        K = np.asarray(K, np.float64)
        if K.shape != (m + k, m + k):
            raise ValueError(f"K must have shape ({m + k}, {m + k}) (train rows then test rows), got {K.shape}")
    t_kernel = time.perf_counter() - t0
    K_SS, K_SE, K_EE = K[:m, :m], K[:m, m:], K[m:, m:]
    t1 = time.perf_counter()
    log_p_S = math.nan
    cond_diag: dict = {}
    if route == "mse":
        mean, cov, thr = mse_predictive(K_SS, K_SE, K_EE, y, noise_var, targets)
        log_p, se, diags = gaussian_orthants(mean, cov, bits, threshold=thr, method=orthant_method, check=check,
                                             n_samples=n_samples, seed=seed)
        method = f"mse+{orthant_method}"
    else:
        c = condition_ep(K_SS, y, linalg=linalg, tol=tol, damping=damping)
        log_p_S = c.log_p_S
        cond_diag = {k_: v for k_, v in c.diagnostics.items() if k_ != "change_history"}
        if mode == "shared":
            mean, cov = c.predictive(K_SE, K_EE)
            log_p, se, diags = gaussian_orthants(mean, cov, bits, method=orthant_method, check=check,
                                                 n_samples=n_samples, seed=seed)
            method = f"ep-shared+{orthant_method}"
        else:
            ops = c._ops
            c._Linv = c._K = c._w = None  # the joint route needs no predictive: free the m x m factor first
            Kall = ops.asarray(K)
            work = ops.work(m + k)
            log_p = np.empty(bits.shape[0])
            se = np.full(bits.shape[0], math.nan)
            diags = []
            for j, f in enumerate(bits):
                sgn = np.concatenate([c.signs, np.where(f == 1, 1.0, -1.0)])
                try:
                    lz, *_, dj = _ep_parallel(ops, Kall, sgn, np.zeros(m + k), np.r_[c.tau, np.zeros(k)],
                                              np.r_[c.nu, np.zeros(k)], damping=damping, tol=tol,
                                              work=work)
                except np.linalg.LinAlgError as e:
                    raise ValueError(f"joint EP failed: {e}") from None
                log_p[j] = lz - log_p_S
                diags.append({x: dj[x] for x in ("iterations", "converged", "final_damping")})
            method = "ep-joint"
    t_post = time.perf_counter() - t1
    meta = _gp_meta(arch, X, rows, y.astype(np.uint8), test, method)
    meta["gp"].update(route=route, mode=mode if route == "ep" else None, orthant_method=orthant_method,
                      log_p_S=None if math.isnan(log_p_S) else log_p_S, seconds_kernel=t_kernel,
                      seconds_posterior=t_post, conditioning=cond_diag,
                      pac_bayes_bound=None if math.isnan(log_p_S) else pac_bayes_bound(min(log_p_S, 0.0), m))
    if route == "mse":
        meta["gp"].update(noise_var=noise_var, targets=targets)
    if data_meta is not None:
        meta["data"] = dict(data_meta)
    keys = pack_bits(bits.astype(bool))
    return GPPosterior(keys, log_p, se, log_p_S, None, method, meta, diags)

"""What users write today: batched NumPy (BLAS) and PyTorch samplers, for comparison with fastpoly.

These draw networks with the same architecture and initialisation *distribution* (not the same
random stream), evaluate them batched with matrix products, pack the output signs into keys and
count with ``np.unique`` -- the pipeline of the anchor papers, minus the text files.
"""
from __future__ import annotations

import numpy as np

__all__ = ["numpy_blas_sampler", "torch_sampler", "torch_available"]


def _pack_count(bits):
    from fastpoly.keys import pack_bits

    keys = pack_bits(bits)
    uk, cnt = np.unique(keys, axis=0, return_counts=True)
    return uk, cnt


def numpy_blas_sampler(arch, X, n_samples, seed=0, batch=512):
    """Batched NumPy sampler with BLAS ``@`` and the default generator (float32)."""
    rng = np.random.default_rng(seed)
    w = arch.widths
    X = np.asarray(X, np.float32)
    n_distinct = 0
    done = 0
    while done < n_samples:
        S = min(batch, n_samples - done)
        h = np.broadcast_to(X, (S,) + X.shape)
        for i in range(len(w) - 1):
            W = rng.standard_normal((S, w[i], w[i + 1]), dtype=np.float32) * np.float32(arch.sigma_w / np.sqrt(w[i]))
            b = rng.standard_normal((S, 1, w[i + 1]), dtype=np.float32) * np.float32(arch.sigma_b)
            z = h @ W + b
            h = np.maximum(z, 0) if i < len(w) - 2 else z
        uk, _ = _pack_count(h[:, :, 0] > 0)
        n_distinct = max(n_distinct, uk.shape[0])
        done += S
    return n_distinct


def torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_sampler(arch, X, n_samples, seed=0, batch=4096, device="cpu", compiled=False):
    """Batched PyTorch sampler (``bmm``), eager or ``torch.compile``d, on ``device``; keys counted with ``torch.unique``."""
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    w = arch.widths
    Xt = torch.as_tensor(np.asarray(X, np.float32), device=device)
    pw = 2 ** torch.arange(63, dtype=torch.int64, device=device)

    def forward(h, params):
        for i, (W, b) in enumerate(params):
            z = torch.baddbmm(b, h, W)
            h = torch.relu(z) if i < len(params) - 1 else z
        return h[:, :, 0] > 0

    fwd = torch.compile(forward) if compiled else forward
    done = 0
    m = Xt.shape[0]
    n_words = (m + 62) // 63
    while done < n_samples:
        S = min(batch, n_samples - done)
        params = []
        for i in range(len(w) - 1):
            W = torch.randn((S, w[i], w[i + 1]), generator=g, device=device) * (arch.sigma_w / w[i] ** 0.5)
            b = torch.randn((S, 1, w[i + 1]), generator=g, device=device) * arch.sigma_b
            params.append((W, b))
        bits = fwd(Xt.expand(S, -1, -1), params)
        pad = n_words * 63 - m
        if pad:
            bits = torch.nn.functional.pad(bits, (0, pad))
        keys = (bits.view(S, n_words, 63).to(torch.int64) * pw).sum(-1)
        torch.unique(keys, dim=0, return_counts=True)
        done += S
    if device != "cpu":
        torch.cuda.synchronize()
    return done


# --- P_SGD baselines: many small networks trained as a PyTorch user would -------------------------------


def _torch_anchor_setup(n_runs, seed, device):
    import torch

    from fastpoly.sgd.anchor import anchor_train_set

    g = torch.Generator(device="cpu").manual_seed(seed)
    rows, y = anchor_train_set(32)
    X = fastpoly_boolean(7)[rows]
    Xs = torch.as_tensor(X, device=device)
    ys = torch.as_tensor(y.astype(np.float32), device=device)
    widths = (7, 40, 40, 1)
    params = []
    for fi, fo in zip(widths[:-1], widths[1:]):
        W = (torch.randn(n_runs, fi, fo, generator=g) / fi ** 0.5).to(device).requires_grad_()
        b = torch.randn(n_runs, 1, fo, generator=g).to(device).requires_grad_()
        params += [W, b]
    return Xs, ys, params, g


def fastpoly_boolean(n):
    i = np.arange(2 ** n)[:, None]
    return ((i >> np.arange(n)) & 1).astype(np.float32)


def torch_sgd_bmm(n_runs, seed=0, device="cpu", lr=0.01, batch=8, max_epochs=3000, thr=0.5, after=1):
    """The anchor recipe for ``n_runs`` networks at once: batched ``bmm``, masks for finished runs.

    Returns the number of runs that stopped by the rule (fitted).
    """
    import torch

    Xs, ys, params, g = _torch_anchor_setup(n_runs, seed, device)
    m = Xs.shape[0]
    active = torch.ones(n_runs, dtype=torch.bool, device=device)
    first = torch.full((n_runs,), -1, dtype=torch.int64, device=device)

    def forward(h):
        for i in range(0, len(params), 2):
            h = torch.baddbmm(params[i + 1], h, params[i])
            if i < len(params) - 2:
                h = torch.relu(h)
        return h[..., 0]

    for e in range(1, max_epochs + 1):
        perm = torch.argsort(torch.rand(n_runs, m, generator=g), dim=1).to(device)
        for a in range(0, m, batch):
            idx = perm[:, a:a + batch]
            z = forward(Xs[idx])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z, ys[idx], reduction="none").mean(1)
            grads = torch.autograd.grad(loss.sum(), params)
            with torch.no_grad():
                mask = active.to(z.dtype).view(-1, 1, 1)
                for p, gr in zip(params, grads):
                    p.sub_(lr * gr * mask)
        with torch.no_grad():
            z = forward(Xs.expand(n_runs, -1, -1))
            fitted = ((z > thr) == (ys > 0.5)).all(1)
            first = torch.where(fitted & (first < 0), torch.full_like(first, e), first)
            stop = fitted & (first >= 0) & (e - first >= after)
            active &= ~stop
            if not bool(active.any()):
                break
    return int((~active).sum())


def torch_sgd_vmap(n_runs, seed=0, device="cpu", lr=0.01, batch=8, max_epochs=3000, thr=0.5, after=1):
    """The anchor recipe with ``torch.func.vmap(grad(loss))`` over per-network parameters (masks for finished runs)."""
    import torch
    from torch.func import grad, vmap

    Xs, ys, params, g = _torch_anchor_setup(n_runs, seed, device)
    params = [p.detach() for p in params]
    m = Xs.shape[0]

    def net(ps, x):
        h = x
        for i in range(0, len(ps), 2):
            h = h @ ps[i] + ps[i + 1][0]
            if i < len(ps) - 2:
                h = torch.relu(h)
        return h[:, 0]

    def loss(ps, x, y):
        return torch.nn.functional.binary_cross_entropy_with_logits(net(ps, x), y)

    gfn = vmap(grad(loss), in_dims=(0, 0, 0))
    fwd = vmap(net, in_dims=(0, None))
    active = torch.ones(n_runs, dtype=torch.bool, device=device)
    first = torch.full((n_runs,), -1, dtype=torch.int64, device=device)
    for e in range(1, max_epochs + 1):
        perm = torch.argsort(torch.rand(n_runs, m, generator=g), dim=1).to(device)
        for a in range(0, m, batch):
            idx = perm[:, a:a + batch]
            grads = gfn(params, Xs[idx], ys[idx])
            mask = active.to(Xs.dtype).view(-1, 1, 1)
            params = [p - lr * gr * mask for p, gr in zip(params, grads)]
        z = fwd(params, Xs)
        fitted = ((z > thr) == (ys > 0.5)).all(1)
        first = torch.where(fitted & (first < 0), torch.full_like(first, e), first)
        active &= ~(fitted & (e - first >= after))
        if not bool(active.any()):
            break
    return int((~active).sum())

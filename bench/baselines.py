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

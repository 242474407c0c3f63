// network.cuh -- per-network math shared by the sampler kernels and the host test driver.
//
// Host + device. A sampled network is described by two small arrays that the
// Python backend builds from fastpoly.plan.SamplerPlan (see fp_net_load):
//
//   desc (int64): [n_layers, act, uniform, has_bias, n_params,
//                  widths[0..n_layers], woff[0..n_layers-1], boff[0..n_layers-1]]
//   scales (float32): [wscale[0..n_layers-1], bscale[0..n_layers-1]]
//
// Parameter p of sample i is fp_mul(draw_p, scale) (fastpoly.arch.MLP.draw_params):
// draw p is draw p % 4 of Philox block p / 4 (fp_block_draws).
// Hidden layers use activation `act` (a code of fastpoly.activations.TABLE); the
// output layer has none; a pre-activation starts at the bias and accumulates
// fp_fma(w[k], h[k], z) for k ascending.
#ifndef FASTPOLY_NETWORK_CUH
#define FASTPOLY_NETWORK_CUH

#include "fp_math.cuh"
#include "activations.cuh"  // FP_ACT_* codes, generated from fastpoly.activations.TABLE

#define FP_MAX_LAYERS 16

struct fp_net_desc {
    int n_layers;
    int act;
    int uniform;
    int has_bias;
    long long n_params;
    int widths[FP_MAX_LAYERS + 1];
    long long woff[FP_MAX_LAYERS];
    long long boff[FP_MAX_LAYERS];  // -1 without biases
    float wscale[FP_MAX_LAYERS];
    float bscale[FP_MAX_LAYERS];
};

// Length of the int64 descriptor array for n_layers layers.
FP_HD int fp_desc_len(int n_layers) { return 5 + (n_layers + 1) + 2 * n_layers; }

FP_HD void fp_net_load(const long long* desc, const float* scales, fp_net_desc* d) {
    int L = (int)desc[0];
    d->n_layers = L;
    d->act = (int)desc[1];
    d->uniform = (int)desc[2];
    d->has_bias = (int)desc[3];
    d->n_params = desc[4];
    for (int l = 0; l <= L; ++l) d->widths[l] = (int)desc[5 + l];
    for (int l = 0; l < L; ++l) {
        d->woff[l] = desc[6 + L + l];
        d->boff[l] = desc[6 + 2 * L + l];
        d->wscale[l] = scales[l];
        d->bscale[l] = scales[L + l];
    }
}

// float32 of a float64 value rounded once (the reference's float32(f64 libm(z))).
FP_HD float fp_tanh_f32(float z) {
#if defined(__CUDA_ARCH__)
    return (float)tanh((double)z);
#else
    return (float)__builtin_tanh((double)z);
#endif
}
FP_HD float fp_erf_f32(float z) {
#if defined(__CUDA_ARCH__)
    return (float)erf((double)z);
#else
    return (float)__builtin_erf((double)z);
#endif
}

// Hidden activation of the sampler (fastpoly.activations, float32).
FP_HD float fp_sampler_act(int code, float z) {
    switch (code) {
        case FP_ACT_RELU: return (z < 0.0f) ? 0.0f : z;  // NaN propagates, like np.maximum
        case FP_ACT_TANH: return fp_tanh_f32(z);
        case FP_ACT_ERF: return fp_erf_f32(z);
        case FP_ACT_SIGN: return (z > 0.0f) ? 1.0f : ((z < 0.0f) ? -1.0f : z);  // np.sign
        default: return z;
    }
}

// Scale of parameter p (weights or bias of its layer); 0 outside the parameter vector.
FP_HD float fp_param_scale(const fp_net_desc& d, long long p) {
    for (int l = 0; l < d.n_layers; ++l) {
        long long nw = (long long)d.widths[l] * d.widths[l + 1];
        if (p >= d.woff[l] && p < d.woff[l] + nw) return d.wscale[l];
        if (d.has_bias && p >= d.boff[l] && p < d.boff[l] + d.widths[l + 1]) return d.bscale[l];
    }
    return 0.0f;
}

// Value of one parameter p of sample `index` (recomputes its whole Philox block).
FP_HD float fp_param_value(fp_u64 seed, fp_u64 index, int uniform, long long p, float scale) {
    float v[4];
    fp_block_draws(seed, index, (fp_u32)(p >> 2), uniform, v);
    float x = v[0];
    int t = (int)(p & 3);
    if (t == 1) x = v[1];
    if (t == 2) x = v[2];
    if (t == 3) x = v[3];
    return fp_mul(x, scale);
}

// Serial fill of the parameter vector theta[0..n_params) (host driver, debugging).
FP_HD void fp_fill_params(const fp_net_desc& d, fp_u64 seed, fp_u64 index, float* theta) {
    long long nb = (d.n_params + 3) / 4;
    for (long long b = 0; b < nb; ++b) {
        float v[4];
        fp_block_draws(seed, index, (fp_u32)b, d.uniform, v);
        for (int t = 0; t < 4; ++t) {
            long long p = 4 * b + t;
            if (p < d.n_params) theta[p] = fp_mul(v[t], fp_param_scale(d, p));
        }
    }
}

// One neuron: z = bias; z = fma(w[k], h[k * stride], z) for k ascending.
FP_HD float fp_neuron(float bias, const float* w, const float* h, int n, long long stride) {
    float z = bias;
    for (int k = 0; k < n; ++k) z = fp_fma(w[k], h[(long long)k * stride], z);
    return z;
}

// Forward pass of one row x (length widths[0]) through the network with parameters theta;
// `work` holds 2 * max width floats. Returns the final pre-activation.
FP_HD float fp_forward_row(const fp_net_desc& d, const float* theta, const float* x, float* work, int maxw) {
    const float* hin = x;
    float* bufs[2] = {work, work + maxw};
    float out = 0.0f;
    for (int l = 0; l < d.n_layers; ++l) {
        int fi = d.widths[l], fo = d.widths[l + 1];
        float* hout = bufs[l & 1];
        bool last = (l == d.n_layers - 1);
        for (int j = 0; j < fo; ++j) {
            float b = d.has_bias ? theta[d.boff[l] + j] : 0.0f;
            float z = fp_neuron(b, theta + d.woff[l] + (long long)j * fi, hin, fi, 1);
            hout[j] = last ? z : fp_sampler_act(d.act, z);
        }
        hin = hout;
        out = hout[0];
    }
    return out;
}

// Mask of the valid key bits in 32-bit slot t of a key over nkey rows.
FP_HD fp_u32 fp_slot_mask(int t, int nkey) {
    int lo = 32 * t;
    if (nkey >= lo + 32) return 0xFFFFFFFFu;
    if (nkey <= lo) return 0u;
    return (1u << (nkey - lo)) - 1u;
}

#endif  // FASTPOLY_NETWORK_CUH

// sample_layers.cu -- the layer-sequence sampler (CNNs: conv2d, avg/max/global pooling, flatten, dense;
// relu or identity), one thread per sample, bit for bit the NumPy reference
// (fastpoly.backends.reference.sample_keys_reference on Architecture.draw_params and forward_layers) and the
// Numba sampler fastpoly/backends/numba/layers.py (NVRTC-compatible, no system headers).
//
// The network is the layer program of fastpoly/backends/layer_program.py compiled for ONE row
// (compile_program(arch, 1)): its forward pass is fp_tl_fwd_row of layers.cuh, the generic trainer's.
// Thread t handles samples start + t, start + t + nthreads, ...; its scratch is a slice of `fscratch`
// (the parameters P: n_params floats, then the activations A: alen floats).
//
// Parameters of sample `idx` (the stream of Architecture.draw_params, keyed by (seed, idx)):
//   mode 0 (gaussian) / 1 (uniform): unit draw p is draw p % 4 of Philox block p / 4 (fp_block_draws),
//       P[p] = fp_mul(unit, pscale[p]);
//   mode 2 (truncated normal): the unit normals of the stream are taken in order; a truncated parameter
//       (trunc[p] != 0) first skips every normal with |z| > 2 (the redraw), an untruncated one takes the
//       next normal as it is; P[p] = fp_mul(z, pscale[p]) (pscale already holds the 1/0.8796... factor).
// Rows: X holds the n0 train rows (labels `labels`) then the nk key rows, nin floats each (H, W, C
// row-major).  A sample is accepted when every train output's sign (z > 0) equals its label; its key is
// bit r = (output of key row r > 0), 64 per word, little-endian; its margin the least |z| over all rows.
// early_exit (the count path): stop at the first mismatching train row; a rejected sample's key is 0.
#include "network.cuh"
#include "layers.cuh"

// unit normal number q of the stream of sample idx (block q / 4 cached in *cb / v)
__device__ __forceinline__ float fp_sl_normal(fp_u64 seed, fp_u64 idx, long long q, long long* cb, float* v) {
    const long long b = q >> 2;
    if (b != *cb) {
        fp_block_draws(seed, idx, (fp_u32)b, 0, v);
        *cb = b;
    }
    return v[q & 3];
}

__device__ void fp_sl_draw(fp_u64 seed, fp_u64 idx, int mode, const float* pscale, const unsigned char* trunc,
                           int n_params, float* P) {
    float v[4];
    if (mode != 2) {
        for (int p = 0; p < n_params; ++p) {
            if ((p & 3) == 0) fp_block_draws(seed, idx, (fp_u32)(p >> 2), mode == 1 ? 1 : 0, v);
            P[p] = fp_mul(v[p & 3], pscale[p]);
        }
        return;
    }
    long long q = 0, cb = -1;
    for (int p = 0; p < n_params; ++p) {
        float z = fp_sl_normal(seed, idx, q, &cb, v);
        if (trunc[p])
            while (z > 2.0f || z < -2.0f) z = fp_sl_normal(seed, idx, ++q, &cb, v);
        ++q;
        P[p] = fp_mul(z, pscale[p]);
    }
}

// the output (one float) of row x after the whole program
__device__ float fp_sl_forward(const int* prog, int nl, const float* P, float* A, const float* x, int nin) {
    for (int k = 0; k < nin; ++k) A[prog[C_AIN] + k] = x[k];
    for (int l = 0; l < nl; ++l) fp_tl_fwd_row(prog + l * FP_TL_COLS, P, A, 0);
    return A[prog[(nl - 1) * FP_TL_COLS + C_AOUT]];
}

__global__ void __launch_bounds__(128) fastpoly_sample_layers(
    fp_u64 seed, fp_u64 start, fp_u64 n, const int* __restrict__ prog, int nl, int alen,
    const float* __restrict__ pscale, const unsigned char* __restrict__ trunc, int mode, int n_params,
    const float* __restrict__ X, int n0, int nk, int nin, const unsigned char* __restrict__ labels, int W,
    int early_exit, fp_u64* __restrict__ out_keys, unsigned char* __restrict__ out_acc,
    float* __restrict__ out_marg, float* __restrict__ fscratch) {
    const fp_u64 tid = (fp_u64)blockIdx.x * blockDim.x + threadIdx.x;
    const fp_u64 nthreads = (fp_u64)gridDim.x * blockDim.x;
    float* P = fscratch + (long long)tid * ((long long)n_params + alen);
    float* A = P + n_params;
    for (fp_u64 s = tid; s < n; s += nthreads) {
        const fp_u64 idx = start + s;
        fp_sl_draw(seed, idx, mode, pscale, trunc, n_params, P);
        bool ok = true;
        float mg = __int_as_float(0x7F800000);
        for (int r = 0; r < n0; ++r) {
            const float z = fp_sl_forward(prog, nl, P, A, X + (long long)r * nin, nin);
            const float az = __int_as_float(__float_as_int(z) & 0x7FFFFFFF);  // |z| (+0 for -0)
            if (az < mg) mg = az;
            if ((z > 0.0f) != (labels[r] != 0)) {
                ok = false;
                if (early_exit) break;
            }
        }
        fp_u64* key = out_keys + (long long)s * W;
        for (int w = 0; w < W; ++w) key[w] = 0ull;
        if (ok || !early_exit)
            for (int r = 0; r < nk; ++r) {
                const float z = fp_sl_forward(prog, nl, P, A, X + (long long)(n0 + r) * nin, nin);
                const float az = __int_as_float(__float_as_int(z) & 0x7FFFFFFF);  // |z| (+0 for -0)
                if (az < mg) mg = az;
                if (z > 0.0f) key[r >> 6] |= 1ull << (r & 63);
            }
        out_acc[s] = ok ? 1 : 0;
        out_marg[s] = mg;
    }
}

// train_cnn.cu -- the generic layer-sequence P_SGD trainer (CNNs: conv2d, avg/max/global pooling,
// flatten, dense; relu, identity, tanh, erf or sigmoid), one thread per run, bit for bit fastpoly/sgd/reference.py and the
// Numba trainer fastpoly/backends/numba/train_cnn.py (NVRTC-compatible, no system headers).
//
// The network is a *program* (fastpoly.backends.numba.train_cnn.compile_program): one row of FP_TL_COLS
// ints per layer -- kind, input / output (H, W, C), kernel, stride, padding before (top, left),
// parameter offsets (W, b; -1: none), per-row sizes and the offsets of its input / output buffers.
// Thread t trains runs lo + t, lo + t + nthreads, ... from the initial parameters P0 (row s = run
// lo + s, drawn by the host with Architecture.draw_params), its scratch a slice of `fscratch`
// (P, G, S1, S2: n_params each; A, E: alen each) and of `iscratch` (perm: m, words: 4 * bpe).
//
// Arithmetic (every multiply-add an explicit fp_fma, every other operation a correctly rounded fp_*):
//   dense   z[j] = b[j] (or +0); z = fma(h[k], W[j,k], z), k ascending; gW = fma(d[r,j], h[r,k], gW) and
//           gb = gb + d[r,j] over rows r ascending; e[r,k] = 0, e = fma(d[r,j], W[j,k], e), j ascending
//   conv    the dense rule on patches (fan-in (kh, kw, c) row-major, padding zeros included as zeros),
//           gradients over patch rows (r, i, j) row-major; input error from 0, for (kh, kw) row-major
//           then f ascending: e[i*S+kh-pt, j*S+kw-pl, c] = fma(d[r,i,j,f], W[f,kh,kw,c], e) (padding dropped)
//   avgpool s = 0, s = s + x over (kh, kw) row-major, s / float(K*K); error d / float(K*K) to the window
//   maxpool first maximum in row-major order (strict >); the error goes to it
//   gap     s = s + x over (h, w) row-major from 0, s / float(H*W); error d / float(H*W) everywhere
//   relu    z < 0 ? 0 : z; error z > 0 ? e : 0.   flatten, identity: copies.
//   tanh, erf, sigmoid: fp_train_act; error fp_train_dact(z, e) from the pre-activation z (the layer's
//           input, kept in A).  The optimiser: fp_opt_step (every optimiser of the table; Adagrad's
//           accumulator starts at fp_opt_s1_init in every run).
#include "network.cuh"
#include "train.cuh"
#include "layers.cuh"  // program codes, columns, fp_tl_fwd_row


__device__ void fp_tl_bwd(const int* pr, const float* P, float* G, const float* A, float* E, int n, bool want_input) {
    const int kind = pr[C_KIND], isz = pr[C_ISZ], osz = pr[C_OSZ], ain = pr[C_AIN], aout = pr[C_AOUT];
    if (kind == FP_TL_DENSE) {
        const int wo = pr[C_WOFF], bo = pr[C_BOFF];
        for (long long p = 0; p < (long long)osz * isz; ++p) G[wo + p] = 0.0f;
        if (bo >= 0)
            for (int j = 0; j < osz; ++j) G[bo + j] = 0.0f;
        for (int r = 0; r < n; ++r) {
            const float* x = A + ain + (long long)r * isz;
            const float* d = E + aout + (long long)r * osz;
            for (int j = 0; j < osz; ++j) {
                float* g = G + wo + (long long)j * isz;
                for (int k = 0; k < isz; ++k) g[k] = fp_fma(d[j], x[k], g[k]);
                if (bo >= 0) G[bo + j] = fp_add(G[bo + j], d[j]);
            }
        }
        if (want_input)
            for (int r = 0; r < n; ++r) {
                float* e = E + ain + (long long)r * isz;
                const float* d = E + aout + (long long)r * osz;
                for (int k = 0; k < isz; ++k) e[k] = 0.0f;
                for (int j = 0; j < osz; ++j) {
                    const float* w = P + wo + (long long)j * isz;
                    for (int k = 0; k < isz; ++k) e[k] = fp_fma(d[j], w[k], e[k]);
                }
            }
    } else if (kind == FP_TL_CONV) {
        const int ih = pr[C_IH], iw = pr[C_IW], ic = pr[C_IC], oh = pr[C_OH], ow = pr[C_OW], nf = pr[C_OC];
        const int K = pr[C_K], S = pr[C_S], pt = pr[C_PT], pl = pr[C_PL], wo = pr[C_WOFF], bo = pr[C_BOFF];
        const int fan = K * K * ic;
        for (int p = 0; p < nf * fan; ++p) G[wo + p] = 0.0f;
        if (bo >= 0)
            for (int f = 0; f < nf; ++f) G[bo + f] = 0.0f;
        for (int r = 0; r < n; ++r) {
            const float* x = A + ain + (long long)r * isz;
            const float* dd = E + aout + (long long)r * osz;
            for (int i = 0; i < oh; ++i)
                for (int j = 0; j < ow; ++j)
                    for (int f = 0; f < nf; ++f) {
                        const float d = dd[(i * ow + j) * nf + f];
                        float* g = G + wo + f * fan;
                        for (int kh = 0; kh < K; ++kh) {
                            const int hh = i * S + kh - pt;
                            for (int kw = 0; kw < K; ++kw) {
                                const int ww = j * S + kw - pl;
                                const bool inb = hh >= 0 && hh < ih && ww >= 0 && ww < iw;
                                for (int c = 0; c < ic; ++c) {
                                    const float xv = inb ? x[(hh * iw + ww) * ic + c] : 0.0f;
                                    g[(kh * K + kw) * ic + c] = fp_fma(d, xv, g[(kh * K + kw) * ic + c]);
                                }
                            }
                        }
                        if (bo >= 0) G[bo + f] = fp_add(G[bo + f], d);
                    }
        }
        if (want_input)
            for (int r = 0; r < n; ++r) {
                float* e = E + ain + (long long)r * isz;
                const float* dd = E + aout + (long long)r * osz;
                for (int k = 0; k < isz; ++k) e[k] = 0.0f;
                for (int kh = 0; kh < K; ++kh)
                    for (int kw = 0; kw < K; ++kw)
                        for (int i = 0; i < oh; ++i) {
                            const int hh = i * S + kh - pt;
                            if (hh < 0 || hh >= ih) continue;
                            for (int j = 0; j < ow; ++j) {
                                const int ww = j * S + kw - pl;
                                if (ww < 0 || ww >= iw) continue;
                                float* e0 = e + (hh * iw + ww) * ic;
                                for (int f = 0; f < nf; ++f) {
                                    const float df = dd[(i * ow + j) * nf + f];
                                    const float* w = P + wo + ((f * K + kh) * K + kw) * ic;
                                    for (int c = 0; c < ic; ++c) e0[c] = fp_fma(df, w[c], e0[c]);
                                }
                            }
                        }
            }
    } else if (!want_input) {
        return;
    } else if (kind == FP_TL_AVG || kind == FP_TL_MAX) {
        const int iw = pr[C_IW], ic = pr[C_IC], oh = pr[C_OH], ow = pr[C_OW], K = pr[C_K];
        const float div = fp_i2f_exact(K * K);
        for (int r = 0; r < n; ++r) {
            const float* x = A + ain + (long long)r * isz;
            float* e = E + ain + (long long)r * isz;
            const float* dd = E + aout + (long long)r * osz;
            for (int k = 0; k < isz; ++k) e[k] = 0.0f;
            for (int i = 0; i < oh; ++i)
                for (int j = 0; j < ow; ++j)
                    for (int c = 0; c < ic; ++c) {
                        const float d = dd[(i * ow + j) * ic + c];
                        if (kind == FP_TL_AVG) {
                            const float v = fp_div(d, div);
                            for (int kh = 0; kh < K; ++kh)
                                for (int kw = 0; kw < K; ++kw) e[((i * K + kh) * iw + j * K + kw) * ic + c] = v;
                        } else {
                            int best = ((i * K) * iw + j * K) * ic + c;
                            float mx = x[best];
                            for (int kh = 0; kh < K; ++kh)
                                for (int kw = 0; kw < K; ++kw) {
                                    const int q = ((i * K + kh) * iw + j * K + kw) * ic + c;
                                    if (x[q] > mx) {
                                        mx = x[q];
                                        best = q;
                                    }
                                }
                            e[best] = d;
                        }
                    }
        }
    } else if (kind == FP_TL_GAP) {
        const int hw = pr[C_IH] * pr[C_IW], ic = pr[C_IC];
        const float div = fp_i2f_exact(hw);
        for (int r = 0; r < n; ++r) {
            float* e = E + ain + (long long)r * isz;
            const float* dd = E + aout + (long long)r * osz;
            for (int c = 0; c < ic; ++c) {
                const float v = fp_div(dd[c], div);
                for (int p = 0; p < hw; ++p) e[p * ic + c] = v;
            }
        }
    } else if (kind == FP_TL_RELU) {
        for (long long t = 0; t < (long long)n * isz; ++t) E[ain + t] = A[ain + t] > 0.0f ? E[aout + t] : 0.0f;
    } else if (kind >= FP_TL_TANH) {
        const int code = fp_tl_act_code(kind);
        for (long long t = 0; t < (long long)n * isz; ++t) E[ain + t] = fp_train_dact(code, A[ain + t], E[aout + t]);
    } else {
        for (long long t = 0; t < (long long)n * isz; ++t) E[ain + t] = E[aout + t];
    }
}

__device__ void fp_tl_forward(const int* prog, int nl, const float* P, float* A, int n) {
    for (int l = 0; l < nl; ++l)
        for (int r = 0; r < n; ++r) fp_tl_fwd_row(prog + l * FP_TL_COLS, P, A, r);
}

// The output on row `row` of X (flat rows of nin floats), through scratch row 0.
__device__ float fp_tl_logit(const int* prog, int nl, const float* P, float* A, const float* X, int row, int nin) {
    float* a0 = A + prog[C_AIN];
    for (int k = 0; k < nin; ++k) a0[k] = X[(long long)row * nin + k];
    fp_tl_forward(prog, nl, P, A, 1);
    return A[prog[(nl - 1) * FP_TL_COLS + C_AOUT]];
}

// Outputs per run s (index lo + s): keys/init_keys[s * W ..], status, first_fit, epochs, losses,
// params[s * n_params ..] when want_params.  fscratch: nthreads * (4 n_params + 2 alen) floats;
// iscratch: nthreads * (m + 4 bpe) ints (nthreads = gridDim.x * blockDim.x).
__global__ void __launch_bounds__(128) fastpoly_train_layers(
    fp_u64 seed, fp_u64 lo, fp_u64 n, const int* __restrict__ prog, int nl, int first_w, int alen,
    const float* __restrict__ P0, int n_params, const long long* __restrict__ rints,
    const float* __restrict__ rfloats, const float* __restrict__ Xtr, const float* __restrict__ ytr, int m,
    int nin, const float* __restrict__ Xkey, int nkey, long long leak_w, const long long* __restrict__ leak_E,
    const long long* __restrict__ leak_from, int W, fp_u64* __restrict__ keys, fp_u64* __restrict__ init_keys,
    signed char* __restrict__ status, int* __restrict__ first_fit, int* __restrict__ epochs,
    float* __restrict__ losses, float* __restrict__ params, int want_params, float* __restrict__ fscratch,
    int* __restrict__ iscratch) {
    const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long nthreads = (long long)gridDim.x * blockDim.x;
    const int bpe = fp_blocks_per_epoch(m);
    float* P = fscratch + tid * (4LL * n_params + 2LL * alen);
    float* G = P + n_params;
    float* S1 = G + n_params;
    float* S2 = S1 + n_params;
    float* A = S2 + n_params;
    float* E = A + alen;
    int* perm = iscratch + tid * (long long)(m + 4 * bpe);
    fp_u32* words = (fp_u32*)(perm + m);
    const int opt = (int)rints[FP_RI_OPTIMIZER], loss = (int)rints[FP_RI_LOSS];
    const int bsz = (int)rints[FP_RI_BATCH_SIZE], max_epochs = (int)rints[FP_RI_MAX_EPOCHS];
    const long long eaf0 = rints[FP_RI_EPOCHS_AFTER_FIT], min_ep0 = rints[FP_RI_MIN_EPOCHS];
    const fp_opt o = fp_opt_load(opt, (int)rints[FP_RI_NESTEROV], (int)rints[FP_RI_EPS_IN_SQRT], rfloats);
    const float thr = rfloats[FP_RF_FIT_THRESHOLD];
    const float s1_init = fp_opt_s1_init(o);
    const int B = bsz < m ? bsz : m;
    const int aout = prog[(nl - 1) * FP_TL_COLS + C_AOUT];
    const int a0 = prog[C_AIN];
    for (long long s = tid; s < (long long)n; s += nthreads) {
        const fp_u64 idx = lo + (fp_u64)s;
        for (int p = 0; p < n_params; ++p) {
            P[p] = P0[s * n_params + p];
            S1[p] = s1_init;
            S2[p] = 0.0f;
        }
        for (int w = 0; w < W; ++w) init_keys[s * W + w] = 0;
        for (int r = 0; r < nkey; ++r)
            if (fp_tl_logit(prog, nl, P, A, Xkey, r, nin) > 0.0f) init_keys[s * W + (r >> 6)] |= 1ull << (r & 63);
        long long min_ep = min_ep0, eaf = eaf0;
        if (leak_w > 0) {
            const long long wk = (long long)(idx % (fp_u64)leak_w);
            if ((long long)idx > leak_from[wk]) {
                const long long v = leak_E[wk] + eaf0;
                min_ep = min_ep > v ? min_ep : v;
                eaf = 0;
            }
        }
        float b1t = 1.0f, b2t = 1.0f, bc1 = 1.0f, bc2 = 1.0f;
        int ff = -1, st = FP_STATUS_FAILED, e = 0;
        bool fitted = false, stopped = false, diverged = false;
        while (e < max_epochs) {
            for (int jb = 0; jb < bpe; ++jb) {
                const fp_u32x4 w4 = fp_shuffle_block(seed, idx, e, bpe, jb);
                words[4 * jb] = w4.x;
                words[4 * jb + 1] = w4.y;
                words[4 * jb + 2] = w4.z;
                words[4 * jb + 3] = w4.w;
            }
            fp_fisher_yates(words, m, perm);
            e += 1;
            for (int a = 0; a < m; a += B) {
                const int nb = (m - a < B) ? m - a : B;
                const float nbf = fp_i2f_exact(nb);
                for (int r = 0; r < nb; ++r)
                    for (int k = 0; k < nin; ++k) A[a0 + r * nin + k] = Xtr[(long long)perm[a + r] * nin + k];
                fp_tl_forward(prog, nl, P, A, nb);
                for (int r = 0; r < nb; ++r) E[aout + r] = fp_loss_grad(loss, A[aout + r], ytr[perm[a + r]], nbf);
                for (int l = nl - 1; l >= first_w; --l) fp_tl_bwd(prog + l * FP_TL_COLS, P, G, A, E, nb, l > first_w);
                if (opt == FP_OPT_ADAM) {
                    b1t = fp_mul(b1t, o.b1);
                    b2t = fp_mul(b2t, o.b2);
                    bc1 = fp_sub(1.0f, b1t);
                    bc2 = fp_sub(1.0f, b2t);
                }
                for (int p = 0; p < n_params; ++p) P[p] = fp_opt_step(o, P[p], G[p], S1 + p, S2 + p, bc1, bc2);
            }
            // divergence: a parameter that is not finite ends the run (diverged, not fitted)
            for (int p = 0; p < n_params; ++p) diverged |= (__float_as_uint(P[p]) & 0x7f800000u) == 0x7f800000u;
            if (diverged) break;
            fitted = true;
            for (int r = 0; r < m; ++r)
                if ((fp_tl_logit(prog, nl, P, A, Xtr, r, nin) > thr) != (ytr[r] == 1.0f)) {
                    fitted = false;
                    break;
                }
            if (fitted && fp_stop_rule(e, &ff, eaf, min_ep)) {
                stopped = true;
                break;
            }
        }
        st = fp_run_status(diverged, stopped, fitted);
        float sl = 0.0f;
        for (int r = 0; r < m; ++r) sl = fp_loss_acc(loss, sl, fp_tl_logit(prog, nl, P, A, Xtr, r, nin), ytr[r]);
        losses[s] = fp_div(sl, fp_i2f_exact(m));
        if ((__float_as_uint(losses[s]) & 0x7f800000u) == 0x7f800000u) st = FP_STATUS_DIVERGED;  // final loss not finite
        for (int w = 0; w < W; ++w) keys[s * W + w] = 0;
        for (int r = 0; r < nkey; ++r)
            if (fp_tl_logit(prog, nl, P, A, Xkey, r, nin) > 0.0f) keys[s * W + (r >> 6)] |= 1ull << (r & 63);
        status[s] = (signed char)st;
        first_fit[s] = ff;
        epochs[s] = e;
        if (want_params)
            for (int p = 0; p < n_params; ++p) params[s * n_params + p] = P[p];
    }
}

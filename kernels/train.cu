// train.cu -- the P_SGD trainer: many small MLPs trained with SGD / momentum / Nesterov / Adam / Adagrad / RMSprop,
// one warp per run, bit for bit fastpoly/sgd/reference.py (NVRTC-compatible, no system headers).
//
// fastpoly_train (persistent grid; each warp takes the next run of start .. start+n-1 from an atomic
// queue `next_run`, zeroed by the host, so long runs do not hold up a static share of the others): run
// i = start + s starts from the parameters of sample i of the prior stream (Philox, Box--Muller:
// the sampler's bits, i.e. MLP.instantiate(seed, i)), records the function of the initialisation
// on the key rows, then per epoch e (0-based) shuffles the train points (exact Fisher--Yates from
// Philox counter word 1, train.cuh), trains on minibatches of B = min(batch_size, m) points (the
// last one may be smaller) and at the epoch end checks that every parameter is finite (else the
// run ends as diverged, status 3; so does a final train loss that is not finite) and the fit of
// all train points; it stops by
// the recipe's rule (or the leaked-callback rule, see fastpoly.sgd.plan.run_rule) or after
// max_epochs, and writes its per-run outputs: keys, init keys, status, first-fit epoch, epochs,
// final train loss and (optionally) the final parameters in MLP order.
//
// Arithmetic (docs/design.md#fma-rule): every multiply-add an explicit fp_fma, every other
// operation a correctly rounded fp_* operation, sums in the reference's order:
//   forward   z[r,j] = b[j]; z = fma(W[j,k], h[r,k], z) for k ascending
//   backprop  e[r,k] = 0;    e = fma(d[r,j], W[j,k], e) for j ascending (W before the update)
//   gradient  gW[j,k] = 0;   gW = fma(d[r,j], h[r,k], gW) for r ascending; gb = gb + d[r,j]
// Each lane owns whole outputs (q = lane + 32 i), so no reduction is ever split across lanes.
//
// State (nothing per step goes through global memory): the train set X / labels are copied once
// per block into shared memory; each warp owns a slice of dynamic shared memory (floats):
//   P      parameters, layer l: W_l row-major with an odd row stride ld_l (= fan_in | 1: the lanes
//          of the forward pass read 32 different rows, those of the back-propagation 32 different
//          columns, both without bank conflicts), then b_l
//   S1, S2 optimiser state at the offsets of P (momentum buffer, Adam m, Adagrad accumulator or RMSprop v;
//          Adam v or RMSprop momentum), if used
//   A_l    the input of layer l for RC rows (row-major, stride width_l); A_0 = the minibatch rows
//   Z_l    (tanh / erf / sigmoid only) the pre-activations of hidden layer l = 1 .. L-1, as A_l
//   OUT    the logits of RC rows
//   D, E   output errors of the current layer and of the layer below (maxh x B)
//   perm   the epoch's order (m ints), words: its Philox words (4 * blocks_per_epoch)
// The weight update is fused into the backward pass: layer l's error is back-propagated with the
// old W_l (then __syncwarp), then each lane computes the gradient of its weights and updates them
// with their optimiser state in place -- no gradient array.
// fastpoly/backends/cuda/train.py (train_layout) mirrors the layout; the host passes the floats per warp it
// allocated and the kernel reports a mismatch in its status word (below).
//
// Status word: next_run[1] (zeroed by the host with the queue word next_run[0]) receives the
// FP_TR_ERR_* bits of every guard that failed; the kernel then returns without training (no
// trap: on a GPU that is a sticky context error that fails every later call of the process)
// and the host turns a nonzero word into an exception (fastpoly.backends.cuda.source.check_status).
#include "activations.cuh"  // FP_ACT_* codes, generated from fastpoly.activations.TABLE
#include "network.cuh"
#include "train.cuh"

#define FP_TR_FULL 0xFFFFFFFFu
#define FP_TR_U 4  // independent accumulators per lane (instruction-level parallelism)
#define FP_TR_ERR_LAYERS 1ull   // layer count outside 1..FP_MAX_LAYERS
#define FP_TR_ERR_ACT 2ull      // an activation the trainer does not differentiate
#define FP_TR_ERR_OUTPUT 4ull   // more than one output
#define FP_TR_ERR_LAYOUT 8ull   // the host's rows_cap / per-warp floats do not fit the layout

struct fp_tr_net {
    int L, act, uniform, has_bias, n_in, n_params, m, B, RC, maxh, bpe, nkey, W;
    int widths[FP_MAX_LAYERS + 1];
    int wo[FP_MAX_LAYERS], bo[FP_MAX_LAYERS];  // MLP-order offsets (bo = -1 without biases)
    float ws[FP_MAX_LAYERS], bs[FP_MAX_LAYERS];
    int pw[FP_MAX_LAYERS], ld[FP_MAX_LAYERS], pb[FP_MAX_LAYERS], pa[FP_MAX_LAYERS], pz[FP_MAX_LAYERS];
    int np_pad, s1, s2, pout, pd, pe, pperm, pwords, total;
    int opt, loss, nesterov, max_epochs, eaf, min_epochs;
    float thr;
    fp_opt o;
};

FP_HD int fp_tr_align4(int v) { return (v + 3) & ~3; }

// The per-warp layout (mirrored by fastpoly.backends.cuda.train.train_layout).
FP_HD void fp_tr_layout(fp_tr_net& N) {
    int off = 0;
    N.maxh = 1;
    for (int l = 0; l < N.L; ++l) {
        const int fi = N.widths[l], fo = N.widths[l + 1];
        N.ld[l] = fi | 1;
        N.pw[l] = off;
        off += fo * N.ld[l];
        N.pb[l] = -1;
        if (N.has_bias) {
            N.pb[l] = off;
            off += fo;
        }
        if (fo > N.maxh) N.maxh = fo;
    }
    N.np_pad = fp_tr_align4(off);
    off = N.np_pad;
    N.s1 = N.s2 = -1;
    if (fp_opt_has_s1(N.o)) {
        N.s1 = off;
        off += N.np_pad;
    }
    if (fp_opt_has_s2(N.o)) {
        N.s2 = off;
        off += N.np_pad;
    }
    for (int l = 0; l < N.L; ++l) {
        N.pa[l] = off;
        off += fp_tr_align4(N.widths[l] * N.RC);
    }
    // a smooth activation keeps the pre-activations Z_l of the hidden layers l = 1 .. L-1
    for (int l = 0; l < N.L; ++l) {
        N.pz[l] = -1;
        if (l > 0 && fp_train_smooth(N.act)) {
            N.pz[l] = off;
            off += fp_tr_align4(N.widths[l] * N.RC);
        }
    }
    N.pout = off;
    off += fp_tr_align4(N.RC);
    N.pd = off;
    off += fp_tr_align4(N.maxh * N.B);
    N.pe = off;
    off += fp_tr_align4(N.maxh * N.B);
    N.pperm = off;
    off += fp_tr_align4(N.m);
    N.pwords = off;
    off += 4 * N.bpe;
    N.total = fp_tr_align4(off);
}

// Shared-memory slot and scale of parameter p (MLP order).
__device__ __forceinline__ int fp_tr_slot(const fp_tr_net& N, int p, float* scale) {
    for (int l = 0; l < N.L; ++l) {
        const int fi = N.widths[l], fo = N.widths[l + 1];
        if (p >= N.wo[l] && p < N.wo[l] + fo * fi) {
            const int q = p - N.wo[l];
            const int j = q / fi;
            *scale = N.ws[l];
            return N.pw[l] + j * N.ld[l] + (q - j * fi);
        }
        if (N.has_bias && p >= N.bo[l] && p < N.bo[l] + fo) {
            *scale = N.bs[l];
            return N.pb[l] + (p - N.bo[l]);
        }
    }
    *scale = 0.0f;
    return 0;
}

// Forward pass of the nr rows in A_0: A_1 .. A_{L-1} (activated), OUT (logits). Ends synchronised.
__device__ void fp_tr_forward(const fp_tr_net& N, float* sm, int nr, int lane) {
    for (int l = 0; l < N.L; ++l) {
        const int fi = N.widths[l], fo = N.widths[l + 1], ld = N.ld[l];
        const float* Wl = sm + N.pw[l];
        const float* hin = sm + N.pa[l];
        const bool last = (l == N.L - 1);
        const bool smooth = fp_train_smooth(N.act);
        float* hout = sm + (last ? N.pout : N.pa[l + 1]);
        const int total = nr * fo;
        for (int q0 = lane; q0 < total; q0 += 32 * FP_TR_U) {
            const float* wr[FP_TR_U];
            const float* hr[FP_TR_U];
            float z[FP_TR_U];
#pragma unroll
            for (int u = 0; u < FP_TR_U; ++u) {
                int q = q0 + 32 * u;
                q = q < total ? q : total - 1;
                const int r = q / fo, j = q - r * fo;
                wr[u] = Wl + j * ld;
                hr[u] = hin + r * fi;
                z[u] = N.has_bias ? sm[N.pb[l] + j] : 0.0f;
            }
            for (int k = 0; k < fi; ++k) {
#pragma unroll
                for (int u = 0; u < FP_TR_U; ++u) z[u] = fp_fma(wr[u][k], hr[u][k], z[u]);
            }
#pragma unroll
            for (int u = 0; u < FP_TR_U; ++u) {
                const int q = q0 + 32 * u;
                if (q < total) {
                    if (!last && smooth) sm[N.pz[l + 1] + q] = z[u];
                    hout[q] = last ? z[u] : fp_train_act(N.act, z[u]);
                }
            }
        }
        __syncwarp();
    }
}

// Rows c0 .. c0+nr-1 of src (row-major, n_in columns) through the network: logits in OUT.
__device__ void fp_tr_eval(const fp_tr_net& N, float* sm, const float* src, int c0, int nr, int lane) {
    float* A0 = sm + N.pa[0];
    const float* s = src + (long long)c0 * N.n_in;
    for (int t = lane; t < nr * N.n_in; t += 32) A0[t] = s[t];
    __syncwarp();
    fp_tr_forward(N, sm, nr, lane);
}

// The function on the key rows (output > 0), nkey bits in W uint64 words at key.
__device__ void fp_tr_key(const fp_tr_net& N, float* sm, const float* Xkey, fp_u64* key, int lane) {
    const float* out = sm + N.pout;
    if (lane == 0)
        for (int w = 0; w < N.W; ++w) key[w] = 0ull;
    for (int c0 = 0; c0 < N.nkey; c0 += N.RC) {
        const int nr = (N.nkey - c0 < N.RC) ? N.nkey - c0 : N.RC;
        fp_tr_eval(N, sm, Xkey, c0, nr, lane);
        for (int rr = 0; rr < nr; rr += 32) {
            const bool bit = (rr + lane < nr) && (out[rr + lane] > 0.0f);
            const fp_u32 bal = __ballot_sync(FP_TR_FULL, bit);
            if (lane == 0) {
                const int pos = c0 + rr, cnt = (nr - rr < 32) ? nr - rr : 32;
                const int w = pos >> 6, sh = pos & 63;
                key[w] |= (fp_u64)bal << sh;
                if (sh + cnt > 64) key[w + 1] |= (fp_u64)bal >> (64 - sh);
            }
        }
        __syncwarp();
    }
}

// Is a parameter not finite (inf or NaN: the run diverged)? Warp-uniform.
__device__ bool fp_tr_diverged(const fp_tr_net& N, const float* sm, int lane) {
    bool bad = false;
    for (int l = 0; l < N.L; ++l) {
        const int fi = N.widths[l], fo = N.widths[l + 1];
        for (int t = lane; t < fo * fi; t += 32) {
            const int j = t / fi;
            bad |= (__float_as_uint(sm[N.pw[l] + j * N.ld[l] + (t - j * fi)]) & 0x7f800000u) == 0x7f800000u;
        }
        if (N.has_bias)
            for (int t = lane; t < fo; t += 32) bad |= (__float_as_uint(sm[N.pb[l] + t]) & 0x7f800000u) == 0x7f800000u;
    }
    return __any_sync(FP_TR_FULL, bad);
}

// Does the network fit all train points ((logit > thr) == label)? Warp-uniform.
__device__ bool fp_tr_fits(const fp_tr_net& N, float* sm, const float* Xs, const float* ys, int lane) {
    const float* out = sm + N.pout;
    for (int c0 = 0; c0 < N.m; c0 += N.RC) {
        const int nr = (N.m - c0 < N.RC) ? N.m - c0 : N.RC;
        fp_tr_eval(N, sm, Xs, c0, nr, lane);
        bool bad = false;
        for (int r = lane; r < nr; r += 32) bad |= ((out[r] > N.thr) != (ys[c0 + r] == 1.0f));
        if (__any_sync(FP_TR_FULL, bad)) return false;
    }
    return true;
}

// Final train loss: s = 0; s = loss_acc(s, z_t, y_t) for t = 0 .. m-1; s / m (lane 0's value).
__device__ float fp_tr_train_loss(const fp_tr_net& N, float* sm, const float* Xs, const float* ys, int lane) {
    const float* out = sm + N.pout;
    float s = 0.0f;
    for (int c0 = 0; c0 < N.m; c0 += N.RC) {
        const int nr = (N.m - c0 < N.RC) ? N.m - c0 : N.RC;
        fp_tr_eval(N, sm, Xs, c0, nr, lane);
        if (lane == 0)
            for (int r = 0; r < nr; ++r) s = fp_loss_acc(N.loss, s, out[r], ys[c0 + r]);
        __syncwarp();
    }
    return fp_div(s, fp_i2f_exact(N.m));
}

// One optimiser step on minibatch rows perm[a .. a+nb-1] (A_0 loaded, forward done).
__device__ void fp_tr_backward(const fp_tr_net& N, float* sm, const float* ys, const int* perm, int a, int nb,
                               float bc1, float bc2, int lane) {
    const float nbf = fp_i2f_exact(nb);
    float* D = sm + N.pd;
    float* E = sm + N.pe;
    const float* out = sm + N.pout;
    for (int r = lane; r < nb; r += 32) D[r] = fp_loss_grad(N.loss, out[r], ys[perm[a + r]], nbf);
    __syncwarp();
    const bool relu = (N.act == FP_ACT_RELU);
    const bool smooth = fp_train_smooth(N.act);
    for (int l = N.L - 1; l >= 0; --l) {
        const int fi = N.widths[l], fo = N.widths[l + 1], ld = N.ld[l];
        float* Wl = sm + N.pw[l];
        const float* hin = sm + N.pa[l];
        const float* zin = sm + (N.pz[l] >= 0 ? N.pz[l] : N.pa[l]);
        // 1. back-propagate with the old W_l: E[r, k] = sum_j d[r, j] W[j, k], masked by relu'
        if (l > 0) {
            const int total = nb * fi;
            for (int q0 = lane; q0 < total; q0 += 32 * FP_TR_U) {
                const float* dr[FP_TR_U];
                const float* wc[FP_TR_U];
                float e[FP_TR_U];
#pragma unroll
                for (int u = 0; u < FP_TR_U; ++u) {
                    int q = q0 + 32 * u;
                    q = q < total ? q : total - 1;
                    const int r = q / fi, k = q - r * fi;
                    dr[u] = D + r * fo;
                    wc[u] = Wl + k;
                    e[u] = 0.0f;
                }
                for (int j = 0; j < fo; ++j) {
#pragma unroll
                    for (int u = 0; u < FP_TR_U; ++u) e[u] = fp_fma(dr[u][j], wc[u][j * ld], e[u]);
                }
#pragma unroll
                for (int u = 0; u < FP_TR_U; ++u) {
                    const int q = q0 + 32 * u;
                    if (q < total)
                        E[q] = smooth ? fp_train_dact(N.act, zin[q], e[u]) : ((!relu || hin[q] > 0.0f) ? e[u] : 0.0f);
                }
            }
            __syncwarp();
        }
        // 2. gradient of each weight and bias, and its update, in place
        const int nw = fo * fi;
        for (int q0 = lane; q0 < nw; q0 += 32 * FP_TR_U) {
            const float* dc[FP_TR_U];
            const float* hc[FP_TR_U];
            float g[FP_TR_U];
#pragma unroll
            for (int u = 0; u < FP_TR_U; ++u) {
                int q = q0 + 32 * u;
                q = q < nw ? q : nw - 1;
                const int j = q / fi, k = q - j * fi;
                dc[u] = D + j;
                hc[u] = hin + k;
                g[u] = 0.0f;
            }
            for (int r = 0; r < nb; ++r) {
#pragma unroll
                for (int u = 0; u < FP_TR_U; ++u) g[u] = fp_fma(dc[u][r * fo], hc[u][r * fi], g[u]);
            }
#pragma unroll
            for (int u = 0; u < FP_TR_U; ++u) {
                const int q = q0 + 32 * u;
                if (q < nw) {
                    const int j = q / fi;
                    const int x = N.pw[l] + j * ld + (q - j * fi);
                    float* s1 = sm + (N.s1 >= 0 ? N.s1 + x : x);
                    float* s2 = sm + (N.s2 >= 0 ? N.s2 + x : x);
                    sm[x] = fp_opt_step(N.o, sm[x], g[u], s1, s2, bc1, bc2);
                }
            }
        }
        if (N.has_bias) {
            for (int j = lane; j < fo; j += 32) {
                float gb = 0.0f;
                for (int r = 0; r < nb; ++r) gb = fp_add(gb, D[r * fo + j]);
                const int x = N.pb[l] + j;
                float* s1 = sm + (N.s1 >= 0 ? N.s1 + x : x);
                float* s2 = sm + (N.s2 >= 0 ? N.s2 + x : x);
                sm[x] = fp_opt_step(N.o, sm[x], gb, s1, s2, bc1, bc2);
            }
        }
        __syncwarp();
        float* t = D;
        D = E;
        E = t;
    }
}

// rints (int64, Recipe.ints()) and rfloats (float32, Recipe.floats()): laid out by fastpoly.model.optimizers
// (the FP_RI_* / FP_RF_* offsets of the generated optimizers.cuh)
// desc/scales: fastpoly.backends.cuda.source.net_desc. Xtr (m x n_in) / ytr (m): the train points in
// train order; Xkey (nkey x n_in): the key rows. leak_w > 0: the leaked-callback rule per worker.
// Outputs per run s (index start + s): keys/init_keys[s * W ..], status, first_fit, epochs, loss,
// params[s * n_params ..] when want_params. next_run: uint64[2], zero at the launch ([0] the run queue,
// [1] the status word).
__global__ void __launch_bounds__(256, 2) fastpoly_train(
    fp_u64 seed, fp_u64 start, fp_u64 n, const long long* __restrict__ desc, const float* __restrict__ scales,
    const long long* __restrict__ rints, const float* __restrict__ rfloats, const float* __restrict__ Xtr,
    const float* __restrict__ ytr, int m, const float* __restrict__ Xkey, int nkey, int rows_cap, int per_warp,
    long long leak_w, const long long* __restrict__ leak_E, const long long* __restrict__ leak_from,
    fp_u64* __restrict__ keys, fp_u64* __restrict__ init_keys, signed char* __restrict__ status,
    int* __restrict__ first_fit, int* __restrict__ epochs, float* __restrict__ losses, float* __restrict__ params,
    int want_params, fp_u64* __restrict__ next_run) {
    extern __shared__ __align__(16) float fp_smem[];
    __shared__ fp_tr_net s_net;
    __shared__ fp_u64 s_err;
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;

    if (threadIdx.x == 0) s_err = 0;
    if (threadIdx.x == 0) do {  // guards: a failed one sets s_err and leaves the block (after the barrier)
        fp_tr_net& N = s_net;
        const int L = (int)desc[0];
        if (L < 1 || L > FP_MAX_LAYERS) { s_err = FP_TR_ERR_LAYERS; break; }
        N.L = L;
        N.act = (int)desc[1];
        if (N.act < 0 || N.act > 31 || !((FP_ACTMASK_TRAIN >> N.act) & 1u)) { s_err = FP_TR_ERR_ACT; break; }
        N.uniform = (int)desc[2];
        N.has_bias = (int)desc[3];
        N.n_params = (int)desc[4];
        for (int l = 0; l <= L; ++l) N.widths[l] = (int)desc[5 + l];
        for (int l = 0; l < L; ++l) {
            N.wo[l] = (int)desc[6 + L + l];
            N.bo[l] = (int)desc[6 + 2 * L + l];
            N.ws[l] = scales[l];
            N.bs[l] = scales[L + l];
        }
        if (N.widths[L] != 1) { s_err = FP_TR_ERR_OUTPUT; break; }
        N.n_in = N.widths[0];
        N.opt = (int)rints[FP_RI_OPTIMIZER];
        N.loss = (int)rints[FP_RI_LOSS];
        N.nesterov = (int)rints[FP_RI_NESTEROV];
        const int bsz = (int)rints[FP_RI_BATCH_SIZE];
        N.max_epochs = (int)rints[FP_RI_MAX_EPOCHS];
        N.eaf = (int)rints[FP_RI_EPOCHS_AFTER_FIT];
        N.min_epochs = (int)rints[FP_RI_MIN_EPOCHS];
        N.thr = rfloats[FP_RF_FIT_THRESHOLD];
        N.o = fp_opt_load(N.opt, N.nesterov, (int)rints[FP_RI_EPS_IN_SQRT], rfloats);
        N.m = m;
        N.B = bsz < m ? bsz : m;
        N.RC = rows_cap;
        N.bpe = fp_blocks_per_epoch(m);
        N.nkey = nkey;
        N.W = (nkey + 63) >> 6;
        fp_tr_layout(N);
        if (N.RC < N.B || N.total > per_warp) { s_err = FP_TR_ERR_LAYOUT; break; }
    } while (0);
    __syncthreads();
    if (s_err) {  // read by every thread after the barrier: the whole block returns
        if (threadIdx.x == 0) atomicOr(&next_run[1], s_err);
        return;
    }
    // the train set, once per block
    const int xs_floats = fp_tr_align4(m * (int)desc[5] + m);
    float* Xs = fp_smem;
    float* ys = fp_smem + m * (int)desc[5];
    for (int t = threadIdx.x; t < m * (int)desc[5]; t += blockDim.x) Xs[t] = Xtr[t];
    for (int t = threadIdx.x; t < m; t += blockDim.x) ys[t] = ytr[t];
    __syncthreads();
    const fp_tr_net& N = s_net;
    float* sm = fp_smem + xs_floats + warp * per_warp;
    int* perm = (int*)(sm + N.pperm);
    fp_u32* words = (fp_u32*)(sm + N.pwords);

    for (;;) {
        // the next run from the launch's queue (run lengths vary from a few to max_epochs epochs)
        fp_u64 s = 0ull;
        if (lane == 0) s = atomicAdd(next_run, 1ull);
        s = __shfl_sync(FP_TR_FULL, s, 0);
        if (s >= n) break;
        const fp_u64 idx = start + s;
        // ---- initialisation: instantiate(seed, idx), fresh optimiser state ----
        const int nb4 = (N.n_params + 3) >> 2;
        for (int b = lane; b < nb4; b += 32) {
            float v[4];
            fp_block_draws(seed, idx, (fp_u32)b, N.uniform, v);
#pragma unroll
            for (int t = 0; t < 4; ++t) {
                const int p = 4 * b + t;
                if (p < N.n_params) {
                    float sc;
                    const int slot = fp_tr_slot(N, p, &sc);
                    sm[slot] = fp_mul(v[t], sc);
                }
            }
        }
        if (N.s1 >= 0) {
            const float s1_init = fp_opt_s1_init(N.o);
            for (int t = lane; t < N.np_pad; t += 32) sm[N.s1 + t] = s1_init;
        }
        if (N.s2 >= 0)
            for (int t = lane; t < N.np_pad; t += 32) sm[N.s2 + t] = 0.0f;
        __syncwarp();
        fp_tr_key(N, sm, Xkey, init_keys + s * (fp_u64)N.W, lane);

        // ---- the stopping rule of this run (fastpoly.sgd.plan.run_rule) ----
        long long min_ep = N.min_epochs, eaf = N.eaf;
        if (leak_w > 0) {
            const long long wk = (long long)(idx % (fp_u64)leak_w);
            if ((long long)idx > leak_from[wk]) {
                const long long v = leak_E[wk] + eaf;
                min_ep = min_ep > v ? min_ep : v;
                eaf = 0;
            }
        }

        // ---- training ----
        float b1t = 1.0f, b2t = 1.0f, bc1 = 1.0f, bc2 = 1.0f;
        int ff = -1, st = FP_STATUS_FAILED, e = 0;
        bool fitted = false, stopped = false, diverged = false;
        while (e < N.max_epochs) {
            for (int jb = lane; jb < N.bpe; jb += 32) {
                const fp_u32x4 w4 = fp_shuffle_block(seed, idx, e, N.bpe, jb);
                words[4 * jb] = w4.x;
                words[4 * jb + 1] = w4.y;
                words[4 * jb + 2] = w4.z;
                words[4 * jb + 3] = w4.w;
            }
            __syncwarp();
            if (lane == 0) fp_fisher_yates(words, N.m, perm);
            __syncwarp();
            e += 1;
            for (int a = 0; a < N.m; a += N.B) {
                const int nb = (N.m - a < N.B) ? N.m - a : N.B;
                float* A0 = sm + N.pa[0];
                for (int t = lane; t < nb * N.n_in; t += 32) {
                    const int r = t / N.n_in;
                    A0[t] = Xs[perm[a + r] * N.n_in + (t - r * N.n_in)];
                }
                __syncwarp();
                fp_tr_forward(N, sm, nb, lane);
                if (N.opt == FP_OPT_ADAM) {
                    b1t = fp_mul(b1t, N.o.b1);
                    b2t = fp_mul(b2t, N.o.b2);
                    bc1 = fp_sub(1.0f, b1t);
                    bc2 = fp_sub(1.0f, b2t);
                }
                fp_tr_backward(N, sm, ys, perm, a, nb, bc1, bc2, lane);
            }
            // divergence: a parameter that is not finite ends the run (diverged, not fitted)
            if (fp_tr_diverged(N, sm, lane)) {
                diverged = true;
                break;
            }
            fitted = fp_tr_fits(N, sm, Xs, ys, lane);
            if (fitted && fp_stop_rule(e, &ff, eaf, min_ep)) {
                stopped = true;
                break;
            }
        }
        st = fp_run_status(diverged, stopped, fitted);

        // ---- per-run outputs ----
        const float loss = fp_tr_train_loss(N, sm, Xs, ys, lane);
        if ((__float_as_uint(loss) & 0x7f800000u) == 0x7f800000u) st = FP_STATUS_DIVERGED;  // final loss not finite
        fp_tr_key(N, sm, Xkey, keys + s * (fp_u64)N.W, lane);
        if (lane == 0) {
            status[s] = (signed char)st;
            first_fit[s] = ff;
            epochs[s] = e;
            losses[s] = loss;
        }
        if (want_params) {
            for (int p = lane; p < N.n_params; p += 32) {
                float sc;
                params[s * (fp_u64)N.n_params + p] = sm[fp_tr_slot(N, p, &sc)];
            }
        }
        __syncwarp();
    }
}

// The trainers' float32 math on n values (tests: bit for bit fastpoly.stream.fmath_train on every backend):
// out[0..n) = exp, [n..2n) = sigmoid, [2n..3n) = softplus, [3n..4n) = log1p(|x|).
__global__ void __launch_bounds__(256) fastpoly_train_math(const float* __restrict__ x, float* __restrict__ out,
                                                           long long n) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        const float v = x[i];
        out[i] = fp_exp32(v);
        out[n + i] = fp_sigmoid32(v);
        out[2 * n + i] = fp_softplus32(v);
        out[3 * n + i] = fp_log1p32(fp_absf(v));
    }
}

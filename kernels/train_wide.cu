// train_wide.cu -- the tiled wide-MLP P_SGD trainer: one thread block per run, the minibatch products as
// shared-memory-tiled matrix products, bit for bit fastpoly/sgd/reference.py and the layer kernel
// kernels/train_cnn.cu (NVRTC-compatible, no system headers).
//
// The network is the layer program of fastpoly/backends/layer_program.py (compile_program(arch, B), B the
// minibatch rows) restricted to dense and elementwise layers (dense, relu, identity, tanh, erf, sigmoid,
// flatten).  Block b trains runs lo + b, lo + b + gridDim.x, ... (grid-stride); its 256 threads share the
// run.  Per-block scratch in global memory: `fscratch` (P, S1, S2: n_params each; A, E: alen each, the
// activations and errors of B rows) and `iscratch` (perm: m, words: 4 * bpe).  The initial parameters are
// drawn here, in parallel, by the stream of Architecture.draw_params (draw_mode 0 gaussian, 1 uniform:
// P[p] = fp_mul(draw p, pscale[p]); 2 truncated normal: one thread, the unit normals in order with the
// redraws of sample_layers.cu).
//
// Arithmetic: the contract of kernels/train_cnn.cu's header, unchanged.  The products of a dense layer
// (isz inputs, osz outputs, nb rows) are three tiled GEMMs, each output element ONE accumulator whose
// terms are added in the reference's order (tiling only splits independent sums over threads; no split-k,
// no tree reductions, no tensor cores / TF32):
//   forward      Z[r,j] = b[j] (or +0); Z = fp_fma(H[r,k], W[j,k], Z), k = 0, 1, ... ascending
//   input error  e[r,k] = +0;           e = fp_fma(d[r,j], W[j,k], e), j ascending   (layers l > first_w)
//   weights      G[j,k] = +0;           G = fp_fma(d[r,j], x[r,k], G), r ascending; bias gb = fp_add(gb, d[r,j])
// The weight gradient never leaves the registers: the GEMM's epilogue applies the optimiser step
// (fp_opt_step, elementwise, independent per parameter) to P[j,k] directly, after the layer's input
// error has read the old W (the reference computes every gradient first, then steps: the same values).
// Elementwise layers, the loss gradient, the divergence scan and the Philox shuffle words run in parallel
// over the block; Fisher--Yates, the final-loss sum (r ascending) and the key bits run on one thread.
// The fit check, the final loss and the key functions are forward passes of chunks of up to B rows
// (the scratch A holds B rows); the fit check stops after the first chunk with a miss.  Every control
// decision is block-uniform: each thread keeps its own copy of the run's counters, computed from the
// same values, and block-wide flags pass through shared memory between barriers.
//
// Tiling (TW_* below): output tiles of 128 x 64 (rows x columns of the product), 256 threads as 16 x 16,
// each thread 8 x 4 accumulators in registers (rows ty*4 .. +3 and 64 + ty*4 .. +3, columns tx*4 .. +3);
// k in chunks of 16 through shared memory (A chunk 16 x 128, B chunk 16 x 64, padded rows), read back
// as float4; two buffers of each (25.6 KB of static shared memory): the next chunk's global loads are
// held in registers while the current chunk is multiplied, one barrier per chunk.  Per k step a thread
// issues 3 shared loads (128-bit) for 32 FMAs.  Forward and input error run with the minibatch (B <= 128
// rows) as the row dimension, so each weight is read from global memory once per product; the weight
// gradient tiles (osz x isz) and reads the small B-row operands per tile.  __launch_bounds__(256, 2):
// 128 registers, two resident blocks per SM; the products (tw_gemm, not inlined) compile without spills
// for sm_80 / sm_90 (tests/cuda/test_cuda_compile.py); the kernel's control code keeps the block's
// pointers in shared memory (tw_block) and saves its few other live values around those calls (20-32
// bytes of local memory per thread, outside the products' loops).
// docs/guide/wide-networks.md estimates 40-60 % of the FP32 FMA roof (not measured yet).
#include "network.cuh"
#include "train.cuh"
#include "layers.cuh"  // program codes and columns, fp_tl_act_code

#define TW_THREADS 256
#define TW_TM 128  // rows of an output tile
#define TW_NJ 4    // columns of a thread's register tile (8 x 8 tiles spill under the 128-register cap)
#define TW_TN 64   // columns of an output tile (16 x TW_NJ)
#define TW_TK 16   // k per shared-memory chunk
#define TW_LDA (TW_TM + 4)
#define TW_LDB (TW_TN + 4)
#define TW_STORE 0  // epilogue: C[m * c_m + n] = acc
#define TW_OPT 1    // epilogue: P = C, fp_opt_step(P[i], acc, S1 + i, S2 + i), i = m * c_m + n

// A chunk of an operand: X(i0 + i, k0 + kk) (element (i, k) at X[i * s_i + k * s_k]) for i < ROWS,
// kk < TW_TK, zero outside ni x nk; thread t holds elements q = t + TW_THREADS * u (u < ROWS * TW_TK /
// TW_THREADS) in r[u].  Consecutive threads walk the contiguous direction of X (coalesced reads).
template <int ROWS, bool KC>
__device__ __forceinline__ void tw_fetch(float* r, const float* X, int s_i, int s_k, int i0, int ni, int k0, int nk) {
#pragma unroll
    for (int u = 0; u < ROWS * TW_TK / TW_THREADS; ++u) {
        const int q = threadIdx.x + TW_THREADS * u;
        const int kk = KC ? q % TW_TK : q / ROWS;
        const int i = KC ? q / TW_TK : q % ROWS;
        r[u] = (i < ni && kk < nk) ? X[(i0 + i) * s_i + (k0 + kk) * s_k] : 0.0f;
    }
}

// ... and into shared memory, transposed: S[kk * (ROWS + 4) + i].
template <int ROWS, bool KC>
__device__ __forceinline__ void tw_stash(float* S, const float* r) {
#pragma unroll
    for (int u = 0; u < ROWS * TW_TK / TW_THREADS; ++u) {
        const int q = threadIdx.x + TW_THREADS * u;
        const int kk = KC ? q % TW_TK : q / ROWS;
        const int i = KC ? q / TW_TK : q % ROWS;
        S[kk * (ROWS + 4) + i] = r[u];
    }
}

// Row i of a thread's register tile: ty * 4 + i, then 64 + ty * 4 + (i - 4); column j: tx * 4 + j.
__device__ __forceinline__ int tw_col(int tx, int j) { return j < 4 ? tx * 4 + j : 64 + tx * 4 + (j - 4); }

// One k step of the register tile: 8 x TW_NJ fused multiply-adds from row kk of the shared chunks.
__device__ __forceinline__ void tw_step(float (&acc)[8][TW_NJ], const float* As, const float* Bs, int kk, int tx,
                                        int ty) {
    const float4 a0 = *reinterpret_cast<const float4*>(As + kk * TW_LDA + ty * 4);
    const float4 a1 = *reinterpret_cast<const float4*>(As + kk * TW_LDA + 64 + ty * 4);
    const float4 b0 = *reinterpret_cast<const float4*>(Bs + kk * TW_LDB + tx * 4);
    const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
    const float b[TW_NJ] = {b0.x, b0.y, b0.z, b0.w};
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < TW_NJ; ++j) acc[i][j] = fp_fma(a[i], b[j], acc[i][j]);
}

// C(M x N) = init + A(M x K) B(N x K)^T, A(m, k) at A[m * a_m + k * a_k], B(n, k) at B[n * b_n + k * b_k]:
// acc(m, n) starts at bias[n] (bias != 0) or +0 and takes fp_fma(A(m, k), B(n, k), acc) for k = 0 .. K-1
// ascending (the padded k of a last chunk are skipped, not added as zeros: -0 + 0 would be +0).
// MODE TW_STORE writes acc to C[m * c_m + n]; TW_OPT steps the parameters C[m * c_m + n] with gradient
// acc (optimiser state S1, S2 at the same offsets).  AKC / BKC: a_k == 1 / b_k == 1 (the operand is
// contiguous along k; else along m / n).  Offsets inside an operand fit in int (n_params, alen < 2**31).
// A product with one row or one column (the output layer's, a one-row minibatch's) runs one output per
// thread, its sum in the same order, instead of a mostly empty tile.  Otherwise the k chunks are
// double-buffered: the global loads of chunk c + 1 are in flight (in registers) while chunk c is
// multiplied from shared memory; one barrier per chunk.  As, Bs: two chunks each.  Not inlined: its
// registers are its own (no spills), the caller saves what it keeps live.  Ends with a barrier (C is
// visible to the block).
template <int MODE, bool AKC, bool BKC>
__device__ __noinline__ void tw_gemm(int M, int N, int K, const float* A, int a_m, int a_k, const float* B, int b_n,
                                     int b_k, const float* bias, float* C, int c_m,
                                     float* S1, float* S2, const fp_opt* o, float bc1, float bc2, float* As,
                                     float* Bs) {
    if (M == 1 || N == 1) {  // a vector product (the output layer, a one-row minibatch): a thread per output
        for (int q = threadIdx.x; q < M * N; q += TW_THREADS) {
            const int m = q / N, n = q % N;
            float acc = bias != 0 ? bias[n] : 0.0f;
            for (int k = 0; k < K; ++k) acc = fp_fma(A[m * a_m + k * a_k], B[n * b_n + k * b_k], acc);
            const int c = m * c_m + n;
            if (MODE == TW_STORE) C[c] = acc;
            else C[c] = fp_opt_step(*o, C[c], acc, S1 + c, S2 + c, bc1, bc2);
        }
        __syncthreads();
        return;
    }
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int mt = (M + TW_TM - 1) / TW_TM, nt = (N + TW_TN - 1) / TW_TN;
    for (int t = 0; t < mt * nt; ++t) {
        const int m0 = (t / nt) * TW_TM, n0 = (t % nt) * TW_TN;
        float acc[8][TW_NJ];
#pragma unroll
        for (int j = 0; j < TW_NJ; ++j) {
            const int n = n0 + tw_col(tx, j);
            const float v = (bias != 0 && n < N) ? bias[n] : 0.0f;
#pragma unroll
            for (int i = 0; i < 8; ++i) acc[i][j] = v;
        }
        float ra[TW_TM * TW_TK / TW_THREADS], rb[TW_TN * TW_TK / TW_THREADS];
        tw_fetch<TW_TM, AKC>(ra, A, a_m, a_k, m0, M - m0, 0, K);
        tw_fetch<TW_TN, BKC>(rb, B, b_n, b_k, n0, N - n0, 0, K);
        // no barrier needed here: every chunk ends with one (the previous tile's reads are done), and
        // so does every product
        tw_stash<TW_TM, AKC>(As, ra);
        tw_stash<TW_TN, BKC>(Bs, rb);
        __syncthreads();
        int buf = 0;
        for (int k0 = 0; k0 < K; k0 += TW_TK) {
            const int kn = K - k0 < TW_TK ? K - k0 : TW_TK;
            const bool more = k0 + TW_TK < K;
            if (more) {  // the next chunk's loads, in flight during this chunk's products
                tw_fetch<TW_TM, AKC>(ra, A, a_m, a_k, m0, M - m0, k0 + TW_TK, K - k0 - TW_TK);
                tw_fetch<TW_TN, BKC>(rb, B, b_n, b_k, n0, N - n0, k0 + TW_TK, K - k0 - TW_TK);
            }
            const float* as = As + buf * (TW_TK * TW_LDA);
            const float* bs = Bs + buf * (TW_TK * TW_LDB);
            if (kn == TW_TK) {
#pragma unroll
                for (int kk = 0; kk < TW_TK; ++kk) tw_step(acc, as, bs, kk, tx, ty);
            } else {
                for (int kk = 0; kk < kn; ++kk) tw_step(acc, as, bs, kk, tx, ty);
            }
            if (more) {  // the other buffer was last read before the previous barrier
                tw_stash<TW_TM, AKC>(As + (buf ^ 1) * (TW_TK * TW_LDA), ra);
                tw_stash<TW_TN, BKC>(Bs + (buf ^ 1) * (TW_TK * TW_LDB), rb);
            }
            __syncthreads();
            buf ^= 1;
        }
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const int m = m0 + tw_col(ty, i);
            if (m >= M) continue;
#pragma unroll
            for (int j = 0; j < TW_NJ; ++j) {
                const int n = n0 + tw_col(tx, j);
                if (n >= N) continue;
                const int c = m * c_m + n;
                if (MODE == TW_STORE) C[c] = acc[i][j];
                else C[c] = fp_opt_step(*o, C[c], acc[i][j], S1 + c, S2 + c, bc1, bc2);
            }
        }
    }
    __syncthreads();
}

// The elementwise layers (relu, identity / flatten, tanh, erf, sigmoid) on tot values, over the block.
__device__ __noinline__ void tw_act_fwd(int kind, const float* x, float* y, long long tot) {
    if (kind == FP_TL_RELU) {
        for (long long t = threadIdx.x; t < tot; t += TW_THREADS) y[t] = x[t] < 0.0f ? 0.0f : x[t];
    } else if (kind >= FP_TL_TANH) {
        const int code = fp_tl_act_code(kind);
        for (long long t = threadIdx.x; t < tot; t += TW_THREADS) y[t] = fp_train_act(code, x[t]);
    } else {
        for (long long t = threadIdx.x; t < tot; t += TW_THREADS) y[t] = x[t];
    }
}

// Their error: ein from eout and the layer's input (pre-activation) z, as fp_tl_bwd of train_cnn.cu.
__device__ __noinline__ void tw_act_bwd(int kind, const float* z, float* ein, const float* eout, long long tot) {
    if (kind == FP_TL_RELU) {
        for (long long t = threadIdx.x; t < tot; t += TW_THREADS) ein[t] = z[t] > 0.0f ? eout[t] : 0.0f;
    } else if (kind >= FP_TL_TANH) {
        const int code = fp_tl_act_code(kind);
        for (long long t = threadIdx.x; t < tot; t += TW_THREADS) ein[t] = fp_train_dact(code, z[t], eout[t]);
    } else {
        for (long long t = threadIdx.x; t < tot; t += TW_THREADS) ein[t] = eout[t];
    }
}

// Bias gradient gb[j] = +0, gb = fp_add(gb, d[r,j]) over rows r ascending, then the optimiser step of b[j].
__device__ __noinline__ void tw_bias_step(const float* D, int nb, int osz, float* Pb, float* S1b, float* S2b,
                                          const fp_opt* o, float bc1, float bc2) {
    for (int j = threadIdx.x; j < osz; j += TW_THREADS) {
        float gb = 0.0f;
        for (int r = 0; r < nb; ++r) gb = fp_add(gb, D[(long long)r * osz + j]);
        Pb[j] = fp_opt_step(*o, Pb[j], gb, S1b + j, S2b + j, bc1, bc2);
    }
}

// d loss / d z of the nb rows of a minibatch (the logits z, the labels of rows perm[a ..]).
__device__ __noinline__ void tw_loss_grad(int loss, const float* z, float* d, const float* ytr, const int* perm,
                                          int nb, float nbf) {
    for (int r = threadIdx.x; r < nb; r += TW_THREADS) d[r] = fp_loss_grad(loss, z[r], ytr[perm[r]], nbf);
}

// The epoch's Philox shuffle words (in parallel), then Fisher--Yates on one thread; ends with a barrier.
__device__ __noinline__ void tw_shuffle(fp_u64 seed, fp_u64 idx, int e, int bpe, int m, fp_u32* words, int* perm) {
    for (int jb = threadIdx.x; jb < bpe; jb += TW_THREADS) {
        const fp_u32x4 w4 = fp_shuffle_block(seed, idx, e, bpe, jb);
        words[4 * jb] = w4.x;
        words[4 * jb + 1] = w4.y;
        words[4 * jb + 2] = w4.z;
        words[4 * jb + 3] = w4.w;
    }
    __syncthreads();
    if (threadIdx.x == 0) fp_fisher_yates(words, m, perm);
    __syncthreads();
}

// The initial parameters of run idx (the stream of Architecture.draw_params) and the optimiser state.
__device__ __noinline__ void tw_init(fp_u64 seed, fp_u64 idx, int draw_mode, const float* pscale,
                                     const unsigned char* trunc, int n_params, float* P, float* S1, float* S2,
                                     float s1_init) {
    if (draw_mode != 2) {
        for (long long b = threadIdx.x; b < ((long long)n_params + 3) / 4; b += TW_THREADS) {
            float v[4];
            fp_block_draws(seed, idx, (fp_u32)b, draw_mode == 1 ? 1 : 0, v);
            for (int q = 0; q < 4; ++q) {
                const long long p = 4 * b + q;
                if (p < n_params) P[p] = fp_mul(v[q], pscale[p]);
            }
        }
    } else if (threadIdx.x == 0) {  // truncated normals: the unit normals in order, |z| > 2 redrawn
        float v[4];
        long long q = 0, cb = -1;
        for (int p = 0; p < n_params; ++p) {
            float z;
            for (;;) {
                if ((q >> 2) != cb) {
                    cb = q >> 2;
                    fp_block_draws(seed, idx, (fp_u32)cb, 0, v);
                }
                z = v[q & 3];
                if (!trunc[p] || !(z > 2.0f || z < -2.0f)) break;
                ++q;
            }
            ++q;
            P[p] = fp_mul(z, pscale[p]);
        }
    }
    for (int p = threadIdx.x; p < n_params; p += TW_THREADS) {
        S1[p] = s1_init;
        S2[p] = 0.0f;
    }
}

// The forward pass of rows 0 .. nb-1 (inputs already in A at the first layer's input buffer).
__device__ void tw_forward(const int* prog, int nl, const float* P, float* A, int nb, float* As, float* Bs) {
    for (int l = 0; l < nl; ++l) {
        const int* pr = prog + l * FP_TL_COLS;
        const int kind = pr[C_KIND], isz = pr[C_ISZ], osz = pr[C_OSZ];
        const float* x = A + pr[C_AIN];
        float* y = A + pr[C_AOUT];
        if (kind == FP_TL_DENSE) {
            const int bo = pr[C_BOFF];
            tw_gemm<TW_STORE, true, true>(nb, osz, isz, x, isz, 1, P + pr[C_WOFF], isz, 1, bo >= 0 ? P + bo : 0, y,
                                          osz, 0, 0, 0, 1.0f, 1.0f, As, Bs);
        } else {
            tw_act_fwd(kind, x, y, (long long)nb * isz);
            __syncthreads();
        }
    }
}

// Rows r0 .. r0+nb-1 of X (nin floats each) into the first layer's input buffer, then the forward pass.
__device__ void tw_forward_rows(const int* prog, int nl, const float* P, float* A, const float* X, int r0, int nb,
                                int nin, float* As, float* Bs) {
    float* a0 = A + prog[C_AIN];
    for (long long t = threadIdx.x; t < (long long)nb * nin; t += TW_THREADS)
        a0[t] = X[(long long)r0 * nin + t];
    __syncthreads();
    tw_forward(prog, nl, P, A, nb, As, Bs);
}

// The key words of a run: bit r of the nkey rows of Xkey (output > 0), through chunks of B rows.
__device__ void tw_keys(const int* prog, int nl, const float* P, float* A, const float* Xkey, int nkey, int nin,
                        int B, int W, fp_u64* out, float* As, float* Bs) {
    const int aout = prog[(nl - 1) * FP_TL_COLS + C_AOUT];
    for (int w = threadIdx.x; w < W; w += TW_THREADS) out[w] = 0;
    for (int r0 = 0; r0 < nkey; r0 += B) {
        const int nb = nkey - r0 < B ? nkey - r0 : B;
        tw_forward_rows(prog, nl, P, A, Xkey, r0, nb, nin, As, Bs);
        if (threadIdx.x == 0)
            for (int r = 0; r < nb; ++r)
                if (A[aout + r] > 0.0f) out[(r0 + r) >> 6] |= 1ull << ((r0 + r) & 63);
        __syncthreads();  // the logits are read before the next chunk overwrites A
    }
}

// Does every train row's logit > thr equal its label?  Chunks of B rows in order; stops after the
// first chunk with a miss (the same answer).  Block-uniform result through *flag.
__device__ bool tw_fits(const int* prog, int nl, const float* P, float* A, const float* Xtr,
                                     const float* ytr, int m, int nin, int B, float thr, int* flag, float* As,
                                     float* Bs) {
    const int aout = prog[(nl - 1) * FP_TL_COLS + C_AOUT];
    bool fitted = true;
    for (int r0 = 0; r0 < m && fitted; r0 += B) {
        const int nb = m - r0 < B ? m - r0 : B;
        tw_forward_rows(prog, nl, P, A, Xtr, r0, nb, nin, As, Bs);
        if (threadIdx.x == 0) *flag = 0;
        __syncthreads();
        bool miss = false;
        for (int r = threadIdx.x; r < nb; r += TW_THREADS) miss |= (A[aout + r] > thr) != (ytr[r0 + r] == 1.0f);
        if (miss) atomicOr(flag, 1);
        __syncthreads();
        fitted = *flag == 0;
        __syncthreads();  // the flag is read before it is reset
    }
    return fitted;
}

// The train loss sum: sl = fp_loss_acc(loss, sl, z_r, y_r) for r = 0 .. m-1 in order, on thread 0 (the
// value is thread 0's; the other threads return 0).
__device__ float tw_loss_sum(const int* prog, int nl, const float* P, float* A, const float* Xtr,
                                          const float* ytr, int m, int nin, int B, int loss, float* As, float* Bs) {
    const int aout = prog[(nl - 1) * FP_TL_COLS + C_AOUT];
    float sl = 0.0f;
    for (int r0 = 0; r0 < m; r0 += B) {
        const int nb = m - r0 < B ? m - r0 : B;
        tw_forward_rows(prog, nl, P, A, Xtr, r0, nb, nin, As, Bs);
        if (threadIdx.x == 0)
            for (int r = 0; r < nb; ++r) sl = fp_loss_acc(loss, sl, A[aout + r], ytr[r0 + r]);
        __syncthreads();
    }
    return sl;
}

// The block's scratch pointers and derived sizes (shared memory, written once per block).
struct tw_block {
    float* P;
    float* S1;
    float* S2;
    float* A;
    float* E;
    int* perm;
    fp_u32* words;
    int bpe, B, aout, a0;
};

// Outputs per run s (index lo + s): keys/init_keys[s * W ..], status, first_fit, epochs, losses,
// params[s * n_params ..] when want_params.  fscratch: gridDim.x * (3 n_params + 2 alen) floats;
// iscratch: gridDim.x * (m + 4 bpe) ints.  blockDim.x must be TW_THREADS.
__global__ void __launch_bounds__(256, 2) fastpoly_train_wide(  // 256 = TW_THREADS
    fp_u64 seed, fp_u64 lo, fp_u64 n, const int* __restrict__ prog, int nl, int first_w, int alen,
    const float* __restrict__ pscale, const unsigned char* __restrict__ trunc, int draw_mode, int n_params,
    const long long* __restrict__ rints, const float* __restrict__ rfloats, const float* __restrict__ Xtr,
    const float* __restrict__ ytr, int m, int nin, const float* __restrict__ Xkey, int nkey, long long leak_w,
    const long long* __restrict__ leak_E, const long long* __restrict__ leak_from, int W,
    fp_u64* __restrict__ keys, fp_u64* __restrict__ init_keys, signed char* __restrict__ status,
    int* __restrict__ first_fit, int* __restrict__ epochs, float* __restrict__ losses, float* __restrict__ params,
    int want_params, float* __restrict__ fscratch, int* __restrict__ iscratch) {
    __shared__ __align__(16) float tw_as[2 * TW_TK * TW_LDA];
    __shared__ __align__(16) float tw_bs[2 * TW_TK * TW_LDB];
    __shared__ int tw_flag;
    __shared__ fp_opt tw_o;  // the optimiser's constants
    // block-invariant values, read back (volatile) where they are used rather than held in registers
    // across the products' calls
    __shared__ tw_block tw_g;
    const int tid = threadIdx.x;
    if (tid == 0) {
        const int bpe = fp_blocks_per_epoch(m);
        tw_g.P = fscratch + (long long)blockIdx.x * (3LL * n_params + 2LL * alen);
        tw_g.S1 = tw_g.P + n_params;
        tw_g.S2 = tw_g.S1 + n_params;
        tw_g.A = tw_g.S2 + n_params;
        tw_g.E = tw_g.A + alen;
        tw_g.perm = iscratch + (long long)blockIdx.x * (m + 4 * bpe);
        tw_g.words = (fp_u32*)(tw_g.perm + m);
        tw_g.bpe = bpe;
        const int bsz = (int)rints[FP_RI_BATCH_SIZE];
        tw_g.B = bsz < m ? bsz : m;
        tw_g.aout = prog[(nl - 1) * FP_TL_COLS + C_AOUT];
        tw_g.a0 = prog[C_AIN];
        tw_o = fp_opt_load((int)rints[FP_RI_OPTIMIZER], (int)rints[FP_RI_NESTEROV], (int)rints[FP_RI_EPS_IN_SQRT],
                           rfloats);
    }
    __syncthreads();
    const volatile tw_block& g = tw_g;
    for (long long s = blockIdx.x; s < (long long)n; s += gridDim.x) {
        tw_init(seed, lo + (fp_u64)s, draw_mode, pscale, trunc, n_params, g.P, g.S1, g.S2, fp_opt_s1_init(tw_o));
        __syncthreads();
        tw_keys(prog, nl, g.P, g.A, Xkey, nkey, nin, g.B, W, init_keys + s * W, tw_as, tw_bs);
        // the stopping rule's epochs as ints (clamped: an epoch count never exceeds max_epochs < 2**31)
        long long min_ep64 = rints[FP_RI_MIN_EPOCHS], eaf64 = rints[FP_RI_EPOCHS_AFTER_FIT];
        if (leak_w > 0) {
            const fp_u64 idx = lo + (fp_u64)s;
            const long long wk = (long long)(idx % (fp_u64)leak_w);
            if ((long long)idx > leak_from[wk]) {
                const long long v = leak_E[wk] + eaf64;
                min_ep64 = min_ep64 > v ? min_ep64 : v;
                eaf64 = 0;
            }
        }
        const int min_ep = min_ep64 < 0x7fffffffLL ? (int)min_ep64 : 0x7fffffff;
        const int eaf = eaf64 < 0x7fffffffLL ? (int)eaf64 : 0x7fffffff;
        float b1t = 1.0f, b2t = 1.0f, bc1 = 1.0f, bc2 = 1.0f;
        int ff = -1, st = FP_STATUS_FAILED, e = 0;
        bool fitted = false, stopped = false, diverged = false;
        while (e < (int)rints[FP_RI_MAX_EPOCHS]) {
            tw_shuffle(seed, lo + (fp_u64)s, e, g.bpe, m, g.words, g.perm);
            e += 1;
            for (int a = 0; a < m; a += g.B) {
                const int nb = (m - a < g.B) ? m - a : g.B;
                const float nbf = fp_i2f_exact(nb);
                {  // the minibatch's rows (the block's pointers read once for the loop)
                    float* a0 = g.A + g.a0;
                    const int* perm = g.perm + a;
                    for (long long t = tid; t < (long long)nb * nin; t += TW_THREADS) {
                        const int r = (int)(t / nin), k = (int)(t % nin);
                        a0[t] = Xtr[(long long)perm[r] * nin + k];
                    }
                }
                __syncthreads();
                tw_forward(prog, nl, g.P, g.A, nb, tw_as, tw_bs);
                tw_loss_grad((int)rints[FP_RI_LOSS], g.A + g.aout, g.E + g.aout, ytr, g.perm + a, nb, nbf);
                if (tw_o.kind == FP_OPT_ADAM) {  // every thread keeps the same bias corrections
                    b1t = fp_mul(b1t, tw_o.b1);
                    b2t = fp_mul(b2t, tw_o.b2);
                    bc1 = fp_sub(1.0f, b1t);
                    bc2 = fp_sub(1.0f, b2t);
                }
                __syncthreads();
                for (int l = nl - 1; l >= first_w; --l) {
                    const int* pr = prog + l * FP_TL_COLS;
                    const int kind = pr[C_KIND], isz = pr[C_ISZ], osz = pr[C_OSZ];
                    const int ain = pr[C_AIN], ao = pr[C_AOUT];
                    if (kind == FP_TL_DENSE) {
                        const int wo = pr[C_WOFF], bo = pr[C_BOFF];
                        if (l > first_w)  // input error from the old W (before this layer's step)
                            tw_gemm<TW_STORE, true, false>(nb, isz, osz, g.E + ao, osz, 1, g.P + wo, 1, isz, 0,
                                                           g.E + ain, isz, 0, 0, 0, 1.0f, 1.0f, tw_as, tw_bs);
                        if (bo >= 0)
                            tw_bias_step(g.E + ao, nb, osz, g.P + bo, g.S1 + bo, g.S2 + bo, &tw_o, bc1, bc2);
                        // weight gradient G[j,k] over the rows, stepped in the epilogue
                        tw_gemm<TW_OPT, false, false>(osz, isz, nb, g.E + ao, 1, osz, g.A + ain, 1, isz, 0, g.P + wo,
                                                      isz, g.S1 + wo, g.S2 + wo, &tw_o, bc1, bc2, tw_as, tw_bs);
                    } else if (l > first_w) {
                        tw_act_bwd(kind, g.A + ain, g.E + ain, g.E + ao, (long long)nb * isz);
                        __syncthreads();
                    }
                }
            }
            // divergence: a parameter that is not finite ends the run (diverged, not fitted)
            if (tid == 0) tw_flag = 0;
            __syncthreads();
            bool bad = false;
            const float* P = g.P;
            for (int p = tid; p < n_params; p += TW_THREADS)
                bad |= (__float_as_uint(P[p]) & 0x7f800000u) == 0x7f800000u;
            if (bad) atomicOr(&tw_flag, 1);
            __syncthreads();
            diverged = tw_flag != 0;
            __syncthreads();  // tw_flag is read before it is reset
            if (diverged) break;
            // fit check: every train row's logit > thr equals its label (chunks of B rows, stop at a miss)
            fitted = tw_fits(prog, nl, g.P, g.A, Xtr, ytr, m, nin, g.B, rfloats[FP_RF_FIT_THRESHOLD], &tw_flag, tw_as,
                             tw_bs);
            if (fitted && fp_stop_rule(e, &ff, eaf, min_ep)) {
                stopped = true;
                break;
            }
        }
        st = fp_run_status(diverged, stopped, fitted);
        // final loss: the rows' terms added in order r = 0 .. m-1 by one thread
        const float sl = tw_loss_sum(prog, nl, g.P, g.A, Xtr, ytr, m, nin, g.B, (int)rints[FP_RI_LOSS], tw_as,
                                     tw_bs);
        tw_keys(prog, nl, g.P, g.A, Xkey, nkey, nin, g.B, W, keys + s * W, tw_as, tw_bs);
        if (tid == 0) {
            const float ls = fp_div(sl, fp_i2f_exact(m));
            losses[s] = ls;
            if ((__float_as_uint(ls) & 0x7f800000u) == 0x7f800000u) st = FP_STATUS_DIVERGED;  // final loss not finite
            status[s] = (signed char)st;
            first_fit[s] = ff;
            epochs[s] = e;
        }
        if (want_params) {
            const float* P = g.P;
            for (int p = tid; p < n_params; p += TW_THREADS) params[s * (long long)n_params + p] = P[p];
        }
        __syncthreads();  // the scratch is reused by the block's next run
    }
}

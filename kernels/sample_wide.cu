// sample_wide.cu -- fastpoly's tiled sampler for wide MLPs: one thread block per sample (CUDA, NVRTC-compatible).
//
// fastpoly_sample_wide<MODE> draws the same samples as fastpoly_sample_generic<MODE> (sampler.cu) with
// the same bits -- same launch arguments up to the last one, same outputs, same stats words -- but one
// block of 256 threads works on one sample at a time (grid-stride loop over the samples of a launch),
// and each layer is computed as a matrix product
//
//     Z (fo x m) = b + W (fo x fi) H (fi x m),   H = the layer's input, row-major [k * m + row]
//
// over output tiles of TN = 64 neurons x TM = 128 rows:
//
//   * the block walks the neuron tiles j0 = 0, 64, ...; for each it generates the tile's weights of
//     k-segment [k0, k0 + kseg) on chip into shared memory (Philox + Box--Muller of fp_block_draws:
//     parameter p = woff + j * fi + k is fp_mul(draw p % 4 of block p / 4, wscale), the bits of
//     fp_param_value), stored k-major `ws[k * 64 + n]`, and the tile's biases;
//   * then every row tile r0 = 0, 128, ... of the segment reuses them: the input H[k0.., r0..] goes
//     through shared memory in chunks of KC = 16 k (coalesced loads), and each thread keeps a register
//     tile of 4 neurons x 8 rows (rows 4 tm .. 4 tm + 3 and 64 + 4 tm .. 64 + 4 tm + 3): per k one
//     broadcast float4 of weights and two float4 of inputs from shared memory feed 32 FMAs;
//   * a segment's partial sums are stored as float32 in the activation scratch and reloaded by the
//     same thread for the next segment (exact: a stored float32 sum continues bit for bit); the last
//     segment applies the hidden activation;
//   * a layer of at most FP_WIDE_NARROW = 8 neurons (the output layer) is not tiled: the 256 threads
//     take the rows, each computes its rows' sums neuron after neuron, the inputs read from global
//     memory (a 64-neuron tile would waste 63/64 of its FMAs on a single output neuron).
//
// Bit rule: each output element is one accumulator that starts at its bias (or +0.0f) and does
// z = fp_fma(w[j][k], h[k][row], z) for k = 0, 1, ... ascending, then fp_sampler_act on hidden
// layers: exactly the generic kernel's (and the reference's) arithmetic; no sum is split or reordered.
// The tiles only run independent sums side by side.
//
// After the last layer, warp 0 turns the outputs into the key, the rejection, the margin and the
// keys-mode outputs or the count-mode tally/append (fp_finish_sample of sampler_common.cuh, the code
// the generic kernel runs), so the host code that consumes the outputs is the same.
//
// scratch: per block `scratch_stride` floats = 2 activation buffers of maxw * m floats ([neuron * m + row])
// followed by 2 W 32-bit key slots (count-mode staging). Dynamic shared memory: kseg * 64 floats
// (kseg a positive multiple of 16). A launch whose block is not 256 threads or whose kseg is not a
// multiple of 16 sets FP_ERR_LAYOUT in the status word and draws nothing.
//
// Cost model (unmeasured; arithmetic only). Per k step a warp issues 32 FFMA and 3 LDS.128 (one a
// broadcast): 5 shared-memory wavefronts against 8 issue cycles of FFMA, so the products are
// FMA-bound, not shared-memory-bound. Global traffic per layer: the input H is read once per neuron
// tile (fo / 64 times), the partial sums twice per extra segment: ~32 FLOP per byte at fo = 1024,
// above an H100's balance (~18). What stays off the FMA units: drawing each weight once per sample
// (~60 instructions per parameter: Philox4x32-10, fixed-polynomial log/sincos, sqrt.rn), i.e. about
// 60 / m of the products (6 % at m = 1,000, 60 % at m = 100), padding of partial tiles (m = 100 in a
// 128-row tile: 22 %), the chunk loads and two barriers per 16 k. Expected: 50-70 % of the float32
// FMA roof for 784-1024-1024-1 on 1,000 rows, 30-40 % on 100 rows -- to be measured
// (bench/compare.py --gpu-only: 64-512-512-1 on 1,000 rows, wide against generic; run by ci/gpu-check.sh).
#include "sampler_common.cuh"  // network.cuh, modes, status word, tallies, fp_finish_sample

#define FP_WIDE_THREADS 256
#define FP_WIDE_TN 64   // neurons per output tile
#define FP_WIDE_TM 128  // rows per output tile
#define FP_WIDE_KC 16   // k per chunk of the layer input staged in shared memory
#define FP_WIDE_NARROW 8  // layers of at most this many neurons (the output layer) are not tiled

// One k step of a thread's register tile: 4 neurons x 8 rows, 32 independent FMAs.
__device__ __forceinline__ void fp_wide_step(float (&acc)[4][8], const float* wk, const float* hk, int tm) {
    const float4 w = *reinterpret_cast<const float4*>(wk);
    const float4 h0 = *reinterpret_cast<const float4*>(hk + 4 * tm);
    const float4 h1 = *reinterpret_cast<const float4*>(hk + 64 + 4 * tm);
    const float wv[4] = {w.x, w.y, w.z, w.w};
    const float hv[8] = {h0.x, h0.y, h0.z, h0.w, h1.x, h1.y, h1.z, h1.w};
#pragma unroll
    for (int a = 0; a < 4; ++a) {
#pragma unroll
        for (int b = 0; b < 8; ++b) acc[a][b] = fp_fma(wv[a], hv[b], acc[a][b]);
    }
}

// Inputs one thread stages per chunk: H[kbase + kk][row] for kk = hk, hk + 2, ..., hk + 14 (0 beyond the
// chunk's kn inputs or the m rows). 256 threads x 8 = one 16 x 128 chunk; a warp loads 32 consecutive rows.
#define FP_WIDE_STAGE (FP_WIDE_KC * FP_WIDE_TM / FP_WIDE_THREADS)
__device__ __forceinline__ void fp_wide_load(float (&pre)[FP_WIDE_STAGE], const float* hin, int kbase, int kn, int hk,
                                             int row, int m) {
#pragma unroll
    for (int q = 0; q < FP_WIDE_STAGE; ++q) {
        const int kk = hk + 2 * q;
        pre[q] = (kk < kn && row < m) ? hin[(long long)(kbase + kk) * m + row] : 0.0f;
    }
}

// Row (within the tile) of register column b of thread column tm.
__device__ __forceinline__ int fp_wide_row(int tm, int b) { return (b < 4) ? 4 * tm + b : 64 + 4 * tm + (b - 4); }

template <int MODE>
__global__ void __launch_bounds__(256, 2) fastpoly_sample_wide(
    fp_u64 seed, fp_u64 start, fp_u64 n, const long long* __restrict__ desc, const float* __restrict__ scales,
    const float* __restrict__ Xt, int m, int nkey, const unsigned char* __restrict__ labels,
    fp_u64* __restrict__ out_keys, unsigned char* __restrict__ out_acc, float* __restrict__ out_margin,
    fp_u64* __restrict__ buf_keys, fp_u64* __restrict__ buf_idx, fp_u64* __restrict__ stats,
    float* __restrict__ scratch, long long scratch_stride, int maxw, int kseg) {
    extern __shared__ __align__(16) float fp_smem[];  // weights of one neuron tile and k-segment: ws[k * TN + n]
    __shared__ __align__(16) float s_h[FP_WIDE_KC * FP_WIDE_TM];
    __shared__ float s_bias[FP_WIDE_TN];
    __shared__ fp_net_desc s_net;
    __shared__ fp_u64 s_tally[5];
    __shared__ fp_tally s_count;  // warp 0's count-mode tally (shared: no registers held across the products)

    const int tid = threadIdx.x;
    // guards: uniform over the block, so the whole block returns before any barrier
    if (desc[0] < 1 || desc[0] > FP_MAX_LAYERS) {  // fp_net_desc holds FP_MAX_LAYERS layers
        if (tid == 0) atomicOr(&stats[FP_STATUS_WORD], FP_ERR_LAYERS);
        return;
    }
    if (blockDim.x != FP_WIDE_THREADS || kseg < FP_WIDE_KC || kseg % FP_WIDE_KC != 0) {
        if (tid == 0) atomicOr(&stats[FP_STATUS_WORD], FP_ERR_LAYOUT);
        return;
    }
    if (tid == 0) fp_net_load(desc, scales, &s_net);
    __syncthreads();
    const fp_net_desc& d = s_net;

    const int lane = tid & 31;
    const int tn = tid >> 4;  // neurons 4 tn .. 4 tn + 3 of the tile
    const int tm = tid & 15;  // rows fp_wide_row(tm, 0..7) of the tile
    float* ws = fp_smem;
    float* bufA = scratch + (long long)blockIdx.x * scratch_stride;
    float* bufB = bufA + (long long)maxw * m;
    fp_u32* stage = reinterpret_cast<fp_u32*>(bufA + 2LL * maxw * m);

    if (tid == 0) fp_tally_init(s_count);
    if (MODE == FP_MODE_COUNT) fp_tally_smem_init(s_tally);  // (a barrier before anyone reads s_count)

    for (fp_u64 s = blockIdx.x; s < n; s += gridDim.x) {
        const fp_u64 idx = start + s;
        const float* hin = Xt;
        float* hout = bufA;
        for (int l = 0; l < d.n_layers; ++l) {
            const int fi = d.widths[l], fo = d.widths[l + 1];
            const bool last = (l == d.n_layers - 1);
            const long long woff = d.woff[l];
            const float wsc = d.wscale[l];
            hout = (l & 1) ? bufB : bufA;
            for (int j0 = 0; j0 < fo; j0 += FP_WIDE_TN) {
                for (int k0 = 0; k0 < fi; k0 += kseg) {
                    const int ks = (fi - k0 < kseg) ? fi - k0 : kseg;
                    const bool fin = (k0 + ks >= fi);
                    // ---- weights of neurons j0.. (k in [k0, k0 + ks)) and biases -> shared memory ----
                    __syncthreads();  // nobody reads ws / s_bias any more; the previous layer's outputs are visible
                    const int nbj = ((ks + 3) >> 2) + 1;  // Philox blocks one neuron's range can touch
                    for (int it = tid; it < nbj * FP_WIDE_TN; it += FP_WIDE_THREADS) {
                        const int nn = it % FP_WIDE_TN;  // consecutive threads: consecutive neurons (no bank conflicts)
                        const int j = j0 + nn;
                        if (j >= fo) continue;
                        const long long p0 = woff + (long long)j * fi + k0;
                        const long long b = (p0 >> 2) + it / FP_WIDE_TN;
                        if (4 * b > p0 + ks - 1) continue;
                        float v[4];
                        fp_block_draws(seed, idx, (fp_u32)b, d.uniform, v);
#pragma unroll
                        for (int t = 0; t < 4; ++t) {
                            const long long p = 4 * b + t;
                            if (p >= p0 && p < p0 + ks) ws[(int)(p - p0) * FP_WIDE_TN + nn] = fp_mul(v[t], wsc);
                        }
                    }
                    if (k0 == 0 && tid < FP_WIDE_TN) {
                        const int j = j0 + tid;
                        s_bias[tid] = (d.has_bias && j < fo)
                                          ? fp_param_value(seed, idx, d.uniform, d.boff[l] + j, d.bscale[l])
                                          : 0.0f;
                    }
                    __syncthreads();
                    // ---- every row tile of the segment: Z[j0.., r0..] (+)= W[j0.., k0..] H[k0.., r0..] ----
                    if (fo <= FP_WIDE_NARROW) {
                        // a narrow layer (the output): threads over rows, the fo neurons in turn; each sum
                        // reads its inputs from global memory (coalesced over rows), k ascending
                        for (int jn = 0; jn < fo; ++jn) {
                            for (int row = tid; row < m; row += FP_WIDE_THREADS) {
                                float z = (k0 == 0) ? s_bias[jn] : hout[(long long)jn * m + row];
                                const float* h = hin + (long long)k0 * m + row;
                                for (int k = 0; k < ks; ++k) z = fp_fma(ws[k * FP_WIDE_TN + jn], h[(long long)k * m], z);
                                if (fin && !last) z = fp_sampler_act(d.act, z);
                                hout[(long long)jn * m + row] = z;
                            }
                        }
                        continue;
                    }
                    for (int r0 = 0; r0 < m; r0 += FP_WIDE_TM) {
                        float acc[4][8];
#pragma unroll
                        for (int a = 0; a < 4; ++a) {
                            const int j = j0 + 4 * tn + a;
#pragma unroll
                            for (int b = 0; b < 8; ++b) {
                                const int row = r0 + fp_wide_row(tm, b);
                                acc[a][b] = (k0 == 0) ? s_bias[4 * tn + a]
                                                      : ((j < fo && row < m) ? hout[(long long)j * m + row] : 0.0f);
                            }
                        }
                        // staged input: thread tid moves H[k][r0 + hr] for k = hk, hk + 2, ... of each chunk; the
                        // next chunk's loads are issued before the current chunk's FMAs (register prefetch)
                        const int hr = tid % FP_WIDE_TM, hk = tid / FP_WIDE_TM;
                        float pre[FP_WIDE_STAGE];
                        fp_wide_load(pre, hin, k0, (ks < FP_WIDE_KC) ? ks : FP_WIDE_KC, hk, r0 + hr, m);
                        for (int kc = 0; kc < ks; kc += FP_WIDE_KC) {
                            const int kn = (ks - kc < FP_WIDE_KC) ? ks - kc : FP_WIDE_KC;
                            __syncthreads();  // s_h is free
#pragma unroll
                            for (int q = 0; q < FP_WIDE_STAGE; ++q) s_h[(hk + 2 * q) * FP_WIDE_TM + hr] = pre[q];
                            __syncthreads();
                            if (kc + FP_WIDE_KC < ks) {
                                const int kn2 = (ks - kc - FP_WIDE_KC < FP_WIDE_KC) ? ks - kc - FP_WIDE_KC : FP_WIDE_KC;
                                fp_wide_load(pre, hin, k0 + kc + FP_WIDE_KC, kn2, hk, r0 + hr, m);
                            }
                            const float* wk = ws + kc * FP_WIDE_TN + 4 * tn;
                            if (j0 + 4 * tn >= fo) {
                                // none of this thread's neurons exists (a partial last tile): no FMAs
                            } else if (kn == FP_WIDE_KC) {
#pragma unroll
                                for (int kk = 0; kk < FP_WIDE_KC; ++kk)
                                    fp_wide_step(acc, wk + kk * FP_WIDE_TN, s_h + kk * FP_WIDE_TM, tm);
                            } else {
                                for (int kk = 0; kk < kn; ++kk)
                                    fp_wide_step(acc, wk + kk * FP_WIDE_TN, s_h + kk * FP_WIDE_TM, tm);
                            }
                        }
#pragma unroll
                        for (int a = 0; a < 4; ++a) {
                            const int j = j0 + 4 * tn + a;
#pragma unroll
                            for (int b = 0; b < 8; ++b) {
                                const int row = r0 + fp_wide_row(tm, b);
                                if (j < fo && row < m) {
                                    float z = acc[a][b];
                                    if (fin && !last) z = fp_sampler_act(d.act, z);
                                    hout[(long long)j * m + row] = z;
                                }
                            }
                        }
                    }
                }
            }
            hin = hout;
        }
        __syncthreads();  // every output row written and visible
        if (tid < 32) {  // hout[row] (neuron 0 of the last layer): key, rejection, margin / tally
            fp_tally tally;
            fp_tally_init(tally);
            if (MODE == FP_MODE_COUNT) tally = s_count;
            fp_finish_sample<MODE>(hout, m, nkey, labels, s, idx, out_keys, out_acc, out_margin, buf_keys, buf_idx,
                                   stats, stage, tally, lane);
            __syncwarp();
            if (MODE == FP_MODE_COUNT && lane == 0) s_count = tally;
        }
        __syncthreads();  // warp 0 is done with hout, stage and s_count before the next sample
    }
    if (MODE == FP_MODE_COUNT) {
        fp_tally tally;
        fp_tally_init(tally);
        if (tid < 32) tally = s_count;
        fp_tally_flush(tally, s_tally, stats, lane);  // lane 0 of each warp: only warp 0's is nonzero
    }
}

#ifdef FASTPOLY_NVCC_CHECK
// Explicit instantiations for the offline compile check (ci/nvcc-check.sh); the backend instantiates
// them through NVRTC name expressions.
template __global__ void fastpoly_sample_wide<FP_MODE_COUNT>(fp_u64, fp_u64, fp_u64, const long long*, const float*,
                                                             const float*, int, int, const unsigned char*, fp_u64*,
                                                             unsigned char*, float*, fp_u64*, fp_u64*, fp_u64*,
                                                             float*, long long, int, int);
template __global__ void fastpoly_sample_wide<FP_MODE_KEYS>(fp_u64, fp_u64, fp_u64, const long long*, const float*,
                                                            const float*, int, int, const unsigned char*, fp_u64*,
                                                            unsigned char*, float*, fp_u64*, fp_u64*, fp_u64*,
                                                            float*, long long, int, int);
#endif

// sampler.cu -- fastpoly's fused random-network sampler (CUDA, NVRTC-compatible).
//
// One warp draws one sample at a time (persistent grid, warp-stride loop over
// the samples of a launch). The warp generates the sample's parameters on chip
// (Philox4x32-10 + fixed-polynomial Box--Muller, fp_math.cuh) into its slice of
// shared memory -- they are never written to global memory -- runs the forward
// pass over all input rows (lane = row, R rows per lane), gathers the output
// signs with warp ballots into the key, rejects samples that disagree with the
// train labels and either
//   MODE 0 (keys):  writes key, accepted flag and margin of every sample, or
//   MODE 1 (count): tallies the two constant functions (all-zero and all-one
//                   keys) in registers, then per block in shared memory, and
//                   only then with one global atomic per block; every other
//                   accepted key is appended (key, sample index) to a buffer
//                   that the host sorts and run-length encodes on the GPU.
//
// Rows are permuted by the host: the plan's key rows first (ascending), then
// the train rows, whose labels are `labels[row - nkey]`. Key bit i = output
// on key row i; 32-bit slot t of a key = rows 32t..32t+31 (little-endian
// halves of the uint64 words). X is passed transposed: Xt[k * m + row].
//
// stats (uint64[7], zeroed by the host except [4], [5] = ~0; both modes get it):
//   [0] appended keys  [1] accepted samples  [2] count of the all-zero key
//   [3] count of the all-one key  [4] first index of the all-zero key
//   [5] first index of the all-one key  [6] status word: 0, or FP_ERR_* bits of a
//   guard that failed -- the kernel then returns without drawing (no trap: on a
//   GPU a trap is a sticky context error that fails every later call of the process);
//   the host turns a nonzero word into an exception.
//
// Kernels:
//   fastpoly_sample_fixed<N0, H1, H2, R, ACT, MODE>: N0-H1-H2-1 networks on
//       m <= 32 R rows, sizes as template parameters (registers hold the
//       first hidden layer for R rows), parameters in shared memory.
//   fastpoly_sample_generic<MODE>: any depth (<= FP_MAX_LAYERS), widths and m;
//       activations in a global scratch area per warp, weights generated row
//       by row in chunks into shared memory.
#include "sampler_common.cuh"  // modes, status word, tallies, fp_finish_sample

template <int V>
struct fp_align4 {
    static constexpr int value = (V + 3) & ~3;
};

// ---------------------------------------------------------------------------------------
// Specialised sampler: N0-H1-H2-1, m <= 32 R rows, one warp per sample.
// ---------------------------------------------------------------------------------------
template <int N0, int H1, int H2>
struct fp_fixed_layout {
    static constexpr int W1 = 0;
    static constexpr int B1 = fp_align4<W1 + N0 * H1>::value;
    static constexpr int W2 = fp_align4<B1 + H1>::value;
    static constexpr int B2 = fp_align4<W2 + H1 * H2>::value;
    static constexpr int W3 = fp_align4<B2 + H2>::value;
    static constexpr int B3 = fp_align4<W3 + H2>::value;
    static constexpr int TOTAL = fp_align4<B3 + 1>::value;  // floats per warp
};

// Smooth activations (float64 tanh/erf, ~100 instructions each) are called, not inlined:
// inlined into the fully unrolled first layer they cost 255 registers and spills.
template <int ACT>
__device__ __noinline__ float fp_act_call(float z) {
    return fp_sampler_act(ACT, z);
}
template <int ACT>
__device__ __forceinline__ float fp_act_t(float z) {
    if constexpr (ACT == FP_ACT_TANH || ACT == FP_ACT_ERF) return fp_act_call<ACT>(z);
    else return fp_sampler_act(ACT, z);
}

template <int N0, int H1, int H2, int R, int ACT, int MODE>
__global__ void __launch_bounds__(128) fastpoly_sample_fixed(
    fp_u64 seed, fp_u64 start, fp_u64 n, const long long* __restrict__ desc, const float* __restrict__ scales,
    const float* __restrict__ Xt, int m, int nkey, const unsigned char* __restrict__ labels,
    fp_u64* __restrict__ out_keys, unsigned char* __restrict__ out_acc, float* __restrict__ out_margin,
    fp_u64* __restrict__ buf_keys, fp_u64* __restrict__ buf_idx, fp_u64* __restrict__ stats) {
    typedef fp_fixed_layout<N0, H1, H2> LAY;
    constexpr int NSLOT = R;                // 32-bit key slots computed
    constexpr int WMAX = (R + 1) / 2;       // uint64 words at most
    extern __shared__ __align__(16) float fp_smem[];
    __shared__ fp_u64 s_tally[5];

    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    float* sm = fp_smem + warp * LAY::TOTAL;
    const fp_u64 gwarp = ((fp_u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const fp_u64 nwarps = ((fp_u64)gridDim.x * blockDim.x) >> 5;

    // network description (3 layers by construction; anything else is a host bug: report it, draw nothing;
    // the condition is the same for every thread, so the whole block returns before any barrier)
    if (desc[0] != 3) {
        if (threadIdx.x == 0) atomicOr(&stats[FP_STATUS_WORD], FP_ERR_LAYERS);
        return;
    }
    const int uniform = (int)desc[2];
    const int has_bias = (int)desc[3];
    const int n_params = (int)desc[4];
    const int wo0 = (int)desc[9], wo1 = (int)desc[10], wo2 = (int)desc[11];
    const int bo0 = (int)desc[12], bo1 = (int)desc[13], bo2 = (int)desc[14];
    const float ws0 = scales[0], ws1 = scales[1], ws2 = scales[2];
    const float bs0 = scales[3], bs1 = scales[4], bs2 = scales[5];
    const int W = (nkey + 63) >> 6;

    fp_tally tally;
    fp_tally_init(tally);
    if (MODE == FP_MODE_COUNT) fp_tally_smem_init(s_tally);

    for (fp_u64 s = gwarp; s < n; s += nwarps) {
        const fp_u64 idx = start + s;
        // ---- parameters -> shared memory (never global) ----
        __syncwarp();
        if (!has_bias) {
            for (int i = lane; i < H1; i += 32) sm[LAY::B1 + i] = 0.0f;
            for (int i = lane; i < H2; i += 32) sm[LAY::B2 + i] = 0.0f;
            if (lane == 0) sm[LAY::B3] = 0.0f;
        }
        const int nb = (n_params + 3) >> 2;
        for (int b = lane; b < nb; b += 32) {
            float v[4];
            fp_block_draws(seed, idx, (fp_u32)b, uniform, v);
#pragma unroll
            for (int t = 0; t < 4; ++t) {
                const int p = 4 * b + t;
                int slot = -1;
                float sc = 0.0f;
                if (p >= wo0 && p < wo0 + N0 * H1) {
                    slot = LAY::W1 + (p - wo0);
                    sc = ws0;
                } else if (p >= wo1 && p < wo1 + H1 * H2) {
                    slot = LAY::W2 + (p - wo1);
                    sc = ws1;
                } else if (p >= wo2 && p < wo2 + H2) {
                    slot = LAY::W3 + (p - wo2);
                    sc = ws2;
                } else if (has_bias) {
                    if (p >= bo0 && p < bo0 + H1) {
                        slot = LAY::B1 + (p - bo0);
                        sc = bs0;
                    } else if (p >= bo1 && p < bo1 + H2) {
                        slot = LAY::B2 + (p - bo1);
                        sc = bs1;
                    } else if (p == bo2) {
                        slot = LAY::B3;
                        sc = bs2;
                    }
                }
                if (slot >= 0) sm[slot] = fp_mul(v[t], sc);
            }
        }
        __syncwarp();

        // ---- layer 1: h1[r][j] for rows lane + 32 r ----
        float x[R][N0];
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int row = lane + 32 * r;
#pragma unroll
            for (int k = 0; k < N0; ++k) x[r][k] = (row < m) ? Xt[(long long)k * m + row] : 0.0f;
        }
        float h1[R][H1];
#pragma unroll
        for (int j = 0; j < H1; ++j) {
            float wj[N0];
#pragma unroll
            for (int k = 0; k < N0; ++k) wj[k] = sm[LAY::W1 + j * N0 + k];
            const float bj = sm[LAY::B1 + j];
#pragma unroll
            for (int r = 0; r < R; ++r) {
                float z = bj;
#pragma unroll
                for (int k = 0; k < N0; ++k) z = fp_fma(wj[k], x[r][k], z);
                h1[r][j] = fp_act_t<ACT>(z);
            }
        }

        // ---- layers 2 and 3 (output accumulated as layer 2 neurons finish, j ascending) ----
        float z3[R];
        {
            const float b3 = sm[LAY::B3];
#pragma unroll
            for (int r = 0; r < R; ++r) z3[r] = b3;
        }
#pragma unroll 1
        for (int j = 0; j < H2; ++j) {
            const float* wr = sm + LAY::W2 + j * H1;
            float a[R];
            const float bj = sm[LAY::B2 + j];
#pragma unroll
            for (int r = 0; r < R; ++r) a[r] = bj;
            if constexpr (H1 % 4 == 0) {
#pragma unroll
                for (int k = 0; k < H1; k += 4) {
                    const float4 w = *reinterpret_cast<const float4*>(wr + k);
#pragma unroll
                    for (int r = 0; r < R; ++r) {
                        a[r] = fp_fma(w.x, h1[r][k], a[r]);
                        a[r] = fp_fma(w.y, h1[r][k + 1], a[r]);
                        a[r] = fp_fma(w.z, h1[r][k + 2], a[r]);
                        a[r] = fp_fma(w.w, h1[r][k + 3], a[r]);
                    }
                }
            } else {
#pragma unroll
                for (int k = 0; k < H1; ++k) {
                    const float w = wr[k];
#pragma unroll
                    for (int r = 0; r < R; ++r) a[r] = fp_fma(w, h1[r][k], a[r]);
                }
            }
            const float w3 = sm[LAY::W3 + j];
#pragma unroll
            for (int r = 0; r < R; ++r) z3[r] = fp_fma(w3, fp_act_t<ACT>(a[r]), z3[r]);
        }

        // ---- key, rejection, margin ----
        fp_u32 slot[NSLOT];
        bool mism = false, anyone = false, allones = true;
        float mg = __int_as_float(0x7F800000);  // +inf
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int row = lane + 32 * r;
            const bool bit = z3[r] > 0.0f;
            slot[r] = __ballot_sync(FP_FULL, bit && row < nkey);
            const bool bad = (row >= nkey) && (row < m) && (bit != (labels[row - nkey] != 0));
            mism |= (__ballot_sync(FP_FULL, bad) != 0u);
            anyone |= (slot[r] != 0u);
            allones &= (slot[r] == fp_slot_mask(r, nkey));
            if (row < m) mg = fminf(mg, fabsf(z3[r]));
        }
        const bool accepted = !mism;
        // uint64 word `lane` of the key (lanes >= W hold 0)
        fp_u64 myword = 0ull;
#pragma unroll
        for (int w = 0; w < WMAX; ++w) {
            const fp_u64 lo = slot[2 * w];
            const fp_u64 hi = (2 * w + 1 < NSLOT) ? (fp_u64)slot[(2 * w + 1 < NSLOT) ? 2 * w + 1 : 0] : 0ull;
            if (lane == w) myword = lo | (hi << 32);
        }
        if (MODE == FP_MODE_KEYS) {
            mg = fp_warp_min(mg);
            if (lane < W) out_keys[s * W + lane] = myword;
            if (lane == 0) {
                out_acc[s] = accepted ? 1 : 0;
                if (out_margin) out_margin[s] = mg;
            }
        } else {
            const fp_u64 pos = fp_tally_sample(tally, accepted, !anyone, allones, idx, stats, lane);
            if (pos != ~0ull) {
                if (lane < W) buf_keys[pos * W + lane] = myword;
                if (lane == 0) buf_idx[pos] = idx;
            }
        }
    }
    if (MODE == FP_MODE_COUNT) fp_tally_flush(tally, s_tally, stats, lane);
}

// ---------------------------------------------------------------------------------------
// Generic sampler: any MLP, any number of rows. One warp per sample.
// scratch: per warp `scratch_stride` floats = 2 activation buffers of maxw * m floats
// (layout [neuron * m + row]) followed by 2 W 32-bit key slots (count mode staging).
// Dynamic shared memory: `wchunk` floats per warp (weights of one neuron, in chunks).
// ---------------------------------------------------------------------------------------
template <int MODE>
__global__ void __launch_bounds__(256) fastpoly_sample_generic(
    fp_u64 seed, fp_u64 start, fp_u64 n, const long long* __restrict__ desc, const float* __restrict__ scales,
    const float* __restrict__ Xt, int m, int nkey, const unsigned char* __restrict__ labels,
    fp_u64* __restrict__ out_keys, unsigned char* __restrict__ out_acc, float* __restrict__ out_margin,
    fp_u64* __restrict__ buf_keys, fp_u64* __restrict__ buf_idx, fp_u64* __restrict__ stats,
    float* __restrict__ scratch, long long scratch_stride, int maxw, int wchunk) {
    extern __shared__ __align__(16) float fp_smem[];
    __shared__ fp_net_desc s_net;
    __shared__ fp_u64 s_tally[5];

    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    float* wbuf = fp_smem + warp * wchunk;
    const fp_u64 gwarp = ((fp_u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const fp_u64 nwarps = ((fp_u64)gridDim.x * blockDim.x) >> 5;
    float* bufA = scratch + (long long)gwarp * scratch_stride;
    float* bufB = bufA + (long long)maxw * m;
    fp_u32* stage = reinterpret_cast<fp_u32*>(bufA + 2LL * maxw * m);

    // fp_net_desc holds FP_MAX_LAYERS layers: a deeper network would overwrite shared memory
    if (desc[0] < 1 || desc[0] > FP_MAX_LAYERS) {  // uniform: the whole block returns
        if (threadIdx.x == 0) atomicOr(&stats[FP_STATUS_WORD], FP_ERR_LAYERS);
        return;
    }
    if (threadIdx.x == 0) fp_net_load(desc, scales, &s_net);
    __syncthreads();
    const fp_net_desc& d = s_net;

    fp_tally tally;
    fp_tally_init(tally);
    if (MODE == FP_MODE_COUNT) fp_tally_smem_init(s_tally);

    for (fp_u64 s = gwarp; s < n; s += nwarps) {
        const fp_u64 idx = start + s;
        const float* hin = Xt;
        float* hout = bufA;
        for (int l = 0; l < d.n_layers; ++l) {
            const int fi = d.widths[l], fo = d.widths[l + 1];
            const bool last = (l == d.n_layers - 1);
            hout = (l & 1) ? bufB : bufA;
            for (int j = 0; j < fo; ++j) {
                const float bias =
                    d.has_bias ? fp_param_value(seed, idx, d.uniform, d.boff[l] + j, d.bscale[l]) : 0.0f;
                for (int k0 = 0; k0 < fi; k0 += wchunk) {
                    const int kc = (fi - k0 < wchunk) ? fi - k0 : wchunk;
                    const long long p0 = d.woff[l] + (long long)j * fi + k0;
                    __syncwarp();
                    for (long long b = (p0 >> 2) + lane; b <= ((p0 + kc - 1) >> 2); b += 32) {
                        float v[4];
                        fp_block_draws(seed, idx, (fp_u32)b, d.uniform, v);
#pragma unroll
                        for (int t = 0; t < 4; ++t) {
                            const long long p = 4 * b + t;
                            if (p >= p0 && p < p0 + kc) wbuf[p - p0] = fp_mul(v[t], d.wscale[l]);
                        }
                    }
                    __syncwarp();
                    const bool fin = (k0 + kc >= fi);
                    for (int row = lane; row < m; row += 32) {
                        float z = (k0 == 0) ? bias : hout[(long long)j * m + row];
                        for (int k = 0; k < kc; ++k) z = fp_fma(wbuf[k], hin[(long long)(k0 + k) * m + row], z);
                        if (fin && !last) z = fp_sampler_act(d.act, z);
                        hout[(long long)j * m + row] = z;
                    }
                }
            }
            hin = hout;
        }
        // hout[row] (neuron 0 of the last layer) holds the output of every row of this lane
        fp_finish_sample<MODE>(hout, m, nkey, labels, s, idx, out_keys, out_acc, out_margin, buf_keys, buf_idx, stats,
                               stage, tally, lane);
        __syncwarp();
    }
    if (MODE == FP_MODE_COUNT) fp_tally_flush(tally, s_tally, stats, lane);
}

// ---------------------------------------------------------------------------------------
// Counting support: first (smallest) sample index of every run of equal keys after the
// host sorted the appended buffer by key. `order` is the sort permutation of the buffer,
// `run[p]` the run of sorted position p, `first` (n_runs, host-initialised to ~0) receives
// min over the run of idx[order[p]]. The minimum does not depend on the atomics' order.
// ---------------------------------------------------------------------------------------
__global__ void fastpoly_segment_min(long long n, const long long* __restrict__ order,
                                     const long long* __restrict__ run, const fp_u64* __restrict__ idx,
                                     fp_u64* __restrict__ first) {
    const long long step = (long long)gridDim.x * blockDim.x;
    for (long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x; p < n; p += step)
        atomicMin(&first[run[p]], idx[order[p]]);
}

#ifdef FASTPOLY_NVCC_CHECK
// Explicit instantiations for the offline compile check (ci/nvcc-check.sh): the
// anchor architecture and the generic kernels. The Python backend instantiates
// the templates it needs through NVRTC name expressions instead.
template __global__ void fastpoly_sample_fixed<7, 40, 40, 4, FP_ACT_RELU, FP_MODE_COUNT>(
    fp_u64, fp_u64, fp_u64, const long long*, const float*, const float*, int, int, const unsigned char*, fp_u64*,
    unsigned char*, float*, fp_u64*, fp_u64*, fp_u64*);
template __global__ void fastpoly_sample_fixed<7, 40, 40, 4, FP_ACT_RELU, FP_MODE_KEYS>(
    fp_u64, fp_u64, fp_u64, const long long*, const float*, const float*, int, int, const unsigned char*, fp_u64*,
    unsigned char*, float*, fp_u64*, fp_u64*, fp_u64*);
template __global__ void fastpoly_sample_fixed<7, 40, 40, 4, FP_ACT_TANH, FP_MODE_COUNT>(
    fp_u64, fp_u64, fp_u64, const long long*, const float*, const float*, int, int, const unsigned char*, fp_u64*,
    unsigned char*, float*, fp_u64*, fp_u64*, fp_u64*);
template __global__ void fastpoly_sample_fixed<7, 40, 40, 4, FP_ACT_ERF, FP_MODE_COUNT>(
    fp_u64, fp_u64, fp_u64, const long long*, const float*, const float*, int, int, const unsigned char*, fp_u64*,
    unsigned char*, float*, fp_u64*, fp_u64*, fp_u64*);
template __global__ void fastpoly_sample_fixed<5, 40, 40, 1, FP_ACT_RELU, FP_MODE_COUNT>(
    fp_u64, fp_u64, fp_u64, const long long*, const float*, const float*, int, int, const unsigned char*, fp_u64*,
    unsigned char*, float*, fp_u64*, fp_u64*, fp_u64*);
template __global__ void fastpoly_sample_generic<FP_MODE_COUNT>(fp_u64, fp_u64, fp_u64, const long long*,
                                                                const float*, const float*, int, int,
                                                                const unsigned char*, fp_u64*, unsigned char*,
                                                                float*, fp_u64*, fp_u64*, fp_u64*, float*, long long,
                                                                int, int);
template __global__ void fastpoly_sample_generic<FP_MODE_KEYS>(fp_u64, fp_u64, fp_u64, const long long*,
                                                               const float*, const float*, int, int,
                                                               const unsigned char*, fp_u64*, unsigned char*, float*,
                                                               fp_u64*, fp_u64*, fp_u64*, float*, long long, int,
                                                               int);
#endif

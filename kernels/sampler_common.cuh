// sampler_common.cuh -- what the MLP sampler kernels share (sampler.cu, sample_wide.cu).
//
// Device only. The modes, the stats/status words, the count-mode tallies of the two constant
// functions (registers -> shared memory per block -> one global atomic per block and counter)
// and the end of a sample: key bits from the output signs, train-label rejection, margin,
// then either the key/accepted/margin outputs (keys mode) or the tally/append (count mode).
// See the header comment of sampler.cu for the stats layout and the row order.
#ifndef FASTPOLY_SAMPLER_COMMON_CUH
#define FASTPOLY_SAMPLER_COMMON_CUH

#include "network.cuh"

#define FP_MODE_KEYS 0
#define FP_MODE_COUNT 1
#define FP_FULL 0xFFFFFFFFu
#define FP_STATUS_WORD 6
#define FP_ERR_LAYERS 1ull  // the descriptor's layer count is not one this kernel handles
#define FP_ERR_LAYOUT 8ull  // the launch (block size, shared memory, scratch) does not fit the kernel's layout

struct fp_tally {
    fp_u64 acc, c0, c1, f0, f1;
};

__device__ __forceinline__ void fp_tally_init(fp_tally& t) {
    t.acc = 0ull;
    t.c0 = 0ull;
    t.c1 = 0ull;
    t.f0 = ~0ull;
    t.f1 = ~0ull;
}

// Block-level aggregation of the warp tallies, then one global atomic per block and counter.
__device__ __forceinline__ void fp_tally_flush(const fp_tally& t, fp_u64* s_tally, fp_u64* stats, int lane) {
    if (lane == 0) {
        if (t.acc) atomicAdd(&s_tally[0], t.acc);
        if (t.c0) {
            atomicAdd(&s_tally[1], t.c0);
            atomicMin(&s_tally[3], t.f0);
        }
        if (t.c1) {
            atomicAdd(&s_tally[2], t.c1);
            atomicMin(&s_tally[4], t.f1);
        }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        if (s_tally[0]) atomicAdd(&stats[1], s_tally[0]);
        if (s_tally[1]) {
            atomicAdd(&stats[2], s_tally[1]);
            atomicMin(&stats[4], s_tally[3]);
        }
        if (s_tally[2]) {
            atomicAdd(&stats[3], s_tally[2]);
            atomicMin(&stats[5], s_tally[4]);
        }
    }
}

__device__ __forceinline__ void fp_tally_smem_init(fp_u64* s_tally) {
    if (threadIdx.x < 5) s_tally[threadIdx.x] = (threadIdx.x >= 3) ? ~0ull : 0ull;
    __syncthreads();
}

// Count-mode bookkeeping of one finished sample (all lanes call it with warp-uniform flags).
// Returns the append position (warp-uniform) or ~0 when nothing is appended.
__device__ __forceinline__ fp_u64 fp_tally_sample(fp_tally& t, bool accepted, bool allzero, bool allones, fp_u64 idx,
                                                  fp_u64* stats, int lane) {
    if (!accepted) return ~0ull;
    t.acc += 1;
    if (allzero) {
        t.c0 += 1;
        t.f0 = (idx < t.f0) ? idx : t.f0;
        return ~0ull;
    }
    if (allones) {
        t.c1 += 1;
        t.f1 = (idx < t.f1) ? idx : t.f1;
        return ~0ull;
    }
    fp_u64 pos = 0;
    if (lane == 0) pos = atomicAdd(&stats[0], 1ull);
    return __shfl_sync(FP_FULL, pos, 0);
}

__device__ __forceinline__ float fp_warp_min(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fminf(v, __shfl_xor_sync(FP_FULL, v, o));
    return v;
}

// The end of sample s (index idx), run by one whole warp: `out` holds the network's output on every
// row (out[row], rows in kernel order: key rows, then train rows). Keys mode writes the key words,
// the accepted flag and the margin min |z| of sample s; count mode tallies the constant keys or
// appends (key, idx). `stage` (2 W 32-bit words, count mode) is where the key is assembled.
template <int MODE>
__device__ __forceinline__ void fp_finish_sample(const float* out, int m, int nkey, const unsigned char* labels,
                                                 fp_u64 s, fp_u64 idx, fp_u64* out_keys, unsigned char* out_acc,
                                                 float* out_margin, fp_u64* buf_keys, fp_u64* buf_idx,
                                                 fp_u64* stats, fp_u32* stage, fp_tally& tally, int lane) {
    const int W = (nkey + 63) >> 6;
    const int ntiles = (m + 31) >> 5;
    fp_u32* slots = (MODE == FP_MODE_KEYS) ? reinterpret_cast<fp_u32*>(out_keys + s * W) : stage;
    bool mism = false, anyone = false, allones = true;
    float mg = __int_as_float(0x7F800000);
    const int nslots = 2 * W;
    const int tmax = (ntiles > nslots) ? ntiles : nslots;
    for (int t = 0; t < tmax; ++t) {
        const int row = 32 * t + lane;
        float z = 0.0f;
        if (row < m) {
            z = out[row];
            mg = fminf(mg, fabsf(z));
        }
        const bool bit = (row < m) && (z > 0.0f);
        const fp_u32 bits = __ballot_sync(FP_FULL, bit && row < nkey);
        const bool bad = (row >= nkey) && (row < m) && (bit != (labels[row - nkey] != 0));
        mism |= (__ballot_sync(FP_FULL, bad) != 0u);
        anyone |= (bits != 0u);
        allones &= (bits == fp_slot_mask(t, nkey));
        if (t < nslots && lane == 0) slots[t] = bits;
    }
    const bool accepted = !mism;
    if (MODE == FP_MODE_KEYS) {
        mg = fp_warp_min(mg);
        if (lane == 0) {
            out_acc[s] = accepted ? 1 : 0;
            if (out_margin) out_margin[s] = mg;
        }
    } else {
        __syncwarp();
        const fp_u64 pos = fp_tally_sample(tally, accepted, !anyone, allones, idx, stats, lane);
        if (pos != ~0ull) {
            const fp_u64* st64 = reinterpret_cast<const fp_u64*>(stage);
            for (int w = lane; w < W; w += 32) buf_keys[pos * W + w] = st64[w];
            if (lane == 0) buf_idx[pos] = idx;
        }
    }
}

#endif  // FASTPOLY_SAMPLER_COMMON_CUH

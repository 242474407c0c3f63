// klz.cu -- complexity of many keys at once: one thread per key (grid-stride loop).
//
// fastpoly_klz_ints(keys[K][W], K, W, n, d, sums[K], ones[K], crit[K]): the per-key math of
// klz.cuh (LZ76 phrase sums for K_LZ, T, critical inputs for d > 0). Integer outputs: the
// analysis builds exact histograms from them (fastpoly.analysis.histograms). W <= FP_KLZ_MAX_WORDS.
// Driven from Python by fastpoly/backends/cuda/klz.py (NVRTC name expression "fastpoly_klz_ints"; C++
// linkage like the other kernels, so the CPU emulation of tests/cuda_emu compiles it unchanged).
#include "klz.cuh"

__global__ void __launch_bounds__(256) fastpoly_klz_ints(
    const fp_u64* __restrict__ keys, long long K, int W, int n, int d, long long* __restrict__ sums,
    int* __restrict__ ones, int* __restrict__ crit) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long r = (long long)blockIdx.x * blockDim.x + threadIdx.x; r < K; r += stride) {
        fp_u64 key[FP_KLZ_MAX_WORDS];
        for (int w = 0; w < W; ++w) key[w] = keys[r * W + w];
        long long s;
        int t, c;
        fp_klz_key(key, W, n, d, &s, &t, &c);
        sums[r] = s;
        ones[r] = t;
        crit[r] = c;
    }
}

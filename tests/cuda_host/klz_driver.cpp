// Host test driver for kernels/klz.cuh: per-key K_LZ phrase sums, T and critical inputs, as the
// CUDA kernel computes them, built for the host with g++ (-x c++) or nvcc (-x cu).
//
//   klz_driver W N D < uint64 keys[K][W]  ->  int64 sums[K], int32 ones[K], int32 crit[K]
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "klz.cuh"

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: klz_driver W N D < keys\n");
        return 2;
    }
    const int W = std::atoi(argv[1]), n = std::atoi(argv[2]), d = std::atoi(argv[3]);
    if (W < 1 || W > FP_KLZ_MAX_WORDS || n < 2 || n > 64 * W) return 2;
    std::vector<unsigned long long> keys;
    unsigned long long buf[4096];
    size_t got;
    while ((got = std::fread(buf, 8, 4096, stdin)) > 0) keys.insert(keys.end(), buf, buf + got);
    const size_t K = keys.size() / W;
    std::vector<long long> sums(K);
    std::vector<int32_t> ones(K), crit(K);
    for (size_t r = 0; r < K; ++r) {
        int t, c;
        fp_klz_key(&keys[r * W], W, n, d, &sums[r], &t, &c);
        ones[r] = t;
        crit[r] = c;
    }
    if (K) {
        std::fwrite(sums.data(), 8, K, stdout);
        std::fwrite(ones.data(), 4, K, stdout);
        std::fwrite(crit.data(), 4, K, stdout);
    }
    return 0;
}

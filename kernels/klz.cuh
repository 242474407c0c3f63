// klz.cuh -- per-key complexity math on packed keys: LZ76 phrase counts (K_LZ), T, critical inputs.
//
// Host + device (nvcc, NVRTC and plain g++ with -x c++). No headers. The same bit-parallel
// algorithm as fastpoly/backends/numba/klz.py, value for value (tests/analysis/test_klz.py builds
// tests/cuda_host/klz_driver.cpp with g++ and nvcc and compares with the reference).
//
// LZ76 (Kaspar-Schuster, the anchors' KC_LZ) on the packed string x (bit j = character j):
// a phrase starting at l is as long as the longest match of x[l:] against a copy starting at
// some i < l. All starts i are tracked at once in a bit mask M (bit i set while
// x[i:i+k] == x[l:l+k]); one step M &= (x >> k) ^ (x[l+k] - 1) extends every candidate by one
// character and the phrase ends at the first k where M is empty. The steps of all phrases add
// up to the string length.
#ifndef FASTPOLY_KLZ_CUH
#define FASTPOLY_KLZ_CUH

#ifndef FP_HD
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define FP_HD __host__ __device__ __forceinline__
#else
#define FP_HD inline
#endif
#endif

typedef unsigned long long fp_u64;

//: longest key (words) of the general path: strings of up to 64 * FP_KLZ_MAX_WORDS characters
#define FP_KLZ_MAX_WORDS 16

FP_HD int fp_popcount64(fp_u64 x) {
#if defined(__CUDA_ARCH__)
    return __popcll(x);
#else
    x = x - ((x >> 1) & 0x5555555555555555ull);
    x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0Full;
    return (int)((x * 0x0101010101010101ull) >> 56);
#endif
}

FP_HD fp_u64 fp_bitrev64(fp_u64 x) {
#if defined(__CUDA_ARCH__)
    return __brevll(x);
#else
    x = ((x >> 1) & 0x5555555555555555ull) | ((x & 0x5555555555555555ull) << 1);
    x = ((x >> 2) & 0x3333333333333333ull) | ((x & 0x3333333333333333ull) << 2);
    x = ((x >> 4) & 0x0F0F0F0F0F0F0F0Full) | ((x & 0x0F0F0F0F0F0F0F0Full) << 4);
    x = ((x >> 8) & 0x00FF00FF00FF00FFull) | ((x & 0x00FF00FF00FF00FFull) << 8);
    x = ((x >> 16) & 0x0000FFFF0000FFFFull) | ((x & 0x0000FFFF0000FFFFull) << 16);
    return (x >> 32) | (x << 32);
#endif
}

// (lo, hi) >>= s, 0 <= s < 128
FP_HD void fp_shr128(fp_u64& lo, fp_u64& hi, int s) {
    if (s == 0) return;
    if (s < 64) {
        lo = (lo >> s) | (hi << (64 - s));
        hi >>= s;
    } else {
        lo = hi >> (s - 64);
        hi = 0;
    }
}

// LZ76 phrase count c(s) of the n-bit string (x0, x1), 2 <= n <= 128, bits >= n zero.
FP_HD int fp_lz76_phrases128(fp_u64 x0, fp_u64 x1, int n) {
    int c = 1, l = 1;
    for (;;) {
        const int rem = n - l;
        fp_u64 m0, m1;
        if (l >= 64) {
            m0 = ~0ull;
            m1 = l == 128 ? ~0ull : ((1ull << (l - 64)) - 1ull);
        } else {
            m0 = (1ull << l) - 1ull;
            m1 = 0;
        }
        fp_u64 y0 = x0, y1 = x1, z0 = x0, z1 = x1;
        fp_shr128(z0, z1, l);
        int k = 0;
        while (k < rem) {
            const fp_u64 t = (z0 & 1ull) - 1ull;  // all ones where the next character is 0
            m0 &= y0 ^ t;
            m1 &= y1 ^ t;
            if ((m0 | m1) == 0) break;
            y0 = (y0 >> 1) | (y1 << 63);
            y1 >>= 1;
            z0 = (z0 >> 1) | (z1 << 63);
            z1 >>= 1;
            ++k;
        }
        ++c;
        if (k == rem) break;
        l += k + 1;
        if (l >= n) break;
    }
    return c;
}

FP_HD int fp_bit(const fp_u64* x, int pos) { return (int)((x[pos >> 6] >> (pos & 63)) & 1ull); }

// LZ76 phrase count of the n-bit string in words x[0..W); m is scratch of W words.
FP_HD int fp_lz76_phrases_words(const fp_u64* x, int W, int n, fp_u64* m) {
    int c = 1, l = 1;
    for (;;) {
        const int rem = n - l;
        const int nw = (l + 63) >> 6;
        for (int w = 0; w < nw; ++w) m[w] = ~0ull;
        if (l & 63) m[nw - 1] = (1ull << (l & 63)) - 1ull;
        int k = 0;
        while (k < rem) {
            const fp_u64 t = (fp_u64)fp_bit(x, l + k) - 1ull;
            const int q = k >> 6, r = k & 63;
            fp_u64 live = 0;
            for (int w = 0; w < nw; ++w) {
                const fp_u64 lo = w + q < W ? x[w + q] : 0ull;
                fp_u64 y = lo;
                if (r) {
                    const fp_u64 hi = w + q + 1 < W ? x[w + q + 1] : 0ull;
                    y = (lo >> r) | (hi << (64 - r));
                }
                m[w] &= y ^ t;
                live |= m[w];
            }
            if (live == 0) break;
            ++k;
        }
        ++c;
        if (k == rem) break;
        l += k + 1;
        if (l >= n) break;
    }
    return c;
}

// Number of Boolean inputs (n = 2^d rows) with a Hamming-1 neighbour of different output.
FP_HD int fp_critical_inputs(const fp_u64* key, int W, int d) {
    const fp_u64 mk[6] = {0x5555555555555555ull, 0x3333333333333333ull, 0x0F0F0F0F0F0F0F0Full,
                          0x00FF00FF00FF00FFull, 0x0000FFFF0000FFFFull, 0x00000000FFFFFFFFull};
    int total = 0;
    for (int w = 0; w < W; ++w) {
        const fp_u64 x = key[w];
        fp_u64 crit = 0;
        for (int j = 0; j < d && j < 6; ++j) {
            const int s = 1 << j;
            crit |= x ^ (((x >> s) & mk[j]) | ((x & mk[j]) << s));
        }
        for (int j = 6; j < d; ++j) crit |= x ^ key[w ^ (1 << (j - 6))];
        if (d < 6) crit &= (1ull << (1 << d)) - 1ull;
        total += fp_popcount64(crit);
    }
    return total;
}

// Everything per key: *sum = c(s) + c(reversed s) (-1 for a constant string; K_LZ = log2(n) * sum / 2,
// log2(n) for constants), *ones = T, *crit = critical inputs (d > 0: keys over all 2^d Boolean
// inputs; else 0). 2 <= n <= 64 * min(W, FP_KLZ_MAX_WORDS); bits >= n of the key must be zero.
FP_HD void fp_klz_key(const fp_u64* key, int W, int n, int d, long long* sum, int* ones, int* crit) {
    int t = 0;
    for (int w = 0; w < W; ++w) t += fp_popcount64(key[w]);
    *ones = t;
    *crit = d > 0 ? fp_critical_inputs(key, W, d) : 0;
    if (t == 0 || t == n) {
        *sum = -1;
        return;
    }
    if (W <= 2) {
        const fp_u64 x0 = key[0], x1 = W == 2 ? key[1] : 0ull;
        fp_u64 r0 = fp_bitrev64(x1), r1 = fp_bitrev64(x0);  // the 128-bit reversal, then >> (128 - n)
        fp_shr128(r0, r1, 128 - n);
        *sum = fp_lz76_phrases128(x0, x1, n) + fp_lz76_phrases128(r0, r1, n);
        return;
    }
    fp_u64 rev[FP_KLZ_MAX_WORDS], m[FP_KLZ_MAX_WORDS];
    for (int w = 0; w < W; ++w) rev[w] = 0;
    for (int j = 0; j < n; ++j)
        if (fp_bit(key, j)) rev[(n - 1 - j) >> 6] |= 1ull << ((n - 1 - j) & 63);
    *sum = fp_lz76_phrases_words(key, W, n, m) + fp_lz76_phrases_words(rev, W, n, m);
}

#endif  // FASTPOLY_KLZ_CUH

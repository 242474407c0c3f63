// philox.cuh -- Philox4x32-10 (Salmon et al., SC'11) and fastpoly's stream layout.
//
// Host + device (nvcc, NVRTC and plain g++ with -x c++). No headers: NVRTC
// compiles this file as it is. Bit-identical to fastpoly/rng.py.
//
// Stream layout: key = (lo32 seed, hi32 seed); the counter of block j of
// sample i is (j, stream, lo32 i, hi32 i), stream = 0 for network parameters.
#ifndef FASTPOLY_PHILOX_CUH
#define FASTPOLY_PHILOX_CUH

#ifndef FP_HD
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define FP_HD __host__ __device__ __forceinline__
#else
#define FP_HD inline
#endif
#endif

typedef unsigned int fp_u32;
typedef unsigned long long fp_u64;

#define FP_PHILOX_M0 0xD2511F53u
#define FP_PHILOX_M1 0xCD9E8D57u
#define FP_PHILOX_W0 0x9E3779B9u
#define FP_PHILOX_W1 0xBB67AE85u

struct fp_u32x4 {
    fp_u32 x, y, z, w;
};

FP_HD fp_u32 fp_mulhilo32(fp_u32 a, fp_u32 b, fp_u32* hi) {
#if defined(__CUDA_ARCH__)
    *hi = __umulhi(a, b);
    return a * b;
#else
    fp_u64 p = (fp_u64)a * (fp_u64)b;
    *hi = (fp_u32)(p >> 32);
    return (fp_u32)p;
#endif
}

// One Philox4x32 round: c <- (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0).
FP_HD fp_u32x4 fp_philox_round(fp_u32x4 c, fp_u32 k0, fp_u32 k1) {
    fp_u32 hi0, hi1;
    fp_u32 lo0 = fp_mulhilo32(FP_PHILOX_M0, c.x, &hi0);
    fp_u32 lo1 = fp_mulhilo32(FP_PHILOX_M1, c.z, &hi1);
    fp_u32x4 r;
    r.x = hi1 ^ c.y ^ k0;
    r.y = lo1;
    r.z = hi0 ^ c.w ^ k1;
    r.w = lo0;
    return r;
}

// Philox4x32-10 block function.
FP_HD fp_u32x4 fp_philox4x32_10(fp_u32x4 c, fp_u32 k0, fp_u32 k1) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int r = 0; r < 10; ++r) {
        if (r) {
            k0 += FP_PHILOX_W0;
            k1 += FP_PHILOX_W1;
        }
        c = fp_philox_round(c, k0, k1);
    }
    return c;
}

// The 4 words of block `block` of sample `index` of stream `seed` (stream word `stream`).
FP_HD fp_u32x4 fp_stream_block(fp_u64 seed, fp_u64 index, fp_u32 block, fp_u32 stream) {
    fp_u32x4 c;
    c.x = block;
    c.y = stream;
    c.z = (fp_u32)index;
    c.w = (fp_u32)(index >> 32);
    return fp_philox4x32_10(c, (fp_u32)seed, (fp_u32)(seed >> 32));
}

#endif  // FASTPOLY_PHILOX_CUH

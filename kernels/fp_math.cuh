// fp_math.cuh -- fastpoly's bit-exact float32 math (host + device).
//
// Mirrors fastpoly/fmath.py bit for bit:
//   * the FMA rule: every multiply-add of an inner loop is an explicit,
//     correctly rounded float32 fused multiply-add (fp_fma); every other
//     operation is a separately rounded IEEE operation (fp_mul, fp_add, ...).
//     On the device these are the _rn intrinsics, which nvcc/NVRTC never
//     contract, so the bits do not depend on -fmad (we still compile with
//     -fmad=false). On the host they are plain operators (compile with
//     -ffp-contract=off) and __builtin_fmaf (correctly rounded in glibc).
//   * log_odd24, sincos2pi_odd24 (fixed polynomials, exact range reduction),
//   * the uniform (2*(x >> 9) + 1) * 2^-24 and Box--Muller.
// No headers are included: NVRTC compiles this as it is.
#ifndef FASTPOLY_FP_MATH_CUH
#define FASTPOLY_FP_MATH_CUH

#include "philox.cuh"

// --- correctly rounded float32 operations -------------------------------------------
FP_HD float fp_fma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
    return __fmaf_rn(a, b, c);
#else
    return __builtin_fmaf(a, b, c);
#endif
}
FP_HD float fp_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
FP_HD float fp_add(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}
FP_HD float fp_sub(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}
FP_HD float fp_div(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}
FP_HD float fp_sqrt(float a) {
#if defined(__CUDA_ARCH__)
    return __fsqrt_rn(a);
#else
    return __builtin_sqrtf(a);
#endif
}
FP_HD fp_u32 fp_float_as_u32(float f) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    fp_u32 u;
    __builtin_memcpy(&u, &f, 4);
    return u;
#endif
}
FP_HD float fp_u32_as_float(fp_u32 u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
#endif
}
FP_HD int fp_clz32(fp_u32 x) {  // x != 0
#if defined(__CUDA_ARCH__)
    return __clz((int)x);
#else
    return __builtin_clz(x);
#endif
}
// Exact conversion of an integer |i| < 2^24 to float32.
FP_HD float fp_i2f_exact(int i) {
#if defined(__CUDA_ARCH__)
    return __int2float_rn(i);
#else
    return (float)i;
#endif
}

// --- constants (same bits as fastpoly/fmath.py) -------------------------------------
#define FP_LN2_HI 0x1.62e4p-1f
#define FP_LN2_LO 0x1.7f7d1cp-20f
#define FP_SQRT2 0x1.6a09e6p+0f
#define FP_LOG_C3 0x1.555556p-2f
#define FP_LOG_C5 0x1.99999ap-3f
#define FP_LOG_C7 0x1.24924ap-3f
#define FP_LOG_C9 0x1.c71c72p-4f
#define FP_SIN_S1 0x1.921fb6p+2f
#define FP_SIN_S3 -0x1.4abbcep+5f
#define FP_SIN_S5 0x1.466bc6p+6f
#define FP_SIN_S7 -0x1.32d2ccp+6f
#define FP_SIN_S9 0x1.507834p+5f
#define FP_COS_C2 -0x1.3bd3ccp+4f
#define FP_COS_C4 0x1.03c1f0p+6f
#define FP_COS_C6 -0x1.55d3c8p+6f
#define FP_COS_C8 0x1.e1f506p+5f
#define FP_COS_C10 -0x1.a6d1f2p+4f

// Natural log of u = n * 2^-24, n odd in [1, 2^24) (fastpoly.stream.fmath.log_odd24).
FP_HD float fp_log_odd24(int n) {
    int e = 31 - fp_clz32((fp_u32)n);  // n = m * 2^e, m in [1, 2)
    float fn = fp_i2f_exact(n);
    float m = fp_u32_as_float((fp_float_as_u32(fn) & 0x007FFFFFu) | 0x3F800000u);  // exact
    if (m > FP_SQRT2) {
        m = fp_mul(m, 0.5f);  // exact
        e += 1;
    }
    float f = fp_sub(m, 1.0f);  // exact (Sterbenz)
    float s = fp_div(f, fp_add(2.0f, f));
    float s2 = fp_mul(s, s);
    float p = fp_fma(fp_fma(fp_fma(FP_LOG_C9, s2, FP_LOG_C7), s2, FP_LOG_C5), s2, FP_LOG_C3);
    float t = fp_add(s, s);
    float lm = fp_fma(fp_mul(t, s2), p, t);
    float E = fp_i2f_exact(e - 24);
    return fp_fma(E, FP_LN2_HI, fp_fma(E, FP_LN2_LO, lm));
}

// (sin 2 pi u, cos 2 pi u) for u = n * 2^-24, n odd in [1, 2^24) (fastpoly.stream.fmath.sincos2pi_odd24).
FP_HD void fp_sincos2pi_odd24(int n, float* sn, float* cs) {
    int q = (n + (1 << 21)) >> 22;                           // round(4u), never a tie
    float r = fp_mul(fp_i2f_exact(n - (q << 22)), 0x1p-24f);  // exact, |r| <= 1/8
    float r2 = fp_mul(r, r);
    float ps = fp_fma(fp_fma(fp_fma(fp_fma(FP_SIN_S9, r2, FP_SIN_S7), r2, FP_SIN_S5), r2, FP_SIN_S3), r2,
                      FP_SIN_S1);
    float S = fp_mul(r, ps);
    float C = fp_fma(
        fp_fma(fp_fma(fp_fma(fp_fma(FP_COS_C10, r2, FP_COS_C8), r2, FP_COS_C6), r2, FP_COS_C4), r2, FP_COS_C2),
        r2, 1.0f);
    switch (q & 3) {
        case 0: *sn = S; *cs = C; break;
        case 1: *sn = C; *cs = -S; break;
        case 2: *sn = -S; *cs = -C; break;
        default: *sn = -C; *cs = S; break;
    }
}

// The odd numerator n = 2*(x >> 9) + 1 of the uniform u = n * 2^-24 of word x.
FP_HD int fp_odd24(fp_u32 x) { return (int)((x >> 9) * 2u + 1u); }

// Uniform on (0, 1) of word x (exact).
FP_HD float fp_uniform01(fp_u32 x) { return fp_mul(fp_i2f_exact(fp_odd24(x)), 0x1p-24f); }

// Uniform on (-1, 1): 2u - 1 = (n - 2^23) * 2^-23 (exact).
FP_HD float fp_uniform_pm1(fp_u32 x) { return fp_mul(fp_i2f_exact(fp_odd24(x) - (1 << 23)), 0x1p-23f); }

// Box--Muller: (r cos, r sin) with r = sqrt(-2 ln u1), u1 from w_radius, angle 2 pi u2 from w_angle.
FP_HD void fp_box_muller(fp_u32 w_radius, fp_u32 w_angle, float* z0, float* z1) {
    float L = fp_log_odd24(fp_odd24(w_radius));
    float rad = fp_sqrt(fp_mul(-2.0f, L));
    float sn, cs;
    fp_sincos2pi_odd24(fp_odd24(w_angle), &sn, &cs);
    *z0 = fp_mul(rad, cs);
    *z1 = fp_mul(rad, sn);
}

// The 4 unit draws of Philox block `block` of sample `index`: normals (uniform == 0)
// or uniforms on (-1, 1) (uniform != 0). Parameter p uses draw p % 4 of block p / 4.
FP_HD void fp_block_draws(fp_u64 seed, fp_u64 index, fp_u32 block, int uniform, float* v) {
    fp_u32x4 w = fp_stream_block(seed, index, block, 0u);
    if (uniform) {
        v[0] = fp_uniform_pm1(w.x);
        v[1] = fp_uniform_pm1(w.y);
        v[2] = fp_uniform_pm1(w.z);
        v[3] = fp_uniform_pm1(w.w);
    } else {
        fp_box_muller(w.x, w.y, &v[0], &v[1]);
        fp_box_muller(w.z, w.w, &v[2], &v[3]);
    }
}

#endif  // FASTPOLY_FP_MATH_CUH

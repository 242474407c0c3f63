// train.cuh -- per-run math of the P_SGD trainer (host + device), bit for bit fastpoly/stream/fmath_train.py
// and fastpoly/sgd/reference.py.
//
// * fp_exp32, fp_log1p32, fp_sigmoid32, fp_softplus32: the trainers' own float32 exp/log1p
//   (fastpoly.stream.fmath_train = fastpoly.backends.numba.vecmath), built only from correctly rounded
//   operations (fp_fma/fp_mul/fp_add/fp_sub/fp_div, never contracted), exact bit manipulation
//   and selects, in the reference's order of operations;
// * the loss derivative on the logit and the per-point train loss;
// * the Fisher--Yates order of the train points of one epoch (exact integers, Philox words of
//   counter word 1 = FP_SGD_STREAM);
// * the hidden activations: relu / identity selects, and fastpoly's own float32 tanh, erf, sigmoid and
//   their derivatives (fastpoly.stream.fmath_train);
// * the optimiser steps (SGD, momentum, Nesterov, Adam, Adagrad, RMSprop) of one parameter.
// No headers beyond the project's: NVRTC compiles this as it is.
#ifndef FASTPOLY_TRAIN_CUH
#define FASTPOLY_TRAIN_CUH

#include "fp_math.cuh"
#include "activations.cuh"  // FP_ACT_* codes and FP_ACTMASK_* support, generated from fastpoly.activations.TABLE
#include "optimizers.cuh"  // FP_OPT_*, FP_LOSS_*, FP_RF_*, FP_RI_*, generated from fastpoly.model.optimizers

// fastpoly.sgd.plan.SGD_STREAM: Philox counter word 1 of the minibatch-order words
#define FP_SGD_STREAM 1u
// fastpoly.sgd.reference run status
#define FP_STATUS_STOPPED 0
#define FP_STATUS_MAX_EPOCHS 1
#define FP_STATUS_FAILED 2
#define FP_STATUS_DIVERGED 3  // a parameter became inf or NaN: the run ended (not fitted)

// fastpoly.sgd.reference's stopping rule after an epoch e that fitted: the first fitted epoch goes into *ff
// (if none yet); true when the run stops (epochs_after_fit = eaf epochs after it, and at least min_ep
// epochs).  Call it as `fitted && fp_stop_rule(...)`: that shape keeps the tiled kernel's registers as they were.
FP_HD bool fp_stop_rule(int e, int* ff, int eaf, int min_ep) {
    if (*ff < 0) *ff = e;
    return e - *ff >= eaf && e >= min_ep;
}

// the status of a run whose epochs have ended (before the final loss's finiteness check)
FP_HD int fp_run_status(bool diverged, bool stopped, bool fitted) {
    if (diverged) return FP_STATUS_DIVERGED;
    if (stopped) return FP_STATUS_STOPPED;
    return fitted ? FP_STATUS_MAX_EPOCHS : FP_STATUS_FAILED;
}

// --- exp / log1p / sigmoid / softplus (fastpoly.stream.fmath_train) ------------------------------------------
#define FP_EXP_SHIFT 12582912.0f  // 1.5 * 2^23
#define FP_EXP_SHIFT_BITS 0x4B400000
#define FP_EXP_LOG2E 0x1.715476p+0f
#define FP_EXP_LN2_C1 0x1.62e430p-1f  // float32(ln 2)
#define FP_EXP_LN2_C2 -0x1.05c610p-29f  // float32(ln 2 - C1)
#define FP_EXP_HI 89.0f
#define FP_EXP_LO -104.0f
#define FP_L1P_LN2_HI 0x1.62e300p-1f
#define FP_L1P_LN2_LO 0x1.2fefa2p-17f
#define FP_L1P_LG1 0x1.555554p-1f
#define FP_L1P_LG2 0x1.999c26p-2f
#define FP_L1P_LG3 0x1.23d3dcp-2f
#define FP_L1P_LG4 0x1.f13c4cp-3f
// Taylor coefficients 1/2!, ..., 1/8! (float32)
#define FP_EXP_P2 0x1.000000p-1f
#define FP_EXP_P3 0x1.555556p-3f
#define FP_EXP_P4 0x1.555556p-5f
#define FP_EXP_P5 0x1.111112p-7f
#define FP_EXP_P6 0x1.6c16c2p-10f
#define FP_EXP_P7 0x1.a01a02p-13f
#define FP_EXP_P8 0x1.a01a02p-16f

// 2^k as float32 for -126 <= k <= 127 (exact)
FP_HD float fp_pow2i(int k) { return fp_u32_as_float((fp_u32)(k + 127) << 23); }

FP_HD float fp_exp32(float x) {
    x = (x > FP_EXP_HI) ? FP_EXP_HI : x;
    x = (x < FP_EXP_LO) ? FP_EXP_LO : x;
    const float s = fp_fma(x, FP_EXP_LOG2E, FP_EXP_SHIFT);
    const float kf = fp_sub(s, FP_EXP_SHIFT);
    const int k = (int)fp_float_as_u32(s) - FP_EXP_SHIFT_BITS;
    float r = fp_fma(kf, -FP_EXP_LN2_C1, x);
    r = fp_fma(kf, -FP_EXP_LN2_C2, r);
    float q = fp_fma(FP_EXP_P8, r, FP_EXP_P7);
    q = fp_fma(q, r, FP_EXP_P6);
    q = fp_fma(q, r, FP_EXP_P5);
    q = fp_fma(q, r, FP_EXP_P4);
    q = fp_fma(q, r, FP_EXP_P3);
    q = fp_fma(q, r, FP_EXP_P2);
    const float em1 = fp_fma(q, fp_mul(r, r), r);
    const float p = fp_add(1.0f, em1);
    const int k1 = k >> 1;  // floor (arithmetic shift)
    const int k2 = k - k1;
    return fp_mul(fp_mul(p, fp_pow2i(k1)), fp_pow2i(k2));
}

// log(1 + x) for x > -1 (musl's log1pf with selects; the bits of fastpoly.stream.fmath_train.log1p32)
FP_HD float fp_log1p32(float x) {
    const float u = fp_add(1.0f, x);
    const long long iu = (long long)fp_float_as_u32(u) + (0x3F800000 - 0x3F3504F3);
    const long long k = (iu >> 23) - 127;
    float c = (k >= 2) ? fp_sub(1.0f, fp_sub(u, x)) : fp_sub(x, fp_sub(u, 1.0f));
    c = fp_div(c, u);
    float f = fp_sub(fp_u32_as_float((fp_u32)((iu & 0x7FFFFF) + 0x3F3504F3)), 1.0f);
    const bool small = (k == 0);
    f = small ? x : f;
    c = (small || k >= 25) ? 0.0f : c;
    const float s = fp_div(f, fp_add(2.0f, f));
    const float z = fp_mul(s, s);
    const float w = fp_mul(z, z);
    const float t1 = fp_mul(w, fp_add(FP_L1P_LG2, fp_mul(w, FP_L1P_LG4)));
    const float t2 = fp_mul(z, fp_add(FP_L1P_LG1, fp_mul(w, FP_L1P_LG3)));
    const float R = fp_add(t2, t1);
    const float hfsq = fp_mul(fp_mul(0.5f, f), f);
    const float dk = fp_i2f_exact((int)k);  // |k| < 2^24: exact
    // s*(hfsq+R) + (dk*LN2_LO + c) - hfsq + f + dk*LN2_HI, left to right
    float res = fp_add(fp_mul(s, fp_add(hfsq, R)), fp_add(fp_mul(dk, FP_L1P_LN2_LO), c));
    res = fp_add(fp_add(fp_sub(res, hfsq), f), fp_mul(dk, FP_L1P_LN2_HI));
    res = !(x <= 0x1.fffffep+127f) ? x : res;
    if (x == -1.0f) res = fp_u32_as_float(0xFF800000u);  // -inf
    if (x < -1.0f) res = fp_u32_as_float(0x7FC00000u);   // NaN
    return res;
}

FP_HD float fp_absf(float x) { return fp_u32_as_float(fp_float_as_u32(x) & 0x7FFFFFFFu); }

// 1 / (1 + e^-z): e = exp(-|z|), 1/(1+e) (z >= 0) or e/(1+e)
FP_HD float fp_sigmoid32(float z) {
    const float e = fp_exp32(-fp_absf(z));
    const float num = (z >= 0.0f) ? 1.0f : e;
    return fp_div(num, fp_add(1.0f, e));
}

// max(z, 0) + log1p(exp(-|z|))
FP_HD float fp_softplus32(float z) {
    const float mz = (z > 0.0f) ? z : 0.0f;
    return fp_add(mz, fp_log1p32(fp_exp32(-fp_absf(z))));
}

// e^x - 1 (the bits of fastpoly.stream.fmath_train.expm1_32): exp's reduction, 2^k (e^r - 1) + (2^k - 1)
#define FP_EXPM1_LO -30.0f
FP_HD float fp_expm1_32(float x) {
    x = (x > FP_EXP_HI) ? FP_EXP_HI : x;
    x = (x < FP_EXPM1_LO) ? FP_EXPM1_LO : x;
    const float s = fp_fma(x, FP_EXP_LOG2E, FP_EXP_SHIFT);
    const float kf = fp_sub(s, FP_EXP_SHIFT);
    const int k = (int)fp_float_as_u32(s) - FP_EXP_SHIFT_BITS;
    float r = fp_fma(kf, -FP_EXP_LN2_C1, x);
    r = fp_fma(kf, -FP_EXP_LN2_C2, r);
    float q = fp_fma(FP_EXP_P8, r, FP_EXP_P7);
    q = fp_fma(q, r, FP_EXP_P6);
    q = fp_fma(q, r, FP_EXP_P5);
    q = fp_fma(q, r, FP_EXP_P4);
    q = fp_fma(q, r, FP_EXP_P3);
    q = fp_fma(q, r, FP_EXP_P2);
    const float u = fp_fma(q, fp_mul(r, r), r);
    const float h = fp_pow2i(k - 1);
    const float v = fp_mul(2.0f, fp_fma(h, u, fp_sub(h, 0.5f)));
    return (k == 0) ? u : v;
}

// tanh(z) = -m / (2 + m), m = expm1(-2|z|), with the sign of z (fastpoly.stream.fmath_train.tanh32)
FP_HD float fp_tanh32(float z) {
    const float em = fp_expm1_32(fp_mul(-2.0f, fp_absf(z)));
    const float t = fp_div(-em, fp_add(2.0f, em));
    return (z >= 0.0f) ? t : -t;
}

// erf(z) (fastpoly.stream.fmath_train.erf32; ERF_SMALL / ERF_MID coefficients, constant term first):
// a + a Q(a^2) for a = |z| < 1, 1 - exp(P(a - 2.46)) for a < 3.92, else 1; the sign of z
#define FP_ERF_S0 0x1.06eba8p-3f
#define FP_ERF_S1 -0x1.81273ep-2f
#define FP_ERF_S2 0x1.ce2cf8p-4f
#define FP_ERF_S3 -0x1.b7f910p-6f
#define FP_ERF_S4 0x1.5405d0p-8f
#define FP_ERF_S5 -0x1.a3f7e8p-11f
#define FP_ERF_S6 0x1.496cbep-14f
#define FP_ERF_M0 -0x1.e607aap+2f
#define FP_ERF_M1 -0x1.51be02p+2f
#define FP_ERF_M2 -0x1.e2985cp-1f
#define FP_ERF_M3 -0x1.6f41b8p-7f
#define FP_ERF_M4 0x1.277992p-9f
#define FP_ERF_M5 -0x1.d26854p-12f
#define FP_ERF_M6 0x1.25b90ap-14f
#define FP_ERF_M7 -0x1.594370p-16f
#define FP_ERF_M8 0x1.c7df1cp-23f
#define FP_ERF_T0 0x1.3ae148p+1f
#define FP_ERF_ONE 0x1.f5c290p+1f
#define FP_TWO_OVER_SQRT_PI 0x1.20dd76p+0f
#define FP_DERF_ZCAP 12.0f
FP_HD float fp_erf32(float z) {
    const float a = fp_absf(z);
    const float s = fp_mul(a, a);
    float q = fp_fma(FP_ERF_S6, s, FP_ERF_S5);
    q = fp_fma(q, s, FP_ERF_S4);
    q = fp_fma(q, s, FP_ERF_S3);
    q = fp_fma(q, s, FP_ERF_S2);
    q = fp_fma(q, s, FP_ERF_S1);
    q = fp_fma(q, s, FP_ERF_S0);
    const float small = fp_fma(a, q, a);
    const float t = fp_sub(a, FP_ERF_T0);
    float p = fp_fma(FP_ERF_M8, t, FP_ERF_M7);
    p = fp_fma(p, t, FP_ERF_M6);
    p = fp_fma(p, t, FP_ERF_M5);
    p = fp_fma(p, t, FP_ERF_M4);
    p = fp_fma(p, t, FP_ERF_M3);
    p = fp_fma(p, t, FP_ERF_M2);
    p = fp_fma(p, t, FP_ERF_M1);
    p = fp_fma(p, t, FP_ERF_M0);
    const float mid = fp_sub(1.0f, fp_exp32(p));
    const float r = (a < 1.0f) ? small : ((a >= FP_ERF_ONE) ? 1.0f : mid);
    return (z >= 0.0f) ? r : -r;
}

// e * f'(z) of the smooth activations (fastpoly.stream.fmath_train.d_tanh32 / d_sigmoid32 / d_erf32)
FP_HD float fp_d_tanh32(float z, float e) {
    const float E = fp_exp32(fp_mul(-2.0f, fp_absf(z)));
    const float w = fp_add(1.0f, E);
    return fp_mul(e, fp_div(fp_div(fp_mul(4.0f, E), w), w));
}
FP_HD float fp_d_sigmoid32(float z, float e) {
    const float E = fp_exp32(-fp_absf(z));
    const float w = fp_add(1.0f, E);
    return fp_mul(e, fp_div(fp_div(E, w), w));
}
FP_HD float fp_d_erf32(float z, float e) {
    float a = fp_absf(z);
    a = (a > FP_DERF_ZCAP) ? FP_DERF_ZCAP : a;
    const float hi = fp_mul(a, a);
    const float lo = fp_fma(a, a, -hi);
    const float E = fp_exp32(-hi);
    return fp_mul(e, fp_mul(FP_TWO_OVER_SQRT_PI, fp_fma(-lo, E, E)));
}

// --- hidden activations: the trainers support the codes of FP_ACTMASK_TRAIN (the activation table) ----
// relu (as fp_sampler_act: NaN propagates) and identity are fused selects; tanh, erf and sigmoid keep
// their pre-activations for the backward pass (fp_train_smooth)
FP_HD bool fp_train_smooth(int code) { return code == FP_ACT_TANH || code == FP_ACT_ERF || code == FP_ACT_SIGMOID; }
FP_HD float fp_train_act(int code, float z) {
    if (code == FP_ACT_TANH) return fp_tanh32(z);
    if (code == FP_ACT_ERF) return fp_erf32(z);
    if (code == FP_ACT_SIGMOID) return fp_sigmoid32(z);
    return (code == FP_ACT_RELU && z < 0.0f) ? 0.0f : z;
}
// e * f'(z) of a smooth activation
FP_HD float fp_train_dact(int code, float z, float e) {
    if (code == FP_ACT_TANH) return fp_d_tanh32(z, e);
    if (code == FP_ACT_ERF) return fp_d_erf32(z, e);
    return fp_d_sigmoid32(z, e);
}

// --- losses --------------------------------------------------------------------------------------
// d loss / d z of one point of a minibatch of nb points (nbf = float(nb)), y in {0, 1}
FP_HD float fp_loss_grad(int loss, float z, float y, float nbf) {
    if (loss == FP_LOSS_CE) return fp_div(fp_sub(fp_sigmoid32(z), y), nbf);
    return fp_div(fp_mul(2.0f, fp_sub(z, y)), nbf);
}

// train-loss accumulation of one point: s + softplus(y ? -z : z) (ce) or fma(z - y, z - y, s) (mse)
FP_HD float fp_loss_acc(int loss, float s, float z, float y) {
    if (loss == FP_LOSS_CE) return fp_add(s, fp_softplus32((y != 0.0f) ? -z : z));
    const float dz = fp_sub(z, y);
    return fp_fma(dz, dz, s);
}

// --- minibatch order ---------------------------------------------------------------------------------
// Philox blocks per epoch shuffle of m points (fastpoly.sgd.plan.blocks_per_epoch)
FP_HD int fp_blocks_per_epoch(int m) {
    const int b = (m - 1 + 3) / 4;
    return b > 1 ? b : 1;
}

// The 4 words of shuffle block jb of epoch e (0-based) of run `index`.
FP_HD fp_u32x4 fp_shuffle_block(fp_u64 seed, fp_u64 index, int epoch, int bpe, int jb) {
    return fp_stream_block(seed, index, (fp_u32)((fp_u64)epoch * (fp_u64)bpe + (fp_u64)jb), FP_SGD_STREAM);
}

// Fisher--Yates from the identity with words w[0 .. m-2]: for t = m-1 .. 1, u = (w[m-1-t] * (t+1)) >> 32,
// swap perm[t] and perm[u] (fastpoly.sgd.reference.epoch_order).
FP_HD void fp_fisher_yates(const fp_u32* w, int m, int* perm) {
    for (int t = 0; t < m; ++t) perm[t] = t;
    for (int t = m - 1; t > 0; --t) {
        const int u = (int)(((fp_u64)w[m - 1 - t] * (fp_u64)(t + 1)) >> 32);
        const int tmp = perm[t];
        perm[t] = perm[u];
        perm[u] = tmp;
    }
}

// --- optimiser ---------------------------------------------------------------------------------------
struct fp_opt {
    int kind;      // FP_OPT_*
    int nesterov;  // sgd with momentum only
    int eps_in_sqrt;  // Adagrad / RMSprop: sqrt(v + eps) (Keras 3) or sqrt(v) + eps (tf.keras 2.x)
    float nlr;     // -lr
    float mu, b1, b2, eps, c1, c2;  // c1 = 1 - b1, c2 = 1 - b2 (float32)
    float lr, rho, crho, acc0;      // crho = 1 - rho (float32); acc0: Adagrad's initial accumulator
};

// Recipe.floats(), laid out by fastpoly.model.optimizers.RECIPE_FLOATS (FP_RF_* offsets)
FP_HD fp_opt fp_opt_load(int kind, int nesterov, int eps_in_sqrt, const float* f) {
    fp_opt o;
    o.kind = kind;
    o.nesterov = nesterov;
    o.eps_in_sqrt = eps_in_sqrt;
    o.nlr = -f[FP_RF_LR];
    o.mu = f[FP_RF_MOMENTUM];
    o.b1 = f[FP_RF_BETA1];
    o.b2 = f[FP_RF_BETA2];
    o.eps = f[FP_RF_EPS];
    o.c1 = f[FP_RF_ONE_MINUS_BETA1];
    o.c2 = f[FP_RF_ONE_MINUS_BETA2];
    o.lr = f[FP_RF_LR];
    o.rho = f[FP_RF_RHO];
    o.crho = f[FP_RF_ONE_MINUS_RHO];
    o.acc0 = f[FP_RF_INITIAL_ACCUMULATOR];
    return o;
}

// Does the optimiser keep state s1 (momentum buffer / Adam m / Adagrad accumulator / RMSprop v) and
// s2 (Adam v / RMSprop momentum)?  The order of OPTIMIZERS[...].used_state in fastpoly.model.optimizers.
FP_HD bool fp_opt_has_s1(const fp_opt& o) {
    return o.kind == FP_OPT_ADAM || o.kind == FP_OPT_ADAGRAD || o.kind == FP_OPT_RMSPROP || o.mu != 0.0f;
}
FP_HD bool fp_opt_has_s2(const fp_opt& o) { return o.kind == FP_OPT_ADAM || (o.kind == FP_OPT_RMSPROP && o.mu != 0.0f); }
// The value s1 starts from in every run (Adagrad: its initial accumulator; else 0).
FP_HD float fp_opt_s1_init(const fp_opt& o) { return o.kind == FP_OPT_ADAGRAD ? o.acc0 : 0.0f; }

// The Adagrad / RMSprop denominator of the second-moment state v.
FP_HD float fp_opt_den(const fp_opt& o, float v) {
    return o.eps_in_sqrt ? fp_sqrt(fp_add(v, o.eps)) : fp_add(fp_sqrt(v), o.eps);
}

// New value of parameter p with gradient g; bc1 = 1 - b1^t, bc2 = 1 - b2^t (Adam).
FP_HD float fp_opt_step(const fp_opt& o, float p, float g, float* s1, float* s2, float bc1, float bc2) {
    if (o.kind == FP_OPT_ADAM) {
        const float mm = fp_fma(o.b1, *s1, fp_mul(o.c1, g));
        const float vv = fp_fma(o.b2, *s2, fp_mul(fp_mul(o.c2, g), g));
        *s1 = mm;
        *s2 = vv;
        const float stp = fp_div(fp_div(mm, bc1), fp_add(fp_sqrt(fp_div(vv, bc2)), o.eps));
        return fp_fma(o.nlr, stp, p);
    }
    if (o.kind == FP_OPT_ADAGRAD) {  // Keras 3: acc += g*g; p -= lr*g / sqrt(acc + eps)
        const float acc = fp_fma(g, g, *s1);
        *s1 = acc;
        return fp_sub(p, fp_div(fp_mul(o.lr, g), fp_opt_den(o, acc)));
    }
    if (o.kind == FP_OPT_RMSPROP) {  // Keras 3, not centered: v = rho*v + (1-rho)*g*g; inc = lr*g / sqrt(v + eps)
        const float vv = fp_fma(o.rho, *s1, fp_mul(o.crho, fp_mul(g, g)));
        *s1 = vv;
        float inc = fp_div(fp_mul(o.lr, g), fp_opt_den(o, vv));
        if (o.mu != 0.0f) {
            inc = fp_fma(o.mu, *s2, inc);
            *s2 = inc;
        }
        return fp_sub(p, inc);
    }
    if (o.mu == 0.0f) return fp_fma(o.nlr, g, p);
    const float bf = fp_fma(o.mu, *s1, g);
    *s1 = bf;
    const float stp = o.nesterov ? fp_fma(o.mu, bf, g) : bf;
    return fp_fma(o.nlr, stp, p);
}

#endif  // FASTPOLY_TRAIN_CUH

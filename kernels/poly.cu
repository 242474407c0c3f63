// poly.cu -- evaluation of structured (sparse, layered) networks: fastpoly.poly.structured.
//
// One launch per layer. Thread (row n, neuron j):
//   z = bias[j];  z = z + data[p] * h[indices[p]]  for p in indptr[j] .. indptr[j+1]-1
// (CSR storage order, separately rounded multiply and add -- the reference's
// unfused `z + w*h` -- or, with FUSED, one fused multiply-add per step: the FMA
// rule of dense float32 networks, fastpoly.network.forward_reference), then
//   out = act(z)                       (shift == nullptr)
//   out = act(shift[j] + z) - act(shift[j])  computed without cancellation
// Activations are laid out neuron-major: h[k * N + n] (coalesced over rows n).
// Templates: T in {float, double}, FUSED in {0, 1}; instantiated through NVRTC
// name expressions such as fastpoly_csr_layer<float, 0>.
#include "fp_math.cuh"

#include "activations.cuh"  // FP_ACT_* codes, generated from fastpoly.activations.TABLE

__device__ __forceinline__ float fp_exp(float x) { return expf(x); }
__device__ __forceinline__ double fp_exp(double x) { return exp(x); }
__device__ __forceinline__ float fp_expm1(float x) { return expm1f(x); }
__device__ __forceinline__ double fp_expm1(double x) { return expm1(x); }
__device__ __forceinline__ float fp_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double fp_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float fp_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double fp_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float fp_erfx(float x) { return erff(x); }
__device__ __forceinline__ double fp_erfx(double x) { return erf(x); }
__device__ __forceinline__ float fp_absx(float x) { return fabsf(x); }
__device__ __forceinline__ double fp_absx(double x) { return fabs(x); }

__device__ __forceinline__ float fp_madd(float z, float w, float h, int fused) {
    return fused ? __fmaf_rn(w, h, z) : __fadd_rn(z, __fmul_rn(w, h));
}
__device__ __forceinline__ double fp_madd(double z, double w, double h, int fused) {
    return fused ? __fma_rn(w, h, z) : __dadd_rn(z, __dmul_rn(w, h));
}

template <typename T>
__device__ __forceinline__ T fp_sigmoid(T z) {
    const T e = fp_exp(-fp_absx(z));
    return (z >= T(0)) ? T(1) / (T(1) + e) : e / (T(1) + e);
}

template <typename T>
__device__ T fp_poly_act(int code, T z) {
    switch (code) {
        case FP_ACT_RELU: return (z < T(0)) ? T(0) : z;
        case FP_ACT_SQUARE: return z * z;
        case FP_ACT_SOFTPLUS: return ((z > T(0)) ? z : T(0)) + fp_log1p(fp_exp(-fp_absx(z)));
        case FP_ACT_EXP: return fp_exp(z);
        case FP_ACT_SIGMOID: return fp_sigmoid(z);
        case FP_ACT_TANH: return fp_tanh(z);
        case FP_ACT_SILU: return z * fp_sigmoid(z);
        case FP_ACT_GELU: return T((double)z * normcdf((double)z));  // float64, rounded once
        case FP_ACT_SIGN: return (z > T(0)) ? T(1) : ((z < T(0)) ? T(-1) : z);
        case FP_ACT_ERF: return fp_erfx(z);
        default: return z;
    }
}

// act(b + t) - act(b) without catastrophic cancellation where a formula exists
// (fastpoly.poly.structured.CENTERED).
// Phi(b+t) - Phi(b) in float64 without cancellation: 10-point Gauss-Legendre for |t| <= 1
// (the same rule as fastpoly.poly.structured._c_ndtr), a plain difference otherwise.
__device__ __forceinline__ double fp_c_ndtr(double t, double b) {
    if (fabs(t) > 1.0) return normcdf(b + t) - normcdf(b);
    const double gx[5] = {0.1488743389816312, 0.4333953941292472, 0.6794095682990244, 0.8650633666889845,
                          0.9739065285171717};
    const double gw[5] = {0.2955242247147529, 0.2692667193099963, 0.2190863625159820, 0.1494513491505806,
                          0.0666713443086881};
    const double half = 0.5 * t, mid = b + half;
    double q = 0.0;
    for (int i = 4; i >= 0; --i) {  // nodes in ascending order, as numpy's leggauss
        const double s = mid - half * gx[i];
        q += gw[i] * exp(-0.5 * s * s);
    }
    for (int i = 0; i < 5; ++i) {
        const double s = mid + half * gx[i];
        q += gw[i] * exp(-0.5 * s * s);
    }
    return q * half * 0.39894228040143267794;
}

template <typename T>
__device__ T fp_poly_centered(int code, T t, T b) {
    switch (code) {
        case FP_ACT_IDENTITY: return t;
        case FP_ACT_SQUARE: return t * (T(2) * b + t);
        case FP_ACT_SOFTPLUS: return fp_log1p(fp_sigmoid(b) * fp_expm1(t));
        case FP_ACT_EXP: return fp_exp(b) * fp_expm1(t);
        case FP_ACT_SIGMOID: return fp_sigmoid(b + t) * fp_sigmoid(-b) * (-fp_expm1(-t));
        case FP_ACT_TANH: {
            const T tb = fp_tanh(b), tt = fp_tanh(t);
            return tt * (T(1) - tb * tb) / (T(1) + tb * tt);
        }
        case FP_ACT_SILU: {
            const T sig_s = fp_sigmoid(b + t);
            return t * sig_s + b * (sig_s * fp_sigmoid(-b) * (-fp_expm1(-t)));
        }
        case FP_ACT_GELU: {
            const double td = (double)t, bd = (double)b;
            return T(td * normcdf(bd + td) + bd * fp_c_ndtr(td, bd));
        }
        default: return fp_poly_act<T>(code, b + t) - fp_poly_act<T>(code, b);
    }
}

template <typename T, int FUSED>
__global__ void fastpoly_csr_layer(long long N, int fan_out, const long long* __restrict__ indptr,
                                   const long long* __restrict__ indices, const T* __restrict__ data,
                                   const T* __restrict__ bias, const T* __restrict__ shift, int act,
                                   const T* __restrict__ hin, T* __restrict__ hout) {
    const long long n = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= N) return;
    for (int j = blockIdx.y; j < fan_out; j += gridDim.y) {
        T z = bias[j];
        const long long p1 = indptr[j + 1];
        for (long long p = indptr[j]; p < p1; ++p) z = fp_madd(z, data[p], hin[indices[p] * N + n], FUSED);
        hout[(long long)j * N + n] = shift ? fp_poly_centered<T>(act, z, shift[j]) : fp_poly_act<T>(act, z);
    }
}

#ifdef FASTPOLY_NVCC_CHECK
template __global__ void fastpoly_csr_layer<float, 0>(long long, int, const long long*, const long long*,
                                                      const float*, const float*, const float*, int, const float*,
                                                      float*);
template __global__ void fastpoly_csr_layer<float, 1>(long long, int, const long long*, const long long*,
                                                      const float*, const float*, const float*, int, const float*,
                                                      float*);
template __global__ void fastpoly_csr_layer<double, 0>(long long, int, const long long*, const long long*,
                                                       const double*, const double*, const double*, int,
                                                       const double*, double*);
#endif

// cuda_emu.h -- a CPU emulation of the CUDA execution model, enough for fastpoly's kernels.
//
// Include this, then the real kernel sources (kernels/sampler.cu, kernels/poly.cu), and
// compile with g++ -std=c++17 -O2 -ffp-contract=off -fno-strict-aliasing. The kernels then
// compile as they are, with the device branches of their headers (__CUDA_ARCH__ is defined),
// the CUDA intrinsics implemented here with correctly rounded host IEEE arithmetic.
//
// Execution model (see emu_runtime.cpp):
//   * each CUDA thread of a block is a fiber (its own stack; switched only inside the
//     barriers below), the threads of one block run on one host thread, blocks in turn;
//   * __syncthreads is a barrier of the block, __syncwarp / ballots / shuffles are barriers of
//     the warp's lanes in `mask`; a collective exchanges values through a per-warp buffer
//     (double-buffered, so one barrier per collective suffices);
//   * a fiber runs until it reaches a barrier, then the next fiber runs: a missing barrier shows
//     up as a lane that reads shared data its neighbours have not written yet;
//   * `__shared__` variables are thread_local statics (one per host thread = per block in turn);
//     the dynamic `extern __shared__` array is a thread_local buffer, poisoned (NaN bytes) before
//     every block and followed by a canary that is checked after it (a launch with too little
//     dynamic shared memory that writes past its end is reported);
//   * deadlocks (a barrier some threads never reach, a collective waiting for an exited lane,
//     __syncthreads with exited threads) are reported as launch errors, as are launch
//     configurations that a GPU would refuse (threads above __launch_bounds__, shared memory
//     above the limit without the opt-in attribute).
// Limits: host IEEE arithmetic (no FTZ, no intrinsic-accuracy differences); a barrier acts as
// a full memory fence; warps never diverge (as in these kernels: full masks everywhere).
#ifndef FASTPOLY_CUDA_EMU_H
#define FASTPOLY_CUDA_EMU_H

// system headers first: the kernels see __CUDA_ARCH__ only after them
#include <math.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

struct emu_dim3 {
    unsigned x, y, z;
};
typedef emu_dim3 dim3;
typedef emu_dim3 uint3;

namespace emu {

struct Fiber;  // emu_runtime.cpp
struct BlockCtx {
    emu_dim3 block_idx, block_dim, grid_dim;
};
extern thread_local Fiber* g_cur;
extern thread_local BlockCtx g_blk;
const emu_dim3& thread_idx();  // of the running fiber

// barriers and collectives (emu_runtime.cpp)
void syncthreads();
void syncwarp(unsigned mask);
unsigned ballot(unsigned mask, int pred);
unsigned long long shfl_raw(unsigned mask, unsigned long long v, int src_kind, int arg, int width);
[[noreturn]] void trap(const char* why);

enum { SHFL_IDX = 0, SHFL_XOR = 1, SHFL_DOWN = 2, SHFL_UP = 3 };

template <typename T>
inline T shfl(unsigned mask, T v, int kind, int arg, int width) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a type > 8 bytes");
    unsigned long long raw = 0;
    std::memcpy(&raw, &v, sizeof(T));
    raw = shfl_raw(mask, raw, kind, arg, width);
    T out;
    std::memcpy(&out, &raw, sizeof(T));
    return out;
}

}  // namespace emu

#define threadIdx (emu::thread_idx())
#define blockIdx (emu::g_blk.block_idx)
#define blockDim (emu::g_blk.block_dim)
#define gridDim (emu::g_blk.grid_dim)
#define warpSize 32

// --- qualifiers -------------------------------------------------------------------------------------
// internal linkage: every translation unit registers the instantiations it compiled
#define __global__ static
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// block-scope thread_local has static storage: one instance per host thread, i.e. per block
// (blocks run in turn on one host thread); `extern __shared__ T name[]` refers to the dynamic
// buffer that emu_runtime.cpp defines (fastpoly's kernels call it fp_smem).
#define __shared__ thread_local
#define __constant__

// --- vector types -----------------------------------------------------------------------------------
struct __attribute__((aligned(16))) float4 {
    float x, y, z, w;
};
struct __attribute__((aligned(8))) float2 {
    float x, y;
};

// --- synchronisation, warp collectives --------------------------------------------------------------
inline void __syncthreads() { emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xFFFFFFFFu) { emu::syncwarp(mask); }
inline void __threadfence() {}
inline void __threadfence_block() {}
inline unsigned __ballot_sync(unsigned mask, int pred) { return emu::ballot(mask, pred); }
inline int __any_sync(unsigned mask, int pred) { return emu::ballot(mask, pred) != 0u; }
inline int __all_sync(unsigned mask, int pred) { return emu::ballot(mask, !pred) == 0u; }
template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    return emu::shfl(mask, v, emu::SHFL_IDX, src, width);
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    return emu::shfl(mask, v, emu::SHFL_XOR, lane_mask, width);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return emu::shfl(mask, v, emu::SHFL_DOWN, (int)delta, width);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return emu::shfl(mask, v, emu::SHFL_UP, (int)delta, width);
}
[[noreturn]] inline void __trap() { emu::trap("__trap() called"); }

// --- atomics (compiler builtins; the emulator runs one block at a time, but stay honest) -------------
#define EMU_ATOMIC_INT(T)                                                                              \
    inline T atomicAdd(T* p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }               \
    inline T atomicSub(T* p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); }               \
    inline T atomicAnd(T* p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); }               \
    inline T atomicOr(T* p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }                 \
    inline T atomicXor(T* p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST); }               \
    inline T atomicExch(T* p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }             \
    inline T atomicCAS(T* p, T cmp, T v) {                                                             \
        __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);             \
        return cmp;                                                                                    \
    }                                                                                                  \
    inline T atomicMin(T* p, T v) {                                                                    \
        T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);                                                  \
        while (v < old && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) { \
        }                                                                                              \
        return old;                                                                                    \
    }                                                                                                  \
    inline T atomicMax(T* p, T v) {                                                                    \
        T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);                                                  \
        while (v > old && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) { \
        }                                                                                              \
        return old;                                                                                    \
    }
EMU_ATOMIC_INT(int)
EMU_ATOMIC_INT(unsigned int)
EMU_ATOMIC_INT(unsigned long long)
EMU_ATOMIC_INT(long long)
#undef EMU_ATOMIC_INT
inline float atomicAdd(float* p, float v) {
    unsigned old = __atomic_load_n(reinterpret_cast<unsigned*>(p), __ATOMIC_SEQ_CST), nv;
    do {
        float f;
        std::memcpy(&f, &old, 4);
        f = f + v;
        std::memcpy(&nv, &f, 4);
    } while (!__atomic_compare_exchange_n(reinterpret_cast<unsigned*>(p), &old, nv, false, __ATOMIC_SEQ_CST,
                                          __ATOMIC_SEQ_CST));
    float r;
    std::memcpy(&r, &old, 4);
    return r;
}

// --- integer and bit intrinsics ---------------------------------------------------------------------
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0F0F0F0Fu) | ((x & 0x0F0F0F0Fu) << 4);
    x = ((x >> 8) & 0x00FF00FFu) | ((x & 0x00FF00FFu) << 8);
    return (x >> 16) | (x << 16);
}
inline unsigned long long __brevll(unsigned long long x) {
    return ((unsigned long long)__brev((unsigned)x) << 32) | __brev((unsigned)(x >> 32));
}
template <typename T>
inline T __ldg(const T* p) { return *p; }

// --- float intrinsics: correctly rounded host IEEE (compile with -ffp-contract=off) --------------------
inline float __fmaf_rn(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return __builtin_sqrtf(a); }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline double __fma_rn(double a, double b, double c) { return __builtin_fma(a, b, c); }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __dsqrt_rn(double a) { return __builtin_sqrt(a); }
inline float __int2float_rn(int i) { return (float)i; }
inline float __uint2float_rn(unsigned i) { return (float)i; }
inline double __int2double_rn(int i) { return (double)i; }
inline unsigned __float_as_uint(float f) {
    unsigned u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline int __float_as_int(float f) {
    int u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline float __uint_as_float(unsigned u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline float __int_as_float(int u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline long long __double_as_longlong(double d) {
    long long u;
    std::memcpy(&u, &d, 8);
    return u;
}
inline double __longlong_as_double(long long u) {
    double d;
    std::memcpy(&d, &u, 8);
    return d;
}
// CUDA's normcdf: the host has erfc
inline double normcdf(double x) { return 0.5 * erfc(-x * 0.70710678118654752440); }
inline float normcdff(float x) { return (float)normcdf((double)x); }

// The kernels are compiled as device code from here on.
#define __CUDACC__ 1
#define __CUDA_ARCH__ 900
#define FASTPOLY_CUDA_EMU 1

#endif  // FASTPOLY_CUDA_EMU_H

// layers.cuh -- the layer program of the generic layer kernels (kernels/train_cnn.cu, kernels/sample_layers.cu):
// its kind codes and columns (fastpoly/backends/layer_program.py) and the float32 forward pass of one row,
// bit for bit the reference's layers (every multiply-add an explicit fp_fma, every other operation a
// correctly rounded fp_*; conv padding zeros accumulated as zeros).
#ifndef FASTPOLY_LAYERS_CUH
#define FASTPOLY_LAYERS_CUH

#include "fp_math.cuh"
#include "activations.cuh"  // FP_ACT_* codes (generated from fastpoly.activations.TABLE)
#include "train.cuh"  // fp_train_act: the trainers' own float32 tanh, erf, sigmoid (smooth activation layers)

#define FP_TL_COLS 17
#define FP_TL_DENSE 0
#define FP_TL_CONV 1
#define FP_TL_AVG 2
#define FP_TL_MAX 3
#define FP_TL_GAP 4
#define FP_TL_FLAT 5
#define FP_TL_RELU 6
#define FP_TL_IDENT 7
#define FP_TL_TANH 8
#define FP_TL_ERF 9
#define FP_TL_SIGMOID 10
// columns
#define C_KIND 0
#define C_IH 1
#define C_IW 2
#define C_IC 3
#define C_OH 4
#define C_OW 5
#define C_OC 6
#define C_K 7
#define C_S 8
#define C_PT 9
#define C_PL 10
#define C_WOFF 11
#define C_BOFF 12
#define C_ISZ 13
#define C_OSZ 14
#define C_AIN 15
#define C_AOUT 16

// the activation table's code of a smooth activation layer
__device__ inline int fp_tl_act_code(int kind) {
    return kind == FP_TL_TANH ? FP_ACT_TANH : (kind == FP_TL_ERF ? FP_ACT_ERF : FP_ACT_SIGMOID);
}

__device__ inline void fp_tl_fwd_row(const int* pr, const float* P, float* A, int r) {
    const int kind = pr[C_KIND], isz = pr[C_ISZ], osz = pr[C_OSZ];
    const float* x = A + pr[C_AIN] + (long long)r * isz;
    float* y = A + pr[C_AOUT] + (long long)r * osz;
    if (kind == FP_TL_DENSE) {
        const int wo = pr[C_WOFF], bo = pr[C_BOFF];
        for (int j = 0; j < osz; ++j) {
            float z = bo >= 0 ? P[bo + j] : 0.0f;
            const float* w = P + wo + (long long)j * isz;
            for (int k = 0; k < isz; ++k) z = fp_fma(x[k], w[k], z);
            y[j] = z;
        }
    } else if (kind == FP_TL_CONV) {
        const int ih = pr[C_IH], iw = pr[C_IW], ic = pr[C_IC], oh = pr[C_OH], ow = pr[C_OW], nf = pr[C_OC];
        const int K = pr[C_K], S = pr[C_S], pt = pr[C_PT], pl = pr[C_PL], wo = pr[C_WOFF], bo = pr[C_BOFF];
        for (int i = 0; i < oh; ++i)
            for (int j = 0; j < ow; ++j)
                for (int f = 0; f < nf; ++f) {
                    float z = bo >= 0 ? P[bo + f] : 0.0f;
                    const float* w = P + wo + f * K * K * ic;
                    for (int kh = 0; kh < K; ++kh) {
                        const int hh = i * S + kh - pt;
                        for (int kw = 0; kw < K; ++kw) {
                            const int ww = j * S + kw - pl;
                            const bool inb = hh >= 0 && hh < ih && ww >= 0 && ww < iw;
                            for (int c = 0; c < ic; ++c) {
                                const float xv = inb ? x[(hh * iw + ww) * ic + c] : 0.0f;
                                z = fp_fma(xv, w[(kh * K + kw) * ic + c], z);
                            }
                        }
                    }
                    y[(i * ow + j) * nf + f] = z;
                }
    } else if (kind == FP_TL_AVG || kind == FP_TL_MAX) {
        const int iw = pr[C_IW], ic = pr[C_IC], oh = pr[C_OH], ow = pr[C_OW], K = pr[C_K];
        const float div = fp_i2f_exact(K * K);
        for (int i = 0; i < oh; ++i)
            for (int j = 0; j < ow; ++j)
                for (int c = 0; c < ic; ++c) {
                    if (kind == FP_TL_AVG) {
                        float s = 0.0f;
                        for (int kh = 0; kh < K; ++kh)
                            for (int kw = 0; kw < K; ++kw) s = fp_add(s, x[((i * K + kh) * iw + j * K + kw) * ic + c]);
                        y[(i * ow + j) * ic + c] = fp_div(s, div);
                    } else {
                        float mx = x[((i * K) * iw + j * K) * ic + c];
                        for (int kh = 0; kh < K; ++kh)
                            for (int kw = 0; kw < K; ++kw) {
                                const float v = x[((i * K + kh) * iw + j * K + kw) * ic + c];
                                if (v > mx) mx = v;
                            }
                        y[(i * ow + j) * ic + c] = mx;
                    }
                }
    } else if (kind == FP_TL_GAP) {
        const int hw = pr[C_IH] * pr[C_IW], ic = pr[C_IC];
        const float div = fp_i2f_exact(hw);
        for (int c = 0; c < ic; ++c) {
            float s = 0.0f;
            for (int p = 0; p < hw; ++p) s = fp_add(s, x[p * ic + c]);
            y[c] = fp_div(s, div);
        }
    } else if (kind == FP_TL_RELU) {
        for (int k = 0; k < isz; ++k) y[k] = x[k] < 0.0f ? 0.0f : x[k];
    } else if (kind >= FP_TL_TANH) {
        const int code = fp_tl_act_code(kind);
        for (int k = 0; k < isz; ++k) y[k] = fp_train_act(code, x[k]);
    } else {
        for (int k = 0; k < isz; ++k) y[k] = x[k];
    }
}

#endif  // FASTPOLY_LAYERS_CUH

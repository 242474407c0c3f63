// GENERATED from the activation table in fastpoly/activations.py (cuda_preamble()). Do not edit;
// regenerate: python -c 'import fastpoly.activations as a; print(a.cuda_preamble(), end="")' > kernels/activations.cuh
// tests/model/test_activations.py fails when this file is stale, and when a kernel defines or uses
// an activation code that is not generated here.
#pragma once

#define FP_ACT_RELU 0  // max(z, 0)
#define FP_ACT_TANH 1  // tanh(z)
#define FP_ACT_ERF 2  // erf(z)
#define FP_ACT_SIGN 3  // sign(z) in {-1, 0, 1}
#define FP_ACT_IDENTITY 4  // z
#define FP_ACT_SQUARE 5  // z**2
#define FP_ACT_SOFTPLUS 6  // log(1 + exp(z))
#define FP_ACT_EXP 7  // exp(z)
#define FP_ACT_SIGMOID 8  // 1 / (1 + exp(-z))
#define FP_ACT_SILU 9  // z * sigmoid(z)
#define FP_ACT_GELU 10  // z * Phi(z)

// codes the CUDA kernels implement, per use (bit `code` set): Activation.support[use] has 'cupy'
#define FP_ACTMASK_SAMPLE 0x1fu  // relu, tanh, erf, sign, identity
#define FP_ACTMASK_TRAIN 0x117u  // relu, tanh, erf, identity, sigmoid
#define FP_ACTMASK_EVALUATE 0x1fu  // relu, tanh, erf, sign, identity
#define FP_ACTMASK_NNGP 0x0u  // none

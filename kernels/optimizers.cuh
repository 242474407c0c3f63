// GENERATED from the optimizer table in fastpoly/model/optimizers.py (cuda_preamble()). Do not edit;
// regenerate: python -c 'import fastpoly.model.optimizers as o; print(o.cuda_preamble(), end="")' > kernels/optimizers.cuh
// tests/model/test_model_optimizers.py fails when this file is stale, and when a kernel defines one of
// these constants by hand.
#pragma once

// optimizer codes (Recipe.ints()[FP_RI_OPTIMIZER])
#define FP_OPT_SGD 0
#define FP_OPT_ADAM 1
#define FP_OPT_ADAGRAD 2
#define FP_OPT_RMSPROP 3
// loss codes (Recipe.ints()[FP_RI_LOSS])
#define FP_LOSS_CE 0
#define FP_LOSS_MSE 1
// offsets in Recipe.floats() (float32)
#define FP_RF_LR 0
#define FP_RF_MOMENTUM 1
#define FP_RF_BETA1 2
#define FP_RF_BETA2 3
#define FP_RF_EPS 4
#define FP_RF_FIT_THRESHOLD 5
#define FP_RF_ONE_MINUS_BETA1 6
#define FP_RF_ONE_MINUS_BETA2 7
#define FP_RF_RHO 8
#define FP_RF_ONE_MINUS_RHO 9
#define FP_RF_INITIAL_ACCUMULATOR 10
#define FP_RF_COUNT 11
// offsets in Recipe.ints() (int64)
#define FP_RI_OPTIMIZER 0
#define FP_RI_LOSS 1
#define FP_RI_NESTEROV 2
#define FP_RI_BATCH_SIZE 3
#define FP_RI_MAX_EPOCHS 4
#define FP_RI_EPOCHS_AFTER_FIT 5
#define FP_RI_MIN_EPOCHS 6
#define FP_RI_EPS_IN_SQRT 7
#define FP_RI_COUNT 8

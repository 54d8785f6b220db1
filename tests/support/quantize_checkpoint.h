/* Quantized checkpoints for the tests, written the way the real ones are: a float checkpoint's
 * decoder-layer linear weights (names "model.layers.*_proj.weight") quantized to a source format
 * rotq reads, and, beside it, the dequantized model (every tensor as F64, its exact values), whose
 * rotation a rotation of the quantized checkpoint must equal bit for bit. */
#ifndef ROTQ_TESTS_QUANTIZE_CHECKPOINT_H
#define ROTQ_TESTS_QUANTIZE_CHECKPOINT_H

#include "common/error.h"

typedef enum quant_format {
  QUANT_FP8_BLOCK,   /* F8_E4M3 + weight_scale_inv F32 per 128×128 block (DeepSeek-V3, Qwen3-FP8) */
  QUANT_FP8_CHANNEL, /* F8_E4M3 + weight_scale BF16 [rows, 1] + input_scale (compressed-tensors) */
  QUANT_FP8_TENSOR,  /* F8_E5M2 + weight_scale F32 [1] (compressed-tensors, per tensor) */
  QUANT_MXFP4,       /* weight_blocks U8 [rows, cols/32, 16] + weight_scales U8 (E8M0) [rows, cols/32];
                        weights whose cols are not a multiple of 32 stay as they are */
} quant_format;

/* Writes dst (quantized, with config.json's quantization_config) and ref (dequantized, F64) from
 * the checkpoint src; both directories must exist and be empty. */
int quantize_checkpoint(const char *src, const char *dst, const char *ref, quant_format format, rotq_error *err);

#endif

/* Quantized source checkpoints: FP8 and MXFP4 tensors read as their exact values.
 *
 * Layouts read (the scale tensors are found by name next to the quantized one):
 *   - FP8 block (DeepSeek-V3/R1, Qwen3-FP8; quantization_config quant_method "fp8",
 *     weight_block_size [br, bc], 128×128 when absent): `X` F8_E4M3/F8_E5M2 [R, C] and
 *     `X_scale_inv` [ceil(R/br), ceil(C/bc)] (float): X[r][c] = code × scale_inv[r/br][c/bc]; the
 *     last block of a row or column may be partial.
 *   - FP8 per channel / per tensor (compressed-tensors "float-quantized"): `X` F8 [R, C] and
 *     `X_scale` [R, 1] or [R] (per channel) or one element (per tensor): X[r][c] = code × scale[r].
 *     The module's `input_scale` (activation scale) is dropped.
 *   - MXFP4 (gpt-oss): `P_blocks` U8 [..., G, 16] (32 E2M1 values a block, two a byte, low nibble
 *     first) and `P_scales` U8 [..., G] (E8M0: 2^(s − 127)) make the tensor `P` [..., G·32]:
 *     element 32·g + k of a row is nibble k of block g times its scale. This is the layout of
 *     transformers' convert_moe_packed_tensors before its final transpose(1, 2), which gpt-oss's
 *     expert tensors need: the rotation processor does it (rotate_command.h out_in_source), writing
 *     them [experts, in, out].
 * Every value is exact in a double (a code has at most 4 significant bits, a scale 24 or a power
 * of two). A scale tensor that is not finite (E8M0 0xFF) is refused when the checkpoint is opened;
 * an FP8 NaN code (E4M3 0x7F/0xFF, E5M2's inf/NaN) reads as NaN/inf, which rotq refuses as it
 * refuses any non-finite weight, naming the tensor and the element. */
#ifndef ROTQ_IO_QUANTIZED_H
#define ROTQ_IO_QUANTIZED_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "io/safetensors.h"

/* Pairs the count tensors of a checkpoint (all, sorted by name) with their scales: *logical gets the
 * quantized tensors as tensors with a scaling (newly allocated names; quantized_free frees them),
 * *visible (allocated) every tensor the checkpoint shows, sorted by name: the plain ones and the
 * logical ones, without the scale and input_scale tensors. config: config.json (its
 * quantization_config gives the FP8 block size). dir names the checkpoint in errors. */
int quantized_pair(const char *dir, const cJSON *config, const st_tensor *const *all, size_t count, st_tensor **logical,
                   size_t *logical_count, const st_tensor ***visible, size_t *visible_count, rotq_error *err);
void quantized_free(st_tensor *logical, size_t count);

/* Is t quantized (its codes scaled into values)? */
bool st_is_quantized(const st_tensor *t);
/* n elements of t from flat element `first` on, as their values (dequantized, exact): doubles,
 * doubles each multiplied by g[i] (one rounding), floats (one rounding). */
void st_to_f64(const st_tensor *t, size_t first, size_t n, double *dst);
void st_to_f64_scaled(const st_tensor *t, size_t first, size_t n, const double *g, double *dst);
void st_to_f32(const st_tensor *t, size_t first, size_t n, float *dst);
/* st_to_f32, then dst[i] = (float)(dst[i]·g[i]) (the product in double). */
void st_to_f32_scaled(const st_tensor *t, size_t first, size_t n, const double *g, float *dst);
/* Index (from first) of the first non-finite value among n elements of t from `first`, or n. */
size_t st_first_non_finite(const st_tensor *t, size_t first, size_t n);
/* The address of the byte holding element `first` of t, and the bytes of n elements from there. */
const unsigned char *st_address(const st_tensor *t, size_t first);
size_t st_span(const st_tensor *t, size_t first, size_t n);

#endif

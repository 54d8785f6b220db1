/* Fake quantization (quantize → dequantize, in floating point) as QuaRot measures it: the number
 * a b-bit kernel would compute, without the kernel. Rounding is to nearest, ties to even (as
 * torch.round). Bits 2..8 quantize; 16 means off (the values pass unchanged).
 *
 *   symmetric  (weights, activations):  scale = clip·max|x| / qmax, qmax = 2^(b−1) − 1,
 *                                       code  = clamp(round(x / scale), −qmax − 1, qmax)
 *   asymmetric (K and V in the cache):  lo = clip·min(x, 0), hi = clip·max(x, 0),
 *                                       scale = (hi − lo) / (2^b − 1), zero = round(−lo / scale),
 *                                       code  = clamp(round(x / scale) + zero, 0, 2^b − 1)
 *
 * A group whose values are all zero keeps them. */
#ifndef ROTQ_LINALG_QUANTIZE_H
#define ROTQ_LINALG_QUANTIZE_H

#include <stdbool.h>
#include <stddef.h>

#define QUANT_OFF 16 /* bits meaning "not quantized" */

/* The number formats a tensor can be fake-quantized to (weights and activations alike):
 *
 *   int     b-bit integers, symmetric, one scale per row (token, output channel) or group (above)
 *   fp8     FP8 E4M3 (OCP; max 448, no infinity), one scale amax/448 per row (weights: per
 *           output channel; activations: per token)
 *   mxfp4   OCP Microscaling MXFP4: FP4 E2M1 elements (±{0, 0.5, 1, 1.5, 2, 3, 4, 6}) in blocks of
 *           32 along the row, each block scaled by an E8M0 power of two 2^(⌊log2 amax⌋ − 2) (the
 *           MX v1.0 rule: emax of E2M1 is 2), elements saturating at ±6
 *   nvfp4   NVIDIA NVFP4: FP4 E2M1 in blocks of 16, each block scaled by an E4M3 scale, itself
 *           scaled by one FP32 scale per tensor (weights) or per token (activations, dynamic):
 *           global = amax / (6·448), block scale = E4M3(amax_block / 6 / global)·global
 *
 * Rounding is to nearest, ties to even, onto the element grid; a block whose values are all zero
 * keeps them. */
typedef enum quant_format { QUANT_INT, QUANT_FP8, QUANT_MXFP4, QUANT_NVFP4 } quant_format;

/* "int" | "fp8" | "mxfp4" | "nvfp4" → *f; -1 if unknown. */
int quant_format_parse(const char *name, quant_format *f);
const char *quant_format_name(quant_format f);
/* v rounded to nearest-even onto E4M3 (saturating at ±448) and onto E2M1 (saturating at ±6). */
double fp8_e4m3_round(double v);
double fp4_e2m1_round(double v);
/* Fake quantization of one row x[0..n) in a float format (fp8, mxfp4, nvfp4): its scales come
 * from the row (nvfp4's per-tensor scale from global_amax when > 0, else from the row). */
void fake_quant_format_f64(double *x, size_t n, quant_format f, double global_amax);
void fake_quant_format_f32(float *x, size_t n, quant_format f, double global_amax);

/* bits is 2..8 or 16. */
bool quant_bits_valid(int bits);

/* The symmetric codes of x[0..n) at the given bits and clip (1 = no clipping); returns the scale
 * (0 when x is all zeros, codes then 0). The codes' dequantized values are code · scale. */
double quant_symmetric_codes(const double *x, size_t n, int bits, double clip, int *codes);

/* Symmetric fake quantization of x[0..n) in place, one scale for the n values. */
void fake_quant_symmetric_f64(double *x, size_t n, int bits, double clip);
void fake_quant_symmetric_f32(float *x, size_t n, int bits, double clip);

/* Asymmetric fake quantization of x[0..n) in place, one scale and zero point for the n values. */
void fake_quant_asymmetric_f64(double *x, size_t n, int bits, double clip);
void fake_quant_asymmetric_f32(float *x, size_t n, int bits, double clip);

/* RTN of a weight w [rows, cols] in place: symmetric per output channel (row), or per group of
 * `group` consecutive input columns of a row when group > 0 (the last group may be shorter).
 * quant_weight_rtn_format does the same in a float format (fp8 per output channel, mxfp4/nvfp4 in
 * their blocks along the input, nvfp4's per-tensor scale from the whole weight). */
void quant_weight_rtn_f64(double *w, int rows, int cols, int bits, int group);
void quant_weight_rtn_f32(float *w, int rows, int cols, int bits, int group);
void quant_weight_rtn_format_f64(double *w, int rows, int cols, quant_format f);
void quant_weight_rtn_format_f32(float *w, int rows, int cols, quant_format f);

#endif

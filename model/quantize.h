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
#ifndef ROTQ_MODEL_QUANTIZE_H
#define ROTQ_MODEL_QUANTIZE_H

#include <stdbool.h>
#include <stddef.h>

#define QUANT_OFF 16 /* bits meaning "not quantized" */

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
 * `group` consecutive input columns of a row when group > 0 (the last group may be shorter). */
void quant_weight_rtn_f64(double *w, int rows, int cols, int bits, int group);
void quant_weight_rtn_f32(float *w, int rows, int cols, int bits, int group);

#endif

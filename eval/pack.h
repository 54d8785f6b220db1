/* Real (not fake) RTN quantization of one linear weight into the tensors of a compressed-tensors
 * checkpoint, as compressed-tensors 0.20.1 lays them out and vLLM loads them:
 *
 *   W4A16  format "pack-quantized": int4 codes per group of `group` input columns, stored as
 *          unsigned (code + 8) and packed 8 to a little-endian int32 word, element i of a row at
 *          bits 4·(i mod 8) of word i / 8 ("weight_packed" I32 [out, ⌈in/8⌉]);
 *          "weight_scale" [out, in/group] in the weight's dtype; "weight_shape" I64 [2] = {out, in};
 *          asymmetric also "weight_zero_point" I32 [⌈out/8⌉, in/group]: zero points (z − 8 stored
 *          as z, unsigned) packed the same way but along the output dimension (packed_dim 0).
 *          Decoding: w = (q − z) · scale, q and z the signed codes.
 *   W8A8   format "int-quantized": "weight" I8 [out, in], symmetric per output channel,
 *          "weight_scale" [out, 1] in the weight's dtype. w = q · scale.
 *   FP8    format "float-quantized": "weight" F8_E4M3 [out, in] (OCP E4M3, max 448), per output
 *          channel scale "weight_scale" [out, 1] in the weight's dtype. w = q · scale.
 *   FP8_BLOCK format "float-quantized", strategy "block" [128, 128] (DeepSeek-V3 style, compressed-
 *          tensors' FP8_BLOCK preset): "weight" F8_E4M3 [out, in], "weight_scale" [⌈out/128⌉,
 *          ⌈in/128⌉] in the weight's dtype, amax of each 128×128 block / 448 (partial blocks at the
 *          edges, as compressed-tensors' zero padding gives). w = q · scale[r/128][c/128].
 *   MXFP4A16 format "mxfp4-pack-quantized" (compressed-tensors' MXFP4A16 preset): E2M1 in groups of
 *          32 input columns, "weight_packed" U8 [out, in/2] packed as NVFP4's, "weight_scale" U8
 *          [out, in/32] E8M0 (2^(byte − 127)); the scale is compressed-tensors 0.20.1's
 *          generate_mx_scales: 2^(⌊log2 amax⌋ − 2), one power of two higher when amax's mantissa
 *          is at least 1.75 (round_to_power_2 adds a quarter of the leading binade before truncating)
 *          — not the MX v1.0 rule of linalg/quantize.h's mxfp4, which never rounds up. An all-zero
 *          group gets byte 0. w = q · 2^(byte − 127).
 *   NVFP4A16 format "nvfp4-pack-quantized": FP4 E2M1 weights in blocks of 16 input columns,
 *          "weight_packed" U8 [out, in/2] (element 2i in the low nibble, 2i+1 in the high one:
 *          sign bit 8, magnitude index into {0, 0.5, 1, 1.5, 2, 3, 4, 6}), "weight_scale" E4M3
 *          [out, in/16], "weight_global_scale" F32 [1] = 448·6 / amax(W): stored as compressed-tensors
 *          stores it, the reciprocal of the per-tensor scale. w = q · (scale / global_scale), the
 *          quotient and the product in float32, the result rounded to bfloat16 (compressed-tensors'
 *          decompression: unpack_fp4_from_uint8's bfloat16). Activations stay 16-bit.
 *
 * The rounding is rotq's RTN of linalg/quantize.h (symmetric: scale = amax / (2^(b−1) − 1), codes
 * clamp(round(x/scale), −2^(b−1), 2^(b−1) − 1); asymmetric: the range [min(x,0), max(x,0)], zero
 * = round(−lo/scale), codes clamp(round(x/scale) + zero, 0, 2^b − 1); fp8: scale = amax/448, codes
 * E4M3(x/scale); ties to even), with one difference the format forces (NVFP4A16: the block scale is
 * E4M3(amax_block / 6 · global_scale), global_scale = float32(2688 / amax), the codes E2M1(x /
 * (scale / global_scale)): linalg/quantize.h's nvfp4 with the per-tensor scale in its reciprocal,
 * float32 form); the scale is first
 * rounded to the dtype it is stored in, and the codes are computed with that stored scale. With a
 * float64 scale the dequantized weights are therefore linalg/quantize.h's fake-quantized ones bit
 * for bit; with any dtype they are exactly what a decoder of the format computes: (q − z)·scale in
 * the scale's dtype, which is one rounding of the exact product. */
#ifndef ROTQ_EVAL_PACK_H
#define ROTQ_EVAL_PACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/dtype.h"

typedef enum ct_scheme_kind { CT_W4A16, CT_W8A8, CT_FP8, CT_NVFP4A16, CT_MXFP4A16 } ct_scheme_kind;

typedef struct ct_scheme {
  ct_scheme_kind kind;
  int bits;       /* 4 (W4A16, NVFP4A16) or 8 */
  int group;      /* input columns per scale (W4A16; 16 for NVFP4A16); 0 = per output channel */
  bool symmetric; /* false: W4A16 with zero points */
  int block;      /* FP8 with block scales ("FP8_BLOCK"): 128 (rows and columns per scale); else 0 */
} ct_scheme;

/* "W4A16" | "W8A8" | "FP8" | "FP8_BLOCK" | "NVFP4A16" | "MXFP4A16" (case-insensitive) with the
 * W4A16 options → *s; -1 if the name is unknown or the options do not apply (asymmetric or a group
 * size for the others, group < 1). */
int ct_scheme_parse(const char *name, int group, bool asymmetric, ct_scheme *s);
/* "W4A16" / "W8A8" / "FP8" / "FP8_BLOCK" / "NVFP4A16" / "MXFP4A16". */
const char *ct_scheme_name(const ct_scheme *s);
/* The compressed-tensors format: "pack-quantized", "int-quantized", "float-quantized" (FP8 and
 * FP8_BLOCK), "nvfp4-pack-quantized", "mxfp4-pack-quantized". */
const char *ct_scheme_format(const ct_scheme *s);

/* How many tensors a quantized weight becomes, and their suffixes (after the module name). */
#define CT_MAX_PARTS 4
typedef enum ct_part { CT_PART_WEIGHT, CT_PART_SCALE, CT_PART_SHAPE, CT_PART_ZERO, CT_PART_GLOBAL } ct_part;
typedef struct ct_part_spec {
  ct_part part;
  const char *suffix;       /* "weight_packed", "weight", "weight_scale", "weight_shape", "weight_zero_point",
                               "weight_global_scale" */
  const char *stored_dtype; /* "I32", "I8", "U8", "F8_E4M3", "I64", "F32", or NULL: the weight's own dtype */
  int64_t shape[2];
  int ndim;
  size_t row_bytes; /* bytes per block of `ct_rows_per_block` output rows, see ct_quantize_rows */
} ct_part_spec;

/* Output rows quantized together so that every part's bytes for them are contiguous (the zero
 * points pack 8 rows to a word): 32; FP8_BLOCK: its 128 (a scale spans 128 rows). */
#define CT_ROW_BLOCK 32
int ct_row_block(const ct_scheme *s);

/* The tensors of a weight [rows, cols] of element dtype t, into parts[CT_MAX_PARTS]; returns
 * their count. Fails (-1) when the shape does not fit the scheme: cols not a multiple of the
 * group (W4A16, NVFP4A16) — the caller names the tensor. */
int ct_parts(const ct_scheme *s, int64_t rows, int64_t cols, dtype t, ct_part_spec *parts);

/* The output of quantizing rows [r0, r0 + n) (r0 a multiple of CT_ROW_BLOCK) of a weight:
 *   weight  packed words / int8 codes / E4M3 bytes / E2M1 nibble pairs of those rows, ct_weight_bytes(s, n, cols) bytes
 *   scale   n · groups scales, as doubles already rounded to the weight's dtype (NVFP4A16: E4M3
 *           values, stored by the caller as E4M3 bytes, ct_e4m3_encode)
 *   zero    asymmetric only: the packed zero-point words of those rows, ⌈n/8⌉ · groups int32
 *   fake    NULL or n · cols doubles: the dequantized weights (q − z)·scale, before the final
 *           rounding to the weight's dtype
 * global_amax is NVFP4A16's max |W| over the whole weight (ignored by the other schemes). */
size_t ct_weight_bytes(const ct_scheme *s, int64_t rows, int64_t cols);
int64_t ct_groups(const ct_scheme *s, int64_t cols);
/* Returns -1 when out of memory. */
int ct_quantize_rows(const ct_scheme *s, const double *w, int64_t n, int64_t cols, dtype t, double global_amax,
                     void *weight, double *scale, int32_t *zero, double *fake);
/* ct_quantize_rows of the int schemes (W4A16, W8A8) straight from bfloat16 rows (n · cols values),
 * without the fake output: the same bytes, scales and zero points (tests/test_quant_pack.c), about
 * 5× faster. The codes are divided in float: for bfloat16 values and a bfloat16 scale the float
 * quotient rounds to the same integer as the exact one (eval/pack.c says why). Returns 0 when it
 * did the work, 1 when s is not an int scheme (the caller then converts and uses
 * ct_quantize_rows), -1 when out of memory. */
int ct_quantize_rows_bf16(const ct_scheme *s, const uint16_t *w, int64_t n, int64_t cols, void *weight, double *scale,
                          int32_t *zero);
/* The int schemes (W4A16, W8A8) one value at a time, as ct_quantize_rows computes them (GPTQ uses
 * them: eval/gptq.h). ct_int_params: the stored scale (rounded to t) and the unsigned zero point
 * (2^(b−1) when symmetric) of a group x[0..n). ct_int_code: the unsigned code of v (signed code +
 * 2^(b−1) when symmetric); a group whose scale is 0 takes the zero point. ct_int_value: what a
 * decoder computes from it, (code − zero)·scale rounded to t. */
void ct_int_params(const ct_scheme *s, const double *x, size_t n, dtype t, double *scale, int *zero);
int ct_int_code(const ct_scheme *s, double v, double scale, int zero);
double ct_int_value(int code, double scale, int zero, dtype t);
/* The stored bytes of one row of unsigned codes u[0..cols): packed int4 words (W4A16) or int8. */
void ct_pack_int_row(const ct_scheme *s, const int *u, int64_t cols, void *weight);
/* The packed zero-point words [⌈n/8⌉, groups] of rows [0, n) (n from a multiple of 8) from the
 * unsigned zero points zeros [n, groups]; -1 when out of memory. */
int ct_pack_zero_points(const ct_scheme *s, const int *zeros, int64_t n, int64_t groups, int32_t *zero);

/* NVFP4A16's stored global scale of a weight whose max |W| is amax: float32(448·6 / amax), 1 when
 * that is not finite (compressed-tensors' generate_gparam). */
double ct_nvfp4_global_scale(double amax);

/* The E4M3 byte of v, which must lie on the E4M3 grid (fp8_e4m3_round's results). */
uint8_t ct_e4m3_encode(double v);

#endif

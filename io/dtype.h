/* Tensor element types of safetensors checkpoints and exact conversions to/from float/double.
 * Narrowing conversions round to nearest, ties to even (NaN stays NaN, overflow goes to inf). */
#ifndef ROTQ_IO_DTYPE_H
#define ROTQ_IO_DTYPE_H

#include <stddef.h>

/* The float types rotq reads and writes, then the storage types of quantized checkpoints, which it
 * only reads: FP8 (E4M3 as OCP's "fn" variant: no infinities, 0x7F/0xFF NaN, largest 448; E5M2
 * IEEE-like: 0x7C/0xFC ±inf, 0x7D-0x7F/0xFD-0xFF NaN), U8 (MXFP4 blocks and E8M0 scales, decoded
 * by io/checkpoint.c), and F4_E2M1, the packed MXFP4 values of a checkpoint's decoded tensor (two
 * a byte, low nibble first; never in a file's header). */
typedef enum dtype {
  DTYPE_F64,
  DTYPE_F32,
  DTYPE_F16,
  DTYPE_BF16,
  DTYPE_F8_E4M3,
  DTYPE_F8_E5M2,
  DTYPE_U8,
  DTYPE_F4_E2M1,
  DTYPE_I8,  /* compressed-tensors int-quantized weights */
  DTYPE_I32, /* compressed-tensors pack-quantized words */
  DTYPE_I64, /* compressed-tensors weight_shape */
  DTYPE_I4,  /* the int4 codes of pack-quantized words as a decoded tensor: two a byte, low nibble
                first, each stored unsigned as code + 8 (its value: the nibble − 8); never in a header */
  DTYPE_COUNT
} dtype;

/* Bytes per element (F4_E2M1: 1, but two elements share a byte: see dtype_bytes). */
size_t dtype_size(dtype t);
/* Bytes of n elements starting at element `first` counted from the start of the data, rounded
 * out to whole bytes (the offset of element `first` is dtype_bytes(t, 0, first)). */
size_t dtype_bytes(dtype t, size_t first, size_t n);
const char *dtype_name(dtype t); /* safetensors name: "F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "U8",
                                    "I8", "I32", "I64" */
/* 0 if name is one of the above (F4_E2M1 and I4 excepted: they are no safetensors dtype rotq
 * accepts), else -1. */
int dtype_parse(const char *name, dtype *t);
/* Is t an integer type (I8, I32, I64, I4, U8)? Their values are the integers (I4: nibble − 8). */
int dtype_is_integer(dtype t);
/* Can rotq write tensors of type t (F64, F32, F16, BF16)? */
int dtype_is_float(dtype t);

/* The values of single codes, exactly (the tables every conversion below uses; tests compare them
 * with an independent formula): FP8 E4M3 and E5M2 bytes, FP4 E2M1 nibbles (0..15), and E8M0 scale
 * bytes (2^(s − 127); 0xFF is NaN). */
double fp8_e4m3_value(unsigned char code);
double fp8_e5m2_value(unsigned char code);
double fp4_e2m1_value(unsigned code);
double e8m0_value(unsigned char code);
/* dst[i] = value(src[i]) × scale for n FP8 codes of type t (F8_E4M3 or F8_E5M2): one rounding,
 * none when the product is exact (a float32 scale, or a power of two, with a code: always). */
void fp8_to_f64_scaled(dtype t, const unsigned char *src, double scale, double *dst, size_t n);

/* n elements of type t at src → double/float at dst (exact for every source type; F8 codes are
 * their unscaled values, U8 the integers, F4_E2M1 the unscaled nibbles from element 0 of src). */
void dtype_to_f64(dtype t, const void *src, double *dst, size_t n);
void dtype_to_f32(dtype t, const void *src, float *dst, size_t n); /* F64 → F32 rounds (RNE) */
/* dtype_to_f64, then each element multiplied by scale[i] (one rounding: the conversion is exact);
 * for rows of up to a few thousand elements, which stay in the L1 cache in between. */
void dtype_to_f64_scaled(dtype t, const void *src, const double *scale, double *dst, size_t n);
/* dst[i] = (float)(x[i]·scale[i]), x[i] = dtype_to_f32's value, the product in double: what
 * dtype_to_f32 and then that product element by element give. */
void dtype_to_f32_scaled(dtype t, const void *src, const double *scale, float *dst, size_t n);
/* n doubles/floats → type t at dst, one rounding (RNE). F8_E4M3: beyond ±448 (once rounded) NaN,
 * as the format has no infinity; F8_E5M2 overflows to ±inf; U8: rounded and clamped to 0..255
 * (NaN → 0); F4_E2M1: not written (rotq never writes packed FP4). */
void dtype_from_f64(dtype t, const double *src, void *dst, size_t n);
void dtype_from_f32(dtype t, const float *src, void *dst, size_t n);

#endif

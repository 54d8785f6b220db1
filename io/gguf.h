/* A GGUF file (llama.cpp's checkpoint format, versions 2 and 3), mapped read-only. The file is
 * untrusted input: gguf_open validates it completely before returning (magic, version, every
 * metadata key/value of every type with arrays and strings bounds-checked, no duplicate keys or
 * tensor names, general.alignment a power of two, tensor infos: 1..4 dimensions, a known type,
 * rows a whole number of blocks, offsets aligned and laid out back to back as ggml writes them,
 * every tensor's bytes inside the file). Every error names the file, and the key or tensor.
 *
 * gguf_dequantize turns a tensor of type F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K or Q6_K into
 * float32, computing exactly what ggml's reference dequantize_row_* functions compute. Dimensions
 * are in ggml's order: ne[0] is the innermost (contiguous) one, so a PyTorch [out, in] weight is
 * ne = {in, out}. */
#ifndef ROTQ_IO_GGUF_H
#define ROTQ_IO_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

/* ggml tensor types (the ids stored in the file); the ones rotq dequantizes. */
enum {
  GGUF_TENSOR_F32 = 0,
  GGUF_TENSOR_F16 = 1,
  GGUF_TENSOR_Q4_0 = 2,
  GGUF_TENSOR_Q4_1 = 3,
  GGUF_TENSOR_Q8_0 = 8,
  GGUF_TENSOR_Q4_K = 12,
  GGUF_TENSOR_Q6_K = 14,
  GGUF_TENSOR_BF16 = 30,
};

/* Metadata value types. */
typedef enum gguf_value_type {
  GGUF_VALUE_UINT8 = 0,
  GGUF_VALUE_INT8 = 1,
  GGUF_VALUE_UINT16 = 2,
  GGUF_VALUE_INT16 = 3,
  GGUF_VALUE_UINT32 = 4,
  GGUF_VALUE_INT32 = 5,
  GGUF_VALUE_FLOAT32 = 6,
  GGUF_VALUE_BOOL = 7,
  GGUF_VALUE_STRING = 8,
  GGUF_VALUE_ARRAY = 9,
  GGUF_VALUE_UINT64 = 10,
  GGUF_VALUE_INT64 = 11,
  GGUF_VALUE_FLOAT64 = 12,
} gguf_value_type;

typedef struct gguf_kv {
  char *key;
  gguf_value_type type;
  /* scalars: an integer or bool in i (unsigned 64-bit values above INT64_MAX in u), a float in f */
  int64_t i;
  uint64_t u;
  double f;
  /* STRING: the bytes inside the mapping (not NUL-terminated) */
  const char *str;
  uint64_t str_len;
  /* ARRAY: element type, count and the first element's bytes inside the mapping */
  gguf_value_type array_type;
  uint64_t array_count;
  const uint8_t *array_data;
} gguf_kv;

typedef struct gguf_tensor {
  char *name;
  int ndim;
  int64_t ne[GGUF_MAX_DIMS]; /* ne[0] innermost; unused dimensions are 1 */
  uint32_t type;
  uint64_t offset;  /* from the start of the data section */
  const void *data; /* inside the mapping */
  size_t nbytes;
} gguf_tensor;

typedef struct gguf_file {
  char *path;
  void *map;
  size_t size;
  uint32_t version;
  size_t alignment;
  size_t kv_count;
  gguf_kv *kvs; /* in file order */
  size_t tensor_count;
  gguf_tensor *tensors; /* in file order */
  bool mapped;          /* map is gguf_open's mapping (unmapped by gguf_close) */
} gguf_file;

/* Maps and validates path. On error f needs no gguf_close. */
int gguf_open(const char *path, gguf_file *f, rotq_error *err);
/* Validates a GGUF image already in memory (data must outlive f; f->map is not owned). */
int gguf_parse(const char *path, const void *data, size_t size, gguf_file *f, rotq_error *err);
void gguf_close(gguf_file *f);

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);
/* A metadata value by key, converted: any integer type (non-negative for _uint), any float or
 * integer type for _float, a string (NUL-terminated copy into buf). Errors name the file and key:
 * absent, wrong type, out of range. */
int gguf_get_uint(const gguf_file *f, const char *key, uint64_t *value, rotq_error *err);
int gguf_get_float(const gguf_file *f, const char *key, double *value, rotq_error *err);
int gguf_get_string(const gguf_file *f, const char *key, char *buf, size_t size, rotq_error *err);

/* "F32", "Q4_K", ...; "type N" for the others (a static buffer: not thread-safe for unknown ids). */
const char *gguf_type_name(uint32_t type);
/* Whether gguf_dequantize handles the type. */
bool gguf_type_supported(uint32_t type);
/* Elements per block and bytes per block of a type (0 if unknown to rotq). */
size_t gguf_block_elements(uint32_t type);
size_t gguf_block_bytes(uint32_t type);
/* Number of elements of a tensor. */
size_t gguf_numel(const gguf_tensor *t);

/* n elements (a multiple of the type's block size) of type at src → float32 at dst. */
void gguf_dequantize_blocks(uint32_t type, const void *src, float *dst, size_t n);
/* A whole tensor → float32 at dst (gguf_numel floats); an error for an unsupported type. */
int gguf_dequantize(const gguf_file *f, const gguf_tensor *t, float *dst, rotq_error *err);

#endif

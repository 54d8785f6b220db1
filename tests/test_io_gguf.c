/* GGUF reader and rotq convert: files the test writes itself. Each supported tensor type is
 * dequantized to values computed here by hand, element by element (independently of the block
 * loops of io/gguf.c); every metadata value type is read back; truncated and corrupt files are
 * refused with a message naming the file (and the key or tensor), never a crash; and
 * models/stories260K written as a GGUF the way llama.cpp's converter writes it (q/k rows
 * permuted for interleaved RoPE) converts back to the original safetensors bit for bit. */
#include "support/test_support.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "io/json_file.h"
#include "io/safetensors.h"

static char *dir;

static int setup(void **state) {
  (void)state;
  dir = scratch_dir("io-gguf");
  return 0;
}

static int teardown(void **state) {
  (void)state;
  scratch_remove(dir);
  free(dir);
  return 0;
}

/* ---- a GGUF writer ---------------------------------------------------------------------- */

typedef struct buf {
  uint8_t *p;
  size_t n, cap;
} buf;

static void put(buf *b, const void *data, size_t n) {
  if (n == 0) return;
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 64;
    b->p = realloc(b->p, b->cap);
    assert_non_null(b->p);
  }
  memcpy(b->p + b->n, data, n);
  b->n += n;
}

static void put_le(buf *b, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++) {
    uint8_t c = (uint8_t)(v >> (8 * i));
    put(b, &c, 1);
  }
}

static void put_str(buf *b, const char *s) {
  put_le(b, strlen(s), 8);
  put(b, s, strlen(s));
}

typedef struct gguf_builder {
  buf kvs;
  size_t kv_count;
  buf infos;
  size_t tensor_count;
  buf data;
  uint32_t version;
  size_t alignment;
} gguf_builder;

static void kv_header(gguf_builder *g, const char *key, uint32_t type) {
  put_str(&g->kvs, key);
  put_le(&g->kvs, type, 4);
  g->kv_count++;
}

static void kv_u32(gguf_builder *g, const char *key, uint32_t v) {
  kv_header(g, key, GGUF_VALUE_UINT32);
  put_le(&g->kvs, v, 4);
}

static void kv_f32(gguf_builder *g, const char *key, float v) {
  uint32_t bits;
  memcpy(&bits, &v, 4);
  kv_header(g, key, GGUF_VALUE_FLOAT32);
  put_le(&g->kvs, bits, 4);
}

static void kv_string(gguf_builder *g, const char *key, const char *v) {
  kv_header(g, key, GGUF_VALUE_STRING);
  put_str(&g->kvs, v);
}

/* A tensor: dims in ggml order (ne[0] innermost), its bytes appended to the data section at the
 * next aligned offset (or at offset_override when it is not UINT64_MAX). */
static void add_tensor_at(gguf_builder *g, const char *name, int ndim, const int64_t *ne, uint32_t type,
                          const void *bytes, size_t nbytes, uint64_t offset_override) {
  while (g->data.n % g->alignment) put_le(&g->data, 0, 1);
  uint64_t offset = g->data.n;
  put(&g->data, bytes, nbytes);
  put_str(&g->infos, name);
  put_le(&g->infos, (uint64_t)ndim, 4);
  for (int d = 0; d < ndim; d++) put_le(&g->infos, (uint64_t)ne[d], 8);
  put_le(&g->infos, type, 4);
  put_le(&g->infos, offset_override != UINT64_MAX ? offset_override : offset, 8);
  g->tensor_count++;
}

static void add_tensor(gguf_builder *g, const char *name, int ndim, const int64_t *ne, uint32_t type, const void *bytes,
                       size_t nbytes) {
  add_tensor_at(g, name, ndim, ne, type, bytes, nbytes, UINT64_MAX);
}

static gguf_builder builder(void) {
  gguf_builder g = {{0}, 0, {0}, 0, {0}, 3, GGUF_DEFAULT_ALIGNMENT};
  return g;
}

/* The whole file image (caller frees). */
static uint8_t *build(gguf_builder *g, size_t *size) {
  buf out = {0};
  put(&out, "GGUF", 4);
  put_le(&out, g->version, 4);
  put_le(&out, g->tensor_count, 8);
  put_le(&out, g->kv_count, 8);
  put(&out, g->kvs.p, g->kvs.n);
  put(&out, g->infos.p, g->infos.n);
  while (out.n % g->alignment) put_le(&out, 0, 1);
  if (g->data.n) put(&out, g->data.p, g->data.n);
  free(g->kvs.p);
  free(g->infos.p);
  free(g->data.p);
  *size = out.n;
  return out.p;
}

static const char *write_image(const char *name, const uint8_t *image, size_t size) {
  static char paths[4][4096];
  static int next;
  char *path = paths[next++ % 4];
  snprintf(path, sizeof paths[0], "%s/%s", dir, name);
  FILE *file = fopen(path, "wb");
  assert_non_null(file);
  assert_int_equal(fwrite(image, 1, size, file), size);
  fclose(file);
  return path;
}

/* ---- hand-made blocks --------------------------------------------------------------------- */

#define H_ONE 0x3C00       /* 1.0 as IEEE half */
#define H_HALF 0x3800      /* 0.5 */
#define H_QUARTER 0x3400   /* 0.25 */
#define H_TWO 0x4000       /* 2.0 */
#define H_MINUS_ONE 0xBC00 /* -1.0 */

static void set_half(uint8_t *p, uint16_t h) {
  p[0] = (uint8_t)h;
  p[1] = (uint8_t)(h >> 8);
}

/* Q4_0: d = 0.5, qs[j] = j | (15 - j) << 4: y[j] = (j - 8)/2, y[j + 16] = (7 - j)/2. */
static void make_q4_0(uint8_t b[18], float y[32]) {
  set_half(b, H_HALF);
  for (int j = 0; j < 16; j++) {
    b[2 + j] = (uint8_t)(j | (15 - j) << 4);
    y[j] = (j - 8) * 0.5f;
    y[j + 16] = (7 - j) * 0.5f;
  }
}

/* Q4_1: d = 0.25, m = -1, qs[j] = j | (j ^ 5) << 4. */
static void make_q4_1(uint8_t b[20], float y[32]) {
  set_half(b, H_QUARTER);
  set_half(b + 2, H_MINUS_ONE);
  for (int j = 0; j < 16; j++) {
    b[4 + j] = (uint8_t)(j | (j ^ 5) << 4);
    y[j] = j * 0.25f - 1.0f;
    y[j + 16] = (j ^ 5) * 0.25f - 1.0f;
  }
}

/* Q8_0: d = 2 (first block) or 0.5, qs[j] = j - 16 (+ block). */
static void make_q8_0(uint8_t b[34], float y[32], int block) {
  set_half(b, block ? H_HALF : H_TWO);
  for (int j = 0; j < 32; j++) {
    int8_t q = (int8_t)(j - 16 + block);
    memcpy(b + 2 + j, &q, 1);
    y[j] = q * (block ? 0.5f : 2.0f);
  }
}

/* Q4_K: d = 1, dmin = 0.5, eight 6-bit scales and mins packed as ggml packs them, qs[i] = 7i. */
static void make_q4_k(uint8_t b[144], float y[256]) {
  static const int sc[8] = {1, 2, 3, 4, 17, 33, 50, 63}, mn[8] = {0, 5, 10, 20, 18, 40, 63, 7};
  memset(b, 0, 144);
  set_half(b, H_ONE);
  set_half(b + 2, H_HALF);
  uint8_t *scales = b + 4, *qs = b + 16;
  for (int k = 0; k < 4; k++) {
    scales[k] = (uint8_t)(sc[k] | (sc[k + 4] >> 4) << 6);
    scales[k + 4] = (uint8_t)(mn[k] | (mn[k + 4] >> 4) << 6);
    scales[k + 8] = (uint8_t)((sc[k + 4] & 0xF) | (mn[k + 4] & 0xF) << 4);
  }
  for (int i = 0; i < 128; i++) qs[i] = (uint8_t)(7 * i);
  for (int e = 0; e < 256; e++) {
    int sub = e / 32, chunk = e / 64, high = (e % 64) / 32, l = e % 32;
    int q = high ? qs[chunk * 32 + l] >> 4 : qs[chunk * 32 + l] & 0xF;
    y[e] = 1.0f * sc[sub] * q - 0.5f * mn[sub];
  }
}

/* Q6_K: ql[i] = 13i, qh[i] = 29i, scales[k] = k - 8 (negative too), d = 0.5. */
static void make_q6_k(uint8_t b[210], float y[256]) {
  uint8_t *ql = b, *qh = b + 128;
  int8_t *scales = (int8_t *)(b + 192);
  for (int i = 0; i < 128; i++) ql[i] = (uint8_t)(13 * i);
  for (int i = 0; i < 64; i++) qh[i] = (uint8_t)(29 * i);
  for (int k = 0; k < 16; k++) scales[k] = (int8_t)(k - 8);
  set_half(b + 208, H_HALF);
  for (int e = 0; e < 256; e++) {
    int n = e / 128, r = e % 128, g = r / 32, l = r % 32;
    int lo = ql[n * 64 + l + (g & 1 ? 32 : 0)];
    int nib = g < 2 ? lo & 0xF : lo >> 4;
    int q = (nib | ((qh[n * 32 + l] >> (2 * g)) & 3) << 4) - 32;
    y[e] = 0.5f * scales[n * 8 + l / 16 + 2 * g] * q;
  }
}

/* A file with one tensor of every supported type (and the expected values of each). */
typedef struct expected {
  const char *name;
  uint32_t type;
  float values[512];
  size_t n;
} expected;

static expected cases[8];

static uint8_t *all_types_image(size_t *size) {
  gguf_builder g = builder();
  kv_string(&g, "general.architecture", "test");
  kv_u32(&g, "general.alignment", 32);
  uint8_t block[512];
  int64_t ne[2];
  size_t c = 0;

  cases[c] = (expected){"q4_0", GGUF_TENSOR_Q4_0, {0}, 32};
  make_q4_0(block, cases[c].values);
  ne[0] = 32;
  add_tensor(&g, "q4_0", 1, ne, GGUF_TENSOR_Q4_0, block, 18);
  c++;

  cases[c] = (expected){"q4_1", GGUF_TENSOR_Q4_1, {0}, 32};
  make_q4_1(block, cases[c].values);
  add_tensor(&g, "q4_1", 1, ne, GGUF_TENSOR_Q4_1, block, 20);
  c++;

  cases[c] = (expected){"q8_0", GGUF_TENSOR_Q8_0, {0}, 64}; /* two rows of one block */
  make_q8_0(block, cases[c].values, 0);
  make_q8_0(block + 34, cases[c].values + 32, 1);
  ne[0] = 32;
  ne[1] = 2;
  add_tensor(&g, "q8_0", 2, ne, GGUF_TENSOR_Q8_0, block, 68);
  c++;

  cases[c] = (expected){"q4_k", GGUF_TENSOR_Q4_K, {0}, 256};
  make_q4_k(block, cases[c].values);
  ne[0] = 256;
  add_tensor(&g, "q4_k", 1, ne, GGUF_TENSOR_Q4_K, block, 144);
  c++;

  cases[c] = (expected){"q6_k", GGUF_TENSOR_Q6_K, {0}, 256};
  make_q6_k(block, cases[c].values);
  add_tensor(&g, "q6_k", 1, ne, GGUF_TENSOR_Q6_K, block, 210);
  c++;

  static const uint16_t f16[4] = {0x3C00, 0xC000, 0x3800, 0x7BFF};
  cases[c] = (expected){"f16", GGUF_TENSOR_F16, {1.0f, -2.0f, 0.5f, 65504.0f}, 4};
  for (int i = 0; i < 4; i++) set_half(block + 2 * i, f16[i]);
  ne[0] = 4;
  add_tensor(&g, "f16", 1, ne, GGUF_TENSOR_F16, block, 8);
  c++;

  cases[c] = (expected){"bf16", GGUF_TENSOR_BF16, {1.0f, -3.0f}, 2};
  set_half(block, 0x3F80);
  set_half(block + 2, 0xC040);
  ne[0] = 2;
  add_tensor(&g, "bf16", 1, ne, GGUF_TENSOR_BF16, block, 4);
  c++;

  cases[c] = (expected){"f32", GGUF_TENSOR_F32, {3.25f, -1e-3f, 7.0f}, 3};
  memcpy(block, cases[c].values, 12);
  ne[0] = 3;
  add_tensor(&g, "f32", 1, ne, GGUF_TENSOR_F32, block, 12);
  c++;
  return build(&g, size);
}

static void test_dequantizes_every_type(void **state) {
  (void)state;
  size_t size;
  uint8_t *image = all_types_image(&size);
  const char *path = write_image("types.gguf", image, size);
  free(image);
  gguf_file f;
  rotq_error err = {{0}};
  assert_int_equal(gguf_open(path, &f, &err), 0);
  assert_int_equal(f.version, 3);
  assert_int_equal(f.tensor_count, 8);
  for (size_t c = 0; c < 8; c++) {
    const gguf_tensor *t = gguf_find_tensor(&f, cases[c].name);
    assert_non_null(t);
    assert_int_equal(t->type, cases[c].type);
    assert_int_equal(gguf_numel(t), cases[c].n);
    assert_true(gguf_type_supported(t->type));
    float got[512];
    assert_int_equal(gguf_dequantize(&f, t, got, &err), 0);
    for (size_t i = 0; i < cases[c].n; i++)
      if (got[i] != cases[c].values[i])
        fail_msg("%s[%zu]: got %.9g, expected %.9g", cases[c].name, i, got[i], cases[c].values[i]);
  }
  assert_string_equal(gguf_type_name(GGUF_TENSOR_Q4_K), "Q4_K");
  gguf_close(&f);
}

static void test_reads_every_metadata_type(void **state) {
  (void)state;
  gguf_builder g = builder();
  g.version = 2;
  kv_header(&g, "u8", GGUF_VALUE_UINT8);
  put_le(&g.kvs, 200, 1);
  kv_header(&g, "i8", GGUF_VALUE_INT8);
  put_le(&g.kvs, 0xFE, 1);
  kv_header(&g, "u16", GGUF_VALUE_UINT16);
  put_le(&g.kvs, 60000, 2);
  kv_header(&g, "i16", GGUF_VALUE_INT16);
  put_le(&g.kvs, 0xFFFD, 2);
  kv_u32(&g, "u32", 4000000000u);
  kv_header(&g, "i32", GGUF_VALUE_INT32);
  put_le(&g.kvs, 0xFFFFFFFC, 4);
  kv_f32(&g, "f32", 1e-5f);
  kv_header(&g, "bool", GGUF_VALUE_BOOL);
  put_le(&g.kvs, 1, 1);
  kv_string(&g, "str", "llama");
  kv_header(&g, "u64", GGUF_VALUE_UINT64);
  put_le(&g.kvs, 123456789012345ULL, 8);
  kv_header(&g, "i64", GGUF_VALUE_INT64);
  put_le(&g.kvs, (uint64_t)-5, 8);
  double pi = 3.141592653589793;
  uint64_t bits;
  memcpy(&bits, &pi, 8);
  kv_header(&g, "f64", GGUF_VALUE_FLOAT64);
  put_le(&g.kvs, bits, 8);
  kv_header(&g, "strings", GGUF_VALUE_ARRAY);
  put_le(&g.kvs, GGUF_VALUE_STRING, 4);
  put_le(&g.kvs, 3, 8);
  put_str(&g.kvs, "a");
  put_str(&g.kvs, "");
  put_str(&g.kvs, "ccc");
  kv_header(&g, "ints", GGUF_VALUE_ARRAY);
  put_le(&g.kvs, GGUF_VALUE_INT32, 4);
  put_le(&g.kvs, 2, 8);
  put_le(&g.kvs, 7, 4);
  put_le(&g.kvs, 9, 4);
  size_t size;
  uint8_t *image = build(&g, &size);
  const char *path = write_image("meta.gguf", image, size);
  free(image);
  gguf_file f;
  rotq_error err = {{0}};
  assert_int_equal(gguf_open(path, &f, &err), 0);
  assert_int_equal(f.version, 2);
  assert_int_equal(f.kv_count, 14);
  assert_int_equal(f.tensor_count, 0);
  uint64_t u;
  double d;
  char s[16];
  assert_int_equal(gguf_get_uint(&f, "u8", &u, &err), 0);
  assert_int_equal(u, 200);
  assert_int_equal(gguf_find_kv(&f, "i8")->i, -2);
  assert_int_equal(gguf_get_uint(&f, "u16", &u, &err), 0);
  assert_int_equal(u, 60000);
  assert_int_equal(gguf_find_kv(&f, "i16")->i, -3);
  assert_int_equal(gguf_get_uint(&f, "u32", &u, &err), 0);
  assert_int_equal(u, 4000000000u);
  assert_int_equal(gguf_find_kv(&f, "i32")->i, -4);
  assert_int_equal(gguf_get_float(&f, "f32", &d, &err), 0);
  assert_true(d == (double)1e-5f);
  assert_int_equal(gguf_find_kv(&f, "bool")->i, 1);
  assert_int_equal(gguf_get_string(&f, "str", s, sizeof s, &err), 0);
  assert_string_equal(s, "llama");
  assert_int_equal(gguf_get_uint(&f, "u64", &u, &err), 0);
  assert_int_equal(u, 123456789012345ULL);
  assert_int_equal(gguf_find_kv(&f, "i64")->i, -5);
  assert_int_equal(gguf_get_float(&f, "f64", &d, &err), 0);
  assert_true(d == pi);
  const gguf_kv *strings = gguf_find_kv(&f, "strings");
  assert_int_equal(strings->array_type, GGUF_VALUE_STRING);
  assert_int_equal(strings->array_count, 3);
  const gguf_kv *ints = gguf_find_kv(&f, "ints");
  assert_int_equal(ints->array_count, 2);
  assert_int_equal(ints->array_data[4], 9);
  /* wrong types and absent keys are errors naming the file and key */
  assert_int_equal(gguf_get_uint(&f, "i64", &u, &err), -1);
  assert_non_null(strstr(err.message, "'i64' is negative"));
  assert_int_equal(gguf_get_uint(&f, "str", &u, &err), -1);
  assert_non_null(strstr(err.message, "not an integer"));
  assert_int_equal(gguf_get_string(&f, "u8", s, sizeof s, &err), -1);
  assert_int_equal(gguf_get_float(&f, "missing", &d, &err), -1);
  assert_non_null(strstr(err.message, path));
  assert_non_null(strstr(err.message, "'missing' is missing"));
  gguf_close(&f);
}

/* Every prefix of a valid file is refused with a message naming the file (under ASan an
 * out-of-bounds read would show: each prefix is a heap copy of exactly that length). */
static void test_every_truncation_is_refused(void **state) {
  (void)state;
  size_t size;
  uint8_t *image = all_types_image(&size);
  for (size_t len = 0; len < size; len++) {
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, image, len);
    gguf_file f;
    rotq_error err = {{0}};
    if (gguf_parse("cut.gguf", copy, len, &f, &err) == 0) {
      /* only the padding after the last tensor may be cut away: the last tensor is intact */
      assert_true(len >= size - 32);
      gguf_close(&f);
    } else {
      if (!strstr(err.message, "cut.gguf")) fail_msg("length %zu: message without the file: %s", len, err.message);
    }
    free(copy);
  }
  free(image);
}

/* A one-tensor file with a header variation; must be refused with each fragment in the message. */
typedef enum corruption {
  BAD_MAGIC,
  VERSION_1,
  VERSION_4,
  UNKNOWN_TYPE,
  ZERO_DIM,
  FIVE_DIMS,
  PARTIAL_BLOCK,
  MISALIGNED_OFFSET,
  DUPLICATE_TENSOR,
  DUPLICATE_KEY,
  BAD_ALIGNMENT,
  BAD_BOOL,
  UNKNOWN_VALUE_TYPE,
  NESTED_ARRAY,
  HUGE_STRING,
  HUGE_COUNTS,
} corruption;

static void expect_refused(corruption c, const char *const *fragments) {
  gguf_builder g = builder();
  uint8_t block[68] = {0};
  make_q8_0(block, (float[32]){0}, 0);
  int64_t ne[5] = {32, 1, 1, 1, 1};
  switch (c) {
  case DUPLICATE_KEY:
    kv_u32(&g, "k", 1);
    kv_u32(&g, "k", 2);
    break;
  case BAD_ALIGNMENT: kv_u32(&g, "general.alignment", 48); break;
  case BAD_BOOL:
    kv_header(&g, "flag", GGUF_VALUE_BOOL);
    put_le(&g.kvs, 2, 1);
    break;
  case UNKNOWN_VALUE_TYPE: kv_header(&g, "odd", 13); break;
  case NESTED_ARRAY:
    kv_header(&g, "nested", GGUF_VALUE_ARRAY);
    put_le(&g.kvs, GGUF_VALUE_ARRAY, 4);
    put_le(&g.kvs, 0, 8);
    break;
  case HUGE_STRING:
    kv_header(&g, "s", GGUF_VALUE_STRING);
    put_le(&g.kvs, 1ULL << 62, 8);
    break;
  default: break;
  }
  switch (c) {
  case UNKNOWN_TYPE: add_tensor(&g, "w", 1, ne, 99, block, 34); break;
  case ZERO_DIM:
    ne[1] = 0;
    add_tensor(&g, "w", 2, ne, GGUF_TENSOR_Q8_0, block, 34);
    break;
  case FIVE_DIMS: add_tensor(&g, "w", 5, ne, GGUF_TENSOR_Q8_0, block, 34); break;
  case PARTIAL_BLOCK:
    ne[0] = 33;
    add_tensor(&g, "w", 1, ne, GGUF_TENSOR_Q8_0, block, 34);
    break;
  case MISALIGNED_OFFSET: add_tensor_at(&g, "w", 1, ne, GGUF_TENSOR_Q8_0, block, 34, 4); break;
  case DUPLICATE_TENSOR:
    add_tensor(&g, "w", 1, ne, GGUF_TENSOR_Q8_0, block, 34);
    add_tensor(&g, "w", 1, ne, GGUF_TENSOR_Q8_0, block, 34);
    break;
  default: add_tensor(&g, "w", 1, ne, GGUF_TENSOR_Q8_0, block, 34); break;
  }
  if (c == VERSION_1) g.version = 1;
  if (c == VERSION_4) g.version = 4;
  size_t size;
  uint8_t *image = build(&g, &size);
  if (c == BAD_MAGIC) image[0] = 'X';
  if (c == HUGE_COUNTS) image[8 + 7] = 0x7F; /* tensor count ~2^62 */
  const char *path = write_image("bad.gguf", image, size);
  free(image);
  gguf_file f;
  rotq_error err = {{0}};
  assert_int_equal(gguf_open(path, &f, &err), -1);
  if (!strstr(err.message, path)) fail_msg("message without the file: %s", err.message);
  for (; *fragments; fragments++)
    if (!strstr(err.message, *fragments)) fail_msg("'%s' not in message: %s", *fragments, err.message);
  assert_null(f.map);
}

#define REFUSED(c, ...) expect_refused(c, (const char *const[]){__VA_ARGS__, NULL})

static void test_corrupt_files_are_refused(void **state) {
  (void)state;
  REFUSED(BAD_MAGIC, "not a GGUF file");
  REFUSED(VERSION_1, "version 1");
  REFUSED(VERSION_4, "GGUF version 4");
  REFUSED(UNKNOWN_TYPE, "tensor 'w'", "unknown ggml type 99");
  REFUSED(ZERO_DIM, "tensor 'w'", "dimension 1 is 0");
  REFUSED(FIVE_DIMS, "tensor 'w'", "5 dimensions");
  REFUSED(PARTIAL_BLOCK, "tensor 'w'", "not a whole number of Q8_0 blocks");
  REFUSED(MISALIGNED_OFFSET, "tensor 'w'", "data offset 4, expected 0");
  REFUSED(DUPLICATE_TENSOR, "tensor 'w' appears twice");
  REFUSED(DUPLICATE_KEY, "metadata key 'k' appears twice");
  REFUSED(BAD_ALIGNMENT, "general.alignment", "power of two");
  REFUSED(BAD_BOOL, "metadata key 'flag'", "bool");
  REFUSED(UNKNOWN_VALUE_TYPE, "metadata key 'odd'", "unknown value type 13");
  REFUSED(NESTED_ARRAY, "metadata key 'nested'", "array");
  REFUSED(HUGE_STRING, "implausible");
  REFUSED(HUGE_COUNTS, "truncated");
}

static void test_unsupported_type_is_an_error_naming_the_tensor(void **state) {
  (void)state;
  gguf_builder g = builder();
  uint8_t block[176] = {0};
  int64_t ne[1] = {256};
  add_tensor(&g, "blk.0.ffn_up.weight", 1, ne, 13 /* Q5_K */, block, 176);
  size_t size;
  uint8_t *image = build(&g, &size);
  const char *path = write_image("q5k.gguf", image, size);
  free(image);
  gguf_file f;
  rotq_error err = {{0}};
  assert_int_equal(gguf_open(path, &f, &err), 0); /* a valid file */
  float out[256];
  assert_int_equal(gguf_dequantize(&f, &f.tensors[0], out, &err), -1);
  assert_non_null(strstr(err.message, path));
  assert_non_null(strstr(err.message, "tensor 'blk.0.ffn_up.weight': type Q5_K is not supported"));
  gguf_close(&f);
}

/* ---- rotq convert: stories260K through GGUF and back ---------------------------------------- */

/* llama.cpp's convert_hf_to_gguf permute(): HF row h·d + s·d/2 + i → GGUF row h·d + 2i + s. */
static float *permute_rows(const float *w, int64_t rows, int64_t cols, int heads) {
  float *out = malloc((size_t)(rows * cols) * sizeof *out);
  int64_t d = rows / heads, half = d / 2;
  for (int64_t h = 0; h < heads; h++)
    for (int64_t s = 0; s < 2; s++)
      for (int64_t i = 0; i < half; i++)
        memcpy(out + (h * d + 2 * i + s) * cols, w + (h * d + s * half + i) * cols, (size_t)cols * sizeof(float));
  return out;
}

static const char *stories_gguf(const char *name, const char *architecture, bool extra_tensor) {
  st_file st;
  rotq_error err = {{0}};
  assert_int_equal(st_open(source_path("models/stories260K/model.safetensors"), &st, &err), 0);
  gguf_builder g = builder();
  kv_string(&g, "general.architecture", architecture);
  kv_u32(&g, "llama.block_count", 5);
  kv_u32(&g, "llama.context_length", 512);
  kv_u32(&g, "llama.embedding_length", 64);
  kv_u32(&g, "llama.feed_forward_length", 172);
  kv_u32(&g, "llama.attention.head_count", 8);
  kv_u32(&g, "llama.attention.head_count_kv", 4);
  kv_f32(&g, "llama.rope.freq_base", 10000.0f);
  kv_f32(&g, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
  kv_u32(&g, "llama.rope.dimension_count", 8);
  kv_u32(&g, "tokenizer.ggml.bos_token_id", 1);
  kv_u32(&g, "tokenizer.ggml.eos_token_id", 2);
  static const char *const hf[] = {"input_layernorm",  "self_attn.q_proj", "self_attn.k_proj",
                                   "self_attn.v_proj", "self_attn.o_proj", "post_attention_layernorm",
                                   "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
  static const char *const gg[] = {"attn_norm", "attn_q",   "attn_k", "attn_v",  "attn_output",
                                   "ffn_norm",  "ffn_gate", "ffn_up", "ffn_down"};
  for (int j = -1; j < 5 * 9 + 1; j++) {
    char hname[96], gname[64];
    if (j == -1) {
      snprintf(hname, sizeof hname, "model.embed_tokens.weight");
      snprintf(gname, sizeof gname, "token_embd.weight");
    } else if (j == 45) {
      snprintf(hname, sizeof hname, "model.norm.weight");
      snprintf(gname, sizeof gname, "output_norm.weight");
    } else {
      snprintf(hname, sizeof hname, "model.layers.%d.%s.weight", j / 9, hf[j % 9]);
      snprintf(gname, sizeof gname, "blk.%d.%s.weight", j / 9, gg[j % 9]);
    }
    const st_tensor *t = st_find(&st, hname);
    assert_non_null(t);
    int64_t ne[2] = {t->ndim == 2 ? t->shape[1] : t->shape[0], t->ndim == 2 ? t->shape[0] : 1};
    int heads = j >= 0 && j % 9 == 1 ? 8 : j >= 0 && j % 9 == 2 ? 4 : 0;
    if (heads) {
      float *p = permute_rows(t->data, t->shape[0], t->shape[1], heads);
      add_tensor(&g, gname, t->ndim, ne, GGUF_TENSOR_F32, p, t->nbytes);
      free(p);
    } else {
      add_tensor(&g, gname, t->ndim, ne, GGUF_TENSOR_F32, t->data, t->nbytes);
    }
  }
  if (extra_tensor) {
    float freqs[4] = {1, 1, 1, 1};
    int64_t ne[1] = {4};
    add_tensor(&g, "rope_freqs.weight", 1, ne, GGUF_TENSOR_F32, freqs, sizeof freqs);
  }
  st_close(&st);
  size_t size;
  uint8_t *image = build(&g, &size);
  const char *path = write_image(name, image, size);
  free(image);
  return path;
}

static void test_convert_round_trips_stories260k(void **state) {
  (void)state;
  const char *gguf = stories_gguf("stories.gguf", "llama", false);
  char out[4200];
  snprintf(out, sizeof out, "%s/hf", dir);
  assert_int_equal(
      run_command("%s convert --gguf %s --output %s > %s/convert.log 2>&1", getenv("ROTQ_BIN"), gguf, out, dir), 0);
  st_file a, b;
  rotq_error err = {{0}};
  char path[4300];
  snprintf(path, sizeof path, "%s/model.safetensors", out);
  assert_int_equal(st_open(source_path("models/stories260K/model.safetensors"), &a, &err), 0);
  assert_int_equal(st_open(path, &b, &err), 0);
  assert_int_equal(a.count, b.count);
  for (size_t i = 0; i < a.count; i++) {
    const st_tensor *x = &a.tensors[i], *y = st_find(&b, x->name);
    if (!y) fail_msg("tensor '%s' missing from the conversion", x->name);
    assert_int_equal(x->ndim, y->ndim);
    for (int d = 0; d < x->ndim; d++) assert_int_equal(x->shape[d], y->shape[d]);
    assert_int_equal(y->dtype, DTYPE_F32);
    if (memcmp(x->data, y->data, x->nbytes) != 0) fail_msg("tensor '%s' differs", x->name);
  }
  st_close(&a);
  st_close(&b);
  snprintf(path, sizeof path, "%s/config.json", out);
  cJSON *c = json_file_read(path, &err);
  assert_non_null(c);
  assert_int_equal(cJSON_GetObjectItem(c, "hidden_size")->valueint, 64);
  assert_int_equal(cJSON_GetObjectItem(c, "num_key_value_heads")->valueint, 4);
  assert_int_equal(cJSON_GetObjectItem(c, "intermediate_size")->valueint, 172);
  assert_int_equal(cJSON_GetObjectItem(c, "vocab_size")->valueint, 512);
  assert_true(cJSON_GetObjectItem(c, "rms_norm_eps")->valuedouble == 1e-5);
  assert_true(cJSON_IsTrue(cJSON_GetObjectItem(c, "tie_word_embeddings")));
  assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(c, "architectures"), 0)->valuestring, "LlamaForCausalLM");
  cJSON_Delete(c);
  /* bf16 output: readable, and a second conversion into an existing directory needs --force */
  assert_int_equal(run_command("%s convert --gguf %s --output %s --dtype bf16 > %s/convert.log 2>&1",
                               getenv("ROTQ_BIN"), gguf, out, dir),
                   1);
  assert_int_equal(run_command("%s convert --gguf %s --output %s --dtype bf16 --force > %s/convert.log 2>&1 && "
                               "%s info --model %s | grep -q 'BF16 (47 tensors)'",
                               getenv("ROTQ_BIN"), gguf, out, dir, getenv("ROTQ_BIN"), out),
                   0);
}

static void test_convert_errors(void **state) {
  (void)state;
  const char *bin = getenv("ROTQ_BIN");
  assert_int_equal(run_command("%s convert --output %s/x > /dev/null 2>&1", bin, dir), 2);
  assert_int_equal(run_command("%s convert --gguf a --output b --dtype q4 > /dev/null 2>&1", bin), 2);
  const char *gpt2 = stories_gguf("gpt2.gguf", "gpt2", false);
  assert_int_equal(run_command("%s convert --gguf %s --output %s/gpt2 2> %s/err.txt", bin, gpt2, dir, dir), 1);
  assert_int_equal(
      run_command("grep -q \"^rotq convert: %s: metadata key 'general.architecture': 'gpt2'\" %s/err.txt", gpt2, dir),
      0);
  const char *extra = stories_gguf("extra.gguf", "llama", true);
  assert_int_equal(run_command("%s convert --gguf %s --output %s/extra 2> %s/err.txt", bin, extra, dir, dir), 1);
  assert_int_equal(
      run_command("grep -q \"^rotq convert: %s: tensor 'rope_freqs.weight': not part of\" %s/err.txt", extra, dir), 0);
  assert_int_equal(run_command("test ! -e %s/extra", dir), 0); /* nothing left behind */
  size_t size;
  uint8_t *image = all_types_image(&size);
  const char *cut = write_image("cut.gguf", image, size / 2);
  free(image);
  assert_int_equal(run_command("%s convert --gguf %s --output %s/cut 2> %s/err.txt", bin, cut, dir, dir), 1);
  assert_int_equal(run_command("grep -q \"^rotq convert: %s: truncated\" %s/err.txt", cut, dir), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dequantizes_every_type),
      cmocka_unit_test(test_reads_every_metadata_type),
      cmocka_unit_test(test_every_truncation_is_refused),
      cmocka_unit_test(test_corrupt_files_are_refused),
      cmocka_unit_test(test_unsupported_type_is_an_error_naming_the_tensor),
      cmocka_unit_test(test_convert_round_trips_stories260k),
      cmocka_unit_test(test_convert_errors),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

#include "io/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/dtype.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_MAX_NAME 64           /* ggml's GGML_MAX_NAME, with the NUL */
#define GGUF_MAX_STRING (1u << 30) /* a key or string value longer than this is corrupt */
#define QK_K 256

typedef struct type_info {
  uint32_t id;
  const char *name;
  size_t block_elements, block_bytes;
  bool supported;
} type_info;

static const type_info types[] = {
    {GGUF_TENSOR_F32, "F32", 1, 4, true},
    {GGUF_TENSOR_F16, "F16", 1, 2, true},
    {GGUF_TENSOR_Q4_0, "Q4_0", 32, 18, true},
    {GGUF_TENSOR_Q4_1, "Q4_1", 32, 20, true},
    {6, "Q5_0", 32, 22, false},
    {7, "Q5_1", 32, 24, false},
    {GGUF_TENSOR_Q8_0, "Q8_0", 32, 34, true},
    {9, "Q8_1", 32, 36, false},
    {10, "Q2_K", QK_K, 84, false},
    {11, "Q3_K", QK_K, 110, false},
    {GGUF_TENSOR_Q4_K, "Q4_K", QK_K, 144, true},
    {13, "Q5_K", QK_K, 176, false},
    {GGUF_TENSOR_Q6_K, "Q6_K", QK_K, 210, true},
    {15, "Q8_K", QK_K, 292, false},
    {24, "I8", 1, 1, false},
    {25, "I16", 1, 2, false},
    {26, "I32", 1, 4, false},
    {27, "I64", 1, 8, false},
    {28, "F64", 1, 8, false},
    {GGUF_TENSOR_BF16, "BF16", 1, 2, true},
};

static const type_info *type_lookup(uint32_t id) {
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
    if (types[i].id == id) return &types[i];
  return NULL;
}

const char *gguf_type_name(uint32_t type) {
  const type_info *t = type_lookup(type);
  if (t) return t->name;
  static char unknown[32];
  snprintf(unknown, sizeof unknown, "type %" PRIu32, type);
  return unknown;
}

bool gguf_type_supported(uint32_t type) {
  const type_info *t = type_lookup(type);
  return t && t->supported;
}

size_t gguf_block_elements(uint32_t type) {
  const type_info *t = type_lookup(type);
  return t ? t->block_elements : 0;
}

size_t gguf_block_bytes(uint32_t type) {
  const type_info *t = type_lookup(type);
  return t ? t->block_bytes : 0;
}

size_t gguf_numel(const gguf_tensor *t) {
  size_t n = 1;
  for (int d = 0; d < t->ndim; d++) n *= (size_t)t->ne[d];
  return n;
}

/* ---- parsing ---------------------------------------------------------------------------- */

typedef struct reader {
  const uint8_t *data;
  size_t size, pos;
  const char *path;
  rotq_error *err;
} reader;

static int need(reader *r, uint64_t n, const char *what) {
  if (n > r->size - r->pos)
    return rotq_fail(r->err, "%s: truncated: %s needs %" PRIu64 " bytes at offset %zu, the file has %zu", r->path, what,
                     n, r->pos, r->size);
  return 0;
}

static uint64_t le(const uint8_t *p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

static int read_u32(reader *r, uint32_t *v, const char *what) {
  if (need(r, 4, what) != 0) return -1;
  *v = (uint32_t)le(r->data + r->pos, 4);
  r->pos += 4;
  return 0;
}

static int read_u64(reader *r, uint64_t *v, const char *what) {
  if (need(r, 8, what) != 0) return -1;
  *v = le(r->data + r->pos, 8);
  r->pos += 8;
  return 0;
}

/* A string: u64 length, then the bytes (returned as a pointer into the data). */
static int read_string(reader *r, const char **s, uint64_t *len, const char *what) {
  if (read_u64(r, len, what) != 0) return -1;
  if (*len > GGUF_MAX_STRING)
    return rotq_fail(r->err, "%s: %s: string length %" PRIu64 " is implausible (corrupt file)", r->path, what, *len);
  if (need(r, *len, what) != 0) return -1;
  *s = (const char *)r->data + r->pos;
  r->pos += (size_t)*len;
  return 0;
}

/* A NUL-terminated copy of n bytes that need not be followed by a NUL (strndup may look past n). */
static char *copy_bytes(const char *s, size_t n) {
  char *c = malloc(n + 1);
  if (!c) return NULL;
  memcpy(c, s, n);
  c[n] = '\0';
  return c;
}

static size_t scalar_size(gguf_value_type t) {
  switch (t) {
  case GGUF_VALUE_UINT8:
  case GGUF_VALUE_INT8:
  case GGUF_VALUE_BOOL: return 1;
  case GGUF_VALUE_UINT16:
  case GGUF_VALUE_INT16: return 2;
  case GGUF_VALUE_UINT32:
  case GGUF_VALUE_INT32:
  case GGUF_VALUE_FLOAT32: return 4;
  case GGUF_VALUE_UINT64:
  case GGUF_VALUE_INT64:
  case GGUF_VALUE_FLOAT64: return 8;
  default: return 0;
  }
}

static bool value_type_known(uint32_t t) { return t <= GGUF_VALUE_FLOAT64; }

/* Decodes a scalar at p into kv's i/u/f. */
static int decode_scalar(const gguf_file *f, gguf_kv *kv, const uint8_t *p) {
  uint64_t raw = le(p, (int)scalar_size(kv->type));
  switch (kv->type) {
  case GGUF_VALUE_UINT8:
  case GGUF_VALUE_UINT16:
  case GGUF_VALUE_UINT32:
  case GGUF_VALUE_UINT64:
    kv->u = raw;
    kv->i = raw > INT64_MAX ? INT64_MAX : (int64_t)raw;
    break;
  case GGUF_VALUE_INT8: kv->i = (int8_t)raw; break;
  case GGUF_VALUE_INT16: kv->i = (int16_t)raw; break;
  case GGUF_VALUE_INT32: kv->i = (int32_t)raw; break;
  case GGUF_VALUE_INT64: kv->i = (int64_t)raw; break;
  case GGUF_VALUE_BOOL:
    if (raw > 1) return -1;
    kv->i = (int64_t)raw;
    break;
  case GGUF_VALUE_FLOAT32: {
    uint32_t bits = (uint32_t)raw;
    float v;
    memcpy(&v, &bits, 4);
    kv->f = v;
    break;
  }
  case GGUF_VALUE_FLOAT64: memcpy(&kv->f, &raw, 8); break;
  default: return -1;
  }
  if (kv->type != GGUF_VALUE_FLOAT32 && kv->type != GGUF_VALUE_FLOAT64) {
    if (kv->type != GGUF_VALUE_UINT64 && kv->type != GGUF_VALUE_UINT32 && kv->type != GGUF_VALUE_UINT16 &&
        kv->type != GGUF_VALUE_UINT8)
      kv->u = kv->i < 0 ? 0 : (uint64_t)kv->i;
    kv->f = kv->type == GGUF_VALUE_UINT64 ? (double)kv->u : (double)kv->i;
  }
  (void)f;
  return 0;
}

static int read_kv(reader *r, gguf_file *f, gguf_kv *kv, size_t index) {
  char what[96];
  snprintf(what, sizeof what, "metadata key %zu", index);
  const char *key;
  uint64_t key_len;
  if (read_string(r, &key, &key_len, what) != 0) return -1;
  if (key_len == 0) return rotq_fail(r->err, "%s: %s: empty key", r->path, what);
  if (memchr(key, '\0', (size_t)key_len)) return rotq_fail(r->err, "%s: %s: key contains a NUL byte", r->path, what);
  kv->key = copy_bytes(key, (size_t)key_len);
  if (!kv->key) return rotq_fail(r->err, "%s: out of memory", r->path);
  for (size_t j = 0; j < index; j++)
    if (strcmp(f->kvs[j].key, kv->key) == 0)
      return rotq_fail(r->err, "%s: metadata key '%s' appears twice", r->path, kv->key);
  snprintf(what, sizeof what, "metadata key '%.60s'", kv->key);
  uint32_t type;
  if (read_u32(r, &type, what) != 0) return -1;
  if (!value_type_known(type))
    return rotq_fail(r->err, "%s: metadata key '%s': unknown value type %" PRIu32, r->path, kv->key, type);
  kv->type = (gguf_value_type)type;
  if (kv->type == GGUF_VALUE_STRING) return read_string(r, &kv->str, &kv->str_len, what);
  if (kv->type == GGUF_VALUE_ARRAY) {
    uint32_t elem;
    if (read_u32(r, &elem, what) != 0) return -1;
    if (!value_type_known(elem) || elem == GGUF_VALUE_ARRAY)
      return rotq_fail(r->err, "%s: metadata key '%s': array of unsupported element type %" PRIu32, r->path, kv->key,
                       elem);
    kv->array_type = (gguf_value_type)elem;
    if (read_u64(r, &kv->array_count, what) != 0) return -1;
    kv->array_data = r->data + r->pos;
    if (elem == GGUF_VALUE_STRING) {
      for (uint64_t k = 0; k < kv->array_count; k++) {
        const char *s;
        uint64_t len;
        if (read_string(r, &s, &len, what) != 0) return -1;
      }
      return 0;
    }
    size_t size = scalar_size(kv->array_type);
    if (kv->array_count > (r->size - r->pos) / size)
      return rotq_fail(r->err, "%s: truncated: metadata key '%s': array of %" PRIu64 " elements runs past the end",
                       r->path, kv->key, kv->array_count);
    if (kv->array_type == GGUF_VALUE_BOOL)
      for (uint64_t k = 0; k < kv->array_count; k++)
        if (r->data[r->pos + k] > 1)
          return rotq_fail(r->err, "%s: metadata key '%s': element %" PRIu64 " is not a bool (0 or 1)", r->path,
                           kv->key, k);
    r->pos += (size_t)kv->array_count * size;
    return 0;
  }
  if (need(r, scalar_size(kv->type), what) != 0) return -1;
  if (decode_scalar(f, kv, r->data + r->pos) != 0)
    return rotq_fail(r->err, "%s: metadata key '%s': invalid bool value %u", r->path, kv->key, r->data[r->pos]);
  r->pos += scalar_size(kv->type);
  return 0;
}

static int read_tensor_info(reader *r, gguf_file *f, gguf_tensor *t, size_t index) {
  char what[96];
  snprintf(what, sizeof what, "tensor info %zu", index);
  const char *name;
  uint64_t name_len;
  if (read_string(r, &name, &name_len, what) != 0) return -1;
  if (name_len == 0) return rotq_fail(r->err, "%s: %s: empty tensor name", r->path, what);
  if (name_len >= GGUF_MAX_NAME)
    return rotq_fail(r->err, "%s: %s: tensor name of %" PRIu64 " bytes (ggml's limit is %d)", r->path, what, name_len,
                     GGUF_MAX_NAME - 1);
  if (memchr(name, '\0', (size_t)name_len))
    return rotq_fail(r->err, "%s: %s: tensor name contains a NUL byte", r->path, what);
  t->name = copy_bytes(name, (size_t)name_len);
  if (!t->name) return rotq_fail(r->err, "%s: out of memory", r->path);
  for (size_t j = 0; j < index; j++)
    if (strcmp(f->tensors[j].name, t->name) == 0)
      return rotq_fail(r->err, "%s: tensor '%s' appears twice", r->path, t->name);
  snprintf(what, sizeof what, "tensor '%s'", t->name);
  uint32_t ndim;
  if (read_u32(r, &ndim, what) != 0) return -1;
  if (ndim < 1 || ndim > GGUF_MAX_DIMS)
    return rotq_fail(r->err, "%s: tensor '%s': %" PRIu32 " dimensions (1 to %d allowed)", r->path, t->name, ndim,
                     GGUF_MAX_DIMS);
  t->ndim = (int)ndim;
  uint64_t numel = 1;
  for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
  for (int d = 0; d < t->ndim; d++) {
    uint64_t ne;
    if (read_u64(r, &ne, what) != 0) return -1;
    if (ne == 0 || ne > INT64_MAX)
      return rotq_fail(r->err, "%s: tensor '%s': dimension %d is %" PRIu64 " (must be 1 or more)", r->path, t->name, d,
                       ne);
    if (numel > (uint64_t)INT64_MAX / ne)
      return rotq_fail(r->err, "%s: tensor '%s': element count overflows", r->path, t->name);
    numel *= ne;
    t->ne[d] = (int64_t)ne;
  }
  if (read_u32(r, &t->type, what) != 0) return -1;
  const type_info *ti = type_lookup(t->type);
  if (!ti) return rotq_fail(r->err, "%s: tensor '%s': unknown ggml type %" PRIu32, r->path, t->name, t->type);
  if ((uint64_t)t->ne[0] % ti->block_elements != 0)
    return rotq_fail(r->err, "%s: tensor '%s': row of %" PRId64 " elements is not a whole number of %s blocks (%zu)",
                     r->path, t->name, t->ne[0], ti->name, ti->block_elements);
  uint64_t blocks = numel / ti->block_elements;
  if (blocks > (uint64_t)SIZE_MAX / ti->block_bytes)
    return rotq_fail(r->err, "%s: tensor '%s': byte size overflows", r->path, t->name);
  t->nbytes = (size_t)(blocks * ti->block_bytes);
  return read_u64(r, &t->offset, what);
}

static void free_contents(gguf_file *f) {
  if (f->kvs)
    for (size_t i = 0; i < f->kv_count; i++) free(f->kvs[i].key);
  if (f->tensors)
    for (size_t i = 0; i < f->tensor_count; i++) free(f->tensors[i].name);
  free(f->kvs);
  free(f->tensors);
  free(f->path);
  f->kvs = NULL;
  f->tensors = NULL;
  f->path = NULL;
}

int gguf_parse(const char *path, const void *data, size_t size, gguf_file *f, rotq_error *err) {
  memset(f, 0, sizeof *f);
  f->path = strdup(path);
  if (!f->path) return rotq_fail(err, "%s: out of memory", path);
  f->map = (void *)data;
  f->size = size;
  reader r = {data, size, 0, f->path, err};
  if (size < 4 || memcmp(data, GGUF_MAGIC, 4) != 0) {
    rotq_fail(err, "%s: not a GGUF file (no 'GGUF' magic at the start)", path);
    goto fail;
  }
  r.pos = 4;
  uint64_t tensor_count, kv_count;
  if (read_u32(&r, &f->version, "the version") != 0) goto fail;
  if (f->version == 1) {
    rotq_fail(err, "%s: GGUF version 1 (obsolete, 32-bit counts) is not supported; convert it with llama.cpp", path);
    goto fail;
  }
  if (f->version != 2 && f->version != 3) {
    rotq_fail(err, "%s: GGUF version %" PRIu32 " (rotq reads versions 2 and 3)", path, f->version);
    goto fail;
  }
  if (read_u64(&r, &tensor_count, "the tensor count") != 0 || read_u64(&r, &kv_count, "the metadata count") != 0)
    goto fail;
  /* Each key/value takes at least 13 bytes, each tensor info at least 29: bounds the allocations. */
  if (kv_count > (size - r.pos) / 13 || tensor_count > (size - r.pos) / 29) {
    rotq_fail(err, "%s: truncated: %" PRIu64 " metadata entries and %" PRIu64 " tensors cannot fit in %zu bytes", path,
              kv_count, tensor_count, size);
    goto fail;
  }
  f->kvs = calloc(kv_count ? kv_count : 1, sizeof *f->kvs);
  f->tensors = calloc(tensor_count ? tensor_count : 1, sizeof *f->tensors);
  if (!f->kvs || !f->tensors) {
    rotq_fail(err, "%s: out of memory", path);
    goto fail;
  }
  for (size_t i = 0; i < kv_count; i++) {
    f->kv_count = i + 1;
    if (read_kv(&r, f, &f->kvs[i], i) != 0) goto fail;
  }
  f->kv_count = (size_t)kv_count;
  f->alignment = GGUF_DEFAULT_ALIGNMENT;
  const gguf_kv *align = gguf_find_kv(f, "general.alignment");
  if (align) {
    if (align->type != GGUF_VALUE_UINT32 || align->u == 0 || (align->u & (align->u - 1)) != 0 ||
        align->u > (1u << 20)) {
      rotq_fail(err, "%s: metadata key 'general.alignment': must be a uint32 power of two (got %s %" PRIu64 ")", path,
                align->type == GGUF_VALUE_UINT32 ? "uint32" : "another type", align->u);
      goto fail;
    }
    f->alignment = (size_t)align->u;
  }
  for (size_t i = 0; i < tensor_count; i++) {
    f->tensor_count = i + 1;
    if (read_tensor_info(&r, f, &f->tensors[i], i) != 0) goto fail;
  }
  f->tensor_count = (size_t)tensor_count;
  size_t data_start = (r.pos + f->alignment - 1) / f->alignment * f->alignment;
  if (tensor_count > 0 && data_start > size) {
    rotq_fail(err, "%s: truncated: the data section would start at %zu, past the end (%zu bytes)", path, data_start,
              size);
    goto fail;
  }
  /* ggml lays the tensors out back to back in info order, each padded to the alignment. */
  uint64_t expected = 0;
  for (size_t i = 0; i < f->tensor_count; i++) {
    gguf_tensor *t = &f->tensors[i];
    if (t->offset != expected) {
      rotq_fail(err,
                "%s: tensor '%s': data offset %" PRIu64 ", expected %" PRIu64 " (tensors are laid out in order, "
                "each padded to %zu bytes)",
                path, t->name, t->offset, expected, f->alignment);
      goto fail;
    }
    if (t->offset > size - data_start || t->nbytes > size - data_start - t->offset) {
      rotq_fail(err,
                "%s: truncated: tensor '%s' (%s, %zu bytes at data offset %" PRIu64 ") runs past the end of the "
                "file (%zu bytes)",
                path, t->name, gguf_type_name(t->type), t->nbytes, t->offset, size);
      goto fail;
    }
    t->data = (const uint8_t *)data + data_start + t->offset;
    expected = t->offset + (t->nbytes + f->alignment - 1) / f->alignment * f->alignment;
  }
  return 0;
fail:
  free_contents(f);
  f->map = NULL;
  return -1;
}

int gguf_open(const char *path, gguf_file *f, rotq_error *err) {
  memset(f, 0, sizeof *f);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return rotq_fail(err, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    rotq_fail(err, "%s: cannot stat: %s", path, strerror(errno));
    close(fd);
    return -1;
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return rotq_fail(err, "%s: not a regular file", path);
  }
  if (st.st_size < 4) {
    close(fd);
    return rotq_fail(err, "%s: file is %lld bytes, too short for a GGUF file", path, (long long)st.st_size);
  }
  size_t size = (size_t)st.st_size;
  void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return rotq_fail(err, "%s: cannot map %zu bytes: %s", path, size, strerror(errno));
  if (gguf_parse(path, map, size, f, err) != 0) {
    munmap(map, size);
    memset(f, 0, sizeof *f);
    return -1;
  }
  f->mapped = true;
  return 0;
}

void gguf_close(gguf_file *f) {
  if (!f) return;
  if (f->mapped && f->map) munmap(f->map, f->size);
  free_contents(f);
  memset(f, 0, sizeof *f);
}

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key) {
  for (size_t i = 0; i < f->kv_count; i++)
    if (f->kvs[i].key && strcmp(f->kvs[i].key, key) == 0) return &f->kvs[i];
  return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
  for (size_t i = 0; i < f->tensor_count; i++)
    if (f->tensors[i].name && strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
  return NULL;
}

static bool is_integer(gguf_value_type t) {
  return t == GGUF_VALUE_UINT8 || t == GGUF_VALUE_INT8 || t == GGUF_VALUE_UINT16 || t == GGUF_VALUE_INT16 ||
         t == GGUF_VALUE_UINT32 || t == GGUF_VALUE_INT32 || t == GGUF_VALUE_UINT64 || t == GGUF_VALUE_INT64;
}

int gguf_get_uint(const gguf_file *f, const char *key, uint64_t *value, rotq_error *err) {
  const gguf_kv *kv = gguf_find_kv(f, key);
  if (!kv) return rotq_fail(err, "%s: metadata key '%s' is missing", f->path, key);
  if (!is_integer(kv->type)) return rotq_fail(err, "%s: metadata key '%s' is not an integer", f->path, key);
  if (kv->type != GGUF_VALUE_UINT64 && kv->i < 0)
    return rotq_fail(err, "%s: metadata key '%s' is negative (%" PRId64 ")", f->path, key, kv->i);
  *value = kv->u;
  return 0;
}

int gguf_get_float(const gguf_file *f, const char *key, double *value, rotq_error *err) {
  const gguf_kv *kv = gguf_find_kv(f, key);
  if (!kv) return rotq_fail(err, "%s: metadata key '%s' is missing", f->path, key);
  if (!is_integer(kv->type) && kv->type != GGUF_VALUE_FLOAT32 && kv->type != GGUF_VALUE_FLOAT64)
    return rotq_fail(err, "%s: metadata key '%s' is not a number", f->path, key);
  *value = kv->f;
  return 0;
}

int gguf_get_string(const gguf_file *f, const char *key, char *buf, size_t size, rotq_error *err) {
  const gguf_kv *kv = gguf_find_kv(f, key);
  if (!kv) return rotq_fail(err, "%s: metadata key '%s' is missing", f->path, key);
  if (kv->type != GGUF_VALUE_STRING) return rotq_fail(err, "%s: metadata key '%s' is not a string", f->path, key);
  if (kv->str_len >= size)
    return rotq_fail(err, "%s: metadata key '%s': string of %" PRIu64 " bytes is too long", f->path, key, kv->str_len);
  memcpy(buf, kv->str, (size_t)kv->str_len);
  buf[kv->str_len] = '\0';
  return 0;
}

/* ---- dequantization: ggml's reference dequantize_row_* ------------------------------------ */

static float half(const uint8_t *p) {
  float v;
  dtype_to_f32(DTYPE_F16, p, &v, 1);
  return v;
}

static void dequant_q4_0(const uint8_t *b, float *y, size_t nb) {
  for (size_t i = 0; i < nb; i++, b += 18, y += 32) {
    const float d = half(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
      const int x0 = (qs[j] & 0x0F) - 8;
      const int x1 = (qs[j] >> 4) - 8;
      y[j] = x0 * d;
      y[j + 16] = x1 * d;
    }
  }
}

static void dequant_q4_1(const uint8_t *b, float *y, size_t nb) {
  for (size_t i = 0; i < nb; i++, b += 20, y += 32) {
    const float d = half(b);
    const float m = half(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
      const int x0 = qs[j] & 0x0F;
      const int x1 = qs[j] >> 4;
      y[j] = x0 * d + m;
      y[j + 16] = x1 * d + m;
    }
  }
}

static void dequant_q8_0(const uint8_t *b, float *y, size_t nb) {
  for (size_t i = 0; i < nb; i++, b += 34, y += 32) {
    const float d = half(b);
    const int8_t *qs = (const int8_t *)(b + 2);
    for (int j = 0; j < 32; j++) y[j] = qs[j] * d;
  }
}

static void get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
  }
}

/* block_q4_K: half d, half dmin, uint8 scales[12], uint8 qs[128]. */
static void dequant_q4_k(const uint8_t *b, float *y, size_t nb) {
  for (size_t i = 0; i < nb; i++, b += 144) {
    const float d = half(b);
    const float min = half(b + 2);
    const uint8_t *scales = b + 4;
    const uint8_t *q = b + 16;
    int is = 0;
    uint8_t sc, m;
    for (int j = 0; j < QK_K; j += 64) {
      get_scale_min_k4(is + 0, scales, &sc, &m);
      const float d1 = d * sc;
      const float m1 = min * m;
      get_scale_min_k4(is + 1, scales, &sc, &m);
      const float d2 = d * sc;
      const float m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
      q += 32;
      is += 2;
    }
  }
}

/* block_q6_K: uint8 ql[128], uint8 qh[64], int8 scales[16], half d. */
static void dequant_q6_k(const uint8_t *b, float *y, size_t nb) {
  for (size_t i = 0; i < nb; i++, b += 210) {
    const float d = half(b + 208);
    const uint8_t *ql = b;
    const uint8_t *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    for (int n = 0; n < QK_K; n += 128) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int8_t q1 = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int8_t q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int8_t q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l + 0] = d * sc[is + 0] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
      y += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

void gguf_dequantize_blocks(uint32_t type, const void *src, float *dst, size_t n) {
  const uint8_t *b = src;
  switch (type) {
  case GGUF_TENSOR_F32: memcpy(dst, src, n * sizeof(float)); break;
  case GGUF_TENSOR_F16: dtype_to_f32(DTYPE_F16, src, dst, n); break;
  case GGUF_TENSOR_BF16: dtype_to_f32(DTYPE_BF16, src, dst, n); break;
  case GGUF_TENSOR_Q4_0: dequant_q4_0(b, dst, n / 32); break;
  case GGUF_TENSOR_Q4_1: dequant_q4_1(b, dst, n / 32); break;
  case GGUF_TENSOR_Q8_0: dequant_q8_0(b, dst, n / 32); break;
  case GGUF_TENSOR_Q4_K: dequant_q4_k(b, dst, n / QK_K); break;
  case GGUF_TENSOR_Q6_K: dequant_q6_k(b, dst, n / QK_K); break;
  default: break;
  }
}

int gguf_dequantize(const gguf_file *f, const gguf_tensor *t, float *dst, rotq_error *err) {
  if (!gguf_type_supported(t->type))
    return rotq_fail(err,
                     "%s: tensor '%s': type %s is not supported (rotq dequantizes F32, F16, BF16, Q8_0, Q4_0, "
                     "Q4_1, Q4_K, Q6_K)",
                     f->path, t->name, gguf_type_name(t->type));
  gguf_dequantize_blocks(t->type, t->data, dst, gguf_numel(t));
  return 0;
}

/* Pairing quantized tensors with their scales, and reading their values. */
#include "io/quantized.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/finite.h"

#define MX_BLOCK 32   /* values per MXFP4 block */
#define MX_BYTES 16   /* bytes per MXFP4 block */
#define FP8_BLOCK 128 /* DeepSeek's block when the config does not give one */
#define NAME_MAX_BYTES 256

bool st_is_quantized(const st_tensor *t) { return t->scaling != ST_SCALE_NONE; }

/* The byte offset of element `first` of a pack-quantized tensor (rows padded to block_rows bytes). */
static size_t group_offset(const st_tensor *t, size_t first) {
  size_t cols = (size_t)t->shape[1];
  return first / cols * t->block_rows + first % cols / 2;
}

const unsigned char *st_address(const st_tensor *t, size_t first) {
  if (t->scaling == ST_SCALE_GROUP) return (const unsigned char *)t->data + group_offset(t, first);
  return (const unsigned char *)t->data + dtype_bytes(t->dtype, 0, first);
}

size_t st_span(const st_tensor *t, size_t first, size_t n) {
  if (t->scaling == ST_SCALE_GROUP) return n ? group_offset(t, first + n - 1) + 1 - group_offset(t, first) : 0;
  return dtype_bytes(t->dtype, first, n);
}

/* Element k of a scale tensor as a double (float scales, or E8M0 bytes for MXFP4). */
static double scale_at(const st_tensor *t, const st_tensor *scale, size_t k) {
  if (t->scaling == ST_SCALE_MXFP4) return e8m0_value(((const unsigned char *)scale->data)[k]);
  double v;
  dtype_to_f64(scale->dtype, (const unsigned char *)scale->data + k * dtype_size(scale->dtype), &v, 1);
  return v;
}

/* The elements of a row of t (its last dimension; a vector is one row). */
static size_t row_length(const st_tensor *t) { return t->ndim ? (size_t)t->shape[t->ndim - 1] : 1; }

/* n codes of t from element idx, unscaled. */
static void codes(const st_tensor *t, size_t idx, size_t n, double *dst) {
  const unsigned char *p = t->data;
  if (t->dtype != DTYPE_F4_E2M1) {
    dtype_to_f64(t->dtype, p + idx, dst, n);
    return;
  }
  size_t k = 0;
  if (idx & 1) dst[k++] = fp4_e2m1_value(p[idx / 2] >> 4); /* the high nibble of a byte begun before */
  if (k < n) dtype_to_f64(DTYPE_F4_E2M1, p + (idx + k) / 2, dst + k, n - k);
}

/* n values of t from element idx, all under the scale s: code × s, exact (at most 4 × 24
 * significant bits). */
static void scaled_codes(const st_tensor *t, size_t idx, size_t n, double s, double *dst) {
  if (t->dtype == DTYPE_F4_E2M1) {
    codes(t, idx, n, dst);
    for (size_t j = 0; j < n; j++) dst[j] *= s;
    return;
  }
  fp8_to_f64_scaled(t->dtype, (const unsigned char *)t->data + idx, s, dst, n);
}

/* The zero point of row r, group g of a pack-quantized tensor: its packed I32 words hold 8 rows
 * each along the output dimension, the code of row r at bits 4·(r mod 8), stored as z + 8. */
static double zero_at(const st_tensor *t, size_t r, size_t g) {
  if (!t->zero) return 0;
  const unsigned char *p = t->zero->data;
  size_t groups = (size_t)t->zero->shape[1], word = r / 8 * groups + g;
  return (double)((p[4 * word + (r % 8) / 2] >> (4 * (r & 1))) & 15) - 8;
}

/* n values of a pack-quantized row r from column c (within one group): (q − z) × scale, rounded
 * to the scale's dtype, as compressed-tensors' decompression computes them. */
static void group_values(const st_tensor *t, size_t r, size_t c, size_t n, double *dst) {
  size_t groups = (size_t)t->scale->shape[1], g = c / t->block_cols;
  double s = scale_at(t, t->scale, r * groups + g), z = zero_at(t, r, g);
  const unsigned char *row = (const unsigned char *)t->data + r * t->block_rows;
  for (size_t j = 0; j < n; j++) dst[j] = ((double)((row[(c + j) / 2] >> (4 * ((c + j) & 1))) & 15) - 8 - z) * s;
  if (t->scale->dtype != DTYPE_F64) { /* one rounding of the exact product */
    unsigned char buffer[8];
    for (size_t j = 0; j < n; j++) {
      dtype_from_f64(t->scale->dtype, dst + j, buffer, 1);
      dtype_to_f64(t->scale->dtype, buffer, dst + j, 1);
    }
  }
}

/* n values of an int-quantized row (I8 codes) from element idx under scale s: q × s rounded to the
 * scale's dtype (compressed-tensors' decompression). */
static void int_values(const st_tensor *t, size_t idx, size_t n, double s, double *dst) {
  dtype_to_f64(DTYPE_I8, (const unsigned char *)t->data + idx, dst, n);
  unsigned char buffer[8];
  for (size_t j = 0; j < n; j++) {
    dst[j] *= s;
    if (t->scale->dtype == DTYPE_F64) continue;
    dtype_from_f64(t->scale->dtype, dst + j, buffer, 1);
    dtype_to_f64(t->scale->dtype, buffer, dst + j, 1);
  }
}

void st_to_f64(const st_tensor *t, size_t first, size_t n, double *dst) {
  if (t->scaling == ST_SCALE_NONE) {
    dtype_to_f64(t->dtype, st_address(t, first), dst, n);
    return;
  }
  if (t->scaling == ST_SCALE_GROUP) {
    const size_t cols = (size_t)t->shape[1];
    for (size_t i = 0; i < n;) {
      size_t idx = first + i, r = idx / cols, c = idx % cols;
      size_t run = t->block_cols - c % t->block_cols;
      if (run > n - i) run = n - i;
      group_values(t, r, c, run, dst + i);
      i += run;
    }
    return;
  }
  const size_t cols = row_length(t);
  for (size_t i = 0; i < n;) {
    size_t idx = first + i, r = idx / cols, c = idx % cols, run = n - i, k = 0;
    switch (t->scaling) {
    case ST_SCALE_BLOCK: {
      size_t scale_cols = (size_t)t->scale->shape[1];
      run = t->block_cols - c % t->block_cols;
      if (run > cols - c) run = cols - c;
      k = r / t->block_rows * scale_cols + c / t->block_cols;
      break;
    }
    case ST_SCALE_CHANNEL:
      run = cols - c;
      k = r;
      break;
    case ST_SCALE_MXFP4:
      run = MX_BLOCK - idx % MX_BLOCK;
      k = idx / MX_BLOCK;
      break;
    default: break; /* per tensor: one scale */
    }
    if (run > n - i) run = n - i;
    if (t->dtype == DTYPE_I8)
      int_values(t, idx, run, scale_at(t, t->scale, k), dst + i);
    else
      scaled_codes(t, idx, run, scale_at(t, t->scale, k), dst + i);
    i += run;
  }
}

void st_to_f64_scaled(const st_tensor *t, size_t first, size_t n, const double *g, double *dst) {
  if (t->scaling == ST_SCALE_NONE) {
    dtype_to_f64_scaled(t->dtype, st_address(t, first), g, dst, n);
    return;
  }
  st_to_f64(t, first, n, dst);
  for (size_t i = 0; i < n; i++) dst[i] *= g[i];
}

void st_to_f32_scaled(const st_tensor *t, size_t first, size_t n, const double *g, float *dst) {
  if (t->scaling == ST_SCALE_NONE) {
    dtype_to_f32_scaled(t->dtype, st_address(t, first), g, dst, n);
    return;
  }
  st_to_f32(t, first, n, dst);
  for (size_t i = 0; i < n; i++) dst[i] = (float)(dst[i] * g[i]);
}

void st_to_f32(const st_tensor *t, size_t first, size_t n, float *dst) {
  if (t->scaling == ST_SCALE_NONE) {
    dtype_to_f32(t->dtype, st_address(t, first), dst, n);
    return;
  }
  double chunk[256];
  for (size_t i = 0; i < n; i += 256) {
    size_t m = n - i < 256 ? n - i : 256;
    st_to_f64(t, first + i, m, chunk);
    for (size_t j = 0; j < m; j++) dst[i + j] = (float)chunk[j];
  }
}

size_t st_first_non_finite(const st_tensor *t, size_t first, size_t n) {
  if (t->dtype == DTYPE_F4_E2M1 || dtype_is_integer(t->dtype))
    return n; /* every E2M1 or integer code is finite, and the scales were checked */
  return first_non_finite(t->dtype, st_address(t, first), n);
}

/* ---- pairing ------------------------------------------------------------------------------ */

static int compare_tensor_name(const void *a, const void *b) {
  return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

/* The tensor called prefix + suffix among all (sorted), or NULL. */
static const st_tensor *find_named(const st_tensor *const *all, size_t count, const char *prefix, size_t prefix_length,
                                   const char *suffix) {
  char name[NAME_MAX_BYTES];
  if (prefix_length + strlen(suffix) + 1 > sizeof name) return NULL;
  memcpy(name, prefix, prefix_length);
  strcpy(name + prefix_length, suffix);
  st_tensor key = {.name = name};
  const st_tensor *k = &key;
  const st_tensor *const *found = bsearch(&k, all, count, sizeof *all, compare_tensor_name);
  return found ? *found : NULL;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

static bool is_fp8(const st_tensor *t) { return t && (t->dtype == DTYPE_F8_E4M3 || t->dtype == DTYPE_F8_E5M2); }
/* compressed-tensors int-quantized ("X.weight" I8) and pack-quantized ("X.weight_packed" I32) */
static bool is_int8(const st_tensor *t) { return t && t->dtype == DTYPE_I8; }
static bool is_packed(const st_tensor *t) { return t && t->dtype == DTYPE_I32 && ends_with(t->name, ".weight_packed"); }
/* compressed-tensors mxfp4-pack-quantized: "X.weight_packed" U8 (NVFP4's layout, E8M0 scales) */
static bool is_mx_packed(const st_tensor *t) {
  return t && t->dtype == DTYPE_U8 && ends_with(t->name, ".weight_packed");
}

/* Is t the scale (or activation scale) of an FP8 tensor, or the scales of an MXFP4 pair? */
static bool consumed(const st_tensor *t, const st_tensor *const *all, size_t count) {
  const char *n = t->name;
  size_t len = strlen(n);
  if (ends_with(n, "_scale_inv") && is_fp8(find_named(all, count, n, len - 10, ""))) return true;
  if (ends_with(n, "_scale") && is_fp8(find_named(all, count, n, len - 6, ""))) return true;
  if (ends_with(n, ".weight_scale") && is_int8(find_named(all, count, n, len - 13, ".weight"))) return true;
  if (ends_with(n, ".weight_scale") && is_packed(find_named(all, count, n, len - 13, ".weight_packed"))) return true;
  if (ends_with(n, ".weight_shape") && is_packed(find_named(all, count, n, len - 13, ".weight_packed"))) return true;
  if (ends_with(n, ".weight_zero_point") && is_packed(find_named(all, count, n, len - 18, ".weight_packed")))
    return true;
  if (ends_with(n, ".input_scale") && is_int8(find_named(all, count, n, len - 12, ".weight"))) return true;
  if (ends_with(n, ".weight_scale") && t->dtype == DTYPE_U8 &&
      is_mx_packed(find_named(all, count, n, len - 13, ".weight_packed")))
    return true;
  if (ends_with(n, ".input_scale") && is_fp8(find_named(all, count, n, len - 12, ".weight"))) return true;
  if (ends_with(n, "_scales") && t->dtype == DTYPE_U8) {
    const st_tensor *b = find_named(all, count, n, len - 7, "_blocks");
    return b && b->dtype == DTYPE_U8;
  }
  return false;
}

/* The FP8 block size of config.json's quantization_config (weight_block_size), else 128×128. */
static int block_size(const char *dir, const cJSON *config, size_t *rows, size_t *cols, rotq_error *err) {
  *rows = *cols = FP8_BLOCK;
  const cJSON *q = cJSON_GetObjectItemCaseSensitive(config, "quantization_config");
  const cJSON *b = q ? cJSON_GetObjectItemCaseSensitive(q, "weight_block_size") : NULL;
  const cJSON *groups = q ? cJSON_GetObjectItemCaseSensitive(q, "config_groups") : NULL;
  for (const cJSON *g = groups ? groups->child : NULL; (!b || cJSON_IsNull(b)) && g; g = g->next) {
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(g, "weights"); /* compressed-tensors' block strategy */
    b = w ? cJSON_GetObjectItemCaseSensitive(w, "block_structure") : NULL;
  }
  if (!b || cJSON_IsNull(b)) return 0;
  const cJSON *r = cJSON_GetArrayItem(b, 0), *c = cJSON_GetArrayItem(b, 1);
  if (!cJSON_IsArray(b) || cJSON_GetArraySize(b) != 2 || !cJSON_IsNumber(r) || !cJSON_IsNumber(c) ||
      r->valuedouble < 1 || c->valuedouble < 1 || r->valuedouble > 1e6 || c->valuedouble > 1e6 ||
      r->valuedouble != floor(r->valuedouble) || c->valuedouble != floor(c->valuedouble))
    return rotq_fail(err,
                     "%s/config.json: field 'quantization_config.weight_block_size': not [rows, cols] of positive "
                     "integers",
                     dir);
  *rows = (size_t)r->valuedouble, *cols = (size_t)c->valuedouble;
  return 0;
}

/* Every value of scale (the scales of t) is finite. */
static int check_scales(const char *dir, const st_tensor *t, const st_tensor *scale, rotq_error *err) {
  size_t n = st_numel(scale);
  for (size_t k = 0; k < n; k++)
    if (!isfinite(scale_at(t, scale, k)))
      return rotq_fail(err, "%s: tensor '%s': scale %zu is not finite (%s), so '%s' has no defined values", dir,
                       scale->name, k, t->scaling == ST_SCALE_MXFP4 ? "E8M0 0xFF is NaN" : "NaN or infinity", t->name);
  return 0;
}

static char *shape_text(const st_tensor *t, char *buffer, size_t size) {
  size_t at = (size_t)snprintf(buffer, size, "[");
  for (int d = 0; d < t->ndim && at < size; d++)
    at += (size_t)snprintf(buffer + at, size - at, d ? ", %lld" : "%lld", (long long)t->shape[d]);
  if (at < size) snprintf(buffer + at, size - at, "]");
  return buffer;
}

/* An FP8 tensor t with its scale: *q gets the logical tensor (checked shapes). */
static int pair_fp8(const char *dir, const st_tensor *t, const st_tensor *const *all, size_t count, size_t block_rows,
                    size_t block_cols, st_tensor *q, rotq_error *err) {
  size_t len = strlen(t->name);
  const st_tensor *inv = find_named(all, count, t->name, len, "_scale_inv");
  const st_tensor *scale = inv ? inv : find_named(all, count, t->name, len, "_scale");
  if (!scale)
    return rotq_fail(err, "%s: tensor '%s' is %s but has no scale tensor ('%s_scale_inv' or '%s_scale')", dir, t->name,
                     dtype_name(t->dtype), t->name, t->name);
  if (!dtype_is_float(scale->dtype))
    return rotq_fail(err, "%s: tensor '%s': a scale must be a float tensor, not %s", dir, scale->name,
                     dtype_name(scale->dtype));
  *q = *t;
  q->scale = scale;
  char a[160], b[160];
  size_t rows = t->ndim == 2 ? (size_t)t->shape[0] : 0, cols = t->ndim == 2 ? (size_t)t->shape[1] : 0;
  if (t->ndim != 2)
    return rotq_fail(err, "%s: tensor '%s': an FP8 tensor must be a matrix [rows, cols], not %s", dir, t->name,
                     shape_text(t, a, sizeof a));
  if (inv) {
    q->scaling = ST_SCALE_BLOCK, q->block_rows = block_rows, q->block_cols = block_cols;
    size_t want_rows = (rows + block_rows - 1) / block_rows, want_cols = (cols + block_cols - 1) / block_cols;
    if (scale->ndim != 2 || (size_t)scale->shape[0] != want_rows || (size_t)scale->shape[1] != want_cols)
      return rotq_fail(err, "%s: tensor '%s' is %s: for '%s' %s in %zu×%zu blocks it must be [%zu, %zu]", dir,
                       scale->name, shape_text(scale, a, sizeof a), t->name, shape_text(t, b, sizeof b), block_rows,
                       block_cols, want_rows, want_cols);
  } else if (st_numel(scale) == 1) {
    q->scaling = ST_SCALE_TENSOR;
  } else if (st_numel(scale) == rows && (scale->ndim == 1 || (scale->ndim == 2 && scale->shape[1] == 1))) {
    q->scaling = ST_SCALE_CHANNEL;
  } else if (scale->ndim == 2 && (size_t)scale->shape[0] == (rows + block_rows - 1) / block_rows &&
             (size_t)scale->shape[1] == (cols + block_cols - 1) / block_cols) {
    /* compressed-tensors' block strategy (FP8_BLOCK): weight_scale [⌈R/br⌉, ⌈C/bc⌉] */
    q->scaling = ST_SCALE_BLOCK, q->block_rows = block_rows, q->block_cols = block_cols;
  } else {
    return rotq_fail(err, "%s: tensor '%s' is %s: for '%s' %s it must be one scale, or one per row ([%zu, 1])", dir,
                     scale->name, shape_text(scale, a, sizeof a), t->name, shape_text(t, b, sizeof b), rows);
  }
  return check_scales(dir, q, scale, err);
}

/* The MXFP4 pair of blocks (named P_blocks): *q gets the logical tensor P. */
static int pair_mxfp4(const char *dir, const st_tensor *blocks, const st_tensor *const *all, size_t count, st_tensor *q,
                      rotq_error *err) {
  size_t len = strlen(blocks->name) - 7;
  const st_tensor *scales = find_named(all, count, blocks->name, len, "_scales");
  char a[160], b[160];
  if (!scales || scales->dtype != DTYPE_U8)
    return rotq_fail(err, "%s: tensor '%s' (MXFP4 blocks) has no U8 scales '%.*s_scales'", dir, blocks->name, (int)len,
                     blocks->name);
  bool ok = blocks->ndim >= 2 && blocks->shape[blocks->ndim - 1] == MX_BYTES && scales->ndim == blocks->ndim - 1;
  for (int d = 0; ok && d < scales->ndim; d++) ok = scales->shape[d] == blocks->shape[d];
  if (!ok)
    return rotq_fail(err, "%s: tensors '%s' %s and '%s' %s are not MXFP4 blocks [..., G, 16] and scales [..., G]", dir,
                     blocks->name, shape_text(blocks, a, sizeof a), scales->name, shape_text(scales, b, sizeof b));
  if (find_named(all, count, blocks->name, len, ""))
    return rotq_fail(err, "%s: tensor '%.*s' is both stored and the MXFP4 pair '%s'", dir, (int)len, blocks->name,
                     blocks->name);
  *q = *blocks;
  q->name = NULL;
  q->dtype = DTYPE_F4_E2M1;
  q->ndim = blocks->ndim - 1;
  q->shape[q->ndim - 1] = blocks->shape[blocks->ndim - 2] * MX_BLOCK;
  q->scaling = ST_SCALE_MXFP4;
  q->scale = scales;
  return check_scales(dir, q, scales, err);
}

/* compressed-tensors int-quantized "X.weight" I8 [R, C] with "X.weight_scale" [R, 1] (float):
 * *q gets the logical tensor (per channel, values rounded to the scale's dtype). */
static int pair_int8(const char *dir, const st_tensor *t, const st_tensor *const *all, size_t count, st_tensor *q,
                     rotq_error *err) {
  size_t len = strlen(t->name);
  const st_tensor *scale = ends_with(t->name, ".weight") ? find_named(all, count, t->name, len, "_scale") : NULL;
  char a[160], b[160];
  if (!scale || !dtype_is_float(scale->dtype))
    return rotq_fail(err, "%s: tensor '%s' is I8 but has no float scale '%s_scale' (compressed-tensors int-quantized)",
                     dir, t->name, t->name);
  if (t->ndim != 2 || st_numel(scale) != (size_t)t->shape[0] ||
      !(scale->ndim == 1 || (scale->ndim == 2 && scale->shape[1] == 1)))
    return rotq_fail(err, "%s: tensors '%s' %s and '%s' %s are not int8 codes [R, C] and per-channel scales [R, 1]",
                     dir, t->name, shape_text(t, a, sizeof a), scale->name, shape_text(scale, b, sizeof b));
  *q = *t;
  q->scale = scale;
  q->scaling = ST_SCALE_CHANNEL;
  return check_scales(dir, q, scale, err);
}

/* compressed-tensors pack-quantized "X.weight_packed" I32 [R, ⌈C/8⌉] with "X.weight_shape" I64 [2]
 * = {R, C}, "X.weight_scale" [R, C/g] (float) and optionally "X.weight_zero_point" I32
 * [⌈R/8⌉, C/g]: *q gets the logical tensor X.weight [R, C] (I4 codes). */
static int pair_packed(const char *dir, const st_tensor *t, const st_tensor *const *all, size_t count, st_tensor *q,
                       rotq_error *err) {
  size_t len = strlen(t->name) - 7; /* "X.weight" */
  const st_tensor *shape = find_named(all, count, t->name, len, "_shape");
  const st_tensor *scale = find_named(all, count, t->name, len, "_scale");
  const st_tensor *zero = find_named(all, count, t->name, len, "_zero_point");
  char a[160], b[160];
  if (!shape || shape->dtype != DTYPE_I64 || st_numel(shape) != 2 || !scale || !dtype_is_float(scale->dtype))
    return rotq_fail(err, "%s: tensor '%s' (pack-quantized) needs '%.*s_shape' I64 [2] and a float '%.*s_scale'", dir,
                     t->name, (int)len, t->name, (int)len, t->name);
  double dims[2];
  dtype_to_f64(DTYPE_I64, shape->data, dims, 2);
  size_t rows = (size_t)dims[0], cols = (size_t)dims[1], groups = scale->ndim == 2 ? (size_t)scale->shape[1] : 0;
  bool ok = dims[0] >= 1 && dims[1] >= 1 && t->ndim == 2 && (size_t)t->shape[0] == rows &&
            (size_t)t->shape[1] == (cols + 7) / 8 && scale->ndim == 2 && (size_t)scale->shape[0] == rows && groups &&
            cols % groups == 0;
  if (!ok)
    return rotq_fail(err, "%s: tensors '%s' %s and '%s' %s do not fit the shape [%.0f, %.0f] of '%.*s_shape'", dir,
                     t->name, shape_text(t, a, sizeof a), scale->name, shape_text(scale, b, sizeof b), dims[0], dims[1],
                     (int)len, t->name);
  if (zero && (zero->dtype != DTYPE_I32 || zero->ndim != 2 || (size_t)zero->shape[0] != (rows + 7) / 8 ||
               (size_t)zero->shape[1] != groups))
    return rotq_fail(err, "%s: tensor '%s' %s is not I32 [%zu, %zu] (zero points packed along the rows)", dir,
                     zero->name, shape_text(zero, a, sizeof a), (rows + 7) / 8, groups);
  if (find_named(all, count, t->name, len, ""))
    return rotq_fail(err, "%s: tensor '%.*s' is both stored and packed in '%s'", dir, (int)len, t->name, t->name);
  *q = *t;
  q->name = NULL;
  q->dtype = DTYPE_I4;
  q->shape[0] = (int64_t)rows, q->shape[1] = (int64_t)cols;
  q->scaling = ST_SCALE_GROUP;
  q->scale = scale;
  q->zero = zero;
  q->block_rows = (cols + 7) / 8 * 4;
  q->block_cols = cols / groups;
  return check_scales(dir, q, scale, err);
}

/* compressed-tensors mxfp4-pack-quantized "X.weight_packed" U8 [R, C/2] (two E2M1 a byte, low
 * nibble first) with "X.weight_scale" U8 [R, C/32] (E8M0): *q gets the logical tensor X.weight. */
static int pair_ct_mxfp4(const char *dir, const st_tensor *t, const st_tensor *const *all, size_t count, st_tensor *q,
                         rotq_error *err) {
  size_t len = strlen(t->name) - 7; /* "X.weight" */
  const st_tensor *scale = find_named(all, count, t->name, len, "_scale");
  char a[160], b[160];
  if (find_named(all, count, t->name, len, "_global_scale"))
    return rotq_fail(err, "%s: tensor '%s': nvfp4-pack-quantized weights are not read (only mxfp4-pack-quantized)", dir,
                     t->name);
  if (!scale || scale->dtype != DTYPE_U8 || t->ndim != 2 || scale->ndim != 2 || scale->shape[0] != t->shape[0] ||
      scale->shape[1] * MX_BYTES != t->shape[1])
    return rotq_fail(
        err, "%s: tensors '%s' %s and '%.*s_scale' %s are not mxfp4-pack-quantized [R, C/2] U8 and [R, C/32] U8", dir,
        t->name, shape_text(t, a, sizeof a), (int)len, t->name, scale ? shape_text(scale, b, sizeof b) : "(missing)");
  if (find_named(all, count, t->name, len, ""))
    return rotq_fail(err, "%s: tensor '%.*s' is both stored and packed in '%s'", dir, (int)len, t->name, t->name);
  *q = *t;
  q->name = NULL;
  q->dtype = DTYPE_F4_E2M1;
  q->shape[1] = t->shape[1] * 2;
  q->scaling = ST_SCALE_MXFP4;
  q->scale = scale;
  return check_scales(dir, q, scale, err);
}

/* The logical tensor of all[i] into *q (q->name left NULL), 1 if it is quantized, 0 if plain,
 * -1 on error. */
static int pair_one(const char *dir, const st_tensor *t, const st_tensor *const *all, size_t count, size_t block_rows,
                    size_t block_cols, st_tensor *q, rotq_error *err) {
  if (is_fp8(t)) return pair_fp8(dir, t, all, count, block_rows, block_cols, q, err) < 0 ? -1 : 1;
  if (t->dtype == DTYPE_U8 && ends_with(t->name, "_blocks")) return pair_mxfp4(dir, t, all, count, q, err) < 0 ? -1 : 1;
  if (is_mx_packed(t)) return pair_ct_mxfp4(dir, t, all, count, q, err) < 0 ? -1 : 1;
  if (t->dtype == DTYPE_U8)
    return rotq_fail(err, "%s: tensor '%s' is U8 but not part of an MXFP4 pair (P_blocks, P_scales)", dir, t->name);
  if (is_int8(t)) return pair_int8(dir, t, all, count, q, err) < 0 ? -1 : 1;
  if (is_packed(t)) return pair_packed(dir, t, all, count, q, err) < 0 ? -1 : 1;
  if (dtype_is_integer(t->dtype))
    return rotq_fail(err,
                     "%s: tensor '%s' is %s but not part of a compressed-tensors weight (X.weight I8 with "
                     "X.weight_scale, or X.weight_packed I32 with X.weight_shape and X.weight_scale)",
                     dir, t->name, dtype_name(t->dtype));
  return 0;
}

int quantized_pair(const char *dir, const cJSON *config, const st_tensor *const *all, size_t count, st_tensor **logical,
                   size_t *logical_count, const st_tensor ***visible, size_t *visible_count, rotq_error *err) {
  *logical = NULL, *visible = NULL, *logical_count = *visible_count = 0;
  size_t block_rows, block_cols;
  if (block_size(dir, config, &block_rows, &block_cols, err) < 0) return -1;
  st_tensor *q = calloc(count ? count : 1, sizeof *q);
  const st_tensor **shown = malloc((count ? count : 1) * sizeof *shown);
  if (!q || !shown) {
    free(q);
    free(shown);
    return rotq_fail(err, "%s: out of memory", dir);
  }
  size_t nq = 0, ns = 0;
  for (size_t i = 0; i < count; i++) {
    if (consumed(all[i], all, count)) continue;
    int kind = pair_one(dir, all[i], all, count, block_rows, block_cols, &q[nq], err);
    if (kind < 0) goto fail;
    if (kind == 0) {
      shown[ns++] = all[i];
      continue;
    }
    /* P_blocks → P; X.weight_packed → X.weight */
    size_t len = strlen(all[i]->name) - (q[nq].scaling == ST_SCALE_MXFP4 || q[nq].scaling == ST_SCALE_GROUP ? 7 : 0);
    if (!(q[nq].name = strndup(all[i]->name, len))) {
      rotq_fail(err, "%s: out of memory", dir);
      goto fail;
    }
    nq++;
  }
  for (size_t i = 0; i < nq; i++) shown[ns++] = &q[i];
  qsort(shown, ns, sizeof *shown, compare_tensor_name);
  *logical = q, *logical_count = nq, *visible = shown, *visible_count = ns;
  return 0;
fail:
  quantized_free(q, nq);
  free(shown);
  return -1;
}

void quantized_free(st_tensor *logical, size_t count) {
  for (size_t i = 0; logical && i < count; i++) free(logical[i].name);
  free(logical);
}

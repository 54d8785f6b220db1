/* rotq quantize: the plan (which tensors become which), the streaming loop, config.json. */
#include "rotate/quantize_command.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "common/buffer_pool.h"
#include "common/log.h"
#include "common/parallel.h"
#include "config/rotation_config.h"
#include "rotate/adapter.h"
#include "io/checkpoint.h"
#include "io/finite.h"
#include "io/json_file.h"
#include "io/safetensors_writer.h"
#include "rotate/output_dir.h"
#include "rotq.h"

/* Rows of a weight quantized by one worker at a time (a multiple of every ct_row_block). */
#define ROWS_PER_CHUNK 256
/* Bytes of a copied tensor written (and released) at a time. */
#define COPY_PART_BYTES ((size_t)64 << 20)

/* One input tensor in the output: copied, or quantized into parts. */
typedef struct planned_tensor {
  const st_tensor *t;
  int layer; /* -1 outside the decoder layers */
  bool quantize;
  int part_count;
  ct_part_spec parts[CT_MAX_PARTS];
  size_t spec;      /* index of its first spec in the output writer */
  size_t fake_spec; /* its index in the fake-quantized writer */
  char module[ST_NAME_MAX + 1];
  /* NVFP4A16: the weights vLLM fuses into one linear (q/k/v; gate/up, of each expert) must share
   * one global scale: those reading the same norm from the same parent module. fused_key is
   * "<norm>@<parent module>" ("" for a writer, which is fused with nothing); group_amax their
   * max |W|, computed when the first of them is written (< 0 until then). */
  char fused_key[ST_NAME_MAX + 64];
  double group_amax;
} planned_tensor;

typedef struct plan {
  planned_tensor *tensors;
  size_t count;
  size_t spec_count;
  char **ignored; /* the decoder linears not quantized (routers, ...), module names or "re:" patterns */
  size_t ignored_count;
} plan;

static void plan_free(plan *p) {
  for (size_t i = 0; i < p->ignored_count; i++) free(p->ignored[i]);
  free(p->ignored);
  free(p->tensors);
}

/* A decoder linear vLLM keeps unquantized: the family's MoE router or shared-expert gate
 * (vLLM builds them without a quantization method, so it would not find a packed weight). */
static bool is_router(const model_adapter *a, const char *relative) {
  const char *router = a->names.router, *shared_gate = a->names.shared_expert_gate;
  return relative && ((router && strcmp(relative, router) == 0) || (shared_gate && strcmp(relative, shared_gate) == 0));
}

/* What the plan does with a tensor of a decoder layer. */
typedef enum linear_fate {
  NOT_LINEAR,     /* not a decoder Linear weight: copied */
  QUANTIZE,       /* a reader or writer of the residual stream: quantized */
  IGNORE,         /* a Linear kept in full precision and listed in "ignore" (routers; MLA's q_b_proj and
                     kv_b_proj, which read a latent, not the stream) */
  IGNORE_EXPERTS, /* a fused [experts, in, out] tensor (gpt-oss, Llama-4): kept, its experts ignored */
} linear_fate;

/* The fate of tensor t and, unless NOT_LINEAR, its module: a 2-D "<module>.weight" of a decoder
 * layer is a Linear (norms are 1-D, conv1d 3-D); a fused-expert tensor is its own module. */
static linear_fate decoder_linear(const model_adapter *a, const st_tensor *t, char *module) {
  module[0] = 0;
  size_t n = strlen(t->name);
  if (adapter_layer_of(a, t->name) < 0) return NOT_LINEAR;
  const char *relative = adapter_relative_name(a, t->name);
  if (t->ndim == 3 && a->in_out_layout && relative && pattern_matches(a->in_out_layout, relative)) {
    memcpy(module, t->name, n + 1);
    return IGNORE_EXPERTS;
  }
  if (t->ndim != 2 || n < 8 || strcmp(t->name + n - 7, ".weight") != 0) return NOT_LINEAR;
  memcpy(module, t->name, n - 7);
  module[n - 7] = 0;
  if (is_router(a, adapter_relative_name(a, module))) return IGNORE;
  return adapter_reader_norm(a, module) || adapter_is_writer(a, module) ? QUANTIZE : IGNORE;
}

static void fused_key(const model_adapter *a, planned_tensor *e) {
  const char *norm = adapter_reader_norm(a, e->module);
  const char *last = strrchr(e->module, '.');
  e->group_amax = -1;
  e->fused_key[0] = 0;
  if (norm && last) snprintf(e->fused_key, sizeof e->fused_key, "%s@%.*s", norm, (int)(last - e->module), e->module);
}

static int compare_planned(const void *x, const void *y) {
  const planned_tensor *a = x, *b = y;
  if (a->layer != b->layer) return a->layer < b->layer ? -1 : 1;
  return strcmp(a->t->name, b->t->name);
}

static int add_ignored(plan *p, const char *module, rotq_error *err) {
  char **grown = realloc(p->ignored, (p->ignored_count + 1) * sizeof *grown);
  if (!grown) return rotq_fail(err, "out of memory");
  p->ignored = grown;
  if (!(p->ignored[p->ignored_count] = strdup(module))) return rotq_fail(err, "out of memory");
  p->ignored_count++;
  return 0;
}

/* A fused-expert tensor "<parent>.<name>" ("model.layers.0.mlp.experts.gate_up_proj") is kept in
 * full precision: vLLM loads it as a FusedMoE layer and asks for each expert's projections by
 * name ("<parent>.<e>.gate_proj"), so "ignore" gets the regular expression matching those, once
 * per parent. */
static int add_ignored_experts(plan *p, const char *tensor, rotq_error *err) {
  const char *dot = strrchr(tensor, '.');
  char entry[2 * ST_NAME_MAX + 16] = "re:";
  size_t k = 3;
  for (const char *c = tensor; c < dot && k + 3 < sizeof entry; c++) {
    if (*c == '.') entry[k++] = '\\';
    entry[k++] = *c;
  }
  if (k + 5 >= sizeof entry) return rotq_fail(err, "tensor '%s': name too long", tensor);
  memcpy(entry + k, "\\..*", 5);
  for (size_t i = 0; i < p->ignored_count; i++)
    if (strcmp(p->ignored[i], entry) == 0) return 0;
  return add_ignored(p, entry, err);
}

/* Decides every tensor's fate; orders them by layer (pre-run tensors first), then name. */
static int plan_tensors(const st_tensor *const *tensors, size_t count, const checkpoint *ck, const model_adapter *a,
                        const ct_scheme *s, plan *p, rotq_error *err) {
  *p = (plan){0};
  if (!(p->tensors = calloc(count ? count : 1, sizeof *p->tensors))) return rotq_fail(err, "out of memory");
  for (size_t i = 0; i < count; i++) {
    planned_tensor *e = &p->tensors[p->count++];
    e->t = tensors[i];
    e->layer = adapter_layer_of(a, e->t->name);
    linear_fate fate = decoder_linear(a, e->t, e->module);
    if (fate == IGNORE_EXPERTS && add_ignored_experts(p, e->module, err) < 0) return -1;
    if (fate == IGNORE && add_ignored(p, e->module, err) < 0) return -1;
    if (fate != QUANTIZE) e->module[0] = 0;
    e->quantize = fate == QUANTIZE;
    if (!e->quantize) continue;
    fused_key(a, e);
    e->part_count = ct_parts(s, e->t->shape[0], e->t->shape[1], e->t->dtype, e->parts);
    if (e->part_count < 0)
      return rotq_fail(err, "%s: tensor '%s' [%lld, %lld]: the group size %d does not divide its %lld input columns",
                       ck ? checkpoint_path_of(ck, e->t) : "output", e->t->name, (long long)e->t->shape[0],
                       (long long)e->t->shape[1], s->group, (long long)e->t->shape[1]);
  }
  qsort(p->tensors, p->count, sizeof *p->tensors, compare_planned);
  for (size_t i = 0; i < p->count; i++) {
    p->tensors[i].spec = p->spec_count;
    p->tensors[i].fake_spec = i;
    p->spec_count += p->tensors[i].quantize ? (size_t)p->tensors[i].part_count : 1;
  }
  return 0;
}

static char (*spec_names(const plan *p))[ST_NAME_MAX + 32] {
  return calloc(p->spec_count ? p->spec_count : 1, ST_NAME_MAX + 32);
}

/* The writer of the quantized output (fake = false) or of the fake-quantized one. */
static st_writer *open_writer(const plan *p, const char *dir, bool fake, size_t max_shard, rotq_error *err) {
  size_t n = fake ? p->count : p->spec_count;
  st_spec *specs = calloc(n ? n : 1, sizeof *specs);
  const char **stored = calloc(n ? n : 1, sizeof *stored);
  char(*names)[ST_NAME_MAX + 32] = spec_names(p);
  if (!specs || !stored || !names) {
    free(specs);
    free(stored);
    free(names);
    rotq_fail(err, "out of memory");
    return NULL;
  }
  size_t k = 0;
  for (size_t i = 0; i < p->count; i++) {
    const planned_tensor *e = &p->tensors[i];
    if (fake || !e->quantize) {
      specs[k] = (st_spec){.name = e->t->name, .dtype = e->t->dtype, .ndim = e->t->ndim};
      memcpy(specs[k].shape, e->t->shape, sizeof e->t->shape);
      k++;
      continue;
    }
    for (int j = 0; j < e->part_count; j++, k++) {
      const ct_part_spec *part = &e->parts[j];
      snprintf(names[k], sizeof names[k], "%s.%s", e->module, part->suffix);
      specs[k] = (st_spec){.name = names[k], .dtype = e->t->dtype, .ndim = part->ndim};
      stored[k] = part->stored_dtype;
      specs[k].shape[0] = part->shape[0];
      specs[k].shape[1] = part->shape[1];
    }
  }
  st_writer *w = st_writer_open_stored(dir, specs, stored, k, max_shard, err);
  free(specs);
  free(stored);
  free(names);
  return w;
}

/* The state shared by the workers quantizing one weight. */
typedef struct weight_job {
  const ct_scheme *scheme;
  const planned_tensor *e;
  st_writer *writer, *fake_writer;
  const volatile sig_atomic_t *cancel;
  const quantize_source *source; /* NULL: RTN */
  double global_amax;            /* NVFP4A16: max |W| */
  /* NULL: the rows come from the input tensor's mapping; else rows [rows_begin, rows_end) of the
   * weight, in its dtype (the rotation stream's output) */
  const void *rows;
  int64_t rows_begin, rows_end;
  atomic_int failed;
  rotq_error error; /* the first failure */
  atomic_flag error_taken;
} weight_job;

static void job_fail(weight_job *j, rotq_error *err) {
  if (!atomic_flag_test_and_set(&j->error_taken)) j->error = *err;
  atomic_store(&j->failed, 1);
}

/* Fails naming t's first NaN or infinite element among rows [r0, r0 + n), given as bytes of its
 * dtype in src (refused as rotate refuses them). */
static int refuse_non_finite(const st_tensor *t, const unsigned char *src, int64_t r0, int64_t n, rotq_error *err) {
  const int64_t cols = t->shape[1];
  size_t bad = first_non_finite(t->dtype, src, (size_t)(n * cols));
  if (bad < (size_t)(n * cols))
    return rotq_fail(err, "tensor '%s': element %zu (row %lld) is NaN or infinite", t->name, (size_t)(r0 * cols) + bad,
                     (long long)(r0 + (int64_t)bad / cols));
  return 0;
}

/* Quantizes rows [r0, r0 + n) of j's weight, given as bytes of its dtype in src, a row block
 * (ct_row_block rows) at a time: refused when not finite, converted into w ([row block, cols]
 * doubles, so that they are quantized while in cache) and quantized into the chunk's buffers. */
static int quantize_rows_from(weight_job *j, int64_t r0, int64_t n, const unsigned char *src, double *w, void *weight,
                              double *scale, int32_t *zero, double *fake, rotq_error *err) {
  const st_tensor *t = j->e->t;
  const int64_t cols = t->shape[1], groups = ct_groups(j->scheme, cols), step = ct_row_block(j->scheme);
  const size_t element = dtype_size(t->dtype);
  for (int64_t b0 = 0; b0 < n; b0 += step) {
    const int64_t m = n - b0 < step ? n - b0 : step;
    const unsigned char *at = src + (size_t)(b0 * cols) * element;
    if (refuse_non_finite(t, at, r0 + b0, m, err) < 0) return -1; /* RTN has no code for it */
    const int64_t scale_at = (j->scheme->block ? b0 / j->scheme->block : b0) * groups;
    if (t->dtype == DTYPE_BF16 && !fake) { /* the int schemes straight from the bfloat16 rows */
      int done = ct_quantize_rows_bf16(j->scheme, (const uint16_t *)(const void *)at, m, cols,
                                       (unsigned char *)weight + ct_weight_bytes(j->scheme, b0, cols), scale + scale_at,
                                       zero + (size_t)(b0 * j->scheme->bits / 32) * (size_t)groups);
      if (done < 0) return rotq_fail(err, "tensor '%s': out of memory", t->name);
      if (done == 0) continue;
    }
    dtype_to_f64(t->dtype, at, w, (size_t)(m * cols));
    if (ct_quantize_rows(j->scheme, w, m, cols, t->dtype, j->global_amax,
                         (unsigned char *)weight + ct_weight_bytes(j->scheme, b0, cols), scale + scale_at,
                         zero + (size_t)(b0 * j->scheme->bits / 32) * (size_t)groups,
                         fake ? fake + b0 * cols : NULL) < 0)
      return rotq_fail(err, "tensor '%s': out of memory", t->name);
  }
  return 0;
}

/* Rows [r0, r0 + n) of j's weight as j->source (GPTQ) quantized them; the input rows in src are
 * refused when not finite, as RTN refuses them. */
static int source_rows(weight_job *j, int64_t r0, int64_t n, const unsigned char *src, void *weight, double *scale,
                       int32_t *zero, double *fake, rotq_error *err) {
  const st_tensor *t = j->e->t;
  if (refuse_non_finite(t, src, r0, n, err) < 0) return -1;
  return j->source->rows(j->source->context, t, r0, n, weight, scale, zero, fake, err);
}

/* Writes every part's bytes for rows [r0, r0 + n) of j's weight, quantized by quantize_rows_from
 * (and the fake-quantized rows to j->fake_writer when set). */
static int quantize_write(weight_job *j, int64_t r0, int64_t n, void *weight, double *scale, void *scale_bytes,
                          int32_t *zero, double *fake, void *fake_bytes, rotq_error *err) {
  const st_tensor *t = j->e->t;
  const int64_t cols = t->shape[1], groups = ct_groups(j->scheme, cols);
  const size_t element = dtype_size(t->dtype);
  const bool byte_scales = j->scheme->kind == CT_NVFP4A16 || j->scheme->kind == CT_MXFP4A16;
  const int block = j->scheme->block; /* FP8_BLOCK: a row of scales per block of rows */
  const int64_t scale_rows = block ? (n + block - 1) / block : n, scale_r0 = block ? r0 / block : r0;
  if (j->scheme->kind == CT_NVFP4A16)
    for (int64_t i = 0; i < n * groups; i++) ((uint8_t *)scale_bytes)[i] = ct_e4m3_encode(scale[i]);
  else if (j->scheme->kind == CT_MXFP4A16)
    for (int64_t i = 0; i < n * groups; i++) { /* E8M0: the exponent + 127 (byte 0: 2^-127) */
      int exponent;
      frexp(scale[i], &exponent);
      ((uint8_t *)scale_bytes)[i] = (uint8_t)(exponent - 1 + 127);
    }
  else
    dtype_from_f64(t->dtype, scale, scale_bytes, (size_t)(scale_rows * groups));
  const size_t scale_element = byte_scales ? 1 : element;
  size_t index = j->e->spec;
  for (int p = 0; p < j->e->part_count; p++, index++) {
    const ct_part_spec *part = &j->e->parts[p];
    int rc = 0;
    if (part->part == CT_PART_WEIGHT) {
      size_t bytes = ct_weight_bytes(j->scheme, n, cols);
      rc = st_writer_write_part(j->writer, index, ct_weight_bytes(j->scheme, r0, cols), weight, bytes, err);
    } else if (part->part == CT_PART_SCALE) {
      size_t row = (size_t)groups * scale_element;
      rc = st_writer_write_part(j->writer, index, (size_t)scale_r0 * row, scale_bytes, (size_t)scale_rows * row, err);
    } else if (part->part == CT_PART_ZERO) {
      size_t words = (size_t)((n * j->scheme->bits + 31) / 32), first = (size_t)(r0 * j->scheme->bits / 32);
      rc = st_writer_write_part(j->writer, index, first * (size_t)groups * 4, zero, words * (size_t)groups * 4, err);
    } else if (r0 == 0 && part->part == CT_PART_SHAPE) { /* once */
      int64_t shape[2] = {t->shape[0], cols};
      rc = st_writer_write(j->writer, index, shape, err);
    } else if (r0 == 0 && part->part == CT_PART_GLOBAL) {
      float global = (float)ct_nvfp4_global_scale(j->global_amax);
      rc = st_writer_write(j->writer, index, &global, err);
    }
    if (rc < 0) return -1;
  }
  if (!j->fake_writer) return 0;
  dtype_from_f64(t->dtype, fake, fake_bytes, (size_t)(n * cols));
  return st_writer_write_part(j->fake_writer, j->e->fake_spec, (size_t)(r0 * cols) * element, fake_bytes,
                              (size_t)(n * cols) * element, err);
}

/* Rows [r0, r0 + n) of the weight, from src (the rows' bytes in the weight's dtype) when given,
 * else from the input tensor's mapping (whose pages are then released): refused when not finite,
 * converted, quantized and written. */
static int quantize_chunk(weight_job *j, int64_t r0, int64_t n, double *w, void *weight, double *scale,
                          void *scale_bytes, int32_t *zero, double *fake, void *fake_bytes, rotq_error *err) {
  const st_tensor *t = j->e->t;
  const int64_t cols = t->shape[1];
  const size_t element = dtype_size(t->dtype);
  const unsigned char *src = j->rows ? (const unsigned char *)j->rows + (size_t)((r0 - j->rows_begin) * cols) * element
                                     : (const unsigned char *)t->data + (size_t)(r0 * cols) * element;
  int rc = j->source ? source_rows(j, r0, n, src, weight, scale, zero, fake, err)
                     : quantize_rows_from(j, r0, n, src, w, weight, scale, zero, fake, err);
  if (!j->rows) st_release(src, (size_t)(n * cols) * element);
  return rc < 0 ? -1 : quantize_write(j, r0, n, weight, scale, scale_bytes, zero, fake, fake_bytes, err);
}

/* parallel_for body: chunks [begin, end) of ROWS_PER_CHUNK rows. */
static void quantize_chunks(void *context, size_t begin, size_t end) {
  weight_job *j = context;
  const st_tensor *t = j->e->t;
  const int64_t rows = j->rows_end, cols = t->shape[1], groups = ct_groups(j->scheme, cols);
  const size_t cells = (size_t)(ROWS_PER_CHUNK * cols);
  double *w = malloc((size_t)(ct_row_block(j->scheme) * cols) * sizeof *w),
         *fake = j->fake_writer ? malloc(cells * sizeof *fake) : NULL;
  void *weight = malloc(ct_weight_bytes(j->scheme, ROWS_PER_CHUNK, cols));
  double *scale = malloc((size_t)(ROWS_PER_CHUNK * groups) * sizeof *scale);
  void *scale_bytes = malloc((size_t)(ROWS_PER_CHUNK * groups) * 8);
  int32_t *zero = malloc((size_t)((ROWS_PER_CHUNK * j->scheme->bits + 31) / 32 * groups) * sizeof *zero);
  void *fake_bytes = j->fake_writer ? malloc(cells * 8) : NULL;
  rotq_error err = {{0}};
  if (!w || !weight || !scale || !scale_bytes || !zero || (j->fake_writer && (!fake || !fake_bytes))) {
    rotq_fail(&err, "tensor '%s': out of memory", t->name);
    job_fail(j, &err);
  }
  for (size_t c = begin; c < end && !atomic_load(&j->failed); c++) {
    if (j->cancel && *j->cancel) {
      rotq_fail(&err, "cancelled (signal %d); the partial output was removed", (int)*j->cancel);
      job_fail(j, &err);
      break;
    }
    int64_t r0 = j->rows_begin + (int64_t)c * ROWS_PER_CHUNK,
            n = rows - r0 < ROWS_PER_CHUNK ? rows - r0 : ROWS_PER_CHUNK;
    if (quantize_chunk(j, r0, n, w, weight, scale, scale_bytes, zero, fake, fake_bytes, &err) < 0) job_fail(j, &err);
  }
  free(w);
  free(fake);
  free(weight);
  free(scale);
  free(scale_bytes);
  free(zero);
  free(fake_bytes);
}

/* max |W| of a weight (a first pass over it, in row blocks). */
static int weight_amax(const st_tensor *t, double *amax) {
  const int64_t cols = t->shape[1], rows = t->shape[0];
  const size_t element = dtype_size(t->dtype);
  double *w = malloc((size_t)(ROWS_PER_CHUNK * cols) * sizeof *w);
  if (!w) return -1;
  double m = 0;
  for (int64_t r0 = 0; r0 < rows; r0 += ROWS_PER_CHUNK) {
    int64_t n = rows - r0 < ROWS_PER_CHUNK ? rows - r0 : ROWS_PER_CHUNK;
    const unsigned char *src = (const unsigned char *)t->data + (size_t)(r0 * cols) * element;
    dtype_to_f64(t->dtype, src, w, (size_t)(n * cols));
    st_release(src, (size_t)(n * cols) * element);
    for (int64_t i = 0; i < n * cols; i++) m = fabs(w[i]) > m ? fabs(w[i]) : m;
  }
  free(w);
  *amax = m;
  return 0;
}

/* The max |W| shared by e's fused group (plan_tensors's fused_key): computed over every member
 * when the first of them asks, then remembered by each. */
static int fused_amax(plan *p, planned_tensor *e, double *amax) {
  if (e->group_amax >= 0) return *amax = e->group_amax, 0;
  double m = 0;
  for (size_t i = 0; i < p->count; i++) {
    planned_tensor *other = &p->tensors[i];
    if (other != e && (!e->fused_key[0] || !other->quantize || strcmp(other->fused_key, e->fused_key) != 0 ||
                       other->layer != e->layer))
      continue;
    double one;
    if (weight_amax(other->t, &one) < 0) return -1;
    m = one > m ? one : m;
  }
  for (size_t i = 0; i < p->count; i++)
    if (&p->tensors[i] == e ||
        (e->fused_key[0] && p->tensors[i].layer == e->layer && strcmp(p->tensors[i].fused_key, e->fused_key) == 0))
      p->tensors[i].group_amax = m;
  return *amax = m, 0;
}

static int quantize_weight(const quantize_options *o, plan *p, planned_tensor *e, st_writer *writer,
                           st_writer *fake_writer, int threads, rotq_error *err) {
  weight_job j = {.scheme = &o->scheme,
                  .e = e,
                  .writer = writer,
                  .fake_writer = fake_writer,
                  .cancel = o->cancel,
                  .source = o->source,
                  .rows_end = e->t->shape[0]};
  if (o->source && o->source->prepare(o->source->context, e->t, e->layer, err) < 0) return -1;
  atomic_init(&j.failed, 0);
  atomic_flag_clear(&j.error_taken);
  if (o->scheme.kind == CT_NVFP4A16 && fused_amax(p, e, &j.global_amax) < 0)
    return rotq_fail(err, "tensor '%s': out of memory", e->t->name);
  size_t chunks = (size_t)((e->t->shape[0] + ROWS_PER_CHUNK - 1) / ROWS_PER_CHUNK);
  parallel_for(chunks, 1, threads, quantize_chunks, &j);
  if (atomic_load(&j.failed)) {
    *err = j.error;
    return -1;
  }
  return 0;
}

/* Copies a tensor unchanged in parts, returning each part's pages to the kernel. */
static int copy_tensor(st_writer *w, size_t index, const st_tensor *t, rotq_error *err) {
  if (t->nbytes == 0) return st_writer_write(w, index, t->data, err);
  for (size_t at = 0; at < t->nbytes; at += COPY_PART_BYTES) {
    size_t n = t->nbytes - at < COPY_PART_BYTES ? t->nbytes - at : COPY_PART_BYTES;
    const unsigned char *src = (const unsigned char *)t->data + at;
    if (st_writer_write_part(w, index, at, src, n, err) < 0) return -1;
    st_release(src, n);
  }
  return 0;
}

static int write_tensors(const quantize_options *o, const checkpoint *ck, plan *p, st_writer *writer,
                         st_writer *fake_writer, rotq_error *err) {
  const int threads = o->threads > 0 ? o->threads : cpu_count();
  for (size_t i = 0; i < p->count; i++) {
    planned_tensor *e = &p->tensors[i];
    if (o->cancel && *o->cancel)
      return rotq_fail(err, "cancelled (signal %d); the partial output was removed", (int)*o->cancel);
    if (o->cancel_fn && o->cancel_fn(o->cancel_context))
      return rotq_fail(err, "cancelled; the partial output was removed");
    int rc = e->quantize ? quantize_weight(o, p, e, writer, fake_writer, threads, err)
                         : copy_tensor(writer, e->spec, e->t, err);
    if (rc == 0 && !e->quantize && fake_writer) rc = copy_tensor(fake_writer, e->fake_spec, e->t, err);
    if (rc < 0) return rotq_fail_context(err, "%s", checkpoint_path_of(ck, e->t));
    checkpoint_forget(ck, e->t->data, e->t->nbytes);
    st_writer_drop_cache(writer);
    if (o->progress) o->progress(i + 1, p->count, o->user);
  }
  return 0;
}

/* The "weights" (and "input_activations") of the scheme's config group. */
static cJSON *quantization_args(int bits, const char *type, bool symmetric, const char *strategy, int group,
                                bool dynamic) {
  cJSON *a = cJSON_CreateObject();
  cJSON_AddNumberToObject(a, "num_bits", bits);
  cJSON_AddStringToObject(a, "type", type);
  cJSON_AddBoolToObject(a, "symmetric", symmetric);
  cJSON_AddStringToObject(a, "strategy", strategy);
  if (group > 0)
    cJSON_AddNumberToObject(a, "group_size", group);
  else
    cJSON_AddNullToObject(a, "group_size");
  cJSON_AddNullToObject(a, "block_structure");
  cJSON_AddBoolToObject(a, "dynamic", dynamic);
  cJSON_AddNullToObject(a, "actorder");
  if (dynamic)
    cJSON_AddNullToObject(a, "observer");
  else
    cJSON_AddStringToObject(a, "observer", "minmax");
  cJSON_AddObjectToObject(a, "observer_kwargs");
  return a;
}

static cJSON *config_group(const ct_scheme *s) {
  cJSON *g = cJSON_CreateObject();
  cJSON *targets = cJSON_AddArrayToObject(g, "targets");
  json_add_to_array(targets, cJSON_CreateString("Linear"));
  const bool nvfp4 = s->kind == CT_NVFP4A16, mxfp4 = s->kind == CT_MXFP4A16;
  const char *type = s->kind == CT_FP8 || nvfp4 || mxfp4 ? "float" : "int";
  const char *strategy = nvfp4 ? "tensor_group" : s->block ? "block" : s->group > 0 ? "group" : "channel";
  cJSON *weights = quantization_args(s->bits, type, s->symmetric, strategy, s->group, false);
  if (nvfp4 || mxfp4) { /* as compressed-tensors' NVFP4A16 / MXFP4A16 presets: E4M3 / E8M0 scales */
    cJSON_AddStringToObject(weights, "scale_dtype", nvfp4 ? "torch.float8_e4m3fn" : "torch.uint8");
    cJSON_AddStringToObject(weights, "zp_dtype", nvfp4 ? "torch.float8_e4m3fn" : "torch.uint8");
  }
  if (s->block) { /* as the FP8_BLOCK preset: [128, 128] blocks */
    cJSON *structure = cJSON_CreateArray();
    json_add_to_array(structure, cJSON_CreateNumber(s->block));
    json_add_to_array(structure, cJSON_CreateNumber(s->block));
    cJSON_ReplaceItemInObjectCaseSensitive(weights, "block_structure", structure);
  }
  json_add_to_object(g, "weights", weights);
  if (s->kind == CT_W4A16 || nvfp4 || mxfp4)
    cJSON_AddNullToObject(g, "input_activations");
  else if (s->block) /* dynamic per token group of 128 */
    json_add_to_object(g, "input_activations", quantization_args(8, type, true, "group", s->block, true));
  else
    json_add_to_object(g, "input_activations", quantization_args(8, type, true, "token", 0, true));
  cJSON_AddNullToObject(g, "output_activations");
  cJSON_AddStringToObject(g, "format", ct_scheme_format(s));
  return g;
}

/* The input's quantization_config: none, or one that carries only online transforms (an output of
 * `rotq rotate --online`), which the quantized checkpoint keeps. Read before the checkpoint is
 * opened: the tensors of a quantized checkpoint are of types rotq does not read. A missing or
 * broken config.json is left to checkpoint_open to report. */
static int check_input_quantization(const char *dir, rotq_error *err) {
  char path[4200];
  snprintf(path, sizeof path, "%s/config.json", dir);
  cJSON *config = json_file_read(path, NULL);
  const cJSON *q = config ? cJSON_GetObjectItemCaseSensitive(config, "quantization_config") : NULL;
  const cJSON *groups = q ? cJSON_GetObjectItemCaseSensitive(q, "config_groups") : NULL;
  const cJSON *transform = q ? cJSON_GetObjectItemCaseSensitive(q, "transform_config") : NULL;
  bool quantized = q && !(transform && (!groups || (cJSON_IsObject(groups) && !groups->child)));
  cJSON_Delete(config);
  if (!quantized) return 0;
  return rotq_fail(err, "%s: already has a quantization_config with config_groups: the checkpoint is quantized already",
                   path);
}

/* Sets json's quantization_config to the scheme's (keeping an online export's transform_config). */
static int apply_config(cJSON *json, const ct_scheme *s, const plan *p, rotq_error *err) {
  cJSON *q = cJSON_DetachItemFromObjectCaseSensitive(json, "quantization_config");
  if (!q) q = cJSON_CreateObject();
  if (!q) return rotq_fail(err, "out of memory");
  static const char *const replaced[] = {"quant_method", "format",          "quantization_status",      "config_groups",
                                         "ignore",       "kv_cache_scheme", "global_compression_ratio", "version"};
  for (size_t i = 0; i < sizeof replaced / sizeof replaced[0]; i++)
    cJSON_DeleteItemFromObjectCaseSensitive(q, replaced[i]);
  cJSON_AddStringToObject(q, "quant_method", "compressed-tensors");
  cJSON_AddStringToObject(q, "format", ct_scheme_format(s));
  cJSON_AddStringToObject(q, "quantization_status", "compressed");
  json_add_to_object(cJSON_AddObjectToObject(q, "config_groups"), "group_0", config_group(s));
  cJSON *ignore = cJSON_AddArrayToObject(q, "ignore");
  json_add_to_array(ignore, cJSON_CreateString("lm_head"));
  for (size_t i = 0; i < p->ignored_count; i++) json_add_to_array(ignore, cJSON_CreateString(p->ignored[i]));
  cJSON_AddNullToObject(q, "kv_cache_scheme");
  cJSON_AddNullToObject(q, "global_compression_ratio");
  if (!cJSON_GetObjectItemCaseSensitive(q, "sparsity_config")) cJSON_AddObjectToObject(q, "sparsity_config");
  cJSON_AddStringToObject(q, "version", QUANTIZE_COMPRESSED_TENSORS_VERSION);
  json_add_to_object(json, "quantization_config", q);
  return 0;
}

static int write_config(const checkpoint *ck, const ct_scheme *s, const plan *p, const char *dir, rotq_error *err) {
  cJSON *json = cJSON_Duplicate(ck->config.json, 1);
  if (!json) return rotq_fail(err, "out of memory");
  int rc = apply_config(json, s, p, err);
  char path[4200];
  snprintf(path, sizeof path, "%s/config.json", dir);
  if (rc == 0) rc = json_file_write(path, json, err);
  cJSON_Delete(json);
  return rc;
}

/* Copies the input's other regular files (tokenizer, generation config, rotation.json, ...). */
static int copy_other_files(const char *in, const char *out, rotq_error *err) {
  DIR *d = opendir(in);
  if (!d) return rotq_fail(err, "%s: cannot list directory", in);
  struct dirent *entry;
  int rc = 0;
  while (rc == 0 && (entry = readdir(d))) {
    const char *n = entry->d_name;
    size_t len = strlen(n);
    if (n[0] == '.' || !strcmp(n, "config.json") || !strcmp(n, "model.safetensors.index.json") ||
        (len > 12 && !strcmp(n + len - 12, ".safetensors")))
      continue;
    char src[4200], dst[4200];
    snprintf(src, sizeof src, "%s/%s", in, n);
    snprintf(dst, sizeof dst, "%s/%s", out, n);
    struct stat st;
    if (stat(src, &st) == 0 && S_ISREG(st.st_mode)) rc = copy_file(src, dst, err);
  }
  closedir(d);
  return rc;
}

/* Everything between opening the output directories and committing them. */
static int quantize_into(const quantize_options *o, const checkpoint *ck, plan *p, const char *dir,
                         const char *fake_dir, rotq_error *err) {
  st_writer *writer = open_writer(p, dir, false, o->max_shard_bytes, err);
  st_writer *fake = writer && fake_dir ? open_writer(p, fake_dir, true, o->max_shard_bytes, err) : NULL;
  int rc = writer && (!fake_dir || fake) ? write_tensors(o, ck, p, writer, fake, err) : -1;
  if (rc == 0) {
    rc = st_writer_finish(writer, err);
    writer = NULL;
  }
  if (rc == 0 && fake) {
    rc = st_writer_finish(fake, err);
    fake = NULL;
  }
  if (writer) st_writer_abort(writer);
  if (fake) st_writer_abort(fake);
  if (rc == 0) rc = write_config(ck, &o->scheme, p, dir, err);
  if (rc == 0) rc = copy_other_files(ck->dir, dir, err);
  if (rc == 0 && fake_dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", fake_dir);
    rc = json_file_write(path, ck->config.json, err);
    if (rc == 0) rc = copy_other_files(ck->dir, fake_dir, err);
  }
  return rc;
}

static void summarize(const plan *p, quantize_result *r) {
  *r = (quantize_result){.ignored = p->ignored_count};
  for (size_t i = 0; i < p->count; i++) {
    const planned_tensor *e = &p->tensors[i];
    r->input_bytes += (double)e->t->nbytes;
    if (!e->quantize) {
      r->copied++;
      r->output_bytes += (double)e->t->nbytes;
      continue;
    }
    r->quantized++;
    for (int j = 0; j < e->part_count; j++) {
      const ct_part_spec *part = &e->parts[j];
      double cells = (double)part->shape[0] * (part->ndim > 1 ? (double)part->shape[1] : 1);
      const char *d = part->stored_dtype;
      double size = !d                                       ? (double)dtype_size(e->t->dtype)
                    : !strcmp(d, "I64")                      ? 8
                    : !strcmp(d, "I32") || !strcmp(d, "F32") ? 4
                                                             : 1;
      r->output_bytes += cells * size;
    }
  }
}

int quantize_compressed(const quantize_options *o, quantize_result *result, rotq_error *err) {
  if (!o->model_dir || !o->output_dir) return rotq_fail(err, "both the model and the output directory are required");
  checkpoint ck;
  if (check_input_quantization(o->model_dir, err) < 0 || checkpoint_open(o->model_dir, &ck, err) < 0) return -1;
  const model_adapter *adapter = adapter_for(&ck.config, err);
  plan p = {0};
  int rc = adapter ? 0 : rotq_fail_context(err, "%s/config.json", ck.dir);
  if (rc == 0)
    rc = plan_tensors((const st_tensor *const *)ck.tensors, ck.tensor_count, &ck, adapter, &o->scheme, &p, err);
  const logger log = {o->log, o->log_context};
  output_dir out, fake_out;
  bool out_open = false, fake_open = false;
  if (rc == 0) rc = output_dir_begin(o->model_dir, o->output_dir, o->force, &log, &out, err);
  out_open = rc == 0;
  if (rc == 0 && o->fake_quant_dir) {
    rc = output_dir_begin(o->model_dir, o->fake_quant_dir, o->force, &log, &fake_out, err);
    fake_open = rc == 0;
  }
  if (rc == 0) rc = quantize_into(o, &ck, &p, out.temp_path, o->fake_quant_dir ? fake_out.temp_path : NULL, err);
  if (rc == 0 && fake_open) rc = output_dir_commit(&fake_out, err);
  if (rc == 0) rc = output_dir_commit(&out, err);
  if (rc != 0 && fake_open) output_dir_abort(&fake_out);
  if (rc != 0 && out_open) output_dir_abort(&out);
  if (rc == 0 && result) summarize(&p, result);
  plan_free(&p);
  checkpoint_close(&ck);
  return rc;
}

/* ---- the rotation stream's quantizer (rotq rotate --quantize) ------------------------------- */

/* The rotated rows of one quantized weight, held in memory while something still needs them: the
 * in-stream check (until quantize_stream_release), NVFP4A16 until its fused group is complete. */
typedef struct held_rows {
  unsigned char *data; /* the weight's rows in its dtype; NULL until its first rows come */
  int64_t rows_done;   /* rows received */
  double amax;         /* NVFP4A16: max |W| over the rows received */
} held_rows;

/* NVFP4A16: one fused group (plan_tensors's fused_key in one layer; a weight fused with nothing is
 * a group of one), its members members[first .. first + count) of quantize_stream.members. */
typedef struct fused_group {
  size_t first, count, complete; /* members; members whose rows have all come */
} fused_group;

struct quantize_stream {
  ct_scheme scheme;
  int threads;
  st_tensor *tensors; /* the rotation's outputs, as tensors without data */
  plan p;
  st_writer *writer;
  bool keep;            /* quantize_stream_keep_rows */
  pthread_mutex_t lock; /* guards held, the groups' counts and the buffers */
  held_rows *held;      /* per planned tensor */
  buffer_pool buffers;  /* the held rows' buffers, reused: the next layer's weights have the same shapes */
  size_t peak_held_bytes, peak_pool_bytes;
  fused_group *groups; /* NVFP4A16 */
  size_t group_count;
  size_t *group_of; /* NVFP4A16: per planned tensor, its group */
  size_t *members;  /* NVFP4A16: planned tensor indices, grouped */
};

/* A buffer for held rows (buffer_pool_take), the peaks updated. Called with q->lock held. */
static unsigned char *buffer_take(quantize_stream *q, size_t size) {
  unsigned char *data = buffer_pool_take(&q->buffers, size);
  if (q->buffers.busy_bytes > q->peak_held_bytes) q->peak_held_bytes = q->buffers.busy_bytes;
  if (q->buffers.bytes > q->peak_pool_bytes) q->peak_pool_bytes = q->buffers.bytes;
  return data;
}

/* Returns planned tensor i's held rows to the pool. Called with q->lock held. */
static void held_drop(quantize_stream *q, size_t i) {
  held_rows *h = &q->held[i];
  buffer_pool_give(&q->buffers, h->data);
  h->data = NULL;
}

void quantize_stream_free(quantize_stream *q) {
  if (!q) return;
  if (q->writer) st_writer_abort(q->writer);
  buffer_pool_free(&q->buffers);
  free(q->held);
  free(q->groups);
  free(q->group_of);
  free(q->members);
  pthread_mutex_destroy(&q->lock);
  plan_free(&q->p);
  free(q->tensors);
  free(q);
}

/* NVFP4A16's grouping: a quantized planned tensor and its index. */
typedef struct fused_entry {
  const planned_tensor *e;
  size_t index;
} fused_entry;

/* By layer, then fused key, then plan order. */
static int compare_fused(const void *x, const void *y) {
  const fused_entry *a = x, *b = y;
  if (a->e->layer != b->e->layer) return a->e->layer < b->e->layer ? -1 : 1;
  int c = strcmp(a->e->fused_key, b->e->fused_key);
  return c ? c : (a->index > b->index) - (a->index < b->index);
}

/* NVFP4A16: the fused groups of q's quantized weights (as fused_amax groups them). */
static int plan_groups(quantize_stream *q, rotq_error *err) {
  const plan *p = &q->p;
  fused_entry *entries = calloc(p->count ? p->count : 1, sizeof *entries);
  q->group_of = calloc(p->count ? p->count : 1, sizeof *q->group_of);
  q->members = calloc(p->count ? p->count : 1, sizeof *q->members);
  q->groups = calloc(p->count ? p->count : 1, sizeof *q->groups);
  if (!entries || !q->group_of || !q->members || !q->groups) {
    free(entries);
    return rotq_fail(err, "out of memory");
  }
  size_t n = 0;
  for (size_t i = 0; i < p->count; i++)
    if (p->tensors[i].quantize) entries[n++] = (fused_entry){&p->tensors[i], i};
  qsort(entries, n, sizeof *entries, compare_fused);
  for (size_t k = 0; k < n; k++) {
    const planned_tensor *e = entries[k].e, *before = k ? entries[k - 1].e : NULL;
    bool joins = before && e->fused_key[0] && before->layer == e->layer && !strcmp(before->fused_key, e->fused_key);
    if (!joins) q->groups[q->group_count++] = (fused_group){.first = k};
    q->groups[q->group_count - 1].count++;
    q->members[k] = entries[k].index;
    q->group_of[entries[k].index] = q->group_count - 1;
  }
  free(entries);
  return 0;
}

quantize_stream *quantize_stream_open(const model_adapter *a, const ct_scheme *s, const st_spec *outputs, size_t count,
                                      const char *dir, size_t max_shard_bytes, int threads, rotq_error *err) {
  quantize_stream *q = calloc(1, sizeof *q);
  const st_tensor **list = calloc(count ? count : 1, sizeof *list);
  if (q) {
    pthread_mutex_init(&q->lock, NULL);
    q->tensors = calloc(count ? count : 1, sizeof *q->tensors);
  }
  if (!q || !list || !q->tensors) {
    free(list);
    quantize_stream_free(q);
    rotq_fail(err, "out of memory");
    return NULL;
  }
  q->scheme = *s;
  q->threads = threads > 0 ? threads : cpu_count();
  for (size_t i = 0; i < count; i++) {
    st_tensor *t = &q->tensors[i];
    *t = (st_tensor){.name = (char *)outputs[i].name, .dtype = outputs[i].dtype, .ndim = outputs[i].ndim};
    memcpy(t->shape, outputs[i].shape, sizeof t->shape);
    t->nbytes = st_numel(t) * dtype_size(t->dtype);
    list[i] = t;
  }
  int rc = plan_tensors(list, count, NULL, a, s, &q->p, err);
  free(list);
  if (rc == 0 && !(q->held = calloc(q->p.count ? q->p.count : 1, sizeof *q->held)))
    rc = rotq_fail(err, "out of memory");
  if (rc == 0 && s->kind == CT_NVFP4A16) rc = plan_groups(q, err);
  if (rc == 0 && !(q->writer = open_writer(&q->p, dir, false, max_shard_bytes, err))) rc = -1;
  if (rc < 0) {
    quantize_stream_free(q);
    return NULL;
  }
  return q;
}

void quantize_stream_keep_rows(quantize_stream *q) { q->keep = true; }

st_writer *quantize_stream_writer(const quantize_stream *q) { return q->writer; }

int quantize_stream_row_block(const quantize_stream *q) { return ct_row_block(&q->scheme); }

long quantize_stream_index(const quantize_stream *q, const char *name) {
  for (size_t i = 0; i < q->p.count; i++)
    if (q->p.tensors[i].quantize && !strcmp(q->p.tensors[i].t->name, name)) return (long)i;
  return -1;
}

/* Quantizes and writes rows [r0, r0 + n) of e, given in rows (in its dtype), NVFP4A16's global
 * scale from global_amax; up to q->threads threads. */
static int quantize_held(quantize_stream *q, const planned_tensor *e, int64_t r0, int64_t n, const void *rows,
                         double global_amax, rotq_error *err) {
  weight_job j = {.scheme = &q->scheme,
                  .e = e,
                  .writer = q->writer,
                  .global_amax = global_amax,
                  .rows = rows,
                  .rows_begin = r0,
                  .rows_end = r0 + n};
  atomic_init(&j.failed, 0);
  atomic_flag_clear(&j.error_taken);
  size_t chunks = (size_t)((n + ROWS_PER_CHUNK - 1) / ROWS_PER_CHUNK);
  parallel_for(chunks, 1, chunks > 1 ? q->threads : 1, quantize_chunks, &j);
  if (atomic_load(&j.failed)) {
    *err = j.error;
    return -1;
  }
  return 0;
}

/* max |x| over count elements of dtype t (as weight_amax computes it). */
static double bytes_amax(dtype t, const unsigned char *bytes, size_t count) {
  double w[1024], m = 0;
  const size_t element = dtype_size(t);
  for (size_t at = 0; at < count; at += 1024) {
    size_t n = count - at < 1024 ? count - at : 1024;
    dtype_to_f64(t, bytes + at * element, w, n);
    for (size_t i = 0; i < n; i++) m = fabs(w[i]) > m ? fabs(w[i]) : m;
  }
  return m;
}

/* NVFP4A16: group g is complete; quantizes its members from their held rows with their joint
 * amax, then (unless kept for the check) returns the rows to the pool. */
static int quantize_group(quantize_stream *q, size_t g, rotq_error *err) {
  const fused_group *group = &q->groups[g];
  double amax = 0;
  for (size_t k = group->first; k < group->first + group->count; k++)
    amax = q->held[q->members[k]].amax > amax ? q->held[q->members[k]].amax : amax;
  int rc = 0;
  for (size_t k = group->first; rc == 0 && k < group->first + group->count; k++) {
    const planned_tensor *e = &q->p.tensors[q->members[k]];
    rc = quantize_held(q, e, 0, e->t->shape[0], q->held[q->members[k]].data, amax, err);
  }
  if (q->keep) return rc;
  pthread_mutex_lock(&q->lock);
  for (size_t k = group->first; k < group->first + group->count; k++) held_drop(q, q->members[k]);
  pthread_mutex_unlock(&q->lock);
  return rc;
}

int quantize_stream_rows(quantize_stream *q, long index, int64_t r0, int64_t n, const void *rows, rotq_error *err) {
  if (index < 0 || (size_t)index >= q->p.count || !q->p.tensors[index].quantize)
    return rotq_fail(err, "quantize: tensor %ld is not a quantized weight", index);
  planned_tensor *e = &q->p.tensors[index];
  const int block = ct_row_block(&q->scheme);
  if (r0 % block != 0 || r0 < 0 || n < 0 || r0 + n > e->t->shape[0] || (n % block != 0 && r0 + n != e->t->shape[0]))
    return rotq_fail(err, "tensor '%s': rows [%lld, %lld) are not blocks of %d rows of the weight", e->t->name,
                     (long long)r0, (long long)(r0 + n), block);
  const bool nvfp4 = q->scheme.kind == CT_NVFP4A16;
  if (!q->keep && !nvfp4) return quantize_held(q, e, r0, n, rows, 0, err);
  /* held: copied into the weight's buffer (taken by its first rows), outside the lock */
  const size_t row_bytes = (size_t)e->t->shape[1] * dtype_size(e->t->dtype);
  held_rows *h = &q->held[index];
  pthread_mutex_lock(&q->lock);
  if (!h->data) h->data = buffer_take(q, e->t->nbytes ? e->t->nbytes : 1);
  unsigned char *data = h->data;
  pthread_mutex_unlock(&q->lock);
  if (!data)
    return rotq_fail(err, "tensor '%s': out of memory holding its %zu rotated bytes", e->t->name, e->t->nbytes);
  memcpy(data + (size_t)r0 * row_bytes, rows, (size_t)n * row_bytes);
  if (!nvfp4) {
    pthread_mutex_lock(&q->lock);
    h->rows_done += n;
    pthread_mutex_unlock(&q->lock);
    return quantize_held(q, e, r0, n, rows, 0, err);
  }
  /* NVFP4A16: written once the fused group is complete, by the thread completing it */
  double amax = bytes_amax(e->t->dtype, rows, (size_t)(n * e->t->shape[1]));
  pthread_mutex_lock(&q->lock);
  h->amax = amax > h->amax ? amax : h->amax;
  h->rows_done += n;
  fused_group *g = &q->groups[q->group_of[index]];
  bool group_done = h->rows_done == e->t->shape[0] && ++g->complete == g->count;
  pthread_mutex_unlock(&q->lock);
  return group_done ? quantize_group(q, q->group_of[index], err) : 0;
}

const void *quantize_stream_held(quantize_stream *q, long index) {
  if (index < 0 || (size_t)index >= q->p.count) return NULL;
  pthread_mutex_lock(&q->lock);
  const void *data = q->held[index].rows_done == q->p.tensors[index].t->shape[0] ? q->held[index].data : NULL;
  pthread_mutex_unlock(&q->lock);
  return data;
}

void quantize_stream_release(quantize_stream *q, long index) {
  if (index < 0 || (size_t)index >= q->p.count) return;
  pthread_mutex_lock(&q->lock);
  held_drop(q, (size_t)index);
  pthread_mutex_unlock(&q->lock);
}

void quantize_stream_memory(quantize_stream *q, size_t *held, size_t *peak_held, size_t *peak_pool) {
  pthread_mutex_lock(&q->lock);
  if (held) *held = q->buffers.busy_bytes;
  if (peak_held) *peak_held = q->peak_held_bytes;
  if (peak_pool) *peak_pool = q->peak_pool_bytes;
  pthread_mutex_unlock(&q->lock);
}

int quantize_stream_config(const quantize_stream *q, cJSON *config, rotq_error *err) {
  return apply_config(config, &q->scheme, &q->p, err);
}

int quantize_stream_finish(quantize_stream *q, rotq_error *err) {
  for (size_t g = 0; g < q->group_count; g++) /* NVFP4A16: a weight whose rows did not all come */
    if (q->groups[g].complete != q->groups[g].count) {
      const planned_tensor *e = &q->p.tensors[q->members[q->groups[g].first]];
      return rotq_fail(err, "tensor '%s': its fused group's rows did not all come: not written", e->t->name);
    }
  int rc = st_writer_finish(q->writer, err);
  q->writer = NULL;
  return rc;
}

/* ---- the public API (include/rotq.h) --------------------------------------------------------- */

int rotq_quantize(const rotq_quantize_options *options, rotq_quantize_result *result, rotq_error *err) {
  if (!options->scheme)
    return rotq_fail(err, "options: scheme is required (W4A16, W8A8, FP8, FP8_BLOCK, NVFP4A16, MXFP4A16)");
  quantize_options o = {.model_dir = options->model_dir,
                        .output_dir = options->output_dir,
                        .fake_quant_dir = options->fake_quant_dir,
                        .force = options->force != 0,
                        .threads = options->threads,
                        .max_shard_bytes = options->max_shard_bytes,
                        .cancel_fn = options->cancel,
                        .cancel_context = options->cancel_context,
                        .log = options->log,
                        .log_context = options->log_context};
  const bool w4 = strcasecmp(options->scheme, "W4A16") == 0;
  if (options->group_size < 0) return rotq_fail(err, "options: group_size %d is negative", options->group_size);
  if (!w4 && (options->group_size || options->asymmetric))
    return rotq_fail(err, "options: group_size and asymmetric apply to W4A16 only, not '%s'", options->scheme);
  if (ct_scheme_parse(options->scheme, w4 ? (options->group_size ? options->group_size : 128) : 0,
                      options->asymmetric != 0, &o.scheme) < 0)
    return rotq_fail(err, "options: unknown scheme '%s' (W4A16, W8A8, FP8, FP8_BLOCK, NVFP4A16, MXFP4A16)",
                     options->scheme);
  quantize_result r;
  if (quantize_compressed(&o, &r, err) < 0) return -1;
  if (result)
    *result = (rotq_quantize_result){.quantized = r.quantized,
                                     .copied = r.copied,
                                     .ignored = r.ignored,
                                     .input_bytes = r.input_bytes,
                                     .output_bytes = r.output_bytes};
  return 0;
}

#include "rotate/stream_check.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/parallel.h"
#include "linalg/rng.h"
#include "model/mla.h"
#include "rotate/quantize_command.h"
#include "rotate/quarot_processor.h"

#define PROBES 2    /* probe rows (positions) per check */
#define REAL_ROWS 8 /* real token embeddings kept as probes, one per layer in turn */
#define CHUNK_BYTES (1u << 20)
#define CHECK_SEED 0x5eedc0deULL

/* One weight as a [rows, cols] matrix: the original in the checkpoint's mapping, or the written one
 * in an output shard, or (rotq rotate --quantize) a quantized weight's rotated rows held in memory. */
typedef struct wref {
  const char *name;
  dtype t;
  size_t rows, cols;
  const unsigned char *map; /* original */
  const st_tensor *source;  /* original, when quantized: read through its scales (st_to_f64) */
  int fd;                   /* rotated: shard file, read with pread */
  uint64_t offset;
  const unsigned char *held; /* rotated, when quantized: its rows held by the quantizer (fd is -1) */
} wref;

struct stream_check {
  const quarot_processor *p;
  const checkpoint *ck;
  const model_adapter *a;
  const st_writer *w;
  const rotation *r1;       /* the embedding's input rotation (NULL: the stream is not rotated) */
  const double *reflection; /* LayerNorm families: R1·(I − 2wwᵀ) */
  bool centred;             /* LayerNorm families: the rotated stream is centred */
  int hidden, heads, kv_heads, head_dim, vocab, threads;
  int v_heads, v_head_dim; /* the value heads o_proj reads: kv_heads of head_dim, or MLA's heads of v_head_dim */
  long mla_nope;           /* MLA: each head's no-RoPE key rows before its value rows in kv_b_proj */
  bool use_float64;
  const char **paths; /* shard paths with an open fd: the output's, and the input's read with pread */
  int *fds;
  size_t fd_count;
  double *real_rows; /* [REAL_ROWS, hidden] original embedding rows */
  int real_count;
  stream_check_summary sum;
};

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

double stream_check_tolerance(int dtype_value, int use_float64) {
  double tol;
  switch ((dtype)dtype_value) {
  case DTYPE_F64: tol = 1e-9; break;
  case DTYPE_F32: tol = 1e-5; break;
  case DTYPE_F16: tol = 4e-3; break;
  default: tol = 2e-2; break; /* BF16: 8 significant bits, each written weight rounded once */
  }
  if (!use_float64 && tol < 2e-5) tol = 2e-5; /* rotated in float32 */
  return tol;
}

/* ---- reading weights back ---------------------------------------------------------------- */

/* The dtype the output holds original tensor t in (the tolerance of its comparisons). */
static dtype written_dtype(const stream_check *sc, const st_tensor *t) {
  return transform_output_dtype(&sc->p->context, t);
}

static int shard_fd(stream_check *sc, const char *path, rotq_error *err) {
  for (size_t i = 0; i < sc->fd_count; i++)
    if (strcmp(sc->paths[i], path) == 0) return sc->fds[i];
  const char **paths = realloc(sc->paths, (sc->fd_count + 1) * sizeof *paths);
  if (paths) sc->paths = paths;
  int *fds = realloc(sc->fds, (sc->fd_count + 1) * sizeof *fds);
  if (fds) sc->fds = fds;
  if (!paths || !fds) return rotq_fail(err, "verify: out of memory");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return rotq_fail(err, "verify: %s: cannot read back the output: %s", path, strerror(errno));
  sc->paths[sc->fd_count] = path;
  sc->fds[sc->fd_count++] = fd;
  return fd;
}

static void shape_of(const st_tensor *t, bool vector, size_t *rows, size_t *cols) {
  if (t->ndim == 2 && !vector) {
    *rows = (size_t)t->shape[0], *cols = (size_t)t->shape[1];
  } else {
    *rows = st_numel(t), *cols = 1;
  }
}

/* The descriptor of the input shard holding t's bytes and their offset there, or -1 (then the
 * mapping is read). */
static int source_fd(stream_check *sc, const st_tensor *t, uint64_t *offset) {
  uintptr_t at = (uintptr_t)t->data;
  for (size_t i = 0; i < sc->ck->shard_count; i++) {
    const st_file *f = &sc->ck->shards[i];
    if (at < (uintptr_t)f->map || at + t->nbytes > (uintptr_t)f->map + f->size) continue;
    rotq_error ignored;
    int fd = shard_fd(sc, f->path, &ignored);
    *offset = at - (uintptr_t)f->map;
    return fd;
  }
  return -1;
}

/* The original of output tensor `name` (its command's source), or an error. An unscaled original's
 * rows are read with pread where its shard opens (a copy from the page cache costs a third of
 * mapping and unmapping every page), else through the mapping. */
static int original_ref(stream_check *sc, const char *name, bool vector, wref *out, rotq_error *err) {
  const rotate_command *c = commands_find(&sc->p->commands, name);
  const st_tensor *t = c ? checkpoint_find(sc->ck, c->source) : NULL;
  if (!t) return rotq_fail(err, "verify: tensor '%s' is not in the plan", name);
  *out = (wref){.name = c->name, .t = t->dtype, .map = t->data, .source = st_is_quantized(t) ? t : NULL, .fd = -1};
  if (!out->source) out->fd = source_fd(sc, t, &out->offset);
  shape_of(t, vector, &out->rows, &out->cols);
  return 0;
}

static int rotated_ref(stream_check *sc, const char *name, bool vector, wref *out, rotq_error *err) {
  const rotate_command *c = commands_find(&sc->p->commands, name);
  const st_tensor *t = c ? checkpoint_find(sc->ck, c->source) : NULL;
  /* rotq rotate --quantize: a quantized weight's rotated values, before quantization, are held in
   * memory by the quantizer, which quantized these very bytes: what is proven is the rotation of
   * the values quantized */
  const transform_context *ctx = &sc->p->context;
  long held = t && ctx->quant ? quantize_stream_index(ctx->quant, name) : -1;
  if (held >= 0) {
    const unsigned char *rows = quantize_stream_held(ctx->quant, held);
    if (!rows) return rotq_fail(err, "verify: tensor '%s': its rotated rows are not held for the check", name);
    *out = (wref){.name = c->name, .t = transform_output_dtype(ctx, t), .fd = -1, .held = rows};
    shape_of(t, vector, &out->rows, &out->cols);
    return 0;
  }
  long index = st_writer_index(sc->w, name);
  if (!t || index < 0) return rotq_fail(err, "verify: tensor '%s' was not written", name);
  const char *path;
  uint64_t offset;
  st_writer_location(sc->w, (size_t)index, &path, &offset);
  int fd = shard_fd(sc, path, err);
  if (fd < 0) return -1;
  *out = (wref){.name = c->name, .t = transform_output_dtype(&sc->p->context, t), .fd = fd, .offset = offset};
  shape_of(t, vector, &out->rows, &out->cols);
  return 0;
}

static int read_fully(int fd, void *buffer, size_t size, uint64_t offset) {
  unsigned char *b = buffer;
  while (size > 0) {
    ssize_t got = pread(fd, b, size, (off_t)offset);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return got < 0 ? errno : EIO;
    b += got, size -= (size_t)got, offset += (uint64_t)got;
  }
  return 0;
}

/* size bytes of written tensor w from byte `at` of it into buffer: an errno, or 0. */
static int read_written(const wref *w, void *buffer, size_t size, uint64_t at) {
  if (!w->held) return read_fully(w->fd, buffer, size, w->offset + at);
  memcpy(buffer, w->held + at, size);
  return 0;
}

/* ---- products y[q, r] = Σ_j W[r, j]·x[q, j] ------------------------------------------------ */

typedef float v16f __attribute__((vector_size(64)));
typedef double v8d __attribute__((vector_size(64)));
typedef uint16_t v16h __attribute__((vector_size(32)));
typedef uint32_t v16w __attribute__((vector_size(64)));
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

/* out[q] = Σ_j w[j]·x[q·n + j] for the PROBES rows of x: one pass over w. */
CLONES static void dot_bf16(const unsigned char *w, const float *x, size_t n, double *out) {
  v16f s0 = {0}, s1 = {0};
  size_t j = 0;
  for (; j + 16 <= n; j += 16) {
    v16h raw;
    memcpy(&raw, w + 2 * j, sizeof raw);
    v16w bits = __builtin_convertvector(raw, v16w) << 16;
    v16f a, x0, x1;
    memcpy(&a, &bits, sizeof a);
    memcpy(&x0, x + j, sizeof x0), memcpy(&x1, x + n + j, sizeof x1);
    s0 += a * x0, s1 += a * x1;
  }
  double r0 = 0, r1 = 0;
  for (int i = 0; i < 16; i++) r0 += s0[i], r1 += s1[i];
  for (; j < n; j++) {
    uint32_t bits = (uint32_t)(w[2 * j] | w[2 * j + 1] << 8) << 16;
    float a;
    memcpy(&a, &bits, sizeof a);
    r0 += (double)a * x[j], r1 += (double)a * x[n + j];
  }
  out[0] = r0, out[1] = r1;
}

CLONES static void dot_f32(const float *w, const float *x, size_t n, double *out) {
  v16f s0 = {0}, s1 = {0};
  size_t j = 0;
  for (; j + 16 <= n; j += 16) {
    v16f a, x0, x1;
    memcpy(&a, w + j, sizeof a), memcpy(&x0, x + j, sizeof x0), memcpy(&x1, x + n + j, sizeof x1);
    s0 += a * x0, s1 += a * x1;
  }
  double r0 = 0, r1 = 0;
  for (int i = 0; i < 16; i++) r0 += s0[i], r1 += s1[i];
  for (; j < n; j++) r0 += (double)w[j] * x[j], r1 += (double)w[j] * x[n + j];
  out[0] = r0, out[1] = r1;
}

CLONES static void dot_f64(const double *w, const double *x, size_t n, double *out) {
  v8d s0 = {0}, s1 = {0};
  size_t j = 0;
  for (; j + 8 <= n; j += 8) {
    v8d a, x0, x1;
    memcpy(&a, w + j, sizeof a), memcpy(&x0, x + j, sizeof x0), memcpy(&x1, x + n + j, sizeof x1);
    s0 += a * x0, s1 += a * x1;
  }
  double r0 = 0, r1 = 0;
  for (int i = 0; i < 8; i++) r0 += s0[i], r1 += s1[i];
  for (; j < n; j++) r0 += w[j] * x[j], r1 += w[j] * x[n + j];
  out[0] = r0, out[1] = r1;
}

_Static_assert(PROBES == 2, "the dot kernels take two probe rows");

typedef struct product_job {
  const wref *w;
  size_t row0, rows; /* the rows of W taken */
  const double *x;   /* [PROBES, cols] */
  const float *xf;   /* x as floats (16-bit weights are multiplied in float32) */
  double *y;         /* [PROBES, rows] */
  atomic_int failed; /* an errno */
} product_job;

/* product_range for a quantized original: each row dequantized (exact) and multiplied in float64. */
static void quantized_product_range(product_job *j, size_t begin, size_t end) {
  const wref *w = j->w;
  double *row = malloc(sizeof(double) * (w->cols ? w->cols : 1));
  if (!row) {
    atomic_store(&j->failed, ENOMEM);
    return;
  }
  /* the rows' pages are released a chunk at a time (as product_range does): one madvise per row
   * cost more system time than the check's arithmetic */
  const size_t row_bytes = st_span(w->source, 0, w->cols) ? st_span(w->source, 0, w->cols) : 1;
  const size_t chunk = CHUNK_BYTES / row_bytes ? CHUNK_BYTES / row_bytes : 1;
  for (size_t at = begin; at < end; at += chunk) {
    size_t n = end - at < chunk ? end - at : chunk;
    for (size_t r = at; r < at + n; r++) {
      st_to_f64(w->source, (j->row0 + r) * w->cols, w->cols, row);
      double out[PROBES];
      dot_f64(row, j->x, w->cols, out);
      for (int q = 0; q < PROBES; q++) j->y[(size_t)q * j->rows + r] = out[q];
    }
    size_t first = (j->row0 + at) * w->cols;
    st_release(st_address(w->source, first), st_span(w->source, first, n * w->cols));
  }
  free(row);
}

static void product_range(void *ctx, size_t begin, size_t end) {
  product_job *j = ctx;
  const wref *w = j->w;
  if (w->source) {
    quantized_product_range(j, begin, end);
    return;
  }
  const size_t cols = w->cols, esize = dtype_size(w->t), row_bytes = cols * esize;
  const bool narrow = esize <= 2;
  size_t chunk = CHUNK_BYTES / (row_bytes ? row_bytes : 1);
  if (chunk < 1) chunk = 1;
  const bool mapped = w->fd < 0; /* else read with pread */
  const unsigned char *memory = w->held ? w->held : w->map;
  unsigned char *raw = mapped ? NULL : malloc(chunk * row_bytes);
  void *row = malloc(cols * (narrow ? sizeof(float) : sizeof(double)) + 1);
  if ((!mapped && !raw) || !row) {
    atomic_store(&j->failed, ENOMEM);
    goto done;
  }
  for (size_t r = begin; r < end && !atomic_load(&j->failed); r += chunk) {
    size_t n = end - r < chunk ? end - r : chunk;
    size_t at = (j->row0 + r) * row_bytes;
    const unsigned char *src = mapped ? memory + at : raw;
    if (!mapped) {
      int code = read_fully(w->fd, raw, n * row_bytes, w->offset + at);
      if (code) {
        atomic_store(&j->failed, code);
        break;
      }
    }
    for (size_t i = 0; i < n; i++) {
      const unsigned char *s = src + i * row_bytes;
      double out[PROBES];
      if (w->t == DTYPE_BF16) {
        dot_bf16(s, j->xf, cols, out);
      } else if (narrow) {
        dtype_to_f32(w->t, s, row, cols);
        dot_f32(row, j->xf, cols, out);
      } else {
        dtype_to_f64(w->t, s, row, cols);
        dot_f64(row, j->x, cols, out);
      }
      for (int q = 0; q < PROBES; q++) j->y[(size_t)q * j->rows + r + i] = out[q];
    }
    if (mapped && !w->held) st_release(src, n * row_bytes);
  }
done:
  free(raw);
  free(row);
}

/* y [PROBES, rows] = x [PROBES, w.cols] · W[row0 .. row0 + rows)ᵀ */
static int products(stream_check *sc, const wref *w, size_t row0, size_t rows, const double *x, double *y,
                    rotq_error *err) {
  float *xf = malloc(sizeof(float) * PROBES * (w->cols ? w->cols : 1));
  if (!xf) return rotq_fail(err, "verify: out of memory");
  for (size_t i = 0; i < PROBES * w->cols; i++) xf[i] = (float)x[i];
  product_job job = {.w = w, .row0 = row0, .rows = rows, .x = x, .xf = xf, .y = y};
  atomic_init(&job.failed, 0);
  int threads = rows * w->cols < ((size_t)1 << 16) ? 1 : sc->threads;
  parallel_for(rows, 1, threads, product_range, &job);
  free(xf);
  sc->sum.elements += rows * w->cols;
  int code = atomic_load(&job.failed);
  if (code == ENOMEM) return rotq_fail(err, "verify: out of memory");
  if (code)
    return rotq_fail(err, "verify: tensor '%s': cannot read %s: %s", w->name,
                     w->map ? "its original" : "back the output", strerror(code));
  return 0;
}

/* A whole vector (norm weight, bias) as doubles; *out NULL when the tensor is absent. */
static int read_vector(stream_check *sc, const char *name, bool rotated, double **out, size_t *count, rotq_error *err) {
  *out = NULL;
  const rotate_command *c = commands_find(&sc->p->commands, name);
  if (!c) return 0;
  wref w;
  if ((rotated ? rotated_ref(sc, name, true, &w, err) : original_ref(sc, name, true, &w, err)) < 0) return -1;
  size_t bytes = w.rows * dtype_size(w.t);
  unsigned char *raw = malloc(bytes ? bytes : 1);
  double *v = malloc(sizeof(double) * (w.rows ? w.rows : 1));
  int code = (!raw || !v) ? ENOMEM : rotated ? read_written(&w, raw, bytes, 0) : 0;
  if (code == 0 && w.source)
    st_to_f64(w.source, 0, w.rows, v);
  else if (code == 0)
    dtype_to_f64(w.t, rotated ? raw : w.map, v, w.rows);
  free(raw);
  if (code) {
    free(v);
    return rotq_fail(err, "verify: tensor '%s': %s", name, strerror(code));
  }
  *out = v;
  if (count) *count = w.rows;
  return 0;
}

/* ---- the stream map, norms, comparison ---------------------------------------------------- */

static void centre(double *x, int rows, int dim) {
  for (int r = 0; r < rows; r++) {
    double mean = 0;
    for (int i = 0; i < dim; i++) mean += x[(size_t)r * dim + i];
    mean /= dim;
    for (int i = 0; i < dim; i++) x[(size_t)r * dim + i] -= mean;
  }
}

/* x [rows, hidden] ← S(x): centred (LayerNorm families), times R1, reflected. */
static void stream_map(const stream_check *sc, double *x, int rows) {
  const int n = sc->hidden;
  if (sc->centred) centre(x, rows, n);
  if (!sc->r1) return;
  rotation_apply_rows_f64(sc->r1, x, (size_t)rows, (size_t)n, (size_t)n);
  for (int r = 0; sc->reflection && r < rows; r++) {
    double *row = x + (size_t)r * n, dot = 0;
    for (int i = 0; i < n; i++) dot += row[i] * sc->reflection[i];
    for (int i = 0; i < n; i++) row[i] -= 2 * dot * sc->reflection[i];
  }
}

/* out = the stream norm of x with weight g and bias b (NULL = none), as the adapter's family
 * computes it. */
static void stream_norm(const stream_check *sc, double *out, const double *x, const double *g, const double *b) {
  const int n = sc->hidden;
  const double eps = sc->ck->config.rms_norm_eps > 0 ? sc->ck->config.rms_norm_eps : 1e-6;
  for (int r = 0; r < PROBES; r++) {
    const double *in = x + (size_t)r * n;
    double *o = out + (size_t)r * n, mean = 0, square = 0;
    if (sc->a->norm == NORM_LAYER) {
      for (int i = 0; i < n; i++) mean += in[i];
      mean /= n;
    }
    for (int i = 0; i < n; i++) square += (in[i] - mean) * (in[i] - mean);
    double scale = 1 / sqrt(square / n + eps);
    for (int i = 0; i < n; i++) {
      double gain = g ? (sc->a->norm == NORM_RMS_PLUS_ONE ? 1 + g[i] : g[i]) : 1;
      o[i] = (in[i] - mean) * scale * gain + (b ? b[i] : 0);
    }
  }
}

static double norm2(const double *x, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += x[i] * x[i];
  return sqrt(s);
}

/* Fails naming what, when got differs from want by more than the tolerance of dtype t. */
static int compare(stream_check *sc, const char *what, dtype t, const double *got, const double *want, size_t n,
                   rotq_error *err) {
  double diff = 0;
  for (size_t i = 0; i < n; i++) diff += (got[i] - want[i]) * (got[i] - want[i]);
  double scale = norm2(want, n), relative = sqrt(diff) / (scale > 0 ? scale : 1);
  double tol = stream_check_tolerance(t, sc->use_float64);
  sc->sum.tensors++;
  if (relative > sc->sum.max_relative) sc->sum.max_relative = relative;
  if (!(relative <= tol)) /* NaN fails too */
    return rotq_fail(err,
                     "verify: %s: the rotated output differs from the original's by relative %.3g (tolerance "
                     "%.0e): the written checkpoint would not compute the same function",
                     what, relative, tol);
  if (relative / tol > sc->sum.max_ratio) {
    sc->sum.max_ratio = relative / tol;
    snprintf(sc->sum.worst, sizeof sc->sum.worst, "%s", what);
  }
  return 0;
}

/* ---- the checks ------------------------------------------------------------------------- */

/* Gaussian rows, seeded by (layer, salt). */
static void gaussian_rows(double *x, size_t count, int layer, int salt, double scale) {
  rng g;
  rng_seed(&g, CHECK_SEED ^ ((uint64_t)(layer + 2) << 20) ^ (uint64_t)salt);
  for (size_t i = 0; i < count; i++) x[i] = scale * rng_gaussian(&g);
}

/* The module of a tensor name (tensor_module) into out; 1 weight, 2 bias, 0 neither. */
static int module_of(const char *name, char *out, size_t cap) {
  bool is_bias;
  return tensor_module(name, out, cap, &is_bias) ? (is_bias ? 2 : 1) : 0;
}

/* The source tensor of module's weight, or NULL. */
static const st_tensor *weight_tensor(const stream_check *sc, const char *module) {
  char name[TENSOR_NAME_MAX + 8];
  snprintf(name, sizeof name, "%s.weight", module);
  const rotate_command *c = commands_find(&sc->p->commands, name);
  return c ? checkpoint_find(sc->ck, c->source) : NULL;
}

/* y [PROBES, rows] = x·W[row0..)ᵀ + b[row0..) for the original or the written `module`.weight (its
 * ".bias" added when present). */
static int linear(stream_check *sc, bool rotated, const char *module, size_t row0, size_t rows, const double *x,
                  double *y, rotq_error *err) {
  char name[TENSOR_NAME_MAX + 8];
  snprintf(name, sizeof name, "%s.weight", module);
  wref w;
  if ((rotated ? rotated_ref(sc, name, false, &w, err) : original_ref(sc, name, false, &w, err)) < 0) return -1;
  if (products(sc, &w, row0, rows, x, y, err) < 0) return -1;
  snprintf(name, sizeof name, "%s.bias", module);
  double *b;
  if (read_vector(sc, name, rotated, &b, NULL, err) < 0) return -1;
  for (int q = 0; b && q < PROBES; q++)
    for (size_t r = 0; r < rows; r++) y[(size_t)q * rows + r] += b[row0 + r];
  free(b);
  return 0;
}

/* Scratch of a check: want and got [PROBES, n] and two inputs [PROBES, m]. */
typedef struct scratch {
  double *want, *got, *x, *xs;
} scratch;

static int scratch_make(scratch *s, size_t n, size_t m, rotq_error *err) {
  s->want = malloc(sizeof(double) * PROBES * (n ? n : 1));
  s->got = malloc(sizeof(double) * PROBES * (n ? n : 1));
  s->x = malloc(sizeof(double) * PROBES * (m ? m : 1));
  s->xs = malloc(sizeof(double) * PROBES * (m ? m : 1));
  if (s->want && s->got && s->x && s->xs) return 0;
  free(s->want), free(s->got), free(s->x), free(s->xs);
  memset(s, 0, sizeof *s);
  return rotq_fail(err, "verify: out of memory");
}

static void scratch_free(scratch *s) { free(s->want), free(s->got), free(s->x), free(s->xs); }

/* An embedding-like table T [n, hidden] whose rows are added to the stream: T'·S(y) = T·c(y). */
static int check_table(stream_check *sc, const char *module, rotq_error *err) {
  const st_tensor *t = weight_tensor(sc, module);
  if (!t) return 0;
  if (t->ndim != 2 || t->shape[1] != sc->hidden)
    return rotq_fail(err, "verify: tensor '%s.weight' is not [n, %d]", module, sc->hidden);
  size_t rows = (size_t)t->shape[0];
  scratch s;
  if (scratch_make(&s, rows, (size_t)sc->hidden, err) < 0) return -1;
  gaussian_rows(s.x, PROBES * (size_t)sc->hidden, -1, 1, 1);
  memcpy(s.xs, s.x, sizeof(double) * PROBES * sc->hidden);
  stream_map(sc, s.xs, PROBES);
  if (sc->centred) centre(s.x, PROBES, sc->hidden);
  int rc = linear(sc, false, module, 0, rows, s.x, s.want, err);
  if (rc == 0) rc = linear(sc, true, module, 0, rows, s.xs, s.got, err);
  char what[TENSOR_NAME_MAX + 64];
  snprintf(what, sizeof what, "tensor '%s.weight' (adds to the residual stream)", module);
  if (rc == 0) rc = compare(sc, what, written_dtype(sc, t), s.got, s.want, PROBES * rows, err);
  scratch_free(&s);
  return rc;
}

/* The probe stream h [PROBES, hidden] for `layer`: a real token's embedding and a Gaussian row
 * of the same rms. */
static void probe_stream(const stream_check *sc, int layer, double *h) {
  const int n = sc->hidden;
  double rms = 1;
  if (sc->real_count > 0) {
    memcpy(h, sc->real_rows + (size_t)((layer + 1) % sc->real_count) * n, sizeof(double) * n);
    rms = norm2(h, (size_t)n) / sqrt((double)n);
    if (!(rms > 0) || !isfinite(rms)) rms = 1;
  } else {
    gaussian_rows(h, (size_t)n, layer, 7, 1);
  }
  gaussian_rows(h + n, (size_t)n, layer, 3, rms);
}

/* norm(h) of the original and norm'(S(h)) of the written norm `norm` (absolute module). */
static int norm_pair(stream_check *sc, const char *norm, const double *h, double *n, double *ns, rotq_error *err) {
  char name[TENSOR_NAME_MAX + 8];
  double *g = NULL, *b = NULL, *gs = NULL, *bs = NULL;
  size_t count = 0;
  snprintf(name, sizeof name, "%s.weight", norm);
  int rc = read_vector(sc, name, false, &g, &count, err);
  if (rc == 0 && (!g || count != (size_t)sc->hidden))
    rc = rotq_fail(err, "verify: norm '%s' of the residual stream is missing or not [%d]", name, sc->hidden);
  if (rc == 0) rc = read_vector(sc, name, true, &gs, NULL, err);
  snprintf(name, sizeof name, "%s.bias", norm);
  if (rc == 0) rc = read_vector(sc, name, false, &b, NULL, err);
  if (rc == 0) rc = read_vector(sc, name, true, &bs, NULL, err);
  if (rc == 0) {
    stream_norm(sc, n, h, g, b);
    double *hs = malloc(sizeof(double) * PROBES * sc->hidden);
    if (!hs) {
      rc = rotq_fail(err, "verify: out of memory");
    } else {
      memcpy(hs, h, sizeof(double) * PROBES * sc->hidden);
      stream_map(sc, hs, PROBES);
      stream_norm(sc, ns, hs, gs, bs);
      free(hs);
    }
  }
  free(g), free(b), free(gs), free(bs);
  return rc;
}

/* Reader check: W'·norm'(S(h)) + b' = W·norm(h) + b on rows [0, rows_checked); the V rows after
 * them (a fused qkv_proj's, or all of a v_proj's) are returned in v / vs when asked for. */
static int check_reader(stream_check *sc, int layer, const char *module, const char *norm, const double *n,
                        const double *ns, size_t v_begin, double **v, double **vs, rotq_error *err) {
  const st_tensor *t = weight_tensor(sc, module);
  if (t->ndim != 2 || t->shape[1] != sc->hidden)
    return rotq_fail(err, "verify: layer %d: tensor '%s.weight' reads the residual stream but is not [n, %d]", layer,
                     module, sc->hidden);
  size_t rows = (size_t)t->shape[0];
  if (v_begin > rows) v_begin = rows;
  scratch s;
  if (scratch_make(&s, rows, 0, err) < 0) return -1;
  int rc = linear(sc, false, module, 0, rows, n, s.want, err);
  if (rc == 0) rc = linear(sc, true, module, 0, rows, ns, s.got, err);
  if (rc == 0 && v_begin > 0) {
    /* compare the rows before v_begin only: gather them */
    double *a = malloc(sizeof(double) * PROBES * v_begin), *b = malloc(sizeof(double) * PROBES * v_begin);
    if (!a || !b) rc = rotq_fail(err, "verify: out of memory");
    for (int q = 0; rc == 0 && q < PROBES; q++) {
      memcpy(a + (size_t)q * v_begin, s.got + (size_t)q * rows, sizeof(double) * v_begin);
      memcpy(b + (size_t)q * v_begin, s.want + (size_t)q * rows, sizeof(double) * v_begin);
    }
    char what[2 * TENSOR_NAME_MAX + 96];
    snprintf(what, sizeof what, "layer %d: tensor '%s.weight' (reads the residual stream through '%s')", layer, module,
             norm);
    if (rc == 0) rc = compare(sc, what, written_dtype(sc, t), a, b, PROBES * v_begin, err);
    free(a), free(b);
  }
  if (rc == 0 && v) {
    size_t v_rows = rows - v_begin;
    *v = malloc(sizeof(double) * PROBES * (v_rows ? v_rows : 1));
    *vs = malloc(sizeof(double) * PROBES * (v_rows ? v_rows : 1));
    if (!*v || !*vs) rc = rotq_fail(err, "verify: out of memory");
    for (int q = 0; rc == 0 && q < PROBES; q++) {
      memcpy(*v + (size_t)q * v_rows, s.want + (size_t)q * rows + v_begin, sizeof(double) * v_rows);
      memcpy(*vs + (size_t)q * v_rows, s.got + (size_t)q * rows + v_begin, sizeof(double) * v_rows);
    }
  }
  scratch_free(&s);
  return rc;
}

/* Writer check: W'·(z·Ronline) + b' = S(W·z + b) for random z. */
static int check_writer(stream_check *sc, int layer, const rotate_command *c, const char *module, rotq_error *err) {
  const st_tensor *t = weight_tensor(sc, module);
  if (t->ndim != 2 || t->shape[0] != sc->hidden)
    return rotq_fail(err, "verify: layer %d: tensor '%s.weight' writes the residual stream but is not [%d, n]", layer,
                     module, sc->hidden);
  size_t cols = (size_t)t->shape[1];
  scratch s;
  if (scratch_make(&s, (size_t)sc->hidden, cols, err) < 0) return -1;
  gaussian_rows(s.x, PROBES * cols, layer, 11, 1);
  memcpy(s.xs, s.x, sizeof(double) * PROBES * cols);
  if (c->online == ONLINE_INPUT) rotation_apply_rows_f64(c->online_rotation, s.xs, PROBES, cols, cols);
  int rc = linear(sc, false, module, 0, (size_t)sc->hidden, s.x, s.want, err);
  if (rc == 0) rc = linear(sc, true, module, 0, (size_t)sc->hidden, s.xs, s.got, err);
  if (rc == 0) stream_map(sc, s.want, PROBES);
  char what[TENSOR_NAME_MAX + 96];
  snprintf(what, sizeof what, "layer %d: tensor '%s.weight' (writes the residual stream%s)", layer, module,
           c->online == ONLINE_INPUT ? ", after its online rotation" : "");
  if (rc == 0) rc = compare(sc, what, written_dtype(sc, t), s.got, s.want, PROBES * (size_t)sc->hidden, err);
  scratch_free(&s);
  return rc;
}

/* u [PROBES, heads·v_head_dim] = per-head attention of v [PROBES, v_heads·v_head_dim] with random
 * weights A_h [PROBES, PROBES] per head (GQA: head h reads value head h / (heads / v_heads)). */
static void mix_heads(const stream_check *sc, int layer, const double *v, double *u) {
  const int heads = sc->heads, hd = sc->v_head_dim, group = sc->heads / sc->v_heads;
  const size_t v_dim = (size_t)sc->v_heads * hd, u_dim = (size_t)heads * hd;
  double *a = malloc(sizeof(double) * PROBES * PROBES * heads);
  if (!a) return;
  gaussian_rows(a, (size_t)PROBES * PROBES * heads, layer, 13, 1);
  for (int h = 0; h < heads; h++)
    for (int p = 0; p < PROBES; p++)
      for (int d = 0; d < hd; d++) {
        double sum = 0;
        for (int q = 0; q < PROBES; q++)
          sum += a[((size_t)h * PROBES + p) * PROBES + q] * v[(size_t)q * v_dim + (size_t)(h / group) * hd + d];
        u[(size_t)p * u_dim + (size_t)h * hd + d] = sum;
      }
  free(a);
}

/* The value → output path: o'(Ronline(mix(v'))) + b' = S(o(mix(v)) + b). */
static int check_value_path(stream_check *sc, int layer, const char *v_module, const char *o_module,
                            const rotate_command *o, const double *v, const double *vs, size_t v_rows,
                            rotq_error *err) {
  const size_t u_dim = (size_t)sc->heads * sc->v_head_dim;
  const st_tensor *t = weight_tensor(sc, o_module);
  if (v_rows != (size_t)sc->v_heads * sc->v_head_dim || t->ndim != 2 || (size_t)t->shape[1] != u_dim ||
      t->shape[0] != sc->hidden)
    return rotq_fail(err,
                     "verify: layer %d: '%s' gives %zu value rows and '%s.weight' is [%lld, %lld]; config.json "
                     "says %d KV heads and %d heads of %d",
                     layer, v_module, v_rows, o_module, (long long)t->shape[0],
                     t->ndim == 2 ? (long long)t->shape[1] : 0LL, sc->v_heads, sc->heads, sc->v_head_dim);
  scratch s;
  if (scratch_make(&s, (size_t)sc->hidden, u_dim, err) < 0) return -1;
  mix_heads(sc, layer, v, s.x);
  mix_heads(sc, layer, vs, s.xs);
  if (o->online == ONLINE_INPUT_HEADS)
    for (int q = 0; q < PROBES; q++)
      rotation_apply_cols_f64(o->online_rotation, s.xs + (size_t)q * u_dim, (size_t)sc->heads, (size_t)sc->v_head_dim,
                              (size_t)sc->v_head_dim);
  int rc = linear(sc, false, o_module, 0, (size_t)sc->hidden, s.x, s.want, err);
  if (rc == 0) rc = linear(sc, true, o_module, 0, (size_t)sc->hidden, s.xs, s.got, err);
  if (rc == 0) stream_map(sc, s.want, PROBES);
  char what[2 * TENSOR_NAME_MAX + 128];
  snprintf(what, sizeof what, "layer %d: tensors '%s.weight' → '%s.weight' (the attention's value path%s)", layer,
           v_module, o_module, o->online == ONLINE_INPUT_HEADS ? ", with the online heads rotation" : "");
  if (rc == 0) rc = compare(sc, what, written_dtype(sc, t), s.got, s.want, PROBES * (size_t)sc->hidden, err);
  scratch_free(&s);
  return rc;
}

/* MLA's kv_b_proj [heads·(nope + v), kv_lora] (v_rows_mla): on random latents x, each head's key
 * rows of W'·x equal W·x's; its value rows are returned in v / vs [PROBES, heads·v] (checked with
 * o_proj: check_value_path). */
static int check_mla_values(stream_check *sc, int layer, const char *module, double **v, double **vs, size_t *v_rows,
                            rotq_error *err) {
  const st_tensor *t = weight_tensor(sc, module);
  const size_t nope = (size_t)sc->mla_nope, vd = (size_t)sc->v_head_dim, stride = nope + vd;
  const size_t heads = (size_t)sc->heads, rows = heads * stride;
  if (t->ndim != 2 || (size_t)t->shape[0] != rows)
    return rotq_fail(err,
                     "verify: layer %d: tensor '%s.weight' is not [%zu, n] (%zu heads of %zu key and %zu value rows)",
                     layer, module, rows, heads, nope, vd);
  const size_t cols = (size_t)t->shape[1];
  scratch s;
  if (scratch_make(&s, rows, cols, err) < 0) return -1;
  gaussian_rows(s.x, PROBES * cols, layer, 17, 1);
  int rc = linear(sc, false, module, 0, rows, s.x, s.want, err);
  if (rc == 0) rc = linear(sc, true, module, 0, rows, s.x, s.got, err);
  double *kw = malloc(sizeof(double) * PROBES * heads * (nope ? nope : 1));
  double *kg = malloc(sizeof(double) * PROBES * heads * (nope ? nope : 1));
  *v = malloc(sizeof(double) * PROBES * heads * vd);
  *vs = malloc(sizeof(double) * PROBES * heads * vd);
  if (rc == 0 && (!kw || !kg || !*v || !*vs)) rc = rotq_fail(err, "verify: out of memory");
  for (size_t q = 0; rc == 0 && q < PROBES; q++)
    for (size_t h = 0; h < heads; h++) {
      const size_t src = q * rows + h * stride;
      memcpy(kw + (q * heads + h) * nope, s.want + src, sizeof(double) * nope);
      memcpy(kg + (q * heads + h) * nope, s.got + src, sizeof(double) * nope);
      memcpy(*v + (q * heads + h) * vd, s.want + src + nope, sizeof(double) * vd);
      memcpy(*vs + (q * heads + h) * vd, s.got + src + nope, sizeof(double) * vd);
    }
  char what[TENSOR_NAME_MAX + 96];
  snprintf(what, sizeof what, "layer %d: tensor '%s.weight' (MLA's no-RoPE key rows)", layer, module);
  if (rc == 0 && nope) rc = compare(sc, what, written_dtype(sc, t), kg, kw, PROBES * heads * nope, err);
  *v_rows = heads * vd;
  free(kw), free(kg);
  scratch_free(&s);
  return rc;
}

/* check_unchanged for a tensor written in another dtype (or dequantized): the written bytes are the
 * original's values (st_to_f64) rounded once to the written dtype, chunk by chunk. */
static int check_converted(stream_check *sc, int layer, const rotate_command *c, const st_tensor *t, const wref *w,
                           rotq_error *err) {
  const size_t total = st_numel(t), esize = dtype_size(w->t), chunk = CHUNK_BYTES / 8;
  double *values = malloc(sizeof(double) * chunk);
  unsigned char *want = malloc(chunk * esize), *got = malloc(chunk * esize);
  int rc = values && want && got ? 0 : rotq_fail(err, "verify: out of memory");
  for (size_t at = 0; rc == 0 && at < total; at += chunk) {
    size_t n = total - at < chunk ? total - at : chunk;
    st_to_f64(t, at, n, values);
    dtype_from_f64(w->t, values, want, n);
    int code = read_written(w, got, n * esize, at * esize);
    if (code)
      rc = rotq_fail(err, "verify: tensor '%s': cannot read back the output: %s", c->name, strerror(code));
    else if (memcmp(got, want, n * esize) != 0)
      rc = rotq_fail(err,
                     "verify: tensor '%s' (layer %d) is not its original's values rounded to %s, but by the %s "
                     "adapter it neither reads nor writes the residual stream",
                     c->name, layer, dtype_name(w->t), sc->a->family);
  }
  free(values);
  free(want);
  free(got);
  sc->sum.tensors++;
  sc->sum.elements += total;
  return rc;
}

/* A tensor that neither reads nor writes the stream: written bytes = input bytes. */
static int check_unchanged(stream_check *sc, int layer, const rotate_command *c, rotq_error *err) {
  wref w; /* the written bytes; the original's are t->data */
  if (rotated_ref(sc, c->name, true, &w, err) < 0) return -1;
  const st_tensor *t = checkpoint_find(sc->ck, c->source);
  if (transform_converts(&sc->p->context, t)) return check_converted(sc, layer, c, t, &w, err);
  size_t left = t->nbytes, at = 0;
  unsigned char *buffer = malloc(CHUNK_BYTES);
  if (!buffer) return rotq_fail(err, "verify: out of memory");
  int rc = 0;
  while (rc == 0 && left > 0) {
    size_t n = left < CHUNK_BYTES ? left : CHUNK_BYTES;
    int code = read_written(&w, buffer, n, at);
    if (code)
      rc = rotq_fail(err, "verify: tensor '%s': cannot read back the output: %s", c->name, strerror(code));
    else if (memcmp(buffer, (const unsigned char *)t->data + at, n) != 0)
      rc = rotq_fail(err,
                     "verify: tensor '%s' (layer %d) was changed, but by the %s adapter it neither reads nor "
                     "writes the residual stream: it must be copied unchanged",
                     c->name, layer, sc->a->family);
    at += n, left -= n;
  }
  free(buffer);
  sc->sum.tensors++;
  sc->sum.elements += st_numel(t);
  return rc;
}

/* The norm pair of `norm` in the layer's cache (computed on first use). */
typedef struct norm_cache {
  int count;
  char name[4][TENSOR_NAME_MAX];
  double *n[4], *ns[4];
  bool used[4];
} norm_cache;

static int cached_norm(stream_check *sc, norm_cache *nc, const char *norm, const double *h, int *slot,
                       rotq_error *err) {
  for (int i = 0; i < nc->count; i++)
    if (strcmp(nc->name[i], norm) == 0) return *slot = i, 0;
  if (nc->count == 4) return rotq_fail(err, "verify: more than 4 stream norms in one layer");
  int i = nc->count;
  nc->n[i] = malloc(sizeof(double) * PROBES * sc->hidden);
  nc->ns[i] = malloc(sizeof(double) * PROBES * sc->hidden);
  nc->count++;
  snprintf(nc->name[i], sizeof nc->name[i], "%s", norm);
  if (!nc->n[i] || !nc->ns[i]) return rotq_fail(err, "verify: out of memory");
  *slot = i;
  return norm_pair(sc, norm, h, nc->n[i], nc->ns[i], err);
}

static void norm_cache_free(norm_cache *nc) {
  for (int i = 0; i < nc->count; i++) free(nc->n[i]), free(nc->ns[i]);
}

/* Is module (absolute) the weight or bias module of one of the adapter's stream norms in layer?
 * Sets *slot_name to its absolute norm name. */
static bool is_stream_norm(const stream_check *sc, int layer, const char *module) {
  char norm[TENSOR_NAME_MAX];
  for (int f = 0; f < 4 && sc->a->layer_fuse[f].norm; f++) {
    adapter_layer_module(sc->a, layer, sc->a->layer_fuse[f].norm, norm, sizeof norm);
    if (strcmp(norm, module) == 0) return true;
  }
  return false;
}

/* ---- fused experts [experts, in, out] (the adapter's in_out_layout) ---------------------------- */

/* Elements [first, first + count) of output tensor `name`, original or written, as doubles. */
static int read_elements(stream_check *sc, const char *name, bool rotated, size_t first, size_t count, double *out,
                         rotq_error *err) {
  wref w;
  if ((rotated ? rotated_ref(sc, name, true, &w, err) : original_ref(sc, name, true, &w, err)) < 0) return -1;
  if (!rotated) {
    const rotate_command *c = commands_find(&sc->p->commands, name);
    st_to_f64(checkpoint_find(sc->ck, c->source), first, count, out);
    return 0;
  }
  size_t esize = dtype_size(w.t);
  unsigned char *raw = malloc(count * esize + 1);
  int code = raw ? read_written(&w, raw, count * esize, first * esize) : ENOMEM;
  if (code == 0) dtype_to_f64(w.t, raw, out, count);
  free(raw);
  if (code) return rotq_fail(err, "verify: tensor '%s': %s", name, strerror(code));
  sc->sum.elements += count;
  return 0;
}

/* y [PROBES, out] = x [PROBES, in]·W (W [in, out]). */
static void probes_times(const double *x, const double *w, size_t in, size_t out, double *y) {
  for (int q = 0; q < PROBES; q++)
    for (size_t j = 0; j < out; j++) {
      double sum = 0;
      for (size_t i = 0; i < in; i++) sum += x[(size_t)q * in + i] * w[i * out + j];
      y[(size_t)q * out + j] = sum;
    }
}

/* Expert by expert of c [experts, in, out]: a reader (x, xs: norm(h), norm'(S(h))) checks
 * xs·W'_e = x·W_e; a writer checks z·W'_e + b'_e = S(z·W_e + b_e) for random z (b: "<module>_bias"). */
static int check_in_out(stream_check *sc, int layer, const rotate_command *c, const char *norm, const double *x,
                        const double *xs, rotq_error *err) {
  const st_tensor *t = checkpoint_find(sc->ck, c->source);
  const bool reader = x != NULL;
  const int in_axis = c->out_in_source ? 2 : 1, out_axis = c->out_in_source ? 1 : 2; /* of the source */
  if (t->ndim != 3 || t->shape[reader ? in_axis : out_axis] != sc->hidden)
    return rotq_fail(err, "verify: layer %d: tensor '%s' %s the residual stream but is not [experts, %s]", layer,
                     c->name, reader ? "reads" : "writes", reader ? "hidden, out" : "in, hidden");
  const size_t experts = (size_t)t->shape[0], in = (size_t)t->shape[in_axis], out = (size_t)t->shape[out_axis];
  char bias[TENSOR_NAME_MAX + 8];
  snprintf(bias, sizeof bias, "%s_bias", c->name);
  const bool has_bias = !reader && commands_find(&sc->p->commands, bias);
  double *w = malloc(sizeof(double) * in * out), *ws = malloc(sizeof(double) * in * out);
  double *z = malloc(sizeof(double) * PROBES * in), *want = malloc(sizeof(double) * PROBES * out);
  double *got = malloc(sizeof(double) * PROBES * out), *b = malloc(sizeof(double) * out * 2);
  int rc = w && ws && z && want && got && b ? 0 : rotq_fail(err, "verify: out of memory");
  for (size_t e = 0; rc == 0 && e < experts; e++) {
    rc = read_elements(sc, c->name, false, e * in * out, in * out, c->out_in_source ? ws : w, err);
    for (size_t i = 0; rc == 0 && c->out_in_source && i < in; i++) /* the source's [out, in] slice */
      for (size_t j = 0; j < out; j++) w[i * out + j] = ws[j * in + i];
    if (rc == 0) rc = read_elements(sc, c->name, true, e * in * out, in * out, ws, err);
    if (rc == 0 && has_bias) rc = read_elements(sc, bias, false, e * out, out, b, err);
    if (rc == 0 && has_bias) rc = read_elements(sc, bias, true, e * out, out, b + out, err);
    if (rc < 0) break;
    if (!reader) gaussian_rows(z, PROBES * in, layer, 11 + (int)e, 1);
    probes_times(reader ? x : z, w, in, out, want);
    probes_times(reader ? xs : z, ws, in, out, got);
    for (int q = 0; has_bias && q < PROBES; q++)
      for (size_t j = 0; j < out; j++) want[(size_t)q * out + j] += b[j], got[(size_t)q * out + j] += b[out + j];
    if (!reader) stream_map(sc, want, PROBES);
    char what[2 * TENSOR_NAME_MAX + 96];
    snprintf(what, sizeof what, "layer %d: tensor '%s' expert %zu (%s%s)", layer, c->name, e,
             reader ? "reads the residual stream through " : "writes the residual stream", reader ? norm : "");
    rc = compare(sc, what, written_dtype(sc, t), got, want, PROBES * out, err);
  }
  free(w), free(ws), free(z), free(want), free(got), free(b);
  return rc;
}

static int check_layer(stream_check *sc, int layer, rotq_error *err) {
  const model_adapter *a = sc->a;
  const command_list *list = &sc->p->commands;
  double *h = malloc(sizeof(double) * PROBES * sc->hidden);
  if (!h) return rotq_fail(err, "verify: out of memory");
  probe_stream(sc, layer, h);
  norm_cache nc = {0};
  double *v = NULL, *vs = NULL;
  size_t v_rows = 0;
  char v_module[TENSOR_NAME_MAX] = "", o_module[TENSOR_NAME_MAX] = "";
  const rotate_command *o = NULL;
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < list->count; i++) {
    const rotate_command *c = &list->items[i];
    if (c->layer != layer) continue;
    char module[TENSOR_NAME_MAX];
    int kind = module_of(c->name, module, sizeof module);
    const char *rel = adapter_relative_name(a, module);
    const char *norm_rel = kind ? adapter_reader_norm(a, module) : NULL;
    bool writer = kind && adapter_is_writer(a, module);
    const st_tensor *weight = kind ? weight_tensor(sc, module) : NULL;
    bool linear_weight = weight && weight->ndim == 2;
    if (kind == 2 && linear_weight && (norm_rel || writer)) continue;          /* a bias: checked with its weight */
    const rotate_command *fused = kind == 2 ? commands_find(list, module) : c; /* fused experts: in_out */
    if (kind == 2 && fused && fused->in_out && writer) continue;               /* checked with its weight */
    if (c->in_out && (adapter_reader_norm(a, module) || adapter_is_writer(a, module))) {
      const char *reads = adapter_reader_norm(a, module);
      char norm[TENSOR_NAME_MAX] = "";
      int slot = 0;
      if (reads) {
        adapter_layer_module(a, layer, reads, norm, sizeof norm);
        if ((rc = cached_norm(sc, &nc, norm, h, &slot, err)) < 0) break;
        nc.used[slot] = true;
      }
      rc = check_in_out(sc, layer, c, norm, reads ? nc.n[slot] : NULL, reads ? nc.ns[slot] : NULL, err);
      continue;
    }
    if (kind == 1 && linear_weight && norm_rel) {
      char norm[TENSOR_NAME_MAX];
      adapter_layer_module(a, layer, norm_rel, norm, sizeof norm);
      int slot = 0;
      rc = cached_norm(sc, &nc, norm, h, &slot, err);
      if (rc < 0) break;
      nc.used[slot] = true;
      bool is_v = rel && a->v_proj && strcmp(rel, a->v_proj) == 0;
      size_t v_begin = 0;
      if (is_v && a->v_rows_after_qk) v_begin = (size_t)(sc->heads + sc->kv_heads) * sc->head_dim;
      if (is_v && v_begin > (size_t)weight->shape[0])
        rc = rotq_fail(err, "verify: layer %d: tensor '%s' has %lld rows, fewer than the Q and K rows of config.json",
                       layer, c->name, (long long)weight->shape[0]);
      if (rc == 0 && !is_v) v_begin = (size_t)weight->shape[0];
      if (rc == 0)
        rc = check_reader(sc, layer, module, norm, nc.n[slot], nc.ns[slot], v_begin, is_v ? &v : NULL,
                          is_v ? &vs : NULL, err);
      if (rc == 0 && is_v) {
        v_rows = (size_t)weight->shape[0] - v_begin;
        snprintf(v_module, sizeof v_module, "%s", module);
      }
      continue;
    }
    if (kind == 1 && linear_weight && a->v_rows_mla && rel && a->v_proj && strcmp(rel, a->v_proj) == 0) {
      rc = check_mla_values(sc, layer, module, &v, &vs, &v_rows, err);
      snprintf(v_module, sizeof v_module, "%s", module);
      continue;
    }
    if (kind == 1 && linear_weight && writer) {
      if (rel && a->o_proj && strcmp(rel, a->o_proj) == 0) {
        o = c;
        snprintf(o_module, sizeof o_module, "%s", module);
      } else {
        rc = check_writer(sc, layer, c, module, err);
      }
      continue;
    }
    if (kind && is_stream_norm(sc, layer, module)) continue; /* checked through its readers, below */
    rc = check_unchanged(sc, layer, c, err);
  }
  /* a stream norm no reader used must be unchanged */
  for (size_t i = 0; rc == 0 && i < list->count; i++) {
    const rotate_command *c = &list->items[i];
    char module[TENSOR_NAME_MAX];
    if (c->layer != layer || !module_of(c->name, module, sizeof module) || !is_stream_norm(sc, layer, module)) continue;
    bool used = false;
    for (int k = 0; k < nc.count; k++) used |= nc.used[k] && strcmp(nc.name[k], module) == 0;
    if (!used) rc = check_unchanged(sc, layer, c, err);
  }
  if (rc == 0 && o && !v)
    rc = rotq_fail(err, "verify: layer %d: '%s' has no value projection '%s' that reads the residual stream", layer,
                   o_module, a->v_proj);
  if (rc == 0 && v && !o)
    rc = rotq_fail(err, "verify: layer %d: '%s' has no output projection '%s'", layer, v_module, a->o_proj);
  if (rc == 0 && o) rc = check_value_path(sc, layer, v_module, o_module, o, v, vs, v_rows, err);
  free(v), free(vs), free(h);
  norm_cache_free(&nc);
  return rc;
}

static int check_pre_run(stream_check *sc, rotq_error *err) {
  const model_adapter *a = sc->a;
  int rc = check_table(sc, a->embed, err);
  if (rc == 0 && a->position_embed) rc = check_table(sc, a->position_embed, err);
  double *h = malloc(sizeof(double) * PROBES * sc->hidden), *n = malloc(sizeof(double) * PROBES * sc->hidden),
         *ns = malloc(sizeof(double) * PROBES * sc->hidden);
  if (rc == 0 && (!h || !n || !ns)) rc = rotq_fail(err, "verify: out of memory");
  if (rc == 0) {
    probe_stream(sc, -1, h);
    rc = norm_pair(sc, a->final_norm, h, n, ns, err);
  }
  if (rc == 0 && weight_tensor(sc, a->lm_head))
    rc = check_reader(sc, -1, a->lm_head, a->final_norm, n, ns, (size_t)-1, NULL, NULL, err);
  free(h), free(n), free(ns);
  /* anything else outside the layers must be unchanged */
  const command_list *list = &sc->p->commands;
  for (size_t i = 0; rc == 0 && i < list->count; i++) {
    const rotate_command *c = &list->items[i];
    char module[TENSOR_NAME_MAX];
    if (c->layer >= 0) continue;
    module_of(c->name, module, sizeof module);
    if (strcmp(module, a->embed) == 0 || strcmp(module, a->lm_head) == 0 || strcmp(module, a->final_norm) == 0 ||
        (a->position_embed && strcmp(module, a->position_embed) == 0))
      continue;
    rc = check_unchanged(sc, -1, c, err);
  }
  return rc;
}

int stream_check_batch(stream_check *sc, int layer, rotq_error *err) {
  double start = now_seconds();
  int rc = layer < 0 ? check_pre_run(sc, err) : check_layer(sc, layer, err);
  sc->sum.seconds += now_seconds() - start;
  if (rc == 0) sc->sum.batches++;
  return rc;
}

stream_check *stream_check_create(const quarot_processor *p, rotq_error *err) {
  stream_check *sc = calloc(1, sizeof *sc);
  if (!sc) {
    rotq_fail(err, "verify: out of memory");
    return NULL;
  }
  const checkpoint *ck = p->ck;
  sc->p = p, sc->ck = ck, sc->a = p->adapter, sc->w = p->context.writer;
  sc->hidden = ck->config.hidden_size;
  sc->heads = adapter_num_attention_heads(&ck->config);
  sc->kv_heads = adapter_num_key_value_heads(&ck->config);
  sc->head_dim = adapter_head_dim(&ck->config);
  if (sc->kv_heads <= 0 || sc->heads % sc->kv_heads != 0) sc->kv_heads = sc->heads > 0 ? sc->heads : 1;
  sc->v_heads = sc->kv_heads, sc->v_head_dim = sc->head_dim;
  long v_dim;
  if (p->adapter->v_rows_mla) {
    if (mla_head_dims(&ck->config, &sc->mla_nope, &v_dim, err) < 0) {
      free(sc);
      return NULL;
    }
    sc->v_heads = sc->heads, sc->v_head_dim = (int)v_dim;
  }
  sc->threads = p->context.threads > 0 ? p->context.threads : 1;
  sc->use_float64 = p->config->use_float64;
  sc->centred = p->adapter->norm == NORM_LAYER;
  char name[TENSOR_NAME_MAX + 8];
  snprintf(name, sizeof name, "%s.weight", p->adapter->embed);
  const rotate_command *embed = commands_find(&p->commands, name);
  sc->r1 = embed ? embed->input : NULL;
  sc->reflection = embed && embed->reflect_input ? embed->reflection : NULL;
  const st_tensor *t = checkpoint_find(ck, name);
  if (t && t->ndim == 2 && t->shape[1] == sc->hidden && t->shape[0] > 0) {
    sc->real_rows = malloc(sizeof(double) * REAL_ROWS * sc->hidden);
    for (int i = 0; sc->real_rows && i < REAL_ROWS; i++) {
      int64_t token = (1 + (int64_t)i * 7919) % t->shape[0];
      st_to_f64(t, (size_t)token * (size_t)sc->hidden, (size_t)sc->hidden, sc->real_rows + (size_t)i * sc->hidden);
      sc->real_count++;
    }
  }
  return sc;
}

const stream_check_summary *stream_check_result(const stream_check *sc) { return &sc->sum; }

cJSON *stream_check_to_json(const stream_check *sc) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "method",
                          "in-stream: every batch read back from the output before it left the page cache; stream "
                          "readers' outputs identical, writers' outputs rotated by R1, the value path through "
                          "per-head mixing, all other tensors bytewise unchanged (rotate/stream_check.h)");
  cJSON_AddNumberToObject(j, "probe_rows", PROBES);
  cJSON_AddNumberToObject(j, "batches", sc->sum.batches);
  cJSON_AddNumberToObject(j, "tensors_checked", (double)sc->sum.tensors);
  cJSON_AddNumberToObject(j, "elements_checked", (double)sc->sum.elements);
  cJSON_AddNumberToObject(j, "max_relative_error", sc->sum.max_relative);
  cJSON_AddNumberToObject(j, "max_error_over_tolerance", sc->sum.max_ratio);
  cJSON_AddStringToObject(j, "closest_to_tolerance", sc->sum.worst);
  cJSON_AddNumberToObject(j, "seconds", sc->sum.seconds);
  return j;
}

void stream_check_free(stream_check *sc) {
  if (!sc) return;
  for (size_t i = 0; i < sc->fd_count; i++) close(sc->fds[i]);
  free(sc->fds);
  free(sc->paths);
  free(sc->real_rows);
  free(sc);
}

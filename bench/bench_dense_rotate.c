/* The rotation done the way the Python tools do it (QuaRot, SpinQuant): every weight converted to
 * float64, multiplied by the dense R1 (hidden × hidden) and R2 (head_dim × head_dim) with BLAS
 * (cblas_dgemm), converted back — and, on the same tensors, the same rotation with rotq's fast
 * kernels (rotation_apply_rows/cols: FWHT, O(n log n)), with as many threads as BLAS has. Times
 * the first --layers decoder layers and --embedding-rows rows of the embedding (and lm_head) and
 * extrapolates both to the whole model. Compute only: each tensor's bytes are copied into memory
 * before either method's timing starts, and nothing is written, so the ratio is that of the arithmetic (with the
 * dtype conversions and the norm fusion, which both do the same way).
 * The matrices are rotq's own (same config, seed and norm fusion), so with --rotated both results
 * are compared with rotq's output, tensor by tensor (outside the timings).
 * Usage: bench_dense_rotate --model DIR [--layers N] [--embedding-rows N] [--seed S] [--rotated DIR] */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/parallel.h"
#include "config/rotation_config.h"
#include "io/checkpoint.h"
#include "rotate/rotation_set.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void die(const char *what, const rotq_error *err) {
  fprintf(stderr, "bench_dense_rotate: %s: %s\n", what, err ? err->message : "");
  exit(1);
}

typedef enum method { DENSE, FAST } method;
static const char *const METHOD_NAME[] = {"dense", "fast"};

/* What a method's time went to, and how its results compare with rotq's output. */
typedef struct tally {
  double convert_seconds, compute_seconds;
  long compared, differing, worst_ulps;
} tally;

/* The matrices (dense and structured), the checkpoints, and the tallies. */
typedef struct bench {
  checkpoint ck, rotated;
  int has_rotated;
  const rotation *r1, *r2;
  const double *dense_r1, *dense_r2; /* [hidden, hidden], [head_dim, head_dim] */
  int hidden, head_dim, threads;
  tally tally[2];
  /* Buffers reused by every tensor (allocated and touched once, so that no timing includes the
   * kernel handing out fresh pages): the float64 input, the GEMM's output, the converted output. */
  double *w, *x;
  unsigned char *out, *raw; /* raw: the input tensor's bytes, copied from the mapping (untimed) */
  size_t capacity;          /* elements */
} bench;

/* Makes the buffers hold n elements. */
static void reserve(bench *b, size_t n) {
  if (n <= b->capacity) return;
  free(b->w), free(b->x), free(b->out), free(b->raw);
  b->w = malloc(n * sizeof *b->w), b->x = malloc(n * sizeof *b->x);
  b->out = malloc(n * sizeof(double)), b->raw = malloc(n * sizeof(double));
  if (!b->w || !b->x || !b->out || !b->raw) die("out of memory", NULL);
  memset(b->w, 0, n * sizeof *b->w), memset(b->x, 0, n * sizeof *b->x);
  memset(b->out, 0, n * sizeof(double)), memset(b->raw, 0, n * sizeof(double));
  b->capacity = n;
}

static double *dense_of(const rotation *r) {
  int n = rotation_dim(r);
  double *d = malloc(sizeof *d * (size_t)n * (size_t)n);
  if (!d) die("out of memory", NULL);
  rotation_dense(r, d);
  return d;
}

/* rotq's kernels on w [rows, cols]: rows (W·R) or columns (Rᵀ·W) split among the threads. */
typedef struct fast_job {
  const rotation *r;
  double *w;
  size_t rows, cols;
} fast_job;

static void fast_rows(void *arg, size_t begin, size_t end) {
  fast_job *j = arg;
  rotation_apply_rows_f64(j->r, j->w + begin * j->cols, end - begin, j->cols, j->cols);
}

static void fast_cols(void *arg, size_t begin, size_t end) {
  fast_job *j = arg;
  rotation_apply_cols_f64(j->r, j->w + begin, j->rows, end - begin, j->cols);
}

static void fast(bench *b, const rotation *r, double *w, size_t rows, size_t cols, int by_rows) {
  double t0 = now();
  fast_job job = {r, w, rows, cols};
  if (by_rows)
    parallel_for(rows, 1, b->threads, fast_rows, &job);
  else
    parallel_for(cols, 8, b->threads, fast_cols, &job); /* whole cache lines of columns */
  b->tally[FAST].compute_seconds += now() - t0;
}

/* Conversions between the tensor's dtype and float64, rows split among the threads. */
typedef struct convert_job {
  const st_tensor *t;
  const char *from;
  double *w;
  unsigned char *to;
  size_t cols;
  const double *g;
} convert_job;

static void to_f64_rows(void *arg, size_t begin, size_t end) {
  convert_job *j = arg;
  size_t cols = j->cols;
  dtype_to_f64(j->t->dtype, j->from + begin * cols * dtype_size(j->t->dtype), j->w + begin * cols,
               (end - begin) * cols);
  if (j->g)
    for (size_t i = begin; i < end; i++)
      for (size_t k = 0; k < cols; k++) j->w[i * cols + k] *= j->g[k];
}

static void from_f64_rows(void *arg, size_t begin, size_t end) {
  convert_job *j = arg;
  size_t size = dtype_size(j->t->dtype);
  dtype_from_f64(j->t->dtype, j->w + begin * j->cols, j->to + begin * j->cols * size, (end - begin) * j->cols);
}

/* rows [first, first + rows) of a [*, cols] tensor as float64, with norm g fused into its columns. */
static double *load(bench *b, method m, const st_tensor *t, size_t first, size_t rows, size_t cols, const double *g) {
  size_t bytes = rows * cols * dtype_size(t->dtype);
  memcpy(b->raw, (const char *)t->data + first * cols * dtype_size(t->dtype), bytes); /* untimed */
  double t0 = now();
  convert_job job = {t, (const char *)b->raw, b->w, NULL, cols, g};
  parallel_for(rows, 1, b->threads, to_f64_rows, &job);
  b->tally[m].convert_seconds += now() - t0;
  return b->w;
}

/* Orders a 16-bit float's bits like the integers (for ulp distances). */
static long ordered(unsigned v) { return v & 0x8000 ? -(long)(v & 0x7fff) : (long)v; }

/* Back to the tensor's dtype (timed); then compared with the rotated checkpoint's tensor, if any. */
static void store(bench *b, method m, const st_tensor *t, const char *name, const double *w, size_t first,
                  size_t count) {
  double t0 = now();
  size_t size = dtype_size(t->dtype);
  unsigned char *out = b->out;
  convert_job job = {t, NULL, (double *)w, out, (size_t)t->shape[1], NULL};
  parallel_for(count / job.cols, 1, b->threads, from_f64_rows, &job);
  tally *y = &b->tally[m];
  y->convert_seconds += now() - t0;
  const st_tensor *r = b->has_rotated ? checkpoint_find(&b->rotated, name) : NULL;
  if (r && size == 2 && r->dtype == t->dtype) {
    const unsigned char *theirs = (const unsigned char *)r->data + first * size;
    for (size_t i = 0; i < count; i++) {
      unsigned u = out[2 * i] | out[2 * i + 1] << 8, v = theirs[2 * i] | theirs[2 * i + 1] << 8;
      long ulps = labs(ordered(u) - ordered(v));
      y->differing += ulps != 0;
      if (ulps > y->worst_ulps) y->worst_ulps = ulps;
    }
    y->compared += (long)count;
  }
}

/* C ← op(A)·op(B) into c: [m, n] with inner dimension k. */
static void gemm(bench *b, int trans_a, const double *a, int trans_b, const double *x, double *c, size_t m, size_t n,
                 size_t k) {
  double t0 = now();
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n,
              (int)k, 1.0, a, trans_a ? (int)m : (int)k, x, trans_b ? (int)k : (int)n, 0.0, c, (int)n);
  b->tally[DENSE].compute_seconds += now() - t0;
}

static const st_tensor *tensor(bench *b, const char *fmt, int layer, char *name) {
  snprintf(name, 256, fmt, layer);
  const st_tensor *t = checkpoint_find(&b->ck, name);
  if (!t || t->ndim != 2) {
    fprintf(stderr, "bench_dense_rotate: tensor '%s' missing\n", name);
    exit(1);
  }
  return t;
}

/* A reader of the residual stream: W ← (W ∘ g)·R1, then R2ᵀ per head on the output rows if with_r2. */
static void reader(bench *b, method m, const st_tensor *t, const char *name, const double *g, int with_r2) {
  size_t rows = (size_t)t->shape[0], cols = (size_t)t->shape[1], hd = (size_t)b->head_dim;
  double *w = load(b, m, t, 0, rows, cols, g), *x = b->x;
  if (m == FAST) {
    fast(b, b->r1, w, rows, cols, 1);
    if (with_r2) fast(b, b->r2, w, rows, cols, 0);
    x = w;
  } else {
    gemm(b, 0, w, 0, b->dense_r1, x, rows, cols, cols);
    if (with_r2)
      for (size_t h = 0; h < rows / hd; h++) /* each head's rows: R2ᵀ·X_h, into w's rows */
        gemm(b, 1, b->dense_r2, 0, x + h * hd * cols, w + h * hd * cols, hd, cols, hd);
    if (with_r2) x = w;
  }
  store(b, m, t, name, x, 0, rows * cols);
}

/* A writer: W ← R1ᵀ·W, after W·blockdiag(R2) on its input columns if with_r2. */
static void writer(bench *b, method m, const st_tensor *t, const char *name, int with_r2) {
  size_t rows = (size_t)t->shape[0], cols = (size_t)t->shape[1], hd = (size_t)b->head_dim;
  double *w = load(b, m, t, 0, rows, cols, NULL), *x = b->x;
  if (m == FAST) {
    if (with_r2) fast(b, b->r2, w, rows, cols, 1);
    fast(b, b->r1, w, rows, cols, 0);
    x = w;
  } else {
    if (with_r2) { /* [rows·heads, head_dim]·R2 */
      gemm(b, 0, w, 0, b->dense_r2, x, rows * cols / hd, hd, hd);
      double *swap = w;
      w = x, x = swap;
    }
    gemm(b, 1, b->dense_r1, 0, w, x, rows, cols, rows);
  }
  store(b, m, t, name, x, 0, rows * cols);
}

/* The norm called fmt (layer) as float64, or NULL when fmt is NULL. */
static double *norm_of(bench *b, const char *fmt, int layer, size_t n) {
  if (!fmt) return NULL;
  char name[256];
  snprintf(name, sizeof name, fmt, layer);
  rotq_error err;
  double *g;
  if (checkpoint_read_f64(&b->ck, name, n, &g, &err) < 0) die(name, &err);
  return g;
}

/* The timed seconds (conversions and arithmetic) a tally gained since `before`. */
static double seconds_since(const tally *before, const tally *now) {
  return now->convert_seconds - before->convert_seconds + now->compute_seconds - before->compute_seconds;
}

/* One decoder layer by method m (its input already in memory); returns the seconds. */
static double layer(bench *b, method m, int l) {
  static const struct {
    const char *weight, *norm;
    int is_writer, with_r2;
  } parts[] = {
      {"model.layers.%d.self_attn.q_proj.weight", "model.layers.%d.input_layernorm.weight", 0, 0},
      {"model.layers.%d.self_attn.k_proj.weight", "model.layers.%d.input_layernorm.weight", 0, 0},
      {"model.layers.%d.self_attn.v_proj.weight", "model.layers.%d.input_layernorm.weight", 0, 1},
      {"model.layers.%d.self_attn.o_proj.weight", NULL, 1, 1},
      {"model.layers.%d.mlp.gate_proj.weight", "model.layers.%d.post_attention_layernorm.weight", 0, 0},
      {"model.layers.%d.mlp.up_proj.weight", "model.layers.%d.post_attention_layernorm.weight", 0, 0},
      {"model.layers.%d.mlp.down_proj.weight", NULL, 1, 0},
  };
  double seconds = 0;
  for (size_t p = 0; p < sizeof parts / sizeof *parts; p++) {
    char name[256];
    const st_tensor *t = tensor(b, parts[p].weight, l, name);
    double *g = norm_of(b, parts[p].norm, l, (size_t)t->shape[1]);
    tally before = b->tally[m];
    if (parts[p].is_writer)
      writer(b, m, t, name, parts[p].with_r2);
    else
      reader(b, m, t, name, g, parts[p].with_r2);
    seconds += seconds_since(&before, &b->tally[m]);
    free(g);
  }
  return seconds;
}

/* Rows [0, rows) of an embedding-like [vocab, hidden] tensor by method m: (E ∘ g)·R1. Returns the
 * seconds, extrapolated to all its rows. */
static double embedding(bench *b, method m, const char *name, const char *norm, size_t rows) {
  const st_tensor *t = checkpoint_find(&b->ck, name);
  if (!t) return 0;
  size_t cols = (size_t)t->shape[1];
  if (rows > (size_t)t->shape[0]) rows = (size_t)t->shape[0];
  double *g = norm_of(b, norm, 0, cols);
  tally before = b->tally[m];
  double *w = load(b, m, t, 0, rows, cols, g), *x = w;
  if (m == FAST)
    fast(b, b->r1, w, rows, cols, 1);
  else
    gemm(b, 0, w, 0, b->dense_r1, x = b->x, rows, cols, cols);
  store(b, m, t, name, x, 0, rows * cols);
  free(g);
  return seconds_since(&before, &b->tally[m]) * (double)t->shape[0] / (double)rows;
}

int main(int argc, char **argv) {
  const char *model = NULL, *rotated = NULL;
  int layers = 2;
  long embedding_rows = 8192;
  unsigned long long seed = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--model"))
      model = argv[i + 1];
    else if (!strcmp(argv[i], "--rotated"))
      rotated = argv[i + 1];
    else if (!strcmp(argv[i], "--layers"))
      layers = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--embedding-rows"))
      embedding_rows = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--seed"))
      seed = strtoull(argv[i + 1], NULL, 0);
    else
      model = NULL, i = argc;
  }
  if (!model || layers < 1 || embedding_rows < 1) {
    fprintf(stderr, "usage: bench_dense_rotate --model DIR [--layers N] [--embedding-rows N] [--seed S] "
                    "[--rotated DIR]\n");
    return 2;
  }
  bench b = {0};
  rotq_error err;
  if (checkpoint_open(model, &b.ck, &err) < 0) die(model, &err);
  if (rotated && checkpoint_open(rotated, &b.rotated, &err) < 0) die(rotated, &err);
  b.has_rotated = rotated != NULL;
  b.threads = openblas_get_num_threads();
  rotation_config config;
  rotation_set set;
  if (rotation_config_load("transformer_universal", &config, &err) < 0) die("config", &err);
  if (rotation_set_create(&config, &b.ck.config, "model.layers", seed, &set, &err) < 0) die("matrices", &err);
  b.r1 = rotation_set_get(&set, "r1", -1, &err);
  if (!b.r1) die("r1", &err);
  b.dense_r1 = dense_of(b.r1);
  b.hidden = rotation_dim(b.r1);
  int total_layers = b.ck.config.num_hidden_layers;
  if (layers > total_layers) layers = total_layers;
  printf("float64 rotation, %s: %d of %d layers measured, %d threads for both methods\n", model, layers, total_layers,
         b.threads);
  size_t largest = (size_t)embedding_rows * (size_t)b.hidden;
  for (size_t i = 0; i < b.ck.tensor_count; i++)
    if (strstr(b.ck.tensors[i]->name, "layers.0.") && st_numel(b.ck.tensors[i]) > largest)
      largest = st_numel(b.ck.tensors[i]);
  reserve(&b, largest);
  double layer_seconds[2] = {0, 0};
  for (int l = 0; l < layers; l++) {
    b.r2 = rotation_set_get(&set, "r2", l, &err);
    if (!b.r2) die("r2", &err);
    double *d2 = dense_of(b.r2);
    b.dense_r2 = d2;
    b.head_dim = rotation_dim(b.r2);
    double dense_s = layer(&b, DENSE, l), fast_s = layer(&b, FAST, l);
    layer_seconds[FAST] += fast_s, layer_seconds[DENSE] += dense_s;
    printf("  layer %d: dense %.2f s, fast %.3f s\n", l, dense_s, fast_s);
    free(d2);
  }
  double total[2];
  for (int m = FAST; m >= DENSE; m--) {
    double embed = embedding(&b, (method)m, "model.embed_tokens.weight", NULL, (size_t)embedding_rows);
    double head = b.ck.config.tie_word_embeddings
                      ? embed /* the untied lm_head is the same product */
                      : embedding(&b, (method)m, "lm_head.weight", "model.norm.weight", (size_t)embedding_rows);
    total[m] = layer_seconds[m] / layers * total_layers + embed + head;
    printf("  %s: embedding %.2f s, lm_head %.2f s (extrapolated from %ld rows); time: rotation %.2f s, "
           "conversions and norm %.2f s\n",
           METHOD_NAME[m], embed, head, embedding_rows, b.tally[m].compute_seconds, b.tally[m].convert_seconds);
  }
  printf("fast estimate for the whole model: %.2f s (%.3f s per layer × %d + embedding + lm_head; compute only)\n",
         total[FAST], layer_seconds[FAST] / layers, total_layers);
  printf("dense estimate for the whole model: %.2f s (%.2f s per layer × %d + embedding + lm_head; compute only)\n",
         total[DENSE], layer_seconds[DENSE] / layers, total_layers);
  printf("dense / fast, compute only: %.1f×\n", total[DENSE] / total[FAST]);
  for (int m = DENSE; b.has_rotated && m <= FAST; m++)
    printf("%s versus rotq's output: %ld of %ld elements differ, by at most %ld ulp\n", METHOD_NAME[m],
           b.tally[m].differing, b.tally[m].compared, b.tally[m].worst_ulps);
  free((void *)b.dense_r1);
  free(b.w), free(b.x), free(b.out), free(b.raw);
  rotation_set_free(&set);
  rotation_config_free(&config);
  checkpoint_close(&b.ck);
  if (rotated) checkpoint_close(&b.rotated);
  return 0;
}

/* The rotation done the way the Python tools do it (QuaRot, SpinQuant): every weight converted to
 * float64, multiplied by the dense R1 (hidden × hidden) and R2 (head_dim × head_dim) with BLAS
 * (cblas_dgemm), converted back. Times the first --layers decoder layers and --embedding-rows
 * rows of the embedding, and extrapolates to the whole model (compute only: nothing is written).
 * The matrices are rotq's own (same config, seed and norm fusion), so with --rotated the result
 * can be compared with rotq's output, tensor by tensor.
 * Usage: bench_dense_rotate --model DIR [--layers N] [--embedding-rows N] [--seed S] [--rotated DIR] */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* The dense matrices, the checkpoint, and where the time went. */
typedef struct bench {
  checkpoint ck, rotated;
  int has_rotated;
  const double *r1; /* [hidden, hidden] */
  int hidden, head_dim;
  double convert_seconds, gemm_seconds;
  long compared, differing, worst_ulps;
} bench;

static double *dense_of(const rotation *r) {
  int n = rotation_dim(r);
  double *d = malloc(sizeof *d * (size_t)n * (size_t)n);
  if (!d) die("out of memory", NULL);
  rotation_dense(r, d);
  return d;
}

/* rows [first, first + rows) of a [*, cols] tensor as float64, with norm g fused into its columns. */
static double *load(bench *b, const st_tensor *t, size_t first, size_t rows, size_t cols, const char *norm) {
  double t0 = now();
  double *w = malloc(sizeof *w * rows * cols);
  if (!w) die("out of memory", NULL);
  dtype_to_f64(t->dtype, (const char *)t->data + first * cols * dtype_size(t->dtype), w, rows * cols);
  if (norm) {
    rotq_error err;
    double *g;
    if (checkpoint_read_f64(&b->ck, norm, cols, &g, &err) < 0) die(norm, &err);
    for (size_t i = 0; i < rows; i++)
      for (size_t j = 0; j < cols; j++) w[i * cols + j] *= g[j];
    free(g);
  }
  b->convert_seconds += now() - t0;
  return w;
}

/* Orders a 16-bit float's bits like the integers (for ulp distances). */
static long ordered(unsigned v) { return v & 0x8000 ? -(long)(v & 0x7fff) : (long)v; }

/* Back to the tensor's dtype; compared with the rotated checkpoint's tensor when there is one. */
static void store(bench *b, const st_tensor *t, const char *name, const double *w, size_t first, size_t count) {
  double t0 = now();
  size_t size = dtype_size(t->dtype);
  unsigned char *out = malloc(size * count);
  if (!out) die("out of memory", NULL);
  dtype_from_f64(t->dtype, w, out, count);
  b->convert_seconds += now() - t0;
  const st_tensor *r = b->has_rotated ? checkpoint_find(&b->rotated, name) : NULL;
  if (r && size == 2 && r->dtype == t->dtype) {
    const unsigned char *theirs = (const unsigned char *)r->data + first * size;
    for (size_t i = 0; i < count; i++) {
      unsigned x = out[2 * i] | out[2 * i + 1] << 8, y = theirs[2 * i] | theirs[2 * i + 1] << 8;
      long ulps = labs(ordered(x) - ordered(y));
      b->differing += ulps != 0;
      if (ulps > b->worst_ulps) b->worst_ulps = ulps;
    }
    b->compared += (long)count;
  }
  free(out);
}

/* C ← op(A)·op(B) into a new buffer: [m, n] with inner dimension k. */
static double *gemm(bench *b, int trans_a, const double *a, int trans_b, const double *x, size_t m, size_t n,
                    size_t k) {
  double *c = malloc(sizeof *c * m * n);
  if (!c) die("out of memory", NULL);
  double t0 = now();
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n,
              (int)k, 1.0, a, trans_a ? (int)m : (int)k, x, trans_b ? (int)k : (int)n, 0.0, c, (int)n);
  b->gemm_seconds += now() - t0;
  return c;
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

/* A reader of the residual stream: W ← (W ∘ g)·R1, then R2ᵀ per head on the output rows if r2. */
static void reader(bench *b, int layer, const char *fmt, const char *norm, const double *r2) {
  char name[256], norm_name[256];
  const st_tensor *t = tensor(b, fmt, layer, name);
  snprintf(norm_name, sizeof norm_name, norm, layer);
  size_t rows = (size_t)t->shape[0], cols = (size_t)t->shape[1], hd = (size_t)b->head_dim;
  double *w = load(b, t, 0, rows, cols, norm_name);
  double *x = gemm(b, 0, w, 0, b->r1, rows, cols, cols);
  if (r2)
    for (size_t h = 0; h < rows / hd; h++) { /* each head's rows: R2ᵀ·W_h */
      double *y = gemm(b, 1, r2, 0, x + h * hd * cols, hd, cols, hd);
      memcpy(x + h * hd * cols, y, sizeof *y * hd * cols);
      free(y);
    }
  store(b, t, name, x, 0, rows * cols);
  free(w), free(x);
}

/* A writer: W ← R1ᵀ·W, after W·blockdiag(R2) on its input columns if r2. */
static void writer(bench *b, int layer, const char *fmt, const double *r2) {
  char name[256];
  const st_tensor *t = tensor(b, fmt, layer, name);
  size_t rows = (size_t)t->shape[0], cols = (size_t)t->shape[1], hd = (size_t)b->head_dim;
  double *w = load(b, t, 0, rows, cols, NULL);
  if (r2) { /* [rows·heads, head_dim]·R2 */
    double *y = gemm(b, 0, w, 0, r2, rows * cols / hd, hd, hd);
    free(w);
    w = y;
  }
  double *x = gemm(b, 1, b->r1, 0, w, rows, cols, rows);
  store(b, t, name, x, 0, rows * cols);
  free(w), free(x);
}

/* Rows [0, rows) of an embedding-like [vocab, hidden] tensor: (E ∘ g)·R1. Returns the seconds. */
static double embedding(bench *b, const char *name, const char *norm, size_t rows) {
  const st_tensor *t = checkpoint_find(&b->ck, name);
  if (!t) return 0;
  size_t cols = (size_t)t->shape[1];
  if (rows > (size_t)t->shape[0]) rows = (size_t)t->shape[0];
  double t0 = now();
  double *w = load(b, t, 0, rows, cols, norm);
  double *x = gemm(b, 0, w, 0, b->r1, rows, cols, cols);
  store(b, t, name, x, 0, rows * cols);
  free(w), free(x);
  return (now() - t0) * (double)t->shape[0] / (double)rows;
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
  rotation_config config;
  rotation_set set;
  if (rotation_config_load("transformer_universal", &config, &err) < 0) die("config", &err);
  if (rotation_set_create(&config, &b.ck.config, seed, &set, &err) < 0) die("matrices", &err);
  const rotation *r1 = rotation_set_get(&set, "r1", -1, &err);
  if (!r1) die("r1", &err);
  b.r1 = dense_of(r1);
  b.hidden = rotation_dim(r1);
  int total_layers = b.ck.config.num_hidden_layers;
  if (layers > total_layers) layers = total_layers;
  printf("dense float64 rotation (cblas_dgemm, %d OpenBLAS threads), %s: %d of %d layers measured\n",
         openblas_get_num_threads(), model, layers, total_layers);
  double layer_seconds = 0;
  for (int l = 0; l < layers; l++) {
    const rotation *r2 = rotation_set_get(&set, "r2", l, &err);
    if (!r2) die("r2", &err);
    double *d2 = dense_of(r2);
    b.head_dim = rotation_dim(r2);
    double t0 = now();
    reader(&b, l, "model.layers.%d.self_attn.q_proj.weight", "model.layers.%d.input_layernorm.weight", NULL);
    reader(&b, l, "model.layers.%d.self_attn.k_proj.weight", "model.layers.%d.input_layernorm.weight", NULL);
    reader(&b, l, "model.layers.%d.self_attn.v_proj.weight", "model.layers.%d.input_layernorm.weight", d2);
    writer(&b, l, "model.layers.%d.self_attn.o_proj.weight", d2);
    reader(&b, l, "model.layers.%d.mlp.gate_proj.weight", "model.layers.%d.post_attention_layernorm.weight", NULL);
    reader(&b, l, "model.layers.%d.mlp.up_proj.weight", "model.layers.%d.post_attention_layernorm.weight", NULL);
    writer(&b, l, "model.layers.%d.mlp.down_proj.weight", NULL);
    double seconds = now() - t0;
    layer_seconds += seconds;
    printf("  layer %d: %.2f s\n", l, seconds);
    free(d2);
  }
  double embed = embedding(&b, "model.embed_tokens.weight", NULL, (size_t)embedding_rows);
  double head = b.ck.config.tie_word_embeddings
                    ? embed /* the untied lm_head is the same product */
                    : embedding(&b, "lm_head.weight", "model.norm.weight", (size_t)embedding_rows);
  double total = layer_seconds / layers * total_layers + embed + head;
  printf("  embedding %.1f s, lm_head %.1f s (extrapolated from %ld rows)\n", embed, head, embedding_rows);
  printf("  time: gemm %.1f s, conversions and norm %.1f s\n", b.gemm_seconds, b.convert_seconds);
  printf("dense estimate for the whole model: %.1f s (%.2f s per layer × %d + embedding + lm_head; compute only)\n",
         total, layer_seconds / layers, total_layers);
  if (b.has_rotated)
    printf("versus rotq's output: %ld of %ld elements differ, by at most %ld ulp\n", b.differing, b.compared,
           b.worst_ulps);
  free((void *)b.r1);
  rotation_set_free(&set);
  rotation_config_free(&config);
  checkpoint_close(&b.ck);
  if (rotated) checkpoint_close(&b.rotated);
  return 0;
}

#include "eval/gptq.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/pack.h"

/* Columns per lazy batch when there are no groups (the reference's blocksize). */
#define BATCH 128

static double clamp(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

/* scale[r] = max |w[r, first..first+count)| / qmax for every row (a zero row gets scale 0). */
static void row_scales(const double *w, int rows, int cols, int first, int count, double qmax, double *scale) {
  for (int r = 0; r < rows; r++) {
    double max_abs = 0;
    for (int c = first; c < first + count; c++) max_abs = fmax(max_abs, fabs(w[(size_t)r * cols + c]));
    scale[r] = max_abs / qmax;
  }
}

static double quantize_value(double v, double scale, double qmax) {
  return scale > 0 ? scale * clamp(nearbyint(v / scale), -qmax - 1, qmax) : 0;
}

/* Reorders the columns of w [rows, cols] (and rows and columns of h [cols, cols]) so that new
 * column i is old column perm[i]; inverse undoes it on w only. */
static void permute_columns(double *w, int rows, int cols, const int *perm, bool inverse, double *row) {
  for (int r = 0; r < rows; r++) {
    double *wr = w + (size_t)r * cols;
    for (int i = 0; i < cols; i++) {
      if (inverse)
        row[perm[i]] = wr[i];
      else
        row[i] = wr[perm[i]];
    }
    memcpy(wr, row, sizeof(double) * cols);
  }
}

static void permute_hessian(double *h, int cols, const int *perm, double *scratch) {
  for (int i = 0; i < cols; i++)
    for (int j = 0; j < cols; j++) scratch[(size_t)i * cols + j] = h[(size_t)perm[i] * cols + perm[j]];
  memcpy(h, scratch, sizeof(double) * cols * cols);
}

/* A column and its H diagonal, for act_order. */
typedef struct keyed_column {
  double key;
  int column;
} keyed_column;

static int by_decreasing_key(const void *a, const void *b) {
  const keyed_column *x = a, *y = b;
  if (x->key != y->key) return x->key > y->key ? -1 : 1;
  return x->column - y->column; /* ties keep column order */
}

/* perm: the columns by decreasing key. */
static int decreasing_order(const double *key, int cols, int *perm) {
  keyed_column *k = malloc(sizeof *k * cols);
  if (!k) return -1;
  for (int i = 0; i < cols; i++) k[i] = (keyed_column){key[i], i};
  qsort(k, cols, sizeof *k, by_decreasing_key);
  for (int i = 0; i < cols; i++) perm[i] = k[i].column;
  free(k);
  return 0;
}

/* h ← the upper Cholesky factor U of h⁻¹ (h⁻¹ = Uᵀ·U), lower triangle zeroed. */
static int inverse_cholesky_upper(double *h, int cols, rotq_error *err) {
  lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', cols, h, cols);
  if (info == 0) info = LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'L', cols, h, cols);
  if (info != 0)
    return rotq_fail(err,
                     "GPTQ: the damped Hessian is not positive definite (LAPACK info %d); "
                     "raise the damping",
                     (int)info);
  for (int i = 0; i < cols; i++)
    for (int j = i + 1; j < cols; j++) h[(size_t)i * cols + j] = h[(size_t)j * cols + i];
  info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', cols, h, cols);
  if (info != 0)
    return rotq_fail(err, "GPTQ: the inverse Hessian is not positive definite (LAPACK info %d)", (int)info);
  for (int i = 0; i < cols; i++)
    for (int j = 0; j < i; j++) h[(size_t)i * cols + j] = 0;
  return 0;
}

/* How a GPTQ run quantizes: `group` computes the scales of rows × columns [first, first + count)
 * from w's current values (called at the first column of each group, or once at column 0 with
 * count = cols for one scale per row, before any error was spread); `value` quantizes w[row, col]
 * = v and returns the value the quantized weight takes. */
typedef struct column_quantizer {
  void (*group)(void *context, const double *w, int rows, int cols, int first, int count);
  double (*value)(void *context, int row, int col, double v);
  void *context;
  int group_size; /* 0: one scale per row */
} column_quantizer;

/* GPTQ of w [rows, cols] in place with h [cols, cols] (overwritten) and the quantizer q. */
static int gptq_run(double *w, int rows, int cols, double *h, bool act_order, double damp_ratio,
                    const column_quantizer *q, rotq_error *err) {
  const int wanted_batch = q->group_size > 0 ? q->group_size : BATCH;
  const int batch = wanted_batch < cols ? wanted_batch : cols;
  int *perm = calloc((size_t)cols, sizeof(int));
  double *diag = malloc(sizeof(double) * cols);
  double *errors = malloc(sizeof(double) * rows * batch);                    /* [rows, batch] */
  double *scratch = act_order ? malloc(sizeof(double) * cols * cols) : NULL; /* [cols, cols], act_order's */
  int status = 0;
  if (!perm || !diag || !errors || (act_order && !scratch)) {
    status = rotq_fail(err, "GPTQ: out of memory for a [%d, %d] weight", rows, cols);
    goto done;
  }

  /* Dead inputs: their weights can be anything; zero them and make H invertible there. */
  double diag_sum = 0;
  for (int i = 0; i < cols; i++) {
    double *hii = &h[(size_t)i * cols + i];
    if (*hii == 0) {
      *hii = 1;
      for (int r = 0; r < rows; r++) w[(size_t)r * cols + i] = 0;
    }
    diag[i] = *hii;
    perm[i] = i;
  }
  if (act_order) {
    if (decreasing_order(diag, cols, perm) != 0) {
      status = rotq_fail(err, "GPTQ: out of memory for a [%d, %d] weight", rows, cols);
      goto done;
    }
    permute_columns(w, rows, cols, perm, false, scratch);
    permute_hessian(h, cols, perm, scratch);
  }
  for (int i = 0; i < cols; i++) diag_sum += h[(size_t)i * cols + i];
  double damp = damp_ratio * diag_sum / cols;
  for (int i = 0; i < cols; i++) h[(size_t)i * cols + i] += damp;
  if (inverse_cholesky_upper(h, cols, err) != 0) {
    status = -1;
    goto done;
  }
  const double *u = h; /* [cols, cols] upper triangular */

  if (q->group_size <= 0) q->group(q->context, w, rows, cols, 0, cols);
  for (int first = 0; first < cols; first += batch) {
    int count = cols - first < batch ? cols - first : batch;
    if (q->group_size > 0) q->group(q->context, w, rows, cols, first, count);
    for (int i = first; i < first + count; i++) {
      double d = u[(size_t)i * cols + i];
      for (int r = 0; r < rows; r++) {
        double *wr = w + (size_t)r * cols;
        double value = q->value(q->context, r, i, wr[i]);
        double e = (wr[i] - value) / d;
        wr[i] = value;
        errors[(size_t)r * batch + (i - first)] = e;
        /* the rest of the batch absorbs the error now; the columns after it, below */
        for (int j = i + 1; j < first + count; j++) wr[j] -= e * u[(size_t)i * cols + j];
      }
    }
    int rest = cols - first - count;
    if (rest > 0)
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, rest, count, -1, errors, batch,
                  u + (size_t)first * cols + first + count, cols, 1, w + first + count, cols);
  }
  if (act_order) permute_columns(w, rows, cols, perm, true, scratch);

done:
  free(perm);
  free(diag);
  free(errors);
  free(scratch);
  return status;
}

/* rotq eval's quantizer: symmetric, scale max |w| / qmax per row and group, kept in double. */
typedef struct symmetric_quantizer {
  double qmax;
  double *scale; /* [rows], the current group's */
} symmetric_quantizer;

static void symmetric_group(void *context, const double *w, int rows, int cols, int first, int count) {
  symmetric_quantizer *s = context;
  row_scales(w, rows, cols, first, count, s->qmax, s->scale);
}

static double symmetric_value(void *context, int row, int col, double v) {
  (void)col;
  const symmetric_quantizer *s = context;
  return quantize_value(v, s->scale[row], s->qmax);
}

int gptq_quantize(double *w, int rows, int cols, double *h, const gptq_options *o, rotq_error *err) {
  symmetric_quantizer s = {.qmax = (double)((1 << (o->bits - 1)) - 1), .scale = malloc(sizeof(double) * rows)};
  if (!s.scale) return rotq_fail(err, "GPTQ: out of memory for a [%d, %d] weight", rows, cols);
  const column_quantizer q = {symmetric_group, symmetric_value, &s, o->group};
  int status = gptq_run(w, rows, cols, h, o->act_order, o->damp, &q, err);
  free(s.scale);
  return status;
}

/* The compressed-tensors quantizer: the format's stored scales and zero points (eval/pack.h). */
typedef struct format_quantizer {
  const ct_scheme *scheme;
  dtype t;
  int cols;
  int groups;     /* scales per row */
  uint8_t *codes; /* [rows, cols] */
  double *scale;  /* [rows, groups] */
  int *zero;      /* [rows, groups] */
  int current;    /* the group being quantized */
} format_quantizer;

static void format_group(void *context, const double *w, int rows, int cols, int first, int count) {
  format_quantizer *f = context;
  f->current = f->scheme->group > 0 ? first / f->scheme->group : 0;
  for (int r = 0; r < rows; r++) {
    size_t at = (size_t)r * f->groups + f->current;
    int zero;
    ct_int_params(f->scheme, w + (size_t)r * cols + first, (size_t)count, f->t, &f->scale[at], &zero);
    f->zero[at] = zero;
  }
}

static double format_value(void *context, int row, int col, double v) {
  format_quantizer *f = context;
  size_t at = (size_t)row * f->groups + f->current;
  int code = ct_int_code(f->scheme, v, f->scale[at], f->zero[at]);
  f->codes[(size_t)row * (size_t)f->cols + (size_t)col] = (uint8_t)code;
  return ct_int_value(code, f->scale[at], f->zero[at], f->t);
}

int gptq_quantize_format(double *w, int rows, int cols, double *h, const ct_scheme *s, dtype t, double damp,
                         uint8_t *codes, double *scale, int *zero, rotq_error *err) {
  if (s->kind != CT_W4A16 && s->kind != CT_W8A8)
    return rotq_fail(err, "GPTQ: scheme %s is not an int scheme (W4A16, W8A8)", ct_scheme_name(s));
  if (s->group > 0 && cols % s->group != 0)
    return rotq_fail(err, "GPTQ: group %d does not divide %d columns", s->group, cols);
  format_quantizer f = {.scheme = s,
                        .t = t,
                        .cols = cols,
                        .groups = (int)ct_groups(s, cols),
                        .codes = codes,
                        .scale = scale,
                        .zero = zero};
  const column_quantizer q = {format_group, format_value, &f, s->group};
  return gptq_run(w, rows, cols, h, false, damp, &q, err);
}

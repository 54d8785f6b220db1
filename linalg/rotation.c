/* Building rotations: modes, Hadamard plans and their fallback, block-diagonal repetition, dense
 * and Kronecker rotations; their descriptions. The application is in rotation_apply.c. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linalg/orthogonal.h"
#include "linalg/rng.h"
#include "linalg/rotation_internal.h"
#include "io/json_file.h"

int rotation_mode_parse(const char *name, rotation_mode *mode) {
  static const rotation_mode modes[] = {ROTATION_BASE_HADAMARD, ROTATION_HADAMARD, ROTATION_ORTHOGONAL};
  for (size_t i = 0; i < sizeof modes / sizeof *modes; i++)
    if (name && strcmp(name, rotation_mode_name(modes[i])) == 0) {
      *mode = modes[i];
      return 0;
    }
  return -1;
}

const char *rotation_mode_name(rotation_mode mode) {
  switch (mode) {
  case ROTATION_BASE_HADAMARD: return "base_hadamard";
  case ROTATION_HADAMARD: return "hadamard";
  case ROTATION_ORTHOGONAL: return "orthogonal";
  }
  return "?";
}

void rotation_free(rotation *r) {
  if (!r) return;
  free(r->scale);
  free(r->scale_f32);
  for (int i = 0; i < r->factor_count; i++) {
    free(r->factor[i].signs_t);
    free(r->factor[i].signs_t_f32);
  }
  free(r->dense);
  free(r->dense_f32);
  rotation_free(r->a);
  rotation_free(r->b);
  free(r);
}

static float *to_f32(const double *x, size_t n) {
  float *y = malloc(sizeof *y * (n ? n : 1));
  if (y)
    for (size_t i = 0; i < n; i++) y[i] = (float)x[i];
  return y;
}

/* scale[i] = D[i]/√hadamard_order for i < count, D drawn from g in random-Hadamard mode, else 1. */
static int make_scale(rotation *r, rng *g, int count, int hadamard_order) {
  r->scale = malloc(sizeof *r->scale * (size_t)count);
  if (!r->scale) return -1;
  double c = 1.0 / sqrt((double)hadamard_order);
  for (int i = 0; i < count; i++) r->scale[i] = r->mode == ROTATION_HADAMARD ? rng_sign(g) * c : c;
  r->scale_f32 = to_f32(r->scale, (size_t)count);
  return r->scale_f32 ? 0 : -1;
}

static int make_dense(rotation *r, int order, rng *g, rotq_error *err) {
  r->dense_order = order;
  r->dense = malloc(sizeof *r->dense * (size_t)order * (size_t)order);
  if (!r->dense) return rotq_fail(err, "random orthogonal matrix of order %d: out of memory", order);
  if (orthogonal_random(order, g, r->dense, err) < 0) return -1;
  r->dense_f32 = to_f32(r->dense, (size_t)order * (size_t)order);
  return r->dense_f32 ? 0 : rotq_fail(err, "random orthogonal matrix of order %d: out of memory", order);
}

static int make_hadamard(rotation *r, const hadamard_plan *plan, rng *g, rotq_error *err) {
  r->kind = ROTATION_KIND_HADAMARD;
  r->log2_sylvester = plan->log2_sylvester;
  for (int f = 0; f < plan->count; f++) {
    int m = plan->order[f];
    sign_factor *s = &r->factor[r->factor_count++];
    s->order = m;
    int8_t *h = malloc((size_t)m * (size_t)m);
    s->signs_t = malloc(sizeof *s->signs_t * (size_t)m * (size_t)m);
    s->signs_t_f32 = malloc(sizeof *s->signs_t_f32 * (size_t)m * (size_t)m);
    int built = h && s->signs_t && s->signs_t_f32 && hadamard_direct(plan->construction[f], m, h) == 0;
    if (built)
      for (int i = 0; i < m; i++)
        for (int l = 0; l < m; l++) {
          s->signs_t[(size_t)i * m + l] = h[(size_t)l * m + i];
          s->signs_t_f32[(size_t)i * m + l] = h[(size_t)l * m + i];
        }
    free(h);
    if (!built)
      return rotq_fail(err, "Hadamard matrix of order %d (%s): construction failed", m,
                       hadamard_construction_name(plan->construction[f]));
    r->json_factor[r->json_factor_count++] = m;
  }
  if (plan->log2_sylvester > 0 || plan->count == 0) r->json_factor[r->json_factor_count++] = 1 << plan->log2_sylvester;
  if (make_scale(r, g, r->order, r->order) < 0) return rotq_fail(err, "rotation of order %d: out of memory", r->order);
  char text[384];
  hadamard_plan_describe(plan, text, sizeof text);
  snprintf(r->description, sizeof r->description, "%s %s",
           r->mode == ROTATION_HADAMARD ? "random Hadamard" : "Hadamard", text);
  return 0;
}

static int make_fallback(rotation *r, rng *g, rotq_error *err) {
  r->kind = ROTATION_KIND_FALLBACK;
  r->fallback = 1;
  r->log2_sylvester = __builtin_ctz((unsigned)r->order);
  int s = 1 << r->log2_sylvester, m = r->order >> r->log2_sylvester;
  if (make_scale(r, g, s, s) < 0) return rotq_fail(err, "rotation of order %d: out of memory", r->order);
  if (make_dense(r, m, g, err) < 0) return -1;
  r->json_factor[r->json_factor_count++] = s;
  r->json_factor[r->json_factor_count++] = m;
  snprintf(r->description, sizeof r->description,
           "fallback (no Hadamard matrix of order %d is constructible): %sH_%d (Sylvester) ⊗ random "
           "orthogonal of order %d",
           r->order, r->mode == ROTATION_HADAMARD ? "random signs · " : "", s, m);
  return 0;
}

int rotation_group_block(int n, int group) {
  if (group <= 0 || n <= 0) return 0;
  int b = n & -n; /* the largest power of two dividing n */
  while (b > group) b >>= 1;
  return b >= n ? 0 : b;
}

rotation *rotation_create(int n, rotation_mode mode, uint64_t seed, int block_size, rotq_error *err) {
  if (n < 1 || n > (1 << 24)) {
    rotq_fail(err, "rotation of order %d: the order must be in 1 .. 2^24", n);
    return NULL;
  }
  if (mode != ROTATION_BASE_HADAMARD && mode != ROTATION_HADAMARD && mode != ROTATION_ORTHOGONAL) {
    rotq_fail(err, "rotation of order %d: unknown mode %d", n, (int)mode);
    return NULL;
  }
  if (block_size == n) block_size = 0;
  if (block_size < 0 || (block_size && ((block_size & (block_size - 1)) || n % block_size))) {
    rotq_fail(err, "rotation of order %d: block_size %d is not a power of two dividing it", n, block_size);
    return NULL;
  }
  rotation *r = calloc(1, sizeof *r);
  if (!r) {
    rotq_fail(err, "rotation of order %d: out of memory", n);
    return NULL;
  }
  r->n = n;
  r->order = block_size ? block_size : n;
  r->block_size = block_size;
  r->has_mode = 1;
  r->mode = mode;
  r->seed = seed;
  rng g;
  rng_seed(&g, seed);
  int status;
  hadamard_plan plan;
  if (mode == ROTATION_ORTHOGONAL) {
    r->kind = ROTATION_KIND_DENSE;
    status = make_dense(r, r->order, &g, err);
    r->json_factor[r->json_factor_count++] = r->order;
    snprintf(r->description, sizeof r->description, "random orthogonal (Haar) of order %d", r->order);
  } else if (hadamard_plan_order(r->order, &plan) == 0) {
    status = make_hadamard(r, &plan, &g, err);
  } else {
    status = make_fallback(r, &g, err);
  }
  if (status == 0 && block_size) {
    char inner[sizeof r->description];
    memcpy(inner, r->description, sizeof inner);
    snprintf(r->description, sizeof r->description, "block-diagonal, %d blocks of %s", n / block_size, inner);
  }
  if (status < 0) {
    rotq_fail_context(err, "%s rotation of order %d", rotation_mode_name(mode), n);
    rotation_free(r);
    return NULL;
  }
  return r;
}

rotation *rotation_from_dense(int n, const double *matrix, double tol, rotq_error *err) {
  if (n < 1) {
    rotq_fail(err, "dense rotation: order %d is not positive", n);
    return NULL;
  }
  double e = orthogonality_error(n, matrix);
  if (!(e < tol)) {
    rotq_fail(err, "dense rotation of order %d is not orthogonal: max |RᵀR - I| = %.3g (tolerance %.3g)", n, e, tol);
    return NULL;
  }
  rotation *r = calloc(1, sizeof *r);
  size_t nn = (size_t)n * (size_t)n;
  if (r) r->dense = malloc(sizeof *r->dense * nn);
  if (r && r->dense) {
    memcpy(r->dense, matrix, sizeof *r->dense * nn);
    r->dense_f32 = to_f32(matrix, nn);
  }
  if (!r || !r->dense || !r->dense_f32) {
    rotation_free(r);
    rotq_fail(err, "dense rotation of order %d: out of memory", n);
    return NULL;
  }
  r->kind = ROTATION_KIND_DENSE;
  r->n = r->order = r->dense_order = n;
  r->json_factor[r->json_factor_count++] = n;
  snprintf(r->description, sizeof r->description, "dense orthogonal matrix of order %d", n);
  return r;
}

rotation *rotation_kronecker(rotation *a, rotation *b, rotq_error *err) {
  rotation *r = NULL;
  if (!a || !b)
    rotq_fail(err, "Kronecker rotation: missing factor");
  else if ((long)a->n * b->n > (1L << 24))
    rotq_fail(err, "Kronecker rotation %d ⊗ %d: the order must be at most 2^24", a->n, b->n);
  else if (!(r = calloc(1, sizeof *r)))
    rotq_fail(err, "Kronecker rotation %d ⊗ %d: out of memory", a->n, b->n);
  if (!r) {
    rotation_free(a);
    rotation_free(b);
    return NULL;
  }
  r->kind = ROTATION_KIND_KRONECKER;
  r->n = r->order = a->n * b->n;
  r->a = a;
  r->b = b;
  r->fallback = a->fallback || b->fallback;
  r->json_factor[r->json_factor_count++] = a->n;
  r->json_factor[r->json_factor_count++] = b->n;
  snprintf(r->description, sizeof r->description, "(%s) ⊗ (%s)", a->description, b->description);
  return r;
}

int rotation_dim(const rotation *r) { return r->n; }
int rotation_is_fallback(const rotation *r) { return r->fallback; }
const char *rotation_describe(const rotation *r) { return r->description; }

cJSON *rotation_to_json(const rotation *r) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  const char *mode = r->has_mode                          ? rotation_mode_name(r->mode)
                     : r->kind == ROTATION_KIND_KRONECKER ? "kronecker"
                                                          : "dense";
  cJSON_AddStringToObject(o, "mode", mode);
  cJSON_AddNumberToObject(o, "dim", r->n);
  if (r->has_mode) json_add_to_object(o, "seed", json_seed_create(r->seed)); /* a decimal string: exact */
  cJSON_AddStringToObject(o, "construction", r->description);
  cJSON *factors = cJSON_AddArrayToObject(o, "factors");
  for (int i = 0; factors && i < r->json_factor_count; i++)
    json_add_to_array(factors, cJSON_CreateNumber(r->json_factor[i]));
  cJSON_AddBoolToObject(o, "fallback", r->fallback);
  cJSON_AddNumberToObject(o, "block_size", r->block_size);
  if (r->kind == ROTATION_KIND_KRONECKER) {
    cJSON *parts = cJSON_AddArrayToObject(o, "parts");
    if (parts) {
      json_add_to_array(parts, rotation_to_json(r->a));
      json_add_to_array(parts, rotation_to_json(r->b));
    }
  }
  return o;
}

int rotation_dense(const rotation *r, double *out) {
  size_t n = (size_t)r->n;
  if (r->kind == ROTATION_KIND_DENSE && !r->block_size) {
    memcpy(out, r->dense, sizeof *out * n * n);
    return 0;
  }
  memset(out, 0, sizeof *out * n * n);
  for (size_t i = 0; i < n; i++) out[i * n + i] = 1.0;
  return rotation_apply_rows_f64(r, out, n, n, n);
}

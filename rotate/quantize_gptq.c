/* rotq quantize --method gptq: the layer-by-layer GPTQ that feeds quantize_compressed's writer. */
#include "rotate/quantize_gptq.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/calibration.h"
#include "eval/gptq.h"
#include "eval/linear_weights.h"
#include "family/family.h"
#include "model/model.h"
#include "model/transformer.h"

/* GPTQ's result for one weight of the current layer. */
typedef struct gptq_weight {
  char name[ST_NAME_MAX + 1]; /* the checkpoint tensor, "model.layers.3.self_attn.q_proj.weight" */
  int rows, cols, groups;
  dtype t;        /* the dtype its scales are stored in (the tensor's) */
  uint8_t *codes; /* [rows, cols] unsigned */
  double *scale;  /* [rows, groups] */
  int *zero;      /* [rows, groups] unsigned */
} gptq_weight;

#define MAX_LAYER_WEIGHTS (LINEAR_INPUT_COUNT * MAX_LINEARS_PER_INPUT)

typedef struct gptq_driver {
  const quantize_options *options;
  const gptq_settings *settings;
  model *m; /* layers_on_demand */
  const family_descriptor *family;
  calibration_data calibration;
  size_t segments;
  int *lengths;           /* [segments] tokens of each */
  double **hidden;        /* [segments] the residual stream [lengths[s], hidden] entering layer `done` */
  model_session *session; /* the KV cache of one segment */
  int done;               /* layers quantized so far */
  gptq_weight weights[MAX_LAYER_WEIGHTS];
  int weight_count; /* of layer done - 1 */
  /* the Hessian being accumulated: the input observed */
  int observe_layer;
  linear_input observe_input;
  int dim;
  double *h; /* [dim, dim] */
} gptq_driver;

static void free_weights(gptq_driver *d) {
  for (int i = 0; i < d->weight_count; i++) {
    free(d->weights[i].codes);
    free(d->weights[i].scale);
    free(d->weights[i].zero);
  }
  d->weight_count = 0;
}

static void driver_free(gptq_driver *d) {
  free_weights(d);
  for (size_t s = 0; d->hidden && s < d->segments; s++) free(d->hidden[s]);
  free(d->hidden);
  free(d->lengths);
  free(d->h);
  model_session_free(d->session);
  model_free(d->m);
  calibration_free(&d->calibration);
}

/* The checkpoint module of a linear of model/linear_weights.h, by its short name. */
static const char *module_of(const family_descriptor *f, const char *name) {
  const family_layer_names *n = &f->names;
  const char *const table[][2] = {{"q_proj", n->q_proj},      {"k_proj", n->k_proj},       {"v_proj", n->v_proj},
                                  {"o_proj", n->o_proj},      {"gate_proj", n->gate_proj}, {"up_proj", n->up_proj},
                                  {"down_proj", n->down_proj}};
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (!strcmp(table[i][0], name)) return table[i][1];
  return NULL;
}

static int driver_open(gptq_driver *d, const quantize_options *o, const gptq_settings *g, rotq_error *err) {
  *d = (gptq_driver){.options = o, .settings = g};
  const int ctx = g->ctx > 0 ? g->ctx : 512;
  const model_options mo = {.layers_on_demand = true};
  if (model_load(o->model_dir, &mo, &d->m, err) != 0) return rotq_fail_context(err, "--method gptq");
  d->family = family_find(d->m->config.architecture, NULL);
  if (calibration_load(g->calib_path, g->calib_n > 0 ? g->calib_n : 128, ctx, &d->calibration, err) != 0) return -1;
  const calibration_set *set = &d->calibration.set;
  const int hidden = d->m->config.hidden_size;
  d->hidden = calloc(set->segment_count ? set->segment_count : 1, sizeof *d->hidden);
  d->lengths = calloc(set->segment_count ? set->segment_count : 1, sizeof *d->lengths);
  if (!d->hidden || !d->lengths) return rotq_fail(err, "out of memory for the calibration activations");
  int longest = 0;
  for (size_t s = 0; s < set->segment_count; s++) {
    const token_segment *seg = &set->segments[s];
    int n = seg->length < (size_t)ctx ? (int)seg->length : ctx;
    if (n < 1) continue;
    d->lengths[d->segments] = n;
    if (!(d->hidden[d->segments] = malloc(sizeof(double) * (size_t)n * hidden)))
      return rotq_fail(err, "out of memory for the calibration activations (%zu segments of up to %d tokens)",
                       set->segment_count, ctx);
    if (model_embed(d->m, set->tokens + seg->start, n, d->hidden[d->segments], err) != 0)
      return rotq_fail_context(err, "%s: calibration segment %zu", g->calib_path, s);
    longest = n > longest ? n : longest;
    d->segments++;
  }
  if (d->segments == 0) return rotq_fail(err, "%s: no calibration tokens", g->calib_path);
  d->session = model_session_new(d->m, longest, err);
  return d->session ? 0 : -1;
}

/* The observer: accumulates H += xᵀ·x (upper triangle) at the observed input, then ends the pass. */
static bool capture(void *user, int layer, linear_input input, const void *x, int rows, int dim) {
  gptq_driver *d = user;
  if (layer != d->observe_layer || input != d->observe_input) return false;
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, dim, rows, 1, x, dim, 1, d->h, dim);
  return true;
}

static int cancelled(const gptq_driver *d, rotq_error *err) {
  const quantize_options *o = d->options;
  if (o->cancel && *o->cancel)
    return rotq_fail(err, "cancelled (signal %d); the partial output was removed", (int)*o->cancel);
  if (o->cancel_fn && o->cancel_fn(o->cancel_context))
    return rotq_fail(err, "cancelled; the partial output was removed");
  return 0;
}

/* Runs every calibration segment through layer l: observed (the pass ends at the observed input)
 * or, with no observer, the residual streams advanced through the layer. */
static int run_segments(gptq_driver *d, int l, rotq_error *err) {
  for (size_t s = 0; s < d->segments; s++) {
    if (cancelled(d, err) != 0) return -1;
    if (model_session_layer(d->session, l, d->hidden[s], d->lengths[s], err) != 0)
      return rotq_fail_context(err, "layer %d, calibration segment %zu", l, s);
  }
  return 0;
}

/* GPTQ of one linear with the Hessian d->h (overwritten when `last`: the input's last linear): its
 * result kept in d->weights, its decoded values written into the model's weight (what the later
 * inputs and layers see). */
static int quantize_linear(gptq_driver *d, int l, const linear_weight *lw, bool last, rotq_error *err) {
  const ct_scheme *s = &d->options->scheme;
  const size_t numel = (size_t)lw->out_dim * lw->in_dim, dim = (size_t)lw->in_dim;
  gptq_weight *out = &d->weights[d->weight_count];
  const char *module = module_of(d->family, lw->name);
  char relative[192];
  snprintf(relative, sizeof relative, "%s.weight", module ? module : lw->name);
  family_layer_module(d->family, l, relative, out->name, sizeof out->name);
  const st_tensor *t = checkpoint_find(d->m->source, out->name);
  if (!t) return rotq_fail(err, "GPTQ: tensor '%s' is missing", out->name);
  if (s->group > 0 && lw->in_dim % s->group != 0)
    return rotq_fail(err, "tensor '%s' [%d, %d]: the group size %d does not divide its %d input columns", out->name,
                     lw->out_dim, lw->in_dim, s->group, lw->in_dim);
  out->rows = lw->out_dim, out->cols = lw->in_dim, out->t = t->dtype;
  out->groups = (int)ct_groups(s, lw->in_dim);
  out->codes = malloc(numel);
  out->scale = malloc(sizeof(double) * (size_t)lw->out_dim * out->groups);
  out->zero = malloc(sizeof(int) * (size_t)lw->out_dim * out->groups);
  d->weight_count++;
  /* GPTQ overwrites the Hessian: the last linear of the input takes it, the others a copy */
  double *h = last ? d->h : malloc(sizeof(double) * dim * dim);
  if (!out->codes || !out->scale || !out->zero || !h) {
    if (!last) free(h);
    return rotq_fail(err, "tensor '%s': out of memory for GPTQ", out->name);
  }
  if (!last) memcpy(h, d->h, sizeof(double) * dim * dim);
  const double damp = d->settings->damp > 0 ? d->settings->damp : 0.01;
  int rc = gptq_quantize_format(lw->weight, lw->out_dim, lw->in_dim, h, s, out->t, damp, out->codes, out->scale,
                                out->zero, err);
  if (!last) free(h);
  return rc == 0 ? 0 : rotq_fail_context(err, "tensor '%s'", out->name);
}

/* GPTQ of decoder layer l, then the calibration streams advanced through the quantized layer. */
static int quantize_layer(gptq_driver *d, int l, rotq_error *err) {
  model *m = d->m;
  free_weights(d);
  if (model_load_layer(m, l, err) != 0) return -1;
  for (int input = 0; input < LINEAR_INPUT_COUNT; input++) {
    linear_weight lw[MAX_LINEARS_PER_INPUT];
    int count = linears_of(m, l, (linear_input)input, lw);
    if (count == 0) continue;
    const size_t dim = (size_t)lw[0].in_dim;
    double *h = realloc(d->h, sizeof(double) * dim * dim);
    if (!h) return rotq_fail(err, "layer %d: out of memory for a [%zu, %zu] Hessian", l, dim, dim);
    d->h = h;
    memset(d->h, 0, sizeof(double) * dim * dim);
    d->observe_layer = l, d->observe_input = (linear_input)input;
    m->observe = capture, m->observe_user = d;
    int rc = run_segments(d, l, err);
    m->observe = NULL, m->observe_user = NULL;
    if (rc != 0) return -1;
    for (size_t i = 0; i < dim; i++)
      for (size_t j = 0; j < i; j++) d->h[i * dim + j] = d->h[j * dim + i];
    for (int k = 0; k < count; k++)
      if (quantize_linear(d, l, &lw[k], k == count - 1, err) != 0) return -1;
  }
  int rc = run_segments(d, l, err);
  /* the weights are no longer needed: the codes are kept for the writer */
  model_free_layer(m, l);
  return rc;
}

static int source_prepare(void *context, const st_tensor *t, int layer, rotq_error *err) {
  gptq_driver *d = context;
  if (layer < 0) return rotq_fail(err, "GPTQ: tensor '%s' is not in a decoder layer", t->name);
  while (d->done <= layer) {
    if (cancelled(d, err) != 0 || quantize_layer(d, d->done, err) != 0) return -1;
    d->done++;
    if (d->settings->progress) d->settings->progress(d->done, d->m->config.num_hidden_layers, d->settings->user);
  }
  if (layer != d->done - 1)
    return rotq_fail(err, "GPTQ: tensor '%s' of layer %d comes after layer %d", t->name, layer, d->done - 1);
  return 0;
}

static const gptq_weight *find_weight(const gptq_driver *d, const st_tensor *t) {
  for (int i = 0; i < d->weight_count; i++)
    if (!strcmp(d->weights[i].name, t->name)) return &d->weights[i];
  return NULL;
}

static int source_rows(void *context, const st_tensor *t, int64_t r0, int64_t n, void *weight, double *scale,
                       int32_t *zero, double *fake, rotq_error *err) {
  const gptq_driver *d = context;
  const ct_scheme *s = &d->options->scheme;
  const gptq_weight *g = find_weight(d, t);
  if (!g) return rotq_fail(err, "GPTQ: no result for tensor '%s' (not a q/k/v/o/gate/up/down projection)", t->name);
  if (t->ndim != 2 || t->shape[0] != g->rows || t->shape[1] != g->cols || r0 < 0 || r0 + n > g->rows)
    return rotq_fail(err, "GPTQ: tensor '%s': rows [%lld, %lld) do not match its [%d, %d] result", t->name,
                     (long long)r0, (long long)(r0 + n), g->rows, g->cols);
  const int64_t cols = g->cols, groups = g->groups, width = cols / groups;
  int *u = malloc(sizeof(int) * (size_t)cols);
  if (!u) return rotq_fail(err, "tensor '%s': out of memory", t->name);
  for (int64_t r = 0; r < n; r++) {
    const uint8_t *codes = g->codes + (size_t)((r0 + r) * cols);
    const double *row_scale = g->scale + (size_t)((r0 + r) * groups);
    const int *row_zero = g->zero + (size_t)((r0 + r) * groups);
    for (int64_t i = 0; i < cols; i++) u[i] = codes[i];
    ct_pack_int_row(s, u, cols, (char *)weight + ct_weight_bytes(s, r, cols));
    memcpy(scale + r * groups, row_scale, sizeof(double) * (size_t)groups);
    for (int64_t i = 0; fake && i < cols; i++)
      fake[r * cols + i] = ct_int_value(u[i], row_scale[i / width], row_zero[i / width], g->t);
  }
  free(u);
  if (!s->symmetric && ct_pack_zero_points(s, g->zero + (size_t)(r0 * groups), n, groups, zero) < 0)
    return rotq_fail(err, "tensor '%s': out of memory", t->name);
  return 0;
}

int quantize_compressed_gptq(const quantize_options *o, const gptq_settings *g, quantize_result *result,
                             rotq_error *err) {
  if (o->scheme.kind != CT_W4A16 && o->scheme.kind != CT_W8A8)
    return rotq_fail(err, "GPTQ quantizes the int schemes only (W4A16, W8A8), not %s: use RTN for it",
                     ct_scheme_name(&o->scheme));
  if (!g->calib_path) return rotq_fail(err, "GPTQ needs calibration tokens (--calib FILE)");
  if (o->source) return rotq_fail(err, "GPTQ: the options already have a weight source");
  gptq_driver d;
  int rc = driver_open(&d, o, g, err);
  if (rc == 0) {
    quantize_source source = {source_prepare, source_rows, &d};
    quantize_options with = *o;
    with.source = &source;
    rc = quantize_compressed(&with, result, err);
  }
  driver_free(&d);
  return rc;
}

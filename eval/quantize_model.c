#include "eval/quantize_model.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "eval/gptq.h"
#include "eval/linear_weights.h"
#include "linalg/quantize.h"
#include "model/transformer.h"

/* One weight by RTN, in the model's element type. */
static void rtn_weight(const model *m, const weight_quant *q, const linear_weight *w) {
  if (q->format != QUANT_INT && m->f32)
    quant_weight_rtn_format_f32(w->weight, w->out_dim, w->in_dim, (quant_format)q->format);
  else if (q->format != QUANT_INT)
    quant_weight_rtn_format_f64(w->weight, w->out_dim, w->in_dim, (quant_format)q->format);
  else if (m->f32)
    quant_weight_rtn_f32(w->weight, w->out_dim, w->in_dim, q->bits, q->group);
  else
    quant_weight_rtn_f64(w->weight, w->out_dim, w->in_dim, q->bits, q->group);
}

typedef struct rtn_visit {
  const model *m;
  const weight_quant *q;
} rtn_visit;

static void rtn_visited(const linear_weight *w, void *user) {
  const rtn_visit *v = user;
  rtn_weight(v->m, v->q, w);
}

/* The linears GPTQ does not reach (experts, MLA, Mamba, DeltaNet: other_linears_visit), by RTN. */
static void quantize_other_rtn(model *m, const weight_quant *q) {
  rtn_visit v = {m, q};
  for (int l = 0; l < m->config.num_hidden_layers; l++) other_linears_visit(m, l, rtn_visited, &v);
}

static void quantize_rtn(model *m, const weight_quant *q) {
  rtn_visit v = {m, q};
  for (int l = 0; l < m->config.num_hidden_layers; l++) decoder_linears_visit(m, l, rtn_visited, &v);
}

/* The Hessian H = Σ x·xᵀ [dim, dim] of one linear input, accumulated by the observer. */
typedef struct hessian_capture {
  int layer;
  linear_input input;
  bool f32;
  int dim;
  size_t tokens; /* rows accumulated */
  double *h;     /* [dim, dim], upper triangle accumulated */
  double *rows;  /* [ctx, dim] scratch: the input widened to double */
} hessian_capture;

static bool capture_hessian(void *user, int layer, linear_input input, const void *x, int rows, int dim) {
  hessian_capture *c = user;
  if (layer != c->layer || input != c->input) return false;
  const double *xd = x;
  if (c->f32) {
    for (size_t i = 0; i < (size_t)rows * dim; i++) c->rows[i] = ((const float *)x)[i];
    xd = c->rows;
  }
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, dim, rows, 1, xd, dim, 1, c->h, dim);
  c->tokens += (size_t)rows;
  return true; /* nothing after this input is needed */
}

/* Runs each calibration segment up to the observed input (where the observer ends the pass). */
static int run_calibration(model *m, const calibration_set *cal, double *logits, rotq_error *err) {
  for (size_t s = 0; s < cal->segment_count; s++) {
    const token_segment *seg = &cal->segments[s];
    int n = seg->length < (size_t)cal->ctx ? (int)seg->length : cal->ctx;
    if (n < 1) continue;
    if (model_forward(m, cal->tokens + seg->start, n, logits, err) != 0)
      return rotq_fail_context(err, "calibration segment %zu", s);
  }
  return 0;
}

/* GPTQ of the linears reading `input` in layer l, with that input's Hessian on the calibration
 * set. weight and hessian are scratch for the largest weight and Hessian. */
static int gptq_input(model *m, int l, linear_input input, const weight_quant *q, const calibration_set *cal,
                      hessian_capture *capture, double *logits, double *weight, double *hessian, rotq_error *err) {
  linear_weight lw[MAX_LINEARS_PER_INPUT];
  int count = linears_of(m, l, input, lw);
  if (count == 0) return 0;
  const int dim = lw[0].in_dim;
  capture->layer = l;
  capture->input = input;
  capture->dim = dim;
  capture->tokens = 0;
  memset(capture->h, 0, sizeof(double) * dim * dim);
  if (run_calibration(m, cal, logits, err) != 0) return -1;
  if (capture->tokens == 0) /* a zero Hessian would zero every weight */
    return rotq_fail(err, "GPTQ: the forward pass never reported layer %d's %s input", l, lw[0].name);
  for (int i = 0; i < dim; i++)
    for (int j = 0; j < i; j++) capture->h[(size_t)i * dim + j] = capture->h[(size_t)j * dim + i];
  const gptq_options options = {q->bits, q->group, q->act_order, q->damp > 0 ? q->damp : 0.01};
  for (int k = 0; k < count; k++) {
    size_t numel = (size_t)lw[k].out_dim * dim;
    for (size_t i = 0; i < numel; i++) weight[i] = linear_weight_at(m, &lw[k], i);
    memcpy(hessian, capture->h, sizeof(double) * dim * dim);
    if (gptq_quantize(weight, lw[k].out_dim, dim, hessian, &options, err) != 0)
      return rotq_fail_context(err, "layer %d %s", l, lw[k].name);
    for (size_t i = 0; i < numel; i++) {
      if (m->f32)
        ((float *)lw[k].weight)[i] = (float)weight[i];
      else
        ((double *)lw[k].weight)[i] = weight[i];
    }
  }
  return 0;
}

static int quantize_gptq(model *m, const weight_quant *q, const calibration_set *cal, quantize_progress progress,
                         void *user, rotq_error *err) {
  const model_config *c = &m->config;
  size_t widest = 1, largest = 1; /* the largest input width and weight over the linears */
  for (int l = 0; l < c->num_hidden_layers; l++)
    for (int input = 0; input < LINEAR_INPUT_COUNT; input++) {
      linear_weight lw[MAX_LINEARS_PER_INPUT];
      int count = linears_of(m, l, (linear_input)input, lw);
      for (int k = 0; k < count; k++) {
        widest = (size_t)lw[k].in_dim > widest ? (size_t)lw[k].in_dim : widest;
        size_t numel = (size_t)lw[k].out_dim * lw[k].in_dim;
        largest = numel > largest ? numel : largest;
      }
    }
  hessian_capture capture = {.f32 = m->f32};
  capture.h = malloc(sizeof(double) * widest * widest);
  capture.rows = malloc(sizeof(double) * (size_t)cal->ctx * widest);
  double *hessian = malloc(sizeof(double) * widest * widest);
  double *weight = malloc(sizeof(double) * largest);
  double *logits = malloc(sizeof(double) * (size_t)cal->ctx * c->vocab_size);
  int status = 0;
  if (!capture.h || !capture.rows || !hessian || !weight || !logits) {
    status = rotq_fail(err, "out of memory for GPTQ");
  } else {
    /* calibration sees full-precision activations, as in the reference */
    const activation_quant saved_quant = m->quant;
    const linear_input_observer saved_observer = m->observe;
    void *saved_user = m->observe_user;
    model_set_activation_quant(m, NULL, err);
    m->observe = capture_hessian;
    m->observe_user = &capture;
    for (int l = 0; l < c->num_hidden_layers && status == 0; l++) {
      for (int input = 0; input < LINEAR_INPUT_COUNT && status == 0; input++)
        status = gptq_input(m, l, (linear_input)input, q, cal, &capture, logits, weight, hessian, err);
      if (status == 0 && progress) progress(l + 1, c->num_hidden_layers, user);
    }
    m->quant = saved_quant;
    m->observe = saved_observer;
    m->observe_user = saved_user;
  }
  free(capture.h);
  free(capture.rows);
  free(hessian);
  free(weight);
  free(logits);
  return status;
}

/* The first visited linear whose input columns the group does not divide. */
typedef struct untiled {
  int group;
  const char *first;
  int first_in;
} untiled;

static void find_untiled(const linear_weight *w, void *user) {
  untiled *u = user;
  if (!u->first && w->in_dim % u->group != 0) u->first = w->name, u->first_in = w->in_dim;
}

int model_quantize_weights(model *m, const weight_quant *quant, const calibration_set *calibration,
                           quantize_progress progress, void *user, rotq_error *err) {
  weight_quant q = *quant;
  if (q.bits == 0) q.bits = QUANT_OFF;
  if (!quant_bits_valid(q.bits)) return rotq_fail(err, "weight bits %d: must be 2..8, or 16 for off", q.bits);
  if (q.group < 0 || q.damp < 0)
    return rotq_fail(err, "weight group %d and damping %g must not be negative", q.group, q.damp);
  if (q.format < QUANT_INT || q.format > QUANT_NVFP4) return rotq_fail(err, "weight format %d is unknown", q.format);
  if (q.format != QUANT_INT && q.method != WEIGHT_RTN)
    return rotq_fail(err, "weights in %s are quantized by RTN only (GPTQ: int)",
                     quant_format_name((quant_format)q.format));
  if (q.bits == QUANT_OFF && q.format == QUANT_INT) return 0;
  for (int l = 0; q.format == QUANT_INT && q.group > 0 && l < m->config.num_hidden_layers; l++) {
    untiled u = {q.group, NULL, 0}; /* groups must tile every row */
    decoder_linears_visit(m, l, find_untiled, &u);
    if (u.first)
      return rotq_fail(err, "weight group %d does not divide the %d input columns of layer %d's %s", q.group,
                       u.first_in, l, u.first);
  }
  if (q.method == WEIGHT_RTN) {
    quantize_rtn(m, &q);
    if (progress) progress(m->config.num_hidden_layers, m->config.num_hidden_layers, user);
    return 0;
  }
  if (!calibration || calibration->segment_count == 0 || calibration->ctx < 1)
    return rotq_fail(err, "GPTQ needs calibration tokens");
  quantize_other_rtn(m, &q); /* first: GPTQ's calibration then sees them quantized */
  return quantize_gptq(m, &q, calibration, progress, user, err);
}

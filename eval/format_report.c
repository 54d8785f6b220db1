/* rotq_report_format (include/rotq.h): for one target format, what the full-size rotation, the
 * group-sized rotation (block-diagonal, blocks no larger than the format's quantization group)
 * and the group-sized rotation with the online rotations buy — perplexity and KL from the
 * original, weights (RTN) and activations fake-quantized in that format. The caller formats the
 * table (`rotq report --format`). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "eval/calibration.h"
#include "eval/perplexity.h"
#include "eval/quantize_model.h"
#include "eval/token_file.h"
#include "linalg/quantize.h"
#include "model/model.h"
#include "rotq.h"

enum { V_ORIGINAL, V_FULL, V_BLOCK, V_ONLINE };
enum { ROW_FP, ROW_W, ROW_A, ROW_WA };
static const char *const variant_names[ROTQ_FORMAT_VARIANTS] = {"original", "R1R2", "R1R2 block", "R1R2 block+online"};

/* A target format: how weights and activations are fake-quantized, and its group. */
typedef struct target {
  const char *name, *label; /* "mxfp4", "MXFP4" */
  quant_format format;
  int bits;  /* 4 or 8 */
  int group; /* values per scale; 0 = per row */
  int block; /* default block of the group-sized rotations */
} target;

static int target_parse(const char *name, int w_group, target *t, rotq_error *err) {
  if (name && !strcmp(name, "mxfp4")) {
    *t = (target){"mxfp4", "MXFP4", QUANT_MXFP4, 4, 32, 32};
  } else if (name && !strcmp(name, "nvfp4")) {
    *t = (target){"nvfp4", "NVFP4", QUANT_NVFP4, 4, 16, 16};
  } else if (name && !strcmp(name, "fp8")) {
    *t = (target){"fp8", "FP8", QUANT_FP8, 8, 0, 128};
  } else if (name && !strcmp(name, "int4")) {
    int g = w_group > 0 ? w_group : 128;
    *t = (target){"int4", "INT4", QUANT_INT, 4, g, g};
  } else {
    return rotq_fail(err, "format '%s': not mxfp4, nvfp4, fp8 or int4", name ? name : "(null)");
  }
  return 0;
}

typedef struct experiment {
  const rotq_report_options *o;
  logger log;
  target t;
  int block;
  const int32_t *tokens;
  size_t count;
  int ctx;
  model *reference;
  const char *dirs[ROTQ_FORMAT_VARIANTS];
  rotq_format_report_result *out;
  int done, total;
} experiment;

static int cancelled(const experiment *x, rotq_error *err) {
  if (!x->o->cancel || !x->o->cancel(x->o->cancel_context)) return 0;
  return rotq_fail(err, "cancelled");
}

static void progress(const experiment *x, const char *phase, int layer, int layers) {
  if (x->o->on_progress)
    x->o->on_progress(&(rotq_progress){.phase = phase, .layer = layer, .layers = layers}, x->o->progress_context);
}

/* The activation settings of row (activations quantized in rows A and WA). */
static activation_quant row_activations(const experiment *x, int row) {
  activation_quant a = {.a_clip = x->o->a_clip > 0 ? x->o->a_clip : 0.9};
  if (row != ROW_A && row != ROW_WA) return a;
  a.aformat = (int)x->t.format;
  a.abits = x->t.bits;
  a.a_group = x->t.format == QUANT_INT ? x->t.group : 0;
  return a;
}

/* Evaluates m (weights as they are) with row's activations into cell [v][row]. */
static int evaluate(experiment *x, model *m, int v, int row, rotq_error *err) {
  if (cancelled(x, err) < 0) return -1;
  activation_quant a = row_activations(x, row);
  if (model_set_activation_quant(m, &a, err) != 0) return -1;
  const perplexity_options po = {.ctx = x->ctx, .max_segments = x->out->segments, .reference = x->reference};
  perplexity_result r;
  if (perplexity_measure(m, x->tokens, x->count, &po, &r, err) != 0)
    return rotq_fail_context(err, "%s %s", variant_names[v], x->out->row_names[row]);
  x->out->ppl[v][row] = r.ppl;
  x->out->kl[v][row] = r.kl;
  x->out->predicted = r.predicted;
  x->done++;
  log_message(&x->log, ROTQ_LOG_INFO, "[%d/%d] %-17s %-12s ppl %9.4f  KL %.4g", x->done, x->total, variant_names[v],
              x->out->row_names[row], r.ppl, r.kl);
  return 0;
}

/* The four rows of variant v: FP and activations only on the loaded model, then its weights
 * quantized by RTN, weights only and both. */
static int evaluate_variant(experiment *x, int v, rotq_error *err) {
  model *m = NULL;
  if (model_load(x->dirs[v], &(model_options){.f32 = x->o->f32}, &m, err) != 0) return -1;
  int status = evaluate(x, m, v, ROW_FP, err);
  if (status == 0 && v != V_ORIGINAL && x->out->kl[v][ROW_FP] > 1e-6)
    status = rotq_fail(err, "%s: the %s checkpoint does not compute the original's function (KL %.3g)", x->dirs[v],
                       variant_names[v], x->out->kl[v][ROW_FP]);
  if (status == 0) status = evaluate(x, m, v, ROW_A, err);
  const weight_quant wq = {.bits = x->t.bits,
                           .method = WEIGHT_RTN,
                           .group = x->t.format == QUANT_INT ? x->t.group : 0,
                           .format = (int)x->t.format};
  if (status == 0) status = model_quantize_weights(m, &wq, NULL, NULL, NULL, err);
  if (status == 0) status = evaluate(x, m, v, ROW_W, err);
  if (status == 0) status = evaluate(x, m, v, ROW_WA, err);
  model_free(m);
  return status;
}

static void rotation_log(rotq_log_level level, const char *message, void *context) {
  const experiment *x = context;
  if (level == ROTQ_LOG_NOTICE || level == ROTQ_LOG_DEBUG) log_message(&x->log, level, "%s", message);
}

static const char *const scratch_names[ROTQ_FORMAT_VARIANTS] = {"", "r1r2", "r1r2-block", "r1r2-block-online"};

/* Rotates variant v into <scratch>/<name>; a failed online rotation only marks its column. */
static int rotate_variant(experiment *x, int v, char *dir, size_t size, rotq_error *err) {
  snprintf(dir, size, "%s/%s", x->o->scratch_dir, scratch_names[v]);
  log_message(&x->log, ROTQ_LOG_INFO, "rotating (%s) into %s", variant_names[v], dir);
  progress(x, "rotate", v, ROTQ_FORMAT_VARIANTS);
  const rotq_rotate_options o = {.model_dir = x->o->model_dir,
                                 .output_dir = dir,
                                 .seed = x->o->seed,
                                 .online = v == V_ONLINE,
                                 .block_size = v == V_FULL ? -1 : x->block,
                                 .verify = ROTQ_VERIFY_OFF,
                                 .log = rotation_log,
                                 .log_context = x,
                                 .cancel = x->o->cancel,
                                 .cancel_context = x->o->cancel_context};
  if (rotq_rotate(&o, err) == 0) {
    x->dirs[v] = dir;
    x->out->available[v] = 1;
    return 0;
  }
  if (v != V_ONLINE || cancelled(x, err) < 0) return -1;
  snprintf(x->out->unavailable[v], sizeof x->out->unavailable[v], "%s", err->message);
  log_message(&x->log, ROTQ_LOG_INFO, "no %s column: %s", variant_names[v], err->message);
  return 0;
}

static void result_init(const target *t, int block, rotq_format_report_result *out) {
  memset(out, 0, sizeof *out);
  out->format = t->name;
  out->block_size = block;
  out->group = t->group;
  for (int v = 0; v < ROTQ_FORMAT_VARIANTS; v++) {
    out->variant_names[v] = variant_names[v];
    for (int r = 0; r < ROTQ_FORMAT_ROWS; r++) out->ppl[v][r] = -1;
  }
  char group[16] = "";
  if (t->format == QUANT_INT) snprintf(group, sizeof group, " g%d", t->group);
  snprintf(out->row_names[ROW_FP], sizeof out->row_names[0], "FP");
  snprintf(out->row_names[ROW_W], sizeof out->row_names[0], "W%dA16 %s%s", t->bits, t->label, group);
  snprintf(out->row_names[ROW_A], sizeof out->row_names[0], "W16A%d %s%s", t->bits, t->label, group);
  snprintf(out->row_names[ROW_WA], sizeof out->row_names[0], "W%dA%d %s%s", t->bits, t->bits, t->label, group);
}

static int check_options(const rotq_report_options *o, int block, rotq_error *err) {
  if (!o->model_dir || !o->tokens_path || !o->scratch_dir)
    return rotq_fail(err, "options: model_dir, tokens_path and scratch_dir are required");
  int ctx = o->ctx ? o->ctx : 512;
  if (ctx < 2 || ctx > 1000000 || o->w_group < 0 || o->a_clip < 0 || o->a_clip > 1)
    return rotq_fail(err, "options: ctx, w_group or a_clip out of range");
  if (block < 0 || block > (1 << 20) || (block & (block - 1)))
    return rotq_fail(err, "block_size %d: not 0 (the format's) or a power of two up to 2^20", block);
  return 0;
}

int rotq_report_format(const rotq_report_options *o, const char *format, int block_size, rotq_format_report_result *out,
                       rotq_error *err) {
  target t;
  if (target_parse(format, o->w_group, &t, err) < 0 || check_options(o, block_size, err) < 0) return -1;
  const int block = block_size ? block_size : t.block;
  result_init(&t, block, out);
  experiment *x = calloc(1, sizeof *x);
  char(*dirs)[4200] = calloc(ROTQ_FORMAT_VARIANTS, sizeof *dirs);
  if (!x || !dirs) {
    free(x);
    free(dirs);
    return rotq_fail(err, "out of memory");
  }
  int32_t *tokens = NULL;
  *x = (experiment){
      .o = o, .log = {o->log, o->log_context}, .t = t, .block = block, .ctx = o->ctx ? o->ctx : 512, .out = out};
  int status = token_file_read(o->tokens_path, &tokens, &x->count, err);
  x->tokens = tokens;
  if (status == 0)
    status =
        evaluation_segments(o->tokens_path, o->tokens_path, NULL, o->segments ? o->segments : 60, &out->segments, err);
  x->dirs[V_ORIGINAL] = o->model_dir;
  out->available[V_ORIGINAL] = 1;
  for (int v = V_FULL; v < ROTQ_FORMAT_VARIANTS && status == 0; v++)
    status = rotate_variant(x, v, dirs[v], sizeof dirs[v], err);
  if (status == 0) progress(x, "evaluate", 0, 0);
  if (status == 0) status = model_load(o->model_dir, &(model_options){.f32 = o->f32}, &x->reference, err);
  for (int v = 0; v < ROTQ_FORMAT_VARIANTS; v++) x->total += x->dirs[v] ? ROTQ_FORMAT_ROWS : 0;
  for (int v = 0; v < ROTQ_FORMAT_VARIANTS && status == 0; v++)
    if (x->dirs[v]) status = evaluate_variant(x, v, err);
  model_free(x->reference);
  free(tokens);
  free(dirs);
  free(x);
  return status;
}

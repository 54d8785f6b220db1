/* rotq_report (include/rotq.h): what rotation buys, measured — the fake-quantized perplexity and
 * KL divergence of a model, of its R1R2 rotation and of its R1R2+online rotation, for FP, W8A8,
 * W4A16, W4A8, W4A4 and W4A4KV4 with RTN and GPTQ weights, and the float formats with RTN. The
 * numbers come back in a rotq_report_result; the caller formats them (`rotq report`). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "common/log.h"
#include "eval/calibration.h"
#include "eval/perplexity.h"
#include "eval/quantize_model.h"
#include "eval/token_file.h"
#include "linalg/quantize.h"
#include "model/model.h"

/* One row of the table: a quantization setting; format rows quantize weights and activations to
 * a float format (linalg/quantize.h), weights by RTN. */
typedef struct quant_config {
  const char *name;
  int wbits, abits, kvbits;
  quant_format format;
} quant_config;

static const quant_config configs[ROTQ_REPORT_ROWS] = {
    {"FP", 16, 16, 16, QUANT_INT},     {"W8A8", 8, 8, 16, QUANT_INT},         {"W4A16", 4, 16, 16, QUANT_INT},
    {"W4A8", 4, 8, 16, QUANT_INT},     {"W4A4", 4, 4, 16, QUANT_INT},         {"W4A4KV4", 4, 4, 4, QUANT_INT},
    {"W8A8 FP8", 8, 8, 16, QUANT_FP8}, {"W4A4 MXFP4", 4, 4, 16, QUANT_MXFP4}, {"W4A4 NVFP4", 4, 4, 16, QUANT_NVFP4},
};

enum { VARIANT_ORIGINAL, VARIANT_R1R2, VARIANT_ONLINE };
static const char *const variant_names[ROTQ_REPORT_VARIANTS] = {"original", "R1R2", "R1R2+online"};

typedef struct report {
  const rotq_report_options *o;
  logger log;
  const int32_t *tokens;
  size_t count;
  int ctx;
  activation_quant act; /* clips; bits set per config */
  weight_quant weight;  /* group, act_order, damp; bits and method per cell */
  bool method_used[2];  /* RTN, GPTQ */
  calibration_data *calibration;
  const char *dirs[ROTQ_REPORT_VARIANTS]; /* NULL when unavailable */
  model *reference;
  rotq_report_result *result;
  int done, total;
  double start;
} report;

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char *method_name(int method) { return method == WEIGHT_GPTQ ? "GPTQ" : "RTN"; }

static int check_cancel(const report *r, rotq_error *err) {
  if (!r->o->cancel || !r->o->cancel(r->o->cancel_context)) return 0;
  return rotq_fail(err, "cancelled");
}

static void progress(const report *r, const char *phase, int layer, int layers) {
  if (r->o->on_progress)
    r->o->on_progress(&(rotq_progress){.phase = phase, .layer = layer, .layers = layers}, r->o->progress_context);
}

static void gptq_progress(int done, int layers, void *user) { progress(user, "gptq", done, layers); }

/* Evaluates the loaded model m with config's activation bits into the result's cell [v][c][method]. */
static int evaluate(report *r, model *m, int v, int c, int method, rotq_error *err) {
  if (check_cancel(r, err) < 0) return -1;
  activation_quant act = r->act;
  act.abits = configs[c].abits;
  act.kvbits = configs[c].kvbits;
  act.aformat = (int)configs[c].format;
  if (model_set_activation_quant(m, &act, err) != 0) return -1;
  const perplexity_options o = {.ctx = r->ctx, .max_segments = r->result->segments, .reference = r->reference};
  perplexity_result result;
  double t0 = now_seconds();
  if (perplexity_measure(m, r->tokens, r->count, &o, &result, err) != 0)
    return rotq_fail_context(err, "%s %s", variant_names[v], configs[c].name);
  r->result->ppl[v][c][method] = result.ppl;
  r->result->kl[v][c][method] = result.kl;
  r->result->predicted = result.predicted;
  r->done++;
  log_message(&r->log, ROTQ_LOG_INFO, "[%d/%d] %-11s %-7s %-4s ppl %9.4f  KL %.4g  (%.1fs, %.0fs in all)", r->done,
              r->total, variant_names[v], configs[c].name, c == 0 ? "" : method_name(method), result.ppl, result.kl,
              now_seconds() - t0, now_seconds() - r->start);
  return 0;
}

/* Rows c and k quantize their weights alike (bits and format). */
static bool same_weights(int c, int k) {
  return configs[c].wbits == configs[k].wbits && configs[c].format == configs[k].format;
}

/* Every cell of variant v: FP, then per method and weight setting (bits and format) a model
 * quantized once and evaluated with each activation setting of those weights. */
static int evaluate_variant(report *r, int v, rotq_error *err) {
  model_options options = {.f32 = r->o->f32};
  model *m = NULL;
  if (model_load(r->dirs[v], &options, &m, err) != 0) return -1;
  int status = evaluate(r, m, v, 0, WEIGHT_RTN, err);
  model_free(m);
  if (status == 0 && v != VARIANT_ORIGINAL && r->result->kl[v][0][0] > 1e-6)
    status = rotq_fail(err,
                       "%s: the %s checkpoint does not compute the original's function "
                       "(KL %.3g); a quantized comparison would be meaningless",
                       r->dirs[v], variant_names[v], r->result->kl[v][0][0]);
  for (int method = 0; method < 2 && status == 0; method++) {
    if (!r->method_used[method]) continue;
    for (int c = 1; c < ROTQ_REPORT_ROWS && status == 0; c++) {
      /* rows whose weights are alike share one quantized model, made at the first of them */
      bool first = configs[c].format == QUANT_INT || method == WEIGHT_RTN; /* float formats: RTN only */
      for (int p = 1; first && p < c; p++) first = !same_weights(p, c);
      if (!first) continue;
      weight_quant wq = r->weight;
      wq.bits = configs[c].wbits;
      wq.format = (int)configs[c].format;
      wq.method = (weight_method)method;
      status = check_cancel(r, err);
      if (status == 0) status = model_load(r->dirs[v], &options, &m, err);
      if (status == 0) {
        if (method == WEIGHT_GPTQ) log_message(&r->log, ROTQ_LOG_INFO, "GPTQ W%d of %s", wq.bits, variant_names[v]);
        status = model_quantize_weights(m, &wq, method == WEIGHT_GPTQ ? &r->calibration->set : NULL,
                                        method == WEIGHT_GPTQ && r->o->on_progress ? gptq_progress : NULL, r, err);
      }
      for (int k = c; k < ROTQ_REPORT_ROWS && status == 0; k++)
        if (same_weights(k, c)) status = evaluate(r, m, v, k, method, err);
      model_free(m);
      m = NULL;
    }
  }
  return status;
}

/* What the rotations tell the report's caller: where the file system changed (NOTICE) and the
 * timings (DEBUG); their reports and warnings are rotate's, not the experiment's. */
static void rotation_log(rotq_log_level level, const char *message, void *context) {
  const report *r = context;
  if (level == ROTQ_LOG_NOTICE || level == ROTQ_LOG_DEBUG) log_message(&r->log, level, "%s", message);
}

/* Rotates the model into <scratch>/<name>; on failure of the online rotation, records why. */
static int rotate_variant(report *r, int v, char *dir, size_t size, rotq_error *err) {
  snprintf(dir, size, "%s/%s", r->o->scratch_dir, v == VARIANT_ONLINE ? "r1r2-online" : "r1r2");
  log_message(&r->log, ROTQ_LOG_INFO, "rotating (%s) into %s", variant_names[v], dir);
  progress(r, "rotate", v, ROTQ_REPORT_VARIANTS);
  rotq_rotate_options o = {.model_dir = r->o->model_dir,
                           .output_dir = dir,
                           .seed = r->o->seed,
                           .online = v == VARIANT_ONLINE,
                           .verify = ROTQ_VERIFY_OFF,
                           .quiet = 1,
                           .log = rotation_log,
                           .log_context = r,
                           .cancel = r->o->cancel,
                           .cancel_context = r->o->cancel_context};
  if (rotq_rotate(&o, err) == 0) {
    r->dirs[v] = dir;
    r->result->available[v] = 1;
    return 0;
  }
  if (v != VARIANT_ONLINE || check_cancel(r, err) < 0) return -1;
  snprintf(r->result->unavailable[v], sizeof r->result->unavailable[v], "%s", err->message);
  log_message(&r->log, ROTQ_LOG_INFO, "no %s column: %s", variant_names[v], err->message);
  return 0;
}

static void result_init(rotq_report_result *out) {
  memset(out, 0, sizeof *out);
  for (int v = 0; v < ROTQ_REPORT_VARIANTS; v++) {
    out->variant_names[v] = variant_names[v];
    for (int c = 0; c < ROTQ_REPORT_ROWS; c++) out->ppl[v][c][0] = out->ppl[v][c][1] = -1;
  }
  for (int c = 0; c < ROTQ_REPORT_ROWS; c++)
    out->rows[c] = (rotq_report_row){configs[c].name, configs[c].wbits, configs[c].abits, configs[c].kvbits,
                                     quant_format_name(configs[c].format)};
}

static int check_options(const rotq_report_options *o, rotq_error *err) {
  if (!o->model_dir || !o->tokens_path || !o->scratch_dir)
    return rotq_fail(err, "options: model_dir, tokens_path and scratch_dir are required");
  if (!o->rtn && !o->gptq) return rotq_fail(err, "options: measure RTN or GPTQ weights (or both)");
  int ctx = o->ctx ? o->ctx : 512;
  if (ctx < 2 || ctx > 1000000 || o->w_group < 0 || o->damp < 0 || o->a_clip < 0 || o->a_clip > 1 || o->kv_clip < 0 ||
      o->kv_clip > 1)
    return rotq_fail(err, "options: ctx, w_group, damp, a_clip or kv_clip out of range");
  return 0;
}

int rotq_report(const rotq_report_options *o, rotq_report_result *out, rotq_error *err) {
  if (check_options(o, err) < 0) return -1;
  result_init(out);
  const char *calib_path = o->calib_path ? o->calib_path : o->tokens_path;
  const size_t calib_n = o->calib_segments ? o->calib_segments : 128;
  report *r = calloc(1, sizeof *r);
  if (!r) return rotq_fail(err, "out of memory");
  int32_t *tokens = NULL;
  calibration_data calibration = {0};
  char dirs[ROTQ_REPORT_VARIANTS][4200];
  *r = (report){.o = o,
                .log = {o->log, o->log_context},
                .ctx = o->ctx ? o->ctx : 512,
                .act = {.a_clip = o->a_clip > 0 ? o->a_clip : 0.9, .kv_clip = o->kv_clip > 0 ? o->kv_clip : 0.95},
                .weight = {.group = o->w_group, .act_order = o->act_order != 0, .damp = o->damp > 0 ? o->damp : 0.01},
                .method_used = {o->rtn != 0, o->gptq != 0},
                .calibration = &calibration,
                .result = out,
                .start = now_seconds()};
  int status = token_file_read(o->tokens_path, &tokens, &r->count, err);
  r->tokens = tokens;
  if (status == 0 && o->gptq) status = calibration_load(calib_path, calib_n, r->ctx, &calibration, err);
  if (status == 0)
    status = evaluation_segments(o->tokens_path, calib_path, o->gptq ? &calibration : NULL,
                                 o->segments ? o->segments : 60, &out->segments, err);
  r->dirs[VARIANT_ORIGINAL] = o->model_dir;
  out->available[VARIANT_ORIGINAL] = 1;
  for (int v = VARIANT_R1R2; v < ROTQ_REPORT_VARIANTS && status == 0; v++)
    status = rotate_variant(r, v, dirs[v], sizeof dirs[v], err);
  if (status == 0) progress(r, "evaluate", 0, 0);
  if (status == 0) status = model_load(o->model_dir, &(model_options){.f32 = o->f32}, &r->reference, err);
  if (status == 0) {
    int variants = 0;
    for (int v = 0; v < ROTQ_REPORT_VARIANTS; v++) variants += r->dirs[v] != NULL;
    int float_rows = 0;
    for (int c = 0; c < ROTQ_REPORT_ROWS; c++) float_rows += configs[c].format != QUANT_INT;
    const int rtn = o->rtn != 0, gptq = o->gptq != 0;
    r->total = variants * (1 + (rtn + gptq) * (ROTQ_REPORT_ROWS - 1 - float_rows) + rtn * float_rows);
  }
  for (int v = 0; v < ROTQ_REPORT_VARIANTS && status == 0; v++)
    if (r->dirs[v]) status = evaluate_variant(r, v, err);
  if (status == 0 && o->gptq) {
    out->calib_first = calibration.first;
    out->calib_segments = calibration.set.segment_count;
  }
  model_free(r->reference);
  calibration_free(&calibration);
  free(tokens);
  free(r);
  return status;
}

/* rotq_eval and rotq_compare (include/rotq.h): `rotq eval` and `rotq compare` as library calls. */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "eval/calibration.h"
#include "eval/logit_compare.h"
#include "eval/perplexity.h"
#include "eval/quantize_model.h"
#include "eval/token_file.h"
#include "linalg/quantize.h"
#include "model/model.h"

/* The progress callbacks of the evaluation, forwarded as rotq_progress. */
typedef struct progress_forward {
  void (*fn)(const rotq_progress *progress, void *context);
  void *context;
} progress_forward;

static void forward_segments(size_t done, size_t total, void *user) {
  const progress_forward *f = user;
  f->fn(&(rotq_progress){.phase = "segments", .layer = (int)done, .layers = (int)total}, f->context);
}

static void forward_gptq(int done, int layers, void *user) {
  const progress_forward *f = user;
  f->fn(&(rotq_progress){.phase = "gptq", .layer = done, .layers = layers}, f->context);
}

static int parse_format(const char *name, const char *what, quant_format *f, rotq_error *err) {
  if (quant_format_parse(name ? name : "int", f) < 0)
    return rotq_fail(err, "options: %s '%s': expected int, fp8, mxfp4 or nvfp4", what, name);
  return 0;
}

/* The model's options and weight quantization of q, checked as `rotq eval` checks them. */
static int eval_settings(const rotq_eval_options *o, model_options *mo, weight_quant *wq, rotq_error *err) {
  const rotq_quant_options *q = &o->quant;
  quant_format wformat, aformat;
  if (parse_format(q->wformat, "wformat", &wformat, err) < 0 || parse_format(q->aformat, "aformat", &aformat, err) < 0)
    return -1;
  const char *method = q->w_method ? q->w_method : "rtn";
  bool gptq = strcmp(method, "gptq") == 0;
  if (!gptq && strcmp(method, "rtn") != 0)
    return rotq_fail(err, "options: w_method takes rtn or gptq, not '%s'", method);
  if (gptq && wformat != QUANT_INT)
    return rotq_fail(err, "options: GPTQ quantizes to int only (wformat %s takes rtn)", q->wformat);
  const int bits[3] = {q->wbits ? q->wbits : QUANT_OFF, q->abits ? q->abits : QUANT_OFF,
                       q->kvbits ? q->kvbits : QUANT_OFF};
  const char *const names[3] = {"wbits", "abits", "kvbits"};
  for (int i = 0; i < 3; i++)
    if (!quant_bits_valid(bits[i]))
      return rotq_fail(err, "options: %s takes 2 to 8 bits, or 16 for no quantization, not %d", names[i], bits[i]);
  if (q->w_group < 0 || q->w_group > 1000000 || q->kv_group < 0 || q->kv_group > 1000000)
    return rotq_fail(err, "options: w_group and kv_group must be between 0 and 1000000");
  *mo = (model_options){.f32 = o->f32,
                        .quant = {.abits = bits[1],
                                  .a_clip = q->a_clip > 0 ? q->a_clip : 0.9,
                                  .kvbits = bits[2],
                                  .kv_clip = q->kv_clip > 0 ? q->kv_clip : 0.95,
                                  .kv_group = q->kv_group,
                                  .aformat = (int)aformat}};
  *wq = (weight_quant){.bits = bits[0],
                       .method = gptq ? WEIGHT_GPTQ : WEIGHT_RTN,
                       .group = q->w_group,
                       .act_order = q->act_order != 0,
                       .damp = q->damp > 0 ? q->damp : 0.01,
                       .format = (int)wformat};
  return 0;
}

int rotq_eval(const rotq_eval_options *o, rotq_eval_result *result, rotq_error *err) {
  if (!o->model_dir || !o->tokens_path) return rotq_fail(err, "options: model_dir and tokens_path are required");
  const int ctx = o->ctx ? o->ctx : 512;
  if (ctx < 2 || ctx > 1000000) return rotq_fail(err, "options: ctx must be between 2 and 1000000, not %d", ctx);
  model_options mo;
  weight_quant wq;
  if (eval_settings(o, &mo, &wq, err) < 0) return -1;
  const bool calibrate = wq.method == WEIGHT_GPTQ && wq.bits != QUANT_OFF;
  const char *calib_path = o->quant.calib_path ? o->quant.calib_path : o->tokens_path;
  const size_t calib_n = o->quant.calib_segments ? o->quant.calib_segments : 128;
  progress_forward forward = {o->on_progress, o->progress_context};

  int32_t *tokens = NULL;
  size_t count = 0, segments = 0;
  model *m = NULL, *reference = NULL;
  calibration_data calibration = {0};
  perplexity_result r;
  int status = token_file_read(o->tokens_path, &tokens, &count, err) != 0 ||
                       (calibrate && calibration_load(calib_path, calib_n, ctx, &calibration, err) != 0) ||
                       evaluation_segments(o->tokens_path, calib_path, calibrate ? &calibration : NULL, o->segments,
                                           &segments, err) != 0 ||
                       model_load(o->model_dir, &mo, &m, err) != 0 ||
                       (o->reference_dir &&
                        model_load(o->reference_dir, &(model_options){.f32 = o->f32}, &reference, err) != 0) ||
                       model_quantize_weights(m, &wq, calibrate ? &calibration.set : NULL,
                                              calibrate && o->on_progress ? forward_gptq : NULL, &forward, err) != 0
                   ? -1
                   : 0;
  if (status == 0) {
    const perplexity_options eval = {.ctx = ctx,
                                     .max_segments = segments,
                                     .reference = reference,
                                     .progress = o->on_progress ? forward_segments : NULL,
                                     .user = &forward};
    status = perplexity_measure(m, tokens, count, &eval, &r, err) != 0 ? -1 : 0;
  }
  if (status == 0)
    *result =
        (rotq_eval_result){.nll = r.nll, .ppl = r.ppl, .kl = r.kl, .predicted = r.predicted, .segments = r.segments};
  model_free(m);
  model_free(reference);
  calibration_free(&calibration);
  free(tokens);
  return status;
}

/* The tokens to run: from the file, or the fixed sequence. */
static int compare_tokens(const char *path, int n, int vocab, int32_t **tokens, int *count, rotq_error *err) {
  if (!path) {
    *tokens = malloc(sizeof **tokens * (size_t)n);
    if (!*tokens) return rotq_fail(err, "out of memory for %d tokens", n);
    for (int i = 0; i < n; i++) (*tokens)[i] = i == 0 ? TOKEN_BOS : (int32_t)(((long)i * 7919 + 13) % vocab);
    *count = n;
    return 0;
  }
  size_t file_count = 0;
  if (token_file_read(path, tokens, &file_count, err) != 0) return -1;
  *count = file_count < (size_t)n ? (int)file_count : n;
  return 0;
}

/* The tolerance of the coarser of the two checkpoints' dtypes. */
static int dtype_tolerance(const char *a, const char *b, double *tolerance, rotq_error *err) {
  const char *dirs[2] = {a, b};
  *tolerance = -1;
  for (int side = 0; side < 2; side++) {
    checkpoint ck;
    if (checkpoint_open(dirs[side], &ck, err) != 0) return -1;
    double t = checkpoint_logit_tolerance(&ck);
    checkpoint_close(&ck);
    if (t > *tolerance) *tolerance = t;
  }
  return 0;
}

int rotq_compare(const rotq_compare_options *o, rotq_compare_result *result, rotq_error *err) {
  if (!o->a_dir || !o->b_dir) return rotq_fail(err, "options: a_dir and b_dir are required");
  const int n = o->n ? o->n : 64;
  if (n < 1 || n > 1000000) return rotq_fail(err, "options: n must be between 1 and 1000000, not %d", n);
  model *a = NULL, *b = NULL;
  int32_t *tokens = NULL;
  double *logits_a = NULL, *logits_b = NULL, tolerance = o->tolerance;
  int count = 0, status = -1;
  if (model_load(o->a_dir, NULL, &a, err) != 0 || model_load(o->b_dir, NULL, &b, err) != 0) goto done;
  if (tolerance < 0 && dtype_tolerance(o->a_dir, o->b_dir, &tolerance, err) != 0) goto done;
  const int vocab = model_get_config(a)->vocab_size;
  if (model_get_config(b)->vocab_size != vocab) {
    rotq_fail(err, "%s: vocab_size %d differs from %s's %d", o->b_dir, model_get_config(b)->vocab_size, o->a_dir,
              vocab);
    goto done;
  }
  if (compare_tokens(o->tokens_path, n, vocab, &tokens, &count, err) != 0) goto done;
  logits_a = malloc(sizeof(double) * (size_t)count * vocab); /* [count, vocab] */
  logits_b = malloc(sizeof(double) * (size_t)count * vocab); /* [count, vocab] */
  if (!logits_a || !logits_b) {
    rotq_fail(err, "out of memory for the logits of %d tokens", count);
    goto done;
  }
  if (model_forward(a, tokens, count, logits_a, err) != 0) {
    rotq_fail_context(err, "%s", o->a_dir);
    goto done;
  }
  if (model_forward(b, tokens, count, logits_b, err) != 0) {
    rotq_fail_context(err, "%s", o->b_dir);
    goto done;
  }
  logit_diff d;
  logit_diff_compute(logits_a, logits_b, count, vocab, &d);
  *result = (rotq_compare_result){.tokens = count,
                                  .max_abs_diff = d.max_abs_diff,
                                  .max_abs_logit = d.max_abs_logit,
                                  .relative = d.relative,
                                  .tolerance = tolerance,
                                  .argmax_agree = d.argmax_agree,
                                  .within_tolerance = !(d.relative > tolerance)};
  status = 0;
done:
  free(logits_a);
  free(logits_b);
  free(tokens);
  model_free(a);
  model_free(b);
  return status;
}

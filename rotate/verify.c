#include "rotate/verify.h"

#include <stdio.h>
#include <stdlib.h>

#include "eval/logit_compare.h"
#include "model/model.h"
#include "model/rope.h"
#include "rotq.h"

#define VERIFY_TOKENS 16

bool verify_wanted(int mode, const checkpoint *ck) {
  if (mode != ROTQ_VERIFY_AUTO) return mode == ROTQ_VERIFY_ALL;
  long params = 0;
  for (size_t i = 0; i < ck->tensor_count; i++) params += (long)st_numel(ck->tensors[i]);
  return params <= VERIFY_AUTO_MAX_PARAMETERS;
}

double verify_tolerance(dtype t) { return logit_tolerance(t); }

double verify_checkpoint_tolerance(const checkpoint *ck) { return checkpoint_logit_tolerance(ck); }

int verify_equivalence(const char *original_dir, const char *rotated_dir, const struct cJSON *online, const logger *log,
                       char *why, size_t why_cap, rotq_error *err) {
  checkpoint ck;
  if (checkpoint_open(original_dir, &ck, err) < 0) return -1;
  double tol = checkpoint_logit_tolerance(&ck);
  bool rope_ok = rope_type_supported(&ck.config);
  if (!rope_ok)
    snprintf(why, why_cap, "%s/config.json: rope_scaling type '%s' is not modelled by the reference forward pass",
             original_dir, ck.config.rope.type);
  checkpoint_close(&ck);
  if (!rope_ok) return 1;
  /* The output may be written in a coarser dtype than the original's (rotq rotate --dtype, a
   * dequantized FP8 source written as bf16): its rounding is the drift to allow. */
  if (checkpoint_open(rotated_dir, &ck, err) < 0) return -1;
  double written = checkpoint_logit_tolerance(&ck);
  checkpoint_close(&ck);
  if (written > tol) tol = written;
  model *a = NULL, *b = NULL;
  if (model_load(original_dir, NULL, &a, err) < 0) return rotq_fail_context(err, "verify");
  model_options rotated = {.online_section = online};
  if (model_load(rotated_dir, &rotated, &b, err) < 0) {
    model_free(a);
    return rotq_fail_context(err, "verify");
  }
  int vocab = model_get_config(a)->vocab_size;
  int32_t tokens[VERIFY_TOKENS];
  for (int i = 0; i < VERIFY_TOKENS; i++) tokens[i] = i == 0 ? 1 % vocab : (int32_t)((i * 7919L + 13) % vocab);
  double *la = malloc(sizeof(double) * VERIFY_TOKENS * (size_t)vocab);
  double *lb = malloc(sizeof(double) * VERIFY_TOKENS * (size_t)vocab);
  int rc = (!la || !lb) ? rotq_fail(err, "verify: out of memory") : 0;
  if (rc == 0) rc = model_forward(a, tokens, VERIFY_TOKENS, la, err);
  if (rc == 0) rc = model_forward(b, tokens, VERIFY_TOKENS, lb, err);
  if (rc == 0) {
    logit_diff d;
    logit_diff_compute(la, lb, VERIFY_TOKENS, vocab, &d);
    log_message(log, ROTQ_LOG_INFO, "verify: max |Δlogit| %.3g, relative %.3g (tolerance %.0e), argmax %d/%d",
                d.max_abs_diff, d.relative, tol, d.argmax_agree, d.rows);
    /* NaN compares false: a NaN logit fails here too */
    if (!(d.relative <= tol) || (tol < 1e-3 && d.argmax_agree != d.rows))
      rc = rotq_fail(err,
                     "verify: the rotated model's logits differ from the original's: relative %.3g > "
                     "tolerance %.0e (argmax agreement %d/%d)",
                     d.relative, tol, d.argmax_agree, d.rows);
  }
  free(la);
  free(lb);
  model_free(a);
  model_free(b);
  return rc;
}

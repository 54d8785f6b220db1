#include "rotate/verify.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "model/model.h"

#define VERIFY_TOKENS 16

bool verify_wanted(int mode, const checkpoint *ck) {
  if (mode >= 0) return mode == 1;
  long params = 0;
  for (size_t i = 0; i < ck->tensor_count; i++) params += (long)st_numel(ck->tensors[i]);
  return params <= VERIFY_AUTO_MAX_PARAMETERS;
}

double verify_tolerance(dtype t) {
  switch (t) {
  case DTYPE_F64: return 1e-9;
  case DTYPE_F32: return 1e-5;
  default: return 5e-2; /* 16-bit weights are re-rounded after rotation: a drift, not a bug */
  }
}

/* The dtype of most of the checkpoint's parameters. */
static dtype main_dtype(const checkpoint *ck) {
  size_t count[4] = {0};
  for (size_t i = 0; i < ck->tensor_count; i++) count[ck->tensors[i]->dtype] += st_numel(ck->tensors[i]);
  int best = 0;
  for (int t = 1; t < 4; t++)
    if (count[t] > count[best]) best = t;
  return (dtype)best;
}

int verify_equivalence(const char *original_dir, const char *rotated_dir, bool report, rotq_error *err) {
  checkpoint ck;
  if (checkpoint_open(original_dir, &ck, err) < 0) return -1;
  double tol = verify_tolerance(main_dtype(&ck));
  checkpoint_close(&ck);
  model *a = NULL, *b = NULL;
  if (model_load(original_dir, NULL, &a, err) < 0) return rotq_fail_context(err, "verify");
  if (model_load(rotated_dir, NULL, &b, err) < 0) {
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
    double max_diff = 0, max_abs = 0;
    int argmax_agree = 0;
    for (int t = 0; t < VERIFY_TOKENS; t++) {
      int ia = 0, ib = 0;
      for (int v = 0; v < vocab; v++) {
        size_t k = (size_t)t * vocab + v;
        max_diff = fmax(max_diff, fabs(la[k] - lb[k]));
        max_abs = fmax(max_abs, fabs(la[k]));
        if (la[k] > la[(size_t)t * vocab + ia]) ia = v;
        if (lb[k] > lb[(size_t)t * vocab + ib]) ib = v;
      }
      argmax_agree += ia == ib;
    }
    double rel = max_diff / (max_abs > 0 ? max_abs : 1);
    if (report)
      fprintf(stderr, "rotq rotate: verify: max |Δlogit| %.3g, relative %.3g (tolerance %.0e), argmax %d/%d\n",
              max_diff, rel, tol, argmax_agree, VERIFY_TOKENS);
    if (!(rel <= tol) || (tol < 1e-3 && argmax_agree != VERIFY_TOKENS))
      rc = rotq_fail(err,
                     "verify: the rotated model's logits differ from the original's: relative %.3g > "
                     "tolerance %.0e (argmax agreement %d/%d)",
                     rel, tol, argmax_agree, VERIFY_TOKENS);
  }
  free(la);
  free(lb);
  model_free(a);
  model_free(b);
  return rc;
}

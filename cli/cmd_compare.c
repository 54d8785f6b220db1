/* rotq compare: do two checkpoints compute the same logits? */
#include <stdio.h>
#include <stdlib.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "eval/logit_compare.h"
#include "model/model.h"
#include "eval/token_file.h"
#include "rotate/verify.h"

static const char *help =
    "usage: rotq compare --a DIR --b DIR [--tokens FILE.u16] [--n 64] [--tolerance X]\n\n"
    "Runs both checkpoints (float64 reference forward pass) on the same tokens — the first n of\n"
    "FILE (fewer if it is shorter), or without --tokens a fixed sequence: BOS then ids spread over\n"
    "the vocabulary — and prints max |dlogit|, the relative difference max |dlogit| / max |logit|\n"
    "(logits of a), and the share of positions whose argmax agrees. Exit status 1 when the\n"
    "relative difference exceeds the tolerance.\n\n"
    "  --a DIR, --b DIR   the checkpoints (same vocabulary)\n"
    "  --tokens FILE      token file (uint16 little-endian)\n"
    "  --n N              number of tokens (default 64)\n"
    "  --tolerance X      largest relative difference accepted (default: from the checkpoints' dtype,\n"
    "                     the coarser of the two: F64 1e-9, F32 1e-5, F16/BF16 5e-2, as rotate's check)\n";

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

int cmd_compare(int argc, char **argv) {
  const char *dir_a = NULL, *dir_b = NULL, *tokens_path = NULL;
  long n = 64;
  double tolerance = -1; /* -1: from the dtypes */
  const arg_spec specs[] = {{"a", ARG_STRING, &dir_a},
                            {"b", ARG_STRING, &dir_b},
                            {"tokens", ARG_STRING, &tokens_path},
                            {"n", ARG_INT, &n},
                            {"tolerance", ARG_DOUBLE, &tolerance}};
  int parsed = args_parse("compare", argc, argv, specs, 5);
  if (parsed == 1) {
    fputs(help, stdout);
    return 0;
  }
  if (parsed < 0) return 2;
  if (!dir_a || !dir_b) {
    fprintf(stderr, "rotq compare: --a DIR and --b DIR are required (see rotq compare --help)\n");
    return 2;
  }
  if (n < 1 || n > 1000000 || !(tolerance >= 0 || tolerance == -1)) {
    fprintf(stderr, "rotq compare: --n must be between 1 and 1000000 and --tolerance not negative\n");
    return 2;
  }
  model *a = NULL, *b = NULL;
  int32_t *tokens = NULL;
  double *logits_a = NULL, *logits_b = NULL;
  int count = 0, status = 1;
  rotq_error err;
  if (model_load(dir_a, NULL, &a, &err) != 0 || model_load(dir_b, NULL, &b, &err) != 0) goto done;
  if (tolerance < 0) { /* the tolerance of the coarser of the two dtypes */
    const char *dirs[2] = {dir_a, dir_b};
    for (int side = 0; side < 2; side++) {
      checkpoint ck;
      if (checkpoint_open(dirs[side], &ck, &err) != 0) goto done;
      double t = verify_checkpoint_tolerance(&ck);
      checkpoint_close(&ck);
      if (t > tolerance) tolerance = t;
    }
  }
  const int vocab = model_get_config(a)->vocab_size;
  if (model_get_config(b)->vocab_size != vocab) {
    rotq_fail(&err, "%s: vocab_size %d differs from %s's %d", dir_b, model_get_config(b)->vocab_size, dir_a, vocab);
    goto done;
  }
  if (compare_tokens(tokens_path, (int)n, vocab, &tokens, &count, &err) != 0) goto done;
  logits_a = malloc(sizeof(double) * (size_t)count * vocab); /* [count, vocab] */
  logits_b = malloc(sizeof(double) * (size_t)count * vocab); /* [count, vocab] */
  if (!logits_a || !logits_b) {
    rotq_fail(&err, "out of memory for the logits of %d tokens", count);
    goto done;
  }
  if (model_forward(a, tokens, count, logits_a, &err) != 0) {
    rotq_fail_context(&err, "%s", dir_a);
    goto done;
  }
  if (model_forward(b, tokens, count, logits_b, &err) != 0) {
    rotq_fail_context(&err, "%s", dir_b);
    goto done;
  }
  logit_diff d;
  logit_diff_compute(logits_a, logits_b, count, vocab, &d);
  printf("tokens            %d\n", count);
  printf("max |dlogit|      %.3e\n", d.max_abs_diff);
  printf("relative          %.3e (max |logit| %.4g, tolerance %.1e)\n", d.relative, d.max_abs_logit, tolerance);
  printf("argmax agreement  %.2f%% (%d/%d)\n", 100.0 * d.argmax_agree / d.rows, d.argmax_agree, d.rows);
  if (d.relative > tolerance) {
    rotq_fail(&err, "relative difference %.3e exceeds the tolerance %.1e", d.relative, tolerance);
    goto done;
  }
  status = 0;
done:
  if (status != 0) fprintf(stderr, "rotq compare: %s\n", err.message);
  free(logits_a);
  free(logits_b);
  free(tokens);
  model_free(a);
  model_free(b);
  return status;
}

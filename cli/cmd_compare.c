/* rotq compare: do two checkpoints compute the same logits? */
#include <stdio.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "rotq.h"

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
  const rotq_compare_options o = {
      .a_dir = dir_a, .b_dir = dir_b, .tokens_path = tokens_path, .n = (int)n, .tolerance = tolerance};
  rotq_compare_result d;
  rotq_error err;
  if (rotq_compare(&o, &d, &err) != 0) {
    fprintf(stderr, "rotq compare: %s\n", err.message);
    return 1;
  }
  printf("tokens            %d\n", d.tokens);
  printf("max |dlogit|      %.3e\n", d.max_abs_diff);
  printf("relative          %.3e (max |logit| %.4g, tolerance %.1e)\n", d.relative, d.max_abs_logit, d.tolerance);
  printf("argmax agreement  %.2f%% (%d/%d)\n", 100.0 * d.argmax_agree / d.tokens, d.argmax_agree, d.tokens);
  if (!d.within_tolerance) {
    fprintf(stderr, "rotq compare: relative difference %.3e exceeds the tolerance %.1e\n", d.relative, d.tolerance);
    return 1;
  }
  return 0;
}

/* rotq eval: perplexity on a token file. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "model/perplexity.h"
#include "model/token_file.h"

static const char *help =
    "usage: rotq eval --model DIR --tokens FILE.u16 [--ctx 512] [--segments N] [--f32]\n\n"
    "Perplexity with the reference forward pass. FILE holds little-endian uint16 token ids; each\n"
    "segment starting at a BOS (1) is evaluated on its own, only its first ctx tokens, and the\n"
    "mean negative log-likelihood is taken over every predicted token. Prints\n"
    "\"nll X ppl Y tokens Z segments S\" (Z = predicted tokens). Progress goes to stderr when it\n"
    "is a terminal.\n\n"
    "  --model DIR      checkpoint directory\n"
    "  --tokens FILE    token file (uint16 little-endian)\n"
    "  --ctx N          tokens per segment (default 512)\n"
    "  --segments N     evaluate the first N segments (default 0 = all)\n"
    "  --f32            compute in float32 (default float64)\n";

static void show_progress(size_t done, size_t total, void *user) {
  fprintf(stderr, "\rrotq eval: segment %zu/%zu", done, total);
  if (done == total) fprintf(stderr, "\n");
}

int cmd_eval(int argc, char **argv) {
  const char *dir = NULL, *tokens_path = NULL;
  long ctx = 512, segments = 0;
  bool f32 = false;
  const arg_spec specs[] = {{"model", ARG_STRING, &dir},     {"tokens", ARG_STRING, &tokens_path},
                            {"ctx", ARG_INT, &ctx},          {"segments", ARG_INT, &segments},
                            {"f32", ARG_FLAG, &f32}};
  int parsed = args_parse("eval", argc, argv, specs, 5);
  if (parsed == 1) {
    fputs(help, stdout);
    return 0;
  }
  if (parsed < 0) return 2;
  if (!dir || !tokens_path) {
    fprintf(stderr, "rotq eval: --model DIR and --tokens FILE are required (see rotq eval --help)\n");
    return 2;
  }
  if (ctx < 2 || ctx > 1000000 || segments < 0) {
    fprintf(stderr, "rotq eval: --ctx must be between 2 and 1000000 and --segments not negative\n");
    return 2;
  }
  int32_t *tokens = NULL;
  size_t count = 0;
  model *m = NULL;
  rotq_error err;
  perplexity_result result;
  model_options options = {.f32 = f32};
  int status = token_file_read(tokens_path, &tokens, &count, &err) != 0 ||
                       model_load(dir, &options, &m, &err) != 0 ||
                       perplexity_eval(m, tokens, count, (int)ctx, (size_t)segments,
                                       isatty(STDERR_FILENO) ? show_progress : NULL, NULL, &result, &err) != 0
                   ? 1
                   : 0;
  if (status == 0)
    printf("nll %.6f ppl %.4f tokens %zu segments %zu\n", result.nll, result.ppl, result.predicted,
           result.segments);
  else
    fprintf(stderr, "rotq eval: %s\n", err.message);
  model_free(m);
  free(tokens);
  return status;
}

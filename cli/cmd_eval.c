/* rotq eval: perplexity on a token file, optionally of the fake-quantized model and against a
 * full-precision reference. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/heap.h"
#include "linalg/quantize.h"
#include "rotq.h"

static const char *help =
    "usage: rotq eval --model DIR --tokens FILE.u16 [--ctx 512] [--segments N] [--f32]\n"
    "                 [--wbits B --abits B --kvbits B --w-method rtn|gptq ...] [--reference DIR]\n\n"
    "Perplexity with the reference forward pass. FILE holds little-endian uint16 token ids; each\n"
    "segment starting at a BOS (1) is evaluated on its own, only its first ctx tokens, and the\n"
    "mean negative log-likelihood is taken over every predicted token. Prints\n"
    "\"nll X ppl Y tokens Z segments S\" (Z = predicted tokens), followed by \"kl K\" with\n"
    "--reference: the mean KL(p_reference ‖ p_model) per predicted token, in nats. Progress goes\n"
    "to stderr when it is a terminal.\n\n"
    "Fake quantization (quantize → dequantize in float, as a W·A·KV serving engine computes):\n"
    "weights of the decoder linears per output channel (or group) symmetric, by RTN or GPTQ;\n"
    "the input of every decoder linear per token symmetric, clipped; K (after RoPE) and V\n"
    "asymmetric per head (or group), clipped. Embeddings and lm_head stay in full precision.\n"
    "GPTQ calibrates on the last --calib-n segments of --calib; when that is the evaluated file,\n"
    "the evaluation stops before them.\n\n"
    "  --model DIR       checkpoint directory\n"
    "  --tokens FILE     token file (uint16 little-endian)\n"
    "  --ctx N           tokens per segment (default 512)\n"
    "  --segments N      evaluate the first N segments (default 0 = all)\n"
    "  --f32             compute in float32 (default float64)\n"
    "  --reference DIR   also measure the KL divergence from this (full-precision) checkpoint\n"
    "  --wbits B         weight bits, 2..8 or 16 = off (default 16)\n"
    "  --abits B         activation bits (default 16)\n"
    "  --kvbits B        KV cache bits (default 16)\n"
    "  --wformat F       weight format: int (--wbits, default), fp8 (E4M3, per output channel),\n"
    "                    mxfp4 (E2M1 in blocks of 32, E8M0 scales) or nvfp4 (E2M1 in blocks of 16,\n"
    "                    E4M3 scales, one FP32 scale per tensor); float formats by RTN\n"
    "  --aformat F       activation format, the same (per token; nvfp4's FP32 scale per token)\n"
    "  --w-method M      rtn or gptq (default rtn)\n"
    "  --w-group G       input columns per weight scale (default 0 = per output channel)\n"
    "  --act-order       GPTQ: columns of largest Hessian diagonal first\n"
    "  --damp X          GPTQ: relative damping of the Hessian (default 0.01)\n"
    "  --a-clip X        activation clip ratio (default 0.9)\n"
    "  --kv-clip X       KV clip ratio (default 0.95)\n"
    "  --kv-group G      K/V elements per scale (default 0 = head_dim)\n"
    "  --calib FILE      GPTQ calibration tokens (default: the --tokens file)\n"
    "  --calib-n N       calibration segments, from the end of the file (default 128)\n";

/* On a terminal: the segments evaluated, or GPTQ's layers, on one line rewritten in place. */
static void show_progress(const rotq_progress *p, void *context) {
  (void)context;
  if (!strcmp(p->phase, "segments"))
    fprintf(stderr, "\rrotq eval: segment %d/%d", p->layer, p->layers);
  else
    fprintf(stderr, "\rrotq eval: GPTQ layer %d/%d", p->layer, p->layers);
  if (p->layer == p->layers) fprintf(stderr, "\n");
}

int cmd_eval(int argc, char **argv) {
  const char *dir = NULL, *tokens_path = NULL, *reference_dir = NULL, *method = "rtn", *calib_path = NULL;
  const char *wformat_name = "int", *aformat_name = "int";
  long ctx = 512, segments = 0, wbits = 16, abits = 16, kvbits = 16, w_group = 0, kv_group = 0, calib_n = 128;
  double damp = 0.01, a_clip = 0.9, kv_clip = 0.95;
  bool f32 = false, act_order = false;
  const arg_spec specs[] = {
      {"model", ARG_STRING, &dir},
      {"tokens", ARG_STRING, &tokens_path},
      {"ctx", ARG_INT, &ctx},
      {"segments", ARG_INT, &segments},
      {"f32", ARG_FLAG, &f32},
      {"reference", ARG_STRING, &reference_dir},
      {"wbits", ARG_INT, &wbits},
      {"abits", ARG_INT, &abits},
      {"wformat", ARG_STRING, &wformat_name},
      {"aformat", ARG_STRING, &aformat_name},
      {"kvbits", ARG_INT, &kvbits},
      {"w-method", ARG_STRING, &method},
      {"w-group", ARG_INT, &w_group},
      {"act-order", ARG_FLAG, &act_order},
      {"damp", ARG_DOUBLE, &damp},
      {"a-clip", ARG_DOUBLE, &a_clip},
      {"kv-clip", ARG_DOUBLE, &kv_clip},
      {"kv-group", ARG_INT, &kv_group},
      {"calib", ARG_STRING, &calib_path},
      {"calib-n", ARG_INT, &calib_n},
  };
  int parsed = args_parse("eval", argc, argv, specs, (int)(sizeof specs / sizeof specs[0]));
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
  const bool gptq = strcmp(method, "gptq") == 0;
  if (!gptq && strcmp(method, "rtn") != 0) {
    fprintf(stderr, "rotq eval: --w-method takes rtn or gptq, not '%s'\n", method);
    return 2;
  }
  const long bits[3] = {wbits, abits, kvbits};
  const char *const bits_name[3] = {"--wbits", "--abits", "--kvbits"};
  for (int i = 0; i < 3; i++)
    if (!((bits[i] >= 2 && bits[i] <= 8) || bits[i] == 16)) {
      fprintf(stderr, "rotq eval: %s takes 2 to 8 bits, or 16 for no quantization, not %ld\n", bits_name[i], bits[i]);
      return 2;
    }
  if (w_group < 0 || w_group > 1000000 || kv_group < 0 || kv_group > 1000000 || calib_n < 1) {
    fprintf(stderr, "rotq eval: bad quantization option values (see rotq eval --help)\n");
    return 2;
  }
  quant_format wformat, aformat;
  if (quant_format_parse(wformat_name, &wformat) < 0 || quant_format_parse(aformat_name, &aformat) < 0) {
    fprintf(stderr, "rotq eval: --wformat and --aformat take int, fp8, mxfp4 or nvfp4\n");
    return 2;
  }
  if (gptq && wformat != QUANT_INT) {
    fprintf(stderr, "rotq eval: --w-method gptq quantizes to int only (--wformat %s takes rtn)\n", wformat_name);
    return 2;
  }
  heap_keep_freed_blocks();
  const bool tty = isatty(STDERR_FILENO);
  const rotq_eval_options o = {.model_dir = dir,
                               .tokens_path = tokens_path,
                               .ctx = (int)ctx,
                               .segments = (size_t)segments,
                               .f32 = f32,
                               .reference_dir = reference_dir,
                               .quant = {.wbits = (int)wbits,
                                         .wformat = wformat_name,
                                         .w_method = method,
                                         .w_group = (int)w_group,
                                         .act_order = act_order,
                                         .damp = damp,
                                         .calib_path = calib_path,
                                         .calib_segments = (size_t)calib_n,
                                         .abits = (int)abits,
                                         .kvbits = (int)kvbits,
                                         .aformat = aformat_name,
                                         .a_clip = a_clip,
                                         .kv_clip = kv_clip,
                                         .kv_group = (int)kv_group},
                               .on_progress = tty ? show_progress : NULL};
  rotq_error err;
  rotq_eval_result result;
  int status = rotq_eval(&o, &result, &err) != 0;
  if (status == 0) {
    printf("nll %.6f ppl %.4f tokens %zu segments %zu", result.nll, result.ppl, result.predicted, result.segments);
    if (reference_dir) printf(" kl %.6g", result.kl);
    printf("\n");
  } else {
    fprintf(stderr, "rotq eval: %s\n", err.message);
  }
  return status;
}

/* rotq quantize: write a compressed-tensors checkpoint (rotate/quantize_command.h). */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "rotate/quantize_command.h"
#include "rotate/quantize_gptq.h"

static const char *help =
    "usage: rotq quantize --model IN --output OUT --scheme SCHEME [options]\n\n"
    "Quantizes a HuggingFace checkpoint (typically a `rotq rotate` output) by round-to-nearest (or GPTQ) and\n"
    "writes it in the compressed-tensors format that vLLM loads "
    "(compressed-tensors " QUANTIZE_COMPRESSED_TENSORS_VERSION "):\n"
    "config.json gets a quantization_config, every Linear weight of the decoder layers (q/k/v/o,\n"
    "gate/up/down, experts, Mamba in/out projections) is replaced by its quantized tensors. Kept in\n"
    "full precision and listed in \"ignore\": lm_head, the MoE routers, MLA's q_b/kv_b_proj and\n"
    "fused [experts, in, out] experts (gpt-oss, Llama-4); embeddings, norms and\n"
    "biases are not Linear weights and are copied unchanged. One tensor at a time, in row blocks:\n"
    "memory stays small whatever the model's size. The output is written to a temporary sibling\n"
    "directory and renamed into place only when complete.\n\n"
    "schemes:\n"
    "  W4A16   int4 weights per group of --group-size input columns (default 128), symmetric or\n"
    "          --asymmetric (zero points); format pack-quantized (8 int4 per int32)\n"
    "  W8A8    int8 weights per output channel, activations int8 per token (dynamic); int-quantized\n"
    "  FP8     FP8 E4M3 weights per output channel, activations FP8 per token (dynamic);\n"
    "          float-quantized\n"
    "  FP8_BLOCK  FP8 E4M3 weights with a scale per 128x128 block, activations FP8 per group of\n"
    "          128 (dynamic); float-quantized, strategy block (DeepSeek-V3 style)\n"
    "  MXFP4A16  FP4 E2M1 weights in groups of 32 with E8M0 (power-of-two) scales, 16-bit\n"
    "          activations; mxfp4-pack-quantized (every input dimension a multiple of 32)\n"
    "  NVFP4A16  FP4 E2M1 weights in blocks of 16 with E4M3 block scales and an FP32 per-tensor\n"
    "          scale, 16-bit activations; nvfp4-pack-quantized (every input dimension a multiple of 16)\n\n"
    "options:\n"
    "  --model DIR              input checkpoint directory (never modified)\n"
    "  --output DIR             output directory (must not exist, unless --force)\n"
    "  --scheme NAME            W4A16 | W8A8 | FP8 | FP8_BLOCK | NVFP4A16 | MXFP4A16\n"
    "  --group-size N           W4A16: input columns per scale (default 128; must divide every\n"
    "                           quantized weight's input columns)\n"
    "  --symmetric              W4A16: codes -8..7, no zero point (the default)\n"
    "  --asymmetric             W4A16: codes 0..15 with a zero point per group\n"
    "  --fake-quant-output DIR  also write the dequantized checkpoint (each quantized weight replaced\n"
    "                           by what a decoder of the format computes, in the weight's dtype), for\n"
    "                           checks and `rotq eval`\n"
    "  --threads N              worker threads (default: all cores)\n"
    "  --max-shard-size B       maximum shard size in bytes (default 5000000000, like HF)\n"
    "  --force                  replace an existing output directory that is a checkpoint\n"
    "  --quiet                  no progress line or summary\n\n"
    "GPTQ (W4A16, W4A16 --asymmetric, W8A8):\n"
    "  --method rtn|gptq        how the codes are chosen (default rtn). gptq: layer by layer on\n"
    "                           calibration tokens, each linear's rounding errors compensated by the\n"
    "                           later columns (Frantar et al.); scales per group from the weights as\n"
    "                           updated when the group's first column is reached, stored in the\n"
    "                           model's dtype; q/k/v, o, gate/up, down in that order, each calibrated\n"
    "                           on the already quantized earlier ones. Memory: the calibration\n"
    "                           activations (segments x ctx x hidden doubles) + one layer in float64\n"
    "                           + 3 Hessians of the widest input. LLaMA-layout models only (Llama,\n"
    "                           Mistral, Qwen2, Qwen3)\n"
    "  --calib FILE             gptq: calibration tokens (uint16 ids, segments starting at BOS = 1)\n"
    "  --calib-n N              gptq: its last N segments (default 128)\n"
    "  --calib-ctx C            gptq: the first C tokens of each (default 512)\n"
    "  --damp X                 gptq: Hessian damping, a fraction of its mean diagonal (default 0.01)\n"
    "  --act-order              refused: compressed-tensors' activation ordering (weight_g_idx) is not\n"
    "                           written by rotq\n";

static volatile sig_atomic_t cancelled;

static void on_signal(int sig) { cancelled = sig; }

static void print_log(rotq_log_level level, const char *message, void *context) {
  (void)context;
  fprintf(stderr, "rotq quantize: %s%s\n", level == ROTQ_LOG_WARNING ? "warning: " : "", message);
}

/* GPTQ's progress: layers done, elapsed time, the rest estimated at the mean time per layer. */
static void gptq_progress(int done, int layers, void *user) {
  const struct timespec *start = user;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  double elapsed = (double)(now.tv_sec - start->tv_sec) + 1e-9 * (double)(now.tv_nsec - start->tv_nsec);
  fprintf(stderr, "\rrotq quantize: GPTQ layer %d/%d, %.1f s, ETA %.0f s   ", done, layers, elapsed,
          elapsed / done * (layers - done));
  if (done == layers) fputc('\n', stderr);
}

static void progress(size_t done, size_t total, void *user) {
  (void)user;
  fprintf(stderr, "\rrotq quantize: tensor %zu/%zu   ", done, total);
  if (done == total) fputc('\n', stderr);
}

int cmd_quantize(int argc, char **argv) {
  const char *model = NULL, *output = NULL, *scheme = NULL, *fake = NULL, *method = "rtn", *calib = NULL;
  long group = -1, threads = 0, max_shard = 0, calib_n = 128, calib_ctx = 512;
  double damp = 0.01;
  bool symmetric = false, asymmetric = false, force = false, quiet = false, act_order = false;
  arg_spec specs[] = {
      {"model", ARG_STRING, &model},
      {"output", ARG_STRING, &output},
      {"scheme", ARG_STRING, &scheme},
      {"group-size", ARG_INT, &group},
      {"symmetric", ARG_FLAG, &symmetric},
      {"asymmetric", ARG_FLAG, &asymmetric},
      {"fake-quant-output", ARG_STRING, &fake},
      {"threads", ARG_INT, &threads},
      {"max-shard-size", ARG_LONG, &max_shard},
      {"force", ARG_FLAG, &force},
      {"quiet", ARG_FLAG, &quiet},
      {"method", ARG_STRING, &method},
      {"calib", ARG_STRING, &calib},
      {"calib-n", ARG_INT, &calib_n},
      {"calib-ctx", ARG_INT, &calib_ctx},
      {"damp", ARG_DOUBLE, &damp},
      {"act-order", ARG_FLAG, &act_order},
  };
  int parsed = args_parse("quantize", argc, argv, specs, (int)(sizeof specs / sizeof specs[0]));
  if (parsed == 1) {
    fputs(help, stdout);
    return 0;
  }
  if (parsed < 0) return 2;
  if (!model || !output || !scheme) {
    fprintf(stderr, "rotq quantize: --model, --output and --scheme are required (see rotq quantize --help)\n");
    return 2;
  }
  if (symmetric && asymmetric) {
    fprintf(stderr, "rotq quantize: --symmetric and --asymmetric are exclusive\n");
    return 2;
  }
  const bool gptq = strcasecmp(method, "gptq") == 0;
  if (!gptq && strcasecmp(method, "rtn") != 0) {
    fprintf(stderr, "rotq quantize: --method must be rtn or gptq, not '%s'\n", method);
    return 2;
  }
  if (!gptq && (calib || act_order)) {
    fprintf(stderr, "rotq quantize: --calib and --act-order apply to --method gptq only\n");
    return 2;
  }
  if (gptq && !calib) {
    fprintf(stderr, "rotq quantize: --method gptq needs calibration tokens: --calib FILE\n");
    return 2;
  }
  if (act_order) {
    fprintf(stderr, "rotq quantize: --act-order is not supported: rotq does not write compressed-tensors' "
                    "activation ordering (weight_g_idx); GPTQ runs in column order\n");
    return 2;
  }
  if (calib_n < 1 || calib_ctx < 1 || calib_ctx > 1000000 || !(damp > 0 && damp < 1)) {
    fprintf(stderr, "rotq quantize: --calib-n and --calib-ctx must be positive and --damp in (0, 1)\n");
    return 2;
  }
  if (threads < 0 || max_shard < 0) {
    fprintf(stderr, "rotq quantize: bad option values (see rotq quantize --help)\n");
    return 2;
  }
  quantize_options o = {.model_dir = model,
                        .output_dir = output,
                        .fake_quant_dir = fake,
                        .force = force,
                        .threads = (int)threads,
                        .max_shard_bytes = (size_t)max_shard,
                        .cancel = &cancelled,
                        .log = quiet ? NULL : print_log};
  bool w4 = strcasecmp(scheme, "W4A16") == 0;
  if (!w4 && (group != -1 || asymmetric || symmetric)) {
    fprintf(stderr, "rotq quantize: --group-size, --symmetric and --asymmetric apply to W4A16 only, not %s\n", scheme);
    return 2;
  }
  if (ct_scheme_parse(scheme, w4 ? (group == -1 ? 128 : (int)group) : 0, asymmetric, &o.scheme) < 0) {
    if (w4)
      fprintf(stderr, "rotq quantize: --group-size must be at least 1, not %ld\n", group);
    else
      fprintf(stderr, "rotq quantize: unknown scheme '%s' (W4A16, W8A8, FP8, FP8_BLOCK, NVFP4A16, MXFP4A16)\n", scheme);
    return 2;
  }
  if (!quiet && isatty(STDERR_FILENO) && !gptq) o.progress = progress; /* GPTQ reports layers instead */
  struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  quantize_result r;
  rotq_error err = {{0}};
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  const gptq_settings g = {.calib_path = calib,
                           .calib_n = (size_t)calib_n,
                           .ctx = (int)calib_ctx,
                           .damp = damp,
                           .progress = !quiet && isatty(STDERR_FILENO) ? gptq_progress : NULL,
                           .user = &start};
  int rc = gptq ? quantize_compressed_gptq(&o, &g, &r, &err) : quantize_compressed(&o, &r, &err);
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  if (rc < 0) {
    fprintf(stderr, "rotq quantize: %s\n", err.message);
    return 1;
  }
  if (!quiet)
    printf("rotq quantize: wrote %s (%s, %s%s): %zu weights quantized, %zu tensors copied, %zu modules in ignore; "
           "%.1f MB -> %.1f MB\n",
           output, ct_scheme_name(&o.scheme), ct_scheme_format(&o.scheme), gptq ? ", GPTQ" : "", r.quantized, r.copied,
           r.ignored + 1, r.input_bytes / 1e6, r.output_bytes / 1e6);
  return 0;
}

/* rotq quantize: write a compressed-tensors checkpoint (rotate/quantize_command.h). */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "rotate/quantize_command.h"

static const char *help =
    "usage: rotq quantize --model IN --output OUT --scheme SCHEME [options]\n\n"
    "Quantizes a HuggingFace checkpoint (typically a `rotq rotate` output) by round-to-nearest and\n"
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
    "  --quiet                  no progress line or summary\n";

static volatile sig_atomic_t cancelled;

static void on_signal(int sig) { cancelled = sig; }

static void print_log(rotq_log_level level, const char *message, void *context) {
  (void)context;
  fprintf(stderr, "rotq quantize: %s%s\n", level == ROTQ_LOG_WARNING ? "warning: " : "", message);
}

static void progress(size_t done, size_t total, void *user) {
  (void)user;
  fprintf(stderr, "\rrotq quantize: tensor %zu/%zu   ", done, total);
  if (done == total) fputc('\n', stderr);
}

int cmd_quantize(int argc, char **argv) {
  const char *model = NULL, *output = NULL, *scheme = NULL, *fake = NULL;
  long group = -1, threads = 0, max_shard = 0;
  bool symmetric = false, asymmetric = false, force = false, quiet = false;
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
  if (!quiet && isatty(STDERR_FILENO)) o.progress = progress;
  struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  quantize_result r;
  rotq_error err = {{0}};
  int rc = quantize_compressed(&o, &r, &err);
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  if (rc < 0) {
    fprintf(stderr, "rotq quantize: %s\n", err.message);
    return 1;
  }
  if (!quiet)
    printf("rotq quantize: wrote %s (%s, %s): %zu weights quantized, %zu tensors copied, %zu modules in ignore; "
           "%.1f MB -> %.1f MB\n",
           output, ct_scheme_name(&o.scheme), ct_scheme_format(&o.scheme), r.quantized, r.copied, r.ignored + 1,
           r.input_bytes / 1e6, r.output_bytes / 1e6);
  return 0;
}

/* rotq rotate: rotate a checkpoint (the library's rotq_rotate with options from the command line). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <strings.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/rotate_run.h"
#include "rotq.h"

static const char *help =
    "usage: rotq rotate --model IN --output OUT [options]\n\n"
    "Rotates a HuggingFace checkpoint (config.json + safetensors): fuses the norms, applies R1 to the\n"
    "residual stream and R2 per head (and, with --online, the online rotations), and writes a checkpoint\n"
    "that loads as a standard HF model and computes the same function. The output is written to a\n"
    "temporary sibling directory and renamed into place only when complete.\n\n"
    "With --online that holds only where the online rotations' activation halves are applied: rotq's\n"
    "own forward pass (eval, compare, report), compressed-tensors (>= 0.11) and vLLM (the --online-for\n"
    "vllm form: R4 and the heads rotation; R3 is not served). config.json then carries a\n"
    "compressed-tensors quantization_config: transformers loads it only with the compressed-tensors\n"
    "package installed, and does not apply the activation halves (5.23 drops transform_config), so\n"
    "there it computes another function. See docs/online.md.\n\n"
    "Every output is proven before it is called complete: while each decoder layer (and the\n"
    "embedding, final norm and lm_head) is written, it is read back and checked against the\n"
    "original on probe rows of hidden states (the in-stream check: readers of the residual stream\n"
    "give identical outputs, writers outputs rotated by R1, the attention value path through\n"
    "per-head mixing, every other tensor unchanged). A failure names the layer, the tensor and the\n"
    "relative error, exits 1 and leaves no output. rotation.json records what was verified.\n\n"
    "options:\n"
    "  --model DIR        input checkpoint directory (never modified)\n"
    "  --output DIR       output directory (must not exist, unless --force)\n"
    "  --config NAME|FILE built-in config name or YAML file (default: the architecture's own,\n"
    "                     transformer_universal for Llama/Mistral/Qwen2/Qwen3; see `rotq config list`)\n"
    "  --seed N           seed of every random matrix, 0 to 18446744073709551615 (default 0);\n"
    "                     rotation.json records it exactly, as a decimal string\n"
    "  --threads N        worker threads (default: all cores)\n"
    "  --online           also apply the online rotations (R4 on down_proj, heads rotation on o_proj, R3)\n"
    "  --online-for vllm  make the online R4 the normalized Sylvester blocks vLLM applies\n"
    "  --block-size B     group-sized rotations for quantization groups of B values (a power of two;\n"
    "                     MXFP4: 32, NVFP4: 16): R1, R2 and the online R4 and heads rotations\n"
    "                     block-diagonal, no block straddling a group; -1 = full size (default:\n"
    "                     the config's block_size; the built-in configs: full size)\n"
    "  --max-shard-size B maximum shard size in bytes (default 5000000000, like HF)\n"
    "  --dtype T          write every tensor as bf16, f16, f32 or f64 (default: each tensor its own\n"
    "                     dtype; quantized tensors bf16)\n"
    "  --verify           also run the whole-model check (the reference forward pass on the original\n"
    "                     and the output, logits compared) whatever the model's size (default: for\n"
    "                     models up to 50M parameters)\n"
    "  --no-verify        skip every check, the in-stream one too (the output is then not proven)\n"
    "  --force            replace an existing output directory that is a checkpoint or an earlier\n"
    "                     rotq output (never a file, device, FIFO, link or other directory)\n"
    "  --quantize SCHEME  quantize (RTN) the decoder layers' Linear weights as they are rotated and\n"
    "                     write the compressed-tensors checkpoint vLLM serves, in one read and one\n"
    "                     write: W4A16 (pack-quantized), W8A8 (int-quantized), FP8 or FP8_BLOCK\n"
    "                     (float-quantized), NVFP4A16 (nvfp4-pack-quantized; each fused q/k/v or\n"
    "                     gate/up group is held in memory until complete, for its joint global\n"
    "                     scale) or MXFP4A16 (mxfp4-pack-quantized); the same bytes as rotq rotate\n"
    "                     then rotq quantize --scheme SCHEME. The in-stream check proves the rotation\n"
    "                     of the values quantized (the rotated rows, held in memory until their layer\n"
    "                     is checked); the whole-model check does not run\n"
    "  --group-size N     with --quantize W4A16: input columns per scale (default 128)\n"
    "  --asymmetric       with --quantize W4A16: zero points\n"
    "  --quiet            no progress line, warnings or summary on stderr\n\n"
    "Quantized sources are read as their exact values: FP8 (F8_E4M3/F8_E5M2) with weight_scale_inv\n"
    "per block (DeepSeek-V3/R1, Qwen3-FP8) or compressed-tensors weight_scale per channel or per\n"
    "tensor (input_scale dropped), and MXFP4 P_blocks/P_scales pairs (written as P). The output is a\n"
    "float checkpoint: no scale tensors, no quantization_config, torch_dtype the dtype written.\n\n"
    "environment: ROTQ_TIMING=1 prints where the time went (read, compute, convert, write).\n";

/* What the library asks to tell the user (a replaced output, skipped files): always shown. */
static void print_notice(const char *message, void *context) {
  (void)context;
  fprintf(stderr, "rotq rotate: %s\n", message);
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The progress line on a terminal: "layer i/n  elapsed  ETA", rewritten in place. */
static void print_progress(const rotq_progress *p, void *context) {
  double *start = context;
  if (!strcmp(p->phase, "prepare")) *start = now_seconds();
  if (strcmp(p->phase, "layers") != 0) return;
  double elapsed = now_seconds() - *start;
  double eta = p->layer > 0 ? elapsed / p->layer * (p->layers - p->layer) : 0;
  fprintf(stderr, "\rrotq rotate: layer %d/%d  elapsed %.1fs  ETA %.1fs   ", p->layer, p->layers, elapsed, eta);
  if (p->layer == p->layers) fputc('\n', stderr);
}

int cmd_rotate(int argc, char **argv) {
  const char *model = NULL, *output = NULL, *config = NULL, *online_for = NULL, *dtype = NULL, *quantize = NULL;
  uint64_t seed = 0;
  long threads = 0, max_shard = 0, block_size = 0, group = 0;
  bool asymmetric = false;
  bool online = false, verify = false, no_verify = false, force = false, quiet = false;
  arg_spec specs[] = {
      {"model", ARG_STRING, &model},
      {"output", ARG_STRING, &output},
      {"config", ARG_STRING, &config},
      {"seed", ARG_U64, &seed},
      {"threads", ARG_INT, &threads},
      {"online", ARG_FLAG, &online},
      {"online-for", ARG_STRING, &online_for},
      {"max-shard-size", ARG_LONG, &max_shard},
      {"block-size", ARG_LONG, &block_size},
      {"dtype", ARG_STRING, &dtype},
      {"quantize", ARG_STRING, &quantize},
      {"group-size", ARG_LONG, &group},
      {"asymmetric", ARG_FLAG, &asymmetric},
      {"verify", ARG_FLAG, &verify},
      {"no-verify", ARG_FLAG, &no_verify},
      {"force", ARG_FLAG, &force},
      {"quiet", ARG_FLAG, &quiet},
  };
  int parsed = args_parse("rotate", argc, argv, specs, (int)(sizeof specs / sizeof specs[0]));
  if (parsed == 1) {
    fputs(help, stdout);
    return 0;
  }
  if (parsed < 0) return 2;
  if (!model || !output) {
    fprintf(stderr, "rotq rotate: --model and --output are required (see rotq rotate --help)\n");
    return 2;
  }
  if (online_for && strcmp(online_for, "vllm") != 0) {
    fprintf(stderr, "rotq rotate: --online-for takes 'vllm', not '%s'\n", online_for);
    return 2;
  }
  if (dtype && strcasecmp(dtype, "bf16") != 0 && strcasecmp(dtype, "f16") != 0 && strcasecmp(dtype, "f32") != 0 &&
      strcasecmp(dtype, "f64") != 0) {
    fprintf(stderr, "rotq rotate: --dtype takes bf16, f16, f32 or f64, not '%s'\n", dtype);
    return 2;
  }
  if (block_size < -1 || block_size > (1L << 20) || (block_size > 0 && (block_size & (block_size - 1)))) {
    fprintf(stderr, "rotq rotate: --block-size takes -1 or a power of two up to 1048576, not %ld\n", block_size);
    return 2;
  }
  if (quantize && strcasecmp(quantize, "W4A16") != 0 && strcasecmp(quantize, "W8A8") != 0 &&
      strcasecmp(quantize, "FP8") != 0 && strcasecmp(quantize, "FP8_BLOCK") != 0 &&
      strcasecmp(quantize, "NVFP4A16") != 0 && strcasecmp(quantize, "MXFP4A16") != 0) {
    fprintf(stderr, "rotq rotate: --quantize takes W4A16, W8A8, FP8, FP8_BLOCK, NVFP4A16 or MXFP4A16, not '%s'\n",
            quantize);
    return 2;
  }
  if ((group || asymmetric) && !(quantize && strcasecmp(quantize, "W4A16") == 0)) {
    fprintf(stderr, "rotq rotate: --group-size and --asymmetric apply to --quantize W4A16 only\n");
    return 2;
  }
  if (group < 0 || group > (1L << 20)) {
    fprintf(stderr, "rotq rotate: --group-size takes a positive number, not %ld\n", group);
    return 2;
  }
  if (threads < 0 || max_shard < 0 || (verify && no_verify)) {
    fprintf(stderr, "rotq rotate: bad option values (see rotq rotate --help)\n");
    return 2;
  }
  rotq_rotate_options o = rotq_rotate_default_options();
  o.model_dir = model;
  o.output_dir = output;
  o.config = config;
  o.seed = seed;
  o.threads = (int)threads;
  o.online = online || online_for;
  o.online_for = online_for;
  o.dtype = dtype;
  o.block_size = (int)block_size;
  o.quantize = quantize;
  o.quantize_group = (int)group;
  o.quantize_asymmetric = asymmetric;
  o.force = force;
  if (verify) o.verify = ROTQ_VERIFY_ALL;
  if (no_verify) o.verify = ROTQ_VERIFY_OFF;
  o.max_shard_bytes = (size_t)max_shard;
  o.progress = !quiet && isatty(STDERR_FILENO);
  o.quiet = quiet;
  o.notice = print_notice;
  cli_log log = {.command = "rotate", .quiet = quiet};
  o.log = cli_print_log;
  o.log_context = &log;
  double start = now_seconds();
  if (o.progress) {
    o.on_progress = print_progress;
    o.progress_context = &start;
  }
  rotq_error err = {{0}};
  if (cli_rotate(&o, &err) < 0) {
    fprintf(stderr, "rotq rotate: %s\n", err.message);
    return 1;
  }
  if (!quiet) printf("rotq rotate: wrote %s\n", output);
  return 0;
}

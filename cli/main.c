/* rotq: the command-line front end. `rotq <command> [options]`; `rotq <command> --help`. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "rotq.h"

static const command commands[] = {
    {"info", "print a checkpoint's architecture, sizes, dtypes and parameter count", cmd_info},
    {"generate", "greedy decoding with the reference forward pass", cmd_generate},
    {"eval", "perplexity on a token file (uint16 ids, BOS-delimited segments)", cmd_eval},
    {"compare", "compare two checkpoints' logits on the same tokens", cmd_compare},
    {"rotate", "rotate a checkpoint (R1, R2, optional online rotations)", cmd_rotate},
    {"quantize", "write a quantized compressed-tensors checkpoint vLLM serves (W4A16, W8A8, FP8, NVFP4A16)",
     cmd_quantize},
    {"config", "list or show the built-in rotation configs", cmd_config},
    {"report", "what rotation buys: fake-quantized perplexity/KL, original vs rotated", cmd_report},
    {"stats", "outlier statistics at every linear input, before/after rotation (SVG plot)", cmd_stats},
    {"convert", "convert a llama.cpp GGUF checkpoint (LLaMA; F32..Q4_K/Q6_K) to HF safetensors", cmd_convert},
    {"synth", "write a synthetic checkpoint shaped like a real model (tests, benchmarks)", cmd_synth},
};

static void usage(FILE *out) {
  fprintf(out,
          "rotq %s — rotate HuggingFace LLM checkpoints so they quantize well\n\n"
          "usage: rotq <command> [options]      (rotq <command> --help for its options)\n\n"
          "commands:\n",
          rotq_version());
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(out, "\nexit status: 0 success, 1 bad input or failed check, 2 usage error\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
    usage(stdout);
    return 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("rotq %s\n", rotq_version());
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "rotq: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}

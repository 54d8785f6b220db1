/* rotq synth: a synthetic checkpoint with the exact layout and config.json of a real model. */
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "rotq.h"
#include "synth/synth_shapes.h"

static const char *help_head =
    "usage: rotq synth --shape NAME --output DIR [options]\n\n"
    "Writes a checkpoint with the tensor names, shapes, sharding (shards of at most 5 GB, like HF)\n"
    "and config.json of a real model, with random weights at realistic scales (linear weights\n"
    "N(0, 1/in), embeddings N(0, 1/hidden), norm weights 1 + 0.2·N(0, 1)). The values are a function\n"
    "of the shape, layers, seed and outlier options only (not of the thread count). Tensors are drawn\n"
    "and written in parallel (all cores), a few MB per thread at a time: a 16 GB model takes about a\n"
    "minute and little memory. For tests and as the input of bench/run.sh.\n\n"
    "options:\n"
    "  --shape NAME       one of the shapes below\n"
    "  --output DIR       output directory (created; must not already hold a config.json)\n"
    "  --dtype T          bf16 (default), f16, f32, f64, or fp8: the decoder layers' linear weights\n"
    "                     in F8_E4M3 with a weight_scale_inv per 128×128 block (DeepSeek-V3's layout,\n"
    "                     quantization_config quant_method fp8), the other tensors bf16 (dense families)\n"
    "  --layers N         number of decoder layers instead of the model's\n"
    "  --seed S           seed of the values (default 0)\n"
    "  --outliers         a model with massive activations and trained-like structure, on which\n"
    "                     rotation's effect on quantization shows (docs/quantization.md): a residual\n"
    "                     channel at 28× the others' rms in every token's embedding (embeddings at\n"
    "                     unit rms per channel), and the embeddings and every reader and writer of the\n"
    "                     residual stream confined to a random feature subspace of rank hidden/16,\n"
    "                     orthogonal to the outlier channels\n"
    "  --outlier-channels N  that many outlier channels instead of 1 (implies --outliers)\n"
    "  --outlier-scale X  their magnitude instead of 28 (implies --outliers)\n"
    "  --feature-rank N   the feature subspace's rank instead of hidden/16; 0 = isotropic random\n"
    "                     weights (implies --outliers)\n"
    "  --logit-scale S    multiply lm_head by S (logits S times larger), so that the next-token\n"
    "                     distribution is as peaked as a trained model's (small --outliers: mean\n"
    "                     entropy 4.3 nats with S = 3, 1.8 with S = 6, of ln 1024 = 6.9). Needs an\n"
    "                     untied lm_head\n"
    "  --max-shard-size B maximum shard size in bytes (default 5000000000)\n\n"
    "shapes:\n";

static void print_help(void) {
  fputs(help_head, stdout);
  const char *description;
  for (size_t i = 0; synth_shape_name(i, &description); i++)
    printf("  %-14s %s\n", synth_shape_name(i, NULL), description);
}

/* Bytes of the .safetensors files in dir, and their count. */
static double shard_bytes(const char *dir, int *count) {
  double total = 0;
  *count = 0;
  DIR *d = opendir(dir);
  struct dirent *e;
  while (d && (e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (len < 12 || strcmp(e->d_name + len - 12, ".safetensors") != 0) continue;
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (stat(path, &st) == 0) total += (double)st.st_size, (*count)++;
  }
  if (d) closedir(d);
  return total;
}

int cmd_synth(int argc, char **argv) {
  const char *shape = NULL, *output = NULL, *type = "bf16";
  long layers = 0, seed = 0, max_shard = 0, outlier_channels = 0, feature_rank = -1;
  double outlier_scale = 0, logit_scale = 0;
  bool outliers = false;
  arg_spec specs[] = {
      {"shape", ARG_STRING, &shape},
      {"output", ARG_STRING, &output},
      {"dtype", ARG_STRING, &type},
      {"layers", ARG_INT, &layers},
      {"seed", ARG_LONG, &seed},
      {"outliers", ARG_FLAG, &outliers},
      {"outlier-scale", ARG_DOUBLE, &outlier_scale},
      {"outlier-channels", ARG_INT, &outlier_channels},
      {"feature-rank", ARG_INT, &feature_rank},
      {"max-shard-size", ARG_LONG, &max_shard},
      {"logit-scale", ARG_DOUBLE, &logit_scale},
  };
  int parsed = args_parse("synth", argc, argv, specs, (int)(sizeof specs / sizeof specs[0]));
  if (parsed == 1) {
    print_help();
    return 0;
  }
  if (parsed < 0) return 2;
  synth_spec spec = {0};
  if (!shape || !output) {
    fprintf(stderr, "rotq synth: --shape and --output are required (see rotq synth --help)\n");
    return 2;
  }
  if (synth_shape(shape, &spec) < 0) {
    fprintf(stderr, "rotq synth: unknown shape '%s' (see rotq synth --help)\n", shape);
    return 2;
  }
  if (synth_dtype_parse(type, &spec.dtype) < 0) {
    fprintf(stderr, "rotq synth: --dtype takes bf16, f16, f32, f64 or fp8, not '%s'\n", type);
    return 2;
  }
  if (layers < 0 || layers > 100000 || seed < 0 || max_shard < 0 || outlier_scale < 0 || logit_scale < 0 ||
      outlier_channels < 0 || outlier_channels > 100000 || feature_rank < -1 || feature_rank > 1000000) {
    fprintf(stderr, "rotq synth: bad option values (see rotq synth --help)\n");
    return 2;
  }
  const rotq_synth_options o = {.shape = shape,
                                .output_dir = output,
                                .dtype = type,
                                .layers = (int)layers,
                                .seed = (uint64_t)seed,
                                .max_shard_bytes = (size_t)max_shard,
                                .outliers = outliers || feature_rank >= 0,
                                .outlier_scale = outlier_scale,
                                .outlier_channels = (int)outlier_channels,
                                .feature_rank = feature_rank == 0  ? -1
                                                : feature_rank > 0 ? (int)feature_rank
                                                                   : 0,
                                .logit_scale = logit_scale};
  if (layers) spec.num_layers = (int)layers;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  rotq_error err = {{0}};
  if (rotq_synth(&o, &err) < 0) {
    fprintf(stderr, "rotq synth: %s\n", err.message);
    return 1;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  int shards;
  double bytes = shard_bytes(output, &shards);
  printf("rotq synth: wrote %s (%s, %s, %d layers): %.2f GB in %d shard%s, %.1f s, %.0f MB/s\n", output, shape, type,
         spec.num_layers, bytes / 1e9, shards, shards == 1 ? "" : "s", seconds,
         bytes / 1e6 / (seconds > 0 ? seconds : 1));
  return 0;
}

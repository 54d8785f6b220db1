/* rotq stats: outlier statistics at every linear input, before and after rotation, and the
 * picture of QuaRot's Figure 1. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/heap.h"
#include "cli/outlier_plot.h"
#include "cli/rotate_run.h"
#include "cli/work_dir.h"
#include "io/json_file.h"
#include "eval/activation_stats.h"
#include "eval/token_file.h"
#include "model/transformer.h"
#include "rotq.h"

static const char *help =
    "usage: rotq stats --model DIR --tokens FILE.u16 [--rotated DIR] [--svg FILE] [--json FILE]\n"
    "                  [--layer L] [--input qkv|o_proj|gate_up|down_proj] [--segments 20] [--ctx 512]\n\n"
    "Measures what makes a model hard to quantize, at the input of every decoder linear, on the\n"
    "first segments of FILE: per channel the largest |activation| (its largest/median ratio is\n"
    "printed), the kurtosis of each token's activations across channels (3 for a Gaussian; about\n"
    "the width when one channel dominates), and the same for the weights reading that input (per\n"
    "input channel the largest |W|; the kurtosis of each output row). Both for the model and for\n"
    "its rotation: --rotated DIR, or else R1R2 (`rotq rotate` defaults, seed --seed) into a scratch\n"
    "directory beside --json (else --svg, else in the current directory), removed afterwards, also\n"
    "when interrupted. --svg draws QuaRot's Figure 1 for one input: channel against largest |activation|,\n"
    "original beside rotated.\n\n"
    "  --model DIR      checkpoint directory\n"
    "  --tokens FILE    token file (uint16 little-endian)\n"
    "  --rotated DIR    its rotated checkpoint (default: rotate it now)\n"
    "  --seed N         seed of that rotation (default 0)\n"
    "  --segments N     segments measured (default 20)\n"
    "  --ctx N          tokens per segment (default 512)\n"
    "  --svg FILE       write the plot\n"
    "  --layer L        layer of the plot (default: the one whose qkv input has the largest\n"
    "                   largest/median ratio in the original)\n"
    "  --input NAME     input of the plot (default qkv)\n"
    "  --json FILE      write every statistic, per-channel arrays included\n"
    "  --f32            compute in float32 (default float64)\n";

static int measure(const char *dir, const int32_t *tokens, size_t count, int ctx, size_t segments, bool f32,
                   activation_stats *out, rotq_error *err) {
  model *m = NULL;
  model_options options = {.f32 = f32};
  int status = model_load(dir, &options, &m, err) != 0 ||
                       activation_stats_measure(m, tokens, count, ctx, segments, out, err) != 0
                   ? -1
                   : 0;
  if (status != 0) rotq_fail_context(err, "%s", dir);
  model_free(m);
  return status;
}

static void print_table(const activation_stats *a, const activation_stats *b) {
  printf("%-5s %-9s %6s | %-33s | %-33s\n", "", "", "", "original", "rotated");
  printf("%-5s %-9s %6s | %9s %8s %7s %7s | %9s %8s %7s %7s\n", "layer", "input", "dim", "max|x|", "max/med", "kurt",
         "W kurt", "max|x|", "max/med", "kurt", "W kurt");
  for (int l = 0; l < a->layers; l++)
    for (int input = 0; input < LINEAR_INPUT_COUNT; input++) {
      const input_stats *s[2] = {activation_stats_at(a, l, input), activation_stats_at(b, l, input)};
      if (!s[0]->dim) continue;
      printf("%-5d %-9s %6d", l, linear_input_name(input), s[0]->dim);
      for (int k = 0; k < 2; k++) {
        double max = 0;
        for (int j = 0; j < s[k]->dim; j++) max = s[k]->channel_max[j] > max ? s[k]->channel_max[j] : max;
        printf(" | %9.3g %8.1f %7.1f %7.1f", max, max_median_ratio(s[k]->channel_max, s[k]->dim), s[k]->kurtosis,
               s[k]->weight_kurtosis);
      }
      printf("\n");
    }
}

static cJSON *stats_json(const input_stats *s) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddItemToObject(o, "channel_max", cJSON_CreateDoubleArray(s->channel_max, s->dim));
  cJSON_AddNumberToObject(o, "max_median_ratio", max_median_ratio(s->channel_max, s->dim));
  cJSON_AddNumberToObject(o, "kurtosis", s->kurtosis);
  cJSON_AddItemToObject(o, "weight_channel_max", cJSON_CreateDoubleArray(s->weight_channel_max, s->dim));
  cJSON_AddNumberToObject(o, "weight_kurtosis", s->weight_kurtosis);
  return o;
}

static int write_json(const char *path, const char *model_dir, const char *rotated_dir, const activation_stats *a,
                      const activation_stats *b, rotq_error *err) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "model", model_dir);
  cJSON_AddStringToObject(root, "rotated", rotated_dir);
  cJSON_AddNumberToObject(root, "tokens", (double)a->tokens);
  cJSON *inputs = cJSON_AddArrayToObject(root, "inputs");
  for (int l = 0; l < a->layers; l++)
    for (int input = 0; input < LINEAR_INPUT_COUNT; input++) {
      if (!activation_stats_at(a, l, input)->dim) continue;
      cJSON *o = cJSON_CreateObject();
      cJSON_AddNumberToObject(o, "layer", l);
      cJSON_AddStringToObject(o, "input", linear_input_name(input));
      cJSON_AddItemToObject(o, "original", stats_json(activation_stats_at(a, l, input)));
      cJSON_AddItemToObject(o, "rotated", stats_json(activation_stats_at(b, l, input)));
      cJSON_AddItemToArray(inputs, o);
    }
  int status = json_file_write(path, root, err);
  cJSON_Delete(root);
  return status;
}

/* The layer whose qkv input has the largest largest/median ratio. */
static int most_outlying_layer(const activation_stats *a) {
  int best = 0;
  double best_ratio = -1;
  for (int l = 0; l < a->layers; l++) {
    const input_stats *s = activation_stats_at(a, l, INPUT_QKV);
    double r = max_median_ratio(s->channel_max, s->dim);
    if (r > best_ratio) best_ratio = r, best = l;
  }
  return best;
}

int cmd_stats(int argc, char **argv) {
  const char *dir = NULL, *tokens_path = NULL, *rotated = NULL, *svg = NULL, *json = NULL, *input_name = "qkv";
  long seed = 0, segments = 20, ctx = 512, layer = -1;
  bool f32 = false;
  const arg_spec specs[] = {
      {"model", ARG_STRING, &dir},
      {"tokens", ARG_STRING, &tokens_path},
      {"rotated", ARG_STRING, &rotated},
      {"seed", ARG_LONG, &seed},
      {"segments", ARG_INT, &segments},
      {"ctx", ARG_INT, &ctx},
      {"svg", ARG_STRING, &svg},
      {"layer", ARG_INT, &layer},
      {"input", ARG_STRING, &input_name},
      {"json", ARG_STRING, &json},
      {"f32", ARG_FLAG, &f32},
  };
  int parsed = args_parse("stats", argc, argv, specs, (int)(sizeof specs / sizeof specs[0]));
  if (parsed == 1) {
    fputs(help, stdout);
    return 0;
  }
  if (parsed < 0) return 2;
  if (!dir || !tokens_path) {
    fprintf(stderr, "rotq stats: --model DIR and --tokens FILE are required (see rotq stats --help)\n");
    return 2;
  }
  const int input = linear_input_from_name(input_name);
  if (input < 0 || seed < 0 || segments < 0 || ctx < 1 || ctx > 1000000 || layer < -1) {
    fprintf(stderr, "rotq stats: bad option values (see rotq stats --help)\n");
    return 2;
  }
  heap_keep_freed_blocks();
  int32_t *tokens = NULL;
  size_t count = 0;
  activation_stats original = {0}, rotated_stats = {0};
  char scratch[4096] = "", rotated_dir[4200];
  rotq_error err;
  int status = token_file_read(tokens_path, &tokens, &count, &err);
  const char *rotated_label = rotated ? "rotated" : "rotated (R1R2)";
  if (status == 0 && !rotated) {
    status = work_dir_create("stats", json ? json : svg, scratch, sizeof scratch, &err);
    snprintf(rotated_dir, sizeof rotated_dir, "%s/rotated", scratch);
    cli_log log = {.command = "stats", .quiet = true};
    rotq_rotate_options o = {.model_dir = dir,
                             .output_dir = rotated_dir,
                             .seed = (uint64_t)seed,
                             .verify = 0,
                             .quiet = 1,
                             .log = cli_print_log,
                             .log_context = &log};
    if (status == 0) status = cli_rotate(&o, &err);
    rotated = rotated_dir;
  }
  if (status == 0) status = measure(dir, tokens, count, (int)ctx, (size_t)segments, f32, &original, &err);
  if (status == 0) status = measure(rotated, tokens, count, (int)ctx, (size_t)segments, f32, &rotated_stats, &err);
  if (status == 0 && rotated_stats.layers != original.layers)
    status = rotq_fail(&err, "%s has %d layers, %s %d", rotated, rotated_stats.layers, dir, original.layers);
  if (status == 0 && layer >= original.layers)
    status = rotq_fail(&err, "--layer %ld: the model has %d layers", layer, original.layers);
  if (status == 0) {
    printf("%zu tokens; max|x|: largest over channels of the per-channel max; max/med: its ratio to the "
           "median channel; kurt: mean per-token kurtosis across channels; W kurt: mean per-row kurtosis "
           "of the weights reading the input\n",
           original.tokens);
    print_table(&original, &rotated_stats);
  }
  if (status == 0 && json) status = write_json(json, dir, rotated, &original, &rotated_stats, &err);
  if (status == 0 && svg) {
    int l = layer >= 0 ? (int)layer : most_outlying_layer(&original);
    const input_stats *a = activation_stats_at(&original, l, input), *b = activation_stats_at(&rotated_stats, l, input);
    char title[512];
    snprintf(title, sizeof title, "layer %d, input of %s: largest |activation| per channel over %zu tokens", l,
             input == INPUT_QKV       ? "q/k/v_proj"
             : input == INPUT_GATE_UP ? "gate/up_proj"
                                      : linear_input_name(input),
             original.tokens);
    if (!a->dim)
      status = rotq_fail(&err, "layer %d has no %s input", l, input_name);
    else
      status = outlier_plot_write(svg, title, &(plot_panel){"original", a->channel_max},
                                  &(plot_panel){rotated_label, b->channel_max}, a->dim, &err);
    if (status == 0) printf("wrote %s (layer %d, %s)\n", svg, l, input_name);
  }
  if (status != 0) fprintf(stderr, "rotq stats: %s\n", err.message);
  if (scratch[0]) work_dir_remove(scratch);
  activation_stats_free(&original);
  activation_stats_free(&rotated_stats);
  free(tokens);
  return status ? 1 : 0;
}

/* rotq report: what rotation buys, measured — the fake-quantized perplexity and KL divergence of
 * a model, of its R1R2 rotation and of its R1R2+online rotation, for FP, W8A8, W4A16, W4A8, W4A4
 * and W4A4KV4, with RTN and GPTQ weights; as Markdown and JSON. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/args.h"
#include "eval/calibration.h"
#include "cli/commands.h"
#include "cli/heap.h"
#include "cli/rotate_run.h"
#include "cli/work_dir.h"
#include "io/json_file.h"
#include "eval/perplexity.h"
#include "linalg/quantize.h"
#include "eval/quantize_model.h"
#include "eval/token_file.h"
#include "rotq.h"

static const char *help =
    "usage: rotq report --model DIR --tokens FILE.u16 [--output PREFIX] [--segments 60] [options]\n\n"
    "Measures what rotation buys on your model and data. Rotates the model (R1R2, and R1R2 with the\n"
    "online rotations) into a scratch directory beside PREFIX (removed afterwards, also when\n"
    "interrupted), then evaluates each of the three, fake-quantized\n"
    "(see rotq eval --help), as FP, W8A8, W4A16, W4A8, W4A4 and W4A4KV4, with RTN and with GPTQ\n"
    "weights, and in the float formats W8A8 FP8 (E4M3), W4A4 MXFP4 and W4A4 NVFP4 (RTN weights;\n"
    "rotq eval --help describes them): perplexity on the first --segments segments of FILE, and the mean KL divergence "
    "per\n"
    "token from the unquantized original (meaningful also for synthetic models). GPTQ calibrates\n"
    "on the last --calib-n segments of --calib (default FILE), never on evaluated ones. Writes\n"
    "PREFIX.md (the table) and PREFIX.json (every number), prints the table, and shows progress\n"
    "on stderr. The online column is left out, with the reason, when online rotations are not\n"
    "available for the model.\n\n"
    "  --model DIR       checkpoint directory\n"
    "  --tokens FILE     token file (uint16 little-endian)\n"
    "  --output PREFIX   output files PREFIX.md and PREFIX.json (default rotq-report)\n"
    "  --segments N      evaluated segments, from the first (default 60)\n"
    "  --ctx N           tokens per segment (default 512)\n"
    "  --methods LIST    weight quantizers: rtn,gptq (default), rtn or gptq\n"
    "  --calib FILE      GPTQ calibration tokens (default: the --tokens file)\n"
    "  --calib-n N       calibration segments, from the end of the file (default 128)\n"
    "  --seed N          seed of the rotations (default 0)\n"
    "  --w-group G       input columns per weight scale (default 0 = per output channel)\n"
    "  --act-order       GPTQ: columns of largest Hessian diagonal first\n"
    "  --damp X          GPTQ: relative damping (default 0.01)\n"
    "  --a-clip X        activation clip ratio (default 0.9)\n"
    "  --kv-clip X       KV clip ratio (default 0.95)\n"
    "  --f32             compute in float32 (default float64)\n";

/* One row of the table: a quantization setting; format rows quantize weights and activations to
 * a float format (linalg/quantize.h), weights by RTN. */
typedef struct quant_config {
  const char *name;
  int wbits, abits, kvbits;
  quant_format format;
} quant_config;

static const quant_config configs[] = {
    {"FP", 16, 16, 16, QUANT_INT},     {"W8A8", 8, 8, 16, QUANT_INT},         {"W4A16", 4, 16, 16, QUANT_INT},
    {"W4A8", 4, 8, 16, QUANT_INT},     {"W4A4", 4, 4, 16, QUANT_INT},         {"W4A4KV4", 4, 4, 4, QUANT_INT},
    {"W8A8 FP8", 8, 8, 16, QUANT_FP8}, {"W4A4 MXFP4", 4, 4, 16, QUANT_MXFP4}, {"W4A4 NVFP4", 4, 4, 16, QUANT_NVFP4},
};
#define CONFIG_COUNT (int)(sizeof configs / sizeof configs[0])

enum { VARIANT_ORIGINAL, VARIANT_R1R2, VARIANT_ONLINE, VARIANT_COUNT };
static const char *const variant_names[VARIANT_COUNT] = {"original", "R1R2", "R1R2+online"};

/* A measured cell (ppl < 0: not measured). */
typedef struct cell {
  double ppl, kl;
} cell;

typedef struct report {
  /* inputs */
  const char *model_dir, *tokens_path, *calib_path;
  const int32_t *tokens;
  size_t count, segments;
  int ctx;
  bool f32;
  activation_quant act; /* clips; bits set per config */
  weight_quant weight;  /* group, act_order, damp; bits and method per cell */
  bool method_used[2];  /* RTN, GPTQ */
  calibration_data *calibration;
  /* the three checkpoints; dirs[v] NULL when unavailable */
  const char *dirs[VARIANT_COUNT];
  char unavailable[VARIANT_COUNT][512];
  model *reference;
  /* results [variant][config][method] */
  cell cells[VARIANT_COUNT][CONFIG_COUNT][2];
  size_t predicted; /* tokens predicted per evaluation */
  bool tty;         /* stderr is a terminal: GPTQ's per-layer progress on one line */
  int done, total;
  double start;
} report;

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char *method_name(int method) { return method == WEIGHT_GPTQ ? "GPTQ" : "RTN"; }

static void show_gptq_progress(int done, int layers, void *user) {
  fprintf(stderr, "\rrotq report:   GPTQ layer %d/%d", done, layers);
  if (done == layers) fprintf(stderr, "\n");
}

/* Evaluates the loaded model m with config's activation bits into r->cells[v][c][method]. */
static int evaluate(report *r, model *m, int v, int c, int method, rotq_error *err) {
  activation_quant act = r->act;
  act.abits = configs[c].abits;
  act.kvbits = configs[c].kvbits;
  act.aformat = (int)configs[c].format;
  if (model_set_activation_quant(m, &act, err) != 0) return -1;
  const perplexity_options o = {.ctx = r->ctx, .max_segments = r->segments, .reference = r->reference};
  perplexity_result result;
  double t0 = now_seconds();
  if (perplexity_measure(m, r->tokens, r->count, &o, &result, err) != 0)
    return rotq_fail_context(err, "%s %s", variant_names[v], configs[c].name);
  r->cells[v][c][method] = (cell){result.ppl, result.kl};
  r->predicted = result.predicted;
  r->done++;
  fprintf(stderr, "rotq report: [%d/%d] %-11s %-7s %-4s ppl %9.4f  KL %.4g  (%.1fs, %.0fs in all)\n", r->done, r->total,
          variant_names[v], configs[c].name, c == 0 ? "" : method_name(method), result.ppl, result.kl,
          now_seconds() - t0, now_seconds() - r->start);
  return 0;
}

/* Rows c and k quantize their weights alike (bits and format). */
static bool same_weights(int c, int k) {
  return configs[c].wbits == configs[k].wbits && configs[c].format == configs[k].format;
}

/* Every cell of variant v: FP, then per method and weight setting (bits and format) a model
 * quantized once and evaluated with each activation setting of those weights. */
static int evaluate_variant(report *r, int v, rotq_error *err) {
  model_options options = {.f32 = r->f32};
  model *m = NULL;
  if (model_load(r->dirs[v], &options, &m, err) != 0) return -1;
  int status = evaluate(r, m, v, 0, WEIGHT_RTN, err);
  model_free(m);
  if (status == 0 && v != VARIANT_ORIGINAL && r->cells[v][0][0].kl > 1e-6)
    status = rotq_fail(err,
                       "%s: the %s checkpoint does not compute the original's function "
                       "(KL %.3g); a quantized comparison would be meaningless",
                       r->dirs[v], variant_names[v], r->cells[v][0][0].kl);
  for (int method = 0; method < 2 && status == 0; method++) {
    if (!r->method_used[method]) continue;
    for (int c = 1; c < CONFIG_COUNT && status == 0; c++) {
      /* rows whose weights are alike share one quantized model, made at the first of them */
      bool first = configs[c].format == QUANT_INT || method == WEIGHT_RTN; /* float formats: RTN only */
      for (int p = 1; first && p < c; p++) first = !same_weights(p, c);
      if (!first) continue;
      weight_quant wq = r->weight;
      wq.bits = configs[c].wbits;
      wq.format = (int)configs[c].format;
      wq.method = (weight_method)method;
      status = model_load(r->dirs[v], &options, &m, err);
      if (status == 0) {
        if (method == WEIGHT_GPTQ) fprintf(stderr, "rotq report: GPTQ W%d of %s\n", wq.bits, variant_names[v]);
        status = model_quantize_weights(m, &wq, method == WEIGHT_GPTQ ? &r->calibration->set : NULL,
                                        method == WEIGHT_GPTQ && r->tty ? show_gptq_progress : NULL, NULL, err);
      }
      for (int k = c; k < CONFIG_COUNT && status == 0; k++)
        if (same_weights(k, c)) status = evaluate(r, m, v, k, method, err);
      model_free(m);
      m = NULL;
    }
  }
  return status;
}

static void format_cell(char *buf, size_t size, double v, bool ppl) {
  if (v < 0)
    snprintf(buf, size, "—");
  else if (ppl)
    snprintf(buf, size, v < 1000 ? "%.3f" : "%.4g", v);
  else
    snprintf(buf, size, v == 0 ? "0" : v < 1e-3 ? "%.1e" : "%.4f", v);
}

/* The Markdown table (and its header) to f. */
static void write_markdown(FILE *f, const report *r) {
  fprintf(f,
          "Model `%s`, tokens `%s`: %zu segments (the first), %d tokens each at most, %zu tokens "
          "predicted; KL = mean KL(p_original,FP ‖ p) per token, nats.\n",
          r->model_dir, r->tokens_path, r->segments, r->ctx, r->predicted);
  if (r->method_used[WEIGHT_GPTQ])
    fprintf(f, "GPTQ calibration: the last %zu segments of `%s` (%d tokens each at most), damping %g%s.\n",
            r->calibration->set.segment_count, r->calib_path, r->ctx, r->weight.damp > 0 ? r->weight.damp : 0.01,
            r->weight.act_order ? ", act-order" : "");
  fprintf(f,
          "Weights symmetric per %s; activations per token symmetric, clip %g; KV asymmetric per %s, "
          "clip %g; rotq %s, %s.\n\n",
          r->weight.group > 0 ? "group of input columns" : "output channel", r->act.a_clip,
          r->act.kv_group > 0 ? "group" : "head", r->act.kv_clip, rotq_version(), r->f32 ? "float32" : "float64");
  fprintf(f, "| Config | Weights |");
  for (int v = 0; v < VARIANT_COUNT; v++)
    if (r->dirs[v]) fprintf(f, " %s ppl | %s KL |", variant_names[v], variant_names[v]);
  fprintf(f, "\n|---|---|");
  for (int v = 0; v < VARIANT_COUNT; v++)
    if (r->dirs[v]) fprintf(f, "---:|---:|");
  fprintf(f, "\n");
  for (int c = 0; c < CONFIG_COUNT; c++)
    for (int method = 0; method < 2; method++) {
      if ((c == 0 || configs[c].format != QUANT_INT) && method > 0) continue;
      if (c > 0 && !r->method_used[method]) continue;
      fprintf(f, "| %s | %s |", configs[c].name, c == 0 ? "—" : method_name(method));
      for (int v = 0; v < VARIANT_COUNT; v++) {
        if (!r->dirs[v]) continue;
        char ppl[32], kl[32];
        format_cell(ppl, sizeof ppl, r->cells[v][c][method].ppl, true);
        format_cell(kl, sizeof kl, r->cells[v][c][method].kl, false);
        fprintf(f, " %s | %s |", ppl, kl);
      }
      fprintf(f, "\n");
    }
  for (int v = 0; v < VARIANT_COUNT; v++)
    if (!r->dirs[v]) fprintf(f, "\nNo %s column: %s\n", variant_names[v], r->unavailable[v]);
}

static int write_json(const char *path, const report *r, rotq_error *err) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "rotq_version", rotq_version());
  cJSON_AddStringToObject(root, "model", r->model_dir);
  cJSON_AddStringToObject(root, "tokens", r->tokens_path);
  cJSON_AddNumberToObject(root, "segments", (double)r->segments);
  cJSON_AddNumberToObject(root, "ctx", r->ctx);
  cJSON_AddNumberToObject(root, "predicted_tokens", (double)r->predicted);
  if (r->method_used[WEIGHT_GPTQ]) {
    cJSON *cal = cJSON_AddObjectToObject(root, "calibration");
    cJSON_AddStringToObject(cal, "tokens", r->calib_path);
    cJSON_AddNumberToObject(cal, "first_segment", (double)r->calibration->first);
    cJSON_AddNumberToObject(cal, "segments", (double)r->calibration->set.segment_count);
    cJSON_AddNumberToObject(cal, "damp", r->weight.damp > 0 ? r->weight.damp : 0.01);
    cJSON_AddBoolToObject(cal, "act_order", r->weight.act_order);
  }
  cJSON_AddNumberToObject(root, "w_group", r->weight.group);
  cJSON_AddNumberToObject(root, "a_clip", r->act.a_clip);
  cJSON_AddNumberToObject(root, "kv_clip", r->act.kv_clip);
  cJSON_AddStringToObject(root, "compute", r->f32 ? "float32" : "float64");
  cJSON *unavailable = cJSON_AddObjectToObject(root, "unavailable");
  cJSON *results = cJSON_AddArrayToObject(root, "results");
  for (int v = 0; v < VARIANT_COUNT; v++) {
    if (!r->dirs[v]) {
      cJSON_AddStringToObject(unavailable, variant_names[v], r->unavailable[v]);
      continue;
    }
    for (int c = 0; c < CONFIG_COUNT; c++)
      for (int method = 0; method < 2; method++) {
        const cell *x = &r->cells[v][c][method];
        if (x->ppl < 0) continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", variant_names[v]);
        cJSON_AddStringToObject(o, "config", configs[c].name);
        cJSON_AddNumberToObject(o, "wbits", configs[c].wbits);
        cJSON_AddNumberToObject(o, "abits", configs[c].abits);
        cJSON_AddNumberToObject(o, "kvbits", configs[c].kvbits);
        cJSON_AddStringToObject(o, "format", quant_format_name(configs[c].format));
        if (c > 0) cJSON_AddStringToObject(o, "weights", method == WEIGHT_GPTQ ? "gptq" : "rtn");
        cJSON_AddNumberToObject(o, "ppl", x->ppl);
        cJSON_AddNumberToObject(o, "kl", x->kl);
        cJSON_AddItemToArray(results, o);
      }
  }
  int status = json_file_write(path, root, err);
  cJSON_Delete(root);
  return status;
}

/* Rotates r->model_dir into work/<name>; on failure of the online rotation, records why. */
static int rotate_variant(report *r, int v, const char *work, uint64_t seed, char *dir, size_t size, rotq_error *err) {
  snprintf(dir, size, "%s/%s", work, v == VARIANT_ONLINE ? "r1r2-online" : "r1r2");
  fprintf(stderr, "rotq report: rotating (%s) into %s\n", variant_names[v], dir);
  rotq_rotate_options o = {.model_dir = r->model_dir,
                           .output_dir = dir,
                           .seed = seed,
                           .online = v == VARIANT_ONLINE,
                           .verify = 0,
                           .quiet = 1,
                           .log = cli_print_log,
                           .log_context = &(cli_log){.command = "report", .quiet = true}};
  if (cli_rotate(&o, err) == 0) {
    r->dirs[v] = dir;
    return 0;
  }
  if (v != VARIANT_ONLINE) return -1;
  snprintf(r->unavailable[v], sizeof r->unavailable[v], "%s", err->message);
  fprintf(stderr, "rotq report: no %s column: %s\n", variant_names[v], err->message);
  return 0;
}

static int write_outputs(const char *prefix, const report *r, rotq_error *err) {
  char path[4200];
  snprintf(path, sizeof path, "%s.md", prefix);
  FILE *f = fopen(path, "w");
  if (!f) return rotq_fail(err, "%s: cannot create: %s", path, strerror(errno));
  write_markdown(f, r);
  if (fclose(f) != 0) return rotq_fail(err, "%s: cannot write: %s", path, strerror(errno));
  snprintf(path, sizeof path, "%s.json", prefix);
  if (write_json(path, r, err) != 0) return -1;
  write_markdown(stdout, r);
  printf("\nwrote %s.md and %s.json\n", prefix, prefix);
  return 0;
}

int cmd_report(int argc, char **argv) {
  const char *dir = NULL, *tokens_path = NULL, *output = "rotq-report", *methods = "rtn,gptq", *calib_path = NULL;
  long segments = 60, ctx = 512, calib_n = 128, seed = 0, w_group = 0;
  double damp = 0.01, a_clip = 0.9, kv_clip = 0.95;
  bool f32 = false, act_order = false;
  const arg_spec specs[] = {
      {"model", ARG_STRING, &dir},
      {"tokens", ARG_STRING, &tokens_path},
      {"output", ARG_STRING, &output},
      {"segments", ARG_INT, &segments},
      {"ctx", ARG_INT, &ctx},
      {"methods", ARG_STRING, &methods},
      {"calib", ARG_STRING, &calib_path},
      {"calib-n", ARG_INT, &calib_n},
      {"seed", ARG_LONG, &seed},
      {"w-group", ARG_INT, &w_group},
      {"act-order", ARG_FLAG, &act_order},
      {"damp", ARG_DOUBLE, &damp},
      {"a-clip", ARG_DOUBLE, &a_clip},
      {"kv-clip", ARG_DOUBLE, &kv_clip},
      {"f32", ARG_FLAG, &f32},
  };
  int parsed = args_parse("report", argc, argv, specs, (int)(sizeof specs / sizeof specs[0]));
  if (parsed == 1) {
    fputs(help, stdout);
    return 0;
  }
  if (parsed < 0) return 2;
  if (!dir || !tokens_path) {
    fprintf(stderr, "rotq report: --model DIR and --tokens FILE are required (see rotq report --help)\n");
    return 2;
  }
  const bool rtn = strcmp(methods, "rtn") == 0 || strcmp(methods, "rtn,gptq") == 0 || strcmp(methods, "gptq,rtn") == 0;
  const bool gptq =
      strcmp(methods, "gptq") == 0 || strcmp(methods, "rtn,gptq") == 0 || strcmp(methods, "gptq,rtn") == 0;
  if (!rtn && !gptq) {
    fprintf(stderr, "rotq report: --methods takes rtn,gptq, rtn or gptq, not '%s'\n", methods);
    return 2;
  }
  if (segments < 1 || ctx < 2 || ctx > 1000000 || calib_n < 1 || seed < 0 || w_group < 0 ||
      !(a_clip > 0 && a_clip <= 1) || !(kv_clip > 0 && kv_clip <= 1)) {
    fprintf(stderr, "rotq report: bad option values (see rotq report --help)\n");
    return 2;
  }
  if (!calib_path) calib_path = tokens_path;

  heap_keep_freed_blocks();
  report *r = calloc(1, sizeof *r);
  int32_t *tokens = NULL;
  calibration_data calibration = {0};
  char work[4096] = "", dirs[VARIANT_COUNT][4200];
  rotq_error err;
  int status = r ? 0 : rotq_fail(&err, "out of memory");
  if (status == 0) {
    *r = (report){.model_dir = dir,
                  .tokens_path = tokens_path,
                  .calib_path = calib_path,
                  .ctx = (int)ctx,
                  .f32 = f32,
                  .act = {.a_clip = a_clip, .kv_clip = kv_clip},
                  .weight = {.group = (int)w_group, .act_order = act_order, .damp = damp},
                  .method_used = {rtn, gptq},
                  .calibration = &calibration,
                  .start = now_seconds(),
                  .tty = isatty(STDERR_FILENO)};
    for (int v = 0; v < VARIANT_COUNT; v++)
      for (int c = 0; c < CONFIG_COUNT; c++) r->cells[v][c][0].ppl = r->cells[v][c][1].ppl = -1;
    status = token_file_read(tokens_path, &tokens, &r->count, &err);
    r->tokens = tokens;
  }
  if (status == 0 && gptq) status = calibration_load(calib_path, (size_t)calib_n, (int)ctx, &calibration, &err);
  if (status == 0)
    status =
        evaluation_segments(tokens_path, calib_path, gptq ? &calibration : NULL, (size_t)segments, &r->segments, &err);
  if (status == 0) status = work_dir_create("report", output, work, sizeof work, &err);
  r->dirs[VARIANT_ORIGINAL] = dir;
  for (int v = VARIANT_R1R2; v < VARIANT_COUNT && status == 0; v++)
    status = rotate_variant(r, v, work, (uint64_t)seed, dirs[v], sizeof dirs[v], &err);
  if (status == 0) status = model_load(dir, &(model_options){.f32 = f32}, &r->reference, &err);
  if (status == 0) {
    int variants = 0;
    for (int v = 0; v < VARIANT_COUNT; v++) variants += r->dirs[v] != NULL;
    int float_rows = 0;
    for (int c = 0; c < CONFIG_COUNT; c++) float_rows += configs[c].format != QUANT_INT;
    r->total = variants * (1 + (rtn + gptq) * (CONFIG_COUNT - 1 - float_rows) + rtn * float_rows);
  }
  for (int v = 0; v < VARIANT_COUNT && status == 0; v++)
    if (r->dirs[v]) status = evaluate_variant(r, v, &err);
  if (status == 0) status = write_outputs(output, r, &err);
  if (status != 0) fprintf(stderr, "rotq report: %s\n", err.message);
  if (work[0]) work_dir_remove(work);
  if (r) model_free(r->reference);
  calibration_free(&calibration);
  free(tokens);
  free(r);
  return status ? 1 : 0;
}

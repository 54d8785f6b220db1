/* rotq report: what rotation buys, measured (rotq_report, eval/report.c, runs the experiment) —
 * formatted here as Markdown and JSON. The command owns the process: the scratch directory and
 * its signal handlers (cli/work_dir.h), and, while the rotations run, rotate's (cli/rotate_run.h). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/heap.h"
#include "cli/report_format.h"
#include "cli/rotate_run.h"
#include "cli/work_dir.h"
#include "io/json_file.h"
#include "rotq.h"

static const char *help =
    "usage: rotq report --model DIR --tokens FILE.u16 [--output PREFIX] [--segments 60] [options]\n"
    "       rotq report --format mxfp4|nvfp4|fp8|int4 --model DIR --tokens FILE.u16 [options]\n\n"
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
    "With --format F, the table for one target format instead: the original, the full-size rotation\n"
    "(R1R2), the group-sized rotation (R1R2 block: R1, R2 and the online R4 and heads rotations\n"
    "block-diagonal, blocks of at most --block-size, see rotq rotate --block-size) and the\n"
    "group-sized rotation with the online rotations, as FP, weights only, activations only and\n"
    "both, weights by RTN. mxfp4: groups of 32 (block 32); nvfp4: groups of 16 (block 16); fp8:\n"
    "E4M3 per output channel / per token (block 128); int4: symmetric INT4, weights and activations\n"
    "in groups of --w-group values (default 128; block the same). --methods, --calib, --calib-n,\n"
    "--act-order, --damp and --kv-clip do not apply.\n\n"
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
    "  --f32             compute in float32 (default float64)\n"
    "  --format F        the one-format table above: mxfp4, nvfp4, fp8 or int4\n"
    "  --block-size B    with --format: the group-sized rotations' block, a power of two (default the\n"
    "                    format's group, as above)\n";

/* What the formatting needs: the options as given and the experiment's numbers. */
typedef struct report {
  const char *model_dir, *tokens_path, *calib_path;
  int ctx;
  bool f32, act_order, rtn, gptq;
  int w_group;
  double damp, a_clip, kv_clip;
  const rotq_report_result *x;
} report;

/* The progress of rotq_report: while it rotates, the process is set up as for `rotq rotate`
 * (signals into a flag its cancel callback returns, OpenBLAS on one thread); once it evaluates,
 * the scratch directory's handlers act at once. GPTQ's layers on one line on a terminal. */
typedef struct report_process {
  bool rotating, tty;
} report_process;

static void on_progress(const rotq_progress *p, void *context) {
  report_process *rp = context;
  if (!strcmp(p->phase, "rotate") && !rp->rotating) {
    cli_rotation_begin();
    rp->rotating = true;
  } else if (!strcmp(p->phase, "evaluate") && rp->rotating) {
    cli_rotation_end();
    rp->rotating = false;
  } else if (!strcmp(p->phase, "gptq") && rp->tty) {
    fprintf(stderr, "\rrotq report:   GPTQ layer %d/%d", p->layer, p->layers);
    if (p->layer == p->layers) fprintf(stderr, "\n");
  }
}

static const char *method_name(int method) { return method == 1 ? "GPTQ" : "RTN"; }

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
          r->model_dir, r->tokens_path, r->x->segments, r->ctx, r->x->predicted);
  if (r->gptq)
    fprintf(f, "GPTQ calibration: the last %zu segments of `%s` (%d tokens each at most), damping %g%s.\n",
            r->x->calib_segments, r->calib_path, r->ctx, r->damp > 0 ? r->damp : 0.01,
            r->act_order ? ", act-order" : "");
  fprintf(f,
          "Weights symmetric per %s; activations per token symmetric, clip %g; KV asymmetric per %s, "
          "clip %g; rotq %s, %s.\n\n",
          r->w_group > 0 ? "group of input columns" : "output channel", r->a_clip, "head", r->kv_clip, rotq_version(),
          r->f32 ? "float32" : "float64");
  fprintf(f, "| Config | Weights |");
  for (int v = 0; v < ROTQ_REPORT_VARIANTS; v++)
    if (r->x->available[v]) fprintf(f, " %s ppl | %s KL |", r->x->variant_names[v], r->x->variant_names[v]);
  fprintf(f, "\n|---|---|");
  for (int v = 0; v < ROTQ_REPORT_VARIANTS; v++)
    if (r->x->available[v]) fprintf(f, "---:|---:|");
  fprintf(f, "\n");
  for (int c = 0; c < ROTQ_REPORT_ROWS; c++)
    for (int method = 0; method < 2; method++) {
      if ((c == 0 || strcmp(r->x->rows[c].format, "int") != 0) && method > 0) continue;
      if (c > 0 && !(method ? r->gptq : r->rtn)) continue;
      fprintf(f, "| %s | %s |", r->x->rows[c].name, c == 0 ? "—" : method_name(method));
      for (int v = 0; v < ROTQ_REPORT_VARIANTS; v++) {
        if (!r->x->available[v]) continue;
        char ppl[32], kl[32];
        format_cell(ppl, sizeof ppl, r->x->ppl[v][c][method], true);
        format_cell(kl, sizeof kl, r->x->kl[v][c][method], false);
        fprintf(f, " %s | %s |", ppl, kl);
      }
      fprintf(f, "\n");
    }
  for (int v = 0; v < ROTQ_REPORT_VARIANTS; v++)
    if (!r->x->available[v]) fprintf(f, "\nNo %s column: %s\n", r->x->variant_names[v], r->x->unavailable[v]);
}

static int write_json(const char *path, const report *r, rotq_error *err) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "rotq_version", rotq_version());
  cJSON_AddStringToObject(root, "model", r->model_dir);
  cJSON_AddStringToObject(root, "tokens", r->tokens_path);
  cJSON_AddNumberToObject(root, "segments", (double)r->x->segments);
  cJSON_AddNumberToObject(root, "ctx", r->ctx);
  cJSON_AddNumberToObject(root, "predicted_tokens", (double)r->x->predicted);
  if (r->gptq) {
    cJSON *cal = cJSON_AddObjectToObject(root, "calibration");
    cJSON_AddStringToObject(cal, "tokens", r->calib_path);
    cJSON_AddNumberToObject(cal, "first_segment", (double)r->x->calib_first);
    cJSON_AddNumberToObject(cal, "segments", (double)r->x->calib_segments);
    cJSON_AddNumberToObject(cal, "damp", r->damp > 0 ? r->damp : 0.01);
    cJSON_AddBoolToObject(cal, "act_order", r->act_order);
  }
  cJSON_AddNumberToObject(root, "w_group", r->w_group);
  cJSON_AddNumberToObject(root, "a_clip", r->a_clip);
  cJSON_AddNumberToObject(root, "kv_clip", r->kv_clip);
  cJSON_AddStringToObject(root, "compute", r->f32 ? "float32" : "float64");
  cJSON *unavailable = cJSON_AddObjectToObject(root, "unavailable");
  cJSON *results = cJSON_AddArrayToObject(root, "results");
  for (int v = 0; v < ROTQ_REPORT_VARIANTS; v++) {
    if (!r->x->available[v]) {
      cJSON_AddStringToObject(unavailable, r->x->variant_names[v], r->x->unavailable[v]);
      continue;
    }
    for (int c = 0; c < ROTQ_REPORT_ROWS; c++)
      for (int method = 0; method < 2; method++) {
        if (r->x->ppl[v][c][method] < 0) continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", r->x->variant_names[v]);
        cJSON_AddStringToObject(o, "config", r->x->rows[c].name);
        cJSON_AddNumberToObject(o, "wbits", r->x->rows[c].wbits);
        cJSON_AddNumberToObject(o, "abits", r->x->rows[c].abits);
        cJSON_AddNumberToObject(o, "kvbits", r->x->rows[c].kvbits);
        cJSON_AddStringToObject(o, "format", r->x->rows[c].format);
        if (c > 0) cJSON_AddStringToObject(o, "weights", method == 1 ? "gptq" : "rtn");
        cJSON_AddNumberToObject(o, "ppl", r->x->ppl[v][c][method]);
        cJSON_AddNumberToObject(o, "kl", r->x->kl[v][c][method]);
        cJSON_AddItemToArray(results, o);
      }
  }
  int status = json_file_write(path, root, err);
  cJSON_Delete(root);
  return status;
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
  const char *dir = NULL, *tokens_path = NULL, *output = "rotq-report", *methods = "rtn,gptq", *calib_path = NULL,
             *format = NULL;
  long segments = 60, ctx = 512, calib_n = 128, seed = 0, w_group = 0, block_size = 0;
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
      {"format", ARG_STRING, &format},
      {"block-size", ARG_INT, &block_size},
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
  if (format && strcmp(format, "mxfp4") != 0 && strcmp(format, "nvfp4") != 0 && strcmp(format, "fp8") != 0 &&
      strcmp(format, "int4") != 0) {
    fprintf(stderr, "rotq report: --format takes mxfp4, nvfp4, fp8 or int4, not '%s'\n", format);
    return 2;
  }
  if (block_size < 0 || block_size > (1L << 20) || (block_size & (block_size - 1)) || (block_size && !format)) {
    fprintf(stderr, "rotq report: --block-size takes a power of two, with --format (see rotq report --help)\n");
    return 2;
  }
  if (!calib_path) calib_path = tokens_path;
  heap_keep_freed_blocks();
  report r = {.model_dir = dir,
              .tokens_path = tokens_path,
              .calib_path = calib_path,
              .ctx = (int)ctx,
              .f32 = f32,
              .act_order = act_order,
              .rtn = rtn,
              .gptq = gptq,
              .w_group = (int)w_group,
              .damp = damp,
              .a_clip = a_clip,
              .kv_clip = kv_clip};
  rotq_report_result *result = calloc(1, sizeof *result);
  rotq_format_report_result *format_result = format ? calloc(1, sizeof *format_result) : NULL;
  char work[4096] = "";
  rotq_error err;
  int status = result && (format_result || !format) ? 0 : rotq_fail(&err, "out of memory");
  if (status == 0) status = work_dir_create("report", output, work, sizeof work, &err);
  cli_log log = {.command = "report"};
  report_process process = {.tty = isatty(STDERR_FILENO)};
  const rotq_report_options o = {.model_dir = dir,
                                 .tokens_path = tokens_path,
                                 .scratch_dir = work,
                                 .segments = (size_t)segments,
                                 .ctx = (int)ctx,
                                 .rtn = rtn,
                                 .gptq = gptq,
                                 .calib_path = calib_path,
                                 .calib_segments = (size_t)calib_n,
                                 .seed = (uint64_t)seed,
                                 .w_group = (int)w_group,
                                 .act_order = act_order,
                                 .damp = damp,
                                 .a_clip = a_clip,
                                 .kv_clip = kv_clip,
                                 .f32 = f32,
                                 .log = cli_print_log,
                                 .log_context = &log,
                                 .on_progress = on_progress,
                                 .progress_context = &process,
                                 .cancel = cli_interrupted};
  if (status == 0) {
    status =
        format ? rotq_report_format(&o, format, (int)block_size, format_result, &err) : rotq_report(&o, result, &err);
    if (process.rotating) cli_rotation_end();
    int sig = cli_interrupted(NULL);
    if (status != 0 && sig) rotq_fail(&err, "interrupted by signal %d; the scratch directory was removed", sig);
  }
  r.x = result;
  const report_format_run run = {
      .model_dir = dir, .tokens_path = tokens_path, .ctx = (int)ctx, .a_clip = a_clip, .f32 = f32};
  if (status == 0)
    status = format ? report_format_write(output, &run, format_result, &err) : write_outputs(output, &r, &err);
  if (status != 0) fprintf(stderr, "rotq report: %s\n", err.message);
  if (work[0]) work_dir_remove(work);
  free(result);
  free(format_result);
  return status ? 1 : 0;
}

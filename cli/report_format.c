/* `rotq report --format`: rotq_report_format's numbers as Markdown and JSON (cli/report_format.h). */
#include "cli/report_format.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "io/json_file.h"

static void cell(char *buf, size_t size, double v, bool ppl) {
  if (v < 0)
    snprintf(buf, size, "—");
  else if (ppl)
    snprintf(buf, size, v < 1000 ? "%.3f" : "%.4g", v);
  else
    snprintf(buf, size, v == 0 ? "0" : v < 1e-3 ? "%.1e" : "%.4f", v);
}

static void write_markdown(FILE *f, const report_format_run *run, const rotq_format_report_result *x) {
  fprintf(f,
          "Model `%s`, tokens `%s`: %zu segments (the first), %d tokens each at most, %zu tokens predicted; "
          "KL = mean KL(p_original,FP ‖ p) per token, nats.\n",
          run->model_dir, run->tokens_path, x->segments, run->ctx, x->predicted);
  if (x->group > 0)
    fprintf(f, "Format %s: weights (RTN) and activations in groups of %d values along the input", x->format, x->group);
  else
    fprintf(f, "Format %s: weights (RTN) per output channel, activations per token", x->format);
  if (!strcmp(x->format, "int4")) fprintf(f, ", symmetric, activation clip %g", run->a_clip);
  fprintf(f,
          ". R1R2 = full-size rotations; R1R2 block = group-sized: R1, R2 (and online R4, heads) block-diagonal "
          "with blocks of at most %d; rotq %s, %s.\n\n",
          x->block_size, rotq_version(), run->f32 ? "float32" : "float64");
  fprintf(f, "| Config |");
  for (int v = 0; v < ROTQ_FORMAT_VARIANTS; v++)
    if (x->available[v]) fprintf(f, " %s ppl | %s KL |", x->variant_names[v], x->variant_names[v]);
  fprintf(f, "\n|---|");
  for (int v = 0; v < ROTQ_FORMAT_VARIANTS; v++)
    if (x->available[v]) fprintf(f, "---:|---:|");
  fprintf(f, "\n");
  for (int r = 0; r < ROTQ_FORMAT_ROWS; r++) {
    fprintf(f, "| %s |", x->row_names[r]);
    for (int v = 0; v < ROTQ_FORMAT_VARIANTS; v++) {
      if (!x->available[v]) continue;
      char ppl[32], kl[32];
      cell(ppl, sizeof ppl, x->ppl[v][r], true);
      cell(kl, sizeof kl, x->kl[v][r], false);
      fprintf(f, " %s | %s |", ppl, kl);
    }
    fprintf(f, "\n");
  }
  for (int v = 0; v < ROTQ_FORMAT_VARIANTS; v++)
    if (!x->available[v]) fprintf(f, "\nNo %s column: %s\n", x->variant_names[v], x->unavailable[v]);
}

static int write_json(const char *path, const report_format_run *run, const rotq_format_report_result *x,
                      rotq_error *err) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "rotq_version", rotq_version());
  cJSON_AddStringToObject(root, "model", run->model_dir);
  cJSON_AddStringToObject(root, "tokens", run->tokens_path);
  cJSON_AddNumberToObject(root, "segments", (double)x->segments);
  cJSON_AddNumberToObject(root, "ctx", run->ctx);
  cJSON_AddNumberToObject(root, "predicted_tokens", (double)x->predicted);
  cJSON_AddStringToObject(root, "format", x->format);
  cJSON_AddNumberToObject(root, "group", x->group);
  cJSON_AddNumberToObject(root, "block_size", x->block_size);
  cJSON_AddStringToObject(root, "weights", "rtn");
  cJSON_AddStringToObject(root, "compute", run->f32 ? "float32" : "float64");
  cJSON *unavailable = cJSON_AddObjectToObject(root, "unavailable");
  cJSON *results = cJSON_AddArrayToObject(root, "results");
  for (int v = 0; v < ROTQ_FORMAT_VARIANTS; v++) {
    if (!x->available[v]) {
      cJSON_AddStringToObject(unavailable, x->variant_names[v], x->unavailable[v]);
      continue;
    }
    for (int r = 0; r < ROTQ_FORMAT_ROWS; r++) {
      if (x->ppl[v][r] < 0) continue;
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "model", x->variant_names[v]);
      cJSON_AddStringToObject(o, "config", x->row_names[r]);
      cJSON_AddBoolToObject(o, "weights_quantized", r == 1 || r == 3);
      cJSON_AddBoolToObject(o, "activations_quantized", r == 2 || r == 3);
      cJSON_AddNumberToObject(o, "ppl", x->ppl[v][r]);
      cJSON_AddNumberToObject(o, "kl", x->kl[v][r]);
      cJSON_AddItemToArray(results, o);
    }
  }
  int status = json_file_write(path, root, err);
  cJSON_Delete(root);
  return status;
}

int report_format_write(const char *prefix, const report_format_run *run, const rotq_format_report_result *x,
                        rotq_error *err) {
  char path[4200];
  snprintf(path, sizeof path, "%s.md", prefix);
  FILE *f = fopen(path, "w");
  if (!f) return rotq_fail(err, "%s: cannot create: %s", path, strerror(errno));
  write_markdown(f, run, x);
  if (fclose(f) != 0) return rotq_fail(err, "%s: cannot write: %s", path, strerror(errno));
  snprintf(path, sizeof path, "%s.json", prefix);
  if (write_json(path, run, x, err) != 0) return -1;
  write_markdown(stdout, run, x);
  printf("\nwrote %s.md and %s.json\n", prefix, prefix);
  return 0;
}

/* rotq eval's quantization options, rotq stats and rotq report on the bundled model: outputs,
 * files and refusals. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json_file.h"
#include "support/test_support.h"

static char *scratch;

static int setup(void **state) {
  scratch = scratch_dir("quant-cli");
  return 0;
}

static int teardown(void **state) {
  scratch_remove(scratch);
  free(scratch);
  return 0;
}

/* The whole of a file (malloc'd; empty string when missing). */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  char *text = calloc(1, 1 << 20);
  if (f) {
    size_t n = fread(text, 1, (1 << 20) - 1, f);
    text[n] = 0;
    fclose(f);
  }
  return text;
}

/* Runs `rotq <args>` with stdout and stderr into scratch/out; returns the exit status. */
static int rotq(const char *args) { return run_command("%s %s > %s/out 2>&1", getenv("ROTQ_BIN"), args, scratch); }

static void expect_output(const char *needle) {
  char path[4200];
  snprintf(path, sizeof path, "%s/out", scratch);
  char *text = slurp(path);
  if (!strstr(text, needle)) fail_msg("output lacks '%s':\n%s", needle, text);
  free(text);
}

#define MODEL "--model %s/models/stories260K --tokens %s/data/tinystories_val.tok512.u16"

/* fmt with MODEL's paths, then up to two scratch directories, filled in. */
static const char *with_model(const char *fmt) {
  static char buf[8192];
  const char *root = getenv("ROTQ_SOURCE_DIR");
  snprintf(buf, sizeof buf, fmt, root, root, scratch, scratch);
  return buf;
}

static void test_eval_options(void **state) {
  assert_int_equal(rotq(with_model("eval " MODEL " --segments 3 --ctx 64 --wbits 4 --abits 4 --kvbits 4")), 0);
  expect_output("segments 3\n");
  char args[8192];
  snprintf(args, sizeof args, "%s --segments 3 --ctx 64 --abits 8 --reference %s/models/stories260K",
           with_model("eval " MODEL), getenv("ROTQ_SOURCE_DIR"));
  assert_int_equal(rotq(args), 0);
  expect_output(" kl ");
  /* GPTQ calibrates on the file's last segments; the evaluation must stop before them */
  assert_int_equal(rotq(with_model("eval " MODEL " --ctx 32 --wbits 4 --w-method gptq --calib-n 2 --segments 2")), 0);
  assert_int_equal(rotq(with_model("eval " MODEL " --ctx 32 --wbits 4 --w-method gptq --calib-n 980 --segments 10")),
                   1);
  expect_output("overlap");
  assert_int_equal(rotq(with_model("eval " MODEL " --wbits 9")), 2); /* a usage error, like 0, 1 and 17 */
  expect_output("2 to 8");
  assert_int_equal(rotq(with_model("eval " MODEL " --w-method awq")), 2);
  assert_int_equal(rotq(with_model("eval " MODEL " --kvbits 4 --kv-group 3")), 1);
  expect_output("does not divide head_dim");
}

static void test_stats(void **state) {
  assert_int_equal(rotq(with_model("stats " MODEL " --segments 2 --ctx 64 --svg %s/plot.svg --json %s/stats.json")), 0);
  expect_output("qkv");
  char path[4200];
  snprintf(path, sizeof path, "%s/plot.svg", scratch);
  char *svg = slurp(path);
  assert_non_null(strstr(svg, "<svg") && strstr(svg, "original") && strstr(svg, "rotated") ? svg : NULL);
  free(svg);
  snprintf(path, sizeof path, "%s/stats.json", scratch);
  rotq_error err;
  cJSON *json = json_file_read(path, &err);
  assert_non_null(json);
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(json, "inputs")), 20); /* 5 layers × 4 inputs */
  cJSON_Delete(json);
  assert_int_equal(rotq(with_model("stats " MODEL " --input attention")), 2);
  assert_int_equal(rotq(with_model("stats " MODEL " --segments 1 --ctx 16 --layer 7 --svg %s/x.svg")), 1);
  expect_output("5 layers");
}

/* The whole table with RTN on 2 short segments: three columns, nine rows (six integer settings and
 * the float formats FP8, MXFP4, NVFP4), and the FP row exact. */
static void test_report(void **state) {
  assert_int_equal(rotq(with_model("report " MODEL " --segments 2 --ctx 48 --methods rtn --output %s/report")), 0);
  expect_output("[27/27]");
  char path[4200];
  snprintf(path, sizeof path, "%s/report.md", scratch);
  char *md = slurp(path);
  assert_non_null(strstr(md, "| W4A4KV4 | RTN |"));
  assert_non_null(strstr(md, "| W8A8 FP8 | RTN |"));
  assert_non_null(strstr(md, "| W4A4 MXFP4 | RTN |"));
  assert_non_null(strstr(md, "| W4A4 NVFP4 | RTN |"));
  assert_non_null(strstr(md, "R1R2+online KL"));
  free(md);
  snprintf(path, sizeof path, "%s/report.json", scratch);
  rotq_error err;
  cJSON *json = json_file_read(path, &err);
  assert_non_null(json);
  const cJSON *results = cJSON_GetObjectItem(json, "results");
  assert_int_equal(cJSON_GetArraySize(results), 27);
  const cJSON *fp_rotated = cJSON_GetArrayItem(results, 9); /* R1R2, FP (after the original's nine) */
  assert_string_equal(cJSON_GetObjectItem(fp_rotated, "config")->valuestring, "FP");
  assert_true(cJSON_GetObjectItem(fp_rotated, "kl")->valuedouble < 1e-9);
  cJSON_Delete(json);
  assert_int_equal(rotq(with_model("report " MODEL " --methods awq")), 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_eval_options),
      cmocka_unit_test(test_stats),
      cmocka_unit_test(test_report),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

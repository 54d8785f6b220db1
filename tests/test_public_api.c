/* The public entry points of include/rotq.h, called through rotq.h only (no internal header),
 * checked against what the rotq commands print for the same work and against each other:
 * rotq_eval (perplexity of the bundled stories260K equals `rotq eval`'s), rotq_compare (a rotated
 * copy computes the original's logits; equal to `rotq compare`), rotq_synth (the bytes `rotq
 * synth` writes), rotq_report (its FP and W4A8 cells equal rotq_eval's), rotq_report_format
 * (its MXFP4 cells equal rotq_eval's), and rotq_rotate's
 * callbacks: progress per layer, cancel (an error and no output), online_for without online. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "rotq.h"

/* Paths and commands, without the test support library (which is built on the internals). */
static char scratch[4096];

static const char *source(const char *relative) {
  static char buf[4][4096];
  static int next;
  char *out = buf[next++ % 4];
  snprintf(out, sizeof buf[0], "%s/%s", getenv("ROTQ_SOURCE_DIR"), relative);
  return out;
}

static const char *in_scratch(const char *name) {
  static char buf[4][4096];
  static int next;
  char *out = buf[next++ % 4];
  snprintf(out, sizeof buf[0], "%s/%s", scratch, name);
  return out;
}

/* The stdout of a shell command (first 8 KiB). */
static char *capture(const char *fmt, ...) {
  static char out[8192];
  char cmd[8192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t n = fread(out, 1, sizeof out - 1, p);
  out[n] = '\0';
  assert_int_equal(pclose(p), 0);
  return out;
}

static bool exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static int setup(void **state) {
  (void)state;
  snprintf(scratch, sizeof scratch, "%s/rotq-public-api-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  return mkdtemp(scratch) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
  return system(cmd) == 0 ? 0 : -1;
}

/* rotq_eval's perplexity of stories260K, in `rotq eval`'s format, is what `rotq eval` prints. */
static void test_eval_equals_cli(void **state) {
  (void)state;
  rotq_eval_options o = {.model_dir = source("models/stories260K"),
                         .tokens_path = source("data/tinystories_val.tok512.u16"),
                         .segments = 20};
  rotq_eval_result r;
  rotq_error err = {{0}};
  assert_int_equal(rotq_eval(&o, &r, &err), 0);
  assert_int_equal(r.segments, 20);
  assert_true(r.ppl > 1 && r.ppl < 100);
  char mine[256];
  snprintf(mine, sizeof mine, "nll %.6f ppl %.4f tokens %zu segments %zu\n", r.nll, r.ppl, r.predicted, r.segments);
  const char *cli =
      capture("'%s' eval --model '%s' --tokens '%s' --segments 20", getenv("ROTQ_BIN"), o.model_dir, o.tokens_path);
  assert_string_equal(mine, cli);

  /* fake-quantized: W4A8 with GPTQ on 8 calibration segments, against the unquantized model */
  o.quant = (rotq_quant_options){.wbits = 4, .abits = 8, .w_method = "gptq", .calib_segments = 8};
  o.reference_dir = o.model_dir;
  rotq_eval_result q;
  assert_int_equal(rotq_eval(&o, &q, &err), 0);
  snprintf(mine, sizeof mine, "nll %.6f ppl %.4f tokens %zu segments %zu kl %.6g\n", q.nll, q.ppl, q.predicted,
           q.segments, q.kl);
  cli = capture("'%s' eval --model '%s' --tokens '%s' --segments 20 --wbits 4 --abits 8 --w-method gptq --calib-n 8 "
                "--reference '%s'",
                getenv("ROTQ_BIN"), o.model_dir, o.tokens_path, o.model_dir);
  assert_string_equal(mine, cli);
  assert_true(q.kl > 0);

  /* bad options are errors, not crashes */
  o.quant.wformat = "fp7";
  assert_int_equal(rotq_eval(&o, &q, &err), -1);
  assert_non_null(strstr(err.message, "fp7"));
}

typedef struct progress_log {
  int layers_seen, layers, prepare;
  uint64_t written, total;
  int cancel_after; /* cancel once this many layers are done (0 = never) */
} progress_log;

static void record_progress(const rotq_progress *p, void *context) {
  progress_log *l = context;
  if (!strcmp(p->phase, "prepare")) l->prepare++;
  if (strcmp(p->phase, "layers") != 0) return;
  l->layers_seen++;
  l->layers = p->layers;
  assert_int_equal(p->layer, l->layers_seen);
  assert_true(p->bytes_written >= l->written && p->bytes_written <= p->bytes_total);
  l->written = p->bytes_written;
  l->total = p->bytes_total;
}

static int cancel_after(void *context) {
  const progress_log *l = context;
  return l->cancel_after && l->layers_seen >= l->cancel_after;
}

/* rotq_rotate's progress (every layer, bytes up to the total) and rotq_compare of the output
 * against the input: the same function, as `rotq compare` says too. */
static void test_rotate_progress_and_compare(void **state) {
  (void)state;
  rotq_rotate_options o = rotq_rotate_default_options();
  o.model_dir = source("models/stories260K");
  o.output_dir = in_scratch("rotated");
  o.seed = 5;
  progress_log l = {0};
  o.on_progress = record_progress;
  o.progress_context = &l;
  rotq_error err = {{0}};
  assert_int_equal(rotq_rotate(&o, &err), 0);
  assert_int_equal(l.prepare, 1);
  assert_int_equal(l.layers_seen, 5);
  assert_int_equal(l.layers, 5);
  assert_true(l.total > 0 && l.written == l.total);

  rotq_compare_options c = {.a_dir = o.model_dir, .b_dir = o.output_dir, .n = 32, .tolerance = 1e-5};
  rotq_compare_result r;
  assert_int_equal(rotq_compare(&c, &r, &err), 0);
  assert_int_equal(r.tokens, 32);
  assert_int_equal(r.argmax_agree, 32);
  assert_true(r.within_tolerance && r.relative < 1e-5);
  char mine[128];
  snprintf(mine, sizeof mine, "relative          %.3e (max |logit| %.4g, tolerance %.1e)", r.relative, r.max_abs_logit,
           r.tolerance);
  const char *cli =
      capture("'%s' compare --a '%s' --b '%s' --n 32 --tolerance 1e-5", getenv("ROTQ_BIN"), c.a_dir, c.b_dir);
  assert_non_null(strstr(cli, mine));

  /* another model's logits: outside the tolerance, still a result */
  c.b_dir = source("models/stories260K");
  c.a_dir = in_scratch("rotated");
  c.tolerance = -1;
  assert_int_equal(rotq_compare(&c, &r, &err), 0);
  assert_true(r.within_tolerance);
}

/* A cancelled run fails with "cancelled" and leaves nothing: no output, no partial directory. */
static void test_rotate_cancel(void **state) {
  (void)state;
  rotq_rotate_options o = rotq_rotate_default_options();
  o.model_dir = source("models/stories260K");
  o.output_dir = in_scratch("cancelled");
  progress_log l = {.cancel_after = 2};
  o.on_progress = record_progress;
  o.progress_context = &l;
  o.cancel = cancel_after;
  o.cancel_context = &l;
  rotq_error err = {{0}};
  assert_int_equal(rotq_rotate(&o, &err), -1);
  assert_non_null(strstr(err.message, "cancelled"));
  assert_int_equal(l.layers_seen, 2);
  assert_false(exists(o.output_dir));
  DIR *d = opendir(scratch);
  assert_non_null(d);
  for (struct dirent *e; (e = readdir(d));) assert_null(strstr(e->d_name, "cancelled")); /* no partial, no lock */
  closedir(d);
}

/* online_for without online is an error, not an ignored option. */
static void test_online_for_needs_online(void **state) {
  (void)state;
  rotq_rotate_options o = rotq_rotate_default_options();
  o.model_dir = source("models/stories260K");
  o.output_dir = in_scratch("online-for");
  o.online_for = "vllm";
  rotq_error err = {{0}};
  assert_int_equal(rotq_rotate(&o, &err), -1);
  assert_non_null(strstr(err.message, "online_for"));
  assert_false(exists(o.output_dir));
  o.online = 1;
  assert_int_equal(rotq_rotate(&o, &err), 0);
  assert_true(exists(in_scratch("online-for/config.json")));
}

static int cancel_at_once(void *context) {
  int *polls = context;
  return ++*polls >= 3;
}

/* rotq_quantize writes the bytes `rotq quantize` writes (W4A16 asymmetric, FP8_BLOCK); its option
 * errors; a cancelled run leaves nothing. And rotq_rotate's quantize option writes the bytes of
 * `rotq rotate --quantize`. */
static void test_quantize_equals_cli(void **state) {
  (void)state;
  rotq_quantize_options o = {.model_dir = source("models/stories260K"),
                             .output_dir = in_scratch("quantize-api"),
                             .scheme = "w4a16",
                             .group_size = 4,
                             .asymmetric = 1};
  rotq_quantize_result r;
  rotq_error err = {{0}};
  assert_int_equal(rotq_quantize(&o, &r, &err), 0);
  assert_int_equal(r.quantized, 35);
  assert_true(r.output_bytes < r.input_bytes);
  capture("'%s' quantize --model '%s' --output '%s' --scheme W4A16 --group-size 4 --asymmetric --quiet",
          getenv("ROTQ_BIN"), o.model_dir, in_scratch("quantize-cli"));
  capture("cmp '%s/model.safetensors' '%s/model.safetensors' && cmp '%s/config.json' '%s/config.json'",
          in_scratch("quantize-api"), in_scratch("quantize-cli"), in_scratch("quantize-api"),
          in_scratch("quantize-cli"));
  rotq_quantize_options b = {
      .model_dir = o.model_dir, .output_dir = in_scratch("quantize-api-b"), .scheme = "FP8_BLOCK"};
  assert_int_equal(rotq_quantize(&b, NULL, &err), 0);
  capture("'%s' quantize --model '%s' --output '%s' --scheme FP8_BLOCK --quiet", getenv("ROTQ_BIN"), o.model_dir,
          in_scratch("quantize-cli-b"));
  capture("cmp '%s/model.safetensors' '%s/model.safetensors' && cmp '%s/config.json' '%s/config.json'",
          in_scratch("quantize-api-b"), in_scratch("quantize-cli-b"), in_scratch("quantize-api-b"),
          in_scratch("quantize-cli-b"));
  /* option errors: nothing written */
  rotq_quantize_options bad = {.model_dir = o.model_dir, .output_dir = in_scratch("quantize-bad"), .scheme = "W3"};
  assert_int_equal(rotq_quantize(&bad, NULL, &err), -1);
  assert_non_null(strstr(err.message, "unknown scheme 'W3'"));
  bad.scheme = "W8A8", bad.group_size = 32;
  assert_int_equal(rotq_quantize(&bad, NULL, &err), -1);
  assert_non_null(strstr(err.message, "apply to W4A16 only"));
  bad.scheme = NULL, bad.group_size = 0;
  assert_int_equal(rotq_quantize(&bad, NULL, &err), -1);
  assert_false(exists(bad.output_dir));
  int polls = 0;
  bad.scheme = "W8A8", bad.cancel = cancel_at_once, bad.cancel_context = &polls;
  assert_int_equal(rotq_quantize(&bad, NULL, &err), -1);
  assert_non_null(strstr(err.message, "cancelled"));
  assert_false(exists(bad.output_dir));
  /* rotq_rotate with quantize = rotq rotate --quantize */
  rotq_rotate_options q = rotq_rotate_default_options();
  q.model_dir = o.model_dir, q.output_dir = in_scratch("rotate-quantize-api"), q.quantize = "W8A8";
  assert_int_equal(rotq_rotate(&q, &err), 0);
  capture("'%s' rotate --model '%s' --output '%s' --quantize W8A8 --quiet", getenv("ROTQ_BIN"), o.model_dir,
          in_scratch("rotate-quantize-cli"));
  capture("cmp '%s/model.safetensors' '%s/model.safetensors' && cmp '%s/config.json' '%s/config.json'",
          in_scratch("rotate-quantize-api"), in_scratch("rotate-quantize-cli"), in_scratch("rotate-quantize-api"),
          in_scratch("rotate-quantize-cli"));
  q.output_dir = in_scratch("rotate-quantize-bad"), q.quantize = NULL, q.quantize_group = 32;
  assert_int_equal(rotq_rotate(&q, &err), -1);
  assert_non_null(strstr(err.message, "need quantize"));
}

/* rotq_synth writes the bytes `rotq synth` writes. */
static void test_synth_equals_cli(void **state) {
  (void)state;
  rotq_synth_options o = {.shape = "tiny", .output_dir = in_scratch("synth-api"), .layers = 2, .seed = 7};
  rotq_error err = {{0}};
  assert_int_equal(rotq_synth(&o, &err), 0);
  capture("'%s' synth --shape tiny --layers 2 --seed 7 --output '%s'", getenv("ROTQ_BIN"), in_scratch("synth-cli"));
  capture("cmp '%s/model.safetensors' '%s/model.safetensors' && cmp '%s/config.json' '%s/config.json'",
          in_scratch("synth-api"), in_scratch("synth-cli"), in_scratch("synth-api"), in_scratch("synth-cli"));
  o.shape = "no-such-shape";
  o.output_dir = in_scratch("synth-bad");
  assert_int_equal(rotq_synth(&o, &err), -1);
  assert_non_null(strstr(err.message, "no-such-shape"));
}

/* rotq_report's cells are rotq_eval's numbers: the original's FP perplexity and its W4A8 RTN one;
 * the rotations compute the original's function (KL ~ 0 at FP). */
static void test_report_equals_eval(void **state) {
  (void)state;
  char *work = (char *)in_scratch("report-scratch");
  mkdir(work, 0700);
  rotq_report_options o = {.model_dir = source("models/stories260K"),
                           .tokens_path = source("data/tinystories_val.tok512.u16"),
                           .scratch_dir = work,
                           .segments = 3,
                           .ctx = 64,
                           .rtn = 1};
  rotq_report_result *r = calloc(1, sizeof *r);
  rotq_error err = {{0}};
  assert_int_equal(rotq_report(&o, r, &err), 0);
  assert_int_equal(r->segments, 3);
  assert_true(r->available[0] && r->available[1]);
  assert_string_equal(r->rows[3].name, "W4A8");
  rotq_eval_options e = {.model_dir = o.model_dir, .tokens_path = o.tokens_path, .segments = 3, .ctx = 64};
  rotq_eval_result fp, w4a8;
  assert_int_equal(rotq_eval(&e, &fp, &err), 0);
  e.quant = (rotq_quant_options){.wbits = 4, .abits = 8};
  assert_int_equal(rotq_eval(&e, &w4a8, &err), 0);
  assert_true(r->ppl[0][0][0] == fp.ppl);
  assert_true(r->ppl[0][3][0] == w4a8.ppl);
  assert_true(r->ppl[0][3][1] < 0); /* GPTQ not measured */
  assert_true(r->kl[1][0][0] < 1e-6);
  assert_true(fabs(r->ppl[1][0][0] - fp.ppl) < 1e-6 * fp.ppl);
  free(r);
}

/* rotq_report_format's original cells are rotq_eval's numbers in that format; its rotated columns
 * compute the original's function; an unknown format is refused. */
static void test_report_format_equals_eval(void **state) {
  (void)state;
  char *work = (char *)in_scratch("report-format-scratch");
  mkdir(work, 0700);
  rotq_report_options o = {.model_dir = source("models/stories260K"),
                           .tokens_path = source("data/tinystories_val.tok512.u16"),
                           .scratch_dir = work,
                           .segments = 2,
                           .ctx = 64};
  rotq_format_report_result *r = calloc(1, sizeof *r);
  rotq_error err = {{0}};
  assert_int_equal(rotq_report_format(&o, "mxfp4", 0, r, &err), 0);
  assert_int_equal(r->block_size, 32);
  assert_string_equal(r->row_names[3], "W4A4 MXFP4");
  rotq_eval_options e = {.model_dir = o.model_dir, .tokens_path = o.tokens_path, .segments = 2, .ctx = 64};
  rotq_eval_result w, wa;
  e.quant = (rotq_quant_options){.wbits = 4, .wformat = "mxfp4"};
  assert_int_equal(rotq_eval(&e, &w, &err), 0);
  e.quant = (rotq_quant_options){.wbits = 4, .wformat = "mxfp4", .abits = 4, .aformat = "mxfp4"};
  assert_int_equal(rotq_eval(&e, &wa, &err), 0);
  assert_true(r->ppl[0][1] == w.ppl);
  assert_true(r->ppl[0][3] == wa.ppl);
  for (int v = 1; v < ROTQ_FORMAT_VARIANTS; v++) {
    assert_true(r->available[v]);
    assert_true(r->kl[v][0] < 1e-6);
    assert_true(r->kl[v][3] > 1e-4);
  }
  assert_int_equal(rotq_report_format(&o, "fp4", 0, r, &err), -1);
  assert_non_null(strstr(err.message, "fp4"));
  free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_report_format_equals_eval),   cmocka_unit_test(test_eval_equals_cli),
      cmocka_unit_test(test_rotate_progress_and_compare), cmocka_unit_test(test_rotate_cancel),
      cmocka_unit_test(test_online_for_needs_online),     cmocka_unit_test(test_synth_equals_cli),
      cmocka_unit_test(test_quantize_equals_cli),         cmocka_unit_test(test_report_equals_eval),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

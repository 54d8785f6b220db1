/* rotq rotate --quantize (rotate/quantize_command.h's quantize_stream inside the rotation pipeline):
 * the in-stream check still proves the rotation when the weights are quantized as they are
 * written. A plan is broken in a way the plan checks would have refused (a reader without its
 * R1, a writer without its R1, a v/o pair that disagrees) and executed with the quantizing
 * writer and the shadow writer the check reads: the batch must fail, naming the layer and the
 * quantized tensor. The correct plan passes for every scheme the stream takes, with and without
 * online rotations, and every quantized weight's shadow pages are freed once checked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config/rotation_config.h"
#include "rotate/quantize_command.h"
#include "rotate/quarot_processor.h"
#include "rotate/stream_check.h"
#include "synth/synth.h"
#include "support/plan_tamper.h"
#include "support/test_support.h"

static void synth_llama(const char *dir) {
  synth_spec spec = {.architecture = "LlamaForCausalLM",
                     .hidden_size = 64,
                     .intermediate_size = 96,
                     .num_layers = 2,
                     .num_heads = 4,
                     .num_kv_heads = 2,
                     .vocab_size = 128,
                     .dtype = DTYPE_BF16,
                     .seed = 7};
  rotq_error err = {{0}};
  if (synth_write(&spec, dir, &err) < 0) fail_msg("synth: %s", err.message);
}

/* Bytes of the shard files in dir actually allocated (st_blocks): the shadow's pages still held. */
static long long allocated_bytes(const char *dir) {
  char path[4400];
  long long total = 0;
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  struct stat st;
  if (stat(path, &st) == 0) total += (long long)st.st_blocks * 512;
  return total;
}

/* Plans dir, breaks the plan, executes it into out (quantized with scheme s; the shadow in
 * out/shadow) with the in-stream check; the run's status, its error in *err. */
static int run(const char *dir, const char *out, const ct_scheme *s, plan_tamper what, int online, rotq_error *err) {
  checkpoint ck;
  if (checkpoint_open(dir, &ck, err) < 0) return -1;
  const model_adapter *a = adapter_for(&ck.config, err);
  assert_non_null(a);
  rotation_config config;
  assert_int_equal(rotation_config_load("transformer_universal", &config, err), 0);
  quarot_processor p;
  processor_options plan = {.seed = 3, .threads = 2, .online = online};
  assert_int_equal(processor_init(&p, &ck, a, &config, &plan, err), 0);
  plan_tamper_apply(&p, what);
  char shadow_dir[4200];
  snprintf(shadow_dir, sizeof shadow_dir, "%s/shadow", out);
  assert_int_equal(run_command("mkdir -p %s", shadow_dir), 0);
  quantize_stream *q = quantize_stream_open(a, s, p.outputs, p.output_count, out, 0, 2, err);
  if (!q) fail_msg("quantize_stream_open: %s", err->message);
  st_spec specs[64];
  size_t n = 0;
  for (size_t i = 0; i < p.output_count; i++)
    if (quantize_stream_index(q, p.outputs[i].name) >= 0) specs[n++] = p.outputs[i];
  assert_int_equal(n, 14); /* q/k/v/o, gate/up/down in 2 layers */
  st_writer *shadow = st_writer_open_scratch(shadow_dir, specs, n, err);
  assert_non_null(shadow);
  p.context.writer = quantize_stream_writer(q);
  p.context.quant = q;
  p.context.shadow = shadow;
  p.check = stream_check_create(&p, err);
  assert_non_null(p.check);
  int rc = plan_execute_checked(&p, err);
  if (rc == 0) {
    /* every quantized weight was read back by the check, then its pages freed: what stays
     * allocated is the header's page and the pages tensors share (these tensors are small) */
    long long data = 0;
    for (size_t i = 0; i < n; i++) data += (long long)(specs[i].shape[0] * specs[i].shape[1] * 2);
    long long held = allocated_bytes(shadow_dir);
    if (held > data / 2) fail_msg("the shadow still holds %lld of its %lld bytes", held, data);
    assert_int_equal(quantize_stream_finish(q, err), 0);
  }
  st_writer_abort(shadow);
  stream_check_free(p.check);
  p.check = NULL;
  p.context.quant = NULL;
  quantize_stream_free(q);
  processor_free(&p);
  rotation_config_free(&config);
  checkpoint_close(&ck);
  return rc;
}

static const ct_scheme *scheme(const char *name, int group, bool asymmetric) {
  static ct_scheme s;
  assert_int_equal(ct_scheme_parse(name, group, asymmetric, &s), 0);
  return &s;
}

static void expect_caught(plan_tamper what, const char *pattern) {
  char *dir = scratch_dir("rotate-quantize");
  char in[4200], out[4200];
  snprintf(in, sizeof in, "%s/in", dir);
  snprintf(out, sizeof out, "%s/out", dir);
  synth_llama(in);
  const ct_scheme *schemes[] = {scheme("W4A16", 32, false), scheme("W8A8", 0, false)};
  for (int i = 0; i < 2; i++) {
    ct_scheme s = *schemes[i];
    char o[4300];
    snprintf(o, sizeof o, "%s%d", out, i);
    rotq_error err = {{0}};
    int rc = run(in, o, &s, what, 0, &err);
    if (rc == 0) fail_msg("tamper %d (%s) was not caught", (int)what, ct_scheme_name(&s));
    if (!strstr(err.message, pattern)) fail_msg("tamper %d: error '%s' lacks '%s'", (int)what, err.message, pattern);
  }
  scratch_remove(dir);
  free(dir);
}

static void test_correct_plan_passes(void **state) {
  (void)state;
  char *dir = scratch_dir("rotate-quantize");
  char in[4200];
  snprintf(in, sizeof in, "%s/in", dir);
  synth_llama(in);
  const char *names[] = {"W4A16", "W4A16", "W8A8", "FP8"};
  const int groups[] = {32, 16, 0, 0};
  const bool asym[] = {false, true, false, false};
  for (int i = 0; i < 4; i++)
    for (int online = 0; online < 2; online++) {
      ct_scheme s = *scheme(names[i], groups[i], asym[i]);
      char out[4300];
      snprintf(out, sizeof out, "%s/out-%d-%d", dir, i, online);
      rotq_error err = {{0}};
      if (run(in, out, &s, TAMPER_NONE, online, &err) != 0)
        fail_msg("%s online=%d: %s", ct_scheme_name(&s), online, err.message);
    }
  scratch_remove(dir);
  free(dir);
}

static void test_reader_without_r1(void **state) {
  (void)state;
  expect_caught(TAMPER_DROP_R1_READER, "layer 0: tensor 'model.layers.0.self_attn.q_proj.weight'");
}

static void test_writer_without_r1(void **state) {
  (void)state;
  expect_caught(TAMPER_DROP_R1_WRITER, "layer 1: tensor 'model.layers.1.mlp.down_proj.weight' (writes the residual");
}

static void test_value_path(void **state) {
  (void)state;
  expect_caught(TAMPER_V_WITHOUT_O, "layer 0: tensors 'model.layers.0.self_attn.v_proj.weight' → "
                                    "'model.layers.0.self_attn.o_proj.weight'");
}

/* NVFP4A16 is refused by the stream (its fused global scales need every member first). */
static void test_nvfp4_refused(void **state) {
  (void)state;
  ct_scheme s;
  assert_int_equal(ct_scheme_parse("NVFP4A16", 0, false, &s), 0);
  rotq_error err = {{0}};
  st_spec none[1] = {{.name = "x", .dtype = DTYPE_BF16, .ndim = 1, .shape = {4}}};
  assert_null(quantize_stream_open(NULL, &s, none, 1, "/nonexistent", 0, 1, &err));
  assert_non_null(strstr(err.message, "NVFP4A16 is not done in the rotation stream"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_correct_plan_passes), cmocka_unit_test(test_reader_without_r1),
      cmocka_unit_test(test_writer_without_r1),   cmocka_unit_test(test_value_path),
      cmocka_unit_test(test_nvfp4_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

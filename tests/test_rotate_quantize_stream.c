/* rotq rotate --quantize (rotate/quantize_command.h's quantize_stream inside the rotation pipeline):
 * the in-stream check still proves the rotation when the weights are quantized as they are
 * written. A plan is broken in a way the plan checks would have refused (a reader without its
 * R1, a writer without its R1, a v/o pair that disagrees) and executed with the quantizing
 * writer, whose held rotated rows the check reads: the batch must fail, naming the layer and the
 * quantized tensor (W4A16, W8A8, and NVFP4A16, whose fused groups are quantized when complete).
 * The correct plan passes for every scheme the stream takes, with and without online rotations;
 * every held row is let go once checked, and at most two layers are held at once (without the
 * check: nothing, or NVFP4A16's groups in flight, at most one layer). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Bytes of the quantized weights' rotated values in one layer of p ([rows, cols] in bf16). */
static size_t layer_bytes(const quarot_processor *p, const quantize_stream *q) {
  size_t total = 0;
  for (size_t i = 0; i < p->output_count; i++)
    if (quantize_stream_index(q, p->outputs[i].name) >= 0 && strstr(p->outputs[i].name, "layers.0."))
      total += (size_t)(p->outputs[i].shape[0] * p->outputs[i].shape[1]) * 2;
  return total;
}

/* Plans dir, breaks the plan, executes it into out (quantized with scheme s), with the in-stream
 * check (which reads the rotated rows the quantizer holds) or without; the run's status, its error
 * in *err. On success: every held row was let go, and at most (with the check) two layers' or
 * (without: NVFP4A16's fused groups) one layer's quantized weights were ever held at once. */
static int run_with(const char *dir, const char *out, const ct_scheme *s, plan_tamper what, int online, bool check,
                    rotq_error *err) {
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
  assert_int_equal(run_command("mkdir -p %s", out), 0);
  quantize_stream *q = quantize_stream_open(a, s, p.outputs, p.output_count, out, 0, 2, err);
  if (!q) fail_msg("quantize_stream_open: %s", err->message);
  size_t n = 0;
  for (size_t i = 0; i < p.output_count; i++) n += quantize_stream_index(q, p.outputs[i].name) >= 0;
  assert_int_equal(n, 14); /* q/k/v/o, gate/up/down in 2 layers */
  if (check) quantize_stream_keep_rows(q);
  p.context.writer = quantize_stream_writer(q);
  p.context.quant = q;
  if (check) {
    p.check = stream_check_create(&p, err);
    assert_non_null(p.check);
  }
  int rc;
  if (check) {
    rc = plan_execute_checked(&p, err);
  } else {
    rc = processor_pre_run(&p, err);
    for (int layer = 0; rc == 0 && layer < ck.config.num_hidden_layers; layer++)
      rc = processor_preprocess(&p, layer, err);
    if (rc == 0) rc = processor_finish(&p, err);
  }
  if (rc == 0) {
    size_t held, peak, pool;
    quantize_stream_memory(q, &held, &peak, &pool);
    assert_int_equal(held, 0); /* every weight's rows let go once checked (or written) */
    const size_t layer = layer_bytes(&p, q);
    if (check || s->kind == CT_NVFP4A16) {
      if (peak == 0) fail_msg("%s: no rows were held", ct_scheme_name(s));
      if (peak > (check ? 2 : 1) * layer)
        fail_msg("%s: %zu bytes held at once, more than %d layers (%zu bytes)", ct_scheme_name(s), peak, check ? 2 : 1,
                 layer);
      assert_true(pool >= peak);
    } else {
      assert_int_equal(peak, 0); /* nothing needs them */
    }
    assert_int_equal(quantize_stream_finish(q, err), 0);
  }
  stream_check_free(p.check);
  p.check = NULL;
  p.context.quant = NULL;
  quantize_stream_free(q);
  processor_free(&p);
  rotation_config_free(&config);
  checkpoint_close(&ck);
  return rc;
}

static int run(const char *dir, const char *out, const ct_scheme *s, plan_tamper what, int online, rotq_error *err) {
  return run_with(dir, out, s, what, online, true, err);
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
  const char *names[] = {"W4A16", "W8A8", "NVFP4A16"};
  const int groups[] = {32, 0, 0};
  for (int i = 0; i < 3; i++) {
    ct_scheme s = *scheme(names[i], groups[i], false);
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
  const char *names[] = {"W4A16", "W4A16", "W8A8", "FP8", "NVFP4A16"};
  const int groups[] = {32, 16, 0, 0, 0};
  const bool asym[] = {false, true, false, false, false};
  for (int i = 0; i < 5; i++)
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

/* Without the check nothing is held but NVFP4A16's fused groups until complete, then let go. */
static void test_held_without_check(void **state) {
  (void)state;
  char *dir = scratch_dir("rotate-quantize");
  char in[4200];
  snprintf(in, sizeof in, "%s/in", dir);
  synth_llama(in);
  const char *names[] = {"W4A16", "NVFP4A16"};
  for (int i = 0; i < 2; i++) {
    ct_scheme s = *scheme(names[i], i == 0 ? 32 : 0, false);
    char out[4300];
    snprintf(out, sizeof out, "%s/out-%d", dir, i);
    rotq_error err = {{0}};
    if (run_with(in, out, &s, TAMPER_NONE, 0, false, &err) != 0) fail_msg("%s: %s", names[i], err.message);
  }
  scratch_remove(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_correct_plan_passes), cmocka_unit_test(test_reader_without_r1),
      cmocka_unit_test(test_writer_without_r1),   cmocka_unit_test(test_value_path),
      cmocka_unit_test(test_held_without_check),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

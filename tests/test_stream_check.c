/* The in-stream verification (rotate/stream_check.h) on its own: a plan is built and checked, then
 * deliberately broken in one way the plan checks would have refused (or a kernel could get wrong),
 * and executed with the in-stream check on: the batch must fail, naming the layer and tensor.
 * The correct plan passes, for every family the synthesizer makes, with and without online
 * rotations. This shows the check does not lean on the plan checks: it recomputes the layer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/rotation_config.h"
#include "synth/synth.h"
#include "rotate/quarot_processor.h"
#include "rotate/stream_check.h"
#include "support/plan_tamper.h"
#include "support/test_support.h"

static void synth_llama(const char *dir, const char *arch, dtype t) {
  synth_spec spec = {.architecture = arch,
                     .hidden_size = 64,
                     .intermediate_size = 96,
                     .num_layers = 2,
                     .num_heads = 4,
                     .num_kv_heads = 2,
                     .vocab_size = 128,
                     .dtype = t,
                     .seed = 7,
                     .attention_bias = !strcmp(arch, "LlamaForCausalLM") || !strcmp(arch, "Qwen3ForCausalLM")};
  rotq_error err = {{0}};
  if (synth_write(&spec, dir, &err) < 0) fail_msg("synth: %s", err.message);
}

/* Plans `dir` with the family's built-in config, breaks the plan, executes it into out with the
 * in-stream check; returns the run's status and its error in *err. */
static int run(const char *dir, const char *out, plan_tamper what, int online, rotq_error *err) {
  checkpoint ck;
  if (checkpoint_open(dir, &ck, err) < 0) return -1;
  const model_adapter *a = adapter_for(&ck.config, err);
  rotation_config config;
  assert_non_null(a);
  assert_int_equal(rotation_config_load(a->builtin_config ? a->builtin_config : "transformer_universal", &config, err),
                   0);
  quarot_processor p;
  processor_options plan = {.seed = 3, .threads = 2, .online = online};
  assert_int_equal(processor_init(&p, &ck, a, &config, &plan, err), 0);
  plan_tamper_apply(&p, what);
  char mk[4200];
  snprintf(mk, sizeof mk, "mkdir -p %s", out);
  assert_int_equal(run_command("%s", mk), 0);
  st_writer *w = st_writer_open(out, p.outputs, p.output_count, 0, err);
  assert_non_null(w);
  p.context.writer = w;
  p.check = stream_check_create(&p, err);
  assert_non_null(p.check);
  int rc = plan_execute_checked(&p, err);
  st_writer_abort(w);
  stream_check_free(p.check);
  p.check = NULL;
  processor_free(&p);
  rotation_config_free(&config);
  checkpoint_close(&ck);
  return rc;
}

static void expect_caught(plan_tamper what, const char *pattern) {
  char *dir = scratch_dir("stream-check");
  char in[4200], out[4200];
  snprintf(in, sizeof in, "%s/in", dir);
  snprintf(out, sizeof out, "%s/out", dir);
  synth_llama(in, "LlamaForCausalLM", DTYPE_BF16);
  rotq_error err = {{0}};
  int rc = run(in, out, what, 0, &err);
  if (rc == 0) fail_msg("tamper %d was not caught", (int)what);
  if (!strstr(err.message, pattern)) fail_msg("tamper %d: error '%s' lacks '%s'", (int)what, err.message, pattern);
  scratch_remove(dir);
  free(dir);
}

static void test_correct_plan_passes(void **state) {
  (void)state;
  const char *archs[] = {"LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "MistralForCausalLM"};
  const dtype types[] = {DTYPE_F64, DTYPE_F32, DTYPE_F16, DTYPE_BF16};
  for (int i = 0; i < 4; i++)
    for (int online = 0; online < 2; online++) {
      char *dir = scratch_dir("stream-check");
      char in[4200], out[4200];
      snprintf(in, sizeof in, "%s/in", dir);
      snprintf(out, sizeof out, "%s/out", dir);
      synth_llama(in, archs[i], types[i]);
      rotq_error err = {{0}};
      if (run(in, out, TAMPER_NONE, online, &err) != 0) fail_msg("%s online=%d: %s", archs[i], online, err.message);
      scratch_remove(dir);
      free(dir);
    }
}

static void test_unfused_reader(void **state) {
  (void)state;
  expect_caught(TAMPER_UNFUSE_READER, "layer 1: tensor 'model.layers.1.mlp.up_proj.weight' (reads the residual stream");
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

static void test_changed_bias(void **state) {
  (void)state;
  expect_caught(TAMPER_CHANGE_OTHER, "model.layers.0.self_attn.o_proj");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_correct_plan_passes), cmocka_unit_test(test_unfused_reader),
      cmocka_unit_test(test_reader_without_r1),   cmocka_unit_test(test_writer_without_r1),
      cmocka_unit_test(test_value_path),          cmocka_unit_test(test_changed_bias),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

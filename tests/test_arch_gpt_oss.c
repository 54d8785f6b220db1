/* gpt-oss (GptOssForCausalLM): attention with q/k/v/o biases and per-head sinks, sliding and full
 * layers (window 4 on 24 tokens), YaRN RoPE, every layer an MoE block whose router has a bias and
 * whose experts are stored fused in [experts, in, out] layout with biases and the clamped SwiGLU.
 * The rotated checkpoint computes the original's function to 1e-12 (relative, float64) in the three
 * modes; the fused experts rotated on the wrong axis, without the post-attention norm fused into
 * gate_up_proj's rows, or with down_proj_bias left unrotated are each caught by the same check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/rotation_config.h"
#include "rotate/quarot_processor.h"
#include "rotate/stream_check.h"
#include "rotq.h"
#include "support/arch_support.h"
#include "support/plan_tamper.h"
#include "support/test_support.h"

static const synth_spec gpt_oss = {.architecture = "GptOssForCausalLM",
                                   .hidden_size = 64,
                                   .intermediate_size = 40,
                                   .num_layers = 3,
                                   .num_heads = 4,
                                   .num_kv_heads = 2,
                                   .head_dim = 16,
                                   .vocab_size = 72,
                                   .dtype = DTYPE_F64,
                                   .seed = 19,
                                   .num_experts = 6,
                                   .num_experts_per_tok = 2,
                                   .sliding_window = 4};

static void gpt_oss_is_equivalent(void **state) {
  (void)state;
  char *scratch = scratch_dir("arch-gpt-oss");
  char original[4200];
  snprintf(original, sizeof original, "%s/gpt-oss", scratch);
  synth_or_fail(&gpt_oss, original);
  rotate_all_modes_and_check(scratch, original, "gpt-oss", "gpt_oss", 1e-12);
  scratch_remove(scratch);
  free(scratch);
}

/* A rotated checkpoint with `tensor` replaced by the same tensor of `other` (rotated from a copy of
 * the original edited by `edit`, same seed so the same matrices): the logits no longer match. */
static void wrong_tensor_is_caught(const char *tensor, const char *edited, const char *label) {
  char *scratch = scratch_dir("arch-gpt-oss-wrong");
  char original[4200], other[4200], config[4200], rotated[4200], rotated_other[4200];
  snprintf(original, sizeof original, "%s/original", scratch);
  snprintf(other, sizeof other, "%s/other", scratch);
  snprintf(config, sizeof config, "%s/gpt_oss.yaml", scratch);
  snprintf(rotated, sizeof rotated, "%s/rotated", scratch);
  snprintf(rotated_other, sizeof rotated_other, "%s/rotated-other", scratch);
  synth_or_fail(&gpt_oss, original);
  copy_checkpoint(original, other);
  if (edited) edit_tensor(other, edited, 0, 1); /* all ones: nothing to fuse */
  write_builtin_with_mode(config, "gpt_oss", "hadamard");
  rotate_or_fail(original, rotated, config, 7);
  check_equivalent_logits(original, rotated, 1e-12, "gpt-oss hadamard");
  if (edited)
    rotate_or_fail(other, rotated_other, config, 7);
  else /* the original's tensor: not rotated at all */
    copy_checkpoint(original, rotated_other);
  replace_tensor_bytes(rotated, rotated_other, tensor);
  logit_diff d = compare_checkpoints(original, rotated, 24);
  printf("  %s: relative %.3g\n", label, d.relative);
  assert_true(d.relative > 1e-4);
  scratch_remove(scratch);
  free(scratch);
}

static void unfused_gate_up_is_caught(void **state) {
  (void)state;
  wrong_tensor_is_caught("model.layers.1.mlp.experts.gate_up_proj", "model.layers.1.post_attention_layernorm.weight",
                         "gate_up_proj without the norm fused into its rows");
}

static void unfused_router_is_caught(void **state) {
  (void)state;
  wrong_tensor_is_caught("model.layers.1.mlp.router.weight", "model.layers.1.post_attention_layernorm.weight",
                         "router without the norm fused");
}

static void unrotated_down_proj_bias_is_caught(void **state) {
  (void)state;
  wrong_tensor_is_caught("model.layers.2.mlp.experts.down_proj_bias", NULL, "down_proj_bias left unrotated");
}

static void unrotated_down_proj_is_caught(void **state) {
  (void)state;
  wrong_tensor_is_caught("model.layers.0.mlp.experts.down_proj", NULL, "down_proj left unrotated");
}

/* A writer rotated on its input axis (W_e ← R1ᵀ·W_e: the [out, in] reading of a [in, out] tensor)
 * instead of its output axis is caught: a config that rotates down_proj as [r1, null] is refused by
 * the plan (its input is the intermediate width, not R1's) or, where the widths agree, fails the
 * equivalence the plan proves. Here: the plan refuses it, naming the tensor. */
static void writer_on_wrong_axis_is_refused(void **state) {
  (void)state;
  char *scratch = scratch_dir("arch-gpt-oss-axis");
  char original[4200], config[4200], rotated[4200];
  snprintf(original, sizeof original, "%s/original", scratch);
  snprintf(config, sizeof config, "%s/wrong.yaml", scratch);
  snprintf(rotated, sizeof rotated, "%s/rotated", scratch);
  synth_or_fail(&gpt_oss, original);
  FILE *f = fopen(config, "w");
  assert_non_null(f);
  fputs("rotation_matrices:\n  r1: {dim: hidden_size, mode: hadamard, per_layer: false}\n"
        "  r2: {dim: head_dim, mode: hadamard, per_layer: true}\n"
        "rotation_config:\n  \"*embed_tokens\": [r1, null]\n  \"*lm_head\": [r1, null]\n"
        "  \"*q_proj|*k_proj\": [r1, null]\n  \"*v_proj\": [r1, r2]\n  \"*o_proj\": [r2, r1]\n"
        "  \"*mlp.router\": [r1, null]\n  \"*experts.gate_up_proj\": [r1, null]\n"
        "  \"*experts.down_proj\": [r1, null]\nuse_float64: true\n",
        f);
  fclose(f);
  rotq_error err = {{0}};
  rotq_rotate_options o = rotq_rotate_default_options();
  o.model_dir = original, o.output_dir = rotated, o.config = config, o.seed = 7;
  assert_int_not_equal(rotq_rotate(&o, &err), 0);
  printf("  refused: %s\n", err.message);
  assert_non_null(strstr(err.message, "down_proj"));
  scratch_remove(scratch);
  free(scratch);
}

/* The in-stream check on a plan broken after the plan checks: the run fails naming the tensor. */
typedef enum oss_tamper { OSS_INTACT, OSS_DOWN_NO_R1, OSS_DOWN_BIAS_NO_R1, OSS_GATE_UP_UNFUSED } oss_tamper;

static int run_tampered(const char *dir, const char *out, oss_tamper what, rotq_error *err) {
  checkpoint ck;
  if (checkpoint_open(dir, &ck, err) < 0) return -1;
  const model_adapter *a = adapter_for(&ck.config, err);
  assert_non_null(a);
  rotation_config config;
  assert_int_equal(rotation_config_load(a->builtin_config, &config, err), 0);
  quarot_processor p;
  processor_options plan = {.seed = 3, .threads = 2};
  assert_int_equal(processor_init(&p, &ck, a, &config, &plan, err), 0);
  const char *names[] = {NULL, "model.layers.1.mlp.experts.down_proj", "model.layers.2.mlp.experts.down_proj_bias",
                         "model.layers.0.mlp.experts.gate_up_proj"};
  rotate_command *c = names[what] ? plan_command(&p, names[what]) : NULL;
  if (what == OSS_DOWN_NO_R1 || what == OSS_DOWN_BIAS_NO_R1) c->output = NULL;
  if (what == OSS_GATE_UP_UNFUSED) c->fuse_norm[0] = '\0';
  assert_int_equal(run_command("mkdir -p '%s'", out), 0);
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

static void in_stream_check_catches(void **state) {
  (void)state;
  const char *expected[] = {NULL, "tensor 'model.layers.1.mlp.experts.down_proj' expert 0 (writes the residual",
                            "tensor 'model.layers.2.mlp.experts.down_proj' expert 0 (writes the residual",
                            "tensor 'model.layers.0.mlp.experts.gate_up_proj' expert 0 (reads the residual"};
  char *scratch = scratch_dir("arch-gpt-oss-stream");
  char original[4200], out[4200];
  snprintf(original, sizeof original, "%s/original", scratch);
  synth_or_fail(&gpt_oss, original);
  for (int what = OSS_INTACT; what <= OSS_GATE_UP_UNFUSED; what++) {
    snprintf(out, sizeof out, "%s/out-%d", scratch, what);
    rotq_error err = {{0}};
    int rc = run_tampered(original, out, (oss_tamper)what, &err);
    if (what == OSS_INTACT) {
      if (rc != 0) fail_msg("the correct plan failed the in-stream check: %s", err.message);
      continue;
    }
    if (rc == 0) fail_msg("tamper %d was not caught", what);
    if (!strstr(err.message, expected[what])) fail_msg("tamper %d: '%s' lacks '%s'", what, err.message, expected[what]);
    printf("  caught: %s\n", err.message);
  }
  scratch_remove(scratch);
  free(scratch);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(gpt_oss_is_equivalent),         cmocka_unit_test(unfused_gate_up_is_caught),
      cmocka_unit_test(unfused_router_is_caught),      cmocka_unit_test(unrotated_down_proj_bias_is_caught),
      cmocka_unit_test(unrotated_down_proj_is_caught), cmocka_unit_test(writer_on_wrong_axis_is_refused),
      cmocka_unit_test(in_stream_check_catches),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

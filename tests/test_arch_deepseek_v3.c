/* DeepSeek-V3 (DeepseekV3ForCausalLM): multi-head latent attention (q_a_proj → q_a_layernorm →
 * q_b_proj, kv_a_proj_with_mqa → kv_a_layernorm → kv_b_proj plus the shared interleaved-RoPE key,
 * biases on q_a_proj / kv_a_proj_with_mqa / o_proj), a dense first layer, then MoE layers with
 * DeepSeek-V3 routing and shared experts. R1 and R2 (the deepseek_v3 config; R2 on each head's value
 * rows of kv_b_proj and o_proj's input): the rotated checkpoint computes the original's function to
 * 1e-12 (relative, float64) in the three modes; R2 touches each head's value rows only (its key rows
 * are bit-equal to an R1-only rotation's) and dropping it is caught, as is kv_a_proj_with_mqa or the
 * router rotated without the input / post-attention norm fused in. A config for q/k/v layouts
 * (qwen_moe) is refused, naming deepseek_v3, and so are online rotations (MLA). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "support/arch_support.h"
#include "support/test_support.h"

static const synth_spec deepseek_v3 = {.architecture = "DeepseekV3ForCausalLM",
                                       .hidden_size = 64,
                                       .intermediate_size = 96,
                                       .num_layers = 3,
                                       .num_heads = 4,
                                       .num_kv_heads = 4,
                                       .head_dim = 16,
                                       .vocab_size = 72,
                                       .attention_bias = true,
                                       .dtype = DTYPE_F64,
                                       .seed = 19,
                                       .num_experts = 8,
                                       .num_experts_per_tok = 2,
                                       .moe_intermediate_size = 40};

static void deepseek_v3_is_equivalent(void **state) {
  (void)state;
  char *scratch = scratch_dir("arch-deepseek-v3");
  char original[4200];
  snprintf(original, sizeof original, "%s/deepseek-v3", scratch);
  synth_or_fail(&deepseek_v3, original);
  rotate_all_modes_and_check(scratch, original, "deepseek-v3", "deepseek_v3", 1e-12);
  scratch_remove(scratch);
  free(scratch);
}

/* tensor of the rotated checkpoint replaced by its rotation without norm fused (from a copy whose
 * norm is all ones, same seed so the same R1): the logits no longer match. */
static void unfused_tensor_is_caught(const char *norm, const char *tensor) {
  char *scratch = scratch_dir("arch-deepseek-v3-wrong");
  char original[4200], unnormed[4200], config[4200], rotated[4200], rotated_unnormed[4200];
  snprintf(original, sizeof original, "%s/original", scratch);
  snprintf(unnormed, sizeof unnormed, "%s/unnormed", scratch);
  snprintf(config, sizeof config, "%s/deepseek_v3.yaml", scratch);
  snprintf(rotated, sizeof rotated, "%s/rotated", scratch);
  snprintf(rotated_unnormed, sizeof rotated_unnormed, "%s/rotated-unnormed", scratch);
  synth_or_fail(&deepseek_v3, original);
  copy_checkpoint(original, unnormed);
  edit_tensor(unnormed, norm, 0, 1);
  write_builtin_with_mode(config, "deepseek_v3", "hadamard");
  rotate_or_fail(original, rotated, config, 7);
  rotate_or_fail(unnormed, rotated_unnormed, config, 7);
  check_equivalent_logits(original, rotated, 1e-12, "deepseek-v3 hadamard");
  replace_tensor_bytes(rotated, rotated_unnormed, tensor);
  logit_diff d = compare_checkpoints(original, rotated, 24);
  printf("  %s without %s fused: relative %.3g\n", tensor, norm, d.relative);
  assert_true(d.relative > 1e-4);
  scratch_remove(scratch);
  free(scratch);
}

static void unfused_kv_a_proj_is_caught(void **state) {
  (void)state;
  unfused_tensor_is_caught("model.layers.1.input_layernorm.weight",
                           "model.layers.1.self_attn.kv_a_proj_with_mqa.weight");
}

static void unfused_router_is_caught(void **state) {
  (void)state;
  unfused_tensor_is_caught("model.layers.2.post_attention_layernorm.weight", "model.layers.2.mlp.gate.weight");
}

/* The qwen_moe config (R2 on v_proj/o_proj, q/k/v fused) does not fit MLA: refused, naming it. */
static void r2_config_is_refused(void **state) {
  (void)state;
  char *scratch = scratch_dir("arch-deepseek-v3-r2");
  char original[4200], out[4200];
  snprintf(original, sizeof original, "%s/original", scratch);
  snprintf(out, sizeof out, "%s/out", scratch);
  synth_or_fail(&deepseek_v3, original);
  rotq_rotate_options o = {.model_dir = original, .output_dir = out, .config = "qwen_moe"};
  rotq_error err = {{0}};
  assert_int_equal(rotq_rotate(&o, &err), -1);
  printf("  %s\n", err.message);
  assert_non_null(strstr(err.message, "--config deepseek_v3"));
  scratch_remove(scratch);
  free(scratch);
}

static double *read_tensor(const char *dir, const char *name, size_t numel) {
  rotq_error err = {{0}};
  checkpoint ck;
  double *values = NULL;
  if (checkpoint_open(dir, &ck, &err) < 0 || checkpoint_read_f64(&ck, name, numel, &values, &err) < 0)
    fail_msg("%s", err.message);
  checkpoint_close(&ck);
  return values;
}

static const char r1_only_yaml[] =
    "rotation_matrices:\n  r1: {dim: hidden_size, mode: hadamard, per_layer: false}\n"
    "rotation_config:\n  \"*embed_tokens|*lm_head|*q_a_proj|*kv_a_proj_with_mqa|*mlp.gate|*gate_proj|*up_proj\": "
    "[r1, null]\n  \"*o_proj|*down_proj\": [null, r1]\n";

/* R2 acts on each head's value rows of kv_b_proj [heads·(nope + v), kv_lora] only: the key rows equal
 * an R1-only rotation's (same seed, same R1), the value rows differ from them, and each value
 * block's columns keep their norms (R2 is orthogonal). Putting the R1-only kv_b_proj back (R2
 * dropped there, kept on o_proj) changes the logits: the equivalence check sees R2. */
static void r2_acts_on_value_rows_only(void **state) {
  (void)state;
  char *scratch = scratch_dir("arch-deepseek-v3-r2-rows");
  char original[4200], config[4200], r1_only[4200], rotated[4200], rotated_r1[4200];
  snprintf(original, sizeof original, "%s/original", scratch);
  snprintf(config, sizeof config, "%s/deepseek_v3.yaml", scratch);
  snprintf(r1_only, sizeof r1_only, "%s/r1.yaml", scratch);
  snprintf(rotated, sizeof rotated, "%s/rotated", scratch);
  snprintf(rotated_r1, sizeof rotated_r1, "%s/rotated-r1", scratch);
  synth_or_fail(&deepseek_v3, original);
  write_builtin_with_mode(config, "deepseek_v3", "hadamard");
  FILE *f = fopen(r1_only, "w");
  fputs(r1_only_yaml, f);
  fclose(f);
  rotate_or_fail(original, rotated, config, 7);
  rotate_or_fail(original, rotated_r1, r1_only, 7);
  check_equivalent_logits(original, rotated, 1e-12, "deepseek-v3 R1 + R2");
  check_equivalent_logits(original, rotated_r1, 1e-12, "deepseek-v3 R1 only");

  const char *kvb = "model.layers.1.self_attn.kv_b_proj.weight";
  const size_t heads = 4, nope = 16, vd = 16, stride = nope + vd, cols = 32; /* kv_lora = hidden / 2 */
  double *a = read_tensor(rotated, kvb, heads * stride * cols),
         *b = read_tensor(rotated_r1, kvb, heads * stride * cols);
  double v_diff = 0;
  for (size_t h = 0; h < heads; h++) {
    for (size_t i = 0; i < nope * cols; i++) assert_true(a[h * stride * cols + i] == b[h * stride * cols + i]);
    for (size_t j = 0; j < cols; j++) {
      double na = 0, nb = 0;
      for (size_t r = nope; r < stride; r++) {
        double x = a[(h * stride + r) * cols + j], y = b[(h * stride + r) * cols + j];
        na += x * x, nb += y * y;
        v_diff = fmax(v_diff, fabs(x - y));
      }
      assert_true(fabs(sqrt(na) - sqrt(nb)) <= 1e-12 * (1 + sqrt(nb)));
    }
  }
  printf("  kv_b_proj: key rows bit-equal to R1 only, value rows differ by up to %.3g, column norms kept\n", v_diff);
  assert_true(v_diff > 1e-3);
  free(a), free(b);

  replace_tensor_bytes(rotated, rotated_r1, kvb);
  logit_diff d = compare_checkpoints(original, rotated, 24);
  printf("  R2 dropped from %s (kept on o_proj): relative %.3g\n", kvb, d.relative);
  assert_true(d.relative > 1e-4);
  scratch_remove(scratch);
  free(scratch);
}

/* Online rotations have no site under MLA (o_proj reads heads of v_head_dim; no per-head Q/K after
 * RoPE): refused before anything is written, even without R4 on the experts. */
static void online_is_refused(void **state) {
  (void)state;
  char *scratch = scratch_dir("arch-deepseek-v3-online");
  char original[4200], out[4200], config[4200];
  snprintf(original, sizeof original, "%s/original", scratch);
  snprintf(out, sizeof out, "%s/out", scratch);
  snprintf(config, sizeof config, "%s/online.yaml", scratch);
  synth_or_fail(&deepseek_v3, original);
  write_builtin_with_mode(config, "deepseek_v3", "hadamard");
  FILE *f = fopen(config, "a");
  fputs("online: true\ndown_proj_online_layers: []\n", f);
  fclose(f);
  rotq_rotate_options o = {.model_dir = original, .output_dir = out, .config = config};
  rotq_error err = {{0}};
  assert_int_equal(rotq_rotate(&o, &err), -1);
  printf("  %s\n", err.message);
  assert_non_null(strstr(err.message, "multi-head latent attention"));
  assert_int_equal(access(out, F_OK), -1);
  scratch_remove(scratch);
  free(scratch);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(deepseek_v3_is_equivalent),  cmocka_unit_test(unfused_kv_a_proj_is_caught),
      cmocka_unit_test(unfused_router_is_caught),   cmocka_unit_test(r2_config_is_refused),
      cmocka_unit_test(r2_acts_on_value_rows_only), cmocka_unit_test(online_is_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

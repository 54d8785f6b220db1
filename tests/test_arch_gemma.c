/* Gemma (RMSNorm with 1 + w, embeddings × √hidden, gated GELU): R1 and R2 with the universal
 * config are exact, and fusing w instead of 1 + w is caught. Gemma-2 and Gemma-3 (post-norms on the
 * writers' outputs, soft-capping, sliding windows, Gemma-3's q/k norms and local RoPE): R1 is
 * refused, the `gemma2` config (R2 only) is exact. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/arch_support.h"
#include "support/test_support.h"

static const synth_spec gemma = {.architecture = "GemmaForCausalLM",
                                 .hidden_size = 64,
                                 .intermediate_size = 128,
                                 .num_layers = 2,
                                 .num_heads = 4,
                                 .num_kv_heads = 1,
                                 .head_dim = 32,
                                 .vocab_size = 80,
                                 .tie_word_embeddings = true,
                                 .dtype = DTYPE_F64,
                                 .seed = 31};
static const synth_spec gemma2 = {.architecture = "Gemma2ForCausalLM",
                                  .hidden_size = 64,
                                  .intermediate_size = 128,
                                  .num_layers = 3,
                                  .num_heads = 4,
                                  .num_kv_heads = 2,
                                  .head_dim = 32,
                                  .vocab_size = 80,
                                  .tie_word_embeddings = true,
                                  .dtype = DTYPE_F64,
                                  .seed = 32,
                                  .sliding_window = 8,
                                  .query_pre_attn_scalar = 24};
static const synth_spec gemma3 = {.architecture = "Gemma3ForCausalLM",
                                  .hidden_size = 64,
                                  .intermediate_size = 96,
                                  .num_layers = 3,
                                  .num_heads = 4,
                                  .num_kv_heads = 2,
                                  .head_dim = 16,
                                  .vocab_size = 72,
                                  .tie_word_embeddings = true,
                                  .dtype = DTYPE_F64,
                                  .seed = 33,
                                  .sliding_window = 8,
                                  .sliding_window_pattern = 2};

static void gemma_is_equivalent(void **state) { check_family_equivalent(&gemma, "gemma", "transformer_universal"); }
static void gemma2_r2_is_equivalent(void **state) { check_family_equivalent(&gemma2, "gemma2", "gemma2"); }
static void gemma3_r2_is_equivalent(void **state) { check_family_equivalent(&gemma3, "gemma3", "gemma2"); }

/* q_proj of layer 0 with w fused instead of 1 + w (from the rotation of a copy whose
 * input_layernorm is w − 1, same seed): caught. */
static void fusing_w_instead_of_one_plus_w_is_caught(void **state) {
  char *scratch = scratch_dir("arch-gemma-wrong");
  char original[4200], shifted[4200], config[4200], rotated[4200], rotated_shifted[4200];
  snprintf(original, sizeof original, "%s/original", scratch);
  snprintf(shifted, sizeof shifted, "%s/shifted", scratch);
  snprintf(config, sizeof config, "%s/universal.yaml", scratch);
  snprintf(rotated, sizeof rotated, "%s/rotated", scratch);
  snprintf(rotated_shifted, sizeof rotated_shifted, "%s/rotated-shifted", scratch);
  synth_or_fail(&gemma, original);
  copy_checkpoint(original, shifted);
  edit_tensor(shifted, "model.layers.0.input_layernorm.weight", 1, -1);
  write_builtin_with_mode(config, "transformer_universal", "hadamard");
  rotate_or_fail(original, rotated, config, 7);
  rotate_or_fail(shifted, rotated_shifted, config, 7);
  replace_tensor_bytes(rotated, rotated_shifted, "model.layers.0.self_attn.q_proj.weight");
  logit_diff d = compare_checkpoints(original, rotated, 24);
  printf("  q_proj of layer 0 with w fused instead of 1 + w: relative %.3g\n", d.relative);
  assert_true(d.relative > 1e-4);
  scratch_remove(scratch);
  free(scratch);
}

static void expect_refused(const char *original, const char *out, const char *config, const char *needle) {
  rotq_rotate_options o = {.model_dir = original, .output_dir = out, .config = config};
  rotq_error err = {{0}};
  assert_int_equal(rotq_rotate(&o, &err), -1);
  printf("  %s\n", err.message);
  assert_non_null(strstr(err.message, needle));
  assert_int_equal(run_command("test -e '%s'", out), 1);
}

/* R1 on Gemma-2 is refused: with the universal config, and with a config whose fuse map is right. */
static void gemma2_r1_is_refused(void **state) {
  char *scratch = scratch_dir("arch-gemma2-r1");
  char original[4200], out[4200], config[4200];
  snprintf(original, sizeof original, "%s/original", scratch);
  snprintf(out, sizeof out, "%s/out", scratch);
  snprintf(config, sizeof config, "%s/r1.yaml", scratch);
  synth_or_fail(&gemma2, original);
  expect_refused(original, out, "transformer_universal", "post_attention_layernorm");
  FILE *f = fopen(config, "w");
  fputs("rotation_matrices:\n  r1: {dim: hidden_size, mode: hadamard}\n"
        "rotation_config:\n  \"*embed_tokens|*lm_head|*q_proj|*k_proj|*v_proj|*gate_proj|*up_proj\": [r1, null]\n"
        "  \"*o_proj|*down_proj\": [null, r1]\n",
        f);
  fclose(f);
  expect_refused(original, out, config, "'gemma2'");
  scratch_remove(scratch);
  free(scratch);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(gemma_is_equivalent),     cmocka_unit_test(fusing_w_instead_of_one_plus_w_is_caught),
      cmocka_unit_test(gemma2_r2_is_equivalent), cmocka_unit_test(gemma3_r2_is_equivalent),
      cmocka_unit_test(gemma2_r1_is_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* OPT (LayerNorm with biases, learned positions): the rotated checkpoint computes the original's
 * function in every mode — the means baked into the writers and both embeddings, γ and β folded
 * into the readers (β kept, divided by γ and rotated, for the final norm, as lm_head has no bias),
 * and R1 made to keep the ones direction. Without that last step LayerNorm's centring breaks the
 * equivalence; skipping the bias fold of one reader is caught. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/arch_support.h"
#include "support/test_support.h"

static const synth_spec opt = {.architecture = "OPTForCausalLM",
                               .hidden_size = 64,
                               .intermediate_size = 256,
                               .num_layers = 2,
                               .num_heads = 4,
                               .num_kv_heads = 4,
                               .vocab_size = 80,
                               .tie_word_embeddings = true,
                               .dtype = DTYPE_F64,
                               .seed = 41};
static const synth_spec opt_untied = {.architecture = "OPTForCausalLM",
                                      .hidden_size = 96,
                                      .intermediate_size = 192,
                                      .num_layers = 3,
                                      .num_heads = 6,
                                      .num_kv_heads = 6,
                                      .vocab_size = 64,
                                      .dtype = DTYPE_F64,
                                      .seed = 42};

static void opt_is_equivalent(void **state) {
  check_family_equivalent(&opt, "opt-tied", "opt");
  check_family_equivalent(&opt_untied, "opt-untied", "opt");
}

/* fc1's bias of layer 1 without its norm's β folded in (from the rotation of a copy whose
 * final_layer_norm bias is 0, same seed): caught. */
static void skipped_bias_fold_is_caught(void **state) {
  char *scratch = scratch_dir("arch-opt-wrong");
  char original[4200], zero_beta[4200], config[4200], rotated[4200], rotated_zero[4200];
  snprintf(original, sizeof original, "%s/original", scratch);
  snprintf(zero_beta, sizeof zero_beta, "%s/zero-beta", scratch);
  snprintf(config, sizeof config, "%s/opt.yaml", scratch);
  snprintf(rotated, sizeof rotated, "%s/rotated", scratch);
  snprintf(rotated_zero, sizeof rotated_zero, "%s/rotated-zero", scratch);
  synth_or_fail(&opt, original);
  copy_checkpoint(original, zero_beta);
  edit_tensor(zero_beta, "model.decoder.layers.1.final_layer_norm.bias", 0, 0);
  write_builtin_with_mode(config, "opt", "hadamard");
  rotate_or_fail(original, rotated, config, 7);
  rotate_or_fail(zero_beta, rotated_zero, config, 7);
  replace_tensor_bytes(rotated, rotated_zero, "model.decoder.layers.1.fc1.bias");
  logit_diff d = compare_checkpoints(original, rotated, 24);
  printf("  fc1 bias of layer 1 without β folded: relative %.3g\n", d.relative);
  assert_true(d.relative > 1e-4);
  scratch_remove(scratch);
  free(scratch);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(opt_is_equivalent),
      cmocka_unit_test(skipped_bias_fold_is_caught),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Phi-3: fused qkv_proj and gate_up_proj. The rotated checkpoint computes the original's function
 * in every mode; R2 acts on the V rows of qkv_proj only (its Q and K rows are exactly those of a
 * rotation without R2); leaving the V rows without R2 while o_proj has it is caught by the logits;
 * and a config that does so is refused before anything is written. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "support/arch_support.h"
#include "support/test_support.h"

static const synth_spec phi3 = {.architecture = "Phi3ForCausalLM",
                                .hidden_size = 96,
                                .intermediate_size = 160,
                                .num_layers = 2,
                                .num_heads = 6,
                                .num_kv_heads = 2,
                                .vocab_size = 80,
                                .dtype = DTYPE_F64,
                                .seed = 21};
static const synth_spec phi3_mha_tied = {.architecture = "Phi3ForCausalLM",
                                         .hidden_size = 64,
                                         .intermediate_size = 128,
                                         .num_layers = 2,
                                         .num_heads = 4,
                                         .num_kv_heads = 4,
                                         .vocab_size = 64,
                                         .tie_word_embeddings = true,
                                         .dtype = DTYPE_F64,
                                         .seed = 22};

static const char *no_r2_yaml = "rotation_matrices:\n  r1: {dim: hidden_size, mode: hadamard}\n"
                                "rotation_config:\n  \"*embed_tokens|*lm_head|*qkv_proj|*gate_up_proj\": [r1, null]\n"
                                "  \"*o_proj|*down_proj\": [null, r1]\n";

static void phi3_is_equivalent(void **state) {
  check_family_equivalent(&phi3, "phi3-gqa", "phi3");
  check_family_equivalent(&phi3_mha_tied, "phi3-mha-tied", "phi3");
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

static void r2_acts_on_v_rows_only(void **state) {
  char *scratch = scratch_dir("arch-phi3-rows");
  char original[4200], config[4200], no_r2[4200], rotated[4200], rotated_no_r2[4200];
  snprintf(original, sizeof original, "%s/original", scratch);
  snprintf(config, sizeof config, "%s/phi3.yaml", scratch);
  snprintf(no_r2, sizeof no_r2, "%s/no-r2.yaml", scratch);
  snprintf(rotated, sizeof rotated, "%s/rotated", scratch);
  snprintf(rotated_no_r2, sizeof rotated_no_r2, "%s/rotated-no-r2", scratch);
  synth_or_fail(&phi3, original);
  write_builtin_with_mode(config, "phi3", "hadamard");
  FILE *f = fopen(no_r2, "w");
  fputs(no_r2_yaml, f);
  fclose(f);
  rotate_or_fail(original, rotated, config, 7);
  rotate_or_fail(original, rotated_no_r2, no_r2, 7); /* same seed: the same R1 */
  check_equivalent_logits(original, rotated_no_r2, 1e-9, "phi3 R1 only");

  const char *qkv = "model.layers.1.self_attn.qkv_proj.weight";
  const size_t hidden = 96, head_dim = 16, qk_rows = (6 + 2) * head_dim, v_rows = 2 * head_dim;
  double *a = read_tensor(rotated, qkv, (qk_rows + v_rows) * hidden);
  double *b = read_tensor(rotated_no_r2, qkv, (qk_rows + v_rows) * hidden);
  double v_diff = 0;
  for (size_t i = 0; i < qk_rows * hidden; i++) assert_true(a[i] == b[i]);
  for (size_t i = qk_rows * hidden; i < (qk_rows + v_rows) * hidden; i++) v_diff = fmax(v_diff, fabs(a[i] - b[i]));
  printf("  Q/K rows identical to the R1-only rotation; V rows differ by up to %.3g\n", v_diff);
  assert_true(v_diff > 1e-3);
  free(a);
  free(b);

  /* the V rows without R2 while o_proj has it: wrong */
  replace_tensor_bytes(rotated, rotated_no_r2, qkv);
  logit_diff d = compare_checkpoints(original, rotated, 24);
  printf("  qkv_proj of layer 1 without R2 on V: relative %.3g\n", d.relative);
  assert_true(d.relative > 1e-4);
  scratch_remove(scratch);
  free(scratch);
}

/* R2 on o_proj's input but not on qkv_proj's V rows: refused, naming both tensors. */
static void unpaired_r2_is_refused(void **state) {
  char *scratch = scratch_dir("arch-phi3-config");
  char original[4200], config[4200], out[4200];
  snprintf(original, sizeof original, "%s/original", scratch);
  snprintf(config, sizeof config, "%s/bad.yaml", scratch);
  snprintf(out, sizeof out, "%s/out", scratch);
  synth_or_fail(&phi3, original);
  FILE *f = fopen(config, "w");
  fputs("rotation_matrices:\n  r1: {dim: hidden_size, mode: hadamard}\n  r2: {dim: head_dim, mode: hadamard, "
        "per_layer: true}\n"
        "rotation_config:\n  \"*embed_tokens|*lm_head|*qkv_proj|*gate_up_proj\": [r1, null]\n"
        "  \"*o_proj\": [r2, r1]\n  \"*down_proj\": [null, r1]\n",
        f);
  fclose(f);
  rotq_rotate_options o = {.model_dir = original, .output_dir = out, .config = config};
  rotq_error err = {{0}};
  assert_int_equal(rotq_rotate(&o, &err), -1);
  printf("  %s\n", err.message);
  assert_non_null(strstr(err.message, "self_attn.qkv_proj"));
  assert_int_equal(run_command("test -e '%s'", out), 1);
  scratch_remove(scratch);
  free(scratch);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(phi3_is_equivalent),
      cmocka_unit_test(r2_acts_on_v_rows_only),
      cmocka_unit_test(unpaired_r2_is_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

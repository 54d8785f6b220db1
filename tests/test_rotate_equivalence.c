/* The contract: a rotated checkpoint computes the original's function. For every LLaMA-family
 * architecture (synthetic checkpoints) and the bundled stories260K, in every mode, the rotated
 * model's logits under our forward pass equal the original's: relative difference < 1e-9 from a
 * float64 checkpoint, < 1e-5 from a float32 one, argmax agreement 100%. A deliberately wrong
 * rotation fails the same check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synth/synth.h"
#include "support/equivalence.h"
#include "support/test_support.h"

static const char *modes[] = {"hadamard", "base_hadamard", "orthogonal"};

typedef struct arch_case {
  const char *label;
  synth_spec spec;
} arch_case;

static const arch_case cases[] = {
    {"llama-gqa-tied",
     {.architecture = "LlamaForCausalLM",
      .hidden_size = 64,
      .intermediate_size = 172,
      .num_layers = 2,
      .num_heads = 8,
      .num_kv_heads = 4,
      .vocab_size = 96,
      .tie_word_embeddings = true,
      .seed = 1}},
    {"llama-untied-llama3rope",
     {.architecture = "LlamaForCausalLM",
      .hidden_size = 96,
      .intermediate_size = 192,
      .num_layers = 2,
      .num_heads = 6,
      .num_kv_heads = 2,
      .vocab_size = 80,
      .llama3_rope_scaling = true,
      .seed = 2}},
    {"mistral",
     {.architecture = "MistralForCausalLM",
      .hidden_size = 64,
      .intermediate_size = 224,
      .num_layers = 2,
      .num_heads = 4,
      .num_kv_heads = 2,
      .vocab_size = 72,
      .seed = 3}},
    {"qwen2-bias",
     {.architecture = "Qwen2ForCausalLM",
      .hidden_size = 128,
      .intermediate_size = 320,
      .num_layers = 2,
      .num_heads = 8,
      .num_kv_heads = 2,
      .vocab_size = 64,
      .seed = 4}},
    {"qwen3-headdim",
     {.architecture = "Qwen3ForCausalLM",
      .hidden_size = 64,
      .intermediate_size = 160,
      .num_layers = 2,
      .num_heads = 4,
      .num_kv_heads = 2,
      .head_dim = 32,
      .vocab_size = 64,
      .tie_word_embeddings = true,
      .seed = 5}},
};

static void rotate_and_check(const char *scratch, const char *original, const char *label, double tolerance) {
  for (int m = 0; m < 3; m++) {
    char config[4200], out[4200], what[256];
    snprintf(config, sizeof config, "%s/%s.yaml", scratch, modes[m]);
    snprintf(out, sizeof out, "%s/%s-%s", scratch, label, modes[m]);
    snprintf(what, sizeof what, "%s %s", label, modes[m]);
    write_config_with_mode(config, modes[m], false);
    rotate_or_fail(original, out, config, 7);
    check_equivalent_logits(original, out, tolerance, what);
  }
}

static void synthetic_architectures_are_equivalent(void **state) {
  char *scratch = scratch_dir("equiv");
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    for (int precision = 0; precision < 2; precision++) {
      synth_spec spec = cases[i].spec;
      spec.dtype = precision == 0 ? DTYPE_F64 : DTYPE_F32;
      char dir[4200], label[128];
      snprintf(label, sizeof label, "%s-%s", cases[i].label, precision == 0 ? "f64" : "f32");
      snprintf(dir, sizeof dir, "%s/%s", scratch, label);
      rotq_error err = {{0}};
      if (synth_write(&spec, dir, &err) < 0) fail_msg("%s", err.message);
      rotate_and_check(scratch, dir, label, precision == 0 ? 1e-9 : 1e-5);
    }
  }
  scratch_remove(scratch);
  free(scratch);
}

static void bundled_model_is_equivalent(void **state) {
  char *scratch = scratch_dir("equiv-bundled");
  rotate_and_check(scratch, source_path("models/stories260K"), "stories260K-f32", 1e-5);
  scratch_remove(scratch);
  free(scratch);
}

/* The same check fails when one tensor skips its rotation (down_proj of layer 1 left as the
 * original) — so the tests above can fail. */
static void wrong_rotation_is_caught(void **state) {
  char *scratch = scratch_dir("equiv-wrong");
  synth_spec spec = cases[0].spec;
  spec.dtype = DTYPE_F64;
  char orig[4200], out[4200], config[4200];
  snprintf(orig, sizeof orig, "%s/orig", scratch);
  snprintf(out, sizeof out, "%s/rotated", scratch);
  snprintf(config, sizeof config, "%s/c.yaml", scratch);
  rotq_error err = {{0}};
  if (synth_write(&spec, orig, &err) < 0) fail_msg("%s", err.message);
  write_config_with_mode(config, "hadamard", false);
  rotate_or_fail(orig, out, config, 7);
  assert_true(compare_checkpoints(orig, out, 16).relative < 1e-9);
  replace_tensor_bytes(out, orig, "model.layers.1.mlp.down_proj.weight");
  logit_diff d = compare_checkpoints(orig, out, 16);
  printf("  skipped rotation of one down_proj: relative %.3g\n", d.relative);
  assert_true(d.relative > 1e-3);
  scratch_remove(scratch);
  free(scratch);
}

/* A config that leaves a residual reader unrotated is refused before anything is written. */
static void inconsistent_config_is_refused(void **state) {
  char *scratch = scratch_dir("equiv-config");
  char config[4200], out[4200];
  snprintf(config, sizeof config, "%s/bad.yaml", scratch);
  snprintf(out, sizeof out, "%s/out", scratch);
  FILE *f = fopen(config, "w");
  fputs("rotation_matrices:\n  r1: {dim: hidden_size, mode: hadamard}\n"
        "rotation_config:\n  \"*embed_tokens|*lm_head|*q_proj|*v_proj|*up_proj|*gate_proj\": [r1, null]\n"
        "  \"*o_proj|*down_proj\": [null, r1]\n",
        f);
  fclose(f);
  rotq_rotate_options o = {.model_dir = source_path("models/stories260K"), .output_dir = out, .config = config};
  rotq_error err = {{0}};
  assert_int_equal(rotq_rotate(&o, &err), -1);
  printf("  %s\n", err.message);
  assert_non_null(strstr(err.message, "model.layers.0.self_attn.k_proj.weight"));
  assert_non_null(strstr(err.message, "reads the residual stream"));
  assert_int_equal(run_command("test -e '%s'", out), 1);
  scratch_remove(scratch);
  free(scratch);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(synthetic_architectures_are_equivalent),
      cmocka_unit_test(bundled_model_is_equivalent),
      cmocka_unit_test(wrong_rotation_is_caught),
      cmocka_unit_test(inconsistent_config_is_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

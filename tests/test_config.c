/* The YAML rotation config: built-ins parse, every field is read, bad documents give errors that
 * name the field and line. */
#include <string.h>

#include "config/builtin_configs.h"
#include "config/rotation_config.h"
#include "support/test_support.h"

static void builtin_universal_parses(void **state) {
  (void)state;
  rotation_config c;
  rotq_error err = {{0}};
  assert_int_equal(rotation_config_load("transformer_universal", &c, &err), 0);
  assert_int_equal(c.matrix_count, 2);
  const matrix_spec *r1 = rotation_config_matrix(&c, "r1"), *r2 = rotation_config_matrix(&c, "r2");
  assert_non_null(r1);
  assert_string_equal(r1->dim_key, "hidden_size");
  assert_int_equal(r1->mode, ROTATION_HADAMARD);
  assert_int_equal(r1->per_layer, PER_LAYER_SHARED);
  assert_string_equal(r2->dim_key, "head_dim");
  assert_int_equal(r2->per_layer, PER_LAYER_EACH);
  assert_int_equal(c.rule_count, 9);
  assert_string_equal(c.rules[3].pattern, "*v_proj");
  assert_string_equal(c.rules[3].input, "r1");
  assert_string_equal(c.rules[3].output, "r2");
  assert_string_equal(c.rules[0].output, "");
  assert_int_equal(c.layer_fuse_count, 2);
  assert_string_equal(c.layer_fuse[0].norm, "input_layernorm");
  assert_int_equal(c.layer_fuse[0].linear_count, 3);
  assert_string_equal(c.layer_fuse[1].linears[1], "mlp.gate_proj");
  assert_int_equal(c.head_fuse_count, 1);
  assert_string_equal(c.head_fuse[0].norm, "model.norm");
  assert_string_equal(c.head_fuse[0].linears[0], "lm_head");
  assert_true(c.use_float64);
  rotation_config_free(&c);
}

static void every_builtin_parses(void **state) {
  (void)state;
  assert_true(builtin_config_count >= 1);
  for (int i = 0; i < builtin_config_count; i++) {
    rotation_config c;
    rotq_error err = {{0}};
    if (rotation_config_parse(builtin_configs[i].yaml, builtin_configs[i].name, &c, &err) != 0)
      fail_msg("%s: %s", builtin_configs[i].name, err.message);
    rotation_config_free(&c);
  }
}

static void options_are_read(void **state) {
  (void)state;
  const char *yaml = "rotation_matrices:\n"
                     "  r1: {dim: 4096, mode: orthogonal, per_layer: false, block_size: 128}\n"
                     "  r2: {dim: head_dim, mode: base_hadamard, per_layer: \"model.layers.[0-3]|model.layers.1?\"}\n"
                     "rotation_config:\n"
                     "  \"*q_proj\": [r1, ~]\n"
                     "use_float64: false\nonline: true\nstrict: true\n";
  rotation_config c;
  rotq_error err = {{0}};
  assert_int_equal(rotation_config_parse(yaml, "inline", &c, &err), 0);
  assert_int_equal(c.matrices[0].dim, 4096);
  assert_int_equal(c.matrices[0].mode, ROTATION_ORTHOGONAL);
  assert_int_equal(c.matrices[0].block_size, 128);
  assert_int_equal(c.matrices[1].mode, ROTATION_BASE_HADAMARD);
  assert_int_equal(c.matrices[1].per_layer, PER_LAYER_GROUPED);
  assert_string_equal(c.matrices[1].per_layer_pattern, "model.layers.[0-3]|model.layers.1?");
  assert_false(c.use_float64);
  assert_true(c.online);
  assert_true(c.strict);
  assert_string_equal(c.rules[0].output, "");
  rotation_config_free(&c);
}

/* Parses yaml and expects failure with every fragment in the message. */
static void expect_error(const char *yaml, const char *fragment1, const char *fragment2) {
  rotation_config c;
  rotq_error err = {{0}};
  if (rotation_config_parse(yaml, "bad.yaml", &c, &err) == 0) fail_msg("accepted: %s", yaml);
  if (!strstr(err.message, fragment1) || (fragment2 && !strstr(err.message, fragment2)))
    fail_msg("message '%s' lacks '%s' / '%s'", err.message, fragment1, fragment2 ? fragment2 : "");
  assert_non_null(strstr(err.message, "bad.yaml"));
}

static void bad_documents_are_rejected(void **state) {
  (void)state;
  expect_error("rotation_matrices: [1, 2\n", "YAML error", NULL);
  expect_error("- a\n- b\n", "mapping", NULL);
  expect_error("rotation_matrices:\n  r1: {dim: 64, mode: fancy}\n", "mode 'fancy'", "r1");
  expect_error("rotation_matrices:\n  r1: {mode: hadamard}\n", "needs a dim", "r1");
  expect_error("rotation_matrices:\n  r1: {dim: -4}\n", "positive", NULL);
  expect_error("rotation_matrices:\n  r1: {dim: 64, block_size: 12}\n", "block_size", NULL);
  expect_error("rotation_matrices:\n  r1: {dim: 64, colour: red}\n", "unknown field 'colour'", NULL);
  expect_error("rotation_matrices:\n  r1: {dim: 64}\nrotation_config:\n  \"*q_proj\": [r9, null]\n",
               "unknown matrix 'r9'", "*q_proj");
  expect_error("rotation_matrices:\n  r1: {dim: 64}\nrotation_config:\n  \"*q_proj\": [r1]\n",
               "[input_rotation, output_rotation]", NULL);
  expect_error("rotation_matrices:\n  r1: {dim: 64}\nuse_float64: maybe\n", "use_float64", "line 3");
  expect_error("rotation_matrices:\n  r1: {dim: 64}\nwhatever: 1\n", "unknown top-level field 'whatever'", NULL);
  expect_error("rotation_matrices:\n  r1: {dim: 64}\nnorm_fuse_config:\n  decoder_layer_fuse: [[a]]\n",
               "[norm, [linears...]]", NULL);
  expect_error("rotation_matrices:\n  r1: {dim: 64, mode: file}\n", "file", NULL);
  expect_error("rotation_matrices: {}\n", "empty", NULL);
  /* a key twice in one mapping: an error naming it and both lines, at any depth */
  expect_error("rotation_matrices:\n  r1: {dim: 64}\nrotation_config:\n  \"*q_proj\": [r1, null]\n"
               "  \"*q_proj\": [null, r1]\n",
               "duplicate key '*q_proj'", "first at line 4");
  expect_error("rotation_matrices:\n  r1: {dim: 64}\nuse_float64: true\nuse_float64: false\n",
               "duplicate key 'use_float64'", "line 4");
  expect_error("rotation_matrices:\n  r1: {dim: 64, mode: hadamard, mode: orthogonal}\n", "duplicate key 'mode'", NULL);
  expect_error("rotation_matrices:\n  r1: {dim: 64}\n  r1: {dim: 32}\n", "duplicate key 'r1'", NULL);
}

/* JSON is YAML's flow syntax: the same config given as JSON parses to the same rules. */
static void json_text_is_a_config(void **state) {
  (void)state;
  const char *json = "{\"rotation_matrices\": {\"r1\": {\"dim\": \"hidden_size\", \"mode\": \"hadamard\", "
                     "\"per_layer\": false}},\n \"rotation_config\": {\"*q_proj|*k_proj\": [\"r1\", null]},\n"
                     " \"norm_fuse_config\": {\"decoder_layer_fuse\": [[\"input_layernorm\", [\"self_attn.q_proj\"]]]},"
                     " \"use_float64\": true}";
  rotation_config c;
  rotq_error err = {{0}};
  if (rotation_config_parse(json, "json", &c, &err) != 0) fail_msg("%s", err.message);
  assert_int_equal(c.matrix_count, 1);
  assert_string_equal(c.matrices[0].dim_key, "hidden_size");
  assert_int_equal(c.rule_count, 1);
  assert_string_equal(c.rules[0].input, "r1");
  assert_string_equal(c.rules[0].output, "");
  assert_int_equal(c.layer_fuse_count, 1);
  assert_string_equal(c.layer_fuse[0].linears[0], "self_attn.q_proj");
  rotation_config_free(&c);
}

static void missing_file_names_builtins(void **state) {
  (void)state;
  rotation_config c;
  rotq_error err = {{0}};
  assert_int_equal(rotation_config_load("/nonexistent/x.yaml", &c, &err), -1);
  assert_non_null(strstr(err.message, "/nonexistent/x.yaml"));
  assert_non_null(strstr(err.message, "transformer_universal"));
}

static void patterns_match_like_globs(void **state) {
  (void)state;
  assert_true(pattern_matches("*q_proj|*k_proj", "model.layers.0.self_attn.k_proj"));
  assert_true(pattern_matches("*embed_tokens", "model.embed_tokens"));
  assert_false(pattern_matches("*q_proj", "model.layers.0.self_attn.q_proj_extra"));
  assert_false(pattern_matches("*up_proj|*gate_proj", "model.layers.0.mlp.down_proj"));
  assert_true(pattern_matches("model.layers.[0-3]", "model.layers.2"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(builtin_universal_parses),  cmocka_unit_test(every_builtin_parses),
      cmocka_unit_test(options_are_read),          cmocka_unit_test(bad_documents_are_rejected),
      cmocka_unit_test(json_text_is_a_config),     cmocka_unit_test(missing_file_names_builtins),
      cmocka_unit_test(patterns_match_like_globs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

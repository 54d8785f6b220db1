/* Checkpoint directories and config.json: the bundled stories260K opens with the right config
 * and tensors; config defaults follow transformers; shard discovery and the index's consistency
 * with the shards are checked, with errors naming the index, shard and tensor. */
#include "support/test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "io/checkpoint.h"
#include "io/json_file.h"
#include "io/safetensors_writer.h"

static char *dir;

static int setup(void **state) {
  (void)state;
  dir = scratch_dir("io-checkpoint");
  return 0;
}

static int teardown(void **state) {
  (void)state;
  scratch_remove(dir);
  free(dir);
  return 0;
}

/* A fresh empty scratch directory for one test (the previous one is removed). */
static void fresh_dir(void) {
  scratch_remove(dir);
  free(dir);
  dir = scratch_dir("io-checkpoint");
}

static const char *join(const char *name) {
  static char paths[4][4096];
  static int next;
  char *path = paths[next++ % 4];
  snprintf(path, sizeof paths[0], "%s/%s", dir, name);
  return path;
}

static void write_text(const char *name, const char *text) {
  FILE *file = fopen(join(name), "w");
  assert_non_null(file);
  fputs(text, file);
  fclose(file);
}

#define MINIMAL_CONFIG                                                                                                 \
  "{\"model_type\":\"llama\",\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":16}"

/* Writes a safetensors file dir/name holding F32 tensors of 2 elements with the given names. */
static void write_shard(const char *name, const char *const *tensors, size_t count) {
  char sub[4096];
  snprintf(sub, sizeof sub, "%s/tmp-shard", dir);
  run_command("mkdir -p '%s'", sub);
  st_spec specs[8];
  for (size_t i = 0; i < count; i++) specs[i] = (st_spec){tensors[i], DTYPE_F32, 1, {2}};
  rotq_error err = {{0}};
  st_writer *w = st_writer_open(sub, specs, count, 0, &err);
  if (!w) fail_msg("%s", err.message);
  for (size_t i = 0; i < count; i++) {
    float values[2] = {(float)i, -(float)i};
    assert_int_equal(st_writer_write(w, i, values, &err), 0);
  }
  assert_int_equal(st_writer_finish(w, &err), 0);
  assert_int_equal(run_command("mv '%s/model.safetensors' '%s' && rmdir '%s'", sub, join(name), sub), 0);
}

static void expect_open_fails(const char *const *fragments) {
  checkpoint ck;
  rotq_error err = {{0}};
  assert_int_equal(checkpoint_open(dir, &ck, &err), -1);
  for (; *fragments; fragments++)
    if (!strstr(err.message, *fragments)) fail_msg("'%s' not in message: %s", *fragments, err.message);
  assert_null(ck.shards);
}

#define OPEN_FAILS(...) expect_open_fails((const char *const[]){__VA_ARGS__, NULL})

static void test_stories260k(void **state) {
  (void)state;
  checkpoint ck;
  rotq_error err = {{0}};
  if (checkpoint_open(source_path("models/stories260K"), &ck, &err) != 0) fail_msg("%s", err.message);
  const model_config *c = &ck.config;
  assert_string_equal(c->architecture, "LlamaForCausalLM");
  assert_string_equal(c->model_type, "llama");
  assert_int_equal(c->hidden_size, 64);
  assert_int_equal(c->intermediate_size, 172);
  assert_int_equal(c->num_hidden_layers, 5);
  assert_int_equal(c->num_attention_heads, 8);
  assert_int_equal(c->num_key_value_heads, 4);
  assert_int_equal(c->head_dim, 8);
  assert_int_equal(c->vocab_size, 512);
  assert_int_equal(c->max_position_embeddings, 512);
  assert_true(c->rms_norm_eps == 1e-5);
  assert_true(c->rope_theta == 10000.0);
  assert_true(c->tie_word_embeddings);
  assert_false(c->attention_bias);
  assert_string_equal(c->rope.type, "");

  assert_int_equal(ck.shard_count, 1);
  assert_int_equal(ck.tensor_count, 2 + 5 * 9); /* embedding, final norm, 9 per layer; tied head */
  for (size_t i = 1; i < ck.tensor_count; i++) assert_true(strcmp(ck.tensors[i - 1]->name, ck.tensors[i]->name) < 0);
  const st_tensor *down = checkpoint_find(&ck, "model.layers.0.mlp.down_proj.weight");
  assert_non_null(down);
  assert_int_equal(down->dtype, DTYPE_F32);
  assert_int_equal(down->ndim, 2);
  assert_int_equal(down->shape[0], 64);
  assert_int_equal(down->shape[1], 172);
  const st_tensor *k = checkpoint_find(&ck, "model.layers.4.self_attn.k_proj.weight");
  assert_int_equal(k->shape[0], 32);
  assert_int_equal(k->shape[1], 64);
  assert_int_equal(checkpoint_find(&ck, "model.embed_tokens.weight")->shape[0], 512);
  assert_null(checkpoint_find(&ck, "lm_head.weight"));

  double *norm64;
  float *norm32;
  assert_int_equal(checkpoint_read_f64(&ck, "model.norm.weight", 64, &norm64, &err), 0);
  assert_int_equal(checkpoint_read_f32(&ck, "model.norm.weight", 0, &norm32, &err), 0);
  for (int i = 0; i < 64; i++) assert_true(norm64[i] == (double)norm32[i]);
  assert_true(norm32[0] > 2.45f && norm32[0] < 2.46f); /* 2.4583089 in the file */
  free(norm64);
  free(norm32);

  assert_int_equal(checkpoint_read_f32(&ck, "model.norm.weight", 65, &norm32, &err), -1);
  assert_non_null(strstr(err.message, "tensor 'model.norm.weight' has 64 elements, expected 65"));
  assert_int_equal(checkpoint_read_f64(&ck, "lm_head.weight", 0, &norm64, &err), -1);
  assert_non_null(strstr(err.message, "stories260K: no tensor 'lm_head.weight'"));
  checkpoint_close(&ck);
}

static void test_config_defaults(void **state) {
  (void)state;
  fresh_dir();
  write_text("config.json", "{\"architectures\":[\"MistralForCausalLM\"],\"model_type\":\"mistral\","
                            "\"hidden_size\":96,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
                            "\"vocab_size\":100,\"head_dim\":null,\"layer_norm_epsilon\":1e-6,"
                            "\"rope_scaling\":null,\"custom_count\":-3,\"ratio\":0.5}");
  model_config c;
  rotq_error err = {{0}};
  if (model_config_load(join("config.json"), &c, &err) != 0) fail_msg("%s", err.message);
  assert_string_equal(c.architecture, "MistralForCausalLM");
  assert_int_equal(c.num_key_value_heads, 4);
  assert_int_equal(c.head_dim, 24);
  assert_true(c.rms_norm_eps == 1e-6);
  assert_true(c.rope_theta == 10000.0);
  assert_false(c.tie_word_embeddings);
  assert_int_equal(c.intermediate_size, 0);
  assert_string_equal(c.rope.type, "");
  long value;
  assert_int_equal(model_config_int(&c, "head_dim", &value, &err), 0);
  assert_int_equal(value, 24);
  assert_int_equal(model_config_int(&c, "num_key_value_heads", &value, &err), 0);
  assert_int_equal(value, 4);
  assert_int_equal(model_config_int(&c, "custom_count", &value, &err), 0);
  assert_int_equal(value, -3);
  assert_int_equal(model_config_int(&c, "hidden_size", &value, &err), 0);
  assert_int_equal(value, 96);
  assert_int_equal(model_config_int(&c, "ratio", &value, &err), -1);
  assert_non_null(strstr(err.message, "config.json: field 'ratio' is not an integer"));
  assert_int_equal(model_config_int(&c, "moe_intermediate_size", &value, &err), -1);
  assert_non_null(strstr(err.message, "config.json: no field 'moe_intermediate_size'"));
  model_config_free(&c);
}

static void test_config_explicit_fields(void **state) {
  (void)state;
  fresh_dir();
  /* Qwen3-like: head_dim (128) is not hidden / heads (64) */
  write_text("config.json", "{\"architectures\":[\"Qwen3ForCausalLM\"],\"model_type\":\"qwen3\","
                            "\"hidden_size\":1024,\"num_hidden_layers\":28,\"num_attention_heads\":16,"
                            "\"num_key_value_heads\":8,\"head_dim\":128,\"vocab_size\":151936,"
                            "\"rms_norm_eps\":1e-6,\"rope_theta\":1000000,\"tie_word_embeddings\":true,"
                            "\"attention_bias\":true,\"rope_scaling\":{\"type\":\"llama3\",\"factor\":32.0,"
                            "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
                            "\"original_max_position_embeddings\":8192}}");
  model_config c;
  rotq_error err = {{0}};
  if (model_config_load(join("config.json"), &c, &err) != 0) fail_msg("%s", err.message);
  assert_int_equal(c.head_dim, 128);
  assert_int_equal(c.num_key_value_heads, 8);
  assert_int_equal(c.vocab_size, 151936);
  assert_true(c.rope_theta == 1e6);
  assert_true(c.tie_word_embeddings);
  assert_true(c.attention_bias);
  assert_false(c.mlp_bias);
  assert_string_equal(c.rope.type, "llama3");
  assert_true(c.rope.factor == 32.0 && c.rope.low_freq_factor == 1.0 && c.rope.high_freq_factor == 4.0);
  assert_int_equal(c.rope.original_max_position_embeddings, 8192);
  model_config_free(&c);

  /* Gemma ties embeddings by default; fields nested under text_config are found */
  write_text("gemma.json", "{\"model_type\":\"gemma3_text\",\"hidden_size\":640,\"num_hidden_layers\":18,"
                           "\"num_attention_heads\":4,\"num_key_value_heads\":1,\"head_dim\":256,"
                           "\"vocab_size\":262144,\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":8}}");
  if (model_config_load(join("gemma.json"), &c, &err) != 0) fail_msg("%s", err.message);
  assert_true(c.tie_word_embeddings);
  assert_string_equal(c.rope.type, "linear");
  assert_true(c.rope.factor == 8.0);
  model_config_free(&c);
  write_text("nested.json", "{\"architectures\":[\"Gemma3ForConditionalGeneration\"],\"model_type\":\"gemma3\","
                            "\"text_config\":{\"hidden_size\":32,\"num_hidden_layers\":2,"
                            "\"num_attention_heads\":2,\"vocab_size\":50,\"rope_theta\":500.0}}");
  if (model_config_load(join("nested.json"), &c, &err) != 0) fail_msg("%s", err.message);
  assert_int_equal(c.hidden_size, 32);
  assert_int_equal(c.head_dim, 16);
  assert_true(c.rope_theta == 500.0);
  model_config_free(&c);
}

static void expect_config_rejected(const char *text, const char *fragment) {
  write_text("config.json", text);
  model_config c;
  rotq_error err = {{0}};
  assert_int_equal(model_config_load(join("config.json"), &c, &err), -1);
  assert_non_null(strstr(err.message, join("config.json")));
  if (!strstr(err.message, fragment)) fail_msg("'%s' not in message: %s", fragment, err.message);
  assert_null(c.json);
}

static void test_config_errors(void **state) {
  (void)state;
  fresh_dir();
  model_config c;
  rotq_error err = {{0}};
  assert_int_equal(model_config_load(join("config.json"), &c, &err), -1);
  assert_non_null(strstr(err.message, "config.json: cannot open: No such file"));
  expect_config_rejected("{\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2}",
                         "missing required field 'vocab_size'");
  expect_config_rejected("{\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":4}",
                         "missing required field 'hidden_size'");
  expect_config_rejected("{\"hidden_size\":8.5,\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":4}",
                         "field 'hidden_size' is not a positive integer");
  expect_config_rejected("{\"hidden_size\":8,\"num_hidden_layers\":0,\"num_attention_heads\":2,\"vocab_size\":4}",
                         "field 'num_hidden_layers' is not a positive integer");
  expect_config_rejected("{\"hidden_size\":9,\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":4}",
                         "hidden_size 9 is not a multiple of num_attention_heads 2");
  expect_config_rejected("{\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":4,"
                         "\"num_key_value_heads\":3,\"vocab_size\":4}",
                         "num_attention_heads 4 is not a multiple of num_key_value_heads 3");
  expect_config_rejected("{\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
                         "\"vocab_size\":4,\"tie_word_embeddings\":1}",
                         "field 'tie_word_embeddings' is not true or false");
  expect_config_rejected("{\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
                         "\"vocab_size\":4,\"rms_norm_eps\":\"small\"}",
                         "field 'rms_norm_eps' is not a number");
  expect_config_rejected("{\"hidden_size\":8,", "not valid JSON");
  expect_config_rejected("[]", "not a JSON object");
}

static void test_finds_shards_without_index(void **state) {
  (void)state;
  fresh_dir();
  write_text("config.json", MINIMAL_CONFIG);
  OPEN_FAILS(dir, "no model.safetensors");
  write_shard("b.safetensors", (const char *const[]){"model.z", "model.y"}, 2);
  write_shard("a.safetensors", (const char *const[]){"model.x"}, 1);
  write_text("notes.txt", "not a shard");
  checkpoint ck;
  rotq_error err = {{0}};
  if (checkpoint_open(dir, &ck, &err) != 0) fail_msg("%s", err.message);
  assert_int_equal(ck.shard_count, 2);
  assert_string_equal(ck.shards[0].path, join("a.safetensors")); /* sorted */
  assert_int_equal(ck.tensor_count, 3);
  assert_string_equal(ck.tensors[0]->name, "model.x");
  assert_string_equal(ck.tensors[2]->name, "model.z");
  float *y;
  assert_int_equal(checkpoint_read_f32(&ck, "model.y", 2, &y, &err), 0);
  assert_true(y[0] == 1.0f && y[1] == -1.0f);
  free(y);
  checkpoint_close(&ck);

  write_shard("c.safetensors", (const char *const[]){"model.y"}, 1);
  OPEN_FAILS("tensor 'model.y' is in both", "b.safetensors", "c.safetensors");

  /* model.safetensors wins over other files */
  write_shard("model.safetensors", (const char *const[]){"only"}, 1);
  if (checkpoint_open(dir, &ck, &err) != 0) fail_msg("%s", err.message);
  assert_int_equal(ck.tensor_count, 1);
  checkpoint_close(&ck);

  remove(join("config.json"));
  OPEN_FAILS(join("config.json"), "cannot open");
}

#define INDEX_PREFIX "{\"metadata\":{\"total_size\":24},\"weight_map\":{"

static void test_index_checked_against_shards(void **state) {
  (void)state;
  fresh_dir();
  write_text("config.json", MINIMAL_CONFIG);
  write_shard("model-00001-of-00002.safetensors", (const char *const[]){"a", "b"}, 2);
  write_shard("model-00002-of-00002.safetensors", (const char *const[]){"c"}, 1);
  const char *index = join("model.safetensors.index.json");
  write_text("model.safetensors.index.json",
             INDEX_PREFIX "\"c\":\"model-00002-of-00002.safetensors\","
                          "\"a\":\"model-00001-of-00002.safetensors\",\"b\":\"model-00001-of-00002.safetensors\"}}");
  checkpoint ck;
  rotq_error err = {{0}};
  if (checkpoint_open(dir, &ck, &err) != 0) fail_msg("%s", err.message);
  assert_int_equal(ck.shard_count, 2);
  assert_int_equal(ck.tensor_count, 3);
  assert_non_null(checkpoint_find(&ck, "c"));
  checkpoint_close(&ck);

  write_text("model.safetensors.index.json",
             INDEX_PREFIX "\"a\":\"model-00001-of-00002.safetensors\",\"b\":\"model-00001-of-00002.safetensors\","
                          "\"c\":\"model-00003-of-00002.safetensors\"}}");
  OPEN_FAILS(index, "names shard model-00003-of-00002.safetensors, which is not a file");

  write_text("model.safetensors.index.json",
             INDEX_PREFIX "\"a\":\"model-00001-of-00002.safetensors\",\"b\":\"model-00001-of-00002.safetensors\","
                          "\"c\":\"model-00002-of-00002.safetensors\",\"d\":\"model-00002-of-00002.safetensors\"}}");
  OPEN_FAILS(index, "puts tensor 'd' in model-00002-of-00002.safetensors, which has no such tensor");

  write_text("model.safetensors.index.json",
             INDEX_PREFIX "\"a\":\"model-00001-of-00002.safetensors\",\"b\":\"model-00002-of-00002.safetensors\","
                          "\"c\":\"model-00002-of-00002.safetensors\"}}");
  OPEN_FAILS(index, "puts tensor 'b' in model-00002-of-00002.safetensors, which has no such tensor",
             "it is in model-00001-of-00002.safetensors");

  write_text("model.safetensors.index.json",
             INDEX_PREFIX "\"a\":\"model-00001-of-00002.safetensors\",\"c\":\"model-00002-of-00002.safetensors\"}}");
  OPEN_FAILS(join("model-00001-of-00002.safetensors"), "tensor 'b' is not listed in the weight_map of", index);

  write_text("model.safetensors.index.json",
             INDEX_PREFIX "\"a\":\"model-00001-of-00002.safetensors\",\"b\":\"model-00001-of-00002.safetensors\","
                          "\"a\":\"model-00001-of-00002.safetensors\",\"c\":\"model-00002-of-00002.safetensors\"}}");
  OPEN_FAILS(index, "weight_map lists tensor 'a' twice");

  write_text("model.safetensors.index.json", INDEX_PREFIX "\"a\":\"../model-00001-of-00002.safetensors\"}}");
  OPEN_FAILS(index, "tensor 'a' names no shard file in this directory");

  write_text("model.safetensors.index.json", "{\"metadata\":{}}");
  OPEN_FAILS(index, "\"weight_map\" is missing");

  write_text("model.safetensors.index.json", "{\"weight_map\":");
  OPEN_FAILS(index, "not valid JSON");

  /* a shard that is not valid safetensors is named with its own error */
  write_text("model.safetensors.index.json",
             INDEX_PREFIX "\"a\":\"model-00001-of-00002.safetensors\",\"b\":\"model-00001-of-00002.safetensors\","
                          "\"c\":\"model-00002-of-00002.safetensors\"}}");
  write_text("model-00002-of-00002.safetensors", "");
  OPEN_FAILS(join("model-00002-of-00002.safetensors"), "empty file");
}

/* config.json round trip: number literals keep their spelling (transformers 5 refuses 30 where a
 * float is declared; cJSON alone prints 30.0 as 30), a number changed in memory prints its new
 * value; transformers 5's Nemotron-H form gives num_hidden_layers from layers_block_type. */
static void test_config_literals_and_layers_block_type(void **state) {
  (void)state;
  fresh_dir();
  write_text("config.json",
             "{\"model_type\":\"nemotron_h\",\"hidden_size\":8,\"num_attention_heads\":2,\"vocab_size\":16,"
             "\"final_logit_softcapping\":30.0,\"router_jitter_noise\":0.0,\"rms_norm_eps\":1e-06,\"big\":1E+3,"
             "\"time_step_limit\":[0.0,{\"__float__\":\"Infinity\"}],\"s\":\"a \\\"1.0\\\" 2\",\"n\":-5,"
             "\"changed\":2.0,\"layers_block_type\":[\"linear_attention\",\"full_attention\",\"mlp\"]}");
  model_config c;
  rotq_error err = {{0}};
  if (model_config_load(join("config.json"), &c, &err) != 0) fail_msg("%s", err.message);
  assert_int_equal(c.num_hidden_layers, 3);
  assert_true(c.rms_norm_eps == 1e-6);
  cJSON_SetNumberValue(cJSON_GetObjectItem(c.json, "changed"), 2.5);
  if (json_file_write(join("out.json"), c.json, &err) != 0) fail_msg("%s", err.message);
  model_config_free(&c);
  FILE *f = fopen(join("out.json"), "r");
  assert_non_null(f);
  char text[4096] = {0};
  assert_true(fread(text, 1, sizeof text - 1, f) > 0);
  fclose(f);
  const char *expected[] = {"\"final_logit_softcapping\":\t30.0",
                            "\"router_jitter_noise\":\t0.0",
                            "\"rms_norm_eps\":\t1e-06",
                            "\"big\":\t1E+3",
                            "\"n\":\t-5",
                            "\"changed\":\t2.5",
                            "\"s\":\t\"a \\\"1.0\\\" 2\""};
  for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
    if (!strstr(text, expected[i])) fail_msg("written config lacks %s:\n%s", expected[i], text);
  if (!strstr(text, "[0.0, {")) fail_msg("time_step_limit lost 0.0:\n%s", text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stories260k),
      cmocka_unit_test(test_config_defaults),
      cmocka_unit_test(test_config_explicit_fields),
      cmocka_unit_test(test_config_errors),
      cmocka_unit_test(test_finds_shards_without_index),
      cmocka_unit_test(test_index_checked_against_shards),
      cmocka_unit_test(test_config_literals_and_layers_block_type),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

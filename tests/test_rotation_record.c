/* rotation.json (rotate/rotation_record.h) and the plan it records:
 *  - a seed of 2^53 + 1 (not a double) is recorded exactly, as a decimal string, at the top level,
 *    in every matrix and in the online recipes; rotating again with the recorded seed gives the same
 *    output bytes, and 2^53 (what a double reading would give) gives other bytes;
 *  - the seed codec reads the strings and the numbers of older records, and refuses the rest;
 *    model/online_hooks reads older numeric recipe seeds too;
 *  - the whole-model check of an online rotation runs before rotation.json exists (it takes the
 *    plan's online section) and its result is in the one record written;
 *  - online rotations are part of the checked plan: an online R4 whose order does not fit its
 *    down_proj is refused by processor_init, before anything is written, and the runner leaves no
 *    output; an online half on another weight fails the plan checks; the plan lays out the online
 *    export's tensors and quantization_config. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/json_file.h"
#include "model/online_hooks.h"
#include "rotate/quarot_processor.h"
#include "rotate/rotation_record.h"
#include "rotq.h"
#include "support/test_support.h"
#include "synth/synth.h"

#define SEED_2_53_PLUS_1 9007199254740993ULL

static void synth_small(const char *dir, int intermediate) {
  synth_spec spec = {.architecture = "LlamaForCausalLM",
                     .hidden_size = 64,
                     .intermediate_size = intermediate,
                     .num_layers = 2,
                     .num_heads = 4,
                     .num_kv_heads = 2,
                     .vocab_size = 128,
                     .dtype = DTYPE_F32,
                     .seed = 3};
  rotq_error err = {{0}};
  if (synth_write(&spec, dir, &err) < 0) fail_msg("synth: %s", err.message);
}

static int rotate(const char *in, const char *out, uint64_t seed, int verify, rotq_error *err) {
  rotq_rotate_options o = rotq_rotate_default_options();
  o.model_dir = in;
  o.output_dir = out;
  o.seed = seed;
  o.online = 1;
  o.verify = verify;
  o.quiet = 1;
  return rotq_rotate(&o, err);
}

static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* FNV-1a 64 over (name, bytes) of every file in dir but rotation.json, in name order. */
static uint64_t hash_dir(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  char *names[64];
  size_t n = 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.' || strcmp(e->d_name, "rotation.json") == 0) continue;
    assert_true(n < 64);
    names[n++] = strdup(e->d_name);
  }
  closedir(d);
  qsort(names, n, sizeof names[0], by_name);
  uint64_t h = 0xcbf29ce484222325ull;
  static unsigned char buffer[1 << 16];
  for (size_t i = 0; i < n; i++) {
    h = fnv1a(h, (const unsigned char *)names[i], strlen(names[i]) + 1);
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    for (size_t got; (got = fread(buffer, 1, sizeof buffer, f)) > 0;) h = fnv1a(h, buffer, got);
    fclose(f);
    free(names[i]);
  }
  return h;
}

static cJSON *read_json_file(const char *dir, const char *file) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  rotq_error err = {{0}};
  cJSON *json = json_file_read(path, &err);
  if (!json) fail_msg("%s", err.message);
  return json;
}

/* Every "seed" below json (matrices and their parts) is the string of a uint64; returns how many. */
static int check_matrix_seeds(const cJSON *json) {
  int count = 0;
  const cJSON *item;
  cJSON_ArrayForEach(item, json) {
    if (item->string && !strcmp(item->string, "seed")) {
      if (!cJSON_IsString(item)) fail_msg("a matrix seed is not a string");
      uint64_t s;
      assert_int_equal(json_seed_get(item, &s), 0);
      count++;
    }
    if (cJSON_IsObject(item) || cJSON_IsArray(item)) count += check_matrix_seeds(item);
  }
  return count;
}

static void seed_2_53_plus_1_is_recorded_and_reproduces(void **state) {
  (void)state;
  char *dir = scratch_dir("record-seed");
  char in[4200], a[4200], b[4200], c[4200];
  snprintf(in, sizeof in, "%s/in", dir);
  snprintf(a, sizeof a, "%s/a", dir);
  snprintf(b, sizeof b, "%s/b", dir);
  snprintf(c, sizeof c, "%s/c", dir);
  synth_small(in, 96);
  rotq_error err = {{0}};
  if (rotate(in, a, SEED_2_53_PLUS_1, ROTQ_VERIFY_ALL, &err) < 0) fail_msg("rotate: %s", err.message);

  cJSON *record = read_json_file(a, "rotation.json");
  const cJSON *seed = cJSON_GetObjectItemCaseSensitive(record, "seed");
  assert_true(cJSON_IsString(seed));
  assert_string_equal(seed->valuestring, "9007199254740993");
  uint64_t recorded = 0;
  assert_int_equal(rotation_record_seed(record, &recorded, &err), 0);
  assert_true(recorded == SEED_2_53_PLUS_1);
  assert_true(check_matrix_seeds(cJSON_GetObjectItemCaseSensitive(record, "matrices")) > 0);
  /* the online recipes' seeds: strings too */
  const cJSON *rotations =
                  cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(record, "online"), "rotations"),
              *r;
  assert_true(cJSON_GetArraySize(rotations) > 0);
  cJSON_ArrayForEach(r, rotations) {
    const cJSON *seeds = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "recipe"), "seeds"), *s;
    cJSON_ArrayForEach(s, seeds) assert_true(cJSON_IsString(s));
  }
  /* the whole-model check ran (on the plan's online section) before the one record was written */
  const cJSON *whole =
      cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(record, "verification"), "whole_model");
  assert_true(cJSON_IsString(whole));
  assert_non_null(strstr(whole->valuestring, "passed"));
  cJSON_Delete(record);

  /* the recorded seed, passed again: the same bytes; 2^53 (a double's reading): other bytes */
  if (rotate(in, b, recorded, ROTQ_VERIFY_IN_STREAM, &err) < 0) fail_msg("rotate: %s", err.message);
  if (rotate(in, c, (uint64_t)(double)SEED_2_53_PLUS_1, ROTQ_VERIFY_IN_STREAM, &err) < 0)
    fail_msg("rotate: %s", err.message);
  assert_true((uint64_t)(double)SEED_2_53_PLUS_1 != SEED_2_53_PLUS_1);
  assert_true(hash_dir(a) == hash_dir(b));
  assert_true(hash_dir(a) != hash_dir(c));
  scratch_remove(dir);
  free(dir);
}

static void seed_codec_reads_strings_and_old_numbers(void **state) {
  (void)state;
  uint64_t s = 0;
  cJSON *v = json_seed_create(18446744073709551615ULL);
  assert_string_equal(v->valuestring, "18446744073709551615");
  assert_int_equal(json_seed_get(v, &s), 0);
  assert_true(s == 18446744073709551615ULL);
  cJSON_Delete(v);
  const char *bad[] = {"", "-1", "1e3", "0x10", " 7", "18446744073709551616", "3.0"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    v = cJSON_CreateString(bad[i]);
    if (json_seed_get(v, &s) == 0) fail_msg("seed '%s' was accepted", bad[i]);
    cJSON_Delete(v);
  }
  /* older records: integral numbers up to 2^53 */
  v = cJSON_CreateNumber(10);
  assert_int_equal(json_seed_get(v, &s), 0);
  assert_true(s == 10);
  cJSON_Delete(v);
  double bad_numbers[] = {-1, 0.5, 18446744073709551616.0};
  for (size_t i = 0; i < sizeof bad_numbers / sizeof bad_numbers[0]; i++) {
    v = cJSON_CreateNumber(bad_numbers[i]);
    assert_int_equal(json_seed_get(v, &s), -1);
    cJSON_Delete(v);
  }
  /* an older record's numeric run seed, and online recipe seeds written as numbers */
  cJSON *old = cJSON_Parse("{\"seed\": 3}");
  rotq_error err = {{0}};
  assert_int_equal(rotation_record_seed(old, &s, &err), 0);
  assert_true(s == 3);
  cJSON_Delete(old);
  cJSON *recipe_json =
      cJSON_Parse("{\"kronecker\": [1, 8], \"mode\": \"hadamard\", \"seeds\": [0, 5], \"block_size\": 0}");
  online_recipe recipe;
  assert_int_equal(online_recipe_from_json(recipe_json, &recipe, "test", &err), 0);
  assert_true(recipe.seed_n == 5 && recipe.seed_m == 0 && recipe.n == 8);
  cJSON_Delete(recipe_json);
}

/* Plans in (the built-in config, online on); returns processor_init's status. */
static int plan(const char *in, quarot_processor *p, checkpoint *ck, rotation_config *config, rotq_error *err) {
  assert_int_equal(checkpoint_open(in, ck, err), 0);
  const model_adapter *a = adapter_for(&ck->config, err);
  assert_non_null(a);
  assert_int_equal(rotation_config_load("transformer_universal", config, err), 0);
  processor_options options = {.seed = 1, .threads = 1, .online = true};
  return processor_init(p, ck, a, config, &options, err);
}

/* Rewrites dir/config.json with intermediate_size = value (the tensors unchanged). */
static void set_intermediate_size(const char *dir, int value) {
  cJSON *config = read_json_file(dir, "config.json");
  cJSON_ReplaceItemInObjectCaseSensitive(config, "intermediate_size", cJSON_CreateNumber(value));
  char path[4200];
  snprintf(path, sizeof path, "%s/config.json", dir);
  assert_int_equal(remove(path), 0);
  rotq_error err = {{0}};
  if (json_file_write(path, config, &err) < 0) fail_msg("%s", err.message);
  cJSON_Delete(config);
}

static void online_rotations_are_part_of_the_checked_plan(void **state) {
  (void)state;
  char *dir = scratch_dir("record-plan");
  char in[4200], bad[4200], out[4200];
  snprintf(in, sizeof in, "%s/in", dir);
  snprintf(bad, sizeof bad, "%s/bad", dir);
  snprintf(out, sizeof out, "%s/out", dir);
  synth_small(in, 96);
  rotq_error err = {{0}};
  checkpoint ck;
  rotation_config config;
  quarot_processor p;
  assert_int_equal(plan(in, &p, &ck, &config, &err), 0);
  /* every layer's down_proj and o_proj carry their online halves, in the plan */
  int down = 0, o = 0;
  for (size_t i = 0; i < p.commands.count; i++) {
    const rotate_command *c = &p.commands.items[i];
    down += c->online == ONLINE_INPUT && strstr(c->name, "mlp.down_proj.weight") != NULL;
    o += c->online == ONLINE_INPUT_HEADS && strstr(c->name, "self_attn.o_proj.weight") != NULL;
    assert_true(c->online == ONLINE_NONE || strstr(c->name, "down_proj.weight") || strstr(c->name, "o_proj.weight"));
  }
  assert_int_equal(down, 2);
  assert_int_equal(o, 2);
  /* the writer's layout: the commands' tensors, then the stored R4 and heads matrices (R3 has none:
   * no engine has a parameter for it) */
  assert_int_equal(p.output_count, p.commands.count + 2);
  assert_non_null(strstr(p.outputs[p.commands.count].name, "R4_input.weight"));
  assert_non_null(p.quantization_config);
  assert_true(cJSON_IsObject(p.online_section));
  /* the plan checks place online halves on the inputs of down_proj and o_proj weights only */
  rotate_command *q = commands_find(&p.commands, "model.layers.0.self_attn.q_proj.weight");
  const rotate_command *d = commands_find(&p.commands, "model.layers.0.mlp.down_proj.weight");
  assert_non_null(q);
  assert_non_null(d);
  q->online = ONLINE_INPUT;
  q->online_rotation = d->online_rotation;
  assert_int_equal(commands_check(&p.commands, p.adapter, &err), -1);
  assert_non_null(strstr(err.message, "q_proj"));
  q->online = ONLINE_NONE;
  q->online_rotation = NULL;
  assert_int_equal(commands_check(&p.commands, p.adapter, &err), 0);
  processor_free(&p);
  rotation_config_free(&config);
  checkpoint_close(&ck);

  /* config.json says intermediate_size 128, the down_proj weights are 96 wide: R4 (order 128)
   * does not fit, and the plan checks say so */
  synth_small(bad, 96);
  set_intermediate_size(bad, 128);
  assert_int_equal(plan(bad, &p, &ck, &config, &err), -1);
  assert_non_null(strstr(err.message, "mlp.down_proj.weight"));
  assert_non_null(strstr(err.message, "online R4"));
  rotation_config_free(&config);
  checkpoint_close(&ck);
  /* and rotq_rotate refuses it before writing anything: no output, no temporary directory */
  err = (rotq_error){{0}};
  assert_int_equal(rotate(bad, out, 1, ROTQ_VERIFY_IN_STREAM, &err), -1);
  assert_non_null(strstr(err.message, "online R4"));
  struct stat st;
  assert_int_not_equal(stat(out, &st), 0);
  assert_int_equal(run_command("ls -a '%s' | grep -q rotq-partial", dir), 1);
  scratch_remove(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(seed_2_53_plus_1_is_recorded_and_reproduces),
      cmocka_unit_test(seed_codec_reads_strings_and_old_numbers),
      cmocka_unit_test(online_rotations_are_part_of_the_checked_plan),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

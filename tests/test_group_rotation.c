/* Rotations sized to the quantization group (config block_size, rotq_rotate_options.block_size,
 * `rotq rotate --block-size`): the block chosen for each order, the matrix block-diagonal and
 * orthogonal, and a checkpoint rotated so (R1, R2, online R4 and heads) computing the original's
 * function — proven by rotq's own in-stream and whole-model checks and by the test's oracle. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json_file.h"
#include "linalg/rotation.h"
#include "support/equivalence.h"
#include "support/test_support.h"
#include "synth/synth.h"

/* The largest power of two dividing the order, at most the group; 0 when that is the order. */
static void group_block_sizes(void **state) {
  (void)state;
  assert_int_equal(rotation_group_block(64, 32), 32);
  assert_int_equal(rotation_group_block(64, 16), 16);
  assert_int_equal(rotation_group_block(64, 64), 0);
  assert_int_equal(rotation_group_block(64, 128), 0);
  assert_int_equal(rotation_group_block(172, 32), 4); /* 172 = 4 · 43 */
  assert_int_equal(rotation_group_block(96, 16), 16);
  assert_int_equal(rotation_group_block(96, 128), 32); /* 96 = 32 · 3: blocks of 32 */
  assert_int_equal(rotation_group_block(8, 2), 2);
  assert_int_equal(rotation_group_block(7, 16), 1); /* odd: blocks of 1 (signs) straddle no group */
  assert_int_equal(rotation_group_block(4096, 0), 0);
  assert_int_equal(rotation_group_block(4096, -1), 0);
}

/* Every entry outside the b × b diagonal blocks is exactly 0, the blocks are one matrix repeated,
 * and the whole is orthogonal. */
static void check_block_diagonal(rotation_mode mode, int n, int b) {
  rotq_error err = {{0}};
  rotation *r = rotation_create(n, mode, 11, b, &err);
  if (!r) fail_msg("%s", err.message);
  double *d = malloc(sizeof(double) * (size_t)n * n);
  assert_int_equal(rotation_dense(r, d), 0);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      double v = d[(size_t)i * n + j];
      if (i / b != j / b)
        assert_true(v == 0.0);
      else
        assert_true(v == d[(size_t)(i % b) * n + (j % b)]);
      double dot = 0;
      for (int k = 0; k < n; k++) dot += d[(size_t)i * n + k] * d[(size_t)j * n + k];
      assert_true(fabs(dot - (i == j)) < 1e-12);
    }
  assert_non_null(strstr(rotation_describe(r), "block-diagonal"));
  free(d);
  rotation_free(r);
}

static void block_rotation_is_block_diagonal(void **state) {
  (void)state;
  check_block_diagonal(ROTATION_HADAMARD, 64, 16);
  check_block_diagonal(ROTATION_HADAMARD, 172, 4);
  check_block_diagonal(ROTATION_BASE_HADAMARD, 96, 32);
  check_block_diagonal(ROTATION_ORTHOGONAL, 64, 32);
  check_block_diagonal(ROTATION_HADAMARD, 8, 1); /* signs */
}

/* The rotation's log, kept to see that both checks ran. */
typedef struct captured {
  char text[8192];
} captured;

static void capture(rotq_log_level level, const char *message, void *context) {
  (void)level;
  captured *c = context;
  size_t used = strlen(c->text);
  snprintf(c->text + used, sizeof c->text - used, "%s\n", message);
}

static const cJSON *path_item(const cJSON *j, const char *a, const char *b) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, a);
  return b ? cJSON_GetObjectItemCaseSensitive(x, b) : x;
}

/* The online rotation named name in rotation.json's online section. */
static const cJSON *online_rotation(const cJSON *record, const char *name) {
  const cJSON *r;
  cJSON_ArrayForEach(r, path_item(record, "online", "rotations")) {
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(r, "name");
    if (cJSON_IsString(n) && !strcmp(n->valuestring, name)) return r;
  }
  fail_msg("rotation.json has no online rotation %s", name);
  return NULL;
}

/* Rotates in with block_size and the online rotations, both checks on; then the oracle. */
static cJSON *rotate_grouped(const char *in, const char *out, int block, double tolerance) {
  captured log = {{0}};
  rotq_rotate_options o = rotq_rotate_default_options();
  o.model_dir = in;
  o.output_dir = out;
  o.seed = 5;
  o.online = 1;
  o.block_size = block;
  o.verify = ROTQ_VERIFY_ALL;
  o.log = capture;
  o.log_context = &log;
  rotq_error err = {{0}};
  if (rotq_rotate(&o, &err) != 0) fail_msg("%s", err.message);
  printf("%s", log.text);
  assert_non_null(strstr(log.text, "proven equivalent")); /* the in-stream check */
  assert_non_null(strstr(log.text, "max |Δlogit|"));      /* the whole-model check */
  check_equivalent_logits(in, out, tolerance, out);
  char path[4300];
  snprintf(path, sizeof path, "%s/rotation.json", out);
  cJSON *record = json_file_read(path, &err);
  if (!record) fail_msg("%s", err.message);
  assert_int_equal(path_item(record, "block_size", NULL)->valueint, block);
  return record;
}

static int r1_block(const cJSON *record) {
  return cJSON_GetObjectItemCaseSensitive(
             cJSON_GetArrayItem(path_item(path_item(record, "matrices", "r1"), "matrices", NULL), 0), "block_size")
      ->valueint;
}

static int recipe_block(const cJSON *record, const char *name) {
  return path_item(online_rotation(record, name), "recipe", "block_size")->valueint;
}

/* A float64 synthetic LLaMA (hidden 64, intermediate 172, 8 heads of 8): NVFP4's block 16 gives
 * R1 4 blocks of 16, R2 (order 8) full, R4 43 blocks of 4, R_heads blocks of 16/8 = 2 heads. */
static void group_sized_rotation_is_exact(void **state) {
  (void)state;
  char *scratch = scratch_dir("group-rotation");
  synth_spec spec = {.architecture = "LlamaForCausalLM",
                     .hidden_size = 64,
                     .intermediate_size = 172,
                     .num_layers = 2,
                     .num_heads = 8,
                     .num_kv_heads = 4,
                     .vocab_size = 96,
                     .tie_word_embeddings = true,
                     .dtype = DTYPE_F64,
                     .seed = 3};
  char orig[4200], out[4200];
  snprintf(orig, sizeof orig, "%s/orig", scratch);
  snprintf(out, sizeof out, "%s/b16", scratch);
  rotq_error err = {{0}};
  if (synth_write(&spec, orig, &err) < 0) fail_msg("%s", err.message);
  cJSON *record = rotate_grouped(orig, out, 16, 1e-9);
  assert_int_equal(r1_block(record), 16);
  assert_int_equal(recipe_block(record, "R4"), 4);
  assert_int_equal(recipe_block(record, "R_heads"), 2);
  cJSON_Delete(record);

  /* the bundled float32 model at MXFP4's block 32: R1 2 blocks of 32 */
  snprintf(out, sizeof out, "%s/stories-b32", scratch);
  record = rotate_grouped(source_path("models/stories260K"), out, 32, 1e-5);
  assert_int_equal(r1_block(record), 32);
  assert_int_equal(recipe_block(record, "R_heads"), 4);
  cJSON_Delete(record);
  scratch_remove(scratch);
  free(scratch);
}

/* block_size that is not a power of two is refused, naming the option; -1 is the full size. */
static void bad_block_size_is_refused(void **state) {
  (void)state;
  char *scratch = scratch_dir("group-rotation-bad");
  char out[4200];
  snprintf(out, sizeof out, "%s/out", scratch);
  rotq_rotate_options o = rotq_rotate_default_options();
  o.model_dir = source_path("models/stories260K");
  o.output_dir = out;
  o.block_size = 24;
  rotq_error err = {{0}};
  assert_int_equal(rotq_rotate(&o, &err), -1);
  assert_non_null(strstr(err.message, "block_size 24"));
  o.block_size = -1;
  if (rotq_rotate(&o, &err) != 0) fail_msg("%s", err.message);
  char path[4300];
  snprintf(path, sizeof path, "%s/rotation.json", out);
  cJSON *record = json_file_read(path, &err);
  assert_non_null(record);
  assert_null(cJSON_GetObjectItemCaseSensitive(record, "block_size"));
  assert_int_equal(r1_block(record), 0);
  cJSON_Delete(record);
  scratch_remove(scratch);
  free(scratch);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(group_block_sizes),
      cmocka_unit_test(block_rotation_is_block_diagonal),
      cmocka_unit_test(group_sized_rotation_is_exact),
      cmocka_unit_test(bad_block_size_is_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

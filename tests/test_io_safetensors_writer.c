/* safetensors writer: files read back exactly (single file and shards + index), headers carry
 * {"format":"pt"} first with 8-byte aligned data, and misuse or I/O failures are reported with
 * the file and tensor named. */
#include "support/test_support.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "io/checkpoint.h"
#include "io/safetensors_writer.h"

/* Five tensors of every dtype, 328 data bytes in all, with distinct values. */
static const st_spec specs[] = {
    {"model.a", DTYPE_F32, 2, {2, 5}},  /* 40 bytes */
    {"model.b", DTYPE_F64, 1, {5}},     /* 40 */
    {"model.c", DTYPE_BF16, 2, {4, 5}}, /* 40 */
    {"model.d", DTYPE_F16, 1, {100}},   /* 200 */
    {"model.e", DTYPE_F32, 2, {2, 1}},  /* 8 */
};
#define SPEC_COUNT (sizeof specs / sizeof specs[0])

static size_t spec_numel(const st_spec *s) {
  size_t n = 1;
  for (int d = 0; d < s->ndim; d++) n *= (size_t)s->shape[d];
  return n;
}

/* Values for tensor i, exactly representable in every dtype (small multiples of 1/4). */
static double *spec_values(size_t i) {
  size_t n = spec_numel(&specs[i]);
  double *v = malloc(n * sizeof *v);
  for (size_t k = 0; k < n; k++) v[k] = (double)((int)(i * 100 + k) % 37 - 18) * 0.25;
  return v;
}

/* Writes tensor i through the writer, converted to its dtype. */
static void write_spec(st_writer *w, size_t i) {
  size_t n = spec_numel(&specs[i]);
  double *v = spec_values(i);
  void *raw = malloc(n * dtype_size(specs[i].dtype) + 1);
  dtype_from_f64(specs[i].dtype, v, raw, n);
  rotq_error err = {{0}};
  if (st_writer_write(w, i, raw, &err) != 0) fail_msg("%s", err.message);
  free(raw);
  free(v);
}

static const char *join(const char *dir, const char *name) {
  static char paths[4][4096];
  static int next;
  char *path = paths[next++ % 4];
  snprintf(path, sizeof paths[0], "%s/%s", dir, name);
  return path;
}

/* Checks one shard's header: length prefix makes the data 8-byte aligned, "__metadata__" with
 * format pt comes first. */
static void check_header_layout(const char *path) {
  FILE *file = fopen(path, "rb");
  assert_non_null(file);
  unsigned char prefix[8];
  assert_int_equal(fread(prefix, 1, 8, file), 8);
  unsigned long long length = 0;
  for (int i = 7; i >= 0; i--) length = length << 8 | prefix[i];
  assert_int_equal((8 + length) % 8, 0);
  char *header = calloc(1, length + 1);
  assert_int_equal(fread(header, 1, length, file), length);
  fclose(file);
  assert_int_equal(strncmp(header, "{\"__metadata__\":{\"format\":\"pt\"}", 31), 0);
  free(header);
}

/* Every spec's tensor in the checkpoint has its dtype, shape and values. */
static void check_values(const checkpoint *ck) {
  for (size_t i = 0; i < SPEC_COUNT; i++) {
    const st_tensor *t = checkpoint_find(ck, specs[i].name);
    assert_non_null(t);
    assert_int_equal(t->dtype, specs[i].dtype);
    assert_int_equal(t->ndim, specs[i].ndim);
    for (int d = 0; d < t->ndim; d++) assert_int_equal(t->shape[d], specs[i].shape[d]);
    double *got, *want = spec_values(i);
    rotq_error err = {{0}};
    assert_int_equal(checkpoint_read_f64(ck, specs[i].name, spec_numel(&specs[i]), &got, &err), 0);
    assert_memory_equal(got, want, spec_numel(&specs[i]) * sizeof(double));
    free(got);
    free(want);
  }
}

static void write_config(const char *dir) {
  FILE *file = fopen(join(dir, "config.json"), "w");
  fputs("{\"model_type\":\"llama\",\"hidden_size\":8,\"num_hidden_layers\":1,"
        "\"num_attention_heads\":2,\"vocab_size\":16}",
        file);
  fclose(file);
}

static void test_single_file_round_trip(void **state) {
  (void)state;
  char *dir = scratch_dir("io-writer-single");
  rotq_error err = {{0}};
  st_writer *w = st_writer_open(dir, specs, SPEC_COUNT, 0, &err);
  if (!w) fail_msg("%s", err.message);
  assert_int_equal(st_writer_index(w, "model.d"), 3);
  assert_int_equal(st_writer_index(w, "model.a"), 0);
  assert_int_equal(st_writer_index(w, "model.zz"), -1);
  for (size_t i = SPEC_COUNT; i-- > 0;) write_spec(w, i); /* any order */
  assert_int_equal(st_writer_finish(w, &err), 0);

  const char *path = join(dir, "model.safetensors");
  check_header_layout(path);
  struct stat st;
  assert_int_equal(stat(join(dir, "model.safetensors.index.json"), &st), -1);
  st_file f;
  assert_int_equal(st_open(path, &f, &err), 0);
  assert_string_equal(f.metadata_json, "{\"format\":\"pt\"}");
  assert_int_equal(f.count, SPEC_COUNT);
  for (size_t i = 0; i < SPEC_COUNT; i++) assert_string_equal(f.tensors[i].name, specs[i].name);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal((size_t)st.st_size,
                   (size_t)((const char *)f.tensors[SPEC_COUNT - 1].data - (const char *)f.map) + 8);
  st_close(&f);

  write_config(dir);
  checkpoint ck;
  if (checkpoint_open(dir, &ck, &err) != 0) fail_msg("%s", err.message);
  assert_int_equal(ck.shard_count, 1);
  check_values(&ck);
  checkpoint_close(&ck);
  scratch_remove(dir);
  free(dir);
}

/* With 100-byte shards the tensors (40, 40, 40, 200, 8 bytes) go greedily into four shards:
 * {a, b}, {c}, {d} (alone, larger than the limit), {e}. */
static void test_sharded_round_trip(void **state) {
  (void)state;
  char *dir = scratch_dir("io-writer-sharded");
  rotq_error err = {{0}};
  st_writer *w = st_writer_open(dir, specs, SPEC_COUNT, 100, &err);
  if (!w) fail_msg("%s", err.message);
  for (size_t i = 0; i < SPEC_COUNT; i++) write_spec(w, i);
  assert_int_equal(st_writer_finish(w, &err), 0);

  const char *names[] = {"model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                         "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors"};
  const size_t shard_of[SPEC_COUNT] = {0, 0, 1, 2, 3};
  for (int s = 0; s < 4; s++) check_header_layout(join(dir, names[s]));
  struct stat st;
  assert_int_equal(stat(join(dir, "model.safetensors"), &st), -1);

  FILE *file = fopen(join(dir, "model.safetensors.index.json"), "r");
  assert_non_null(file);
  char text[4096] = {0};
  assert_true(fread(text, 1, sizeof text - 1, file) > 0);
  fclose(file);
  cJSON *index = cJSON_Parse(text);
  assert_non_null(index);
  cJSON *total = cJSON_GetObjectItem(cJSON_GetObjectItem(index, "metadata"), "total_size");
  assert_true(cJSON_IsNumber(total) && total->valuedouble == 328);
  cJSON *map = cJSON_GetObjectItem(index, "weight_map");
  assert_int_equal(cJSON_GetArraySize(map), SPEC_COUNT);
  size_t i = 0;
  cJSON *entry;
  cJSON_ArrayForEach(entry, map) { /* sorted by name; here that is declaration order */
    assert_string_equal(entry->string, specs[i].name);
    assert_string_equal(entry->valuestring, names[shard_of[i]]);
    i++;
  }
  cJSON_Delete(index);

  write_config(dir);
  checkpoint ck;
  if (checkpoint_open(dir, &ck, &err) != 0) fail_msg("%s", err.message);
  assert_int_equal(ck.shard_count, 4);
  assert_int_equal(ck.tensor_count, SPEC_COUNT);
  check_values(&ck);
  checkpoint_close(&ck);
  scratch_remove(dir);
  free(dir);
}

typedef struct writer_job {
  st_writer *w;
  size_t first, step;
} writer_job;

static void *write_every_step(void *arg) {
  writer_job *job = arg;
  for (size_t i = job->first; i < SPEC_COUNT; i += job->step) write_spec(job->w, i);
  return NULL;
}

static void test_concurrent_writes(void **state) {
  (void)state;
  char *dir = scratch_dir("io-writer-threads");
  rotq_error err = {{0}};
  st_writer *w = st_writer_open(dir, specs, SPEC_COUNT, 64, &err);
  if (!w) fail_msg("%s", err.message);
  pthread_t threads[3];
  writer_job jobs[3];
  for (size_t t = 0; t < 3; t++) {
    jobs[t] = (writer_job){w, t, 3};
    assert_int_equal(pthread_create(&threads[t], NULL, write_every_step, &jobs[t]), 0);
  }
  for (size_t t = 0; t < 3; t++) pthread_join(threads[t], NULL);
  assert_int_equal(st_writer_finish(w, &err), 0);
  write_config(dir);
  checkpoint ck;
  if (checkpoint_open(dir, &ck, &err) != 0) fail_msg("%s", err.message);
  check_values(&ck);
  checkpoint_close(&ck);
  scratch_remove(dir);
  free(dir);
}

static void test_zero_length_and_scalar_tensors(void **state) {
  (void)state;
  char *dir = scratch_dir("io-writer-empty");
  const st_spec odd[] = {{"empty", DTYPE_BF16, 2, {0, 7}}, {"scalar", DTYPE_F64, 0, {0}}};
  rotq_error err = {{0}};
  st_writer *w = st_writer_open(dir, odd, 2, 0, &err);
  if (!w) fail_msg("%s", err.message);
  double pi = 3.25;
  assert_int_equal(st_writer_write(w, 0, NULL, &err), 0);
  assert_int_equal(st_writer_write(w, 1, &pi, &err), 0);
  assert_int_equal(st_writer_finish(w, &err), 0);
  st_file f;
  assert_int_equal(st_open(join(dir, "model.safetensors"), &f, &err), 0);
  assert_int_equal(st_numel(st_find(&f, "empty")), 0);
  assert_int_equal(st_find(&f, "empty")->shape[1], 7);
  const st_tensor *scalar = st_find(&f, "scalar");
  assert_int_equal(scalar->ndim, 0);
  assert_memory_equal(scalar->data, &pi, sizeof pi);
  st_close(&f);
  scratch_remove(dir);
  free(dir);
}

static void test_misuse_is_reported(void **state) {
  (void)state;
  char *dir = scratch_dir("io-writer-misuse");
  rotq_error err = {{0}};
  const st_spec twice[] = {{"x", DTYPE_F32, 1, {1}}, {"x", DTYPE_F32, 1, {1}}};
  assert_null(st_writer_open(dir, twice, 2, 0, &err));
  assert_non_null(strstr(err.message, "tensor 'x' declared twice"));
  const st_spec negative[] = {{"neg", DTYPE_F32, 1, {-1}}};
  assert_null(st_writer_open(dir, negative, 1, 0, &err));
  assert_non_null(strstr(err.message, "tensor 'neg': invalid shape"));
  const st_spec too_many[] = {{"deep", DTYPE_F32, 9, {1}}};
  assert_null(st_writer_open(dir, too_many, 1, 0, &err));
  assert_non_null(strstr(err.message, "tensor 'deep': 9 dimensions"));
  struct stat st;
  assert_int_equal(stat(join(dir, "model.safetensors"), &st), -1); /* nothing left behind */

  st_writer *w = st_writer_open(dir, specs, SPEC_COUNT, 0, &err);
  assert_non_null(w);
  /* the file exists now: a second writer must not replace it */
  assert_null(st_writer_open(dir, specs, SPEC_COUNT, 0, &err));
  assert_non_null(strstr(err.message, join(dir, "model.safetensors")));
  assert_non_null(strstr(err.message, "cannot create: File exists"));
  write_spec(w, 0);
  float zeros[10] = {0};
  assert_int_equal(st_writer_write(w, 0, zeros, &err), -1);
  assert_non_null(strstr(err.message, "tensor 'model.a' written twice"));
  assert_int_equal(st_writer_write(w, SPEC_COUNT, zeros, &err), -1);
  assert_non_null(strstr(err.message, "out of range"));
  write_spec(w, 1);
  assert_int_equal(st_writer_finish(w, &err), -1);
  assert_non_null(strstr(err.message, "tensor 'model.c' was never written (3 of 5 tensors missing)"));
  scratch_remove(dir);
  free(dir);
}

/* A file size limit makes reserving the shard fail with EFBIG, reported before any data. */
static void test_file_too_large_is_reported(void **state) {
  (void)state;
  char *dir = scratch_dir("io-writer-efbig");
  struct rlimit saved, limited;
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
  limited = saved;
  limited.rlim_cur = 200;
  void (*previous)(int) = signal(SIGXFSZ, SIG_IGN);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &limited), 0);
  rotq_error err = {{0}};
  st_writer *w = st_writer_open(dir, specs, SPEC_COUNT, 0, &err);
  setrlimit(RLIMIT_FSIZE, &saved);
  signal(SIGXFSZ, previous);
  assert_null(w);
  assert_non_null(strstr(err.message, join(dir, "model.safetensors")));
  assert_non_null(strstr(err.message, "File too large"));
  scratch_remove(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_single_file_round_trip), cmocka_unit_test(test_sharded_round_trip),
      cmocka_unit_test(test_concurrent_writes),      cmocka_unit_test(test_zero_length_and_scalar_tensors),
      cmocka_unit_test(test_misuse_is_reported),     cmocka_unit_test(test_file_too_large_is_reported),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

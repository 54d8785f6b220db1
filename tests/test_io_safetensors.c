/* safetensors reader: a well-formed file is read as written, and every malformed header is
 * refused with a message naming the file and the tensor or field (and nothing crashes). */
#include "support/test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

static char *dir;

static int setup(void **state) {
  (void)state;
  dir = scratch_dir("io-safetensors");
  return 0;
}

static int teardown(void **state) {
  (void)state;
  scratch_remove(dir);
  free(dir);
  return 0;
}

/* Writes dir/name: the 8-byte length declared_length (or the header's own length if -1), the
 * header text, then data_bytes bytes 0, 1, 2, ... Returns the path (static ring buffer). */
static const char *write_file(const char *name, const char *header, long long declared_length, size_t data_bytes) {
  static char paths[4][4096];
  static int next;
  char *path = paths[next++ % 4];
  snprintf(path, sizeof paths[0], "%s/%s", dir, name);
  FILE *file = fopen(path, "wb");
  assert_non_null(file);
  if (header) {
    unsigned long long length = declared_length < 0 ? strlen(header) : (unsigned long long)declared_length;
    for (int i = 0; i < 8; i++) fputc((int)(length >> (8 * i) & 0xff), file);
    fputs(header, file);
  }
  for (size_t i = 0; i < data_bytes; i++) fputc((int)(i & 0xff), file);
  fclose(file);
  return path;
}

/* st_open on a file made of header and data_bytes must fail with every one of the fragments
 * (NULL-terminated) in its message, the file's name always among them. */
static void expect_rejected(const char *header, size_t data_bytes, const char *const *fragments) {
  const char *path = write_file("bad.safetensors", header, -1, data_bytes);
  st_file f;
  rotq_error err = {{0}};
  assert_int_equal(st_open(path, &f, &err), -1);
  assert_non_null(strstr(err.message, path));
  for (; *fragments; fragments++) {
    if (!strstr(err.message, *fragments)) fail_msg("'%s' not in message: %s", *fragments, err.message);
  }
  assert_null(f.map); /* closed again */
}

#define REJECTED(header, data_bytes, ...) expect_rejected(header, data_bytes, (const char *const[]){__VA_ARGS__, NULL})

static void test_reads_well_formed_file(void **state) {
  (void)state;
  const char *header = "{\"__metadata__\":{\"format\":\"pt\"},"
                       "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                       "\"empty\":{\"dtype\":\"BF16\",\"shape\":[0,4],\"data_offsets\":[24,24]},"
                       "\"scalar\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[24,26]},"
                       "\"d\":{\"data_offsets\":[26,34],\"shape\":[1],\"dtype\":\"F64\"}}  ";
  const char *path = write_file("good.safetensors", header, -1, 34);
  st_file f;
  rotq_error err = {{0}};
  assert_int_equal(st_open(path, &f, &err), 0);
  assert_string_equal(f.path, path);
  assert_int_equal(f.count, 4);
  assert_non_null(f.metadata_json);
  assert_non_null(strstr(f.metadata_json, "\"format\":\"pt\""));
  assert_string_equal(f.tensors[0].name, "w"); /* header order */
  const st_tensor *w = st_find(&f, "w");
  assert_ptr_equal(w, &f.tensors[0]);
  assert_int_equal(w->dtype, DTYPE_F32);
  assert_int_equal(w->ndim, 2);
  assert_int_equal(w->shape[0], 2);
  assert_int_equal(w->shape[1], 3);
  assert_int_equal(st_numel(w), 6);
  assert_int_equal(w->nbytes, 24);
  size_t data_start = 8 + strlen(header);
  assert_ptr_equal(w->data, (const char *)f.map + data_start);
  const st_tensor *empty = st_find(&f, "empty");
  assert_int_equal(st_numel(empty), 0);
  assert_int_equal(empty->nbytes, 0);
  const st_tensor *scalar = st_find(&f, "scalar");
  assert_int_equal(scalar->ndim, 0);
  assert_int_equal(st_numel(scalar), 1);
  const st_tensor *d = st_find(&f, "d");
  assert_int_equal(((const unsigned char *)d->data)[0], 26); /* data bytes are 0, 1, 2, ... */
  assert_null(st_find(&f, "missing"));
  st_close(&f);
  assert_null(f.map);
}

static void test_file_without_metadata_or_tensors(void **state) {
  (void)state;
  st_file f;
  rotq_error err = {{0}};
  assert_int_equal(st_open(write_file("empty-header.safetensors", "{}", -1, 0), &f, &err), 0);
  assert_int_equal(f.count, 0);
  assert_null(f.metadata_json);
  st_close(&f);
}

static void test_rejects_missing_empty_and_short_files(void **state) {
  (void)state;
  st_file f;
  rotq_error err = {{0}};
  char path[4096];
  snprintf(path, sizeof path, "%s/absent.safetensors", dir);
  assert_int_equal(st_open(path, &f, &err), -1);
  assert_non_null(strstr(err.message, path));
  assert_non_null(strstr(err.message, "No such file"));

  const char *empty = write_file("zero.safetensors", NULL, 0, 0);
  assert_int_equal(st_open(empty, &f, &err), -1);
  assert_non_null(strstr(err.message, empty));
  assert_non_null(strstr(err.message, "empty file"));

  const char *short_file = write_file("short.safetensors", NULL, 0, 5);
  assert_int_equal(st_open(short_file, &f, &err), -1);
  assert_non_null(strstr(err.message, short_file));
  assert_non_null(strstr(err.message, "5 bytes, too short"));

  assert_int_equal(st_open(dir, &f, &err), -1); /* a directory */
  assert_non_null(strstr(err.message, "not a regular file"));
}

static void test_rejects_header_length_beyond_file(void **state) {
  (void)state;
  st_file f;
  rotq_error err = {{0}};
  const char *path = write_file("long.safetensors", "{}", 1000, 0);
  assert_int_equal(st_open(path, &f, &err), -1);
  assert_non_null(strstr(err.message, path));
  assert_non_null(strstr(err.message, "header length 1000 exceeds the 2 bytes"));
  path = write_file("huge.safetensors", "{}", (long long)1 << 62, 0);
  assert_int_equal(st_open(path, &f, &err), -1);
  assert_non_null(strstr(err.message, "exceeds"));
}

static void test_rejects_malformed_json(void **state) {
  (void)state;
  REJECTED("{\"w\":{\"dtype\":\"F32\",", 0, "not valid JSON");
  REJECTED("", 0, "not valid JSON");
  REJECTED("[1,2]", 0, "not a JSON object");
  REJECTED("{} {}", 0, "bytes after its JSON object");
  REJECTED("{\"w\":[]}", 0, "tensor 'w'", "not an object");
  REJECTED("{\"__metadata__\":{\"format\":1}}", 0, "__metadata__", "'format' is not a string");
  REJECTED("{\"__metadata__\":[]}", 0, "__metadata__", "not an object");
}

static void test_rejects_bad_dtype(void **state) {
  (void)state;
  REJECTED("{\"w\":{\"dtype\":\"I4\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "tensor 'w'",
           "unsupported dtype 'I4'");
  REJECTED("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'w'", "\"dtype\" is missing");
}

static void test_rejects_bad_shapes(void **state) {
  (void)state;
  REJECTED("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,0]}}", 0, "tensor 'w'",
           "shape dimension 1 is not a non-negative integer");
  REJECTED("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "tensor 'w'",
           "shape dimension 0 is not a non-negative integer");
  REJECTED("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8, "tensor 'w'",
           "not a non-negative integer");
  REJECTED("{\"w\":{\"dtype\":\"F32\",\"shape\":3,\"data_offsets\":[0,12]}}", 12, "tensor 'w'",
           "\"shape\" is missing or not an array");
  REJECTED("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "tensor 'w'",
           "9 dimensions");
  REJECTED("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,0]}}", 0, "tensor 'w'",
           "too many elements");
  REJECTED("{\"w\":{\"dtype\":\"F64\",\"shape\":[4294967296,536870912],\"data_offsets\":[0,0]}}", 0, "tensor 'w'",
           "too large for F64");
}

static void test_rejects_bad_offsets(void **state) {
  (void)state;
  /* the data section is cut short: 8 bytes announced, 4 present */
  REJECTED("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "tensor 'w'",
           "data_offsets [0, 8] lie outside the data section (4 bytes)");
  REJECTED("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1000,1004]}}", 8, "tensor 'w'",
           "outside the data section");
  REJECTED("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8, "tensor 'w'",
           "end before they begin");
  REJECTED("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24, "tensor 'w'",
           "shape [2, 3] × F32 is 24 bytes but data_offsets span 20");
  REJECTED("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "tensor 'w'",
           "\"data_offsets\" is not [begin, end]");
  REJECTED("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, "tensor 'w'",
           "\"data_offsets\" is not [begin, end]");
  REJECTED("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'w'", "\"data_offsets\"");
}

static void test_rejects_overlaps_and_duplicates(void **state) {
  (void)state;
  REJECTED("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
           12, "tensors 'b' [0, 8] and 'a' [4, 12] overlap");
  /* cJSON keeps both members of a duplicated key */
  REJECTED("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
           "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
           8, "tensor 'a' appears twice");
  REJECTED("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "\"__metadata__\" appears twice");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reads_well_formed_file),
      cmocka_unit_test(test_file_without_metadata_or_tensors),
      cmocka_unit_test(test_rejects_missing_empty_and_short_files),
      cmocka_unit_test(test_rejects_header_length_beyond_file),
      cmocka_unit_test(test_rejects_malformed_json),
      cmocka_unit_test(test_rejects_bad_dtype),
      cmocka_unit_test(test_rejects_bad_shapes),
      cmocka_unit_test(test_rejects_bad_offsets),
      cmocka_unit_test(test_rejects_overlaps_and_duplicates),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

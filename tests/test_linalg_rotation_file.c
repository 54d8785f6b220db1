/* Rotations read from safetensors files: exact F64 matrices as stored, rounded ones (F32, BF16)
 * brought back to orthogonal, and every error naming the file and tensor. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/dtype.h"
#include "linalg/orthogonal.h"
#include "linalg/rotation_file.h"
#include "support/test_support.h"

typedef struct stored {
  const char *name;
  dtype type;
  int rows, cols;
  const double *values; /* rows × cols, converted to type */
} stored;

/* Writes a safetensors file holding the given tensors. */
static void write_safetensors(const char *path, const stored *tensors, int count) {
  char header[4096];
  size_t used = 0, offset = 0;
  used += (size_t)snprintf(header + used, sizeof header - used, "{");
  for (int i = 0; i < count; i++) {
    size_t bytes = dtype_size(tensors[i].type) * (size_t)tensors[i].rows * tensors[i].cols;
    used += (size_t)snprintf(header + used, sizeof header - used,
                             "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]}", i ? "," : "",
                             tensors[i].name, dtype_name(tensors[i].type), tensors[i].rows, tensors[i].cols, offset,
                             offset + bytes);
    offset += bytes;
  }
  used += (size_t)snprintf(header + used, sizeof header - used, "}");
  while (used % 8) header[used++] = ' ';
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  uint64_t length = used;
  unsigned char le[8];
  for (int b = 0; b < 8; b++) le[b] = (unsigned char)(length >> (8 * b));
  fwrite(le, 1, 8, f);
  fwrite(header, 1, used, f);
  for (int i = 0; i < count; i++) {
    size_t n = (size_t)tensors[i].rows * tensors[i].cols;
    void *data = malloc(dtype_size(tensors[i].type) * n);
    dtype_from_f64(tensors[i].type, tensors[i].values, data, n);
    fwrite(data, dtype_size(tensors[i].type), n, f);
    free(data);
  }
  fclose(f);
}

static double *haar(int n) {
  rotq_error err;
  rotation *r = rotation_create(n, ROTATION_ORTHOGONAL, 3, 0, &err);
  double *d = malloc(sizeof *d * (size_t)n * n);
  rotation_dense(r, d);
  rotation_free(r);
  return d;
}

static void test_loads_and_orthogonalizes(void **state) {
  (void)state;
  char *dir = scratch_dir("rotation-file");
  char path[4200];
  snprintf(path, sizeof path, "%s/rotations.safetensors", dir);
  const int n = 48;
  double *q = haar(n), *loaded = malloc(sizeof *loaded * n * n);
  stored tensors[] = {{"r1", DTYPE_F64, n, n, q}, {"r1_f32", DTYPE_F32, n, n, q}, {"r1_bf16", DTYPE_BF16, n, n, q}};
  write_safetensors(path, tensors, 3);
  rotq_error err;

  rotation *r = rotation_load_file(path, "r1", n, &err);
  assert_non_null(r);
  rotation_dense(r, loaded);
  assert_memory_equal(loaded, q, sizeof *q * n * n); /* F64: exactly what was stored */
  rotation_free(r);

  static const char *rounded[] = {"r1_f32", "r1_bf16"};
  static const double closeness[] = {1e-6, 1e-2};
  for (int t = 0; t < 2; t++) {
    r = rotation_load_file(path, rounded[t], n, &err);
    if (!r) fail_msg("%s", err.message);
    rotation_dense(r, loaded);
    assert_true(orthogonality_error(n, loaded) < 1e-13);
    double worst = 0;
    for (int i = 0; i < n * n; i++) worst = fmax(worst, fabs(loaded[i] - q[i]));
    if (!(worst < closeness[t])) fail_msg("%s: %g from the stored matrix", rounded[t], worst);
    rotation_free(r);
  }
  free(q), free(loaded);
  scratch_remove(dir);
  free(dir);
}

static void test_errors_name_file_and_tensor(void **state) {
  (void)state;
  char *dir = scratch_dir("rotation-file");
  char path[4200];
  snprintf(path, sizeof path, "%s/bad.safetensors", dir);
  const int n = 16;
  double *ones = malloc(sizeof *ones * n * n), *wide = calloc((size_t)n * (n + 1), sizeof *wide);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) ones[i * n + j] = __builtin_parity(i & j) ? -1 : 1; /* unnormalized */
  stored tensors[] = {{"ones", DTYPE_F32, n, n, ones}, {"wide", DTYPE_F64, n, n + 1, wide}};
  write_safetensors(path, tensors, 2);
  rotq_error err;
  assert_null(rotation_load_file(path, "ones", n, &err));
  assert_non_null(strstr(err.message, "not orthogonal"));
  assert_non_null(strstr(err.message, "'ones'"));
  assert_non_null(strstr(err.message, path));
  assert_null(rotation_load_file(path, "wide", n, &err));
  assert_non_null(strstr(err.message, "shape [16, 16]"));
  assert_null(rotation_load_file(path, "ones", 32, &err)); /* the config's dim differs */
  assert_non_null(strstr(err.message, "order 32"));
  assert_null(rotation_load_file(path, "missing", n, &err));
  assert_non_null(strstr(err.message, "no tensor 'missing'"));
  char absent[4300];
  snprintf(absent, sizeof absent, "%s/absent.safetensors", dir);
  assert_null(rotation_load_file(absent, "r", n, &err));
  assert_non_null(strstr(err.message, "absent.safetensors"));
  free(ones), free(wide);
  scratch_remove(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_loads_and_orthogonalizes),
      cmocka_unit_test(test_errors_name_file_and_tensor),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

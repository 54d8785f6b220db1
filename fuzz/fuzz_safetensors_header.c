/* libFuzzer target: a whole safetensors file (8-byte header length, JSON header, data) given to
 * st_open. Beyond "no crash, no sanitizer report", every file st_open accepts must keep the
 * promises of io/safetensors.h, checked here: each tensor's bytes lie inside the data section,
 * no two spans overlap, nbytes = shape product × dtype size, and st_find finds each name. The
 * first elements of every tensor are converted with dtype_to_f64, so a span pointing outside
 * the mapping faults here rather than later in the product. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/input_file.h"
#include "io/safetensors.h"

#define ELEMENTS_CONVERTED 16

/* Stops the run with a message: an accepted file broke a promise of st_open. */
static void broken(const st_file *f, const st_tensor *t, const char *promise) {
  fprintf(stderr, "%s: tensor '%s': st_open accepted a file that breaks: %s\n", f->path, t->name, promise);
  abort();
}

static void check_tensor(const st_file *f, const st_tensor *t, const char *data_begin) {
  const char *map_end = (const char *)f->map + f->size;
  const char *begin = t->data;
  if (begin < data_begin || begin > map_end || t->nbytes > (size_t)(map_end - begin))
    broken(f, t, "its bytes lie inside the data section");
  if (t->ndim < 0 || t->ndim > ST_MAX_DIMS) broken(f, t, "0 <= ndim <= ST_MAX_DIMS");
  if (st_numel(t) * dtype_size(t->dtype) != t->nbytes) broken(f, t, "nbytes = numel × dtype size");
  if (st_find(f, t->name) != t) broken(f, t, "st_find returns the tensor of that name");
  size_t n = st_numel(t);
  if (n > ELEMENTS_CONVERTED) n = ELEMENTS_CONVERTED;
  double values[ELEMENTS_CONVERTED];
  dtype_to_f64(t->dtype, t->data, values, n);
}

/* Spans must not overlap (empty spans may touch anything). Quadratic, but headers that the
 * fuzzer makes hold few tensors. */
static void check_disjoint(const st_file *f) {
  for (size_t i = 0; i < f->count; i++)
    for (size_t j = i + 1; j < f->count; j++) {
      const st_tensor *a = &f->tensors[i], *b = &f->tensors[j];
      const char *a0 = a->data, *b0 = b->data;
      if (a->nbytes && b->nbytes && a0 < b0 + b->nbytes && b0 < a0 + a->nbytes)
        broken(f, b, "no two tensors' bytes overlap");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_input_as_file(data, size);
  st_file f;
  rotq_error err = {{0}};
  if (st_open(path, &f, &err) != 0) {
    if (strncmp(err.message, path, strlen(path)) != 0) {
      fprintf(stderr, "error message does not name the file: %s\n", err.message);
      abort();
    }
    return 0;
  }
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; i--) header_size = header_size << 8 | ((const uint8_t *)f.map)[i];
  const char *data_begin = (const char *)f.map + 8 + header_size;
  for (size_t i = 0; i < f.count; i++) check_tensor(&f, &f.tensors[i], data_begin);
  check_disjoint(&f);
  st_find(&f, "no such tensor");
  st_close(&f);
  return 0;
}

/* libFuzzer target: a whole GGUF file given to gguf_open. Beyond "no crash, no sanitizer report",
 * every file gguf_open accepts must keep the promises of io/gguf.h, checked here: each tensor's
 * bytes lie inside the mapping at an aligned offset, nbytes = blocks × block bytes, no two
 * tensors overlap, the find functions find every key and name, and every tensor of a supported
 * type dequantizes (its first blocks: a span pointing outside the mapping faults here). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/input_file.h"
#include "io/gguf.h"

#define ELEMENTS_DEQUANTIZED 512 /* two K-quant blocks */

static void broken(const gguf_file *f, const char *name, const char *promise) {
  fprintf(stderr, "%s: '%s': gguf_open accepted a file that breaks: %s\n", f->path, name, promise);
  abort();
}

static void check_tensor(const gguf_file *f, const gguf_tensor *t) {
  const char *map = f->map, *begin = t->data;
  if (begin < map || begin > map + f->size || t->nbytes > (size_t)(map + f->size - begin))
    broken(f, t->name, "its bytes lie inside the file");
  if (t->offset % f->alignment != 0) broken(f, t->name, "its offset is aligned");
  if (t->ndim < 1 || t->ndim > GGUF_MAX_DIMS) broken(f, t->name, "1 <= ndim <= 4");
  size_t block = gguf_block_elements(t->type);
  if (block == 0 || gguf_numel(t) % block != 0) broken(f, t->name, "a known type, whole blocks");
  if (gguf_numel(t) / block * gguf_block_bytes(t->type) != t->nbytes) broken(f, t->name, "nbytes = blocks × size");
  if (gguf_find_tensor(f, t->name) != t) broken(f, t->name, "gguf_find_tensor finds it");
  if (!gguf_type_supported(t->type)) return;
  size_t n = gguf_numel(t);
  if (n > ELEMENTS_DEQUANTIZED) n = ELEMENTS_DEQUANTIZED / block * block;
  float out[ELEMENTS_DEQUANTIZED];
  gguf_dequantize_blocks(t->type, t->data, out, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_input_as_file(data, size);
  gguf_file f;
  rotq_error err = {{0}};
  if (gguf_open(path, &f, &err) != 0) {
    if (strncmp(err.message, path, strlen(path)) != 0) {
      fprintf(stderr, "error message does not name the file: %s\n", err.message);
      abort();
    }
    return 0;
  }
  for (size_t i = 0; i < f.kv_count; i++)
    if (gguf_find_kv(&f, f.kvs[i].key) != &f.kvs[i]) broken(&f, f.kvs[i].key, "gguf_find_kv finds every key");
  for (size_t i = 0; i < f.tensor_count; i++) check_tensor(&f, &f.tensors[i]);
  for (size_t i = 0; i < f.tensor_count; i++)
    for (size_t j = i + 1; j < f.tensor_count; j++) {
      const gguf_tensor *a = &f.tensors[i], *b = &f.tensors[j];
      const char *a0 = a->data, *b0 = b->data;
      if (a0 < b0 + b->nbytes && b0 < a0 + a->nbytes) broken(&f, b->name, "no two tensors overlap");
    }
  uint64_t u;
  double d;
  char s[64];
  gguf_get_uint(&f, "general.alignment", &u, &err);
  gguf_get_float(&f, "llama.rope.freq_base", &d, &err);
  gguf_get_string(&f, "general.architecture", s, sizeof s, &err);
  gguf_close(&f);
  return 0;
}

/* libFuzzer target: config.json given to model_config_load. An accepted config must have the
 * fields the rest of rotq divides by and indexes with in range, and answer model_config_int. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/input_file.h"
#include "io/model_config.h"

static void broken(const char *path, const char *promise) {
  fprintf(stderr, "%s: model_config_load accepted a config that breaks: %s\n", path, promise);
  abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_input_as_file(data, size);
  model_config c;
  rotq_error err = {{0}};
  if (model_config_load(path, &c, &err) != 0) {
    if (strncmp(err.message, path, strlen(path)) != 0) {
      fprintf(stderr, "error message does not name the file: %s\n", err.message);
      abort();
    }
    return 0;
  }
  if (c.hidden_size <= 0 || c.num_hidden_layers <= 0 || c.num_attention_heads <= 0 || c.vocab_size <= 0)
    broken(path, "hidden_size, num_hidden_layers, num_attention_heads, vocab_size > 0");
  if (c.num_key_value_heads <= 0 || c.num_attention_heads % c.num_key_value_heads != 0)
    broken(path, "num_key_value_heads > 0 divides num_attention_heads");
  if (c.head_dim <= 0) broken(path, "head_dim > 0");
  if (strlen(c.architecture) >= sizeof c.architecture || strlen(c.model_type) >= sizeof c.model_type)
    broken(path, "architecture and model_type are NUL-terminated in their buffers");
  static const char *const keys[] = {"hidden_size",       "head_dim",   "num_key_value_heads",
                                     "intermediate_size", "rope_theta", "no_such_field"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    long value;
    model_config_int(&c, keys[i], &value, &err);
  }
  model_config_free(&c);
  return 0;
}

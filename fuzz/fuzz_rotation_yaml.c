/* libFuzzer target: rotation-config YAML given to rotation_config_parse as NUL-terminated text.
 * An accepted config must resolve every matrix its rules name, and its patterns must be usable
 * with pattern_matches. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/rotation_config.h"

/* Large (fixed-size tables): kept off the stack. */
static rotation_config config;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (!text) abort();
  memcpy(text, data, size);
  text[size] = '\0';
  rotq_error err = {{0}};
  if (rotation_config_parse(text, "fuzz.yaml", &config, &err) != 0) {
    if (strncmp(err.message, "fuzz.yaml", 9) != 0) {
      fprintf(stderr, "error message does not name the config: %s\n", err.message);
      abort();
    }
    free(text);
    return 0;
  }
  for (int i = 0; i < config.rule_count; i++) {
    const rotation_rule *r = &config.rules[i];
    if ((r->input[0] && !rotation_config_matrix(&config, r->input)) ||
        (r->output[0] && !rotation_config_matrix(&config, r->output))) {
      fprintf(stderr, "rule '%s' names a matrix the accepted config does not define\n", r->pattern);
      abort();
    }
    pattern_matches(r->pattern, "model.layers.0.self_attn.q_proj");
  }
  rotation_config_free(&config);
  free(text);
  return 0;
}

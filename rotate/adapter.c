#include "rotate/adapter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/rotation_config.h"

const char *adapter_supported_list(void) { return family_supported_list(); }

const model_adapter *adapter_for(const model_config *config, rotq_error *err) {
  const family_descriptor *f = family_find(config->architecture, NULL);
  if (!f)
    rotq_fail(err, "unsupported architecture '%s' (supported: %s)",
              config->architecture[0] ? config->architecture : "(none given)", family_supported_list());
  return f;
}

int adapter_num_attention_heads(const model_config *config) { return config->num_attention_heads; }
int adapter_num_key_value_heads(const model_config *config) { return config->num_key_value_heads; }
int adapter_head_dim(const model_config *config) { return config->head_dim; }

void adapter_layer_module(const model_adapter *a, int layer, const char *relative, char *out, size_t cap) {
  family_layer_module(a, layer, relative, out, cap);
}

int adapter_layer_of(const model_adapter *a, const char *module) {
  size_t n = strlen(a->layer_prefix);
  if (strncmp(module, a->layer_prefix, n) != 0 || module[n] != '.') return -1;
  char *end;
  long layer = strtol(module + n + 1, &end, 10);
  if (end == module + n + 1 || (*end != '.' && *end != '\0')) return -1;
  return (int)layer;
}

/* module's name relative to its layer ("self_attn.o_proj"), or NULL for pre-run modules. */
static const char *relative_name(const model_adapter *a, const char *module) {
  if (adapter_layer_of(a, module) < 0) return NULL;
  const char *dot = strchr(module + strlen(a->layer_prefix) + 1, '.');
  return dot ? dot + 1 : NULL;
}

const char *adapter_relative_name(const model_adapter *a, const char *module) { return relative_name(a, module); }

const char *adapter_reader_norm(const model_adapter *a, const char *module) {
  const char *rel = relative_name(a, module);
  for (int f = 0; rel && f < 4 && a->layer_fuse[f].norm; f++)
    if (pattern_matches(a->layer_fuse[f].linears, rel)) return a->layer_fuse[f].norm;
  return NULL;
}

int adapter_is_writer(const model_adapter *a, const char *module) {
  const char *rel = relative_name(a, module);
  return rel && pattern_matches(a->writers, rel);
}

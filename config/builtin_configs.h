/* Built-in rotation configs (the YAML files in config/builtin/), embedded at build time. */
#ifndef ROTQ_CONFIG_BUILTIN_CONFIGS_H
#define ROTQ_CONFIG_BUILTIN_CONFIGS_H

typedef struct builtin_config {
  const char *name; /* file stem, e.g. "transformer_universal" */
  const char *yaml; /* the file's text */
} builtin_config;

extern const builtin_config builtin_configs[];
extern const int builtin_config_count;

/* The built-in config called name, or NULL. */
const builtin_config *builtin_config_find(const char *name);

#endif

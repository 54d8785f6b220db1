#include "config/builtin_configs.h"

#include <string.h>

const builtin_config *builtin_config_find(const char *name) {
  for (int i = 0; i < builtin_config_count; i++)
    if (strcmp(builtin_configs[i].name, name) == 0) return &builtin_configs[i];
  return NULL;
}

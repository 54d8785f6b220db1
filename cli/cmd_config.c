/* rotq config: list the built-in rotation configs, show one as YAML, or check a config file. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "config/builtin_configs.h"
#include "config/rotation_config.h"

static const char *help =
    "usage: rotq config list | show NAME | check FILE\n\n"
    "  list        the built-in rotation configs\n"
    "  show NAME   print a built-in config as YAML (copy it, edit it, pass it with --config FILE)\n"
    "  check FILE  parse a config file (or built-in name) and report the first error\n";

int cmd_config(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    fputs(help, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  for (int i = 2; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { /* `config show --help`: help, not a name */
      fputs(help, stdout);
      return 0;
    }
  if (!strcmp(argv[1], "list") && argc == 2) {
    for (int i = 0; i < builtin_config_count; i++) printf("%s\n", builtin_configs[i].name);
    return 0;
  }
  if (!strcmp(argv[1], "show") && argc == 3) {
    const builtin_config *b = builtin_config_find(argv[2]);
    if (!b) {
      fprintf(stderr, "rotq config: no built-in config '%s' (see rotq config list)\n", argv[2]);
      return 1;
    }
    fputs(b->yaml, stdout);
    return 0;
  }
  if (!strcmp(argv[1], "check") && argc == 3) {
    rotation_config c;
    rotq_error err = {{0}};
    if (rotation_config_load(argv[2], &c, &err) < 0) {
      fprintf(stderr, "rotq config: %s\n", err.message);
      return 1;
    }
    printf("%s: %d matrices, %d rotation rules, %d + %d norm fusions, use_float64 %s\n", argv[2], c.matrix_count,
           c.rule_count, c.layer_fuse_count, c.head_fuse_count, c.use_float64 ? "true" : "false");
    rotation_config_free(&c);
    return 0;
  }
  fputs(help, stderr);
  return 2;
}

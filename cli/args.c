#include "cli/args.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int args_parse(const char *command, int argc, char **argv, const arg_spec *specs, int count) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return 1;
    if (strncmp(a, "--", 2) != 0) {
      fprintf(stderr, "rotq %s: unexpected argument '%s' (see rotq %s --help)\n", command, a, command);
      return -1;
    }
    const arg_spec *spec = NULL;
    for (int s = 0; s < count; s++)
      if (strcmp(specs[s].name, a + 2) == 0) spec = &specs[s];
    if (!spec) {
      fprintf(stderr, "rotq %s: unknown option '%s' (see rotq %s --help)\n", command, a, command);
      return -1;
    }
    if (spec->kind == ARG_FLAG) {
      *(bool *)spec->target = true;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "rotq %s: option '%s' needs a value\n", command, a);
      return -1;
    }
    const char *v = argv[++i];
    char *end = NULL;
    errno = 0;
    switch (spec->kind) {
    case ARG_STRING: *(const char **)spec->target = v; break;
    case ARG_INT:
    case ARG_LONG: {
      bool digits =
          v[0] && (isdigit((unsigned char)v[0]) || ((v[0] == '-' || v[0] == '+') && isdigit((unsigned char)v[1])));
      long x = digits ? strtol(v, &end, 10) : 0;
      if (!digits || end == v || *end) {
        fprintf(stderr, "rotq %s: option '%s' wants an integer, got '%s' (decimal digits only)\n", command, a, v);
        return -1;
      }
      long low = spec->kind == ARG_INT ? INT_MIN : LONG_MIN, high = spec->kind == ARG_INT ? INT_MAX : LONG_MAX;
      if (errno == ERANGE || x < low || x > high) {
        fprintf(stderr, "rotq %s: option '%s': %s is out of range (%ld to %ld)\n", command, a, v, low, high);
        return -1;
      }
      *(long *)spec->target = x;
      break;
    }
    case ARG_U64: {
      bool negative = v[0] == '-' && isdigit((unsigned char)v[1]);
      bool digits = v[0] != '\0';
      for (const char *c = negative ? v + 1 : v; *c; c++) digits = digits && isdigit((unsigned char)*c);
      if (!digits) {
        fprintf(stderr, "rotq %s: option '%s' wants an integer, got '%s' (decimal digits only)\n", command, a, v);
        return -1;
      }
      unsigned long long x = negative ? 0 : strtoull(v, &end, 10);
      if (negative || errno == ERANGE) {
        fprintf(stderr, "rotq %s: option '%s': %s is out of range (0 to %" PRIu64 ")\n", command, a, v, UINT64_MAX);
        return -1;
      }
      *(uint64_t *)spec->target = (uint64_t)x;
      break;
    }
    case ARG_DOUBLE: {
      double x = strtod(v, &end);
      if (errno || end == v || *end) {
        fprintf(stderr, "rotq %s: option '%s' wants a number, got '%s'\n", command, a, v);
        return -1;
      }
      *(double *)spec->target = x;
      break;
    }
    case ARG_FLAG: break;
    }
  }
  return 0;
}

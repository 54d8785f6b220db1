#include "config/rotation_config.h"

#include "common/regular_file.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "config/builtin_configs.h"

typedef struct yaml_ctx {
  yaml_document_t *doc;
  const char *origin;
  rotq_error *err;
} yaml_ctx;

static int fail_at(yaml_ctx *y, const yaml_node_t *node, const char *fmt, const char *what) {
  char msg[512];
  snprintf(msg, sizeof msg, fmt, what);
  return rotq_fail(y->err, "%s: line %lu: %s", y->origin, node ? (unsigned long)node->start_mark.line + 1 : 0UL, msg);
}

static const char *scalar(const yaml_node_t *n) {
  return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int is_null(const yaml_node_t *n) {
  const char *s = scalar(n);
  return s && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
         (strcmp(s, "null") == 0 || strcmp(s, "~") == 0 || strcmp(s, "") == 0 || strcmp(s, "Null") == 0 ||
          strcmp(s, "NULL") == 0);
}

/* YAML 1.1/1.2 booleans as written in configs. Returns 0/1, or -1 if not a boolean. */
static int parse_bool(const yaml_node_t *n) {
  const char *s = scalar(n);
  if (!s || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return -1;
  if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE") || !strcmp(s, "yes")) return 1;
  if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE") || !strcmp(s, "no")) return 0;
  return -1;
}

static int copy_name(yaml_ctx *y, const yaml_node_t *n, char *dst, size_t cap, const char *what) {
  const char *s = scalar(n);
  if (!s) return fail_at(y, n, "%s must be a string", what);
  if (strlen(s) >= cap) return fail_at(y, n, "%s is too long", what);
  memcpy(dst, s, strlen(s) + 1);
  return 0;
}

static int parse_matrix(yaml_ctx *y, const char *name, yaml_node_t *body, matrix_spec *m) {
  if (strlen(name) >= sizeof m->name) return fail_at(y, body, "matrix name '%s' is too long", name);
  memset(m, 0, sizeof *m);
  strcpy(m->name, name);
  m->mode = ROTATION_HADAMARD;
  if (body->type != YAML_MAPPING_NODE)
    return fail_at(y, body, "rotation_matrices.%s must be a mapping (dim, mode, per_layer)", name);
  bool have_dim = false;
  for (yaml_node_pair_t *p = body->data.mapping.pairs.start; p < body->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(y->doc, p->key);
    yaml_node_t *v = yaml_document_get_node(y->doc, p->value);
    const char *key = scalar(k);
    if (!key) return fail_at(y, k, "%s", "keys must be strings");
    if (!strcmp(key, "dim")) {
      const char *s = scalar(v);
      if (!s || !*s) return fail_at(y, v, "rotation_matrices.%s.dim must be an integer or a config.json key", name);
      char *end;
      errno = 0;
      long d = strtol(s, &end, 10);
      if (!*end && !errno) {
        if (d <= 0) return fail_at(y, v, "rotation_matrices.%s.dim must be positive", name);
        m->dim = d;
      } else if (copy_name(y, v, m->dim_key, sizeof m->dim_key, "dim") < 0) {
        return -1;
      }
      have_dim = true;
    } else if (!strcmp(key, "mode")) {
      const char *s = scalar(v);
      if (s && !strcmp(s, "file")) {
        m->from_file = true;
      } else if (!s || rotation_mode_parse(s, &m->mode) < 0) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "rotation_matrices.%s.mode '%s' is not one of hadamard, base_hadamard, orthogonal, file", name,
                 s ? s : "?");
        return fail_at(y, v, "%s", msg);
      }
    } else if (!strcmp(key, "file")) {
      if (copy_name(y, v, m->file, sizeof m->file, "file") < 0) return -1;
    } else if (!strcmp(key, "per_layer")) {
      int b = parse_bool(v);
      if (b >= 0) {
        m->per_layer = b ? PER_LAYER_EACH : PER_LAYER_SHARED;
      } else {
        if (copy_name(y, v, m->per_layer_pattern, sizeof m->per_layer_pattern, "per_layer") < 0) return -1;
        m->per_layer = PER_LAYER_GROUPED;
      }
    } else if (!strcmp(key, "block_size")) {
      const char *s = scalar(v);
      char *end;
      long b = s ? strtol(s, &end, 10) : 0;
      if (!s || *end || (b != -1 && (b <= 0 || b > (1L << 20) || (b & (b - 1)))))
        return fail_at(y, v, "rotation_matrices.%s.block_size must be -1 (full) or a power of two up to 2^20", name);
      m->block_size = b == -1 ? 0 : (int)b;
    } else {
      char msg[256];
      snprintf(msg, sizeof msg, "rotation_matrices.%s: unknown field '%s'", name, key);
      return fail_at(y, k, "%s", msg);
    }
  }
  if (!have_dim) return fail_at(y, body, "rotation_matrices.%s needs a dim", name);
  if (m->from_file != (m->file[0] != '\0'))
    return fail_at(y, body, "rotation_matrices.%s: 'mode: file' and a 'file' path go together", name);
  return 0;
}

static int parse_rotation_rules(yaml_ctx *y, yaml_node_t *map, rotation_config *c) {
  if (map->type != YAML_MAPPING_NODE) return fail_at(y, map, "%s", "rotation_config must be a mapping");
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(y->doc, p->key);
    yaml_node_t *v = yaml_document_get_node(y->doc, p->value);
    if (c->rule_count == (int)(sizeof c->rules / sizeof c->rules[0]))
      return fail_at(y, k, "%s", "too many rotation_config rules");
    rotation_rule *r = &c->rules[c->rule_count];
    if (copy_name(y, k, r->pattern, sizeof r->pattern, "rotation_config pattern") < 0) return -1;
    if (v->type != YAML_SEQUENCE_NODE || v->data.sequence.items.top - v->data.sequence.items.start != 2)
      return fail_at(y, v, "rotation_config '%s' must be [input_rotation, output_rotation]", r->pattern);
    yaml_node_t *in = yaml_document_get_node(y->doc, v->data.sequence.items.start[0]);
    yaml_node_t *out = yaml_document_get_node(y->doc, v->data.sequence.items.start[1]);
    if (!is_null(in) && copy_name(y, in, r->input, sizeof r->input, "input rotation") < 0) return -1;
    if (!is_null(out) && copy_name(y, out, r->output, sizeof r->output, "output rotation") < 0) return -1;
    c->rule_count++;
  }
  return 0;
}

static int parse_fuse_list(yaml_ctx *y, yaml_node_t *list, const char *field, norm_fuse_rule *rules, int cap,
                           int *count) {
  if (list->type != YAML_SEQUENCE_NODE)
    return fail_at(y, list, "norm_fuse_config.%s must be a list of [norm, [linears...]]", field);
  for (yaml_node_item_t *it = list->data.sequence.items.start; it < list->data.sequence.items.top; it++) {
    yaml_node_t *e = yaml_document_get_node(y->doc, *it);
    if (*count == cap) return fail_at(y, e, "too many entries in norm_fuse_config.%s", field);
    norm_fuse_rule *r = &rules[*count];
    memset(r, 0, sizeof *r);
    if (e->type != YAML_SEQUENCE_NODE || e->data.sequence.items.top - e->data.sequence.items.start != 2)
      return fail_at(y, e, "norm_fuse_config.%s entries must be [norm, [linears...]]", field);
    yaml_node_t *norm = yaml_document_get_node(y->doc, e->data.sequence.items.start[0]);
    yaml_node_t *lins = yaml_document_get_node(y->doc, e->data.sequence.items.start[1]);
    if (copy_name(y, norm, r->norm, sizeof r->norm, "norm name") < 0) return -1;
    if (lins->type == YAML_SCALAR_NODE) { /* [model.norm, lm_head] */
      if (copy_name(y, lins, r->linears[0], sizeof r->linears[0], "linear name") < 0) return -1;
      r->linear_count = 1;
    } else if (lins->type == YAML_SEQUENCE_NODE) {
      for (yaml_node_item_t *li = lins->data.sequence.items.start; li < lins->data.sequence.items.top; li++) {
        if (r->linear_count == 16) return fail_at(y, lins, "%s", "too many linears for one norm");
        yaml_node_t *l = yaml_document_get_node(y->doc, *li);
        if (copy_name(y, l, r->linears[r->linear_count], sizeof r->linears[0], "linear name") < 0) return -1;
        r->linear_count++;
      }
    } else {
      return fail_at(y, lins, "norm_fuse_config.%s: the linears must be a name or a list", field);
    }
    (*count)++;
  }
  return 0;
}

static int parse_bool_field(yaml_ctx *y, yaml_node_t *v, const char *key, bool *out) {
  int b = parse_bool(v);
  if (b < 0) return fail_at(y, v, "%s must be true or false", key);
  *out = b;
  return 0;
}

/* block_size (top level): -1 or 0 = full-size rotations, else a power of two up to 2^20. */
static int parse_group_block(yaml_ctx *y, yaml_node_t *v, rotation_config *c) {
  const char *s = scalar(v);
  char *end;
  long b = s ? strtol(s, &end, 10) : 0;
  if (!s || *end || (b != -1 && b != 0 && (b < 0 || b > (1L << 20) || (b & (b - 1)))))
    return fail_at(y, v, "%s", "block_size must be -1 or 0 (full size) or a power of two up to 2^20");
  c->block_size = b > 0 ? (int)b : 0;
  return 0;
}

/* down_proj_online_layers: [0, 1, ...], non-negative layer indices (checked against the model
 * by the online processor). */
static int parse_layer_list(yaml_ctx *y, yaml_node_t *v, const char *key, rotation_config *c) {
  if (v->type != YAML_SEQUENCE_NODE) return fail_at(y, v, "%s must be a list of layer indices", key);
  c->down_proj_online_layers_set = true;
  for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
    yaml_node_t *n = yaml_document_get_node(y->doc, *i);
    const char *s = scalar(n);
    char *end = NULL;
    errno = 0;
    long layer = s ? strtol(s, &end, 10) : -1;
    if (!s || !*s || *end || errno || layer < 0 || layer > 1000000)
      return fail_at(y, n, "%s must hold non-negative layer indices", key);
    if (c->down_proj_online_layer_count == (int)(sizeof c->down_proj_online_layers / sizeof(int)))
      return fail_at(y, n, "%s: too many layers", key);
    c->down_proj_online_layers[c->down_proj_online_layer_count++] = (int)layer;
  }
  return 0;
}

static int parse_root(yaml_ctx *y, yaml_node_t *root, rotation_config *c) {
  if (!root || root->type != YAML_MAPPING_NODE) return fail_at(y, root, "%s", "the config must be a YAML mapping");
  for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(y->doc, p->key);
    yaml_node_t *v = yaml_document_get_node(y->doc, p->value);
    const char *key = scalar(k);
    if (!key) return fail_at(y, k, "%s", "top-level keys must be strings");
    if (!strcmp(key, "rotation_matrices")) {
      if (v->type != YAML_MAPPING_NODE) return fail_at(y, v, "%s", "rotation_matrices must be a mapping");
      for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top; q++) {
        yaml_node_t *mk = yaml_document_get_node(y->doc, q->key);
        const char *mname = scalar(mk);
        if (!mname) return fail_at(y, mk, "%s", "matrix names must be strings");
        if (c->matrix_count == (int)(sizeof c->matrices / sizeof c->matrices[0]))
          return fail_at(y, mk, "%s", "too many rotation matrices");
        for (int i = 0; i < c->matrix_count; i++)
          if (!strcmp(c->matrices[i].name, mname)) return fail_at(y, mk, "matrix '%s' is defined twice", mname);
        if (parse_matrix(y, mname, yaml_document_get_node(y->doc, q->value), &c->matrices[c->matrix_count]) < 0)
          return -1;
        c->matrix_count++;
      }
    } else if (!strcmp(key, "rotation_config")) {
      if (parse_rotation_rules(y, v, c) < 0) return -1;
    } else if (!strcmp(key, "norm_fuse_config")) {
      if (v->type != YAML_MAPPING_NODE) return fail_at(y, v, "%s", "norm_fuse_config must be a mapping");
      for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top; q++) {
        yaml_node_t *fk = yaml_document_get_node(y->doc, q->key);
        yaml_node_t *fv = yaml_document_get_node(y->doc, q->value);
        const char *field = scalar(fk);
        if (field && !strcmp(field, "decoder_layer_fuse")) {
          if (parse_fuse_list(y, fv, field, c->layer_fuse, 16, &c->layer_fuse_count) < 0) return -1;
        } else if (field && !strcmp(field, "lm_head_fuse")) {
          if (parse_fuse_list(y, fv, field, c->head_fuse, 4, &c->head_fuse_count) < 0) return -1;
        } else {
          return fail_at(y, fk, "norm_fuse_config: unknown field '%s' (decoder_layer_fuse, lm_head_fuse)",
                         field ? field : "?");
        }
      }
    } else if (!strcmp(key, "use_float64")) {
      if (parse_bool_field(y, v, key, &c->use_float64) < 0) return -1;
    } else if (!strcmp(key, "online")) {
      if (parse_bool_field(y, v, key, &c->online) < 0) return -1;
    } else if (!strcmp(key, "down_proj_online_layers")) {
      if (parse_layer_list(y, v, key, c) < 0) return -1;
    } else if (!strcmp(key, "strict")) {
      if (parse_bool_field(y, v, key, &c->strict) < 0) return -1;
    } else if (!strcmp(key, "block_size")) {
      if (parse_group_block(y, v, c) < 0) return -1;
    } else {
      return fail_at(y, k,
                     "unknown top-level field '%s' (rotation_matrices, rotation_config, "
                     "norm_fuse_config, use_float64, online, down_proj_online_layers, strict, block_size)",
                     key);
    }
  }
  return 0;
}

/* Cross-references inside the document: every rule names a defined matrix. */
static int check_references(const rotation_config *c, rotq_error *err) {
  if (c->matrix_count == 0) return rotq_fail(err, "%s: rotation_matrices is empty", c->origin);
  for (int i = 0; i < c->rule_count; i++) {
    const rotation_rule *r = &c->rules[i];
    const char *names[2] = {r->input, r->output};
    for (int s = 0; s < 2; s++)
      if (names[s][0] && !rotation_config_matrix(c, names[s]))
        return rotq_fail(err, "%s: rotation_config '%s' names unknown matrix '%s' (defined: %s%s%s)", c->origin,
                         r->pattern, names[s], c->matrices[0].name, c->matrix_count > 1 ? ", " : "",
                         c->matrix_count > 1 ? c->matrices[1].name : "");
  }
  return 0;
}

/* YAML forbids a key twice in one mapping, but libyaml keeps both: a duplicate is an error here
 * (naming the key and both lines), not "the first one kept". Every mapping node of the document. */
static int check_duplicate_keys(yaml_document_t *doc, const char *origin, rotq_error *err) {
  for (yaml_node_t *n = doc->nodes.start; n < doc->nodes.top; n++) {
    if (n->type != YAML_MAPPING_NODE) continue;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
      const yaml_node_t *k = yaml_document_get_node(doc, p->key);
      const char *key = scalar(k);
      if (!key) continue;
      for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < p; q++) {
        const yaml_node_t *earlier = yaml_document_get_node(doc, q->key);
        if (scalar(earlier) && strcmp(scalar(earlier), key) == 0)
          return rotq_fail(err, "%s: line %lu: duplicate key '%s' (first at line %lu): a YAML mapping holds a key once",
                           origin, (unsigned long)k->start_mark.line + 1, key,
                           (unsigned long)earlier->start_mark.line + 1);
      }
    }
  }
  return 0;
}

/* Bounds checked before libyaml sees a document: its scanner takes time quadratic in the nesting
 * depth (200 KB of nested flow sequences: 31 s), and the text is kept whole in rotation.json.
 * Real configs are 1-2 KB, nested 5 deep. */
#define CONFIG_TEXT_MAX (64 * 1024)
#define CONFIG_DEPTH_MAX 32

/* The deepest nesting of text: flow brackets outside quotes, plus, per line, block levels
 * (indentation and "- " / "? " indicators count one level per 2 columns). */
static int nesting_depth(const char *text, int *line_of_max) {
  int depth = 0, max = 0, line = 1;
  char quote = 0;
  bool line_start = true;
  int indent = 0;
  for (const char *p = text; *p; p++) {
    char ch = *p;
    if (line_start) {
      if (ch == ' ' || ch == '\t' || ((ch == '-' || ch == '?' || ch == ':') && (p[1] == ' ' || p[1] == '\t'))) {
        indent++;
        if (indent / 2 + depth > max) max = indent / 2 + depth, *line_of_max = line;
        continue;
      }
      line_start = false;
    }
    if (ch == '\n') {
      line++, line_start = true, indent = 0;
      if (quote == '\'') continue;
      continue;
    }
    if (quote) {
      if (ch == quote)
        quote = 0;
      else if (ch == '\\' && quote == '"' && p[1])
        p++;
      continue;
    }
    if (ch == '#') {
      while (p[1] && p[1] != '\n') p++;
    } else if (ch == '"' || ch == '\'') {
      quote = ch;
    } else if (ch == '[' || ch == '{') {
      if (++depth + indent / 2 > max) max = depth + indent / 2, *line_of_max = line;
    } else if ((ch == ']' || ch == '}') && depth > 0) {
      depth--;
    }
  }
  return max;
}

int rotation_config_parse(const char *text, const char *origin, rotation_config *c, rotq_error *err) {
  memset(c, 0, sizeof *c);
  snprintf(c->origin, sizeof c->origin, "%s", origin);
  size_t length = strlen(text);
  if (length > CONFIG_TEXT_MAX)
    return rotq_fail(err, "%s: %zu bytes, more than a rotation config may have (%d)", origin, length, CONFIG_TEXT_MAX);
  int deepest_line = 0, depth = nesting_depth(text, &deepest_line);
  if (depth > CONFIG_DEPTH_MAX)
    return rotq_fail(err, "%s: line %d: nested %d levels deep, more than a rotation config may be (%d)", origin,
                     deepest_line, depth, CONFIG_DEPTH_MAX);
  c->use_float64 = true;
  yaml_parser_t parser;
  yaml_document_t doc;
  if (!yaml_parser_initialize(&parser)) return rotq_fail(err, "%s: cannot initialise YAML parser", origin);
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
  if (!yaml_parser_load(&parser, &doc)) {
    rotq_fail(err, "%s: line %lu: YAML error: %s", origin, (unsigned long)parser.problem_mark.line + 1,
              parser.problem ? parser.problem : "malformed document");
    yaml_parser_delete(&parser);
    return -1;
  }
  yaml_ctx y = {&doc, origin, err};
  int rc = check_duplicate_keys(&doc, origin, err);
  if (rc == 0) rc = parse_root(&y, yaml_document_get_root_node(&doc), c);
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  if (rc == 0) rc = check_references(c, err);
  if (rc == 0 && !(c->text = strdup(text))) rc = rotq_fail(err, "%s: out of memory", origin);
  return rc;
}

int rotation_config_load(const char *name_or_path, rotation_config *c, rotq_error *err) {
  const builtin_config *b = builtin_config_find(name_or_path);
  if (b) return rotation_config_parse(b->yaml, b->name, c, err);
  rotq_error open_err;
  FILE *f = regular_file_open(name_or_path, &open_err);
  if (!f && errno == EINVAL) return rotq_fail(err, "config '%s': %s", name_or_path, open_err.message);
  if (!f) {
    char names[512] = "";
    for (int i = 0; i < builtin_config_count; i++) {
      strncat(names, i ? ", " : "", sizeof names - strlen(names) - 1);
      strncat(names, builtin_configs[i].name, sizeof names - strlen(names) - 1);
    }
    return rotq_fail(err, "config '%s': not a built-in config (%s) and not a readable file: %s", name_or_path, names,
                     strerror(errno));
  }
  struct stat st;
  if (fstat(fileno(f), &st) == 0 && st.st_size > CONFIG_TEXT_MAX) {
    fclose(f);
    return rotq_fail(err, "%s: %lld bytes, more than a rotation config may have (%d)", name_or_path,
                     (long long)st.st_size, CONFIG_TEXT_MAX);
  }
  char *text = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len > CONFIG_TEXT_MAX) break; /* grew while being read: rotation_config_parse refuses it */
    if (len + 4096 + 1 > cap) {
      cap = (cap + 4096) * 2;
      char *grown = realloc(text, cap);
      if (!grown) {
        free(text);
        fclose(f);
        return rotq_fail(err, "%s: out of memory", name_or_path);
      }
      text = grown;
    }
    size_t got = fread(text + len, 1, 4096, f);
    len += got;
    if (got < 4096) break;
  }
  int read_error = ferror(f);
  fclose(f);
  if (read_error) {
    free(text);
    return rotq_fail(err, "%s: read error", name_or_path);
  }
  text[len] = '\0';
  if (strlen(text) != len) {
    free(text);
    return rotq_fail(err, "%s: not a text file (contains NUL bytes)", name_or_path);
  }
  int rc = rotation_config_parse(text, name_or_path, c, err);
  free(text);
  return rc;
}

void rotation_config_free(rotation_config *c) {
  free(c->text);
  c->text = NULL;
}

const matrix_spec *rotation_config_matrix(const rotation_config *c, const char *name) {
  for (int i = 0; i < c->matrix_count; i++)
    if (!strcmp(c->matrices[i].name, name)) return &c->matrices[i];
  return NULL;
}

int pattern_matches(const char *pattern, const char *module) {
  const char *start = pattern;
  for (;;) {
    const char *bar = strchr(start, '|');
    size_t len = bar ? (size_t)(bar - start) : strlen(start);
    char alt[512];
    if (len < sizeof alt) {
      memcpy(alt, start, len);
      alt[len] = '\0';
      if (fnmatch(alt, module, 0) == 0) return 1;
    }
    if (!bar) return 0;
    start = bar + 1;
  }
}

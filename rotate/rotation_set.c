#include "rotate/rotation_set.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linalg/rotation_file.h"
#include "io/json_file.h"

uint64_t derive_seed(uint64_t seed, const char *label, int index) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a over the label, then splitmix64 mixing */
  for (const char *p = label; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
  uint64_t z = seed ^ h ^ ((uint64_t)(index + 1) * 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/* Assigns each layer its matrix index for the spec's per_layer kind; returns the count, or -1
 * (err set) when an alternative of a grouped spec matches no layer under strict. */
static int assign_groups(const matrix_spec *spec, const rotation_config *config, int num_layers,
                         const char *layer_prefix, int *layer_group, rotation_set *set, rotq_error *err) {
  if (spec->per_layer == PER_LAYER_SHARED) {
    for (int i = 0; i < num_layers; i++) layer_group[i] = 0;
    return 1;
  }
  if (spec->per_layer == PER_LAYER_EACH) {
    for (int i = 0; i < num_layers; i++) layer_group[i] = i;
    return num_layers;
  }
  /* Grouped: alternative a is group a (the layers it matches share it; a layer takes the first
   * alternative it matches); unmatched layers get one group each, numbered from `alternatives`. */
  int alternatives = 1;
  for (const char *p = spec->per_layer_pattern; *p; p++) alternatives += *p == '|';
  bool *used = calloc((size_t)alternatives, sizeof(bool));
  if (!used) return rotq_fail(err, "out of memory");
  int next = alternatives;
  for (int i = 0; i < num_layers; i++) {
    char module[256];
    snprintf(module, sizeof module, "%s.%d", layer_prefix, i);
    layer_group[i] = -1;
    const char *start = spec->per_layer_pattern;
    for (int a = 0; a < alternatives && layer_group[i] < 0; a++) {
      const char *bar = strchr(start, '|');
      char alt[512];
      size_t len = bar ? (size_t)(bar - start) : strlen(start);
      if (len >= sizeof alt) len = sizeof alt - 1;
      memcpy(alt, start, len);
      alt[len] = '\0';
      if (pattern_matches(alt, module)) layer_group[i] = a, used[a] = true;
      start = bar ? bar + 1 : start + len;
    }
    if (layer_group[i] < 0) layer_group[i] = next++;
  }
  const char *start = spec->per_layer_pattern;
  for (int a = 0; a < alternatives; a++) {
    const char *bar = strchr(start, '|');
    int len = (int)(bar ? bar - start : (long)strlen(start));
    if (!used[a]) {
      char text[512];
      snprintf(text, sizeof text,
               "%.200s: rotation_matrices.%.100s.per_layer: '%.*s' matches no decoder layer (%.60s.0 .. %.60s.%d)",
               config->origin, spec->name, len > 100 ? 100 : len, start, layer_prefix, layer_prefix, num_layers - 1);
      if (config->strict) {
        free(used);
        return rotq_fail(err, "%s", text);
      }
      if (set->warning_count < (int)(sizeof set->warnings / sizeof set->warnings[0]))
        snprintf(set->warnings[set->warning_count++], sizeof set->warnings[0], "%s", text);
    }
    start = bar ? bar + 1 : start + len;
  }
  free(used);
  return next;
}

static int resolve_dim(const matrix_spec *spec, const model_config *model, int *dim, rotq_error *err) {
  long d = spec->dim;
  if (spec->dim_key[0] && model_config_int(model, spec->dim_key, &d, err) < 0)
    return rotq_fail_context(err, "rotation_matrices.%s.dim", spec->name);
  if (d <= 0 || d > (1L << 20)) return rotq_fail(err, "rotation_matrices.%s: dim %ld is out of range", spec->name, d);
  if (model->max_tensor_extent > 0 && d > model->max_tensor_extent)
    return rotq_fail(err, "rotation_matrices.%s: dim %ld%s%s%s is larger than any dimension of any tensor (%ld)",
                     spec->name, d, spec->dim_key[0] ? " (config.json field '" : "", spec->dim_key,
                     spec->dim_key[0] ? "')" : "", model->max_tensor_extent);
  *dim = (int)d;
  return 0;
}

/* The matrix's own block_size, else the config's group-sized block (rotation_group_block). */
static rotation *make_rotation(const matrix_spec *spec, int dim, uint64_t seed, int group, int per_layer,
                               int group_block, rotq_error *err) {
  if (!spec->from_file)
    return rotation_create(dim, spec->mode, seed,
                           spec->block_size ? spec->block_size : rotation_group_block(dim, group_block), err);
  char tensor[256];
  if (per_layer)
    snprintf(tensor, sizeof tensor, "%s.%d", spec->name, group);
  else
    snprintf(tensor, sizeof tensor, "%s", spec->name);
  return rotation_load_file(spec->file, tensor, dim, err);
}

int rotation_set_create(const rotation_config *config, const model_config *model, const char *layer_prefix,
                        uint64_t seed, rotation_set *set, rotq_error *err) {
  memset(set, 0, sizeof *set);
  set->num_layers = model->num_hidden_layers;
  set->entries = calloc((size_t)config->matrix_count, sizeof *set->entries);
  if (!set->entries) return rotq_fail(err, "out of memory");
  for (int m = 0; m < config->matrix_count; m++) {
    named_rotation *e = &set->entries[set->count++];
    e->spec = &config->matrices[m];
    if (resolve_dim(e->spec, model, &e->dim, err) < 0) goto fail;
    e->layer_group = calloc((size_t)(set->num_layers > 0 ? set->num_layers : 1), sizeof(int));
    if (!e->layer_group) goto oom;
    e->group_count = assign_groups(e->spec, config, set->num_layers, layer_prefix, e->layer_group, set, err);
    if (e->group_count < 0) goto fail;
    e->rotations = calloc((size_t)e->group_count, sizeof *e->rotations);
    e->seeds = calloc((size_t)e->group_count, sizeof *e->seeds);
    if (!e->rotations || !e->seeds) goto oom;
    for (int g = 0; g < e->group_count; g++) {
      e->seeds[g] = derive_seed(seed, e->spec->name, g);
      e->rotations[g] = make_rotation(e->spec, e->dim, e->seeds[g], g, e->spec->per_layer != PER_LAYER_SHARED,
                                      config->block_size, err);
      if (!e->rotations[g]) {
        rotq_fail_context(err, "%s: rotation_matrices.%s (dim %d)", config->origin, e->spec->name, e->dim);
        goto fail;
      }
    }
  }
  return 0;
oom:
  rotq_fail(err, "out of memory creating rotation matrices");
fail:
  rotation_set_free(set);
  return -1;
}

void rotation_set_free(rotation_set *set) {
  for (int m = 0; m < set->count; m++) {
    named_rotation *e = &set->entries[m];
    for (int g = 0; e->rotations && g < e->group_count; g++) rotation_free(e->rotations[g]);
    free(e->rotations);
    free(e->seeds);
    free(e->layer_group);
  }
  free(set->entries);
  memset(set, 0, sizeof *set);
}

const named_rotation *rotation_set_entry(const rotation_set *set, const char *name) {
  for (int m = 0; m < set->count; m++)
    if (strcmp(set->entries[m].spec->name, name) == 0) return &set->entries[m];
  return NULL;
}

const rotation *rotation_set_get(const rotation_set *set, const char *name, int layer, rotq_error *err) {
  const named_rotation *e = rotation_set_entry(set, name);
  if (!e) {
    rotq_fail(err, "unknown rotation matrix '%s'", name);
    return NULL;
  }
  if (e->spec->per_layer == PER_LAYER_SHARED) return e->rotations[0];
  if (layer < 0 || layer >= set->num_layers) {
    rotq_fail(err,
              "rotation matrix '%s' is per layer, but is used outside the decoder layers (the "
              "embedding, lm_head and every residual reader/writer need one model-wide matrix)",
              name);
    return NULL;
  }
  return e->rotations[e->layer_group[layer]];
}

cJSON *rotation_set_to_json(const rotation_set *set) {
  cJSON *out = cJSON_CreateObject();
  for (int m = 0; m < set->count; m++) {
    const named_rotation *e = &set->entries[m];
    cJSON *entry = cJSON_AddObjectToObject(out, e->spec->name);
    cJSON_AddNumberToObject(entry, "dim", e->dim);
    cJSON_AddStringToObject(entry, "per_layer",
                            e->spec->per_layer == PER_LAYER_SHARED ? "false"
                            : e->spec->per_layer == PER_LAYER_EACH ? "true"
                                                                   : e->spec->per_layer_pattern);
    if (e->spec->from_file) cJSON_AddStringToObject(entry, "file", e->spec->file);
    cJSON *groups = cJSON_AddArrayToObject(entry, "matrices");
    for (int g = 0; g < e->group_count; g++) {
      cJSON *r = rotation_to_json(e->rotations[g]);
      cJSON *layers = cJSON_AddArrayToObject(r, "layers");
      for (int l = 0; e->spec->per_layer != PER_LAYER_SHARED && l < set->num_layers; l++)
        if (e->layer_group[l] == g) json_add_to_array(layers, cJSON_CreateNumber(l));
      json_add_to_array(groups, r);
    }
  }
  return out;
}

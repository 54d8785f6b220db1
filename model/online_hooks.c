#include "model/online_hooks.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/json_file.h"

struct online_hooks {
  int num_layers;
  int heads, head_dim;
  rotation *rotation[ONLINE_SITE_COUNT]; /* NULL = site unused */
  bool *active[ONLINE_SITE_COUNT];       /* [num_layers] */
};

static const char *const site_names[ONLINE_SITE_COUNT] = {"down_proj_input", "o_proj_input", "qk_after_rope"};

const char *online_site_name(online_site site) {
  return site >= 0 && site < ONLINE_SITE_COUNT ? site_names[site] : "?";
}

rotation *online_recipe_factor(const online_recipe *recipe, int which, rotq_error *err) {
  if (which == 0) return rotation_create(recipe->m, recipe->mode, recipe->seed_m, 0, err);
  return rotation_create(recipe->n, recipe->mode, recipe->seed_n, recipe->block_size, err);
}

rotation *online_recipe_build(const online_recipe *recipe, rotq_error *err) {
  if (recipe->m < 1 || recipe->n < 1 || (long)recipe->m * recipe->n > (1L << 24)) {
    rotq_fail(err, "online rotation %d ⊗ %d: factor orders out of range", recipe->m, recipe->n);
    return NULL;
  }
  rotation *n = online_recipe_factor(recipe, 1, err);
  if (!n || recipe->m == 1) return n;
  rotation *m = online_recipe_factor(recipe, 0, err);
  if (!m) {
    rotation_free(n);
    return NULL;
  }
  return rotation_kronecker(m, n, err);
}

cJSON *online_recipe_to_json(const online_recipe *recipe) {
  cJSON *o = cJSON_CreateObject();
  cJSON *orders = cJSON_AddArrayToObject(o, "kronecker");
  json_add_to_array(orders, cJSON_CreateNumber(recipe->m));
  json_add_to_array(orders, cJSON_CreateNumber(recipe->n));
  cJSON_AddStringToObject(o, "mode", rotation_mode_name(recipe->mode));
  cJSON *seeds = cJSON_AddArrayToObject(o, "seeds");
  json_add_to_array(seeds, json_seed_create(recipe->seed_m));
  json_add_to_array(seeds, json_seed_create(recipe->seed_n));
  cJSON_AddNumberToObject(o, "block_size", recipe->block_size);
  return o;
}

/* A non-negative integer field of at most max; -1 with an error naming it otherwise. */
static int int_field(const cJSON *o, const char *key, long max, int *out, const char *where, rotq_error *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > max || v->valuedouble != (long)v->valuedouble)
    return rotq_fail(err, "%s: field '%s' is not an integer in 0..%ld", where, key, max);
  *out = (int)v->valuedouble;
  return 0;
}

/* A recipe seed: a decimal string (or, in the records of older rotq, an integral number). */
static int seed_item(const cJSON *v, uint64_t *out, const char *where, rotq_error *err) {
  if (json_seed_get(v, out) == 0) return 0;
  if (cJSON_IsString(v)) return rotq_fail(err, "%s: seed '%s' is not a 64-bit unsigned integer", where, v->valuestring);
  return rotq_fail(err, "%s: field 'seeds' must hold two decimal strings", where);
}

int online_recipe_from_json(const cJSON *json, online_recipe *recipe, const char *where, rotq_error *err) {
  memset(recipe, 0, sizeof *recipe);
  if (!cJSON_IsObject(json)) return rotq_fail(err, "%s: 'recipe' must be an object", where);
  const cJSON *orders = cJSON_GetObjectItemCaseSensitive(json, "kronecker");
  if (!cJSON_IsArray(orders) || cJSON_GetArraySize(orders) != 2)
    return rotq_fail(err, "%s: field 'kronecker' must be [m, n]", where);
  int order[2];
  for (int i = 0; i < 2; i++) {
    const cJSON *v = cJSON_GetArrayItem(orders, i);
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > (1 << 24) || v->valuedouble != (int)v->valuedouble)
      return rotq_fail(err, "%s: field 'kronecker' must hold two positive orders", where);
    order[i] = (int)v->valuedouble;
  }
  recipe->m = order[0];
  recipe->n = order[1];
  const cJSON *mode = cJSON_GetObjectItemCaseSensitive(json, "mode");
  if (!cJSON_IsString(mode) || rotation_mode_parse(mode->valuestring, &recipe->mode) < 0)
    return rotq_fail(err, "%s: field 'mode' must be \"hadamard\", \"base_hadamard\" or \"orthogonal\"", where);
  const cJSON *seeds = cJSON_GetObjectItemCaseSensitive(json, "seeds");
  if (!cJSON_IsArray(seeds) || cJSON_GetArraySize(seeds) != 2)
    return rotq_fail(err, "%s: field 'seeds' must hold two decimal strings", where);
  if (seed_item(cJSON_GetArrayItem(seeds, 0), &recipe->seed_m, where, err) < 0 ||
      seed_item(cJSON_GetArrayItem(seeds, 1), &recipe->seed_n, where, err) < 0)
    return -1;
  return int_field(json, "block_size", 1 << 24, &recipe->block_size, where, err);
}

void online_hooks_free(online_hooks *h) {
  if (!h) return;
  for (int s = 0; s < ONLINE_SITE_COUNT; s++) {
    rotation_free(h->rotation[s]);
    free(h->active[s]);
  }
  free(h);
}

/* The order a site's rotation must have, from config.json. */
static int expected_order(online_site site, const model_config *c) {
  return site == ONLINE_SITE_DOWN_PROJ ? c->intermediate_size
         : site == ONLINE_SITE_O_PROJ  ? c->num_attention_heads
                                       : c->head_dim;
}

/* One entry of "rotations": its site, layers and recipe, built into h. */
static int add_rotation(online_hooks *h, const cJSON *entry, int index, const model_config *c, const char *origin,
                        rotq_error *err) {
  char where[600];
  snprintf(where, sizeof where, "%s: online.rotations[%d]", origin, index);
  const cJSON *site_json = cJSON_GetObjectItemCaseSensitive(entry, "site");
  int site = -1;
  for (int s = 0; cJSON_IsString(site_json) && s < ONLINE_SITE_COUNT; s++)
    if (strcmp(site_json->valuestring, site_names[s]) == 0) site = s;
  if (site < 0)
    return rotq_fail(err, "%s: field 'site' must be \"down_proj_input\", \"o_proj_input\" or \"qk_after_rope\"", where);
  if (h->rotation[site]) return rotq_fail(err, "%s: a second rotation at site '%s'", where, site_names[site]);
  online_recipe recipe;
  if (online_recipe_from_json(cJSON_GetObjectItemCaseSensitive(entry, "recipe"), &recipe, where, err) < 0) return -1;
  int order = expected_order(site, c);
  if ((long)recipe.m * recipe.n != order || (site != ONLINE_SITE_DOWN_PROJ && recipe.m != 1))
    return rotq_fail(err, "%s: a %d ⊗ %d rotation at site '%s' does not fit config.json (order %d)", where, recipe.m,
                     recipe.n, site_names[site], order);
  const cJSON *layers = cJSON_GetObjectItemCaseSensitive(entry, "layers");
  if (!cJSON_IsArray(layers)) return rotq_fail(err, "%s: field 'layers' must be a list of layer indices", where);
  h->active[site] = calloc((size_t)h->num_layers + 1, sizeof(bool));
  if (!h->active[site]) return rotq_fail(err, "%s: out of memory", where);
  const cJSON *l;
  cJSON_ArrayForEach(l, layers) {
    if (!cJSON_IsNumber(l) || l->valuedouble < 0 || l->valuedouble >= h->num_layers ||
        l->valuedouble != (int)l->valuedouble)
      return rotq_fail(err, "%s: layer %g is not a decoder layer (0..%d)", where,
                       cJSON_IsNumber(l) ? l->valuedouble : -1.0, h->num_layers - 1);
    h->active[site][(int)l->valuedouble] = true;
  }
  if (!(h->rotation[site] = online_recipe_build(&recipe, err))) return rotq_fail_context(err, "%s", where);
  return 0;
}

int online_hooks_from_json(const cJSON *online, const model_config *config, const char *origin, online_hooks **out,
                           rotq_error *err) {
  *out = NULL;
  if (!online || cJSON_IsNull(online)) return 0;
  if (!cJSON_IsObject(online)) return rotq_fail(err, "%s: 'online' must be an object or null", origin);
  const cJSON *rotations = cJSON_GetObjectItemCaseSensitive(online, "rotations");
  if (!rotations || cJSON_IsNull(rotations)) return 0;
  if (!cJSON_IsArray(rotations)) return rotq_fail(err, "%s: online.rotations must be a list", origin);
  if (cJSON_GetArraySize(rotations) == 0) return 0;
  online_hooks *h = calloc(1, sizeof *h);
  if (!h) return rotq_fail(err, "%s: out of memory", origin);
  h->num_layers = config->num_hidden_layers;
  h->heads = config->num_attention_heads;
  h->head_dim = config->head_dim;
  int index = 0;
  const cJSON *entry;
  cJSON_ArrayForEach(entry, rotations) {
    if (add_rotation(h, entry, index++, config, origin, err) < 0) {
      online_hooks_free(h);
      return -1;
    }
  }
  *out = h;
  return 0;
}

int online_hooks_load(const char *dir, const model_config *config, online_hooks **out, rotq_error *err) {
  *out = NULL;
  char path[4200];
  snprintf(path, sizeof path, "%s/rotation.json", dir);
  struct stat st;
  if (stat(path, &st) != 0) return 0; /* not a rotated checkpoint (or rotated without a record) */
  cJSON *record = json_file_read(path, err);
  if (!record) return -1;
  int rc = online_hooks_from_json(cJSON_GetObjectItemCaseSensitive(record, "online"), config, path, out, err);
  cJSON_Delete(record);
  return rc;
}

bool online_hooks_active(const online_hooks *h, online_site site, int layer) {
  return h && site >= 0 && site < ONLINE_SITE_COUNT && h->rotation[site] && layer >= 0 && layer < h->num_layers &&
         h->active[site][layer];
}

/* x·(R ⊗ I_head_dim) of each row [heads, head_dim] is R_ᵀ·X; the other sites rotate every
 * length-n segment of each row (n = intermediate, or head_dim for the head vectors of Q and K). */
void online_hook_apply_f64(const online_hooks *h, online_site site, int layer, double *x, int rows, int dim) {
  if (!online_hooks_active(h, site, layer)) return;
  const rotation *r = h->rotation[site];
  if (site == ONLINE_SITE_O_PROJ)
    for (int i = 0; i < rows; i++)
      rotation_apply_cols_f64(r, x + (size_t)i * dim, (size_t)h->heads, (size_t)h->head_dim, (size_t)h->head_dim);
  else
    rotation_apply_rows_f64(r, x, (size_t)rows, (size_t)dim, (size_t)dim);
}

void online_hook_apply_f32(const online_hooks *h, online_site site, int layer, float *x, int rows, int dim) {
  if (!online_hooks_active(h, site, layer)) return;
  const rotation *r = h->rotation[site];
  if (site == ONLINE_SITE_O_PROJ)
    for (int i = 0; i < rows; i++)
      rotation_apply_cols_f32(r, x + (size_t)i * dim, (size_t)h->heads, (size_t)h->head_dim, (size_t)h->head_dim);
  else
    rotation_apply_rows_f32(r, x, (size_t)rows, (size_t)dim, (size_t)dim);
}

/* The activation halves of the online rotations, as the reference forward pass applies them:
 *
 *   down_proj input   x ← x·(R_m ⊗ R_n)              R4; x the gated activation [intermediate]
 *   o_proj input      x ← x·(R_heads ⊗ I_head_dim)   the heads rotation; x the attention output
 *   Q and K           q ← q·R3, k ← k·R3 per head     R3, after RoPE (it cancels in q·kᵀ)
 *
 * A rotated checkpoint describes them in rotation.json's "online" section: for each, the layers
 * and a recipe (factor orders, mode, seeds, block size) that online_recipe_build turns into the
 * very matrices whose weight halves `rotq rotate --online` fused (rotate/online_processor.c builds
 * them with the same function). model_load reads that section and applies the hooks; without
 * them an online-rotated checkpoint computes a different function. */
#ifndef ROTQ_MODEL_ONLINE_HOOKS_H
#define ROTQ_MODEL_ONLINE_HOOKS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "io/model_config.h"
#include "linalg/rotation.h"

struct cJSON;

/* Where an online rotation acts on the activations. */
typedef enum online_site {
  ONLINE_SITE_DOWN_PROJ, /* "down_proj_input": the input of mlp.down_proj */
  ONLINE_SITE_O_PROJ,    /* "o_proj_input": the input of self_attn.o_proj, as [heads, head_dim] */
  ONLINE_SITE_QK,        /* "qk_after_rope": every head vector of Q and K after RoPE */
  ONLINE_SITE_COUNT
} online_site;

const char *online_site_name(online_site site);

/* How one online rotation is built: R = R_m ⊗ R_n (m = 1: R = R_n), each factor
 * rotation_create(order, mode, seed, block_size) — R_m with block size 0. */
typedef struct online_recipe {
  int m, n;
  rotation_mode mode;
  uint64_t seed_m, seed_n;
  int block_size; /* of R_n: 0 = one block; b = I ⊗ H_b (vLLM's form of R4) */
} online_recipe;

/* Factor 0 (R_m) or 1 (R_n) of the recipe. */
rotation *online_recipe_factor(const online_recipe *recipe, int which, rotq_error *err);
/* The rotation of the recipe, order m·n. */
rotation *online_recipe_build(const online_recipe *recipe, rotq_error *err);
/* {"kronecker": [m, n], "mode", "seeds": ["<seed_m>", "<seed_n>"], "block_size"}; seeds are
 * strings so that 64-bit values survive JSON readers that parse numbers as doubles. */
struct cJSON *online_recipe_to_json(const online_recipe *recipe);
int online_recipe_from_json(const struct cJSON *json, online_recipe *recipe, const char *where, rotq_error *err);

typedef struct online_hooks online_hooks;

/* Reads dir/rotation.json's "online" section and builds its rotations, checked against config;
 * *out = NULL when the file, the section or its rotations are absent (or null). */
int online_hooks_load(const char *dir, const model_config *config, online_hooks **out, rotq_error *err);
/* The same from a parsed section; origin names it in errors. */
int online_hooks_from_json(const struct cJSON *online, const model_config *config, const char *origin,
                           online_hooks **out, rotq_error *err);
void online_hooks_free(online_hooks *h);

/* Does a rotation act at site in layer? (false for h NULL) */
bool online_hooks_active(const online_hooks *h, online_site site, int layer);

/* x [rows, dim] at site in layer becomes its online-rotated value (no-op when inactive): dim is
 * intermediate (down_proj), heads·head_dim (o_proj), or heads·head_dim / kv_heads·head_dim (Q, K). */
void online_hook_apply_f64(const online_hooks *h, online_site site, int layer, double *x, int rows, int dim);
void online_hook_apply_f32(const online_hooks *h, online_site site, int layer, float *x, int rows, int dim);

#endif

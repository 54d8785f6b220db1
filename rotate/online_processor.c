#include "rotate/online_processor.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/parallel.h"
#include "linalg/hadamard.h"
#include "model/online_hooks.h"
#include "io/json_file.h"

/* vLLM's hadacore kernel applies normalized Sylvester Hadamards of powers of two up to 2^15. */
#define VLLM_HADAMARD_MAX_ORDER 32768
/* Kronecker factors of R4 come from {1, 2, 4k ≤ 256} (msModelSlim). */
#define KRONECKER_MAX_FACTOR 256

/* One online rotation and its export. */
typedef struct online_group {
  const char *name; /* transform group: "R4", "R_heads", "R3" */
  online_site site;
  online_recipe recipe;
  rotation *rotation; /* the activation transform (R4, R_heads, R3) */
  bool *layers;       /* [num_layers]: where it acts */
  const char *type;   /* compressed-tensors type: hadamard | random-hadamard | random-matrix */
  int head_dim;       /* transform_config head_dim (the block order), 0 = null (the whole input) */
  /* The stored tensor S = √s·T (s × s): T = rotation, T = rotation ⊗ I_head_dim (R_heads), or one
   * diagonal block H_b of vLLM's R4 (stored_block). Absent for vLLM's R3 (nothing loads it). */
  bool stored;
  char tensor[TENSOR_NAME_MAX];
  dtype tensor_dtype;
  int tensor_order;
  rotation *stored_block;
} online_group;

struct online_state {
  bool vllm;
  int num_layers, heads, head_dim;
  online_group group[ONLINE_SITE_COUNT];
  int warning_count;
  char warnings[8][512];
};

/* A warning of the online plan: in rotation.json's online section and among the plan's warnings
 * (which the runner shows). */
static void online_warn(quarot_processor *p, const char *text) {
  struct online_state *s = p->online;
  if (s->warning_count < (int)(sizeof s->warnings / sizeof s->warnings[0]))
    snprintf(s->warnings[s->warning_count++], sizeof s->warnings[0], "%s", text);
  command_list *l = &p->commands;
  if (l->warning_count < (int)(sizeof l->warnings / sizeof l->warnings[0]))
    snprintf(l->warnings[l->warning_count++], sizeof l->warnings[0], "%s", text);
}

static bool hadamard_constructible(int n) {
  hadamard_plan plan;
  return hadamard_plan_order(n, &plan) == 0;
}

static bool kronecker_factor_allowed(int k) { return k == 1 || k == 2 || (k % 4 == 0 && k <= KRONECKER_MAX_FACTOR); }

void online_kronecker_split(int intermediate, int *m, int *n) {
  *m = 1;
  *n = intermediate;
  for (int a = 1; (long)a * a <= intermediate; a++) {
    if (intermediate % a || !kronecker_factor_allowed(a) || !kronecker_factor_allowed(intermediate / a)) continue;
    if (hadamard_constructible(a) && hadamard_constructible(intermediate / a)) {
      *m = a;
      *n = intermediate / a;
    }
  }
}

/* Absolute glob of relative (a '|' list of per-layer globs) in layer. */
static void layer_glob(const model_adapter *a, int layer, const char *relative, char *out, size_t cap) {
  out[0] = '\0';
  char copy[1024];
  snprintf(copy, sizeof copy, "%s", relative);
  char *save = NULL;
  for (char *alt = strtok_r(copy, "|", &save); alt; alt = strtok_r(NULL, "|", &save)) {
    char abs[512];
    adapter_layer_module(a, layer, alt, abs, sizeof abs);
    if (out[0]) strncat(out, "|", cap - strlen(out) - 1);
    strncat(out, abs, cap - strlen(out) - 1);
  }
}

/* The weight command of layer whose module matches relative (e.g. "mlp.down_proj"): the first
 * match; *count says how many match. */
static rotate_command *layer_target(const quarot_processor *p, int layer, const char *relative, size_t *count) {
  char glob[4096];
  layer_glob(p->adapter, layer, relative, glob, sizeof glob);
  rotate_command *first = NULL;
  *count = 0;
  for (size_t i = 0; i < p->commands.count; i++) {
    rotate_command *c = &p->commands.items[i];
    size_t len = strlen(c->name);
    if (c->layer != layer || c->is_bias || len < 8 || strcmp(c->name + len - 7, ".weight") != 0) continue;
    char module[TENSOR_NAME_MAX];
    snprintf(module, sizeof module, "%.*s", (int)(len - 7), c->name);
    if (!pattern_matches(glob, module)) continue;
    if (!first) first = c;
    (*count)++;
  }
  return first;
}

/* The dtype of the stored transform tensors, which the export's `precision` names: float64 for a
 * float64 output, float32 otherwise (√n·T is not exact in 16 bits: √32 would be 5.65625, and a
 * fallback orthogonal matrix would lose orthogonality). */
static dtype export_dtype(const transform_context *ctx, const st_tensor *weight) {
  return transform_output_dtype(ctx, weight) == DTYPE_F64 ? DTYPE_F64 : DTYPE_F32;
}

/* Checks that every layer where group acts has one weight at relative (and, for vLLM, no bias);
 * the first names the stored tensor and gives its dtype. (That the weight's input is as wide as
 * the rotation is the plan checks' part: commands_complete.) */
static int check_targets(quarot_processor *p, online_group *g, const char *relative, rotq_error *err) {
  struct online_state *s = p->online;
  bool first = true;
  for (int layer = 0; layer < s->num_layers; layer++) {
    if (!g->layers[layer]) continue;
    size_t count;
    rotate_command *c = layer_target(p, layer, relative, &count);
    if (count != 1)
      return rotq_fail(err,
                       "%s: online %s: layer %d has %zu weights matching '%s'; online rotations act on one "
                       "linear per layer, not on MoE experts (down_proj_online_layers: [] leaves R4 out)",
                       p->ck->dir, g->name, layer, count, relative);
    const st_tensor *t = checkpoint_find(p->ck, c->source);
    int module_len = (int)(strlen(c->name) - 7);
    char bias[TENSOR_NAME_MAX];
    snprintf(bias, sizeof bias, "%.*s.bias", module_len, c->name);
    if (s->vllm && checkpoint_find(p->ck, bias))
      return rotq_fail(err,
                       "%s: '%s' has a bias: vLLM serves online transforms only on linears without one "
                       "(use --online without --online-for vllm)",
                       p->ck->dir, bias);
    if (first) { /* "<module>.<group>_input.weight" */
      g->tensor_dtype = export_dtype(&p->context, t);
      snprintf(g->tensor, sizeof g->tensor, "%.*s.%s_input.weight", module_len, c->name, g->name);
      first = false;
    }
  }
  return 0;
}

static int all_layers(struct online_state *s, online_group *g, rotq_error *err) {
  g->layers = malloc(sizeof(bool) * (size_t)(s->num_layers + 1));
  if (!g->layers) return rotq_fail(err, "out of memory");
  for (int l = 0; l < s->num_layers; l++) g->layers[l] = true;
  return 0;
}

/* Hybrid families (Nemotron-H): a layer of another kind (Mamba-2, MoE, ...) has no weight at
 * relative and no online site there; it is left out of g. */
static void keep_layers_having(quarot_processor *p, online_group *g, const char *relative) {
  if (!p->adapter->hybrid_layers) return;
  for (int l = 0; l < p->online->num_layers; l++) {
    size_t count;
    layer_target(p, l, relative, &count);
    if (count == 0) g->layers[l] = false;
  }
}

/* The first layer where g acts, or -1. */
static int first_layer(const struct online_state *s, const online_group *g) {
  for (int l = 0; g->layers && l < s->num_layers; l++)
    if (g->layers[l]) return l;
  return -1;
}

/* The layers whose down_proj takes R4: config down_proj_online_layers, or all (a hybrid model's:
 * all that have one). */
static int down_proj_layers(quarot_processor *p, online_group *g, rotq_error *err) {
  struct online_state *s = p->online;
  if (all_layers(s, g, err) < 0) return -1;
  const rotation_config *c = p->config;
  if (!c->down_proj_online_layers_set) {
    keep_layers_having(p, g, p->adapter->down_proj);
    return 0;
  }
  for (int l = 0; l < s->num_layers; l++) g->layers[l] = false;
  for (int i = 0; i < c->down_proj_online_layer_count; i++) {
    int l = c->down_proj_online_layers[i];
    if (l < 0 || l >= s->num_layers)
      return rotq_fail(err, "%s: down_proj_online_layers: layer %d is not a decoder layer (0..%d)", c->origin, l,
                       s->num_layers - 1);
    g->layers[l] = true;
  }
  return 0;
}

static int build_group(online_group *g, rotq_error *err) {
  g->rotation = online_recipe_build(&g->recipe, err);
  if (!g->rotation) return rotq_fail_context(err, "online %s", g->name);
  return 0;
}

static int make_r4(quarot_processor *p, uint64_t seed, rotq_error *err) {
  struct online_state *s = p->online;
  online_group *g = &s->group[ONLINE_SITE_DOWN_PROJ];
  int intermediate = p->ck->config.intermediate_size;
  g->name = "R4";
  g->site = ONLINE_SITE_DOWN_PROJ;
  if (intermediate <= 0)
    return rotq_fail(err, "%s: online R4 needs 'intermediate_size' in config.json", p->ck->config.path);
  if (down_proj_layers(p, g, err) < 0) return -1;
  bool any = false;
  for (int l = 0; l < s->num_layers; l++) any = any || g->layers[l];
  if (!any) return 0; /* down_proj_online_layers: [] */
  if (s->vllm) {
    int b = intermediate & -intermediate;
    if (b > VLLM_HADAMARD_MAX_ORDER) b = VLLM_HADAMARD_MAX_ORDER;
    if (b < 2)
      return rotq_fail(err, "--online-for vllm: intermediate_size %d has no power-of-two factor for vLLM's blocks",
                       intermediate);
    g->recipe = (online_recipe){
        .m = 1, .n = intermediate, .mode = ROTATION_BASE_HADAMARD, .block_size = b == intermediate ? 0 : b};
    g->type = "hadamard";
    g->head_dim = b;
    g->tensor_order = b;
    g->stored_block = rotation_create(b, ROTATION_BASE_HADAMARD, 0, 0, err);
    if (!g->stored_block) return -1;
  } else if (rotation_group_block(intermediate, p->config->block_size) > 0) {
    /* group-sized (config block_size): I ⊗ H_b, no block straddling a quantization group */
    g->recipe = (online_recipe){.m = 1,
                                .n = intermediate,
                                .mode = ROTATION_HADAMARD,
                                .seed_n = derive_seed(seed, "online.R4.n", 0),
                                .block_size = rotation_group_block(intermediate, p->config->block_size)};
    g->tensor_order = intermediate;
  } else {
    int m, n;
    online_kronecker_split(intermediate, &m, &n);
    g->recipe = (online_recipe){.m = m,
                                .n = n,
                                .mode = ROTATION_HADAMARD,
                                .seed_m = m > 1 ? derive_seed(seed, "online.R4.m", 0) : 0,
                                .seed_n = derive_seed(seed, "online.R4.n", 0)};
    g->tensor_order = intermediate;
  }
  if (build_group(g, err) < 0) return -1;
  /* a block-diagonal R4 (group-sized) has zeros: not a Hadamard matrix, stored whole */
  if (!s->vllm)
    g->type = rotation_is_fallback(g->rotation) || g->recipe.block_size ? "random-matrix" : "random-hadamard";
  if (rotation_is_fallback(g->rotation)) {
    char text[512];
    snprintf(text, sizeof text, "online R4: no Hadamard matrix of order %d is constructible; using %s", intermediate,
             rotation_describe(g->rotation));
    online_warn(p, text);
  }
  g->stored = true;
  return check_targets(p, g, p->adapter->down_proj, err);
}

static int make_heads(quarot_processor *p, uint64_t seed, rotq_error *err) {
  struct online_state *s = p->online;
  online_group *g = &s->group[ONLINE_SITE_O_PROJ];
  g->name = "R_heads";
  g->site = ONLINE_SITE_O_PROJ;
  if (all_layers(s, g, err) < 0) return -1;
  keep_layers_having(p, g, p->adapter->o_proj);
  if (first_layer(s, g) < 0) { /* no attention layer (a hybrid model of Mamba-2 and MLP layers) */
    free(g->layers);
    g->layers = NULL;
    return 0;
  }
  /* R_heads ⊗ I_head_dim mixes the heads at one offset: group-sized (config block_size b), it
   * mixes only the b / head_dim heads one quantization group of the o_proj input spans */
  const int b = p->config->block_size;
  g->recipe =
      (online_recipe){.m = 1,
                      .n = s->heads,
                      .mode = ROTATION_HADAMARD,
                      .seed_n = derive_seed(seed, "online.R_heads", 0),
                      .block_size = b > 0 ? rotation_group_block(s->heads, b > s->head_dim ? b / s->head_dim : 1) : 0};
  if (build_group(g, err) < 0) return -1;
  /* R_heads ⊗ I is not a Hadamard matrix (it has zeros) nor block-diagonal: a dense transform */
  g->type = "random-matrix";
  g->tensor_order = s->heads * s->head_dim;
  g->stored = true;
  if (rotation_is_fallback(g->rotation)) {
    char text[512];
    snprintf(text, sizeof text,
             "online o_proj heads rotation: num_attention_heads %d is not a constructible Hadamard order; using %s",
             s->heads, rotation_describe(g->rotation));
    online_warn(p, text);
  }
  return check_targets(p, g, p->adapter->o_proj, err);
}

static int make_r3(quarot_processor *p, uint64_t seed, rotq_error *err) {
  struct online_state *s = p->online;
  online_group *g = &s->group[ONLINE_SITE_QK];
  g->name = "R3";
  g->site = ONLINE_SITE_QK;
  bool power_of_two = (s->head_dim & (s->head_dim - 1)) == 0;
  if (s->vllm && !power_of_two) {
    char text[512];
    snprintf(text, sizeof text,
             "online R3 left out: --online-for vllm needs a power-of-two head_dim for a Sylvester Hadamard, not %d",
             s->head_dim);
    online_warn(p, text);
    return 0;
  }
  if (all_layers(s, g, err) < 0) return -1;
  keep_layers_having(p, g, p->adapter->o_proj);
  const int attention_layer = first_layer(s, g);
  if (attention_layer < 0) {
    free(g->layers);
    g->layers = NULL;
    return 0;
  }
  if (s->vllm)
    g->recipe = (online_recipe){.m = 1, .n = s->head_dim, .mode = ROTATION_BASE_HADAMARD};
  else
    g->recipe = (online_recipe){
        .m = 1, .n = s->head_dim, .mode = ROTATION_HADAMARD, .seed_n = derive_seed(seed, "online.R3", 0)};
  if (build_group(g, err) < 0) return -1;
  g->head_dim = s->head_dim;
  g->tensor_order = s->head_dim;
  g->type = s->vllm ? "hadamard" : rotation_is_fallback(g->rotation) ? "random-matrix" : "random-hadamard";
  if (rotation_is_fallback(g->rotation)) {
    char text[512];
    snprintf(text, sizeof text, "online R3: head_dim %d is not a constructible Hadamard order; using %s", s->head_dim,
             rotation_describe(g->rotation));
    online_warn(p, text);
  }
  /* No tensor: vLLM registers no parameter for attention transforms, so its loader would raise
   * KeyError on one, and R3 cancels in q·kᵀ, so a consumer may use any matrix of the same kind (its
   * recipe is rotation.json's, which rotq's own forward pass rebuilds). */
  g->stored = false;
  g->tensor_dtype = export_dtype(&p->context, checkpoint_find(p->ck, p->commands.items[0].source));
  return 0;
}

static int make_rotations(quarot_processor *p, const char *online_for, uint64_t seed, rotq_error *err) {
  if (online_for && strcmp(online_for, "vllm") != 0)
    return rotq_fail(err, "online_for must be \"vllm\" (or none), not \"%s\"", online_for);
  if (!p->adapter->o_proj || !p->adapter->down_proj)
    return rotq_fail(err, "online rotations: the %s adapter names no o_proj/down_proj", p->adapter->family);
  if (p->adapter->v_rows_mla)
    return rotq_fail(err,
                     "online rotations: %s (%s) uses multi-head latent attention: its o_proj reads heads of "
                     "v_head_dim and its keys are a shared RoPE part plus per-head latent projections, so the heads "
                     "rotation and R3 have no site rotq's forward pass or an engine applies (R1 and R2 are offline)",
                     p->adapter->family, p->adapter->variants[0].architecture);
  struct online_state *s = calloc(1, sizeof *s);
  if (!s) return rotq_fail(err, "out of memory");
  p->online = s;
  s->vllm = online_for != NULL;
  s->num_layers = p->ck->config.num_hidden_layers;
  s->heads = adapter_num_attention_heads(&p->ck->config);
  s->head_dim = adapter_head_dim(&p->ck->config);
  if (s->heads < 1 || s->head_dim < 1)
    return rotq_fail(err, "%s: online rotations need num_attention_heads and head_dim", p->ck->config.path);
  if (make_r4(p, seed, err) < 0 || make_heads(p, seed, err) < 0 || make_r3(p, seed, err) < 0) return -1;
  const dtype written = p->commands.count
                            ? transform_output_dtype(&p->context, checkpoint_find(p->ck, p->commands.items[0].source))
                            : DTYPE_BF16;
  if (s->vllm && (written == DTYPE_F32 || written == DTYPE_F64)) {
    char text[512];
    snprintf(text, sizeof text,
             "--online-for vllm: the output is %s, but vLLM's Hadamard kernel (hadacore) takes float16/bfloat16 "
             "activations only: serve it with --dtype bfloat16 or float16 (or rotate with --dtype bf16)",
             dtype_name(written));
    online_warn(p, text);
  }
  return 0;
}

/* Attaches layer's online weight halves to its commands. */
static int attach_layer(quarot_processor *p, int layer, rotq_error *err) {
  struct online_state *s = p->online;
  const char *relative[ONLINE_SITE_COUNT] = {p->adapter->down_proj, p->adapter->o_proj, NULL};
  const online_kind kind[ONLINE_SITE_COUNT] = {ONLINE_INPUT, ONLINE_INPUT_HEADS, ONLINE_NONE};
  for (int site = 0; site < ONLINE_SITE_COUNT; site++) {
    online_group *g = &s->group[site];
    if (!relative[site] || !g->rotation || !g->layers[layer]) continue;
    size_t count;
    rotate_command *c = layer_target(p, layer, relative[site], &count);
    if (count != 1) return rotq_fail(err, "online %s: layer %d: %zu target weights", g->name, layer, count);
    if (c->online != ONLINE_NONE) return rotq_fail(err, "tensor '%s' would take two online rotations", c->name);
    c->online = kind[site];
    c->online_rotation = g->rotation;
  }
  return 0;
}

int online_plan(quarot_processor *p, const char *online_for, uint64_t seed, rotq_error *err) {
  if (make_rotations(p, online_for, seed, err) < 0) return -1;
  for (int layer = 0; layer < p->online->num_layers; layer++)
    if (attach_layer(p, layer, err) < 0) return -1;
  /* a quantized source's quantization_config is dropped with its scales (its weights are dequantized) */
  if (!p->ck->quantized_count && cJSON_GetObjectItemCaseSensitive(p->ck->config.json, "quantization_config"))
    return rotq_fail(err, "%s: the input already has a quantization_config; online rotations export their own",
                     p->ck->config.path);
  return 0;
}

size_t online_extra_tensor_count(const quarot_processor *p) {
  size_t count = 0;
  for (int site = 0; p->online && site < ONLINE_SITE_COUNT; site++) count += p->online->group[site].stored;
  return count;
}

size_t online_extra_tensor_specs(const quarot_processor *p, st_spec *specs) {
  size_t k = 0;
  for (int site = 0; p->online && site < ONLINE_SITE_COUNT; site++) {
    const online_group *g = &p->online->group[site];
    if (!g->stored) continue;
    specs[k++] =
        (st_spec){.name = g->tensor, .dtype = g->tensor_dtype, .ndim = 2, .shape = {g->tensor_order, g->tensor_order}};
  }
  return k;
}

/* Rows [begin, end) of the stored matrix S = √s·T, computed as unit rows e_i·T. */
typedef struct stored_rows {
  const online_group *g;
  const struct online_state *s;
  double *rows; /* [count, s] */
  size_t first;
  double *factor_m, *factor_n; /* R4 with m > 1: the dense normalized factors */
  int failed;                  /* a rotation's scratch memory could not be allocated */
} stored_rows;

static void fill_stored_rows_body(stored_rows *w, size_t begin, size_t end);

static void fill_stored_rows(void *ctx, size_t begin, size_t end) {
  stored_rows *w = ctx;
  rotation_scratch_recover(true);
  fill_stored_rows_body(w, begin, end);
  if (rotation_scratch_failed()) __atomic_store_n(&w->failed, 1, __ATOMIC_RELAXED);
  rotation_scratch_recover(false);
}

static void fill_stored_rows_body(stored_rows *w, size_t begin, size_t end) {
  const online_group *g = w->g;
  size_t order = (size_t)g->tensor_order;
  double scale = sqrt((double)order);
  for (size_t r = begin; r < end; r++) {
    double *row = w->rows + r * order;
    size_t i = w->first + r;
    if (w->factor_m) { /* (R_m ⊗ R_n)[i][j] = R_m[i / n][j / n] · R_n[i % n][j % n] */
      size_t m = (size_t)g->recipe.m, n = (size_t)g->recipe.n;
      for (size_t a = 0; a < m; a++) {
        double x = scale * w->factor_m[(i / n) * m + a];
        const double *b = w->factor_n + (i % n) * n;
        for (size_t j = 0; j < n; j++) row[a * n + j] = x * b[j];
      }
      continue;
    }
    memset(row, 0, sizeof *row * order);
    row[i] = scale;
    if (g->site == ONLINE_SITE_O_PROJ) /* e_i·(R ⊗ I_head_dim) */
      rotation_apply_cols_f64(g->rotation, row, (size_t)w->s->heads, (size_t)w->s->head_dim, (size_t)w->s->head_dim);
    else
      rotation_apply_rows_f64(g->stored_block ? g->stored_block : g->rotation, row, 1, order, order);
  }
  if (strcmp(g->type, "random-matrix") != 0) /* a Hadamard matrix: exactly ±1 */
    for (size_t k = begin * order; k < end * order; k++) w->rows[k] = w->rows[k] < 0 ? -1.0 : 1.0;
}

static double *dense_factor(const online_recipe *recipe, int which, int order, rotq_error *err) {
  rotation *r = online_recipe_factor(recipe, which, err);
  double *d = r ? malloc(sizeof *d * (size_t)order * (size_t)order) : NULL;
  if (r && !d) rotq_fail(err, "out of memory");
  if (d && rotation_dense(r, d) < 0) {
    rotq_fail(err, "out of memory (rotation scratch of an online factor)");
    free(d);
    d = NULL;
  }
  rotation_free(r);
  return d;
}

static int write_stored(quarot_processor *p, const online_group *g, rotq_error *err) {
  st_writer *writer = p->context.writer;
  long index = st_writer_index(writer, g->tensor);
  if (index < 0) return rotq_fail(err, "tensor '%s': not planned for output", g->tensor);
  size_t order = (size_t)g->tensor_order, element = dtype_size(g->tensor_dtype);
  size_t block = ((size_t)32 << 20) / (order * sizeof(double));
  if (block < 1) block = 1;
  if (block > order) block = order;
  stored_rows w = {.g = g, .s = p->online};
  w.rows = malloc(sizeof(double) * block * order);
  void *bytes = malloc(element * block * order);
  int rc = w.rows && bytes ? 0 : rotq_fail(err, "tensor '%s': out of memory", g->tensor);
  if (rc == 0 && g->site == ONLINE_SITE_DOWN_PROJ && g->recipe.m > 1) {
    w.factor_m = dense_factor(&g->recipe, 0, g->recipe.m, err);
    w.factor_n = w.factor_m ? dense_factor(&g->recipe, 1, g->recipe.n, err) : NULL;
    if (!w.factor_n) rc = -1;
  }
  for (size_t first = 0; rc == 0 && first < order; first += block) {
    size_t count = order - first < block ? order - first : block;
    w.first = first;
    parallel_for(count, 1, p->context.threads, fill_stored_rows, &w);
    if (w.failed) {
      rc = rotq_fail(err, "tensor '%s': out of memory (rotation scratch)", g->tensor);
      break;
    }
    dtype_from_f64(g->tensor_dtype, w.rows, bytes, count * order);
    rc = st_writer_write_part(writer, (size_t)index, first * order * element, bytes, count * order * element, err);
  }
  free(w.factor_m);
  free(w.factor_n);
  free(w.rows);
  free(bytes);
  return rc;
}

int online_write_tensors(quarot_processor *p, rotq_error *err) {
  for (int site = 0; p->online && site < ONLINE_SITE_COUNT; site++) {
    const online_group *g = &p->online->group[site];
    if (g->stored && write_stored(p, g, err) < 0) return -1;
  }
  return 0;
}

/* "re:<head><alternative with dots escaped and * as .*>$" for each alternative of relative. */
static void add_regex_targets_after(cJSON *targets, const char *head, const char *relative) {
  char copy[1024];
  snprintf(copy, sizeof copy, "%s", relative);
  char *save = NULL;
  for (char *alt = strtok_r(copy, "|", &save); alt; alt = strtok_r(NULL, "|", &save)) {
    char regex[1024];
    snprintf(regex, sizeof regex, "re:%s", head);
    size_t len = strlen(regex);
    for (const char *c = alt; *c && len + 4 < sizeof regex; c++) {
      if (*c == '.')
        regex[len++] = '\\', regex[len++] = '.';
      else if (*c == '*')
        regex[len++] = '.', regex[len++] = '*';
      else
        regex[len++] = *c;
    }
    regex[len++] = '$';
    regex[len] = '\0';
    json_add_to_array(targets, cJSON_CreateString(regex));
  }
}

/* "re:.*<relative>$": the module in every layer. */
static void add_regex_targets(cJSON *targets, const char *relative) {
  add_regex_targets_after(targets, ".*", relative);
}

/* The module in one layer, anchored on the layer's last name component and index but not on the
 * prefix: "re:(.*\.)?layers\.3\.<relative>$". Engines and loaders name modules differently
 * from the checkpoint (transformers loads Nemotron-H's backbone.layers as model.layers; vLLM maps
 * HF names to its own), so an exact name would silently match nothing there. */
static void add_layer_regex_targets(cJSON *targets, const model_adapter *a, int layer, const char *relative) {
  const char *last = strrchr(a->layer_prefix, '.');
  char head[256];
  snprintf(head, sizeof head, "(.*\\.)?%s\\.%d\\.", last ? last + 1 : a->layer_prefix, layer);
  add_regex_targets_after(targets, head, relative);
}

/* Targets of a group: the modules (relative, a '|' list) of every layer it acts on — one regex
 * when that is all layers, else one anchored regex per layer. */
static cJSON *group_targets(const quarot_processor *p, const online_group *g, const char *relative) {
  cJSON *targets = cJSON_CreateArray();
  bool all = true;
  for (int l = 0; l < p->online->num_layers; l++) all = all && g->layers[l];
  if (all) {
    add_regex_targets(targets, relative);
    return targets;
  }
  for (int l = 0; l < p->online->num_layers; l++)
    if (g->layers[l]) add_layer_regex_targets(targets, p->adapter, l, relative);
  return targets;
}

static void add_apply(cJSON *apply, cJSON *targets, const char *location, bool inverse) {
  cJSON *a = cJSON_CreateObject();
  json_add_to_object(a, "targets", targets);
  cJSON_AddStringToObject(a, "location", location);
  cJSON_AddBoolToObject(a, "inverse", inverse);
  cJSON_AddArrayToObject(a, "ignore");
  json_add_to_array(apply, a);
}

/* The compressed-tensors scheme of one group. Row-vector convention: location "input" with
 * inverse false is x ← x·T; "weight_input" with inverse true is W ← W·T (already fused). */
static cJSON *transform_scheme(const quarot_processor *p, const online_group *g) {
  cJSON *scheme = cJSON_CreateObject();
  cJSON_AddStringToObject(scheme, "type", g->type);
  cJSON *apply = cJSON_AddArrayToObject(scheme, "apply");
  if (g->site == ONLINE_SITE_QK) {
    char attention[256];
    snprintf(attention, sizeof attention, "%s", p->adapter->o_proj);
    char *dot = strrchr(attention, '.');
    if (dot) *dot = '\0';
    cJSON *q = cJSON_CreateArray(), *k = cJSON_CreateArray();
    bool all = true;
    for (int l = 0; l < p->online->num_layers; l++) all = all && g->layers[l];
    if (all) {
      add_regex_targets(q, attention);
      add_regex_targets(k, attention);
    } else { /* a hybrid model: the attention layers' modules by name */
      for (int l = 0; l < p->online->num_layers; l++) {
        if (!g->layers[l]) continue;
        add_layer_regex_targets(q, p->adapter, l, attention);
        add_layer_regex_targets(k, p->adapter, l, attention);
      }
    }
    add_apply(apply, q, "q_attn", false);
    add_apply(apply, k, "k_cache", false);
  } else {
    const char *relative = g->site == ONLINE_SITE_DOWN_PROJ ? p->adapter->down_proj : p->adapter->o_proj;
    add_apply(apply, group_targets(p, g, relative), "input", false);
    add_apply(apply, group_targets(p, g, relative), "weight_input", true);
  }
  cJSON_AddBoolToObject(scheme, "randomize", 0);
  cJSON_AddBoolToObject(scheme, "requires_grad", 0);
  if (g->head_dim)
    cJSON_AddNumberToObject(scheme, "head_dim", g->head_dim);
  else
    cJSON_AddNullToObject(scheme, "head_dim");
  cJSON_AddStringToObject(scheme, "precision", g->tensor_dtype == DTYPE_F64 ? "torch.float64" : "torch.float32");
  return scheme;
}

cJSON *online_quantization_config(const quarot_processor *p, bool *failed) {
  *failed = false;
  if (!p->online) return NULL;
  cJSON *q = cJSON_CreateObject();
  cJSON_AddStringToObject(q, "quant_method", "compressed-tensors");
  cJSON_AddStringToObject(q, "version", ONLINE_COMPRESSED_TENSORS_VERSION);
  cJSON_AddObjectToObject(q, "config_groups");
  cJSON_AddObjectToObject(q, "sparsity_config");
  cJSON *groups = cJSON_AddObjectToObject(cJSON_AddObjectToObject(q, "transform_config"), "config_groups");
  for (int site = 0; site < ONLINE_SITE_COUNT; site++) {
    const online_group *g = &p->online->group[site];
    if (g->rotation) json_add_to_object(groups, g->name, transform_scheme(p, g));
  }
  *failed = !q || !groups;
  return q;
}

static const char *activation_text[ONLINE_SITE_COUNT] = {
    "x <- x·R on the input of down_proj",
    "x <- x·(R ⊗ I_head_dim) on the input of o_proj (x viewed as [heads, head_dim])",
    "q <- q·R and k <- k·R for every head, after RoPE (cancels in q·kᵀ; no weight half)",
};
static const char *weight_text[ONLINE_SITE_COUNT] = {"W <- W·R (fused into down_proj)",
                                                     "W <- W·(R ⊗ I_head_dim) (fused into o_proj)", NULL};

cJSON *online_record(const quarot_processor *p) {
  const struct online_state *s = p->online;
  if (!s) return cJSON_CreateNull();
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "format", 1);
  cJSON_AddStringToObject(o, "serving_form", s->vllm ? "vllm" : "kronecker");
  cJSON *rotations = cJSON_AddArrayToObject(o, "rotations");
  for (int site = 0; site < ONLINE_SITE_COUNT; site++) {
    const online_group *g = &s->group[site];
    if (!g->rotation) continue;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "name", g->name);
    cJSON_AddStringToObject(r, "site", online_site_name(g->site));
    cJSON *layers = cJSON_AddArrayToObject(r, "layers");
    for (int l = 0; l < s->num_layers; l++)
      if (g->layers[l]) json_add_to_array(layers, cJSON_CreateNumber(l));
    cJSON_AddNumberToObject(r, "dim", rotation_dim(g->rotation));
    json_add_to_object(r, "recipe", online_recipe_to_json(&g->recipe));
    cJSON_AddStringToObject(r, "construction", rotation_describe(g->rotation));
    cJSON_AddBoolToObject(r, "fallback", rotation_is_fallback(g->rotation));
    cJSON_AddStringToObject(r, "activation", activation_text[site]);
    if (weight_text[site])
      cJSON_AddStringToObject(r, "weight", weight_text[site]);
    else
      cJSON_AddNullToObject(r, "weight");
    if (site == ONLINE_SITE_O_PROJ) cJSON_AddNumberToObject(r, "head_dim", s->head_dim);
    cJSON_AddStringToObject(r, "transform_group", g->name);
    cJSON_AddStringToObject(r, "transform_type", g->type);
    if (g->stored) {
      cJSON_AddStringToObject(r, "tensor", g->tensor);
      cJSON_AddStringToObject(r, "tensor_holds",
                              g->stored_block              ? "sqrt(b)·H_b, one diagonal block of R (b = head_dim)"
                              : site == ONLINE_SITE_O_PROJ ? "sqrt(heads·head_dim)·(R ⊗ I_head_dim), for vLLM, "
                                                             "which divides every loaded transform by sqrt(size); "
                                                             "compressed-tensors' random-matrix uses stored values "
                                                             "as they are, so its consumers divide by sqrt(size)"
                                                           : "sqrt(dim)·R");
    } else {
      cJSON_AddNullToObject(r, "tensor");
    }
    json_add_to_array(rotations, r);
  }
  cJSON *warnings = cJSON_AddArrayToObject(o, "warnings");
  for (int i = 0; i < s->warning_count; i++) json_add_to_array(warnings, cJSON_CreateString(s->warnings[i]));
  return o;
}

void online_free(quarot_processor *p) {
  struct online_state *s = p->online;
  if (!s) return;
  for (int site = 0; site < ONLINE_SITE_COUNT; site++) {
    rotation_free(s->group[site].rotation);
    rotation_free(s->group[site].stored_block);
    free(s->group[site].layers);
  }
  free(s);
  p->online = NULL;
}

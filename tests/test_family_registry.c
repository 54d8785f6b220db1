/* The family registry (family/family.h) against everything derived from it. For every family and
 * every variant (architecture) it claims:
 *   - the descriptor is complete and consistent: its built-in config parses, its architectures are
 *     claimed by it alone and listed in the supported list, its model_types give config.json its
 *     tie default, the forward pass's names agree with the fuse map, writers and o/v pair;
 *   - the synthetic checkpoint its generator writes has only tensors the descriptor names (fuse map,
 *     writers, pairs, untouched modules, the loader's names), and every name the descriptor gives
 *     exists in some variant's checkpoint;
 *   - that float64 checkpoint, rotated with the family's built-in config (rotq_rotate without a
 *     config: the descriptor's), computes the same logits in the reference forward pass (relative
 *     difference ≤ 1e-9, argmax 100%);
 *   - docs/architectures.md's table lists the family with its architectures and built-in config;
 *   - every descriptor file family/<family>.c is in the registry's list.
 * A descriptor missing a name is caught (the cross-check on a tampered copy). */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/rotation_config.h"
#include "rotate/adapter.h"
#include "io/checkpoint.h"
#include "io/json_file.h"
#include "support/equivalence.h"
#include "support/test_support.h"
#include "synth/synth.h"

/* A small float64 checkpoint of variant v (seeded by its index), every layer kind exercised:
 * Qwen-MoE dense and sparse layers, Nemotron-H's four mixers, Gemma's sliding windows. */
static synth_spec small_spec(const family_variant *v, int index) {
  return (synth_spec){.architecture = v->architecture,
                      .hidden_size = 64,
                      .intermediate_size = 96,
                      .num_layers = 4,
                      .num_heads = 4,
                      .num_kv_heads = 2,
                      .vocab_size = 80,
                      .tie_word_embeddings = v->tie_default,
                      .dtype = DTYPE_F64,
                      .seed = 101 + (uint64_t)index,
                      .num_experts = 4,
                      .num_experts_per_tok = 2,
                      .decoder_sparse_step = 2,
                      .sliding_window = 8,
                      .sliding_window_pattern = 2,
                      .hybrid_override_pattern = "M*-E"};
}

static void synth_or_fail(const synth_spec *spec, const char *dir) {
  rotq_error err = {{0}};
  if (synth_write(spec, dir, &err) != 0) fail_msg("synth %s: %s", spec->architecture, err.message);
}

/* name without a trailing ".weight" / ".bias" (a fused experts' "<x>_proj_bias": "<x>_proj") into out. */
static void module_of(const char *name, char *out, size_t cap) {
  snprintf(out, cap, "%s", name);
  size_t n = strlen(out);
  if (n > 7 && strcmp(out + n - 7, ".weight") == 0)
    out[n - 7] = '\0';
  else if (n > 5 && strcmp(out + n - 5, ".bias") == 0)
    out[n - 5] = '\0';
  else if (n > 10 && strcmp(out + n - 10, "_proj_bias") == 0)
    out[n - 5] = '\0';
}

static bool matches(const char *pattern, const char *module) { return pattern && pattern_matches(pattern, module); }

/* True when the descriptor names module (relative to its layer) in its fuse map, writers, pairs,
 * writer-output norms, untouched list or the loader's names. */
static bool layer_module_named(const family_descriptor *f, const char *rel) {
  for (int i = 0; i < 4 && f->layer_fuse[i].norm; i++)
    if (strcmp(f->layer_fuse[i].norm, rel) == 0 || matches(f->layer_fuse[i].linears, rel)) return true;
  if (matches(f->writers, rel) || matches(f->writer_output_norms, rel) || matches(f->o_proj, rel) ||
      matches(f->v_proj, rel) || matches(f->up_proj, rel) || matches(f->down_proj, rel) || matches(f->untouched, rel))
    return true;
  const family_layer_names *n = &f->names;
  const char *names[] = {n->attn_norm, n->mlp_norm,          n->q_proj,       n->k_proj,         n->v_proj,
                         n->o_proj,    n->qkv_proj,          n->q_norm,       n->k_norm,         n->gate_proj,
                         n->up_proj,   n->down_proj,         n->gate_up_proj, n->post_attn_norm, n->post_mlp_norm,
                         n->router,    n->shared_expert_gate};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (names[i] && strcmp(names[i], rel) == 0) return true;
  return false;
}

/* The first tensor of ck the descriptor does not name, or NULL. */
static const char *unnamed_tensor(const family_descriptor *f, const checkpoint *ck) {
  for (size_t i = 0; i < ck->tensor_count; i++) {
    char module[256];
    module_of(ck->tensors[i]->name, module, sizeof module);
    if (strcmp(module, f->embed) == 0 || strcmp(module, f->final_norm) == 0 || strcmp(module, f->lm_head) == 0 ||
        (f->position_embed && strcmp(module, f->position_embed) == 0))
      continue;
    const char *rel = adapter_layer_of(f, module) >= 0 ? adapter_relative_name(f, module) : NULL;
    if (!rel || !layer_module_named(f, rel)) return ck->tensors[i]->name;
  }
  return NULL;
}

/* True when "<prefix>.<l>.<relative>.weight" exists in ck for some layer l. */
static bool in_some_layer(const family_descriptor *f, const checkpoint *ck, const char *relative) {
  for (int l = 0; l < ck->config.num_hidden_layers; l++) {
    char module[256], name[300];
    family_layer_module(f, l, relative, module, sizeof module);
    snprintf(name, sizeof name, "%s.weight", module);
    if (checkpoint_find(ck, name)) return true;
  }
  return false;
}

/* The names a descriptor gives for layers (NULL-padded), with the first expert's projections. */
#define MAX_GIVEN 64
static size_t given_names(const family_descriptor *f, char given[MAX_GIVEN][128]) {
  size_t count = 0;
  const family_layer_names *n = &f->names;
  const char *plain[] = {f->o_proj,         f->v_proj,        n->attn_norm, n->mlp_norm,          n->q_proj,
                         n->k_proj,         n->v_proj,        n->o_proj,    n->qkv_proj,          n->q_norm,
                         n->k_norm,         n->gate_proj,     n->up_proj,   n->down_proj,         n->gate_up_proj,
                         n->post_attn_norm, n->post_mlp_norm, n->router,    n->shared_expert_gate};
  for (int i = 0; i < 4 && f->layer_fuse[i].norm; i++) snprintf(given[count++], 128, "%s", f->layer_fuse[i].norm);
  for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
    if (plain[i]) snprintf(given[count++], 128, "%s", plain[i]);
  for (int p = 0; p < 3; p++) {
    if (!n->expert_proj[p]) continue;
    if (n->experts) snprintf(given[count++], 128, "%s.0.%s", n->experts, n->expert_proj[p]);
    if (n->shared_expert) snprintf(given[count++], 128, "%s.%s", n->shared_expert, n->expert_proj[p]);
  }
  if (n->mamba) snprintf(given[count++], 128, "%s.in_proj", n->mamba);
  return count;
}

/* The norm (of the fuse map) through which relative reads the stream, or NULL. */
static const char *reader_norm(const family_descriptor *f, const char *relative) {
  for (int i = 0; i < 4 && f->layer_fuse[i].norm; i++)
    if (matches(f->layer_fuse[i].linears, relative)) return f->layer_fuse[i].norm;
  return NULL;
}

/* The forward pass's names agree with the rotation's view of the same family: the o/v pair, the
 * readers behind their norms, the writers, the writers' output norms. */
static void check_names_agree(const family_descriptor *f) {
  const family_layer_names *n = &f->names;
  const bool mla = f->variants[0].loader.mla; /* model/mla.h names its projections; no R2 pair */
  if (n->o_proj && !mla && strcmp(n->o_proj, f->o_proj) != 0)
    fail_msg("%s: o_proj %s vs %s", f->family, n->o_proj, f->o_proj);
  const char *v = n->qkv_proj ? n->qkv_proj : n->v_proj;
  if (v && strcmp(v, f->v_proj) != 0) fail_msg("%s: v_proj %s vs %s", f->family, v, f->v_proj);
  if (n->attn_norm && (!n->q_proj || !n->k_proj || !n->v_proj) && !n->qkv_proj && !n->mamba && !mla)
    fail_msg("%s: an attention norm without projections", f->family);
  const char *latent_readers[] = {"self_attn.q_a_proj", "self_attn.q_proj", "self_attn.kv_a_proj_with_mqa"};
  for (int i = 0; mla && i < 3; i++) {
    const char *norm = reader_norm(f, latent_readers[i]);
    if (!norm || strcmp(norm, n->attn_norm) != 0)
      fail_msg("%s: %s does not read through %s in the fuse map", f->family, latent_readers[i], n->attn_norm);
  }
  const char *attention[] = {n->q_proj, n->k_proj, n->v_proj, n->qkv_proj};
  for (int i = 0; i < 4; i++) {
    const char *norm = attention[i] ? reader_norm(f, attention[i]) : NULL;
    if (attention[i] && (!norm || strcmp(norm, n->attn_norm) != 0))
      fail_msg("%s: %s does not read through %s in the fuse map", f->family, attention[i], n->attn_norm);
  }
  const char *mlp[] = {n->gate_proj, n->up_proj, n->gate_up_proj, n->router};
  const char *mlp_norm = n->mlp_norm ? n->mlp_norm : n->attn_norm; /* one norm per layer (Nemotron-H) */
  for (int i = 0; i < 4; i++) {
    const char *norm = mlp[i] ? reader_norm(f, mlp[i]) : NULL;
    if (mlp[i] && (!norm || strcmp(norm, mlp_norm) != 0))
      fail_msg("%s: %s does not read through %s in the fuse map", f->family, mlp[i], mlp_norm);
  }
  if ((n->o_proj && !matches(f->writers, n->o_proj)) || (n->down_proj && !matches(f->writers, n->down_proj)))
    fail_msg("%s: the forward pass's o_proj/down_proj are not among the writers %s", f->family, f->writers);
  if ((n->post_attn_norm || n->post_mlp_norm) &&
      !(matches(f->writer_output_norms, n->post_attn_norm) && matches(f->writer_output_norms, n->post_mlp_norm)))
    fail_msg("%s: post-norms not listed as writer output norms", f->family);
}

/* A minimal config.json of model_type without tie_word_embeddings, loaded: the tie default io
 * derives from the registry. */
static bool loaded_tie_default(const char *scratch, const char *model_type) {
  char path[4200];
  snprintf(path, sizeof path, "%s/config-%s.json", scratch, model_type);
  FILE *file = fopen(path, "w");
  assert_non_null(file);
  fprintf(file,
          "{\"architectures\": [\"X\"], \"model_type\": \"%s\", \"hidden_size\": 8, \"num_hidden_layers\": 1,"
          " \"num_attention_heads\": 2, \"vocab_size\": 4}\n",
          model_type);
  fclose(file);
  model_config c;
  rotq_error err = {{0}};
  if (model_config_load(path, &c, &err) != 0) fail_msg("%s", err.message);
  bool tied = c.tie_word_embeddings;
  model_config_free(&c);
  return tied;
}

static void descriptors_are_complete(void **state) {
  (void)state;
  char *scratch = scratch_dir("family-registry-complete");
  const char *supported = family_supported_list();
  size_t architectures = 0;
  assert_true(family_count() > 0);
  for (size_t i = 0; i < family_count(); i++) {
    const family_descriptor *f = family_at(i);
    printf("  %-12s", f->family);
    assert_non_null(f->family);
    assert_non_null(f->embed), assert_non_null(f->final_norm), assert_non_null(f->lm_head);
    assert_non_null(f->layer_prefix), assert_non_null(f->writers);
    /* o_proj / v_proj: the R2 pair; both NULL where the family has none (DeepSeek-V3's MLA) */
    assert_true((f->o_proj == NULL) == (f->v_proj == NULL));
    assert_non_null(f->up_proj), assert_non_null(f->down_proj);
    assert_non_null(f->layer_fuse[0].norm);
    if (f->forward == FORWARD_DECODER) {
      assert_non_null(f->names.attn_norm), assert_non_null(f->names.mlp_norm), assert_non_null(f->names.o_proj);
    }
    check_names_agree(f);
    rotation_config config;
    rotq_error err = {{0}};
    if (!f->builtin_config || rotation_config_load(f->builtin_config, &config, &err) != 0)
      fail_msg("%s: built-in config '%s': %s", f->family, f->builtin_config ? f->builtin_config : "(none)",
               err.message);
    rotation_config_free(&config);
    assert_non_null(f->variants[0].architecture);
    for (const family_variant *v = f->variants; v->architecture; v++, architectures++) {
      const family_variant *found = NULL;
      if (family_find(v->architecture, &found) != f || found != v)
        fail_msg("%s: architecture %s is claimed by another family first", f->family, v->architecture);
      if (!strstr(supported, v->architecture)) fail_msg("%s missing from the supported list", v->architecture);
      if (!v->synth) fail_msg("%s has no synthetic generator", v->architecture);
      assert_non_null(v->model_types[0]);
      for (int t = 0; t < 3 && v->model_types[t]; t++)
        if (family_tie_default(v->model_types[t]) != v->tie_default ||
            loaded_tie_default(scratch, v->model_types[t]) != v->tie_default)
          fail_msg("%s: model_type %s does not give tie default %d", v->architecture, v->model_types[t],
                   v->tie_default);
      printf(" %s", v->architecture);
    }
    printf("  (%s)\n", f->builtin_config);
  }
  /* The supported list holds exactly the registry's architectures, comma-separated. */
  size_t commas = 0;
  for (const char *p = supported; *p; p++) commas += *p == ',';
  assert_int_equal(commas + 1, architectures);
  assert_false(loaded_tie_default(scratch, "no_such_model_type"));
  scratch_remove(scratch);
  free(scratch);
}

/* Every variant's synthetic checkpoint has only named tensors, and each family's names exist. */
static void synthetic_tensors_match_descriptors(void **state) {
  (void)state;
  char *scratch = scratch_dir("family-registry-names");
  int index = 0;
  for (size_t i = 0; i < family_count(); i++) {
    const family_descriptor *f = family_at(i);
    char given[MAX_GIVEN][128];
    size_t count = given_names(f, given);
    bool found[MAX_GIVEN] = {false};
    for (const family_variant *v = f->variants; v->architecture; v++, index++) {
      char dir[4200];
      snprintf(dir, sizeof dir, "%s/%s", scratch, v->architecture);
      synth_spec spec = small_spec(v, index);
      synth_or_fail(&spec, dir);
      checkpoint ck;
      rotq_error err = {{0}};
      if (checkpoint_open(dir, &ck, &err) != 0) fail_msg("%s", err.message);
      const char *unnamed = unnamed_tensor(f, &ck);
      if (unnamed) fail_msg("%s: tensor '%s' is named by no entry of family %s", v->architecture, unnamed, f->family);
      if (strcmp(ck.config.architecture, v->architecture) != 0 || strcmp(ck.config.model_type, v->model_types[0]) != 0)
        fail_msg("%s: synth wrote architecture %s, model_type %s", v->architecture, ck.config.architecture,
                 ck.config.model_type);
      for (size_t g = 0; g < count; g++) found[g] |= in_some_layer(f, &ck, given[g]);
      printf("  %-22s %zu tensors, all named by %s\n", v->architecture, ck.tensor_count, f->family);
      checkpoint_close(&ck);
    }
    for (size_t g = 0; g < count; g++)
      if (!found[g]) fail_msg("family %s names '%s', which no variant's checkpoint has", f->family, given[g]);
  }
  scratch_remove(scratch);
  free(scratch);
}

/* The cross-check catches a descriptor that forgets a module (Qwen3's q_norm/k_norm) or misnames
 * the layer prefix. */
static void a_missing_name_is_caught(void **state) {
  (void)state;
  const family_variant *v = NULL;
  const family_descriptor *llama = family_find("Qwen3ForCausalLM", &v);
  assert_non_null(llama);
  family_descriptor tampered = *llama, wrong_prefix = *llama;
  tampered.untouched = NULL;
  tampered.names.q_norm = tampered.names.k_norm = NULL;
  wrong_prefix.layer_prefix = "model.layer";
  char *scratch = scratch_dir("family-registry-tampered");
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/qwen3", scratch);
  synth_spec spec = small_spec(v, 0);
  synth_or_fail(&spec, dir);
  checkpoint ck;
  rotq_error err = {{0}};
  if (checkpoint_open(dir, &ck, &err) != 0) fail_msg("%s", err.message);
  assert_null(unnamed_tensor(llama, &ck));
  const char *unnamed = unnamed_tensor(&tampered, &ck);
  assert_non_null(unnamed);
  assert_non_null(strstr(unnamed, "_norm"));
  printf("  without untouched: '%s' is reported\n", unnamed);
  assert_non_null(unnamed_tensor(&wrong_prefix, &ck));
  checkpoint_close(&ck);
  scratch_remove(scratch);
  free(scratch);
}

/* rotation.json's config_name: the config the rotation used. */
static void check_config_name(const char *rotated, const char *expected) {
  char path[4300];
  snprintf(path, sizeof path, "%s/rotation.json", rotated);
  rotq_error err = {{0}};
  cJSON *json = json_file_read(path, &err);
  if (!json) fail_msg("%s", err.message);
  const cJSON *name = cJSON_GetObjectItemCaseSensitive(json, "config_name");
  if (!cJSON_IsString(name) || strcmp(name->valuestring, expected) != 0)
    fail_msg("%s: rotated with config '%s', not the family's '%s'", rotated,
             cJSON_IsString(name) ? name->valuestring : "?", expected);
  cJSON_Delete(json);
}

/* Every variant, rotated with no config (the descriptor's built-in one), computes the same logits. */
static void every_variant_rotates_equivalently(void **state) {
  (void)state;
  char *scratch = scratch_dir("family-registry-rotate");
  int index = 0;
  for (size_t i = 0; i < family_count(); i++) {
    const family_descriptor *f = family_at(i);
    for (const family_variant *v = f->variants; v->architecture; v++, index++) {
      char original[4200], rotated[4200], what[256];
      snprintf(original, sizeof original, "%s/%s", scratch, v->architecture);
      snprintf(rotated, sizeof rotated, "%s/%s-rotated", scratch, v->architecture);
      snprintf(what, sizeof what, "%s (%s)", v->architecture, f->builtin_config);
      synth_spec spec = small_spec(v, index);
      synth_or_fail(&spec, original);
      rotate_or_fail(original, rotated, NULL, 7);
      check_config_name(rotated, f->builtin_config);
      check_equivalent_logits(original, rotated, 1e-9, what);
    }
  }
  scratch_remove(scratch);
  free(scratch);
}

/* docs/architectures.md's table has a row "| <family> | <architectures> | <built-in config> |". */
static void docs_table_lists_every_family(void **state) {
  (void)state;
  FILE *file = fopen(source_path("docs/architectures.md"), "r");
  if (!file) fail_msg("cannot open docs/architectures.md");
  char rows[64][512];
  int count = 0;
  while (count < 64 && fgets(rows[count], sizeof rows[count], file))
    if (rows[count][0] == '|') count++;
  fclose(file);
  for (size_t i = 0; i < family_count(); i++) {
    const family_descriptor *f = family_at(i);
    char head[64];
    snprintf(head, sizeof head, "| %s |", f->family);
    const char *row = NULL;
    for (int r = 0; r < count && !row; r++)
      if (strncmp(rows[r], head, strlen(head)) == 0) row = rows[r];
    if (!row) fail_msg("docs/architectures.md has no table row for family %s", f->family);
    for (const family_variant *v = f->variants; v->architecture; v++)
      if (!strstr(row, v->architecture)) fail_msg("docs/architectures.md: row %s lacks %s", f->family, v->architecture);
    char config[96];
    snprintf(config, sizeof config, "| %s |", f->builtin_config);
    if (!strstr(row, config)) fail_msg("docs/architectures.md: row %s lacks config %s", f->family, f->builtin_config);
  }
}

/* Every descriptor file family/<family>.c is in the registry's list, as family <family>. */
static void every_descriptor_file_is_registered(void **state) {
  (void)state;
  const char *dir_path = source_path("family");
  DIR *dir = opendir(dir_path);
  if (!dir) fail_msg("cannot open %s", dir_path);
  int descriptors = 0;
  char unregistered[256] = "";
  for (struct dirent *e; (e = readdir(dir));) {
    size_t n = strlen(e->d_name);
    if (n < 3 || strcmp(e->d_name + n - 2, ".c") != 0) continue;
    char path[4200], text[16384];
    snprintf(path, sizeof path, "%s/%s", dir_path, e->d_name);
    FILE *file = fopen(path, "r");
    assert_non_null(file);
    size_t got = fread(text, 1, sizeof text - 1, file);
    fclose(file);
    text[got] = '\0';
    if (!strstr(text, "\nconst family_descriptor family_")) continue; /* a definition, not registry.c's extern */
    descriptors++;
    bool registered = false;
    for (size_t i = 0; i < family_count(); i++)
      registered |= strlen(family_at(i)->family) == n - 2 && strncmp(family_at(i)->family, e->d_name, n - 2) == 0;
    if (!registered && !unregistered[0]) snprintf(unregistered, sizeof unregistered, "%s", e->d_name);
  }
  closedir(dir);
  if (unregistered[0]) fail_msg("family/%s defines a descriptor that family/registry.c does not list", unregistered);
  assert_int_equal(descriptors, (int)family_count());
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(descriptors_are_complete),      cmocka_unit_test(synthetic_tensors_match_descriptors),
      cmocka_unit_test(a_missing_name_is_caught),      cmocka_unit_test(every_variant_rotates_equivalently),
      cmocka_unit_test(docs_table_lists_every_family), cmocka_unit_test(every_descriptor_file_is_registered),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

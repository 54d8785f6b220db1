/* The seed's own configs and API, unchanged (issue 15): modelopt's published nemotron_h config text
 * rotates a Nemotron-H checkpoint with Mamba-2, attention, MLP and MoE layers exactly, plain and
 * with online rotations; per_layer patterns group the layers they name on the family's layer prefix
 * (OPT's model.decoder.layers, Nemotron-H's backbone.layers); a config given as text, as a path and
 * by name rotates identically; the C API's defaults are the CLI's. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/builtin_configs.h"
#include "io/json_file.h"
#include "model/model.h"
#include "rotq.h"
#include "support/arch_support.h"
#include "support/test_support.h"

static const synth_spec nemotron_h_moe = {.architecture = "NemotronHForCausalLM",
                                          .hidden_size = 64,
                                          .intermediate_size = 96,
                                          .moe_intermediate_size = 32,
                                          .num_experts = 8,
                                          .num_experts_per_tok = 2,
                                          .num_layers = 6,
                                          .num_heads = 4,
                                          .num_kv_heads = 2,
                                          .head_dim = 16,
                                          .vocab_size = 72,
                                          .dtype = DTYPE_F64,
                                          .seed = 61,
                                          .hybrid_override_pattern = "ME*-EM",
                                          .mamba_num_heads = 8,
                                          .mamba_head_dim = 8,
                                          .ssm_state_size = 16,
                                          .n_groups = 2,
                                          .conv_kernel = 4};

static const synth_spec opt = {.architecture = "OPTForCausalLM",
                               .hidden_size = 64,
                               .intermediate_size = 128,
                               .num_layers = 3,
                               .num_heads = 4,
                               .num_kv_heads = 4,
                               .vocab_size = 64,
                               .dtype = DTYPE_F64,
                               .seed = 62};

static char *read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) fail_msg("cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *text = malloc((size_t)n + 1);
  if (!text || fread(text, 1, (size_t)n, f) != (size_t)n) fail_msg("cannot read %s", path);
  text[n] = '\0';
  fclose(f);
  return text;
}

static void rotate_with(const char *in, const char *out, const char *config, const char *config_text, int online) {
  rotq_rotate_options o = rotq_rotate_default_options();
  o.model_dir = in;
  o.output_dir = out;
  o.config = config;
  o.config_text = config_text;
  o.seed = 11;
  o.online = online;
  o.verify = ROTQ_VERIFY_IN_STREAM;
  o.quiet = 1;
  rotq_error err = {{0}};
  if (rotq_rotate(&o, &err) < 0) fail_msg("rotate %s (%s): %s", in, config ? config : "config text", err.message);
}

/* Every tensor file of a equals b's, byte for byte. */
static void assert_same_tensors(const char *a, const char *b) {
  assert_int_equal(run_command("cd '%s' && ls *.safetensors >/dev/null && for f in *.safetensors; do cmp -s \"$f\" "
                               "'%s'/\"$f\" || exit 1; done",
                               a, b),
                   0);
}

static cJSON *record(const char *dir) {
  char path[4200];
  snprintf(path, sizeof path, "%s/rotation.json", dir);
  rotq_error err = {{0}};
  cJSON *json = json_file_read(path, &err);
  if (!json) fail_msg("%s", err.message);
  return json;
}

/* The layers list of the online rotation called name in rotation.json, as "0,3". */
static void online_layers(const cJSON *rec, const char *name, char *out, size_t cap) {
  out[0] = '\0';
  const cJSON *r;
  cJSON_ArrayForEach(r, cJSON_GetObjectItem(cJSON_GetObjectItem(rec, "online"), "rotations")) {
    if (strcmp(cJSON_GetObjectItem(r, "name")->valuestring, name) != 0) continue;
    const cJSON *l;
    cJSON_ArrayForEach(l, cJSON_GetObjectItem(r, "layers")) {
      char item[16];
      snprintf(item, sizeof item, "%s%d", out[0] ? "," : "", (int)l->valuedouble);
      strncat(out, item, cap - strlen(out) - 1);
    }
  }
}

/* The layer groups of matrix name in rotation.json, as "0,1,2|5|3|4". */
static void matrix_groups(const cJSON *rec, const char *name, char *out, size_t cap) {
  out[0] = '\0';
  const cJSON *m;
  cJSON_ArrayForEach(m,
                     cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(rec, "matrices"), name), "matrices")) {
    if (out[0]) strncat(out, "|", cap - strlen(out) - 1);
    const cJSON *l;
    bool first = true;
    cJSON_ArrayForEach(l, cJSON_GetObjectItem(m, "layers")) {
      char item[16];
      snprintf(item, sizeof item, "%s%d", first ? "" : ",", (int)l->valuedouble);
      strncat(out, item, cap - strlen(out) - 1);
      first = false;
    }
  }
}

static bool has_warning(const cJSON *rec, const char *fragment) {
  const cJSON *w;
  cJSON_ArrayForEach(w, cJSON_GetObjectItem(rec, "warnings")) if (strstr(w->valuestring, fragment)) return true;
  return false;
}

/* max|Δlogit| / max|logit| of the checkpoint at b, loaded without its online hooks, against a's. */
static double difference_without_hooks(const char *a_dir, const char *b_dir) {
  rotq_error err = {{0}};
  model_options with = {0}, without = {.no_online_hooks = true};
  model *a = NULL, *b = NULL;
  if (model_load(a_dir, &with, &a, &err) < 0 || model_load(b_dir, &without, &b, &err) < 0) fail_msg("%s", err.message);
  enum { N = 16 };
  const int vocab = 72;
  int32_t tokens[N];
  for (int i = 0; i < N; i++) tokens[i] = (int32_t)((i * 7919L + 13) % vocab);
  double *la = malloc(sizeof(double) * N * vocab), *lb = malloc(sizeof(double) * N * vocab);
  if (model_forward(a, tokens, N, la, &err) < 0 || model_forward(b, tokens, N, lb, &err) < 0)
    fail_msg("%s", err.message);
  double diff = 0, scale = 0;
  for (int i = 0; i < N * vocab; i++) {
    diff = fabs(la[i] - lb[i]) > diff ? fabs(la[i] - lb[i]) : diff;
    scale = fabs(la[i]) > scale ? fabs(la[i]) : scale;
  }
  free(la);
  free(lb);
  model_free(a);
  model_free(b);
  return diff / scale;
}

/* modelopt's published nemotron_h text, unchanged: as text, as a file and as the built-in it
 * rotates the same bytes, and the output computes the original's logits, plain and --online (R4 on
 * the MLP layer's down_proj, the heads rotation on the attention layer's o_proj, Mamba-2 and MoE
 * layers left alone). */
static void published_nemotron_h_config_runs_unchanged(void **state) {
  (void)state;
  char *scratch = scratch_dir("seed-nemotron-h");
  const char *published = source_path("tests/data/modelopt/nemotron_h.yaml");
  char *text = read_text(published);
  char original[4200], as_text[4200], as_path[4200], as_builtin[4200], online[4200];
  snprintf(original, sizeof original, "%s/original", scratch);
  snprintf(as_text, sizeof as_text, "%s/as-text", scratch);
  snprintf(as_path, sizeof as_path, "%s/as-path", scratch);
  snprintf(as_builtin, sizeof as_builtin, "%s/as-builtin", scratch);
  snprintf(online, sizeof online, "%s/online", scratch);
  synth_or_fail(&nemotron_h_moe, original);
  rotate_with(original, as_text, NULL, text, 0);
  rotate_with(original, as_path, published, NULL, 0);
  rotate_with(original, as_builtin, "nemotron_h", NULL, 0);
  assert_same_tensors(as_text, as_path);
  assert_same_tensors(as_text, as_builtin);
  check_equivalent_logits(original, as_text, 1e-9, "published nemotron_h (M, E, *, -)");
  cJSON *rec = record(as_text);
  assert_string_equal(cJSON_GetObjectItem(rec, "config_name")->valuestring, "<config text>");
  assert_false(has_warning(rec, "matches no"));
  cJSON_Delete(rec);

  rotate_with(original, online, NULL, text, 1);
  check_equivalent_logits(original, online, 1e-9, "published nemotron_h --online");
  double without = difference_without_hooks(original, online);
  printf("  --online output without its hooks: relative %.3g\n", without);
  assert_true(without > 1e-4); /* the hooks carry the online rotations */
  rec = record(online);
  char layers[128];
  online_layers(rec, "R4", layers, sizeof layers);
  assert_string_equal(layers, "3"); /* the MLP layer */
  online_layers(rec, "R_heads", layers, sizeof layers);
  assert_string_equal(layers, "2"); /* the attention layer */
  online_layers(rec, "R3", layers, sizeof layers);
  assert_string_equal(layers, "2");
  cJSON_Delete(rec);
  free(text);
  scratch_remove(scratch);
  free(scratch);
}

/* text without its lines that contain fragment (caller frees). */
static char *without_lines(const char *text, const char *fragment) {
  char *out = malloc(strlen(text) + 1), *o = out;
  for (const char *line = text; *line;) {
    const char *end = strchr(line, '\n');
    size_t len = end ? (size_t)(end - line) + 1 : strlen(line);
    char copy[1024];
    snprintf(copy, sizeof copy, "%.*s", (int)len, line);
    if (!strstr(copy, fragment)) memcpy(o, line, len), o += len;
    line += len;
  }
  *o = '\0';
  return out;
}

/* The published text without its MoE lines (the router rule and the MoE fuse entry): exact on a
 * checkpoint without MoE layers (the entries of the other kinds skipped per layer); on one with MoE
 * layers the plan check refuses it, naming a reader the config left out. */
static void published_shape_without_moe_lines(void **state) {
  (void)state;
  char *scratch = scratch_dir("seed-no-moe");
  char *published = read_text(source_path("tests/data/modelopt/nemotron_h.yaml"));
  char *text = without_lines(published, "mixer.gate");
  assert_null(strstr(text, "experts"));
  synth_spec dense = nemotron_h_moe;
  dense.hybrid_override_pattern = "M*-M*-";
  char original[4200], rotated[4200], moe[4200], refused[4200];
  snprintf(original, sizeof original, "%s/dense", scratch);
  snprintf(rotated, sizeof rotated, "%s/dense-rotated", scratch);
  snprintf(moe, sizeof moe, "%s/moe", scratch);
  snprintf(refused, sizeof refused, "%s/moe-refused", scratch);
  synth_or_fail(&dense, original);
  rotate_with(original, rotated, NULL, text, 0);
  check_equivalent_logits(original, rotated, 1e-9, "published shape, no MoE layers");
  synth_or_fail(&nemotron_h_moe, moe);
  rotq_rotate_options o = rotq_rotate_default_options();
  o.model_dir = moe;
  o.output_dir = refused;
  o.config_text = text;
  o.quiet = 1;
  rotq_error err = {{0}};
  assert_int_equal(rotq_rotate(&o, &err), -1);
  printf("  %s\n", err.message);
  assert_non_null(strstr(err.message, "backbone.layers.1.mixer."));
  assert_non_null(strstr(err.message, "reads the residual stream"));
  free(text);
  free(published);
  scratch_remove(scratch);
  free(scratch);
}

/* The built-in config of `builtin` with r2's "per_layer: true" replaced by per_layer (and strict). */
static char *with_per_layer(const char *builtin, const char *per_layer, bool strict) {
  const char *yaml = builtin_config_find(builtin)->yaml, *at = strstr(yaml, "per_layer: true");
  assert_non_null(at);
  size_t size = strlen(yaml) + strlen(per_layer) + 64;
  char *text = malloc(size);
  snprintf(text, size, "%.*sper_layer: \"%s\"%s%s", (int)(at - yaml), yaml, per_layer, at + strlen("per_layer: true"),
           strict ? "\nstrict: true\n" : "");
  return text;
}

/* per_layer: "<glob>|<glob>" on the family's layer names: the layers one alternative names share a
 * matrix, the others have one each; the output stays exact. An alternative naming no layer warns,
 * and is an error under strict. */
static void per_layer_patterns_group_layers(void **state) {
  (void)state;
  char *scratch = scratch_dir("seed-per-layer");
  char original[4200], rotated[4200], refused[4200], groups[256];
  /* OPT: model.decoder.layers.{i} */
  snprintf(original, sizeof original, "%s/opt", scratch);
  snprintf(rotated, sizeof rotated, "%s/opt-grouped", scratch);
  synth_or_fail(&opt, original);
  char *text = with_per_layer("opt", "model.decoder.layers.[01]", false);
  rotate_with(original, rotated, NULL, text, 0);
  free(text);
  check_equivalent_logits(original, rotated, 1e-9, "opt, r2 grouped");
  cJSON *rec = record(rotated);
  matrix_groups(rec, "r2", groups, sizeof groups);
  assert_string_equal(groups, "0,1|2");
  cJSON_Delete(rec);

  /* Nemotron-H: backbone.layers.{i} */
  snprintf(original, sizeof original, "%s/nemotron-h", scratch);
  snprintf(rotated, sizeof rotated, "%s/nemotron-h-grouped", scratch);
  synth_or_fail(&nemotron_h_moe, original);
  text = with_per_layer("nemotron_h", "backbone.layers.[0-2]|backbone.layers.5", false);
  rotate_with(original, rotated, NULL, text, 0);
  free(text);
  check_equivalent_logits(original, rotated, 1e-9, "nemotron-h, r2 grouped");
  rec = record(rotated);
  matrix_groups(rec, "r2", groups, sizeof groups);
  assert_string_equal(groups, "0,1,2|5|3|4");
  cJSON_Delete(rec);

  /* the LLaMA layer names match no Nemotron-H layer: a warning, an error under strict */
  snprintf(rotated, sizeof rotated, "%s/nemotron-h-unmatched", scratch);
  text = with_per_layer("nemotron_h", "model.layers.[0-2]", false);
  rotate_with(original, rotated, NULL, text, 0);
  free(text);
  rec = record(rotated);
  assert_true(has_warning(rec, "'model.layers.[0-2]' matches no decoder layer (backbone.layers.0"));
  cJSON_Delete(rec);
  snprintf(refused, sizeof refused, "%s/nemotron-h-strict", scratch);
  text = with_per_layer("nemotron_h", "model.layers.[0-2]", true);
  rotq_rotate_options o = rotq_rotate_default_options();
  o.model_dir = original;
  o.output_dir = refused;
  o.config_text = text;
  o.quiet = 1;
  rotq_error err = {{0}};
  assert_int_equal(rotq_rotate(&o, &err), -1);
  assert_non_null(strstr(err.message, "rotation_matrices.r2.per_layer: 'model.layers.[0-2]' matches no decoder layer"));
  free(text);
  scratch_remove(scratch);
  free(scratch);
}

/* The C API's defaults are the CLI's (the in-stream check on); config and config_text exclude each
 * other; a name matched by two rules takes the first and says so. */
static void api_defaults_and_rule_order(void **state) {
  (void)state;
  rotq_rotate_options d = rotq_rotate_default_options();
  assert_int_equal(d.verify, ROTQ_VERIFY_AUTO);
  assert_null(d.config);
  assert_null(d.config_text);
  assert_int_equal(d.online, 0);
  char *scratch = scratch_dir("seed-api");
  char original[4200], rotated[4200];
  snprintf(original, sizeof original, "%s/original", scratch);
  snprintf(rotated, sizeof rotated, "%s/rotated", scratch);
  synth_or_fail(&nemotron_h_moe, original);
  d.model_dir = original;
  d.output_dir = rotated;
  d.config = "nemotron_h";
  d.config_text = "rotation_matrices: {r1: {dim: 64}}\n";
  rotq_error err = {{0}};
  assert_int_equal(rotq_rotate(&d, &err), -1);
  assert_non_null(strstr(err.message, "exclusive"));
  /* "*mixer.q_proj" before "*q_proj|*k_proj": q_proj takes the first, with a warning */
  const char *yaml = builtin_config_find("nemotron_h")->yaml, *at = strstr(yaml, "  \"*q_proj|*k_proj\"");
  char *text = malloc(strlen(yaml) + 64);
  sprintf(text, "%.*s  \"*mixer.q_proj\": [r1, null]\n%s", (int)(at - yaml), yaml, at);
  rotate_with(original, rotated, NULL, text, 0);
  free(text);
  cJSON *rec = record(rotated);
  assert_true(
      has_warning(rec, "matches rotation_config '*mixer.q_proj' and '*q_proj|*k_proj': the first rule applies"));
  cJSON_Delete(rec);
  scratch_remove(scratch);
  free(scratch);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(published_nemotron_h_config_runs_unchanged),
      cmocka_unit_test(published_shape_without_moe_lines),
      cmocka_unit_test(per_layer_patterns_group_layers),
      cmocka_unit_test(api_defaults_and_rule_order),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

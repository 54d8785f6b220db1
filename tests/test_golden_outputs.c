/* The same outputs, bit for bit, as the recorded ones: every family's synthetic checkpoint (and a
 * few dtypes and modes) is written and rotated through the public API, and the bytes of every
 * output file but rotation.json (which names the scratch paths) are hashed (FNV-1a 64) and
 * compared with tests/data/golden_outputs.txt. The record was made before the redesign of issue
 * 19, so a refactoring that changes a single output bit fails here. A deliberate change of the
 * output regenerates the record: ROTQ_UPDATE_GOLDEN=1 build/test_golden_outputs (and says why in
 * its commit). The stories260K and synthetic-1B cases are tests/cli_golden.sh. */
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synth/synth.h"
#include "rotq.h"
#include "support/test_support.h"

typedef struct golden_case {
  const char *label;
  synth_spec spec;
  const char *config; /* NULL = the architecture's own */
  int online;
  uint64_t seed;
} golden_case;

static const golden_case cases[] = {
    {"llama-bf16",
     {.architecture = "LlamaForCausalLM",
      .hidden_size = 64,
      .intermediate_size = 172,
      .num_layers = 2,
      .num_heads = 8,
      .num_kv_heads = 4,
      .vocab_size = 96,
      .tie_word_embeddings = true,
      .dtype = DTYPE_BF16,
      .seed = 1},
     NULL,
     0,
     0},
    {"llama-bf16-online",
     {.architecture = "LlamaForCausalLM",
      .hidden_size = 64,
      .intermediate_size = 172,
      .num_layers = 2,
      .num_heads = 8,
      .num_kv_heads = 4,
      .vocab_size = 96,
      .tie_word_embeddings = true,
      .dtype = DTYPE_BF16,
      .seed = 1},
     NULL,
     1,
     5},
    {"llama3-f16-rope-scaling",
     {.architecture = "LlamaForCausalLM",
      .hidden_size = 96,
      .intermediate_size = 192,
      .num_layers = 2,
      .num_heads = 6,
      .num_kv_heads = 2,
      .vocab_size = 80,
      .llama3_rope_scaling = true,
      .attention_bias = true,
      .mlp_bias = true,
      .dtype = DTYPE_F16,
      .seed = 2},
     NULL,
     1,
     0},
    {"qwen2-f32",
     {.architecture = "Qwen2ForCausalLM",
      .hidden_size = 128,
      .intermediate_size = 320,
      .num_layers = 2,
      .num_heads = 8,
      .num_kv_heads = 2,
      .vocab_size = 64,
      .dtype = DTYPE_F32,
      .seed = 4},
     NULL,
     1,
     0},
    {"qwen3-f64",
     {.architecture = "Qwen3ForCausalLM",
      .hidden_size = 64,
      .intermediate_size = 96,
      .num_layers = 2,
      .num_heads = 4,
      .num_kv_heads = 2,
      .head_dim = 32,
      .vocab_size = 64,
      .dtype = DTYPE_F64,
      .seed = 3},
     NULL,
     0,
     0},
    {"mistral-orthogonal",
     {.architecture = "MistralForCausalLM",
      .hidden_size = 64,
      .intermediate_size = 128,
      .num_layers = 2,
      .num_heads = 4,
      .num_kv_heads = 2,
      .vocab_size = 64,
      .dtype = DTYPE_BF16,
      .seed = 6},
     "orthogonal",
     0,
     9},
    {"mixtral",
     {.architecture = "MixtralForCausalLM",
      .hidden_size = 64,
      .intermediate_size = 96,
      .num_layers = 2,
      .num_heads = 4,
      .num_kv_heads = 2,
      .vocab_size = 64,
      .dtype = DTYPE_BF16,
      .seed = 11,
      .rope_theta = 1e6,
      .num_experts = 4,
      .num_experts_per_tok = 2},
     NULL,
     0,
     0},
    {"qwen2-moe",
     {.architecture = "Qwen2MoeForCausalLM",
      .hidden_size = 64,
      .intermediate_size = 80,
      .num_layers = 3,
      .num_heads = 4,
      .num_kv_heads = 2,
      .vocab_size = 72,
      .tie_word_embeddings = true,
      .dtype = DTYPE_BF16,
      .seed = 12,
      .num_experts = 5,
      .num_experts_per_tok = 2,
      .moe_intermediate_size = 48,
      .shared_expert_intermediate_size = 96,
      .decoder_sparse_step = 2},
     NULL,
     0,
     0},
    {"qwen3-moe",
     {.architecture = "Qwen3MoeForCausalLM",
      .hidden_size = 64,
      .intermediate_size = 96,
      .num_layers = 2,
      .num_heads = 4,
      .num_kv_heads = 2,
      .head_dim = 32,
      .vocab_size = 64,
      .dtype = DTYPE_F32,
      .seed = 13,
      .num_experts = 6,
      .num_experts_per_tok = 2,
      .moe_intermediate_size = 32},
     NULL,
     0,
     0},
    {"phi3",
     {.architecture = "Phi3ForCausalLM",
      .hidden_size = 96,
      .intermediate_size = 160,
      .num_layers = 2,
      .num_heads = 6,
      .num_kv_heads = 2,
      .vocab_size = 80,
      .dtype = DTYPE_BF16,
      .seed = 21},
     NULL,
     0,
     0},
    {"gemma",
     {.architecture = "GemmaForCausalLM",
      .hidden_size = 64,
      .intermediate_size = 128,
      .num_layers = 2,
      .num_heads = 4,
      .num_kv_heads = 1,
      .head_dim = 32,
      .vocab_size = 80,
      .tie_word_embeddings = true,
      .dtype = DTYPE_BF16,
      .seed = 31},
     NULL,
     0,
     0},
    {"gemma2",
     {.architecture = "Gemma2ForCausalLM",
      .hidden_size = 64,
      .intermediate_size = 128,
      .num_layers = 3,
      .num_heads = 4,
      .num_kv_heads = 2,
      .head_dim = 32,
      .vocab_size = 80,
      .tie_word_embeddings = true,
      .dtype = DTYPE_F32,
      .seed = 32,
      .sliding_window = 8,
      .query_pre_attn_scalar = 24},
     NULL,
     0,
     0},
    {"gemma3",
     {.architecture = "Gemma3ForCausalLM",
      .hidden_size = 64,
      .intermediate_size = 96,
      .num_layers = 3,
      .num_heads = 4,
      .num_kv_heads = 2,
      .head_dim = 16,
      .vocab_size = 72,
      .tie_word_embeddings = true,
      .dtype = DTYPE_BF16,
      .seed = 33,
      .sliding_window = 8,
      .sliding_window_pattern = 2},
     NULL,
     0,
     0},
    {"opt",
     {.architecture = "OPTForCausalLM",
      .hidden_size = 96,
      .intermediate_size = 192,
      .num_layers = 3,
      .num_heads = 6,
      .num_kv_heads = 6,
      .vocab_size = 64,
      .dtype = DTYPE_F16,
      .seed = 42},
     NULL,
     0,
     0},
    {"nemotron-h-moe",
     {.architecture = "NemotronHForCausalLM",
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
      .dtype = DTYPE_BF16,
      .seed = 52,
      .hybrid_override_pattern = "ME*-EM",
      .mamba_num_heads = 8,
      .mamba_head_dim = 8,
      .ssm_state_size = 16,
      .n_groups = 2,
      .conv_kernel = 4},
     NULL,
     0,
     0},
    {"nemotron-h-online",
     {.architecture = "NemotronHForCausalLM",
      .hidden_size = 64,
      .intermediate_size = 128,
      .num_layers = 5,
      .num_heads = 4,
      .num_kv_heads = 2,
      .head_dim = 16,
      .vocab_size = 72,
      .dtype = DTYPE_F32,
      .seed = 51,
      .hybrid_override_pattern = "M-M*M",
      .mamba_num_heads = 8,
      .mamba_head_dim = 8,
      .ssm_state_size = 16,
      .n_groups = 2,
      .conv_kernel = 4},
     NULL,
     1,
     0},
};
#define N_CASES (sizeof cases / sizeof cases[0])

static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* FNV-1a 64 over (name, bytes) of every file in dir but rotation.json, in name order. */
static uint64_t hash_dir(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  char *names[64];
  size_t n = 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.' || strcmp(e->d_name, "rotation.json") == 0) continue;
    assert_true(n < 64);
    names[n++] = strdup(e->d_name);
  }
  closedir(d);
  qsort(names, n, sizeof names[0], by_name);
  uint64_t h = 0xcbf29ce484222325ull;
  static unsigned char buffer[1 << 16];
  for (size_t i = 0; i < n; i++) {
    h = fnv1a(h, (const unsigned char *)names[i], strlen(names[i]) + 1);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    for (size_t got; (got = fread(buffer, 1, sizeof buffer, f)) > 0;) h = fnv1a(h, buffer, got);
    fclose(f);
    free(names[i]);
  }
  return h;
}

static const char *mode_config(const char *scratch, const char *mode) {
  static char path[4096];
  snprintf(path, sizeof path, "%s/%s.yaml", scratch, mode);
  assert_int_equal(
      run_command("\"$ROTQ_BIN\" config show transformer_universal | sed 's/mode: hadamard /mode: %s /' > '%s'", mode,
                  path),
      0);
  return path;
}

static void outputs_match_the_record(void **state) {
  const char *record = source_path("tests/data/golden_outputs.txt");
  int update = getenv("ROTQ_UPDATE_GOLDEN") && strcmp(getenv("ROTQ_UPDATE_GOLDEN"), "1") == 0;
  char *scratch = scratch_dir("golden");
  /* every case with 2 threads (the record), then with 1 and 6: the bytes must not depend on how
   * the pieces are shared between threads or on which thread writes them */
  static const int thread_counts[] = {2, 1, 6};
  enum { RUNS = sizeof thread_counts / sizeof thread_counts[0] };
  uint64_t input_hash[N_CASES], output_hash[N_CASES], other_hash[N_CASES][RUNS];
  for (size_t i = 0; i < N_CASES; i++) {
    const golden_case *c = &cases[i];
    char in[4096], out[4096];
    snprintf(in, sizeof in, "%s/%s-in", scratch, c->label);
    rotq_error err = {{0}};
    if (synth_write(&c->spec, in, &err) != 0) fail_msg("%s: synth: %s", c->label, err.message);
    for (int r = 0; r < (update ? 1 : RUNS); r++) {
      snprintf(out, sizeof out, "%s/%s-out-%d", scratch, c->label, thread_counts[r]);
      rotq_rotate_options o = rotq_rotate_default_options();
      o.model_dir = in;
      o.output_dir = out;
      o.seed = c->seed;
      o.online = c->online;
      o.quiet = 1;
      o.threads = thread_counts[r];
      if (c->config) o.config = mode_config(scratch, c->config);
      if (rotq_rotate(&o, &err) != 0) fail_msg("%s: rotate (%d threads): %s", c->label, o.threads, err.message);
      other_hash[i][r] = hash_dir(out);
    }
    input_hash[i] = hash_dir(in);
    output_hash[i] = other_hash[i][0];
  }
  scratch_remove(scratch);
  free(scratch);

  if (update) {
    FILE *f = fopen(record, "w");
    assert_non_null(f);
    fprintf(f, "# tests/test_golden_outputs.c: case, FNV-1a 64 of the synthetic input, of the rotated output\n");
    for (size_t i = 0; i < N_CASES; i++)
      fprintf(f, "%s %016" PRIx64 " %016" PRIx64 "\n", cases[i].label, input_hash[i], output_hash[i]);
    assert_int_equal(fclose(f), 0);
    return;
  }
  FILE *f = fopen(record, "r");
  if (!f) fail_msg("%s is missing (ROTQ_UPDATE_GOLDEN=1 writes it)", record);
  char line[512];
  size_t seen = 0;
  int failed = 0;
  while (fgets(line, sizeof line, f)) {
    if (line[0] == '#') continue;
    char label[128];
    uint64_t want_in, want_out;
    if (sscanf(line, "%127s %" SCNx64 " %" SCNx64, label, &want_in, &want_out) != 3) continue;
    for (size_t i = 0; i < N_CASES; i++) {
      if (strcmp(cases[i].label, label) != 0) continue;
      seen++;
      if (input_hash[i] != want_in) {
        print_error("%s: the synthetic input changed: %016" PRIx64 " (record %016" PRIx64 ")\n", label, input_hash[i],
                    want_in);
        failed = 1;
      }
      if (output_hash[i] != want_out) {
        print_error("%s: the rotated output changed: %016" PRIx64 " (record %016" PRIx64 ")\n", label, output_hash[i],
                    want_out);
        failed = 1;
      }
      for (int r = 1; r < RUNS; r++)
        if (other_hash[i][r] != want_out) {
          print_error("%s: the rotated output with %d threads differs from the record: %016" PRIx64 "\n", label,
                      thread_counts[r], other_hash[i][r]);
          failed = 1;
        }
    }
  }
  fclose(f);
  if (seen != N_CASES) fail_msg("the record has %zu of the %zu cases", seen, N_CASES);
  if (failed) fail_msg("outputs differ from the record");
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(outputs_match_the_record)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}

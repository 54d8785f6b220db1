/* rotq rotate streams: its peak memory (max RSS of the `rotq rotate` process) does not grow with
 * the number of layers, and its output does not depend on the number of threads. The models are
 * wide enough (one layer is about 29 MB in bf16) that holding the model, or the touched input
 * pages, would show plainly: 8 layers instead of 2 add 176 MB, and the peak may grow by a tenth of
 * that at most (what the pieces in flight at the worst moment add; it is typically 2 to 8 MB). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "synth/synth.h"
#include "support/test_support.h"

/* hidden 1024, intermediate 4096: q/o 2 MB, k/v 0.5 MB, gate/up/down 8 MB each in bf16. */
static synth_spec wide_model(int layers) {
  return (synth_spec){.architecture = "LlamaForCausalLM",
                      .hidden_size = 1024,
                      .intermediate_size = 4096,
                      .num_layers = layers,
                      .num_heads = 16,
                      .num_kv_heads = 4,
                      .vocab_size = 4096,
                      .dtype = DTYPE_BF16,
                      .seed = 3};
}

static void write_model(const char *dir, int layers) {
  synth_spec spec = wide_model(layers);
  rotq_error err = {{0}};
  if (synth_write(&spec, dir, &err) < 0) fail_msg("%s", err.message);
}

/* Runs $ROTQ_BIN rotate on model into output with threads threads (and config, if not NULL);
 * returns the child's peak RSS in KB. */
static long rotate_child(const char *model, const char *output, int threads, const char *config) {
  const char *bin = getenv("ROTQ_BIN");
  if (!bin) fail_msg("ROTQ_BIN is not set");
  char thread_count[16];
  snprintf(thread_count, sizeof thread_count, "%d", threads);
  const char *argv[16] = {bin,    "rotate",    "--model",    model,         "--output",
                          output, "--threads", thread_count, "--no-verify", "--quiet"};
  int argc = 10;
  if (config) argv[argc++] = "--config", argv[argc++] = config;
  pid_t pid = fork();
  if (pid == 0) {
    /* under AddressSanitizer, freed memory waits in its quarantine: not memory rotq holds */
    const char *asan = getenv("ASAN_OPTIONS");
    char options[2048];
    snprintf(options, sizeof options, "%s%squarantine_size_mb=0", asan ? asan : "", asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", options, 1);
    execv(bin, (char *const *)argv);
    _exit(127);
  }
  int status = 0;
  struct rusage usage;
  if (pid < 0 || wait4(pid, &status, 0, &usage) != pid) fail_msg("cannot run %s", bin);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail_msg("%s rotate %s failed (status %d)", bin, model, status);
  return usage.ru_maxrss;
}

/* The bytes of a file (caller frees); *size its length. */
static unsigned char *file_bytes(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) fail_msg("cannot open %s", path);
  struct stat st;
  fstat(fileno(f), &st);
  unsigned char *data = malloc((size_t)st.st_size + 1);
  *size = fread(data, 1, (size_t)st.st_size, f);
  fclose(f);
  return data;
}

static void assert_same_file(const char *a, const char *b) {
  size_t na, nb;
  unsigned char *x = file_bytes(a, &na), *y = file_bytes(b, &nb);
  if (na != nb || memcmp(x, y, na) != 0) fail_msg("%s and %s differ", a, b);
  free(x), free(y);
}

/* Each test works in a scratch directory, removed even when the test fails. */
static int make_scratch(void **state) {
  *state = scratch_dir("rotate-memory");
  return 0;
}

static int remove_scratch(void **state) {
  scratch_remove(*state);
  free(*state);
  return 0;
}

static void peak_memory_does_not_grow_with_layers(void **state) {
  const char *scratch = *state;
  char small[4200], large[4200], out_small[4200], out_large[4200];
  snprintf(small, sizeof small, "%s/layers2", scratch);
  snprintf(large, sizeof large, "%s/layers8", scratch);
  snprintf(out_small, sizeof out_small, "%s/rotated2", scratch);
  snprintf(out_large, sizeof out_large, "%s/rotated8", scratch);
  write_model(small, 2);
  write_model(large, 8);
  long rss_small = rotate_child(small, out_small, 2, NULL), rss_large = rotate_child(large, out_large, 2, NULL);
  const long layer_kb = 29 * 1024, margin_kb = 6 * layer_kb / 10;
  printf("  peak RSS of rotq rotate: 2 layers %ld KB, 8 layers %ld KB (6 more layers: %ld KB)\n", rss_small, rss_large,
         6 * layer_kb);
  if (rss_large > rss_small + margin_kb)
    fail_msg("peak RSS grows with the model: %ld KB for 8 layers, %ld KB for 2 (allowed: + %ld KB)", rss_large,
             rss_small, margin_kb);
}

static void output_does_not_depend_on_threads(void **state) {
  const char *scratch = *state;
  char model[4200], config[4200];
  snprintf(model, sizeof model, "%s/model", scratch);
  write_model(model, 2);
  /* the default config (Hadamard: structured kernels) and a dense one (orthogonal: GEMM) */
  snprintf(config, sizeof config, "%s/orthogonal.yaml", scratch);
  if (run_command("sed 's/mode: hadamard/mode: orthogonal/' '%s' > '%s'",
                  source_path("config/builtin/transformer_universal.yaml"), config) != 0)
    fail_msg("cannot write %s", config);
  for (int c = 0; c < 2; c++) {
    char out[3][4200];
    const int threads[3] = {1, 2, 3};
    for (int t = 0; t < 3; t++) {
      snprintf(out[t], sizeof out[t], "%s/out-%d-%d", scratch, c, threads[t]);
      rotate_child(model, out[t], threads[t], c ? config : NULL);
    }
    char a[4300], b[4300];
    for (int t = 1; t < 3; t++) {
      snprintf(a, sizeof a, "%s/model.safetensors", out[0]);
      snprintf(b, sizeof b, "%s/model.safetensors", out[t]);
      assert_same_file(a, b);
    }
    printf("  %s: --threads 1, 2 and 3 write the same bytes\n", c ? "orthogonal" : "hadamard");
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(peak_memory_does_not_grow_with_layers, make_scratch, remove_scratch),
      cmocka_unit_test_setup_teardown(output_does_not_depend_on_threads, make_scratch, remove_scratch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

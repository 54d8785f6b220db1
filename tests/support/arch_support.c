#include "support/arch_support.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/builtin_configs.h"
#include "io/checkpoint.h"
#include "support/test_support.h"

const char *const arch_modes[3] = {"hadamard", "base_hadamard", "orthogonal"};

void write_builtin_with_mode(const char *path, const char *builtin, const char *mode) {
  const builtin_config *b = builtin_config_find(builtin);
  if (!b) fail_msg("no built-in config '%s'", builtin);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  const char *key = "mode: hadamard";
  for (const char *p = b->yaml; *p;) {
    const char *hit = strstr(p, key);
    if (!hit) {
      fputs(p, f);
      break;
    }
    fwrite(p, 1, (size_t)(hit - p), f);
    fprintf(f, "mode: %s", mode);
    p = hit + strlen(key);
  }
  fclose(f);
}

void synth_or_fail(const synth_spec *spec, const char *dir) {
  rotq_error err = {{0}};
  if (synth_write(spec, dir, &err) < 0) fail_msg("synth %s: %s", spec->architecture, err.message);
}

void check_family_equivalent(const synth_spec *spec, const char *label, const char *builtin) {
  char *scratch = scratch_dir("arch");
  char original[4200];
  snprintf(original, sizeof original, "%s/%s", scratch, label);
  synth_or_fail(spec, original);
  rotate_all_modes_and_check(scratch, original, label, builtin, 1e-9);
  scratch_remove(scratch);
  free(scratch);
}

void rotate_all_modes_and_check(const char *scratch, const char *original, const char *label, const char *builtin,
                                double tolerance) {
  for (int m = 0; m < 3; m++) {
    char config[4200], out[4200], what[256];
    snprintf(config, sizeof config, "%s/%s-%s.yaml", scratch, builtin, arch_modes[m]);
    snprintf(out, sizeof out, "%s/%s-%s", scratch, label, arch_modes[m]);
    snprintf(what, sizeof what, "%s %s", label, arch_modes[m]);
    write_builtin_with_mode(config, builtin, arch_modes[m]);
    rotate_or_fail(original, out, config, 7);
    check_equivalent_logits(original, out, tolerance, what);
  }
}

void edit_tensor(const char *dir, const char *name, double scale, double shift) {
  rotq_error err = {{0}};
  checkpoint ck;
  if (checkpoint_open(dir, &ck, &err) < 0) fail_msg("%s", err.message);
  const st_tensor *t = checkpoint_find(&ck, name);
  if (!t) fail_msg("%s: no tensor '%s'", dir, name);
  size_t n = st_numel(t);
  double *values = malloc(n * sizeof *values);
  void *bytes = malloc(t->nbytes);
  dtype_to_f64(t->dtype, t->data, values, n);
  for (size_t i = 0; i < n; i++) values[i] = scale * values[i] + shift;
  dtype_from_f64(t->dtype, values, bytes, n);
  for (size_t i = 0; i < ck.shard_count; i++) {
    const st_file *f = &ck.shards[i];
    const char *base = f->map;
    if ((const char *)t->data < base || (const char *)t->data >= base + f->size) continue;
    int fd = open(f->path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, bytes, t->nbytes, (const char *)t->data - base), (ssize_t)t->nbytes);
    close(fd);
  }
  free(values);
  free(bytes);
  checkpoint_close(&ck);
}

void copy_checkpoint(const char *from, const char *to) {
  if (run_command("cp -r '%s' '%s'", from, to) != 0) fail_msg("cannot copy %s to %s", from, to);
}

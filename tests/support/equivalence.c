#include "support/equivalence.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "model/model.h"
#include "support/test_support.h"

logit_diff compare_checkpoints(const char *dir_a, const char *dir_b, int n) {
  rotq_error err = {{0}};
  model *a = NULL, *b = NULL;
  if (model_load(dir_a, NULL, &a, &err) < 0) fail_msg("%s", err.message);
  if (model_load(dir_b, NULL, &b, &err) < 0) fail_msg("%s", err.message);
  int vocab = model_get_config(a)->vocab_size;
  int32_t *tokens = malloc(sizeof(int32_t) * (size_t)n);
  for (int i = 0; i < n; i++) tokens[i] = i == 0 ? 1 : (int32_t)((i * 7919L + 13) % vocab);
  double *la = malloc(sizeof(double) * (size_t)n * vocab), *lb = malloc(sizeof(double) * (size_t)n * vocab);
  if (model_forward(a, tokens, n, la, &err) < 0) fail_msg("%s", err.message);
  if (model_forward(b, tokens, n, lb, &err) < 0) fail_msg("%s", err.message);
  logit_diff d;
  logit_diff_compute(la, lb, n, vocab, &d);
  free(tokens), free(la), free(lb);
  model_free(a), model_free(b);
  return d;
}

void check_equivalent_logits(const char *original, const char *rotated, double tolerance, const char *what) {
  logit_diff d = compare_checkpoints(original, rotated, 24);
  printf("  %-44s max|Δ| %.3g  relative %.3g  argmax %d/%d\n", what, d.max_abs_diff, d.relative, d.argmax_agree,
         d.rows);
  if (!(d.relative < tolerance) || d.argmax_agree != d.rows)
    fail_msg("%s: relative logit difference %.3g (tolerance %.0e), argmax agreement %d/%d", what, d.relative, tolerance,
             d.argmax_agree, d.rows);
}

void write_config_with_mode(const char *path, const char *mode, bool online) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fprintf(f,
          "rotation_matrices:\n"
          "  r1: {dim: hidden_size, mode: %s, per_layer: false}\n"
          "  r2: {dim: head_dim, mode: %s, per_layer: true}\n"
          "rotation_config:\n"
          "  \"*embed_tokens\": [r1, null]\n"
          "  \"*lm_head\": [r1, null]\n"
          "  \"*q_proj|*k_proj\": [r1, null]\n"
          "  \"*v_proj\": [r1, r2]\n"
          "  \"*o_proj\": [r2, r1]\n"
          "  \"*up_proj|*gate_proj\": [r1, null]\n"
          "  \"*down_proj\": [null, r1]\n"
          "norm_fuse_config:\n"
          "  decoder_layer_fuse:\n"
          "    - [input_layernorm, [self_attn.q_proj, self_attn.k_proj, self_attn.v_proj]]\n"
          "    - [post_attention_layernorm, [mlp.up_proj, mlp.gate_proj]]\n"
          "  lm_head_fuse:\n"
          "    - [model.norm, lm_head]\n"
          "use_float64: true\n"
          "online: %s\n"
          "strict: true\n",
          mode, mode, online ? "true" : "false");
  fclose(f);
}

void rotate_or_fail(const char *in, const char *out, const char *config, unsigned long seed) {
  rotq_rotate_options o = {
      .model_dir = in, .output_dir = out, .config = config, .seed = seed, .verify = ROTQ_VERIFY_IN_STREAM};
  rotq_error err = {{0}};
  if (rotq_rotate(&o, &err) < 0) fail_msg("rotate %s: %s", in, err.message);
}

void replace_tensor_bytes(const char *dir, const char *dir_from, const char *name) {
  rotq_error err = {{0}};
  checkpoint to, from;
  if (checkpoint_open(dir, &to, &err) < 0 || checkpoint_open(dir_from, &from, &err) < 0) fail_msg("%s", err.message);
  const st_tensor *t = checkpoint_find(&to, name), *s = checkpoint_find(&from, name);
  assert_non_null(t);
  assert_non_null(s);
  assert_int_equal(t->nbytes, s->nbytes);
  /* find the shard holding t and its offset in that file */
  for (size_t i = 0; i < to.shard_count; i++) {
    const st_file *f = &to.shards[i];
    const char *base = f->map;
    if ((const char *)t->data < base || (const char *)t->data >= base + f->size) continue;
    int fd = open(f->path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, s->data, s->nbytes, (const char *)t->data - base), (ssize_t)s->nbytes);
    close(fd);
  }
  checkpoint_close(&to);
  checkpoint_close(&from);
}

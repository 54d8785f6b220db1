/* Decoding sessions: the KV cache, the checks before each forward pass, and model_forward as a
 * one-block session. */
#include <stdlib.h>

#include "linalg/rotation.h"
#include "model/transformer.h"

model_session *model_session_new(model *m, int max_tokens, rotq_error *err) {
  if (max_tokens < 1) {
    rotq_fail(err, "a session needs room for at least one token (asked for %d)", max_tokens);
    return NULL;
  }
  const model_config *c = &m->config;
  size_t cache_elements =
      (size_t)c->num_hidden_layers * (size_t)max_tokens * (size_t)c->num_key_value_heads * (size_t)c->head_dim;
  size_t element_size = m->f32 ? sizeof(float) : sizeof(double);
  model_session *s = calloc(1, sizeof *s);
  if (s) {
    s->model = m;
    s->max_tokens = max_tokens;
    s->key_cache = malloc(cache_elements * element_size);
    s->value_cache = malloc(cache_elements * element_size);
  }
  if (!s || !s->key_cache || !s->value_cache) {
    model_session_free(s);
    rotq_fail(err, "out of memory for a KV cache of %d tokens", max_tokens);
    return NULL;
  }
  return s;
}

int model_session_forward(model_session *s, const int32_t *tokens, int n, double *logits, rotq_error *err) {
  if (n < 1) return rotq_fail(err, "no tokens to run");
  if (n > s->max_tokens - s->length)
    return rotq_fail(err, "%d more tokens overflow the session's cache (%d of %d positions used)", n, s->length,
                     s->max_tokens);
  const int vocab = s->model->config.vocab_size;
  for (int i = 0; i < n; i++)
    if (tokens[i] < 0 || tokens[i] >= vocab)
      return rotq_fail(err, "token id %d at position %d is outside the vocabulary [0, %d)", (int)tokens[i],
                       s->length + i, vocab);
  /* the online rotations' scratch memory: a failed allocation fails the pass, not the process */
  rotation_scratch_recover(true);
  int status = s->model->f32 ? forward_f32(s, tokens, n, logits, err) : forward_f64(s, tokens, n, logits, err);
  if (rotation_scratch_failed() && status == 0) status = rotq_fail(err, "out of memory (online rotation scratch)");
  rotation_scratch_recover(false);
  if (status == 0) s->length += n;
  return status;
}

int model_session_layer(model_session *s, int layer, void *x, int n, rotq_error *err) {
  const model *m = s->model;
  if (n < 1) return rotq_fail(err, "no tokens to run");
  if (n > s->max_tokens - s->length)
    return rotq_fail(err, "%d more tokens overflow the session's cache (%d of %d positions used)", n, s->length,
                     s->max_tokens);
  if (layer < 0 || layer >= m->config.num_hidden_layers || !m->layers[layer].attn_norm)
    return rotq_fail(err, "decoder layer %d is not loaded", layer);
  rotation_scratch_recover(true);
  int status = m->f32 ? forward_layer_f32(s, layer, x, n, err) : forward_layer_f64(s, layer, x, n, err);
  if (rotation_scratch_failed() && status == 0) status = rotq_fail(err, "out of memory (online rotation scratch)");
  rotation_scratch_recover(false);
  return status;
}

int model_session_step(model_session *s, int32_t token, double *logits, rotq_error *err) {
  return model_session_forward(s, &token, 1, logits, err);
}

int model_session_length(const model_session *s) { return s->length; }

void model_session_free(model_session *s) {
  if (!s) return;
  free(s->key_cache);
  free(s->value_cache);
  free(s);
}

int model_forward(model *m, const int32_t *tokens, int n, double *logits, rotq_error *err) {
  model_session *s = model_session_new(m, n, err);
  if (!s) return -1;
  int status = model_session_forward(s, tokens, n, logits, err);
  model_session_free(s);
  return status;
}

/* DeepSeek-V3's multi-head latent attention (see model/mla.h), included by forward.h after its
 * helpers and compiled with it for each scalar type `real`. Fresh sequences only (the latent cache
 * is not kept): the caller refuses a session past its first block. */

/* RoPE of the rope dims v [rope] at angles cos/sin [rope/2]: rotate_half, or the interleaved pairs
 * written de-interleaved (apply_rotary_pos_emb_interleave); scratch [rope]. */
static void TYPED(mla_rope)(real *v, int rope, bool interleave, const double *c, const double *s, double *scratch) {
  const int half = rope / 2;
  for (int i = 0; i < half; i++) {
    double x1 = interleave ? v[2 * i] : v[i], x2 = interleave ? v[2 * i + 1] : v[i + half];
    scratch[i] = x1 * c[i] - x2 * s[i];
    scratch[i + half] = x2 * c[i] + x1 * s[i];
  }
  for (int i = 0; i < rope; i++) v[i] = (real)scratch[i];
}

/* attn [n, heads·v_dim] = the latent attention of xb [n, hidden] (normalized stream) for positions
 * 0..n−1; cos/sin [n, rope/2]. -1 when out of memory. */
static int TYPED(mla_attention)(real *attn, const real *xb, const mla_weights *w, int n, const model *m,
                                const double *cos_table, const double *sin_table) {
  const model_config *c = &m->config;
  const int hidden = c->hidden_size, heads = c->num_attention_heads, rope = w->rope, nope = w->nope;
  const int qk = nope + rope, kv_lora = w->kv_lora, v_dim = w->v_dim, kvb = nope + v_dim, half = rope / 2;
  const double scale = 1 / sqrt((double)qk), eps = 1e-6;              /* DeepseekV3RMSNorm's default eps */
  real *q = malloc(sizeof(real) * n * heads * qk);                    /* queries [n, heads, qk] */
  real *q_a = malloc(sizeof(real) * n * (w->q_lora ? w->q_lora : 1)); /* q latent [n, q_lora] */
  real *kv_a = malloc(sizeof(real) * n * (kv_lora + rope));           /* [n, kv_lora | rope] */
  real *latent = malloc(sizeof(real) * n * kv_lora);                  /* normalized kv latent [n, kv_lora] */
  real *kv = malloc(sizeof(real) * n * heads * kvb);                  /* [n, heads, k_nope | v] */
  double *scores = malloc(sizeof(double) * n), *scratch = malloc(sizeof(double) * (rope + 1));
  int status = !q || !q_a || !kv_a || !latent || !kv || !scores || !scratch ? -1 : 0;
  if (status == 0) {
    if (w->q_lora) {
      TYPED(linear)(q_a, xb, w->wq_a, w->bq_a, n, hidden, w->q_lora);
      TYPED(rmsnorm)(q_a, q_a, w->q_a_norm, n, w->q_lora, eps);
      TYPED(linear)(q, q_a, w->wq_b, NULL, n, w->q_lora, heads * qk);
    } else {
      TYPED(linear)(q, xb, w->wq, NULL, n, hidden, heads * qk);
    }
    TYPED(linear)(kv_a, xb, w->wkv_a, w->bkv_a, n, hidden, kv_lora + rope);
    for (int t = 0; t < n; t++) {
      real *row = kv_a + (size_t)t * (kv_lora + rope);
      TYPED(rmsnorm)(latent + (size_t)t * kv_lora, row, w->kv_a_norm, 1, kv_lora, eps);
      const double *ct = cos_table + (size_t)t * half, *st = sin_table + (size_t)t * half;
      TYPED(mla_rope)(row + kv_lora, rope, m->rope_interleave, ct, st, scratch); /* the shared k_rot */
      for (int h = 0; h < heads; h++)
        TYPED(mla_rope)(q + ((size_t)t * heads + h) * qk + nope, rope, m->rope_interleave, ct, st, scratch);
    }
    TYPED(linear)(kv, latent, w->wkv_b, NULL, n, kv_lora, heads * kvb);
    for (int h = 0; h < heads; h++)
      for (int t = 0; t < n; t++) {
        const real *qt = q + ((size_t)t * heads + h) * qk;
        double max = -INFINITY, sum = 0;
        for (int j = 0; j <= t; j++) { /* causal: key j ≤ t */
          const real *k_nope = kv + ((size_t)j * heads + h) * kvb,
                     *k_rot = kv_a + (size_t)j * (kv_lora + rope) + kv_lora;
          double dot = 0;
          for (int i = 0; i < nope; i++) dot += (double)qt[i] * k_nope[i];
          for (int i = 0; i < rope; i++) dot += (double)qt[nope + i] * k_rot[i];
          scores[j] = dot * scale;
          max = scores[j] > max ? scores[j] : max;
        }
        for (int j = 0; j <= t; j++) sum += scores[j] = exp(scores[j] - max);
        real *out = attn + ((size_t)t * heads + h) * v_dim;
        for (int i = 0; i < v_dim; i++) {
          double acc = 0;
          for (int j = 0; j <= t; j++) acc += scores[j] / sum * kv[((size_t)j * heads + h) * kvb + nope + i];
          out[i] = (real)acc;
        }
      }
  }
  free(q);
  free(q_a);
  free(kv_a);
  free(latent);
  free(kv);
  free(scores);
  free(scratch);
  return status;
}

/* The Qwen3-Next steps of the forward pass (see model/qwen3_next.h), included by forward.h after its
 * helpers and compiled with it for each scalar type `real`. The delta rule runs in double. */

static double TYPED(q3n_softplus)(double x) { return x > 20 ? x : log1p(exp(x)); } /* torch's threshold 20 */

static double TYPED(q3n_sigmoid)(double x) { return 1 / (1 + exp(-x)); }

/* x [rows, dim] ← x·rsqrt(Σx² + 1e-6)·scale, row by row (transformers' l2norm, then q's dk^-½). */
static void TYPED(q3n_l2norm)(double *x, int dim, double scale) {
  double sum = 0;
  for (int i = 0; i < dim; i++) sum += x[i] * x[i];
  double factor = scale / sqrt(sum + 1e-6);
  for (int i = 0; i < dim; i++) x[i] *= factor;
}

/* attn [n, q_dim] ← attn · sigmoid(h·w_gateᵀ + b_gate): full attention's output gate (h the
 * normalized stream [n, hidden]). -1 when out of memory. */
static int TYPED(output_gate)(real *attn, const real *h, const layer_weights *w, int n, int hidden, int q_dim) {
  real *gate = malloc(sizeof(real) * (size_t)n * q_dim);
  if (!gate) return -1;
  TYPED(linear)(gate, h, w->wq_gate, w->bq_gate, n, hidden, q_dim);
  for (size_t i = 0; i < (size_t)n * q_dim; i++) attn[i] = (real)(attn[i] * TYPED(q3n_sigmoid)(gate[i]));
  free(gate);
  return 0;
}

/* The gated delta rule of one value head over n tokens, in transformers' chunked form
 * (torch_chunk_gated_delta_rule) with chunks of `chunk` tokens (chunk 1 is the token recurrence of
 * torch_recurrent_gated_delta_rule, in another order of operations). q, k [n, dk] (normalized, q
 * scaled), v [n, dv] at strides qk_stride / v_stride; beta, g [n] at bg_stride; o [n, dv] at
 * o_stride. work holds delta_rule_work(chunk, dk, dv) doubles. Per chunk of C tokens, with
 * cum = the cumulative sum of g in the chunk and Γ[i][j] = exp(cum_i − cum_j) for j ≤ i (0 above):
 *   L = I + strictly_lower((β·k)·kᵀ ⊙ Γ);  U = L⁻¹·(β·v);  W = L⁻¹·(β·k·exp(cum));
 *   V' = U − W·S;  o = (q·exp(cum))·S + ((q·kᵀ) ⊙ Γ)·V';  S ← exp(cum_last)·S + (k·exp(cum_last − cum))ᵀ·V'. */
static size_t TYPED(delta_rule_work)(int chunk, int dk, int dv) {
  return (size_t)dk * dv + 3 * (size_t)chunk * chunk + 3 * (size_t)chunk * (dk + dv) + (size_t)chunk;
}

static void TYPED(delta_rule)(const double *q, const double *k, size_t qk_stride, const double *v, size_t v_stride,
                              const double *beta, const double *g, size_t bg_stride, int n, int dk, int dv, int chunk,
                              double *work, double *o, size_t o_stride) {
  double *s = work;                              /* state [dk, dv] */
  double *decay = s + (size_t)dk * dv;           /* Γ [C, C] */
  double *lower = decay + (size_t)chunk * chunk; /* L's strictly lower part [C, C] */
  double *intra = lower + (size_t)chunk * chunk; /* (q·kᵀ) ⊙ Γ [C, C] */
  double *u = intra + (size_t)chunk * chunk;     /* U, then V' [C, dv] */
  double *w = u + (size_t)chunk * dv;            /* W [C, dk] */
  double *qd = w + (size_t)chunk * dk;           /* q·exp(cum) [C, dk] */
  double *kd = qd + (size_t)chunk * dk;          /* k·exp(cum_last − cum) [C, dk] */
  double *ob = kd + (size_t)chunk * dk;          /* the chunk's output [C, dv] */
  double *cum = ob + (size_t)chunk * dv;         /* [C] */
  memset(s, 0, sizeof(double) * (size_t)dk * dv);
  for (int c0 = 0; c0 < n; c0 += chunk) {
    const int len = n - c0 < chunk ? n - c0 : chunk;
    const double *qc = q + c0 * qk_stride, *kc = k + c0 * qk_stride, *vc = v + c0 * v_stride;
    double acc = 0;
    for (int i = 0; i < len; i++) cum[i] = acc += g[(size_t)(c0 + i) * bg_stride];
    for (int i = 0; i < len; i++)
      for (int j = 0; j < len; j++) {
        double kk = 0, qk = 0;
        for (int d = 0; d < dk; d++) {
          kk += kc[i * qk_stride + d] * kc[j * qk_stride + d];
          qk += qc[i * qk_stride + d] * kc[j * qk_stride + d];
        }
        const double b = beta[(size_t)(c0 + i) * bg_stride];
        decay[i * chunk + j] = j <= i ? exp(cum[i] - cum[j]) : 0;
        lower[i * chunk + j] = j < i ? b * kk * decay[i * chunk + j] : 0;
        intra[i * chunk + j] = qk * decay[i * chunk + j];
      }
    /* forward substitution with the unit lower-triangular L: U = L⁻¹·(β·v), W = L⁻¹·(β·k·exp(cum)) */
    for (int i = 0; i < len; i++) {
      const double b = beta[(size_t)(c0 + i) * bg_stride], e = exp(cum[i]);
      for (int d = 0; d < dv; d++) {
        double x = b * vc[i * v_stride + d];
        for (int j = 0; j < i; j++) x -= lower[i * chunk + j] * u[j * dv + d];
        u[i * dv + d] = x;
      }
      for (int d = 0; d < dk; d++) {
        double x = b * kc[i * qk_stride + d] * e;
        for (int j = 0; j < i; j++) x -= lower[i * chunk + j] * w[j * dk + d];
        w[i * dk + d] = x;
      }
      for (int d = 0; d < dk; d++) {
        qd[i * dk + d] = qc[i * qk_stride + d] * e;
        kd[i * dk + d] = kc[i * qk_stride + d] * exp(cum[len - 1] - cum[i]);
      }
    }
    /* V' = U − W·S; o = qd·S + intra·V' */
    for (int i = 0; i < len; i++)
      for (int d = 0; d < dv; d++) {
        double ws = 0, qs = 0;
        for (int e = 0; e < dk; e++) {
          ws += w[i * dk + e] * s[(size_t)e * dv + d];
          qs += qd[i * dk + e] * s[(size_t)e * dv + d];
        }
        u[i * dv + d] -= ws;
        ob[i * dv + d] = qs;
      }
    for (int i = 0; i < len; i++)
      for (int d = 0; d < dv; d++) {
        double x = 0;
        for (int j = 0; j <= i; j++) x += intra[i * chunk + j] * u[j * dv + d];
        o[(size_t)(c0 + i) * o_stride + d] = ob[i * dv + d] + x;
      }
    /* S ← exp(cum_last)·S + kdᵀ·V' */
    const double last = exp(cum[len - 1]);
    for (int e = 0; e < dk; e++)
      for (int d = 0; d < dv; d++) {
        double x = 0;
        for (int i = 0; i < len; i++) x += kd[i * dk + e] * u[i * dv + d];
        s[(size_t)e * dv + d] = s[(size_t)e * dv + d] * last + x;
      }
  }
}

/* out [n, hidden] = the gated DeltaNet of h [n, hidden] for a fresh sequence. -1 when out of memory. */
static int TYPED(gated_deltanet)(real *out, const real *h, const deltanet_weights *w, int n, const model *m) {
  const int hidden = m->config.hidden_size, kh = w->k_heads, vh = w->v_heads, dk = w->k_dim, dv = w->v_dim;
  const int r = vh / kh, kernel = w->kernel, key_dim = kh * dk, value_dim = vh * dv;
  const int conv_dim = 2 * key_dim + value_dim, proj = 2 * key_dim + 2 * value_dim, per_key = 2 * dk + 2 * r * dv;
  const real *conv_w = w->conv_weight, *dt_bias = w->dt_bias, *a_log = w->a_log, *norm = w->norm;
  real *qkvz = malloc(sizeof(real) * (size_t)n * proj);          /* in_proj_qkvz output [n, proj] */
  real *ba = malloc(sizeof(real) * (size_t)n * 2 * vh);          /* in_proj_ba output [n, 2·vh] */
  double *mixed = malloc(sizeof(double) * (size_t)n * conv_dim); /* [q | k | v] per token, then conv'd */
  double *conv = malloc(sizeof(double) * (size_t)n * conv_dim);
  double *beta = malloc(sizeof(double) * (size_t)n * vh), *g = malloc(sizeof(double) * (size_t)n * vh);
  double *core = malloc(sizeof(double) * (size_t)n * value_dim);        /* delta-rule output [n, vh·dv] */
  const int chunk = m->delta_rule_chunk > 0 ? m->delta_rule_chunk : 64; /* transformers' prefill: 64 */
  double *work = malloc(sizeof(double) * TYPED(delta_rule_work)(chunk, dk, dv));
  real *gated = malloc(sizeof(real) * (size_t)n * value_dim); /* gated RMSNorm output [n, vh·dv] */
  int status = !qkvz || !ba || !mixed || !conv || !beta || !g || !core || !work || !gated ? -1 : 0;
  if (status == 0) {
    TYPED(linear)(qkvz, h, w->in_proj_qkvz, NULL, n, hidden, proj);
    TYPED(linear)(ba, h, w->in_proj_ba, NULL, n, hidden, 2 * vh);
    /* fix_query_key_value_ordering: per key head [q dk | k dk | v r·dv | z r·dv], [b r | a r] */
    for (int t = 0; t < n; t++)
      for (int kg = 0; kg < kh; kg++) {
        const real *src = qkvz + (size_t)t * proj + (size_t)kg * per_key;
        double *dst = mixed + (size_t)t * conv_dim;
        for (int i = 0; i < dk; i++) dst[kg * dk + i] = src[i];
        for (int i = 0; i < dk; i++) dst[key_dim + kg * dk + i] = src[dk + i];
        for (int i = 0; i < r * dv; i++) dst[2 * key_dim + kg * r * dv + i] = src[2 * dk + i];
        for (int j = 0; j < r; j++) {
          const int head = kg * r + j;
          const double b = ba[(size_t)t * 2 * vh + (size_t)kg * 2 * r + j];
          const double a = ba[(size_t)t * 2 * vh + (size_t)kg * 2 * r + r + j];
          beta[(size_t)t * vh + head] = TYPED(q3n_sigmoid)(b);
          g[(size_t)t * vh + head] = -exp((double)a_log[head]) * TYPED(q3n_softplus)(a + (double)dt_bias[head]);
        }
      }
    /* causal depthwise conv1d (no bias), then SiLU: position t sees t − kernel + 1 .. t */
    for (int t = 0; t < n; t++)
      for (int c = 0; c < conv_dim; c++) {
        double acc = 0;
        for (int j = 0; j < kernel; j++) {
          int src = t - (kernel - 1) + j;
          if (src >= 0) acc += (double)conv_w[(size_t)c * kernel + j] * mixed[(size_t)src * conv_dim + c];
        }
        conv[(size_t)t * conv_dim + c] = acc / (1 + exp(-acc));
      }
    /* q, k L2-normalized (q also by dk^-½), per token and key head */
    for (int t = 0; t < n; t++)
      for (int kg = 0; kg < kh; kg++) {
        TYPED(q3n_l2norm)(conv + (size_t)t * conv_dim + (size_t)kg * dk, dk, 1 / sqrt((double)dk));
        TYPED(q3n_l2norm)(conv + (size_t)t * conv_dim + key_dim + (size_t)kg * dk, dk, 1);
      }
    /* the gated delta rule, value head by value head (value head v reads key head v / r) */
    for (int head = 0; head < vh; head++) {
      const int kg = head / r;
      TYPED(delta_rule)
      (conv + (size_t)kg * dk, conv + key_dim + (size_t)kg * dk, (size_t)conv_dim,
       conv + 2 * key_dim + (size_t)head * dv, (size_t)conv_dim, beta + head, g + head, (size_t)vh, n, dk, dv, chunk,
       work, core + (size_t)head * dv, (size_t)value_dim);
    }
    /* gated RMSNorm per value head: rmsnorm(o)·norm·silu(z) */
    for (int t = 0; t < n; t++)
      for (int head = 0; head < vh; head++) {
        const double *o = core + (size_t)t * value_dim + (size_t)head * dv;
        const int kg = head / r, j = head % r;
        const real *z = qkvz + (size_t)t * proj + (size_t)kg * per_key + 2 * dk + r * dv + (size_t)j * dv;
        double sum = 0;
        for (int i = 0; i < dv; i++) sum += o[i] * o[i];
        const double scale = 1 / sqrt(sum / dv + m->config.rms_norm_eps);
        for (int i = 0; i < dv; i++) {
          const double zi = z[i];
          gated[(size_t)t * value_dim + (size_t)head * dv + i] =
              (real)(norm[i] * (o[i] * scale) * (zi / (1 + exp(-zi))));
        }
      }
    TYPED(linear)(out, gated, w->out_proj, NULL, n, value_dim, hidden);
  }
  free(qkvz);
  free(ba);
  free(mixed);
  free(conv);
  free(beta);
  free(g);
  free(core);
  free(work);
  free(gated);
  return status;
}

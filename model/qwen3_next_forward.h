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

/* The gated delta rule of one value head over n tokens: q, k [n, dk] (normalized), v [n, dv],
 * beta, g [n] (stride given), out o [n, dv] (stride o_stride); s [dk, dv] is scratch. */
static void TYPED(delta_rule)(const double *q, const double *k, size_t qk_stride, const double *v, size_t v_stride,
                              const double *beta, const double *g, size_t bg_stride, int n, int dk, int dv, double *s,
                              double *mem, double *o, size_t o_stride) {
  memset(s, 0, sizeof(double) * (size_t)dk * dv);
  for (int t = 0; t < n; t++) {
    const double *qt = q + t * qk_stride, *kt = k + t * qk_stride, *vt = v + t * v_stride;
    const double decay = exp(g[t * bg_stride]), b = beta[t * bg_stride];
    for (size_t i = 0; i < (size_t)dk * dv; i++) s[i] *= decay;
    for (int j = 0; j < dv; j++) mem[j] = 0; /* kv_mem = Sᵀk */
    for (int i = 0; i < dk; i++)
      for (int j = 0; j < dv; j++) mem[j] += s[(size_t)i * dv + j] * kt[i];
    for (int j = 0; j < dv; j++) mem[j] = (vt[j] - mem[j]) * b; /* delta */
    for (int i = 0; i < dk; i++)
      for (int j = 0; j < dv; j++) s[(size_t)i * dv + j] += kt[i] * mem[j];
    double *ot = o + t * o_stride;
    for (int j = 0; j < dv; j++) ot[j] = 0;
    for (int i = 0; i < dk; i++)
      for (int j = 0; j < dv; j++) ot[j] += s[(size_t)i * dv + j] * qt[i];
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
  double *core = malloc(sizeof(double) * (size_t)n * value_dim); /* delta-rule output [n, vh·dv] */
  double *s = malloc(sizeof(double) * (size_t)dk * dv), *mem = malloc(sizeof(double) * (size_t)dv);
  real *gated = malloc(sizeof(real) * (size_t)n * value_dim); /* gated RMSNorm output [n, vh·dv] */
  int status = !qkvz || !ba || !mixed || !conv || !beta || !g || !core || !s || !mem || !gated ? -1 : 0;
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
      TYPED(delta_rule)(conv + (size_t)kg * dk, conv + key_dim + (size_t)kg * dk, (size_t)conv_dim,
                        conv + 2 * key_dim + (size_t)head * dv, (size_t)conv_dim, beta + head, g + head, (size_t)vh, n,
                        dk, dv, s, mem, core + (size_t)head * dv, (size_t)value_dim);
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
  free(s);
  free(mem);
  free(gated);
  return status;
}

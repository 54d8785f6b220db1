/* Steps of the forward pass that only some families take (Gemma's embedding scale, gated GELU,
 * Gemma-3's local RoPE), included by forward.h after its helpers and compiled with it for each
 * scalar type `real`. Each is a no-op, or the LLaMA family's computation, for a model without
 * the feature. */

/* The embeddings x [n, hidden] of the n tokens at positions pos..: times embed_scale (Gemma's
 * √hidden, already rounded to the embedding's dtype as transformers' normalizer is); plus OPT's
 * learned position embedding (row position + 2: OPTLearnedPositionalEmbedding's offset). */
static void TYPED(embed_extras)(const model *m, real *x, int n, int pos) {
  const int hidden = m->config.hidden_size;
  if (m->embed_scale > 0)
    for (size_t i = 0; i < (size_t)n * hidden; i++) x[i] = (real)(x[i] * m->embed_scale);
  const real *positions = m->positions;
  for (int t = 0; positions && t < n; t++)
    for (int i = 0; i < hidden; i++) x[(size_t)t * hidden + i] += positions[(size_t)(pos + t + 2) * hidden + i];
}

/* out [rows, hidden] = the stream's norm of x: RMSNorm, or OPT's LayerNorm
 * (x − mean)·rsqrt(var + eps)·w + b (variance without Bessel's correction, as nn.LayerNorm). */
static void TYPED(stream_norm)(const model *m, real *out, const real *x, const real *w, const real *b, int rows) {
  const int dim = m->config.hidden_size;
  const double eps = m->config.rms_norm_eps;
  if (!m->layer_norm) {
    TYPED(rmsnorm)(out, x, w, rows, dim, eps);
    return;
  }
  for (int r = 0; r < rows; r++) {
    const real *in = x + (size_t)r * dim;
    real *o = out + (size_t)r * dim;
    double mean = 0, variance = 0;
    for (int i = 0; i < dim; i++) mean += in[i];
    mean /= dim;
    for (int i = 0; i < dim; i++) variance += (in[i] - mean) * (in[i] - mean);
    double scale = 1.0 / sqrt(variance / dim + eps);
    for (int i = 0; i < dim; i++) o[i] = (real)((in[i] - mean) * scale * w[i] + (b ? b[i] : 0));
  }
}

/* gate ← act(gate) · up over count elements: SiLU (LLaMA), GELU with the tanh approximation
 * (gelu_pytorch_tanh: Gemma) or exact GELU. */
static void TYPED(gated_activation)(const model *m, real *gate, const real *up, size_t count) {
  if (m->activation == ACT_SILU) {
    TYPED(swiglu)(gate, up, count);
    return;
  }
  if (m->activation == ACT_RELU) { /* ungated: up is unused */
    for (size_t i = 0; i < count; i++) gate[i] = gate[i] > 0 ? gate[i] : 0;
    return;
  }
  for (size_t i = 0; i < count; i++) {
    double g = gate[i], act;
    if (m->activation == ACT_GELU_TANH)
      act = 0.5 * g * (1 + tanh(sqrt(2 / M_PI) * (g + 0.044715 * g * g * g)));
    else
      act = 0.5 * g * (1 + erf(g / sqrt(2)));
    gate[i] = (real)(act * up[i]);
  }
}

/* The RoPE tables of layer l: Gemma-3's sliding layers use the local ones (rope_local_base_freq). */
static void TYPED(layer_rope_tables)(const model *m, int l, const double *global_cos, const double *global_sin,
                                     const double *local_cos, const double *local_sin, const double **cos_table,
                                     const double **sin_table) {
  bool local = m->inv_freq_local && m->layer_window && m->layer_window[l] > 0;
  *cos_table = local ? local_cos : global_cos;
  *sin_table = local ? local_sin : global_sin;
}

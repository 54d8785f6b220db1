/* The Nemotron-H forward pass (see model/nemotron_h.h), included by forward.h after its helpers and
 * compiled with it for each scalar type `real`. The Mamba-2 scan runs in double. */

/* softplus as torch computes it (threshold 20: the identity above). */
static double TYPED(softplus)(double x) { return x > 20 ? x : log1p(exp(x)); }

static double TYPED(silu)(double x) { return x / (1 + exp(-x)); }

/* out [n, hidden] = the Mamba-2 mixer of h [n, hidden] for a fresh sequence. -1 when out of memory. */
static int TYPED(mamba_mixer)(real *out, const real *h, const mamba_weights *w, int n, const model *m) {
  const int hidden = m->config.hidden_size, heads = w->heads, hd = w->head_dim, state = w->state;
  const int groups = w->groups, kernel = w->kernel, inter = heads * hd, conv_dim = inter + 2 * groups * state;
  const int proj = inter + conv_dim + heads, heads_per_group = heads / groups, group_size = inter / groups;
  const real *conv_w = w->conv_weight, *conv_b = w->conv_bias, *dt_bias = w->dt_bias, *a_log = w->a_log, *d = w->d;
  const real *norm = w->norm;
  real *p = malloc(sizeof(real) * n * proj);                      /* in_proj output [n, z | xBC | dt] */
  double *xbc = malloc(sizeof(double) * n * conv_dim);            /* silu(conv1d(xBC)) [n, conv_dim] */
  double *y = malloc(sizeof(double) * n * inter);                 /* scan output [n, heads·head_dim] */
  double *s = calloc((size_t)heads * hd * state, sizeof(double)); /* SSM state [heads, head_dim, state] */
  real *gated = malloc(sizeof(real) * n * inter);                 /* gated RMSNorm output [n, inter] */
  int status = !p || !xbc || !y || !s || !gated ? -1 : 0;
  if (status == 0) {
    TYPED(linear)(p, h, w->in_proj, w->in_proj_bias, n, hidden, proj);
    /* causal depthwise convolution: position t sees t − kernel + 1 .. t */
    for (int t = 0; t < n; t++)
      for (int c = 0; c < conv_dim; c++) {
        double acc = conv_b ? conv_b[c] : 0;
        for (int j = 0; j < kernel; j++) {
          int src = t - (kernel - 1) + j;
          if (src >= 0) acc += (double)conv_w[(size_t)c * kernel + j] * p[(size_t)src * proj + inter + c];
        }
        xbc[(size_t)t * conv_dim + c] = TYPED(silu)(acc);
      }
    /* the selective scan, head by head */
    for (int t = 0; t < n; t++)
      for (int head = 0; head < heads; head++) {
        const int g = head / heads_per_group;
        double dt = TYPED(softplus)((double)p[(size_t)t * proj + inter + conv_dim + head] + dt_bias[head]);
        dt = dt < w->dt_min ? w->dt_min : dt > w->dt_max ? w->dt_max : dt;
        const double decay = exp(-dt * exp((double)a_log[head]));
        const double *x = xbc + (size_t)t * conv_dim + (size_t)head * hd;
        const double *b = xbc + (size_t)t * conv_dim + inter + (size_t)g * state;
        const double *c = xbc + (size_t)t * conv_dim + inter + (size_t)groups * state + (size_t)g * state;
        for (int i = 0; i < hd; i++) {
          double *row = s + ((size_t)head * hd + i) * state, acc = 0;
          for (int k = 0; k < state; k++) {
            row[k] = decay * row[k] + dt * x[i] * b[k];
            acc += row[k] * c[k];
          }
          y[(size_t)t * inter + (size_t)head * hd + i] = acc + d[head] * x[i];
        }
      }
    /* gated RMSNorm: groups of group_size of y·silu(z), times norm */
    for (int t = 0; t < n; t++)
      for (int g = 0; g < groups; g++) {
        double *v = y + (size_t)t * inter + (size_t)g * group_size, sum = 0;
        const real *z = p + (size_t)t * proj + (size_t)g * group_size;
        for (int i = 0; i < group_size; i++) {
          v[i] *= TYPED(silu)(z[i]);
          sum += v[i] * v[i];
        }
        double scale = 1 / sqrt(sum / group_size + m->config.rms_norm_eps);
        for (int i = 0; i < group_size; i++)
          gated[(size_t)t * inter + (size_t)g * group_size + i] = (real)(norm[g * group_size + i] * (v[i] * scale));
      }
    TYPED(linear)(out, gated, w->out_proj, w->out_proj_bias, n, inter, hidden);
  }
  free(p);
  free(xbc);
  free(y);
  free(s);
  free(gated);
  return status;
}

/* out [rows, hidden] = down(relu(up(x))²) of x [rows, hidden]; act [rows, inter] is scratch. True
 * when the observer ended the pass at the down projection's input. */
static bool TYPED(relu2_mlp)(real *out, const real *x, const expert_weights *e, int rows, int hidden, int inter,
                             real *act, const model *m, int layer) {
  TYPED(linear)(act, x, e->w_up, NULL, rows, hidden, inter);
  for (size_t i = 0; i < (size_t)rows * inter; i++) act[i] = act[i] > 0 ? act[i] * act[i] : 0;
  if (TYPED(linear_input)(m, layer, INPUT_DOWN_PROJ, act, rows, inter)) return true;
  TYPED(linear)(out, act, e->w_down, NULL, rows, inter, hidden);
  return false;
}

/* out [n, hidden] = Σ over each token's top-k experts of weight · expert(x) + shared_expert(x), x
 * [n, hidden] the normalized stream; experts in index order on the tokens routed to them, as
 * transformers' loop runs them. 0, 1 when the observer ended the pass, -1 when out of memory. */
static int TYPED(nemotron_moe)(real *out, const real *x, const moe_weights *moe, int n, const model *m, int layer) {
  const int hidden = m->config.hidden_size, experts = moe->experts;
  const int inter = moe->intermediate > moe->shared_intermediate ? moe->intermediate : moe->shared_intermediate;
  real *logits = malloc(sizeof(real) * n * experts);      /* router output [n, experts] */
  double *routing = malloc(sizeof(double) * n * experts); /* routing weights [n, experts] */
  double *scratch = malloc(sizeof(double) * 2 * (experts > moe->n_group ? experts : moe->n_group));
  int *token = malloc(sizeof(int) * n);                 /* tokens of one expert */
  real *routed = malloc(sizeof(real) * n * hidden);     /* their inputs [count, hidden] */
  real *expert_out = malloc(sizeof(real) * n * hidden); /* expert output [count, hidden] */
  real *act = malloc(sizeof(real) * n * inter);         /* [count, inter] */
  int status = !logits || !routing || !scratch || !token || !routed || !expert_out || !act ? -1 : 0;
  if (status == 0) {
    TYPED(linear)(logits, x, moe->router, NULL, n, hidden, experts);
    TYPED(grouped_sigmoid_route)(routing, logits, moe, n, scratch);
    memset(out, 0, sizeof(real) * n * hidden);
  }
  for (int e = 0; status == 0 && e < experts; e++) {
    int count = 0;
    for (int t = 0; t < n; t++)
      if (routing[(size_t)t * experts + e] != 0) {
        memcpy(routed + (size_t)count * hidden, x + (size_t)t * hidden, sizeof(real) * hidden);
        token[count++] = t;
      }
    if (count == 0) continue;
    if (TYPED(relu2_mlp)(expert_out, routed, &moe->expert[e], count, hidden, moe->intermediate, act, m, layer))
      status = 1;
    for (int i = 0; status == 0 && i < count; i++) {
      real weight = (real)routing[(size_t)token[i] * experts + e];
      for (int j = 0; j < hidden; j++)
        out[(size_t)token[i] * hidden + j] += weight * expert_out[(size_t)i * hidden + j];
    }
  }
  if (status == 0 && TYPED(relu2_mlp)(expert_out, x, &moe->shared, n, hidden, moe->shared_intermediate, act, m, layer))
    status = 1;
  for (size_t i = 0; status == 0 && i < (size_t)n * hidden; i++) out[i] += expert_out[i];
  free(logits);
  free(routing);
  free(scratch);
  free(token);
  free(routed);
  free(expert_out);
  free(act);
  return status;
}

/* The forward pass of a fresh sequence of n tokens: x += mixer(rmsnorm(x)) per layer. */
static int TYPED(hybrid_forward)(model_session *s, const int32_t *tokens, int n, double *logits, rotq_error *err) {
  const model *m = s->model;
  const model_config *c = &m->config;
  const int hidden = c->hidden_size, vocab = c->vocab_size, inter = c->intermediate_size;
  const int q_dim = c->num_attention_heads * c->head_dim, kv_dim = c->num_key_value_heads * c->head_dim;
  if (s->length != 0)
    return rotq_fail(err, "%s: Nemotron-H runs fresh sequences only (no incremental Mamba state)", c->architecture);
  real *x = calloc((size_t)n * hidden, sizeof(real));            /* residual stream [n, hidden] */
  real *xb = malloc(sizeof(real) * n * hidden);                  /* normalized stream [n, hidden] */
  real *delta = malloc(sizeof(real) * n * hidden);               /* a mixer's output [n, hidden] */
  real *q = malloc(sizeof(real) * n * q_dim);                    /* queries [n, heads·head_dim] */
  real *attn = malloc(sizeof(real) * n * q_dim);                 /* attention output [n, heads·head_dim] */
  real *up = malloc(sizeof(real) * n * (inter > 0 ? inter : 1)); /* MLP activation [n, intermediate] */
  real *scores = malloc(sizeof(real) * QUERY_TILE * n);          /* attention weights [QUERY_TILE, n] */
  real *head_out = malloc(sizeof(real) * LOGIT_ROWS * vocab);    /* lm_head output [LOGIT_ROWS, vocab] */
  int status = 0;
  if (!x || !xb || !delta || !q || !attn || !up || !scores || !head_out) {
    status = rotq_fail(err, "out of memory for the activations of %d tokens", n);
    goto done;
  }
  for (int t = 0; t < n; t++)
    memcpy(x + (size_t)t * hidden, (const real *)m->embed + (size_t)tokens[t] * hidden, sizeof(real) * hidden);
  for (int l = 0; l < c->num_hidden_layers; l++) {
    const layer_weights *w = &m->layers[l];
    TYPED(rmsnorm)(xb, x, w->attn_norm, n, hidden, c->rms_norm_eps);
    if (w->mamba) {
      if (TYPED(mamba_mixer)(delta, xb, w->mamba, n, m) < 0) {
        status = rotq_fail(err, "out of memory for the Mamba-2 mixer of %d tokens", n);
        goto done;
      }
    } else if (w->wq) { /* attention without positional encoding */
      real *keys = (real *)s->key_cache + (size_t)l * s->max_tokens * kv_dim;
      real *values = (real *)s->value_cache + (size_t)l * s->max_tokens * kv_dim;
      if (TYPED(linear_input)(m, l, INPUT_QKV, xb, n, hidden)) goto done;
      TYPED(linear)(q, xb, w->wq, w->bq, n, hidden, q_dim);
      TYPED(linear)(keys, xb, w->wk, w->bk, n, hidden, kv_dim);
      TYPED(linear)(values, xb, w->wv, w->bv, n, hidden, kv_dim);
      TYPED(online_hook_apply)(m->online, ONLINE_SITE_QK, l, q, n, q_dim); /* R3: q·R3, k·R3 per head */
      TYPED(online_hook_apply)(m->online, ONLINE_SITE_QK, l, keys, n, kv_dim);
      TYPED(store_kv)(keys, values, n, kv_dim, &m->quant);
      TYPED(attention)(attn, q, keys, values, scores, n, 0, m, l);
      TYPED(online_hook_apply)(m->online, ONLINE_SITE_O_PROJ, l, attn, n, q_dim); /* x·(R_heads ⊗ I) */
      if (TYPED(linear_input)(m, l, INPUT_O_PROJ, attn, n, q_dim)) goto done;
      TYPED(linear)(delta, attn, w->wo, w->bo, n, q_dim, hidden);
    } else if (w->moe) { /* MoE (Nemotron-3 'E'): routed relu² experts + the shared expert */
      if (TYPED(linear_input)(m, l, INPUT_GATE_UP, xb, n, hidden)) goto done;
      int moe_status = TYPED(nemotron_moe)(delta, xb, w->moe, n, m, l);
      if (moe_status < 0) status = rotq_fail(err, "out of memory for the MoE block of %d tokens", n);
      if (moe_status != 0) goto done;
    } else { /* MLP: down(relu(up(h))²) */
      if (TYPED(linear_input)(m, l, INPUT_GATE_UP, xb, n, hidden)) goto done;
      TYPED(linear)(up, xb, w->w_up, w->b_up, n, hidden, inter);
      for (size_t i = 0; i < (size_t)n * inter; i++) up[i] = up[i] > 0 ? up[i] * up[i] : 0;
      TYPED(online_hook_apply)(m->online, ONLINE_SITE_DOWN_PROJ, l, up, n, inter); /* R4 */
      if (TYPED(linear_input)(m, l, INPUT_DOWN_PROJ, up, n, inter)) goto done;
      TYPED(linear)(delta, up, w->w_down, w->b_down, n, inter, hidden);
    }
    TYPED(residual_add)(x, delta, (size_t)n * hidden);
  }
  TYPED(rmsnorm)(xb, x, m->final_norm, n, hidden, c->rms_norm_eps);
  for (int r = 0; r < n; r += LOGIT_ROWS) {
    int rows = n - r < LOGIT_ROWS ? n - r : LOGIT_ROWS;
    TYPED(linear)(head_out, xb + (size_t)r * hidden, m->lm_head, NULL, rows, hidden, vocab);
    for (size_t i = 0; i < (size_t)rows * vocab; i++) logits[(size_t)r * vocab + i] = head_out[i];
  }
done:
  free(x);
  free(xb);
  free(delta);
  free(q);
  free(attn);
  free(up);
  free(scores);
  free(head_out);
  return status;
}

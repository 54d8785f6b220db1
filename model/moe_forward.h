/* The sparse MoE block of the forward pass (see model/moe.h), included by forward.h after its
 * helpers (linear, linear_input, swiglu) and compiled with it for each scalar type `real`.
 * The softmax over the router logits and the routing weights are computed in double (transformers
 * computes them in float32 whatever the model's dtype; the difference is ~1e-7 of a weight). */

/* out [rows, hidden] = down(silu(gate(x))·up(x)) of x [rows, hidden]; gate, up [rows, inter] are
 * scratch. True when the observer ended the pass at the down projection's input. */
static bool TYPED(expert_mlp)(real *out, const real *x, const expert_weights *e, int rows, int hidden, int inter,
                              real *gate, real *up, const model *m, int layer) {
  const moe_weights *moe = m->layers[layer].moe;
  TYPED(linear)(gate, x, e->w_gate, e->b_gate, rows, hidden, inter);
  TYPED(linear)(up, x, e->w_up, e->b_up, rows, hidden, inter);
  if (moe && moe->gpt_oss) /* GptOssExperts._apply_gate */
    for (size_t i = 0; i < (size_t)rows * inter; i++) {
      double g = gate[i] < moe->swiglu_limit ? gate[i] : moe->swiglu_limit;
      double u = up[i] < -moe->swiglu_limit  ? -moe->swiglu_limit
                 : up[i] > moe->swiglu_limit ? moe->swiglu_limit
                                             : up[i];
      double glu = g * (1 / (1 + exp(-(g * moe->swiglu_alpha))));
      gate[i] = (real)((u + 1) * glu);
    }
  else
    TYPED(swiglu)(gate, up, (size_t)rows * inter);
  if (TYPED(linear_input)(m, layer, INPUT_DOWN_PROJ, gate, rows, inter)) return true;
  TYPED(linear)(out, gate, e->w_down, e->b_down, rows, inter, hidden);
  return false;
}

/* routing [n, experts] as Llama4Router: sigmoid of the top_k logits (ties: the lowest index), 0
 * for the others. chosen [experts] is scratch. */
static void TYPED(sigmoid_top_route)(double *routing, const real *logits, const moe_weights *moe, int n, bool *chosen) {
  const int experts = moe->experts;
  for (int t = 0; t < n; t++) {
    const real *l = logits + (size_t)t * experts;
    double *p = routing + (size_t)t * experts;
    for (int e = 0; e < experts; e++) chosen[e] = false;
    for (int k = 0; k < moe->top_k; k++) {
      int best = -1;
      for (int e = 0; e < experts; e++)
        if (!chosen[e] && (best < 0 || l[e] > l[best])) best = e;
      chosen[best] = true;
    }
    for (int e = 0; e < experts; e++) p[e] = chosen[e] ? 1 / (1 + exp(-(double)l[e])) : 0;
  }
}

/* routing [n, experts] as GptOssTopKRouter: the top_k logits (ties: the lowest index) take the
 * softmax over them, the others 0. chosen [experts] is scratch. */
static void TYPED(top_logits_route)(double *routing, const real *logits, const moe_weights *moe, int n, bool *chosen) {
  const int experts = moe->experts;
  for (int t = 0; t < n; t++) {
    const real *l = logits + (size_t)t * experts;
    double *p = routing + (size_t)t * experts;
    for (int e = 0; e < experts; e++) chosen[e] = false, p[e] = 0;
    double max = -INFINITY, sum = 0;
    for (int k = 0; k < moe->top_k; k++) {
      int best = -1;
      for (int e = 0; e < experts; e++)
        if (!chosen[e] && (best < 0 || l[e] > l[best])) best = e;
      chosen[best] = true;
      if (l[best] > max) max = l[best];
    }
    for (int e = 0; e < experts; e++)
      if (chosen[e]) sum += p[e] = exp((double)l[e] - max);
    for (int e = 0; e < experts; e++) p[e] /= sum;
  }
}

/* routing [n, experts]: the weight of each expert for each token — softmax of the router logits
 * over all experts, kept for the top_k largest (renormalized to sum 1 if normalize_top_k), 0
 * elsewhere. logits [n, experts] are the router's outputs; chosen [experts] is scratch. */
static void TYPED(route_tokens)(double *routing, const real *logits, const moe_weights *moe, int n, bool *chosen) {
  const int experts = moe->experts;
  for (int t = 0; t < n; t++) {
    const real *l = logits + (size_t)t * experts;
    double *p = routing + (size_t)t * experts;
    double max = l[0], sum = 0;
    for (int e = 1; e < experts; e++) max = l[e] > max ? l[e] : max;
    for (int e = 0; e < experts; e++) sum += p[e] = exp(l[e] - max);
    for (int e = 0; e < experts; e++) p[e] /= sum;
    /* top_k by repeated selection of the largest unchosen probability (ties: lowest index) */
    for (int e = 0; e < experts; e++) chosen[e] = false;
    double kept = 0;
    for (int k = 0; k < moe->top_k; k++) {
      int best = -1;
      for (int e = 0; e < experts; e++)
        if (!chosen[e] && (best < 0 || p[e] > p[best])) best = e;
      chosen[best] = true;
      kept += p[best];
    }
    for (int e = 0; e < experts; e++) p[e] = !chosen[e] ? 0 : moe->normalize_top_k ? p[e] / kept : p[e];
  }
}

/* routing [n, experts] as DeepSeek-V3's router (Nemotron-H's 'E' layers, GLM-4.5): scores s =
 * sigmoid(logits); the choice c = s + e_score_correction_bias; with n_group groups, each group's
 * score is the sum of its two largest c and only the topk_group best groups stay (the others'
 * experts are masked, as masked_fill(-inf)); the top_k experts by c take s, renormalized
 * (sum + 1e-20) when norm_topk_prob, times routed_scaling_factor; 0 for the others. Ties: the
 * lowest index. The loader checks top_k ≤ topk_group · experts / n_group. scratch [2·experts]. */
static void TYPED(grouped_sigmoid_route)(double *routing, const real *logits, const moe_weights *moe, int n,
                                         double *scratch) {
  const int experts = moe->experts, groups = moe->n_group, per_group = experts / groups;
  const real *bias = moe->correction_bias;
  double *choice = scratch, *group_score = scratch + experts;
  bool group_kept[256];
  for (int t = 0; t < n; t++) {
    double *p = routing + (size_t)t * experts;
    for (int e = 0; e < experts; e++) {
      p[e] = 1 / (1 + exp(-(double)logits[(size_t)t * experts + e]));
      choice[e] = p[e] + (double)bias[e];
    }
    if (groups > 1) {
      for (int g = 0; g < groups; g++) {
        double first = -INFINITY, second = -INFINITY;
        for (int e = g * per_group; e < (g + 1) * per_group; e++) {
          if (choice[e] > first)
            second = first, first = choice[e];
          else if (choice[e] > second)
            second = choice[e];
        }
        group_score[g] = first + second;
        group_kept[g % 256] = false;
      }
      for (int k = 0; k < moe->topk_group; k++) {
        int best = -1;
        for (int g = 0; g < groups; g++)
          if (!group_kept[g % 256] && (best < 0 || group_score[g] > group_score[best])) best = g;
        group_kept[best % 256] = true;
      }
      for (int e = 0; e < experts; e++)
        if (!group_kept[(e / per_group) % 256]) choice[e] = NAN; /* masked: never chosen */
    }
    double kept = 0;
    for (int k = 0; k < moe->top_k; k++) {
      int best = -1;
      for (int e = 0; e < experts; e++)
        if (choice[e] != -INFINITY && !isnan(choice[e]) && (best < 0 || choice[e] > choice[best])) best = e;
      choice[best] = -INFINITY; /* chosen */
      kept += p[best];
    }
    for (int e = 0; e < experts; e++)
      p[e] = choice[e] != -INFINITY ? 0
             : moe->normalize_top_k ? p[e] / (kept + 1e-20) * moe->routed_scaling
                                    : p[e] * moe->routed_scaling;
  }
}

/* out [n, hidden] = Σ over each token's top-k experts of weight · expert(x), plus for Qwen2-MoE
 * sigmoid(x·shared_gateᵀ) · shared_expert(x); x [n, hidden] is the normalized stream. Experts run in
 * index order on the tokens routed to them, as transformers' loop does. 0, 1 when the observer ended
 * the pass, -1 when out of memory. */
static int TYPED(moe_block)(real *out, const real *x, const moe_weights *moe, int n, const model *m, int layer) {
  const int hidden = m->config.hidden_size, experts = moe->experts;
  const int inter = moe->intermediate > moe->shared_intermediate ? moe->intermediate : moe->shared_intermediate;
  real *logits = malloc(sizeof(real) * n * (experts > 1 ? experts : 1));  /* router output [n, experts] */
  double *routing = malloc(sizeof(double) * n * (experts ? experts : 1)); /* routing weights [n, experts] */
  double *scratch = malloc(sizeof(double) * 2 * (experts > moe->n_group ? experts : moe->n_group + 1));
  int *token = malloc(sizeof(int) * n);                 /* tokens of one expert */
  bool *chosen = malloc(sizeof(bool) * experts);        /* top-k flags of one token */
  real *routed = malloc(sizeof(real) * n * hidden);     /* their inputs [count, hidden] */
  real *expert_out = malloc(sizeof(real) * n * hidden); /* expert output [count, hidden] */
  real *gate = malloc(sizeof(real) * n * inter), *up = malloc(sizeof(real) * n * inter); /* [count, inter] */
  int status = !logits || !routing || !scratch || !token || !chosen || !routed || !expert_out || !gate || !up ? -1 : 0;
  if (status == 0) {
    if (experts > 0) TYPED(linear)(logits, x, moe->router, moe->router_bias, n, hidden, experts);
    if (experts == 0) /* a Llama-4 dense layer: the shared expert alone */
      ;
    else if (moe->llama4)
      TYPED(sigmoid_top_route)(routing, logits, moe, n, chosen);
    else if (moe->grouped_sigmoid) /* GLM-4.5 */
      TYPED(grouped_sigmoid_route)(routing, logits, moe, n, scratch);
    else if (moe->gpt_oss)
      TYPED(top_logits_route)(routing, logits, moe, n, chosen);
    else
      TYPED(route_tokens)(routing, logits, moe, n, chosen);
    memset(out, 0, sizeof(real) * n * hidden);
  }
  for (int e = 0; status == 0 && e < experts; e++) {
    int count = 0;
    for (int t = 0; t < n; t++)
      if (routing[(size_t)t * experts + e] != 0) {
        memcpy(routed + (size_t)count * hidden, x + (size_t)t * hidden, sizeof(real) * hidden);
        for (int j = 0; moe->llama4 && j < hidden; j++) /* Llama-4: the score scales the expert's input */
          routed[(size_t)count * hidden + j] *= (real)routing[(size_t)t * experts + e];
        token[count++] = t;
      }
    if (count == 0) continue;
    if (TYPED(expert_mlp)(expert_out, routed, &moe->expert[e], count, hidden, moe->intermediate, gate, up, m, layer))
      status = 1;
    for (int i = 0; status == 0 && i < count; i++) {
      real weight = moe->llama4 ? 1 : (real)routing[(size_t)token[i] * experts + e];
      for (int j = 0; j < hidden; j++)
        out[(size_t)token[i] * hidden + j] += weight * expert_out[(size_t)i * hidden + j];
    }
  }
  if (status == 0 && moe->shared_intermediate) {
    if (TYPED(expert_mlp)(expert_out, x, &moe->shared, n, hidden, moe->shared_intermediate, gate, up, m, layer))
      status = 1;
    if (moe->shared_gate) TYPED(linear)(logits, x, moe->shared_gate, NULL, n, hidden, 1);
    for (int t = 0; status == 0 && t < n; t++) { /* GLM-4.5's shared experts are not gated */
      real weight = moe->shared_gate ? (real)(1 / (1 + exp(-(double)logits[t]))) : 1;
      for (int j = 0; j < hidden; j++) out[(size_t)t * hidden + j] += weight * expert_out[(size_t)t * hidden + j];
    }
  }
  free(logits);
  free(routing);
  free(scratch);
  free(token);
  free(chosen);
  free(routed);
  free(expert_out);
  free(gate);
  free(up);
  return status;
}

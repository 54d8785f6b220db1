/* The forward pass of a Llama-family decoder (Llama, Mistral, Qwen2, Qwen3), written once for a
 * scalar type and compiled twice: forward_f64.c and forward_f32.c include this file after
 * defining
 *   real          the scalar type of weights, caches and activations (double or float)
 *   TYPED(name)   name with the type's suffix (name##_f64 or name##_f32)
 *   GEMM          the cblas GEMM of that type
 * Reductions (RMSNorm sums, softmax, exp) are done in double whatever real is.
 *
 * Every projection goes through linear(), each decoder linear's input first through
 * linear_input() — where an observer sees it and it is fake-quantized per token — and every step
 * of a layer is a named call in forward(): Q and K after rope() (where R3 acts), K and V through
 * store_kv() (quantized for the cache), the attention output entering o_proj (the heads
 * rotation), the gated activation entering down_proj (R4). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/online_hooks.h"
#include "linalg/quantize.h"
#include "model/rope.h"
#include "model/transformer.h"

/* lm_head rows computed at a time: bounds the scratch to LOGIT_ROWS × vocab whatever n is. */
#define LOGIT_ROWS 16
/* Queries per attention GEMM: tiles skip most of the masked upper triangle of the scores. */
#define QUERY_TILE 32

/* RMSNorm of each row of x [rows, dim]: x · rsqrt(mean(x²) + eps) · w (out may be x). */
static void TYPED(rmsnorm)(real *out, const real *x, const real *w, int rows, int dim, double eps) {
  for (int r = 0; r < rows; r++) {
    const real *in = x + (size_t)r * dim;
    real *o = out + (size_t)r * dim;
    double sum_squares = 0;
    for (int i = 0; i < dim; i++) sum_squares += (double)in[i] * in[i];
    double scale = 1.0 / sqrt(sum_squares / dim + eps);
    for (int i = 0; i < dim; i++) o[i] = (real)(w[i] * (in[i] * scale));
  }
}

/* out [rows, out_dim] = in [rows, in_dim] · wᵀ + bias (w [out_dim, in_dim]; bias may be NULL). */
static void TYPED(linear)(real *out, const real *in, const real *w, const real *bias, int rows, int in_dim,
                          int out_dim) {
  GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, rows, out_dim, in_dim, 1, in, in_dim, w, in_dim, 0, out, out_dim);
  if (!bias) return;
  for (int r = 0; r < rows; r++)
    for (int j = 0; j < out_dim; j++) out[(size_t)r * out_dim + j] += bias[j];
}

/* x [rows, dim] enters the linears of `input` in `layer`: the observer sees it, then each token is
 * fake-quantized as a serving kernel quantizes its input. True when the observer ends the pass. */
static bool TYPED(linear_input)(const model *m, int layer, linear_input input, real *x, int rows, int dim) {
  if (m->observe && m->observe(m->observe_user, layer, input, x, rows, dim)) return true;
  for (int r = 0; r < rows; r++) {
    if (m->quant.aformat != QUANT_INT)
      TYPED(fake_quant_format)(x + (size_t)r * dim, (size_t)dim, (quant_format)m->quant.aformat, 0);
    else
      for (int g = 0; g<dim; g += m->quant.a_group> 0 ? m->quant.a_group : dim) TYPED(fake_quant_symmetric)
    (x + (size_t)r * dim + g, (size_t)(m->quant.a_group > 0 && m->quant.a_group < dim - g ? m->quant.a_group : dim - g),
     m->quant.abits, m->quant.a_clip);
  }
  return false;
}

/* The n new keys k and values v [n, kv_dim] as the cache stores them: fake-quantized per group. */
static void TYPED(store_kv)(real *k, real *v, int n, int kv_dim, const activation_quant *q) {
  for (size_t i = 0; i < (size_t)n * kv_dim; i += (size_t)q->kv_group) {
    TYPED(fake_quant_asymmetric)(k + i, (size_t)q->kv_group, q->kvbits, q->kv_clip);
    TYPED(fake_quant_asymmetric)(v + i, (size_t)q->kv_group, q->kvbits, q->kv_clip);
  }
}

/* RoPE of the first rotary_dim dims of every head vector of x [rows, heads, head_dim] (the rest
 * passes, as transformers' q_rot / q_pass), row r at angles cos/sin [rows, rotary_dim/2]. */
static void TYPED(rope)(real *x, int rows, int heads, int head_dim, int rotary_dim, const double *cos_table,
                        const double *sin_table) {
  int half = rotary_dim / 2;
  for (int r = 0; r < rows; r++)
    for (int h = 0; h < heads; h++) {
      real *v = x + ((size_t)r * heads + h) * head_dim;
      const double *c = cos_table + (size_t)r * half, *s = sin_table + (size_t)r * half;
      for (int i = 0; i < half; i++) {
        double x1 = v[i], x2 = v[i + half];
        v[i] = (real)(x1 * c[i] - x2 * s[i]);
        v[i + half] = (real)(x2 * c[i] + x1 * s[i]);
      }
    }
}

/* RoPE on adjacent pairs (Llama-4's freqs_cis): (x[2i], x[2i+1]) as a complex number times
 * e^{i·angle_i}, for the first rotary_dim dims of every head vector of x [rows, heads, head_dim]. */
static void TYPED(rope_pairs)(real *x, int rows, int heads, int head_dim, int rotary_dim, const double *cos_table,
                              const double *sin_table) {
  int half = rotary_dim / 2;
  for (int r = 0; r < rows; r++)
    for (int h = 0; h < heads; h++) {
      real *v = x + ((size_t)r * heads + h) * head_dim;
      const double *c = cos_table + (size_t)r * half, *s = sin_table + (size_t)r * half;
      for (int i = 0; i < half; i++) {
        double a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = (real)(a * c[i] - b * s[i]);
        v[2 * i + 1] = (real)(a * s[i] + b * c[i]);
      }
    }
}

/* Llama-4's per-layer attention steps on q [n, heads·head_dim] and k [n, kv_heads·head_dim] after
 * RoPE: L2 norm of each head vector (RoPE layers, use_qk_norm), the temperature of the NoPE layers'
 * queries log1p(floor((p + 1) / floor_scale))·attn_scale + 1 at position p. */
static void TYPED(llama4_qk)(const model *m, int layer, real *q, real *k, int n, int pos) {
  const model_config *c = &m->config;
  const int heads = c->num_attention_heads, kv_heads = c->num_key_value_heads, head_dim = c->head_dim;
  const bool nope = m->layer_nope[layer];
  for (int r = 0; !nope && m->l2_qk_norm && r < n * (heads > kv_heads ? heads : kv_heads); r++)
    for (int which = 0; which < 2; which++) {
      if (r >= n * (which ? kv_heads : heads)) continue;
      real *v = (which ? k : q) + (size_t)r * head_dim;
      double sum = 0;
      for (int i = 0; i < head_dim; i++) sum += (double)v[i] * v[i];
      double scale = 1.0 / sqrt(sum / head_dim + c->rms_norm_eps);
      for (int i = 0; i < head_dim; i++) v[i] = (real)(v[i] * scale);
    }
  for (int t = 0; nope && m->floor_scale > 0 && t < n; t++) {
    double temperature = log1p(floor(((double)(pos + t) + 1.0) / m->floor_scale)) * m->attn_scale + 1.0;
    for (int i = 0; i < heads * head_dim; i++) q[(size_t)t * heads * head_dim + i] *= (real)temperature;
  }
}

/* max of row[first..last], in four independent lanes: one serial chain of comparisons is
 * latency-bound, and this runs for every attention score. */
static double TYPED(row_max)(const real *row, int first, int last) {
  double lane[4] = {row[first], row[first], row[first], row[first]};
  int j = first;
  for (; j + 3 <= last; j += 4)
    for (int k = 0; k < 4; k++) lane[k] = row[j + k] > lane[k] ? row[j + k] : lane[k];
  for (; j <= last; j++) lane[0] = row[j] > lane[0] ? row[j] : lane[0];
  double max = lane[0];
  for (int k = 1; k < 4; k++) max = lane[k] > max ? lane[k] : max;
  return max;
}

/* Softmax over row[first..last] and a sink logit (gpt-oss's per-head sink, which takes its share of
 * the weight and is dropped; −∞ = none); the masked rest of the row [0, length) becomes 0. */
static void TYPED(masked_softmax)(real *row, int length, int first, int last, double sink) {
  double max = TYPED(row_max)(row, first, last);
  if (sink > max) max = sink;
  double sum = exp(sink - max); /* 0 without a sink */
  for (int j = first; j <= last; j++) {
    double e = exp(row[j] - max);
    row[j] = (real)e;
    sum += e;
  }
  double inverse = 1 / sum;
  for (int j = first; j <= last; j++) row[j] = (real)(row[j] * inverse);
  for (int j = 0; j < first; j++) row[j] = 0;
  for (int j = last + 1; j < length; j++) row[j] = 0;
}

/* x ← cap·tanh(x / cap) over count elements: Gemma-2's soft-capping of scores and logits. */
static void TYPED(softcap)(real *x, size_t count, double cap) {
  for (size_t i = 0; i < count; i++) x[i] = (real)(cap * tanh(x[i] / cap));
}

/* Causal softmax attention, scaled by 1/√head_dim (Gemma-2/3: query_pre_attn_scalar^-½), of the
 * n new queries q [n, heads·head_dim] (positions pos..pos+n−1) over keys/values
 * [pos+n, kv_heads·head_dim] of the cache, in decoder layer `layer` (its sliding window, scores
 * soft-capped when the model says so). Query head h reads kv head h / (heads / kv_heads).
 * out [n, heads·head_dim]; scores [QUERY_TILE, pos+n] is scratch. Queries go QUERY_TILE at a
 * time, each tile against only the keys it may see. */
static void TYPED(attention)(real *out, const real *q, const real *keys, const real *values, real *scores, int n,
                             int pos, const model *m, int layer) {
  const int window = m->layer_window ? m->layer_window[layer] : m->sliding_window;
  const double scale = m->attention_scale > 0 ? m->attention_scale : 1 / sqrt(m->config.head_dim);
  const model_config *c = &m->config;
  const int heads = c->num_attention_heads, head_dim = c->head_dim;
  const int q_dim = heads * head_dim, kv_dim = c->num_key_value_heads * head_dim;
  const int group = heads / c->num_key_value_heads;
  const real *sinks = m->layers[layer].sinks;
  const int chunk = m->layer_chunk ? m->layer_chunk[layer] : 0;
  for (int h = 0; h < heads; h++) {
    const double sink = sinks ? (double)sinks[h] : -INFINITY;
    const real *k = keys + (size_t)(h / group) * head_dim;   /* [pos+n, head_dim], stride kv_dim */
    const real *v = values + (size_t)(h / group) * head_dim; /* [pos+n, head_dim], stride kv_dim */
    for (int i0 = 0; i0 < n; i0 += QUERY_TILE) {
      int rows = n - i0 < QUERY_TILE ? n - i0 : QUERY_TILE;
      int visible = pos + i0 + rows; /* causal: a query sees its own position and earlier ones */
      GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, rows, visible, head_dim, scale,
           q + (size_t)i0 * q_dim + (size_t)h * head_dim, q_dim, k, kv_dim, 0, scores, visible);
      for (int i = 0; i < rows; i++) {
        int last = pos + i0 + i;
        int first = window > 0 && last + 1 > window ? last + 1 - window : 0;
        if (chunk > 0 && last / chunk * chunk > first) first = last / chunk * chunk; /* Llama-4 chunks */
        if (m->attn_softcap > 0) TYPED(softcap)(scores + (size_t)i * visible, (size_t)last + 1, m->attn_softcap);
        TYPED(masked_softmax)(scores + (size_t)i * visible, visible, first, last, sink);
      }
      GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, head_dim, visible, 1, scores, visible, v, kv_dim, 0,
           out + (size_t)i0 * q_dim + (size_t)h * head_dim, q_dim);
    }
  }
}

/* gate ← silu(gate) · up, elementwise over count: the MLP's gated activation. */
static void TYPED(swiglu)(real *gate, const real *up, size_t count) {
  for (size_t i = 0; i < count; i++) {
    double g = gate[i];
    gate[i] = (real)(g / (1 + exp(-g)) * up[i]);
  }
}

/* x += delta over count elements: the residual connection. */
static void TYPED(residual_add)(real *x, const real *delta, size_t count) {
  for (size_t i = 0; i < count; i++) x[i] += delta[i];
}

/* Per-family steps, written with the helpers above. */
#include "model/family_forward.h"
#include "model/moe_forward.h"
#include "model/nemotron_h_forward.h"
#include "model/mla_forward.h"
#include "model/qwen3_next_forward.h"

/* Decoder layers [first, last) of the pass of n tokens at positions s->length..: the residual
 * stream enters as the embeddings of tokens (tokens not NULL) or as hidden [n, hidden]; it leaves
 * as logits (logits not NULL, after the final norm and lm_head) or in hidden. An observer that ends
 * the pass leaves both unset. */
static int TYPED(forward_range)(model_session *s, const int32_t *tokens, real *hidden_in_out, int first, int last,
                                int n, double *logits, rotq_error *err) {
  const model *m = s->model;
  const model_config *c = &m->config;
  const int hidden = c->hidden_size, intermediate = c->intermediate_size, vocab = c->vocab_size;
  const int heads = c->num_attention_heads, kv_heads = c->num_key_value_heads, head_dim = c->head_dim;
  const int q_dim = heads * head_dim, kv_dim = kv_heads * head_dim;
  const int o_dim = m->mla_v_dim ? heads * m->mla_v_dim : q_dim; /* o_proj's input: MLA heads · v_head_dim */
  const int pos = s->length, context = pos + n;
  const double eps = c->rms_norm_eps;

  real *x = calloc((size_t)n * hidden, sizeof(real));                      /* residual stream [n, hidden] */
  real *xb = malloc(sizeof(real) * n * hidden);                            /* normalized stream [n, hidden] */
  real *q = malloc(sizeof(real) * n * q_dim);                              /* queries [n, heads·head_dim] */
  real *attn = malloc(sizeof(real) * n * (o_dim > q_dim ? o_dim : q_dim)); /* attention output [n, o_dim] */
  real *delta = malloc(sizeof(real) * n * hidden);                         /* o_proj / down_proj output [n, hidden] */
  real *gate = malloc(sizeof(real) * n * intermediate);                    /* gate_proj output [n, intermediate] */
  real *up = malloc(sizeof(real) * n * intermediate);                      /* up_proj output [n, intermediate] */
  real *scores = malloc(sizeof(real) * QUERY_TILE * context);              /* attention weights [QUERY_TILE, pos+n] */
  real *head_out = malloc(sizeof(real) * LOGIT_ROWS * vocab);              /* lm_head output [LOGIT_ROWS, vocab] */
  double *cos_table = malloc(sizeof(double) * n * (head_dim / 2));         /* RoPE cos [n, head_dim/2] */
  double *sin_table = malloc(sizeof(double) * n * (head_dim / 2));         /* RoPE sin [n, head_dim/2] */
  double *cos_local = malloc(sizeof(double) * n * (head_dim / 2));         /* Gemma-3 sliding layers' RoPE cos */
  double *sin_local = malloc(sizeof(double) * n * (head_dim / 2));         /* Gemma-3 sliding layers' RoPE sin */
  int status = 0;
  if (!x || !xb || !q || !attn || !delta || !gate || !up || !scores || !head_out || !cos_table || !sin_table ||
      !cos_local || !sin_local) {
    status = rotq_fail(err, "out of memory for the activations of %d tokens", n);
    goto done;
  }
  for (int l = 0; pos != 0 && l < c->num_hidden_layers; l++)
    if (m->layers[l].deltanet) {
      status =
          rotq_fail(err, "%s: the gated DeltaNet runs fresh sequences only (no incremental state)", c->architecture);
      goto done;
    }

  const int rotary_dim = m->rotary_dim ? m->rotary_dim : head_dim;
  rope_tables(m->inv_freq, rotary_dim / 2, pos, n, cos_table, sin_table);
  for (size_t i = 0; m->rope_scale > 0 && i < (size_t)n * (rotary_dim / 2); i++) /* YaRN (gpt-oss) */
    cos_table[i] *= m->rope_scale, sin_table[i] *= m->rope_scale;
  if (m->inv_freq_local) rope_tables(m->inv_freq_local, head_dim / 2, pos, n, cos_local, sin_local);
  const real *embed = m->embed;
  if (tokens) {
    for (int t = 0; t < n; t++)
      memcpy(x + (size_t)t * hidden, embed + (size_t)tokens[t] * hidden, sizeof(real) * hidden);
    TYPED(embed_extras)(m, x, n, pos);
  } else {
    memcpy(x, hidden_in_out, sizeof(real) * n * hidden);
  }

  for (int l = first; l < last; l++) {
    const layer_weights *w = &m->layers[l];
    real *keys = (real *)s->key_cache + (size_t)l * s->max_tokens * kv_dim;     /* [max_tokens, kv_dim] */
    real *values = (real *)s->value_cache + (size_t)l * s->max_tokens * kv_dim; /* [max_tokens, kv_dim] */
    real *k = keys + (size_t)pos * kv_dim;   /* this block's keys [n, kv_heads·head_dim] */
    real *v = values + (size_t)pos * kv_dim; /* this block's values [n, kv_heads·head_dim] */

    /* attention: x += o_proj(attention(rope(q), rope(k), v)) of rmsnorm(x) */
    TYPED(stream_norm)(m, xb, x, w->attn_norm, w->attn_norm_bias, n);
    if (TYPED(linear_input)(m, l, INPUT_QKV, xb, n, hidden)) goto done;
    if (w->deltanet) { /* Qwen3-Next: the gated DeltaNet instead of attention (writes delta itself) */
      if (TYPED(gated_deltanet)(delta, xb, w->deltanet, n, m) != 0) {
        status = rotq_fail(err, "out of memory for the gated DeltaNet of %d tokens", n);
        goto done;
      }
    } else if (w->mla) { /* DeepSeek-V3: multi-head latent attention, fresh sequences only */
      if (pos != 0) {
        status =
            rotq_fail(err, "%s: the MLA forward pass runs fresh sequences only (no latent cache)", c->architecture);
        goto done;
      }
      if (TYPED(mla_attention)(attn, xb, w->mla, n, m, cos_table, sin_table) != 0) {
        status = rotq_fail(err, "out of memory for the latent attention of %d tokens", n);
        goto done;
      }
    } else {
      TYPED(linear)(q, xb, w->wq, w->bq, n, hidden, q_dim);
      TYPED(linear)(k, xb, w->wk, w->bk, n, hidden, kv_dim);
      TYPED(linear)(v, xb, w->wv, w->bv, n, hidden, kv_dim);
      if (w->q_norm) { /* Qwen3: RMSNorm of each head vector, before RoPE */
        TYPED(rmsnorm)(q, q, w->q_norm, n * heads, head_dim, eps);
        TYPED(rmsnorm)(k, k, w->k_norm, n * kv_heads, head_dim, eps);
      }
      const double *layer_cos, *layer_sin;
      TYPED(layer_rope_tables)(m, l, cos_table, sin_table, cos_local, sin_local, &layer_cos, &layer_sin);
      if (m->rope_pairs && !m->layer_nope[l]) { /* Llama-4 (its NoPE layers: none) */
        TYPED(rope_pairs)(q, n, heads, head_dim, rotary_dim, layer_cos, layer_sin);
        TYPED(rope_pairs)(k, n, kv_heads, head_dim, rotary_dim, layer_cos, layer_sin);
      } else if (!m->rope_pairs) {
        TYPED(rope)(q, n, heads, head_dim, rotary_dim, layer_cos, layer_sin);
        TYPED(rope)(k, n, kv_heads, head_dim, rotary_dim, layer_cos, layer_sin);
      }
      if (m->layer_nope) TYPED(llama4_qk)(m, l, q, k, n, pos);
      TYPED(online_hook_apply)(m->online, ONLINE_SITE_QK, l, q, n, q_dim); /* R3: q·R3, k·R3 per head */
      TYPED(online_hook_apply)(m->online, ONLINE_SITE_QK, l, k, n, kv_dim);
      TYPED(store_kv)(k, v, n, kv_dim, &m->quant);
      TYPED(attention)(attn, q, keys, values, scores, n, pos, m, l);
      if (w->wq_gate && TYPED(output_gate)(attn, xb, w, n, hidden, q_dim) != 0) { /* Qwen3-Next */
        status = rotq_fail(err, "out of memory for the attention output gate of %d tokens", n);
        goto done;
      }
      TYPED(online_hook_apply)(m->online, ONLINE_SITE_O_PROJ, l, attn, n, q_dim); /* x·(R_heads ⊗ I) */
    }
    if (!w->deltanet) {
      if (TYPED(linear_input)(m, l, INPUT_O_PROJ, attn, n, o_dim)) goto done;
      TYPED(linear)(delta, attn, w->wo, w->bo, n, o_dim, hidden);
    }
    if (w->post_attn_norm) TYPED(rmsnorm)(delta, delta, w->post_attn_norm, n, hidden, eps); /* Gemma-2/3 */
    TYPED(residual_add)(x, delta, (size_t)n * hidden);

    /* MLP: x += down_proj(silu(gate_proj(h)) · up_proj(h)), h = rmsnorm(x) */
    TYPED(stream_norm)(m, xb, x, w->mlp_norm, w->mlp_norm_bias, n);
    if (TYPED(linear_input)(m, l, INPUT_GATE_UP, xb, n, hidden)) goto done;
    if (w->moe) { /* Mixtral, Qwen-MoE: x += Σ top-k experts (+ the gated shared expert) of h */
      int moe_status = TYPED(moe_block)(delta, xb, w->moe, n, m, l);
      if (moe_status < 0) status = rotq_fail(err, "out of memory for the MoE block of %d tokens", n);
      if (moe_status != 0) goto done;
      TYPED(residual_add)(x, delta, (size_t)n * hidden);
      continue;
    }
    TYPED(linear)(gate, xb, w->w_gate, w->b_gate, n, hidden, intermediate);
    if (w->w_up) TYPED(linear)(up, xb, w->w_up, w->b_up, n, hidden, intermediate); /* OPT has none */
    TYPED(gated_activation)(m, gate, up, (size_t)n * intermediate);
    TYPED(online_hook_apply)(m->online, ONLINE_SITE_DOWN_PROJ, l, gate, n, intermediate); /* R4 */
    if (TYPED(linear_input)(m, l, INPUT_DOWN_PROJ, gate, n, intermediate)) goto done;
    TYPED(linear)(delta, gate, w->w_down, w->b_down, n, intermediate, hidden);
    if (w->post_mlp_norm) TYPED(rmsnorm)(delta, delta, w->post_mlp_norm, n, hidden, eps); /* Gemma-2/3 */
    TYPED(residual_add)(x, delta, (size_t)n * hidden);
  }

  if (!logits) {
    memcpy(hidden_in_out, x, sizeof(real) * n * hidden);
    goto done;
  }
  /* logits = lm_head(rmsnorm(x)), LOGIT_ROWS rows at a time, widened to double */
  TYPED(stream_norm)(m, xb, x, m->final_norm, m->final_norm_bias, n);
  for (int r = 0; r < n; r += LOGIT_ROWS) {
    int rows = n - r < LOGIT_ROWS ? n - r : LOGIT_ROWS;
    TYPED(linear)(head_out, xb + (size_t)r * hidden, m->lm_head, NULL, rows, hidden, vocab);
    if (m->final_softcap > 0) TYPED(softcap)(head_out, (size_t)rows * vocab, m->final_softcap); /* Gemma-2 */
    for (size_t i = 0; i < (size_t)rows * vocab; i++) logits[(size_t)r * vocab + i] = head_out[i];
  }

done:
  free(x);
  free(xb);
  free(q);
  free(attn);
  free(delta);
  free(gate);
  free(up);
  free(scores);
  free(head_out);
  free(cos_table);
  free(sin_table);
  free(cos_local);
  free(sin_local);
  return status;
}

int TYPED(forward)(model_session *s, const int32_t *tokens, int n, double *logits, rotq_error *err) {
  if (s->model->hybrid) return TYPED(hybrid_forward)(s, tokens, n, logits, err); /* Nemotron-H */
  return TYPED(forward_range)(s, tokens, NULL, 0, s->model->config.num_hidden_layers, n, logits, err);
}

int TYPED(forward_layer)(model_session *s, int layer, real *hidden, int n, rotq_error *err) {
  if (s->model->hybrid) return rotq_fail(err, "%s: no single-layer forward pass", s->model->config.architecture);
  return TYPED(forward_range)(s, NULL, hidden, layer, layer + 1, n, NULL, err);
}

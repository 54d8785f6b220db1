#include "eval/linear_weights.h"

/* Shapes as layer_weights documents them. */
int linears_of(const model *m, int l, linear_input input, linear_weight *out) {
  const model_config *c = &m->config;
  layer_weights *w = &m->layers[l];
  const int hidden = c->hidden_size, intermediate = c->intermediate_size;
  const int q_dim = c->num_attention_heads * c->head_dim, kv_dim = c->num_key_value_heads * c->head_dim;
  int n = 0;
  switch (input) {
  case INPUT_QKV: /* none in a Mamba or MLP layer (Nemotron-H) */
    if (!w->wq) return 0;
    out[n++] = (linear_weight){w->wq, q_dim, hidden, "q_proj"};
    out[n++] = (linear_weight){w->wk, kv_dim, hidden, "k_proj"};
    out[n++] = (linear_weight){w->wv, kv_dim, hidden, "v_proj"};
    break;
  case INPUT_O_PROJ:
    if (w->wo) out[n++] = (linear_weight){w->wo, hidden, q_dim, "o_proj"};
    break;
  case INPUT_GATE_UP: /* OPT and Nemotron-H have no gate; a MoE layer has neither */
    if (w->w_gate) out[n++] = (linear_weight){w->w_gate, intermediate, hidden, "gate_proj"};
    if (w->w_up) out[n++] = (linear_weight){w->w_up, intermediate, hidden, "up_proj"};
    break;
  case INPUT_DOWN_PROJ:
    if (w->w_down) out[n++] = (linear_weight){w->w_down, hidden, intermediate, "down_proj"};
    break;
  case LINEAR_INPUT_COUNT: break;
  }
  return n;
}

static void visit_expert(const expert_weights *x, int hidden, int intermediate, linear_visitor visit, void *user) {
  if (x->w_gate) visit(&(linear_weight){x->w_gate, intermediate, hidden, "experts.gate_proj"}, user);
  if (x->w_up) visit(&(linear_weight){x->w_up, intermediate, hidden, "experts.up_proj"}, user);
  if (x->w_down) visit(&(linear_weight){x->w_down, hidden, intermediate, "experts.down_proj"}, user);
}

/* Shapes as moe.h, mla.h, nemotron_h.h and qwen3_next.h document them. */
void other_linears_visit(const model *m, int l, linear_visitor visit, void *user) {
  const model_config *c = &m->config;
  const layer_weights *w = &m->layers[l];
  const int hidden = c->hidden_size, heads = c->num_attention_heads;
  if (w->moe) {
    for (int e = 0; e < w->moe->experts; e++)
      visit_expert(&w->moe->expert[e], hidden, w->moe->intermediate, visit, user);
    if (w->moe->shared_intermediate) visit_expert(&w->moe->shared, hidden, w->moe->shared_intermediate, visit, user);
  }
  if (w->mla) {
    const mla_weights *a = w->mla;
    const int qk = a->nope + a->rope;
    if (a->wq) visit(&(linear_weight){a->wq, heads * qk, hidden, "q_proj"}, user);
    if (a->wq_a) visit(&(linear_weight){a->wq_a, a->q_lora, hidden, "q_a_proj"}, user);
    if (a->wq_b) visit(&(linear_weight){a->wq_b, heads * qk, a->q_lora, "q_b_proj"}, user);
    visit(&(linear_weight){a->wkv_a, a->kv_lora + a->rope, hidden, "kv_a_proj_with_mqa"}, user);
    visit(&(linear_weight){a->wkv_b, heads * (a->nope + a->v_dim), a->kv_lora, "kv_b_proj"}, user);
  }
  if (w->mamba) {
    const mamba_weights *b = w->mamba;
    const int inter = b->heads * b->head_dim, conv_dim = inter + 2 * b->groups * b->state;
    visit(&(linear_weight){b->in_proj, inter + conv_dim + b->heads, hidden, "mixer.in_proj"}, user);
    visit(&(linear_weight){b->out_proj, hidden, inter, "mixer.out_proj"}, user);
  }
  if (w->deltanet) {
    const deltanet_weights *d = w->deltanet;
    const int key_dim = d->k_heads * d->k_dim, value_dim = d->v_heads * d->v_dim;
    visit(&(linear_weight){d->in_proj_qkvz, 2 * key_dim + 2 * value_dim, hidden, "linear_attn.in_proj_qkvz"}, user);
    visit(&(linear_weight){d->in_proj_ba, 2 * d->v_heads, hidden, "linear_attn.in_proj_ba"}, user);
    visit(&(linear_weight){d->out_proj, hidden, value_dim, "linear_attn.out_proj"}, user);
  }
  if (w->wq_gate) visit(&(linear_weight){w->wq_gate, heads * c->head_dim, hidden, "q_proj (gate rows)"}, user);
}

void decoder_linears_visit(const model *m, int l, linear_visitor visit, void *user) {
  for (int input = 0; input < LINEAR_INPUT_COUNT; input++) {
    linear_weight lw[MAX_LINEARS_PER_INPUT];
    int count = linears_of(m, l, (linear_input)input, lw);
    for (int k = 0; k < count; k++) visit(&lw[k], user);
  }
  other_linears_visit(m, l, visit, user);
}

#include "model/linear_weights.h"

/* Shapes as layer_weights documents them. */
int linears_of(const model *m, int l, linear_input input, linear_weight *out) {
  const model_config *c = &m->config;
  layer_weights *w = &m->layers[l];
  const int hidden = c->hidden_size, intermediate = c->intermediate_size;
  const int q_dim = c->num_attention_heads * c->head_dim, kv_dim = c->num_key_value_heads * c->head_dim;
  switch (input) {
  case INPUT_QKV:
    out[0] = (linear_weight){w->wq, q_dim, hidden, "q_proj"};
    out[1] = (linear_weight){w->wk, kv_dim, hidden, "k_proj"};
    out[2] = (linear_weight){w->wv, kv_dim, hidden, "v_proj"};
    return 3;
  case INPUT_O_PROJ: out[0] = (linear_weight){w->wo, hidden, q_dim, "o_proj"}; return 1;
  case INPUT_GATE_UP:
    if (!w->w_gate) return 0;
    out[0] = (linear_weight){w->w_gate, intermediate, hidden, "gate_proj"};
    out[1] = (linear_weight){w->w_up, intermediate, hidden, "up_proj"};
    return 2;
  case INPUT_DOWN_PROJ:
    if (!w->w_down) return 0;
    out[0] = (linear_weight){w->w_down, hidden, intermediate, "down_proj"};
    return 1;
  case LINEAR_INPUT_COUNT: break;
  }
  return 0;
}


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

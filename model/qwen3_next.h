/* Qwen3-Next / Qwen3.5 hybrids (Qwen3NextForCausalLM) as transformers' modeling_qwen3_next.py
 * computes them, on top of the decoder layer of model/forward.h:
 *   - every RMSNorm but the DeltaNet's gated one scales by (1 + w): the loader adds 1 once (as Gemma);
 *   - layer_types (else full_attention_interval, default 4: every 4th layer full) picks the token
 *     mixer: "full_attention" is Qwen3 attention (q_norm/k_norm, RoPE on the first
 *     partial_rotary_factor·head_dim dims) whose q_proj has 2·heads·head_dim rows, per head the
 *     query's head_dim rows then the output gate's; the attention output is multiplied by
 *     sigmoid(gate) before o_proj. "linear_attention" is the gated DeltaNet below;
 *   - the MLP is Qwen2-MoE's sparse block (MOE_QWEN3_NEXT, model/moe.h) or a dense SwiGLU MLP.
 *
 * The gated DeltaNet of h [n, hidden] (Kh = linear_num_key_heads, Vh = linear_num_value_heads,
 * dk / dv their head dims, r = Vh / Kh): in_proj_qkvz(h) viewed per key head g as
 * [q dk | k dk | v r·dv | z r·dv] and in_proj_ba(h) per key head as [b r | a r]; the concatenation of
 * all q, all k, all v (conv_dim = 2·Kh·dk + Vh·dv) goes through the causal depthwise conv1d (kernel
 * linear_conv_kernel_dim, no bias) and SiLU; β = sigmoid(b), g = −exp(A_log)·softplus(a + dt_bias);
 * q and k are L2-normalized (x·rsqrt(Σx² + 1e-6)), q scaled by dk^-½, and value head h (key head h / r)
 * runs the gated delta rule from S = 0 [dk, dv]:
 *   S ← exp(g_t)·S;  S ← S + k_t ⊗ β_t·(v_t − Sᵀk_t);  o_t = Sᵀq_t;
 * then o ← RMSNorm over dv of o (eps rms_norm_eps) · norm.weight · silu(z) per value head, and
 * out_proj(o). The delta rule runs in double in transformers' chunked form, as its prefill does
 * without the fla kernels (torch_chunk_gated_delta_rule, chunks of 64 solved by a UT transform;
 * model_options.delta_rule_chunk 1 runs the token recurrence, torch_recurrent_gated_delta_rule:
 * tests/test_arch_qwen3_next.c and tests/hf measure the forms agree). Only fresh sequences are
 * supported (no incremental DeltaNet state). */
#ifndef ROTQ_MODEL_QWEN3_NEXT_H
#define ROTQ_MODEL_QWEN3_NEXT_H

#include <stdbool.h>

#include "family/family.h"
#include "io/checkpoint.h"

typedef struct deltanet_weights {
  int k_heads, v_heads, k_dim, v_dim, kernel; /* linear_num_key/value_heads, linear_key/value_head_dim,
                                                 linear_conv_kernel_dim */
  void *in_proj_qkvz;                         /* [2·k_heads·k_dim + 2·v_heads·v_dim, hidden] */
  void *in_proj_ba;                           /* [2·v_heads, hidden] */
  void *conv_weight;                          /* conv1d [conv_dim, 1, kernel] */
  void *dt_bias, *a_log;                      /* [v_heads] */
  void *norm;                                 /* gated RMSNorm weight [v_dim] (plain w, not 1 + w) */
  void *out_proj;                             /* [hidden, v_heads·v_dim] */
} deltanet_weights;

/* Whether decoder layer `layer` is a gated DeltaNet (layer_types "linear_attention"; without
 * layer_types, every full_attention_interval-th layer, default 4, is full attention). Fails on a
 * layer_types entry that is neither "linear_attention" nor "full_attention". */
int qwen3_next_layer_is_linear(const model_config *c, int layer, bool *linear, rotq_error *err);
/* Reads layer l's gated DeltaNet (the descriptor's names.linear_attn) in the compute type; shapes
 * checked against config.json's linear_* fields (Qwen3NextConfig's defaults when absent). */
int qwen3_next_read_deltanet(const checkpoint *ck, const family_descriptor *f, bool f32, int l, deltanet_weights **out,
                             rotq_error *err);
/* Reads q_proj [2·heads·head_dim, hidden] (and its bias) of layer l into the query rows *wq and the
 * output gate's rows *w_gate, each [heads·head_dim, hidden] (per head: query first, then gate). */
int qwen3_next_read_gated_q(const checkpoint *ck, const family_descriptor *f, bool f32, int l, bool bias, void **wq,
                            void **bq, void **w_gate, void **b_gate, rotq_error *err);
void deltanet_free(deltanet_weights *w);

#endif

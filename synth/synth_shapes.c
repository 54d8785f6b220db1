#include "synth/synth_shapes.h"

#include <string.h>

/* A shape: its name, what it is, and the spec fields it sets. */
typedef struct shape {
  const char *name, *description;
  synth_spec spec;
} shape;

/* clang-format off */
static const shape shapes[] = {
    {"llama-3-8b", "Llama-3(.1)-8B: hidden 4096, intermediate 14336, 32 layers, 32/8 heads, vocab 128256",
     {.architecture = "LlamaForCausalLM", .hidden_size = 4096, .intermediate_size = 14336, .num_layers = 32,
      .num_heads = 32, .num_kv_heads = 8, .vocab_size = 128256, .rope_theta = 500000, .llama3_rope_scaling = true,
      .llama3_rope_factor = 8, .max_position_embeddings = 131072, .rms_norm_eps = 1e-5, .bos_token_id = 128000,
      .eos_token_id = 128001}},
    {"llama-3.2-1b", "Llama-3.2-1B: hidden 2048, intermediate 8192, 16 layers, 32/8 heads of 64, tied, vocab 128256",
     {.architecture = "LlamaForCausalLM", .hidden_size = 2048, .intermediate_size = 8192, .num_layers = 16,
      .num_heads = 32, .num_kv_heads = 8, .head_dim = 64, .vocab_size = 128256, .tie_word_embeddings = true,
      .rope_theta = 500000, .llama3_rope_scaling = true, .llama3_rope_factor = 32, .max_position_embeddings = 131072,
      .rms_norm_eps = 1e-5, .bos_token_id = 128000, .eos_token_id = 128001}},
    {"llama-2-7b", "Llama-2-7B: hidden 4096, intermediate 11008, 32 layers, 32 heads, vocab 32000",
     {.architecture = "LlamaForCausalLM", .hidden_size = 4096, .intermediate_size = 11008, .num_layers = 32,
      .num_heads = 32, .num_kv_heads = 32, .vocab_size = 32000, .rope_theta = 10000, .max_position_embeddings = 4096,
      .rms_norm_eps = 1e-5, .bos_token_id = 1, .eos_token_id = 2}},
    {"qwen2.5-7b", "Qwen2.5-7B: hidden 3584, intermediate 18944, 28 layers, 28/4 heads, q/k/v biases, vocab 152064",
     {.architecture = "Qwen2ForCausalLM", .hidden_size = 3584, .intermediate_size = 18944, .num_layers = 28,
      .num_heads = 28, .num_kv_heads = 4, .vocab_size = 152064, .rope_theta = 1000000,
      .max_position_embeddings = 131072, .rms_norm_eps = 1e-6, .bos_token_id = 151643, .eos_token_id = 151643}},
    {"mistral-7b", "Mistral-7B-v0.1: hidden 4096, intermediate 14336, 32 layers, 32/8 heads, vocab 32000",
     {.architecture = "MistralForCausalLM", .hidden_size = 4096, .intermediate_size = 14336, .num_layers = 32,
      .num_heads = 32, .num_kv_heads = 8, .vocab_size = 32000, .rope_theta = 10000, .max_position_embeddings = 32768,
      .rms_norm_eps = 1e-5, .bos_token_id = 1, .eos_token_id = 2}},
    {"qwen3-8b", "Qwen3-8B: hidden 4096, intermediate 12288, 36 layers, 32/8 heads of 128, q/k norms, vocab 151936",
     {.architecture = "Qwen3ForCausalLM", .hidden_size = 4096, .intermediate_size = 12288, .num_layers = 36,
      .num_heads = 32, .num_kv_heads = 8, .head_dim = 128, .vocab_size = 151936, .rope_theta = 1000000,
      .max_position_embeddings = 40960, .rms_norm_eps = 1e-6, .bos_token_id = 151643, .eos_token_id = 151645}},
    {"tiny", "a small Llama-3-like model for tests: hidden 256, intermediate 688, 4 layers, 8/4 heads, vocab 1024",
     {.architecture = "LlamaForCausalLM", .hidden_size = 256, .intermediate_size = 688, .num_layers = 4,
      .num_heads = 8, .num_kv_heads = 4, .vocab_size = 1024, .rope_theta = 500000, .llama3_rope_scaling = true,
      .llama3_rope_factor = 8, .rms_norm_eps = 1e-5}},
    {"small", "a wider Llama-3-like model: hidden 1024, intermediate 2816, 4 layers, 16/4 heads, vocab 1024",
     {.architecture = "LlamaForCausalLM", .hidden_size = 1024, .intermediate_size = 2816, .num_layers = 4,
      .num_heads = 16, .num_kv_heads = 4, .vocab_size = 1024, .rope_theta = 500000, .llama3_rope_scaling = true,
      .llama3_rope_factor = 8, .rms_norm_eps = 1e-5}},
};
/* clang-format on */

int synth_shape(const char *name, synth_spec *spec) {
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    if (strcmp(name, shapes[i].name) != 0) continue;
    const synth_spec *s = &shapes[i].spec;
    spec->architecture = s->architecture;
    spec->hidden_size = s->hidden_size;
    spec->intermediate_size = s->intermediate_size;
    spec->num_layers = s->num_layers;
    spec->num_heads = s->num_heads;
    spec->num_kv_heads = s->num_kv_heads;
    spec->head_dim = s->head_dim;
    spec->vocab_size = s->vocab_size;
    spec->tie_word_embeddings = s->tie_word_embeddings;
    spec->rope_theta = s->rope_theta;
    spec->llama3_rope_scaling = s->llama3_rope_scaling;
    spec->llama3_rope_factor = s->llama3_rope_factor;
    spec->max_position_embeddings = s->max_position_embeddings;
    spec->rms_norm_eps = s->rms_norm_eps;
    spec->bos_token_id = s->bos_token_id;
    spec->eos_token_id = s->eos_token_id;
    return 0;
  }
  return -1;
}

const char *synth_shape_name(size_t i, const char **description) {
  if (i >= sizeof shapes / sizeof shapes[0]) return NULL;
  if (description) *description = shapes[i].description;
  return shapes[i].name;
}

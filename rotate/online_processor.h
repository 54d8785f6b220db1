/* QuaRotOnlineProcessor: the rotations that cannot be fused into weights alone. Its pre_run creates
 * the online matrices (Hadamard mode); its preprocess(layer) adds, to that layer's commands, the
 * weight half of each online rotation — W_down ← W_down·(R_m ⊗ R_n) (R4, Kronecker), W_o ←
 * W_o·(H_heads ⊗ I_head_dim) — whose activation half a serving engine (or rotq's forward pass, see
 * model/online_hooks.h) applies at inference; R3 (Hadamard on Q and K after RoPE) is activation
 * only. The export: rotation.json's "online" section, the online matrices as tensors, and a
 * compressed-tensors transform_config in config.json. */
#ifndef ROTQ_ROTATE_ONLINE_PROCESSOR_H
#define ROTQ_ROTATE_ONLINE_PROCESSOR_H

#include <stddef.h>
#include <stdint.h>

#include "io/safetensors_writer.h"
#include "rotate/quarot_processor.h"

struct cJSON;

/* Creates the online matrices for p's model. online_for: NULL, or "vllm" (R4 as normalized
 * Sylvester blocks, the form vLLM applies). */
int online_pre_run(quarot_processor *p, const char *online_for, uint64_t seed, rotq_error *err);
/* Adds layer's online weight halves to its commands; call before processor_preprocess(layer). */
int online_preprocess(quarot_processor *p, int layer, rotq_error *err);
/* The extra tensors the online export writes (0 when online rotations are off). */
size_t online_extra_tensor_count(const quarot_processor *p);
/* Fills specs (online_extra_tensor_count of them); returns the count. */
size_t online_extra_tensor_specs(const quarot_processor *p, st_spec *specs);
/* Writes the online tensors (after the layers). */
int online_write_tensors(quarot_processor *p, rotq_error *err);
/* Adds quantization_config.transform_config to config.json (no-op when off). */
int online_add_quantization_config(const quarot_processor *p, struct cJSON *config, rotq_error *err);
/* rotation.json's "online" section (null when off). */
struct cJSON *online_record(const quarot_processor *p);
void online_free(quarot_processor *p);

#endif

/* QuaRotOnlineProcessor: the rotations that cannot be fused into weights alone. It plans with the
 * processor (processor_init calls online_plan between commands_build and commands_complete, so the
 * online rotations are part of the plan that is checked and from which the writer is laid out):
 * it creates the online matrices (Hadamard mode, seeded from the run's seed):
 *
 *   R4       x·(R_m ⊗ R_n) before down_proj; offline W_down ← W_down·(R_m ⊗ R_n)
 *   R_heads  x·(R_heads ⊗ I_head_dim) before o_proj; offline W_o ← W_o·(R_heads ⊗ I_head_dim)
 *   R3       q·R3 and k·R3 per head after RoPE; activation only (it cancels in q·kᵀ)
 *
 * and attaches the weight halves to the commands of every layer they act on; the activation
 * halves are the serving engine's (rotq's forward pass applies them, see model/online_hooks.h).
 *
 * R4's split intermediate = m·n (m ≤ n): the largest m in {1, 2, 4k} with n in {1, 2, 4k ≤ 256}
 * and Hadamard matrices of both orders constructible (msModelSlim's near-square rule: 12288 →
 * 96·128, 17408 → 128·136, 4864 → 64·76; 172 → 1·172). With no such split, R4 is one rotation
 * of order intermediate, which linalg makes H_2^k ⊗ (random orthogonal) when no Hadamard matrix
 * of that order is constructible; the same fallback applies to R_heads and R3, and is reported.
 *
 * online_for "vllm" makes R4 = I ⊗ H_b, H_b the normalized Sylvester Hadamard of b = the largest
 * power of two dividing intermediate (at most 2^15), and R3 the normalized Sylvester H_head_dim —
 * the forms vLLM's kernel applies (see docs/online.md).
 *
 * The export: rotation.json's "online" section (each rotation's layers and recipe, which
 * model_load rebuilds), the online matrices as tensors "<module>.<group>_<location>.weight"
 * (each stored once, as √order·R: ±1 for Hadamard matrices), and quantization_config in
 * config.json with a compressed-tensors transform_config. */
#ifndef ROTQ_ROTATE_ONLINE_PROCESSOR_H
#define ROTQ_ROTATE_ONLINE_PROCESSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/safetensors_writer.h"
#include "rotate/quarot_processor.h"

struct cJSON;

/* The compressed-tensors version the exported quantization_config declares. */
#define ONLINE_COMPRESSED_TENSORS_VERSION "0.12.2"

/* R4's split of intermediate into m·n (the rule above). */
void online_kronecker_split(int intermediate, int *m, int *n);
/* Plans p's online rotations: creates the matrices, attaches each weight half to its command
 * (c->online, c->online_rotation) in every layer where it acts, and records its warnings in
 * p->commands.warnings. Fails, naming why, where a rotation has no single 2-D target per layer (MoE
 * experts), a vLLM target has a bias, or (online export) the input already has a
 * quantization_config. online_for: NULL, or "vllm". Freed by online_free. */
int online_plan(quarot_processor *p, const char *online_for, uint64_t seed, rotq_error *err);
/* The extra tensors the online export writes (0 when online rotations are off). */
size_t online_extra_tensor_count(const quarot_processor *p);
/* Fills specs (online_extra_tensor_count of them); returns the count. */
size_t online_extra_tensor_specs(const quarot_processor *p, st_spec *specs);
/* Writes the online tensors into p->context.writer (processor_finish, after the layers). */
int online_write_tensors(quarot_processor *p, rotq_error *err);
/* config.json's quantization_config of the export (compressed-tensors, with a transform_config);
 * NULL when online rotations are off (or out of memory: *failed set). */
struct cJSON *online_quantization_config(const quarot_processor *p, bool *failed);
/* rotation.json's "online" section (a JSON null when off); NULL when out of memory. */
struct cJSON *online_record(const quarot_processor *p);
void online_free(quarot_processor *p);

#endif

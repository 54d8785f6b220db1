/* `rotq quantize` as a library call: writes a compressed-tensors checkpoint (eval/pack.h) of a
 * HF checkpoint, streaming: every tensor is read, quantized (RTN) and written in row blocks, so
 * memory stays a few blocks whatever the model's size. Quantized are the Linear weights of the
 * decoder layers as the family's adapter describes them (the residual-stream readers of its fuse
 * map and its writers: q/k/v/o, gate/up/down, experts, Mamba in/out projections), except the MoE
 * routers (a reader whose last name component is "gate" or ends in "_gate"), which vLLM keeps
 * unquantized; everything else (embeddings, norms, biases, lm_head, Mamba conv/A/D) is copied
 * unchanged. config.json gets the quantization_config (kept: the transform_config of an input
 * rotated with online rotations); the other files of the input are copied. The output directory
 * is written atomically (rotate/output_dir.h). */
#ifndef ROTQ_ROTATE_QUANTIZE_COMMAND_H
#define ROTQ_ROTATE_QUANTIZE_COMMAND_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"
#include "eval/pack.h"

/* The compressed-tensors version whose format rotq writes (read from its source). */
#define QUANTIZE_COMPRESSED_TENSORS_VERSION "0.20.1"

typedef struct quantize_options {
  const char *model_dir;
  const char *output_dir;
  /* NULL, or a second output: the same checkpoint with every quantized weight replaced by its
   * dequantized value in the weight's dtype (what a decoder of the format computes), for tests. */
  const char *fake_quant_dir;
  ct_scheme scheme;
  bool force;
  int threads;            /* 0 = all cores */
  size_t max_shard_bytes; /* 0 = 5 GB */
  /* Polled between row blocks: when it becomes non-zero the run stops and removes its output. */
  const volatile sig_atomic_t *cancel;
  /* Notices (a stale partial output of a killed run removed) go here; NULL drops them. */
  rotq_log_fn log;
  void *log_context;
  /* After each tensor (may be NULL). */
  void (*progress)(size_t done, size_t total, void *user);
  void *user;
} quantize_options;

/* Summary of a run. */
typedef struct quantize_result {
  size_t quantized;    /* weights quantized */
  size_t copied;       /* tensors copied unchanged */
  size_t ignored;      /* decoder linears left unquantized (routers), listed in "ignore" */
  double input_bytes;  /* bytes of the input's tensors */
  double output_bytes; /* bytes of the output's tensors */
} quantize_result;

int quantize_checkpoint(const quantize_options *o, quantize_result *result, rotq_error *err);

#endif

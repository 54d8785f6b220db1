/* `rotq quantize` as a library call: writes a compressed-tensors checkpoint (eval/pack.h) of a
 * HF checkpoint, streaming: every tensor is read, quantized (RTN) and written in row blocks, so
 * memory stays a few blocks whatever the model's size. Quantized are the Linear weights of the
 * decoder layers as the family's adapter describes them (the residual-stream readers of its fuse
 * map and its writers: q/k/v/o, gate/up/down, experts, Mamba in/out projections), except the MoE
 * routers and shared-expert gates the descriptor names, which vLLM keeps unquantized; those, the
 * decoder's other Linears (MLA's q_b_proj, kv_b_proj) and fused [experts, in, out] experts are kept
 * and listed in "ignore"; everything else (embeddings, norms, biases, lm_head, Mamba conv/A/D) is
 * copied unchanged. config.json gets the quantization_config (kept: the transform_config of an input
 * rotated with online rotations); the other files of the input are copied. The output directory
 * is written atomically (rotate/output_dir.h). */
#ifndef ROTQ_ROTATE_QUANTIZE_COMMAND_H
#define ROTQ_ROTATE_QUANTIZE_COMMAND_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"
#include "eval/pack.h"
#include "io/safetensors_writer.h"
#include "rotate/adapter.h"

/* The compressed-tensors version whose format rotq writes (read from its source). */
#define QUANTIZE_COMPRESSED_TENSORS_VERSION "0.20.1"

/* Where the quantized weights come from when not from RTN (rotq quantize --method gptq,
 * rotate/quantize_gptq.h). prepare is called once before each quantized weight is written, serially
 * and in the written order (by decoder layer, then name); rows then for its rows [r0, r0 + n), from
 * the worker threads (disjoint rows, concurrently), and fills what ct_quantize_rows fills: weight,
 * scale (rounded to t's dtype), zero (asymmetric), fake (NULL, or the decoded values). */
typedef struct quantize_source {
  int (*prepare)(void *context, const st_tensor *t, int layer, rotq_error *err);
  int (*rows)(void *context, const st_tensor *t, int64_t r0, int64_t n, void *weight, double *scale, int32_t *zero,
              double *fake, rotq_error *err);
  void *context;
} quantize_source;

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
  /* Polled before each tensor (may be NULL): nonzero stops the run likewise (the public API's). */
  int (*cancel_fn)(void *context);
  void *cancel_context;
  /* Notices (a stale partial output of a killed run removed) go here; NULL drops them. */
  rotq_log_fn log;
  void *log_context;
  /* NULL: RTN; else the quantized weights' codes and scales come from it (int schemes only). */
  const quantize_source *source;
  /* After each tensor (may be NULL). */
  void (*progress)(size_t done, size_t total, void *user);
  void *user;
} quantize_options;

/* Summary of a run. */
typedef struct quantize_result {
  size_t quantized;    /* weights quantized */
  size_t copied;       /* tensors copied unchanged */
  size_t ignored;      /* "ignore" entries besides lm_head: routers, other kept linears, fused experts */
  double input_bytes;  /* bytes of the input's tensors */
  double output_bytes; /* bytes of the output's tensors */
} quantize_result;

int quantize_compressed(const quantize_options *o, quantize_result *result, rotq_error *err);

/* The same quantization inside the rotation stream (rotq rotate --quantize): one read, one write.
 * quantize_stream_open plans it from the rotation's outputs (their names, dtypes and shapes: what
 * `rotq quantize` would read from the rotated checkpoint, so the bytes written are the same) and
 * opens the output writer in dir, laid out as quantize_compressed lays it out.
 *
 * NVFP4A16: a weight's global scale is its fused group's (q/k/v; gate/up: the readers of one norm
 * in one parent module) joint max |W|, so its rows are held in memory as they come, and the whole
 * group is quantized and written once its last row has come (by the thread that brought it); then
 * the rows are let go. So NVFP4A16 holds the groups in flight: at most a layer's quantized weights
 * (the rotation completes a layer's tensors before starting the next layer's).
 *
 * Held rows live in buffers the stream keeps for reuse (the next layer's weights have the same
 * shapes); they are freed by quantize_stream_free. */
typedef struct quantize_stream quantize_stream;
struct cJSON;
quantize_stream *quantize_stream_open(const model_adapter *a, const ct_scheme *s, const st_spec *outputs, size_t count,
                                      const char *dir, size_t max_shard_bytes, int threads, rotq_error *err);
/* From now on the rotated rows of every quantized weight are also held in memory until
 * quantize_stream_release (for the in-stream check, which reads them with quantize_stream_held). */
void quantize_stream_keep_rows(quantize_stream *q);
/* The output writer: a tensor that is not quantized is written there under its own name. */
st_writer *quantize_stream_writer(const quantize_stream *q);
/* Rows quantized together (ct_row_block): quantize_stream_rows takes whole blocks of them. */
int quantize_stream_row_block(const quantize_stream *q);
/* The quantized weight called name (a handle for quantize_stream_rows), or -1: not quantized. */
long quantize_stream_index(const quantize_stream *q, const char *name);
/* Quantizes and writes rows [r0, r0 + n) of weight `index`, given as n full rows in the weight's
 * dtype (r0 and n multiples of quantize_stream_row_block, but for the last rows); refuses a NaN or
 * infinity naming the tensor and row. Thread-safe for disjoint rows; uses up to the stream's
 * threads. NVFP4A16: holds them, and quantizes the weight's fused group once it is complete. */
int quantize_stream_rows(quantize_stream *q, long index, int64_t r0, int64_t n, const void *rows, rotq_error *err);
/* The rotated rows of weight `index` held since quantize_stream_keep_rows ([rows, cols] in its
 * dtype), once all of them have come and until quantize_stream_release; else NULL. */
const void *quantize_stream_held(quantize_stream *q, long index);
/* Lets weight index's held rows go (their buffer returns to the stream's pool). */
void quantize_stream_release(quantize_stream *q, long index);
/* Bytes of rows held now, the most ever held at once, and the most the pool ever allocated (each
 * may be NULL). */
void quantize_stream_memory(quantize_stream *q, size_t *held, size_t *peak_held, size_t *peak_pool);
/* Sets config's quantization_config (keeping a transform_config), as quantize_compressed writes it. */
int quantize_stream_config(const quantize_stream *q, struct cJSON *config, rotq_error *err);
/* Checks every tensor was written (NVFP4A16: every fused group complete) and closes the writer
 * (quantize_stream_free still needed). */
int quantize_stream_finish(quantize_stream *q, rotq_error *err);
void quantize_stream_free(quantize_stream *q);

#endif

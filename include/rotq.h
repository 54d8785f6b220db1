/* rotq — rotate HuggingFace LLM checkpoints so they quantize well (QuaRot / SpinQuant R1, R2,
 * online R3/R4). The public library API. Every call that can fail takes a rotq_error* and returns
 * 0 on success, -1 on failure with err->message naming the file/tensor/field at fault. */
#ifndef ROTQ_H
#define ROTQ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the library's exported entry points: librotq.so is built with hidden visibility, so only
 * what carries ROTQ_API (every one of them rotq_-prefixed) is exported. */
#if defined(__GNUC__)
#define ROTQ_API __attribute__((visibility("default")))
#else
#define ROTQ_API
#endif

typedef struct rotq_error {
  char message[2048];
} rotq_error;

/* The library version, e.g. "0.1.0". */
ROTQ_API const char *rotq_version(void);

/* What rotq_rotate proves before it calls an output complete:
 *   in-stream    every batch (pre-run tensors, each decoder layer) read back while it is written and
 *                proven equivalent to the original (rotate/stream_check.h); any model size, little cost
 *   whole-model  the reference forward pass on the original and the written checkpoint, logits
 *                compared (loads both models: small models) */
#define ROTQ_VERIFY_AUTO (-1)   /* in-stream; whole-model too for models up to 50M parameters */
#define ROTQ_VERIFY_OFF 0       /* nothing (the output is not proven) */
#define ROTQ_VERIFY_ALL 1       /* in-stream and whole-model, whatever the size */
#define ROTQ_VERIFY_IN_STREAM 2 /* in-stream only */

/* What the library tells a caller through a log callback. The CLI shows DEBUG only with
 * ROTQ_TIMING=1, and INFO and WARNING unless --quiet; NOTICE always. */
typedef enum rotq_log_level {
  ROTQ_LOG_DEBUG = 0,   /* timings: where the time went (read, compute, convert, write) */
  ROTQ_LOG_INFO = 1,    /* reports: the verify results, the run's summary */
  ROTQ_LOG_NOTICE = 2,  /* what happened to the file system beside the output (a stale partial
                         * output of a killed run removed, a previous output restored) */
  ROTQ_LOG_WARNING = 3, /* the output is complete but something deserves a look (rules that matched
                         * nothing, a fallback construction, a check skipped) */
} rotq_log_level;

/* A log callback: level, and the message (one line, no trailing newline), valid during the call. */
typedef void (*rotq_log_fn)(rotq_log_level level, const char *message, void *context);

/* A progress report. phase is "prepare" (matrices and commands made; layers = the layer count),
 * "layers" (decoder layer `layer` of `layers` written, 1-based), "finish" (config.json,
 * rotation.json and the other files), or "verify" (the whole-model check). bytes_written of
 * bytes_total: tensor bytes of the output written so far (estimated from the layers done). */
typedef struct rotq_progress {
  const char *phase;
  int layer, layers;
  uint64_t bytes_written, bytes_total;
} rotq_progress;

/* Options of a rotation run: what `rotq rotate` does. Start from rotq_rotate_default_options()
 * (the CLI's defaults), then set fields. A zero-initialised struct also works, but its verify is
 * ROTQ_VERIFY_OFF: the output is then not proven.
 *
 * The rotation config, like the seed's config_path_or_dict, is given one of three ways:
 *   config = "nemotron_h"              a built-in config by name (`rotq config list`)
 *   config = "path/to/my.yaml"         a YAML file
 *   config_text = "rotation_matrices: ..."   the config itself, in memory: YAML, or JSON (JSON is
 *                                      YAML's flow syntax: {"rotation_matrices": {...}, ...})
 * Neither: the architecture's own built-in config. Both: an error. The same config as a file and
 * as text rotates identically (only rotation.json's config_name differs: the path, or "<config text>"). */
typedef struct rotq_rotate_options {
  const char *model_dir;   /* input HF checkpoint directory (config.json + safetensors) */
  const char *output_dir;  /* output directory; must not exist unless force */
  const char *config;      /* built-in config name or YAML path; NULL = the architecture's own */
  const char *config_text; /* the config as YAML/JSON text (NUL-terminated), instead of config; NULL = none */
  uint64_t seed;           /* seed of every random matrix */
  int threads;             /* worker threads; 0 = all cores */
  int online;              /* 1 = also apply the online rotations (R3/R4, o_proj heads) */
  const char *online_for;  /* NULL, or "vllm": online R4 as vLLM's normalized Sylvester blocks */
  int force;               /* replace an existing output directory */
  int verify;              /* ROTQ_VERIFY_*; the defaults: ROTQ_VERIFY_AUTO (zero: OFF) */
  size_t max_shard_bytes;  /* 0 = 5 GB, like HF */
  int progress;            /* kept for the layout; the library ignores it (see on_progress) */
  int quiet;               /* kept for the layout; the library ignores it: it prints nothing */
  /* Called (when set) with what the caller should tell the user: an existing output replaced
   * under force, files of the input not carried over. The library itself does not print these. */
  void (*notice)(const char *message, void *context);
  void *notice_context;
  /* The library writes nothing to stderr or stdout. What `rotq rotate` prints comes through log
   * (when set), one line per call, without a trailing newline (see rotq_log_level). */
  rotq_log_fn log;
  void *log_context;
  /* Called (when set) as the run moves on: a phase's start and each decoder layer written. */
  void (*on_progress)(const rotq_progress *progress, void *context);
  void *progress_context;
  /* Polled (when set) before each decoder layer, before the final files and after verify: a
   * nonzero return stops the run, which then fails with "cancelled; the partial output was
   * removed" and leaves no output (nor a temporary directory). The library installs no signal
   * handlers: a caller that wants SIGINT to stop a run sets a flag in its handler and returns it
   * here (the CLI does). */
  int (*cancel)(void *context);
  void *cancel_context;
  /* "bf16", "f16", "f32" or "f64": every tensor is written so; NULL = each keeps its own dtype and
   * quantized (FP8, MXFP4) tensors are written as bf16. */
  const char *dtype;
  /* Group-sized rotations (docs/quantization.md): > 0, a power of two b: R1, R2 and the online R4
   * and heads rotations block-diagonal, no block straddling a quantization group of b values (the
   * config's block_size, replaced); 0 = the config's (the built-ins: full size); -1 = full size. */
  int block_size;
  /* NULL, or "W4A16" | "W8A8" | "FP8" | "FP8_BLOCK" | "NVFP4A16" | "MXFP4A16": the decoder layers' Linear weights
   * quantized (RTN) as they are rotated and written in the compressed-tensors format vLLM serves, in one read and one
   * write (docs/quantize.md): the same bytes as rotq_rotate then `rotq quantize` with the scheme. quantize_group:
   * W4A16's group size (0 = 128); quantize_asymmetric: W4A16 with zero points. */
  const char *quantize;
  int quantize_group;
  int quantize_asymmetric;
} rotq_rotate_options;

/* The options `rotq rotate` runs with when given only --model and --output: verify =
 * ROTQ_VERIFY_AUTO, seed 0, all cores, no online rotations, 5 GB shards, the architecture's own
 * config. model_dir and output_dir are NULL: set them. */
ROTQ_API rotq_rotate_options rotq_rotate_default_options(void);

/* Rotates a checkpoint: writes options->output_dir (atomically: a temporary sibling directory
 * renamed into place when complete). Fails (-1, err) on bad options (online_for without online,
 * config and config_text both), a bad input, an I/O error, a failed check, out of memory, or
 * cancel; a failed run leaves no output. Acts on nothing outside the input and output
 * directories: no signal handlers, no stderr, OpenBLAS's thread count left to the caller. Threaded OpenBLAS
 * changes the last bits of dense products with its thread count: the output is reproducible (and
 * what `rotq rotate`, which sets OpenBLAS to one thread around the call, writes) with OpenBLAS
 * at one thread; with more, the run logs a warning. */
ROTQ_API int rotq_rotate(const rotq_rotate_options *options, rotq_error *err);

/* Quantizes a (usually rotated) checkpoint by round-to-nearest into the compressed-tensors format
 * vLLM serves: `rotq quantize` (docs/quantize.md). */
typedef struct rotq_quantize_options {
  const char *model_dir;  /* input HF checkpoint directory */
  const char *output_dir; /* output directory; must not exist unless force */
  /* "W4A16" | "W8A8" | "FP8" | "FP8_BLOCK" | "NVFP4A16" | "MXFP4A16" (any case) */
  const char *scheme;
  int group_size;             /* W4A16: input columns per scale; 0 = 128 */
  int asymmetric;             /* W4A16: zero points */
  const char *fake_quant_dir; /* NULL, or also the dequantized checkpoint (for checks and rotq_eval) */
  int threads;                /* 0 = all cores */
  int force;                  /* replace an existing output directory */
  size_t max_shard_bytes;     /* 0 = 5 GB */
  rotq_log_fn log;            /* notices (a stale partial output removed); may be NULL */
  void *log_context;
  /* Polled (when set) before each tensor: nonzero stops the run, which fails with "cancelled" and
   * leaves no output. */
  int (*cancel)(void *context);
  void *cancel_context;
} rotq_quantize_options;

typedef struct rotq_quantize_result {
  size_t quantized;    /* weights quantized */
  size_t copied;       /* tensors copied unchanged */
  size_t ignored;      /* "ignore" entries besides lm_head: routers, MLA's q_b/kv_b_proj, fused experts */
  double input_bytes;  /* the input's tensor bytes */
  double output_bytes; /* the output's tensor bytes */
} rotq_quantize_result;

/* Writes options->output_dir (atomically, as rotq_rotate); result may be NULL. -1 with err on a
 * bad option (unknown scheme, group_size or asymmetric with another scheme), an input that is
 * quantized already, a weight the scheme's group does not divide (the tensor named), a NaN or
 * infinity, an I/O error or cancel. */
ROTQ_API int rotq_quantize(const rotq_quantize_options *options, rotq_quantize_result *result, rotq_error *err);

/* ---- Evaluation, comparison, the report experiment, synthetic checkpoints ----
 * What `rotq eval`, `rotq compare`, `rotq report` and `rotq synth` do, as library calls. Like
 * rotq_rotate they print nothing (messages through log, when set) and act on nothing but the
 * files named in their options. They use OpenBLAS as the process has set it up. */

/* Fake quantization of a model under evaluation (docs/quantization.md; `rotq eval --help`).
 * Zero fields take the defaults: bits 16 (off), clips 0.9 (activations) and 0.95 (KV), formats
 * "int", weights by RTN per output channel, GPTQ damping 0.01 and 128 calibration segments. */
typedef struct rotq_quant_options {
  int wbits;              /* weight bits 2..8; 0 or 16 = full precision */
  const char *wformat;    /* NULL/"int", "fp8", "mxfp4", "nvfp4" (float formats: RTN) */
  const char *w_method;   /* NULL/"rtn" or "gptq" */
  int w_group;            /* input columns per weight scale; 0 = per output channel */
  int act_order;          /* GPTQ: columns of largest Hessian diagonal first */
  double damp;            /* GPTQ: relative damping; 0 = 0.01 */
  const char *calib_path; /* GPTQ calibration tokens; NULL = the evaluated token file */
  size_t calib_segments;  /* GPTQ: segments from the end of calib_path; 0 = 128 */
  int abits, kvbits;      /* activation and KV-cache bits 2..8; 0 or 16 = off */
  const char *aformat;    /* NULL/"int", "fp8", "mxfp4", "nvfp4" */
  double a_clip, kv_clip; /* clip ratios in (0, 1]; 0 = 0.9 / 0.95 */
  int kv_group;           /* KV values per scale; 0 = head_dim */
} rotq_quant_options;

/* Perplexity (and, against a reference, KL) of a checkpoint on a token file: `rotq eval`. */
typedef struct rotq_eval_options {
  const char *model_dir;     /* checkpoint directory */
  const char *tokens_path;   /* uint16 little-endian token ids, BOS-delimited segments */
  int ctx;                   /* tokens per segment, 2..1000000; 0 = 512 */
  size_t segments;           /* segments evaluated, from the first; 0 = all (before GPTQ's) */
  int f32;                   /* compute in float32 (default float64) */
  const char *reference_dir; /* NULL, or the checkpoint the KL divergence is measured against */
  rotq_quant_options quant;
  rotq_log_fn log;
  void *log_context;
  /* phase "segments" (layer = segments done of layers) and "gptq" (layer i of layers) */
  void (*on_progress)(const rotq_progress *progress, void *context);
  void *progress_context;
} rotq_eval_options;

typedef struct rotq_eval_result {
  double nll;       /* mean negative log-likelihood, nats per predicted token */
  double ppl;       /* exp(nll) */
  double kl;        /* with reference_dir: mean KL(p_reference ‖ p_model) per token, nats; else 0 */
  size_t predicted; /* tokens predicted */
  size_t segments;  /* segments evaluated */
} rotq_eval_result;

/* Evaluates options->model_dir (fake-quantized as options->quant says) on the token file:
 * fills *result; -1 with err on a bad option, input or token (an id outside the vocabulary). */
ROTQ_API int rotq_eval(const rotq_eval_options *options, rotq_eval_result *result, rotq_error *err);

/* Two checkpoints' logits on the same tokens: `rotq compare`. */
typedef struct rotq_compare_options {
  const char *a_dir, *b_dir;
  const char *tokens_path; /* NULL: BOS then a fixed pseudo-random sequence */
  int n;                   /* tokens (the file's first n); 0 = 64 */
  double tolerance;        /* on the relative difference; < 0 = that of the coarser dtype */
} rotq_compare_options;

typedef struct rotq_compare_result {
  int tokens;           /* tokens run */
  double max_abs_diff;  /* max |logit_a − logit_b| */
  double max_abs_logit; /* max |logit_a| */
  double relative;      /* max_abs_diff / max_abs_logit */
  double tolerance;     /* the tolerance applied */
  int argmax_agree;     /* positions whose argmax is the same */
  int within_tolerance; /* relative ≤ tolerance */
} rotq_compare_result;

/* Runs both checkpoints through the reference forward pass: 0 with *result filled (whether or
 * not within tolerance: see result->within_tolerance), -1 on an error (a model that does not
 * load, vocabularies that differ). */
ROTQ_API int rotq_compare(const rotq_compare_options *options, rotq_compare_result *result, rotq_error *err);

/* The experiment of `rotq report`: the model, its R1R2 rotation and its R1R2+online rotation,
 * each evaluated fake-quantized in every setting of the table (rows) with RTN and GPTQ weights. */
#define ROTQ_REPORT_VARIANTS 3 /* "original", "R1R2", "R1R2+online" */
#define ROTQ_REPORT_ROWS 9     /* FP, W8A8, W4A16, W4A8, W4A4, W4A4KV4, W8A8 FP8, W4A4 MXFP4, W4A4 NVFP4 */

typedef struct rotq_report_options {
  const char *model_dir, *tokens_path;
  const char *scratch_dir; /* an existing directory for the rotated copies (as large as the model):
                            * the caller creates it and removes it afterwards */
  size_t segments;         /* evaluated segments, from the first; 0 = 60 */
  int ctx;                 /* tokens per segment; 0 = 512 */
  int rtn, gptq;           /* weight quantizers measured (at least one) */
  const char *calib_path;  /* GPTQ calibration tokens; NULL = tokens_path */
  size_t calib_segments;   /* from the end of calib_path; 0 = 128 */
  uint64_t seed;           /* seed of the rotations */
  int w_group, act_order;
  double damp, a_clip, kv_clip; /* 0 = 0.01, 0.9, 0.95 */
  int f32;
  /* INFO: each step ("rotating (R1R2) into ...", "[3/45] R1R2 W8A8 RTN ppl ... KL ...",
   * "GPTQ W4 of R1R2", "no R1R2+online column: ..."); NOTICE/DEBUG of the rotations */
  rotq_log_fn log;
  void *log_context;
  /* phase "rotate" (a rotation starts; layer = variant), "evaluate" (the rotations are done),
   * "gptq" (layer i of layers quantized) */
  void (*on_progress)(const rotq_progress *progress, void *context);
  void *progress_context;
  int (*cancel)(void *context); /* polled as rotq_rotate polls it, and between evaluations */
  void *cancel_context;
} rotq_report_options;

typedef struct rotq_report_row {
  const char *name; /* "W4A8", ... */
  int wbits, abits, kvbits;
  const char *format; /* "int", "fp8", "mxfp4", "nvfp4" */
} rotq_report_row;

typedef struct rotq_report_result {
  const char *variant_names[ROTQ_REPORT_VARIANTS];
  rotq_report_row rows[ROTQ_REPORT_ROWS];
  int available[ROTQ_REPORT_VARIANTS];         /* the variant was made (the online one may not be) */
  char unavailable[ROTQ_REPORT_VARIANTS][512]; /* why not */
  /* [variant][row][weights: 0 RTN, 1 GPTQ]; ppl < 0: not measured */
  double ppl[ROTQ_REPORT_VARIANTS][ROTQ_REPORT_ROWS][2];
  double kl[ROTQ_REPORT_VARIANTS][ROTQ_REPORT_ROWS][2];
  size_t segments;       /* evaluated segments */
  size_t predicted;      /* tokens predicted per evaluation */
  size_t calib_first;    /* GPTQ: index of the first calibration segment of calib_path */
  size_t calib_segments; /* GPTQ: calibration segments used */
} rotq_report_result;

/* Runs the experiment into *result (the rotated copies in options->scratch_dir); -1 with err on
 * a bad option or input, a failed rotation (the online one only marks its column unavailable),
 * or cancel ("cancelled; ..."). The caller formats the table (the CLI: Markdown and JSON). */
ROTQ_API int rotq_report(const rotq_report_options *options, rotq_report_result *result, rotq_error *err);

/* `rotq report --format F`: what group-sized rotations buy for one target format. The columns are
 * the original, the full-size rotation (R1R2), the group-sized rotation (R1R2 with block_size, see
 * rotq_rotate_options) and the group-sized rotation with the online rotations; the rows FP (the
 * equivalence check), weights only, activations only, and both, weights by RTN. The formats:
 *   "mxfp4"  MXFP4 weights and activations (groups of 32, E8M0 scales); block 32
 *   "nvfp4"  NVFP4 weights and activations (groups of 16, E4M3 scales, FP32 global); block 16
 *   "fp8"    FP8 E4M3, weights per output channel, activations per token; block 128
 *   "int4"   INT4 symmetric, weights and activations in groups of w_group (0 = 128) values along
 *            the input; block w_group
 * Of rotq_report_options it takes model_dir, tokens_path, scratch_dir, segments, ctx, seed,
 * w_group (int4), a_clip (int4), f32, log, on_progress and cancel; rtn, gptq and the rest are
 * ignored. block_size 0 = the format's block above. */
#define ROTQ_FORMAT_VARIANTS 4 /* "original", "R1R2", "R1R2 block", "R1R2 block+online" */
#define ROTQ_FORMAT_ROWS 4     /* FP, weights only, activations only, weights and activations */

typedef struct rotq_format_report_result {
  const char *format; /* "mxfp4", ... */
  int block_size;     /* of the group-sized rotations (requested; each rotation's block is the
                       * largest power of two dividing its order, at most this) */
  int group;          /* values per scale of the format (fp8: 0, per row) */
  const char *variant_names[ROTQ_FORMAT_VARIANTS];
  char row_names[ROTQ_FORMAT_ROWS][32]; /* "FP", "W4A16 MXFP4", "W16A4 MXFP4", "W4A4 MXFP4" */
  int available[ROTQ_FORMAT_VARIANTS];
  char unavailable[ROTQ_FORMAT_VARIANTS][512];
  double ppl[ROTQ_FORMAT_VARIANTS][ROTQ_FORMAT_ROWS]; /* < 0: not measured */
  double kl[ROTQ_FORMAT_VARIANTS][ROTQ_FORMAT_ROWS];
  size_t segments, predicted;
} rotq_format_report_result;

/* Runs that experiment (rotated copies in options->scratch_dir); -1 with err on an unknown format,
 * a bad option or input, a failed rotation (the online one only marks its column unavailable), a
 * rotated model that does not compute the original's function, or cancel. */
ROTQ_API int rotq_report_format(const rotq_report_options *options, const char *format, int block_size,
                                rotq_format_report_result *result, rotq_error *err);

/* A synthetic checkpoint shaped like a real model: `rotq synth` (shapes: `rotq synth --help`). */
typedef struct rotq_synth_options {
  const char *shape;      /* shape name, e.g. "llama-3.2-1b" */
  const char *output_dir; /* written (created) */
  const char *dtype;      /* NULL/"bf16", "f16", "f32", "f64", "fp8" (linear weights FP8 E4M3, 128×128 block scales) */
  int layers;             /* 0 = the shape's */
  uint64_t seed;
  size_t max_shard_bytes; /* 0 = 5 GB */
  int outliers;           /* planted outlier channels (also implied by the next three) */
  double outlier_scale;   /* 0 = the default */
  int outlier_channels;   /* 0 = 1 */
  int feature_rank;       /* with outliers: 0 = hidden/16, > 0 that rank, < 0 none (rank 0) */
  double logit_scale;     /* 0 = the default */
} rotq_synth_options;

/* Writes the checkpoint; -1 with err on an unknown shape or dtype, or an I/O error. */
ROTQ_API int rotq_synth(const rotq_synth_options *options, rotq_error *err);

#ifdef __cplusplus
}
#endif
#endif

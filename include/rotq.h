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
  int progress;            /* 1 = per-layer progress line on stderr */
  int quiet;               /* 1 = no warnings, verify report or summary on stderr */
  /* Called (when set) with what the caller should tell the user: an existing output replaced
   * under force, files of the input not carried over. The library itself does not print these. */
  void (*notice)(const char *message, void *context);
  void *notice_context;
  /* "bf16", "f16", "f32" or "f64": every tensor is written so; NULL = each keeps its own dtype and
   * quantized (FP8, MXFP4) tensors are written as bf16. */
  const char *dtype;
} rotq_rotate_options;

/* The options `rotq rotate` runs with when given only --model and --output: verify =
 * ROTQ_VERIFY_AUTO, seed 0, all cores, no online rotations, 5 GB shards, the architecture's own
 * config. model_dir and output_dir are NULL: set them. */
ROTQ_API rotq_rotate_options rotq_rotate_default_options(void);

/* Rotates a checkpoint: writes options->output_dir (atomically: a temporary sibling directory
 * renamed into place when complete). */
ROTQ_API int rotq_rotate(const rotq_rotate_options *options, rotq_error *err);

#ifdef __cplusplus
}
#endif
#endif

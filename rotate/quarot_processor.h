/* QuaRotProcessor: the seed's processor. processor_init plans the whole run before anything is
 * written: it asks the adapter for the fuse map, bake names and rotate pairs and turns them into
 * commands; with online rotations the online processor (rotate/online_processor.h) attaches their
 * weight halves to the commands and lays out its export; then the plan, online rotations
 * included, is checked (commands_complete), and the output tensors (p->outputs, from which the
 * writer is laid out), config.json's quantization_config and rotation.json's online section are
 * fixed. pre_run() executes the pre-run commands (embedding, lm_head, final norm);
 * preprocess(layer) executes the commands of "model.layers.{layer}" through the pipeline
 * (rotate/pipeline.h), after asking the kernel to read the next layer's tensors ahead; finish()
 * writes the online export's tensors. Only the pieces in flight are in memory (plus the rotation
 * matrices). processor_timing says where the time went (the runner logs it at ROTQ_LOG_DEBUG). */
#ifndef ROTQ_ROTATE_QUAROT_PROCESSOR_H
#define ROTQ_ROTATE_QUAROT_PROCESSOR_H

#include "rotate/adapter.h"
#include "config/rotation_config.h"
#include "io/safetensors_writer.h"
#include "io/checkpoint.h"
#include "rotate/rotate_command.h"
#include "rotate/rotation_set.h"
#include "rotate/tensor_transform.h"

struct cJSON;

/* What a run asks the processor to plan, besides the config. */
typedef struct processor_options {
  uint64_t seed;          /* every matrix's seed derives from it (rotate/rotation_set.h) */
  int threads;            /* 0 = one per CPU */
  bool online;            /* plan the online rotations too (so does the config's online: true) */
  const char *online_for; /* NULL, or "vllm" (online_plan) */
  const char *dtype;      /* NULL, or "bf16" | "f16" | "f32" | "f64": every output tensor's dtype
                             (else a float tensor keeps its own, a quantized one becomes bf16) */
} processor_options;

typedef struct quarot_processor {
  const checkpoint *ck;
  const model_adapter *adapter;
  const rotation_config *config;
  rotation_set matrices;
  command_list commands;       /* sorted: pre-run tensors first, then by layer, then by name */
  transform_context context;   /* writer set by the runner before pre_run */
  struct online_state *online; /* the online processor's matrices, or NULL */
  uint64_t seed;               /* the run's seed */
  /* The plan's outputs, fixed by processor_init: */
  st_spec *outputs; /* every output tensor in writing order: the commands', then the
                       online export's (names point into the plan) */
  size_t output_count;
  struct cJSON *quantization_config; /* config.json's (the online export), or NULL */
  struct cJSON *online_section;      /* rotation.json's "online" (a JSON null when off) */
  struct pipeline *pipeline;         /* created by the first batch */
  struct stream_check *check;        /* in-stream verification of each batch, or NULL (set by the runner) */
  int batches_queued;                /* batches (pre-run, layer 0, ...) queued for reading ahead */
  transform_timing timing;           /* the pipeline threads' time, summed */
  double elapsed;                    /* seconds inside pre_run and preprocess */
} quarot_processor;

/* Plans the run: the matrices, the commands, the online rotations (options->online or
 * config->online) and the outputs, all checked; nothing is written yet. On failure p holds
 * nothing to free. */
int processor_init(quarot_processor *p, const checkpoint *ck, const model_adapter *adapter,
                   const rotation_config *config, const processor_options *options, rotq_error *err);
/* Frees p. */
void processor_free(quarot_processor *p);
/* "timing: transforms ... s wall, ...": the transforms' wall time and each phase's share of the
 * pipeline threads' time, into text[size]. */
void processor_timing(const quarot_processor *p, char *text, size_t size);
/* Executes the pre-run commands (tensors outside the decoder layers). */
int processor_pre_run(quarot_processor *p, rotq_error *err);
/* Executes the commands of decoder layer `layer`. The in-stream check of a batch (p->check) runs
 * beside the next batch; its failure fails the next call, or processor_finish. */
int processor_preprocess(quarot_processor *p, int layer, rotq_error *err);
/* Waits for the last batch's in-stream check, then writes the online export's tensors; the status. */
int processor_finish(quarot_processor *p, rotq_error *err);

#endif

/* QuaRotProcessor: the seed's processor. pre_run() asks the adapter for the fuse map, bake names
 * and rotate pairs, turns them into commands, and executes the pre-run ones (embedding, lm_head,
 * final norm); preprocess(layer) filters the commands of "model.layers.{layer}" and executes
 * them through the pipeline (rotate/pipeline.h), after asking the kernel to read the next layer's
 * tensors ahead. Only the pieces in flight are in memory (plus the rotation matrices).
 * processor_timing says where the time went (the runner logs it at ROTQ_LOG_DEBUG). */
#ifndef ROTQ_ROTATE_QUAROT_PROCESSOR_H
#define ROTQ_ROTATE_QUAROT_PROCESSOR_H

#include "family/adapter.h"
#include "config/rotation_config.h"
#include "io/checkpoint.h"
#include "rotate/rotate_command.h"
#include "rotate/rotation_set.h"
#include "rotate/tensor_transform.h"

typedef struct quarot_processor {
  const checkpoint *ck;
  const model_adapter *adapter;
  const rotation_config *config;
  rotation_set matrices;
  command_list commands;       /* sorted: pre-run tensors first, then by layer, then by name */
  transform_context context;   /* writer set by the runner before pre_run */
  struct online_state *online; /* the online processor's matrices, or NULL */
  struct pipeline *pipeline;   /* created by the first batch */
  struct stream_check *check;  /* in-stream verification of each batch, or NULL (set by the runner) */
  int batches_queued;          /* batches (pre-run, layer 0, ...) queued for reading ahead */
  transform_timing timing;     /* the pipeline threads' time, summed */
  double elapsed;              /* seconds inside pre_run and preprocess */
} quarot_processor;

/* Creates the matrices and the commands (and checks them); nothing is written yet. */
int processor_init(quarot_processor *p, const checkpoint *ck, const model_adapter *adapter,
                   const rotation_config *config, uint64_t seed, int threads, rotq_error *err);
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
/* Waits for the last batch's in-stream check; its status. */
int processor_finish(quarot_processor *p, rotq_error *err);

#endif

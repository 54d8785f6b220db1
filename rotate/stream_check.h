/* In-stream verification: while the output is written, every batch (the pre-run tensors, then each
 * decoder layer) is proven equivalent to the original before it leaves the page cache, for every
 * model size, reading nothing more from the checkpoint than the rotation itself reads.
 *
 * What is checked comes from the adapter's knowledge of the architecture and the real tensors, not
 * from the user's config. With h a few probe rows of the residual stream (a real token's embedding
 * and a Gaussian row; the rotated stream is S(h) = h·R1, centred first for LayerNorm families, R1
 * the embedding's input rotation with its reflection), and primes for the written tensors:
 *
 *   embedding, positions   E'·S(y) = E·c(y)  for random y (every row at once; c = centring or I)
 *   stream readers         W'·norm'(S(h)) + b' = W·norm(h) + b   for every linear the adapter says
 *                          reads the stream through that norm (q/k/v, gate/up, router, experts,
 *                          in_proj, lm_head), with the norms' written weights, whatever was fused
 *   value → output path    o'(mix(v'(norm'(S(h))))) + b' = S(o(mix(v(norm(h)))) + b), mix being
 *                          per-head attention with random weights per head over the probe positions
 *                          (GQA head sharing as config.json says), then the online heads rotation:
 *                          a rotation spanning heads, or a v/o pair that disagrees, fails here
 *   other stream writers   W'·(z·Ronline) + b' = S(W·z + b)   for random z (down_proj with R4,
 *                          experts' down projections, out_proj of Mamba layers)
 *   everything else        bytes identical to the input (a tensor that neither reads nor writes the
 *                          stream must not change)
 *
 * Since the readers' outputs are identical, everything between readers and writers (softmax of
 * q·kᵀ, RoPE, activations, the Mamba scan) sees identical inputs; so these checks prove the layer's
 * equivalence, up to the tolerance of the output dtype's rounding. Probes are seeded: the check is
 * reproducible. Errors name the layer, the tensor and the relative error. */
#ifndef ROTQ_ROTATE_STREAM_CHECK_H
#define ROTQ_ROTATE_STREAM_CHECK_H

#include <stddef.h>

#include "common/error.h"

struct quarot_processor;
struct cJSON;

typedef struct stream_check stream_check;

typedef struct stream_check_summary {
  int batches;         /* pre-run and decoder layers checked */
  size_t tensors;      /* tensors checked (products or bytes) */
  size_t elements;     /* weight elements read back and multiplied or compared */
  double max_relative; /* the largest relative error of any check */
  double max_ratio;    /* the largest relative error / its tolerance (< 1 when all pass) */
  char worst[300];     /* the tensor of max_ratio */
  double seconds;      /* time spent checking */
} stream_check_summary;

/* A checker for p's plan and output writer (p->context.writer must be set). */
stream_check *stream_check_create(const struct quarot_processor *p, rotq_error *err);
/* Checks batch `layer` (-1 = pre-run) once it is written and before it leaves the page cache. */
int stream_check_batch(stream_check *sc, int layer, rotq_error *err);
const stream_check_summary *stream_check_result(const stream_check *sc);
/* {"method": ..., "probes": ..., "batches": ..., ...} for rotation.json. */
struct cJSON *stream_check_to_json(const stream_check *sc);
void stream_check_free(stream_check *sc);

/* The relative-error tolerance for a written tensor of dtype t (rounding of the output). */
double stream_check_tolerance(int dtype_value, int use_float64);

#endif

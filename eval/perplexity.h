/* Perplexity of a model on a token file: each BOS-delimited segment is evaluated on its own (a
 * fresh sequence), only its first ctx tokens; the mean negative log-likelihood is over every
 * predicted token (each token of a segment's window after the first). */
#ifndef ROTQ_EVAL_PERPLEXITY_H
#define ROTQ_EVAL_PERPLEXITY_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

typedef struct perplexity_result {
  double nll;       /* mean negative log-likelihood, nats per token */
  double ppl;       /* exp(nll) */
  double kl;        /* with a reference: mean KL(p_reference ‖ p_model) per predicted token, nats */
  size_t predicted; /* tokens predicted */
  size_t segments;  /* segments evaluated */
} perplexity_result;

/* Called after each segment with the number done and the number to do. */
typedef void (*perplexity_progress)(size_t done, size_t total, void *user);

typedef struct perplexity_options {
  int ctx;                      /* tokens of each segment, ≥ 2 */
  size_t first_segment;         /* segments skipped (e.g. those used for calibration) */
  size_t max_segments;          /* 0 = all from first_segment on */
  model *reference;             /* NULL, or the model the KL is measured against (same vocab) */
  perplexity_progress progress; /* NULL, or called after each segment */
  void *user;
} perplexity_options;

/* perplexity_eval with a segment range and, with a reference, the KL divergence. */
int perplexity_measure(model *m, const int32_t *tokens, size_t count, const perplexity_options *options,
                       perplexity_result *out, rotq_error *err);

/* Evaluates the first max_segments segments (0 = all) of tokens[0..count), ctx ≥ 2 tokens of
 * each. progress may be NULL. An out-of-vocabulary id is an error naming its position. */
int perplexity_eval(model *m, const int32_t *tokens, size_t count, int ctx, size_t max_segments,
                    perplexity_progress progress, void *user, perplexity_result *out, rotq_error *err);

/* −log softmax(logits)[target] over a row of vocab logits, by log-sum-exp in double. */
double token_nll(const double *logits, int vocab, int target);

#endif

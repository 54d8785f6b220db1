#include "eval/perplexity.h"

#include <math.h>
#include <stdlib.h>

#include "eval/kl.h"
#include "eval/token_file.h"

double token_nll(const double *logits, int vocab, int target) {
  double max = logits[0];
  for (int j = 1; j < vocab; j++) max = logits[j] > max ? logits[j] : max;
  double sum = 0;
  for (int j = 0; j < vocab; j++) sum += exp(logits[j] - max);
  return max + log(sum) - logits[target];
}

int perplexity_eval(model *m, const int32_t *tokens, size_t count, int ctx, size_t max_segments,
                    perplexity_progress progress, void *user, perplexity_result *out, rotq_error *err) {
  const perplexity_options options = {.ctx = ctx, .max_segments = max_segments, .progress = progress, .user = user};
  return perplexity_measure(m, tokens, count, &options, out, err);
}

int perplexity_measure(model *m, const int32_t *tokens, size_t count, const perplexity_options *o,
                       perplexity_result *out, rotq_error *err) {
  const int ctx = o->ctx;
  if (ctx < 2) return rotq_fail(err, "context %d is too short: at least 2 tokens are needed", ctx);
  const int vocab = model_get_config(m)->vocab_size;
  if (o->reference && model_get_config(o->reference)->vocab_size != vocab)
    return rotq_fail(err, "the reference model's vocabulary (%d) differs from the model's (%d)",
                     model_get_config(o->reference)->vocab_size, vocab);
  token_segment *segments = NULL;
  size_t segment_count = 0;
  if (token_segments(tokens, count, &segments, &segment_count, err) != 0) return -1;
  if (o->first_segment >= segment_count) {
    free(segments);
    return rotq_fail(err, "no segment to evaluate: the first is %zu of %zu", o->first_segment, segment_count);
  }
  size_t last = segment_count; /* one past the last segment evaluated */
  if (o->max_segments && o->max_segments < segment_count - o->first_segment) last = o->first_segment + o->max_segments;
  double *logits = malloc(sizeof(double) * (size_t)ctx * vocab);                          /* [ctx, vocab] */
  double *reference = o->reference ? malloc(sizeof(double) * (size_t)ctx * vocab) : NULL; /* [ctx, vocab] */
  if (!logits || (o->reference && !reference)) {
    free(segments);
    free(logits);
    return rotq_fail(err, "out of memory for the logits of %d tokens", ctx);
  }
  double total_nll = 0, total_kl = 0;
  size_t predicted = 0;
  int status = 0;
  for (size_t s = o->first_segment; s < last && status == 0; s++) {
    const int32_t *segment = tokens + segments[s].start;
    int n = segments[s].length < (size_t)ctx ? (int)segments[s].length : ctx;
    if (n >= 2) {
      status = model_forward(m, segment, n, logits, err);
      if (status == 0 && reference) status = model_forward(o->reference, segment, n, reference, err);
      if (status != 0) {
        rotq_fail_context(err, "segment %zu (token %zu)", s, segments[s].start);
        break;
      }
      for (int t = 0; t + 1 < n; t++) {
        total_nll += token_nll(logits + (size_t)t * vocab, vocab, segment[t + 1]);
        if (reference) total_kl += token_kl(reference + (size_t)t * vocab, logits + (size_t)t * vocab, vocab);
      }
      predicted += (size_t)n - 1;
    }
    if (o->progress) o->progress(s + 1 - o->first_segment, last - o->first_segment, o->user);
  }
  free(logits);
  free(reference);
  free(segments);
  if (status != 0) return -1;
  if (predicted == 0) return rotq_fail(err, "no token to predict: every segment is a single token");
  out->nll = total_nll / (double)predicted;
  out->ppl = exp(out->nll);
  out->kl = total_kl / (double)predicted;
  out->predicted = predicted;
  out->segments = last - o->first_segment;
  return 0;
}

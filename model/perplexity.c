#include "model/perplexity.h"

#include <math.h>
#include <stdlib.h>

#include "model/token_file.h"

double token_nll(const double *logits, int vocab, int target) {
  double max = logits[0];
  for (int j = 1; j < vocab; j++) max = logits[j] > max ? logits[j] : max;
  double sum = 0;
  for (int j = 0; j < vocab; j++) sum += exp(logits[j] - max);
  return max + log(sum) - logits[target];
}

int perplexity_eval(model *m, const int32_t *tokens, size_t count, int ctx, size_t max_segments,
                    perplexity_progress progress, void *user, perplexity_result *out,
                    rotq_error *err) {
  if (ctx < 2) return rotq_fail(err, "context %d is too short: at least 2 tokens are needed", ctx);
  token_segment *segments = NULL;
  size_t segment_count = 0;
  if (token_segments(tokens, count, &segments, &segment_count, err) != 0) return -1;
  if (max_segments && max_segments < segment_count) segment_count = max_segments;
  const int vocab = model_get_config(m)->vocab_size;
  double *logits = malloc(sizeof(double) * (size_t)ctx * vocab); /* [ctx, vocab] */
  if (!logits) {
    free(segments);
    return rotq_fail(err, "out of memory for the logits of %d tokens", ctx);
  }
  double total_nll = 0;
  size_t predicted = 0;
  int status = 0;
  for (size_t s = 0; s < segment_count && status == 0; s++) {
    const int32_t *segment = tokens + segments[s].start;
    int n = segments[s].length < (size_t)ctx ? (int)segments[s].length : ctx;
    if (n >= 2) {
      status = model_forward(m, segment, n, logits, err);
      if (status != 0) {
        rotq_fail_context(err, "segment %zu (token %zu)", s, segments[s].start);
        break;
      }
      for (int t = 0; t + 1 < n; t++) total_nll += token_nll(logits + (size_t)t * vocab, vocab, segment[t + 1]);
      predicted += (size_t)n - 1;
    }
    if (progress) progress(s + 1, segment_count, user);
  }
  free(logits);
  free(segments);
  if (status != 0) return -1;
  if (predicted == 0) return rotq_fail(err, "no token to predict: every segment is a single token");
  out->nll = total_nll / (double)predicted;
  out->ppl = exp(out->nll);
  out->predicted = predicted;
  out->segments = segment_count;
  return 0;
}

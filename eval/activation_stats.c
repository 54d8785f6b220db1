#include "eval/activation_stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/linear_weights.h"
#include "eval/token_file.h"

static const char *const input_names[LINEAR_INPUT_COUNT] = {"qkv", "o_proj", "gate_up", "down_proj"};

const char *linear_input_name(int input) { return input >= 0 && input < LINEAR_INPUT_COUNT ? input_names[input] : "?"; }

int linear_input_from_name(const char *name) {
  for (int i = 0; i < LINEAR_INPUT_COUNT; i++)
    if (strcmp(name, input_names[i]) == 0) return i;
  return -1;
}

double kurtosis(const double *v, int n) {
  double mean = 0;
  for (int i = 0; i < n; i++) mean += v[i];
  mean /= n;
  double m2 = 0, m4 = 0;
  for (int i = 0; i < n; i++) {
    double d = (v[i] - mean) * (v[i] - mean);
    m2 += d;
    m4 += d * d;
  }
  return m2 > 0 ? n * m4 / (m2 * m2) : 0;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double max_median_ratio(const double *v, int n) {
  if (n < 1) return 0;
  double *sorted = malloc(sizeof(double) * n);
  if (!sorted) return 0;
  memcpy(sorted, v, sizeof(double) * n);
  qsort(sorted, n, sizeof(double), by_value);
  double median = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  double ratio = median > 0 ? sorted[n - 1] / median : 0;
  free(sorted);
  return ratio;
}

const input_stats *activation_stats_at(const activation_stats *s, int layer, int input) {
  if (layer < 0 || layer >= s->layers || input < 0 || input >= LINEAR_INPUT_COUNT) return NULL;
  return &s->inputs[(size_t)layer * LINEAR_INPUT_COUNT + input];
}

/* What the observer accumulates besides activation_stats. */
typedef struct stats_capture {
  activation_stats *stats;
  bool f32;
  double *row;           /* [widest] one token widened to double */
  size_t *kurtosis_rows; /* [layers · LINEAR_INPUT_COUNT] tokens summed into kurtosis */
} stats_capture;

static bool observe_input(void *user, int layer, linear_input input, const void *x, int rows, int dim) {
  stats_capture *c = user;
  input_stats *s = &c->stats->inputs[(size_t)layer * LINEAR_INPUT_COUNT + input];
  for (int r = 0; r < rows; r++) {
    for (int j = 0; j < dim; j++) {
      size_t i = (size_t)r * dim + j;
      c->row[j] = c->f32 ? ((const float *)x)[i] : ((const double *)x)[i];
      s->channel_max[j] = fmax(s->channel_max[j], fabs(c->row[j]));
    }
    s->kurtosis += kurtosis(c->row, dim);
  }
  c->kurtosis_rows[(size_t)layer * LINEAR_INPUT_COUNT + input] += (size_t)rows;
  return false;
}

/* Weight statistics of the linears reading input in layer l; row is scratch of dim doubles. */
static void measure_weights(const model *m, int l, int input, input_stats *s, double *row) {
  linear_weight lw[MAX_LINEARS_PER_INPUT];
  int count = linears_of(m, l, (linear_input)input, lw);
  size_t rows = 0;
  for (int k = 0; k < count; k++)
    for (int r = 0; r < lw[k].out_dim; r++, rows++) {
      for (int j = 0; j < s->dim; j++) {
        row[j] = linear_weight_at(m, &lw[k], (size_t)r * s->dim + j);
        s->weight_channel_max[j] = fmax(s->weight_channel_max[j], fabs(row[j]));
      }
      s->weight_kurtosis += kurtosis(row, s->dim);
    }
  if (rows) s->weight_kurtosis /= (double)rows;
}

/* Allocates every input's arrays (dim 0 for inputs without linears). */
static int allocate(const model *m, activation_stats *out, int *widest) {
  const int layers = m->config.num_hidden_layers;
  out->layers = layers;
  out->inputs = calloc((size_t)layers * LINEAR_INPUT_COUNT, sizeof *out->inputs);
  if (!out->inputs) return -1;
  *widest = 1;
  for (int l = 0; l < layers; l++)
    for (int input = 0; input < LINEAR_INPUT_COUNT; input++) {
      linear_weight lw[MAX_LINEARS_PER_INPUT];
      input_stats *s = &out->inputs[(size_t)l * LINEAR_INPUT_COUNT + input];
      if (linears_of(m, l, (linear_input)input, lw) == 0) continue;
      s->dim = lw[0].in_dim;
      *widest = s->dim > *widest ? s->dim : *widest;
      s->channel_max = calloc((size_t)s->dim, sizeof(double));
      s->weight_channel_max = calloc((size_t)s->dim, sizeof(double));
      if (!s->channel_max || !s->weight_channel_max) return -1;
    }
  return 0;
}

int activation_stats_measure(model *m, const int32_t *tokens, size_t count, int ctx, size_t max_segments,
                             activation_stats *out, rotq_error *err) {
  memset(out, 0, sizeof *out);
  const int layers = m->config.num_hidden_layers, vocab = m->config.vocab_size;
  int widest = 1;
  token_segment *segments = NULL;
  size_t segment_count = 0;
  stats_capture capture = {.stats = out, .f32 = m->f32};
  double *logits = NULL;
  int status = 0;
  if (allocate(m, out, &widest) != 0 || !(capture.row = malloc(sizeof(double) * widest)) ||
      !(capture.kurtosis_rows = calloc((size_t)layers * LINEAR_INPUT_COUNT, sizeof(size_t))) ||
      !(logits = malloc(sizeof(double) * (size_t)ctx * vocab))) {
    status = rotq_fail(err, "out of memory for activation statistics");
    goto done;
  }
  if (token_segments(tokens, count, &segments, &segment_count, err) != 0) {
    status = -1;
    goto done;
  }
  if (max_segments && max_segments < segment_count) segment_count = max_segments;
  const linear_input_observer saved = m->observe;
  void *saved_user = m->observe_user;
  m->observe = observe_input;
  m->observe_user = &capture;
  for (size_t s = 0; s < segment_count && status == 0; s++) {
    int n = segments[s].length < (size_t)ctx ? (int)segments[s].length : ctx;
    status = model_forward(m, tokens + segments[s].start, n, logits, err);
    if (status != 0) rotq_fail_context(err, "segment %zu", s);
    out->tokens += (size_t)n;
  }
  m->observe = saved;
  m->observe_user = saved_user;
  for (int l = 0; l < layers && status == 0; l++)
    for (int input = 0; input < LINEAR_INPUT_COUNT; input++) {
      input_stats *st = &out->inputs[(size_t)l * LINEAR_INPUT_COUNT + input];
      size_t rows = capture.kurtosis_rows[(size_t)l * LINEAR_INPUT_COUNT + input];
      if (rows) st->kurtosis /= (double)rows;
      if (st->dim) measure_weights(m, l, input, st, capture.row);
    }
done:
  free(segments);
  free(capture.row);
  free(capture.kurtosis_rows);
  free(logits);
  if (status != 0) activation_stats_free(out);
  return status;
}

void activation_stats_free(activation_stats *s) {
  for (size_t i = 0; s->inputs && i < (size_t)s->layers * LINEAR_INPUT_COUNT; i++) {
    free(s->inputs[i].channel_max);
    free(s->inputs[i].weight_channel_max);
  }
  free(s->inputs);
  memset(s, 0, sizeof *s);
}

/* Outlier statistics at every decoder linear's input: what makes a model hard to quantize and
 * what a rotation changes. For each layer and linear input (model/transformer.h), over the tokens
 * of a token file:
 *   - per channel, the largest |x| (QuaRot's Figure 1 plots it), and its max/median ratio;
 *   - the kurtosis of each token's vector across channels (Pearson: 3 for a Gaussian, about
 *     dim for one dominant channel), averaged over tokens: per-token quantization suffers from it;
 *   - the same for the weights of the linears reading that input: per input channel the largest
 *     |W[:, j]|, and the kurtosis of each output row (the unit of per-channel weight quantization),
 *     averaged over rows. */
#ifndef ROTQ_EVAL_ACTIVATION_STATS_H
#define ROTQ_EVAL_ACTIVATION_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

typedef struct input_stats {
  int dim;                    /* channels; 0 where the layer has no such input (MoE MLP) */
  double *channel_max;        /* [dim] max |x_j| over the tokens */
  double kurtosis;            /* mean over tokens of the kurtosis of x across channels */
  double *weight_channel_max; /* [dim] max |W[:, j]| over the linears reading the input */
  double weight_kurtosis;     /* mean over those linears' rows of the kurtosis across channels */
} input_stats;

typedef struct activation_stats {
  int layers;
  size_t tokens;       /* tokens measured */
  input_stats *inputs; /* [layers · LINEAR_INPUT_COUNT], layer-major */
} activation_stats;

/* The names of the linear inputs: "qkv", "o_proj", "gate_up", "down_proj". */
const char *linear_input_name(int input);
/* The index of a name above, or -1. */
int linear_input_from_name(const char *name);

/* Runs the first max_segments segments (0 = all) of tokens, ctx tokens of each, through m (with
 * its activation quantization as loaded: normally off) and measures. */
int activation_stats_measure(model *m, const int32_t *tokens, size_t count, int ctx, size_t max_segments,
                             activation_stats *out, rotq_error *err);
void activation_stats_free(activation_stats *s);

/* stats of layer's input (NULL when out of range). */
const input_stats *activation_stats_at(const activation_stats *s, int layer, int input);

/* max(v) / median(v) over n values (0 when the median is 0). */
double max_median_ratio(const double *v, int n);
/* Pearson kurtosis of v[0..n): E[(v−μ)⁴] / E[(v−μ)²]² (0 for a constant vector). */
double kurtosis(const double *v, int n);

#endif

/* rotq_synth (include/rotq.h): a synthetic checkpoint by shape name. */
#include <string.h>

#include "common/error.h"
#include "synth/synth.h"
#include "synth/synth_shapes.h"

int rotq_synth(const rotq_synth_options *o, rotq_error *err) {
  if (!o->shape || !o->output_dir)
    return rotq_fail(err, "options: both the shape and the output directory are required");
  synth_spec spec = {0};
  if (synth_shape(o->shape, &spec) < 0) return rotq_fail(err, "unknown shape '%s' (see rotq synth --help)", o->shape);
  const char *type = o->dtype ? o->dtype : "bf16";
  if (synth_dtype_parse(type, &spec.dtype) < 0)
    return rotq_fail(err, "options: dtype takes bf16, f16, f32, f64 or fp8, not '%s'", type);
  if (o->layers < 0 || o->layers > 100000 || o->outlier_scale < 0 || o->logit_scale < 0 || o->outlier_channels < 0 ||
      o->outlier_channels > 100000 || o->feature_rank > 1000000)
    return rotq_fail(err, "options: layers, outlier_scale, outlier_channels, feature_rank or logit_scale out of range");
  if (o->layers) spec.num_layers = o->layers;
  spec.seed = o->seed;
  spec.max_shard_bytes = o->max_shard_bytes;
  if (o->outliers || o->outlier_scale > 0 || o->outlier_channels > 0) {
    spec.outlier_channels = o->outlier_channels > 0 ? o->outlier_channels : 1;
    spec.outlier_scale = o->outlier_scale;
    spec.feature_rank = o->feature_rank > 0 ? o->feature_rank : o->feature_rank < 0 ? 0 : spec.hidden_size / 16;
  }
  spec.logit_scale = o->logit_scale;
  return synth_write(&spec, o->output_dir, err);
}

/* The named rotation matrices of a config, made for one model: each rotation_matrices entry
 * becomes one matrix (per_layer: false), one per decoder layer (true), or one per layer group
 * (a pattern). Every matrix has its own seed, derived from the run's seed, its name and group,
 * so runs are reproducible and matrices independent. */
#ifndef ROTQ_ROTATE_ROTATION_SET_H
#define ROTQ_ROTATE_ROTATION_SET_H

#include <stdint.h>

#include "config/rotation_config.h"
#include "io/model_config.h"
#include "linalg/rotation.h"

struct cJSON;

typedef struct named_rotation {
  const matrix_spec *spec;
  int dim;
  int group_count;      /* 1 for shared; else number of distinct matrices */
  int *layer_group;     /* [num_layers]: index into rotations (per-layer kinds) */
  rotation **rotations; /* [group_count] */
  uint64_t *seeds;      /* [group_count] */
} named_rotation;

typedef struct rotation_set {
  int count;
  int num_layers;
  named_rotation *entries;
  int warning_count;
  char warnings[4][512]; /* per_layer alternatives that match no layer (non-strict configs) */
} rotation_set;

/* Creates every matrix of config for a model with this config.json, whose decoder layers are
 * "<layer_prefix>.<i>" (the family's: "model.layers", "backbone.layers", "model.decoder.layers").
 * per_layer: "<glob>|<glob>" is matched against those names: the layers one alternative matches
 * share one matrix (the first alternative a layer matches wins); a layer no alternative matches
 * gets a matrix of its own. An alternative that matches no layer is an error under strict: true,
 * else a warning (it would make a matrix nothing uses). */
int rotation_set_create(const rotation_config *config, const model_config *model, const char *layer_prefix,
                        uint64_t seed, rotation_set *set, rotq_error *err);
void rotation_set_free(rotation_set *set);
/* The matrix called name as used at layer (-1 = pre-run: only shared matrices), or NULL with an
 * error when a per-layer matrix is asked for outside a layer. */
const rotation *rotation_set_get(const rotation_set *set, const char *name, int layer, rotq_error *err);
const named_rotation *rotation_set_entry(const rotation_set *set, const char *name);
/* JSON records of every matrix (for rotation.json). */
struct cJSON *rotation_set_to_json(const rotation_set *set);
/* A stable 64-bit seed for (run seed, label, index). */
uint64_t derive_seed(uint64_t seed, const char *label, int index);

#endif

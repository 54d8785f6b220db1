/* The YAML rotation config (see docs/config.md and the files in config/builtin/):
 *
 *   rotation_matrices:        name → {dim: int | config.json key, mode, per_layer, block_size}
 *   rotation_config:          "glob|glob" → [input_rotation, output_rotation]   (null = none)
 *   norm_fuse_config:         decoder_layer_fuse / lm_head_fuse: [norm, [linears...]]
 *   use_float64:              rotate in float64 (default) or float32
 *   online:                   also apply the online rotations (R3, R4, o_proj heads)
 *   down_proj_online_layers:  the layers whose down_proj takes R4 (a list; default all)
 *   block_size:               group-sized rotations: every generated matrix without its own
 *                             block_size, and the online R4 and heads rotations, block-diagonal
 *                             with blocks rotation_group_block(order, block_size) (-1/0 = full)
 *
 * Parsing checks the document's shape and names the field at fault; the checks that need a model
 * (dims, patterns matching tensors) are the processor's. */
#ifndef ROTQ_CONFIG_ROTATION_CONFIG_H
#define ROTQ_CONFIG_ROTATION_CONFIG_H

#include <stdbool.h>

#include "common/error.h"
#include "linalg/rotation.h"

#define CONFIG_NAME_MAX 128

/* How many matrices a rotation_matrices entry makes. */
typedef enum per_layer_kind {
  PER_LAYER_SHARED,  /* per_layer: false — one matrix for the whole model */
  PER_LAYER_EACH,    /* per_layer: true — one matrix per decoder layer */
  PER_LAYER_GROUPED, /* per_layer: "glob|glob" over "model.layers.{i}" — one matrix per
                        alternative (layers matching it share it); other layers one each */
} per_layer_kind;

typedef struct matrix_spec {
  char name[CONFIG_NAME_MAX];
  long dim;                      /* > 0 when given as an integer */
  char dim_key[CONFIG_NAME_MAX]; /* config.json key when given as a string */
  rotation_mode mode;
  bool from_file;  /* mode "file": learned matrices from a safetensors file */
  char file[1024]; /* that file (tensor <name>, or <name>.<layer> per layer) */
  per_layer_kind per_layer;
  char per_layer_pattern[512];
  int block_size; /* 0 = full; power of two = block-diagonal */
} matrix_spec;

typedef struct rotation_rule {
  char pattern[512];           /* glob alternatives separated by '|' */
  char input[CONFIG_NAME_MAX]; /* matrix name, "" for null */
  char output[CONFIG_NAME_MAX];
} rotation_rule;

typedef struct norm_fuse_rule {
  char norm[CONFIG_NAME_MAX]; /* module name, relative to the layer (or absolute for lm_head) */
  int linear_count;
  char linears[16][CONFIG_NAME_MAX];
} norm_fuse_rule;

typedef struct rotation_config {
  char origin[1024]; /* built-in name or file path, for messages */
  int matrix_count;
  matrix_spec matrices[16];
  int rule_count;
  rotation_rule rules[64];
  int layer_fuse_count;
  norm_fuse_rule layer_fuse[16];
  int head_fuse_count;
  norm_fuse_rule head_fuse[4];
  bool use_float64;
  bool online;
  bool down_proj_online_layers_set; /* down_proj_online_layers given (else every layer) */
  int down_proj_online_layer_count;
  int down_proj_online_layers[1024];
  int block_size; /* group-sized rotations (above): 0 = full size */
  bool strict;    /* a rule matching no tensor is an error, not a warning */
  char *text;     /* the YAML source (owned) */
} rotation_config;

/* Parses YAML text; origin names it in messages. */
int rotation_config_parse(const char *text, const char *origin, rotation_config *c, rotq_error *err);
/* Loads a built-in config by name, or else a YAML file by path. */
int rotation_config_load(const char *name_or_path, rotation_config *c, rotq_error *err);
void rotation_config_free(rotation_config *c);
/* The matrix spec called name, or NULL. */
const matrix_spec *rotation_config_matrix(const rotation_config *c, const char *name);
/* 1 if module (e.g. "model.layers.3.self_attn.q_proj") matches one of pattern's '|' alternatives. */
int pattern_matches(const char *pattern, const char *module);

#endif

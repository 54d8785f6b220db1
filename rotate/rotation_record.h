/* rotation.json, the record of a rotation: this module alone builds, writes and reads it.
 *
 * It is built from the processor's plan (rotate/quarot_processor.h) and the verification results,
 * and written once, when the run is complete (after the whole-model check): version, source,
 * architecture, adapter, the run's seed, the resolved config, every matrix's construction, every
 * changed tensor's operations, the online section (the plan's: each online rotation's layers and
 * recipe, which model/online_hooks.c rebuilds for the forward pass), the input's own record
 * ("previous"), the verification and the warnings.
 *
 * Seeds are decimal strings everywhere (the run's "seed", each matrix's "seed", the online recipes'
 * "seeds"), so that every 64-bit value (2^53 + 1 too) survives JSON readers that parse numbers as
 * doubles; readers accept the numbers older rotq wrote (io/json_file.h: json_seed_get). */
#ifndef ROTQ_ROTATE_ROTATION_RECORD_H
#define ROTQ_ROTATE_ROTATION_RECORD_H

#include <stdint.h>

#include "io/checkpoint.h"
#include "rotate/quarot_processor.h"

struct cJSON;

/* What the run adds to the plan. */
typedef struct rotation_record_run {
  const struct cJSON *previous; /* the input's own rotation.json, or NULL */
  const char *whole_model;      /* the whole-model check's outcome, in words */
} rotation_record_run;

/* The record of p's run; NULL when out of memory. */
struct cJSON *rotation_record_build(const quarot_processor *p, const rotation_record_run *run);
/* Builds the record and writes dir/rotation.json (which must not exist yet). */
int rotation_record_write(const char *dir, const quarot_processor *p, const rotation_record_run *run, rotq_error *err);

/* The input's history, before anything is planned: refused when it carries online rotations
 * (a transform_config in config.json's quantization_config, or an "online" section in its
 * rotation.json), whose activation halves a second rotation would silently drop; otherwise its
 * rotation.json, if any, into *previous (the caller deletes it), else *previous = NULL. */
int rotation_record_read_previous(const checkpoint *ck, struct cJSON **previous, rotq_error *err);

/* The run's seed of a record (a decimal string, or the number of an older rotq's record). */
int rotation_record_seed(const struct cJSON *record, uint64_t *seed, rotq_error *err);

#endif

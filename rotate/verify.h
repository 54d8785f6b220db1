/* The self-check of `rotq rotate --verify`: runs the original and the written checkpoint through
 * the reference forward pass on a few tokens and compares their logits. */
#ifndef ROTQ_ROTATE_VERIFY_H
#define ROTQ_ROTATE_VERIFY_H

#include <stdbool.h>

#include "common/log.h"
#include "io/checkpoint.h"

struct cJSON;

/* Models up to this many parameters are verified by default (--verify auto). */
#define VERIFY_AUTO_MAX_PARAMETERS 50000000L

/* Whether the whole-model check runs for mode (ROTQ_VERIFY_*): ALL, or AUTO for models up to
 * VERIFY_AUTO_MAX_PARAMETERS. */
bool verify_wanted(int mode, const checkpoint *ck);
/* The tolerance on max|Δlogit| / max|logit| for a checkpoint whose weights are stored as t. */
double verify_tolerance(dtype t);
/* The tolerance for comparing the checkpoint's logits: that of the dtype of most of its parameters. */
double verify_checkpoint_tolerance(const checkpoint *ck);
/* Compares the two checkpoints on 16 fixed tokens; error (-1) if the relative difference exceeds
 * the tolerance of the original's dtype or any argmax differs. 1, with the reason in why, when the
 * reference forward pass cannot load the original (an architecture feature it does not model).
 * The measured difference goes to log at ROTQ_LOG_INFO ("verify: max |Δlogit| ..."; log may be NULL).
 * online: the rotated checkpoint's online section (rotation.json's "online", which the rotation
 * writes only once this check has run), or NULL to read rotated_dir/rotation.json. */
int verify_equivalence(const char *original_dir, const char *rotated_dir, const struct cJSON *online, const logger *log,
                       char *why, size_t why_cap, rotq_error *err);

#endif

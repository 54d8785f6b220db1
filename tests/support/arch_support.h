/* Helpers of the tests/test_arch_*.c equivalence tests: a built-in config in another mode, tensor
 * surgery that builds a deliberately wrong rotation, and the check itself. */
#ifndef ROTQ_TESTS_ARCH_SUPPORT_H
#define ROTQ_TESTS_ARCH_SUPPORT_H

#include "synth/synth.h"
#include "support/equivalence.h"

extern const char *const arch_modes[3]; /* hadamard, base_hadamard, orthogonal */

/* Writes the built-in config `builtin` to path with every "mode: hadamard" replaced by mode. */
void write_builtin_with_mode(const char *path, const char *builtin, const char *mode);
/* Synthesizes spec into a scratch directory and rotate_all_modes_and_check()s it with `builtin`
 * (float64 tolerance 1e-9); the scratch directory is removed. */
void check_family_equivalent(const synth_spec *spec, const char *label, const char *builtin);
/* Writes spec (with dtype) as dir; fails the test on error. */
void synth_or_fail(const synth_spec *spec, const char *dir);
/* Rotates original with `builtin` in each of the three modes and checks the logits: relative
 * difference < tolerance and argmax agreement 100%. scratch holds the outputs. */
void rotate_all_modes_and_check(const char *scratch, const char *original, const char *label, const char *builtin,
                                double tolerance);
/* Sets every element of tensor name in the checkpoint at dir to scale·x + shift (in place). */
void edit_tensor(const char *dir, const char *name, double scale, double shift);
/* cp -r from to. */
void copy_checkpoint(const char *from, const char *to);

#endif

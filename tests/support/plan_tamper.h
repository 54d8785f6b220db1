/* Deliberately broken rotation plans for the in-stream check's tests (test_stream_check,
 * test_rotate_quantize_stream): a plan made by processor_init, then one fact of it undone, and
 * the plan executed layer by layer with the check on. */
#ifndef ROTQ_TESTS_PLAN_TAMPER_H
#define ROTQ_TESTS_PLAN_TAMPER_H

#include "rotate/quarot_processor.h"

typedef enum plan_tamper {
  TAMPER_NONE,
  TAMPER_UNFUSE_READER,  /* layer 1's up_proj loses its norm while the norm is still reset */
  TAMPER_DROP_R1_READER, /* layer 0's q_proj loses its input R1 */
  TAMPER_DROP_R1_WRITER, /* layer 1's down_proj loses its output R1 */
  TAMPER_V_WITHOUT_O,    /* layer 0's o_proj loses R2 on its input while v_proj keeps it on its output */
  TAMPER_CHANGE_OTHER,   /* layer 0's o_proj bias, outside the stream's rotations, is changed (all ones) */
} plan_tamper;

/* The plan's command for tensor name; fails the test when there is none. */
rotate_command *plan_command(quarot_processor *p, const char *name);
/* Breaks p's plan as `what` says (a LLaMA-layout checkpoint of at least 2 layers). */
void plan_tamper_apply(quarot_processor *p, plan_tamper what);
/* Runs p (writer, check and any quantizer already attached) through pre_run, every layer and
 * finish; on success asserts that the check saw every batch (layers + pre-run) within its
 * tolerance. Returns the run's status, its error in *err. */
int plan_execute_checked(quarot_processor *p, rotq_error *err);

#endif

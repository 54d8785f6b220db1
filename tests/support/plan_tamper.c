#include "support/plan_tamper.h"

#include "rotate/stream_check.h"
#include "support/test_support.h"

rotate_command *plan_command(quarot_processor *p, const char *name) {
  rotate_command *c = commands_find(&p->commands, name);
  if (!c) fail_msg("no command %s", name);
  return c;
}

void plan_tamper_apply(quarot_processor *p, plan_tamper what) {
  switch (what) {
  case TAMPER_NONE: break;
  case TAMPER_UNFUSE_READER: plan_command(p, "model.layers.1.mlp.up_proj.weight")->fuse_norm[0] = '\0'; break;
  case TAMPER_DROP_R1_READER: plan_command(p, "model.layers.0.self_attn.q_proj.weight")->input = NULL; break;
  case TAMPER_DROP_R1_WRITER: plan_command(p, "model.layers.1.mlp.down_proj.weight")->output = NULL; break;
  case TAMPER_V_WITHOUT_O: plan_command(p, "model.layers.0.self_attn.o_proj.weight")->input = NULL; break;
  case TAMPER_CHANGE_OTHER: {
    rotate_command *bias = plan_command(p, "model.layers.0.self_attn.o_proj.bias");
    bias->output = NULL;
    bias->input = NULL;
    bias->reset_norm = true; /* the bias becomes all ones: o_proj's output shifts */
    break;
  }
  }
}

int plan_execute_checked(quarot_processor *p, rotq_error *err) {
  const int layers = p->ck->config.num_hidden_layers;
  int rc = processor_pre_run(p, err);
  for (int layer = 0; rc == 0 && layer < layers; layer++) rc = processor_preprocess(p, layer, err);
  if (rc == 0) rc = processor_finish(p, err);
  if (rc == 0) {
    const stream_check_summary *s = stream_check_result(p->check);
    assert_int_equal(s->batches, layers + 1);
    assert_true(s->max_ratio < 1);
  }
  return rc;
}

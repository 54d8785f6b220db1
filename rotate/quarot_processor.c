#include "rotate/quarot_processor.h"

#include <stdlib.h>
#include <string.h>

#include "common/parallel.h"

static int by_layer_then_name(const void *a, const void *b) {
  const rotate_command *x = a, *y = b;
  if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
  return strcmp(x->name, y->name);
}

int processor_init(quarot_processor *p, const checkpoint *ck, const model_adapter *adapter,
                   const rotation_config *config, uint64_t seed, int threads, rotq_error *err) {
  memset(p, 0, sizeof *p);
  p->ck = ck;
  p->adapter = adapter;
  p->config = config;
  if (rotation_set_create(config, &ck->config, seed, &p->matrices, err) < 0) return -1;
  if (commands_build(ck, adapter, config, &p->matrices, &p->commands, err) < 0) {
    rotation_set_free(&p->matrices);
    return -1;
  }
  qsort(p->commands.items, p->commands.count, sizeof *p->commands.items, by_layer_then_name);
  p->context = (transform_context){
      .ck = ck,
      .adapter = adapter,
      .use_float64 = config->use_float64,
      .threads = threads > 0 ? threads : cpu_count(),
      .num_heads = adapter_num_attention_heads(&ck->config),
      .head_dim = adapter_head_dim(&ck->config),
  };
  return 0;
}

void processor_free(quarot_processor *p) {
  commands_free(&p->commands);
  rotation_set_free(&p->matrices);
}

/* Executes every command of `layer` (-1 = pre-run). */
static int execute_layer(quarot_processor *p, int layer, rotq_error *err) {
  for (size_t i = 0; i < p->commands.count; i++) {
    const rotate_command *c = &p->commands.items[i];
    if (c->layer != layer) continue;
    if (tensor_transform(&p->context, c, err) < 0) return -1;
  }
  return 0;
}

int processor_pre_run(quarot_processor *p, rotq_error *err) { return execute_layer(p, -1, err); }

int processor_preprocess(quarot_processor *p, int layer, rotq_error *err) {
  return execute_layer(p, layer, err);
}

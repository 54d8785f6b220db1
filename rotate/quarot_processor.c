#include "rotate/quarot_processor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "common/parallel.h"
#include "rotate/online_processor.h"
#include "rotate/pipeline.h"
#include "rotate/stream_check.h"

static int by_layer_then_name(const void *a, const void *b) {
  const rotate_command *x = a, *y = b;
  if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
  return strcmp(x->name, y->name);
}

/* Frees what processor_init made (also on its failure paths). */
static void release(quarot_processor *p) {
  online_free(p);
  commands_free(&p->commands);
  rotation_set_free(&p->matrices);
  free(p->outputs);
  cJSON_Delete(p->quantization_config);
  cJSON_Delete(p->online_section);
  p->outputs = NULL;
  p->quantization_config = p->online_section = NULL;
}

/* The output tensors: the commands' (their shapes and dtypes are the sources'), then the online
 * export's. */
static int layout_outputs(quarot_processor *p, rotq_error *err) {
  size_t n = p->commands.count + online_extra_tensor_count(p);
  p->outputs = calloc(n ? n : 1, sizeof *p->outputs);
  if (!p->outputs) return rotq_fail(err, "out of memory");
  size_t k = 0;
  for (size_t i = 0; i < p->commands.count; i++, k++) {
    const rotate_command *c = &p->commands.items[i];
    const st_tensor *t = checkpoint_find(p->ck, c->source);
    p->outputs[k] = (st_spec){.name = c->name, .dtype = transform_output_dtype(&p->context, t), .ndim = t->ndim};
    memcpy(p->outputs[k].shape, t->shape, sizeof t->shape);
    if (c->out_in_source) /* written [experts, in, out] */
      p->outputs[k].shape[1] = t->shape[2], p->outputs[k].shape[2] = t->shape[1];
  }
  p->output_count = k + online_extra_tensor_specs(p, p->outputs + k);
  return 0;
}

/* config.json's quantization_config and rotation.json's online section, from the plan. */
static int export_records(quarot_processor *p, rotq_error *err) {
  bool failed;
  p->quantization_config = online_quantization_config(p, &failed);
  p->online_section = online_record(p);
  if (failed || !p->online_section) return rotq_fail(err, "out of memory");
  return 0;
}

int processor_init(quarot_processor *p, const checkpoint *ck, const model_adapter *adapter,
                   const rotation_config *config, const processor_options *options, rotq_error *err) {
  memset(p, 0, sizeof *p);
  p->ck = ck;
  p->adapter = adapter;
  p->config = config;
  p->seed = options->seed;
  p->context = (transform_context){
      .ck = ck,
      .adapter = adapter,
      .use_float64 = config->use_float64,
      .threads = options->threads > 0 ? options->threads : cpu_count(),
      .num_heads = adapter_num_attention_heads(&ck->config),
      .head_dim = adapter_head_dim(&ck->config),
  };
  if (options->dtype) { /* before anything plans an output tensor */
    p->context.has_out_dtype = true;
    if (!output_dtype_parse(options->dtype, &p->context.out_dtype))
      return rotq_fail(err, "options: dtype '%s': bf16, f16, f32 or f64 are written", options->dtype);
  }
  if (rotation_set_create(config, &ck->config, adapter->layer_prefix, options->seed, &p->matrices, err) < 0) return -1;
  if (commands_build(ck, adapter, config, &p->matrices, &p->commands, err) < 0) {
    rotation_set_free(&p->matrices);
    return -1;
  }
  /* the online rotations join the plan before it is checked */
  if ((options->online || config->online) && online_plan(p, options->online_for, options->seed, err) < 0) {
    release(p);
    return -1;
  }
  if (commands_complete(&p->commands, ck, adapter, config, err) < 0) {
    release(p);
    return -1;
  }
  for (int i = 0; i < p->matrices.warning_count; i++)
    if (p->commands.warning_count < (int)(sizeof p->commands.warnings / sizeof p->commands.warnings[0]))
      snprintf(p->commands.warnings[p->commands.warning_count++], sizeof p->commands.warnings[0], "%s",
               p->matrices.warnings[i]);
  qsort(p->commands.items, p->commands.count, sizeof *p->commands.items, by_layer_then_name);
  if (layout_outputs(p, err) < 0 || export_records(p, err) < 0) {
    release(p);
    return -1;
  }
  return 0;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void processor_timing(const quarot_processor *p, char *text, size_t size) {
  const transform_timing *t = &p->timing;
  double total = t->read + t->compute + t->convert + t->write;
  if (total <= 0) total = 1;
  snprintf(text, size,
           "timing: transforms %.2f s wall, %d threads; thread time %.2f s: read %.2f s (%.0f%%), "
           "compute %.2f s (%.0f%%), convert %.2f s (%.0f%%), write %.2f s (%.0f%%)",
           p->elapsed, p->context.threads, t->read + t->compute + t->convert + t->write, t->read, 100 * t->read / total,
           t->compute, 100 * t->compute / total, t->convert, 100 * t->convert / total, t->write,
           100 * t->write / total);
}

void processor_free(quarot_processor *p) {
  pipeline_free(p->pipeline);
  p->pipeline = NULL;
  release(p);
}

/* The commands of `layer` (-1 = pre-run), in command order; *count of them. Caller frees. */
static const rotate_command **layer_commands(const quarot_processor *p, int layer, size_t *count) {
  const rotate_command **list = malloc((p->commands.count ? p->commands.count : 1) * sizeof *list);
  *count = 0;
  for (size_t i = 0; list && i < p->commands.count; i++)
    if (p->commands.items[i].layer == layer) list[(*count)++] = &p->commands.items[i];
  return list;
}

/* Queues the sources of layer's commands (-1 = pre-run) for reading ahead. */
static int queue_layer(quarot_processor *p, int layer, rotq_error *err) {
  size_t count;
  const rotate_command **list = layer_commands(p, layer, &count);
  if (!list) return rotq_fail(err, "out of memory");
  pipeline_prefetch(p->pipeline, list, count);
  free(list);
  return 0;
}

static int check_batch(void *user, int layer, rotq_error *err) { return stream_check_batch(user, layer, err); }

/* Executes every command of `layer` (-1 = pre-run), this and the next layer's tensors being read
 * ahead. */
static int execute_layer(quarot_processor *p, int layer, rotq_error *err) {
  double start = now_seconds();
  int rc = 0;
  if (!p->pipeline && !(p->pipeline = pipeline_create(&p->context, err))) rc = -1;
  while (rc == 0 && p->batches_queued <= layer + 2 && p->batches_queued <= p->ck->config.num_hidden_layers)
    rc = queue_layer(p, p->batches_queued++ - 1, err);
  size_t count;
  const rotate_command **list = rc == 0 ? layer_commands(p, layer, &count) : NULL;
  if (rc == 0 && !list) rc = rotq_fail(err, "out of memory");
  if (rc == 0)
    rc = pipeline_run(p->pipeline, list, count, p->check ? check_batch : NULL, p->check, layer, &p->timing, err);
  free(list);
  p->elapsed += now_seconds() - start;
  return rc;
}

int processor_pre_run(quarot_processor *p, rotq_error *err) { return execute_layer(p, -1, err); }

int processor_finish(quarot_processor *p, rotq_error *err) {
  double start = now_seconds();
  int rc = p->pipeline ? pipeline_finish(p->pipeline, err) : 0;
  if (rc == 0) rc = online_write_tensors(p, err);
  p->elapsed += now_seconds() - start;
  return rc;
}

int processor_preprocess(quarot_processor *p, int layer, rotq_error *err) { return execute_layer(p, layer, err); }

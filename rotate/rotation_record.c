#include "rotate/rotation_record.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "io/json_file.h"
#include "rotate/stream_check.h"
#include "rotq.h"

static cJSON *command_record(const rotate_command *c) {
  cJSON *r = cJSON_CreateObject();
  if (strcmp(c->name, c->source) != 0) cJSON_AddStringToObject(r, "cloned_from", c->source);
  if (c->fuse_norm[0]) cJSON_AddStringToObject(r, "fused_norm", c->fuse_norm);
  if (c->reset_norm) cJSON_AddBoolToObject(r, "norm_reset", 1);
  if (c->bake_mean) cJSON_AddBoolToObject(r, "mean_baked", 1);
  if (c->input) cJSON_AddStringToObject(r, "input", c->input_name);
  if (c->output) cJSON_AddStringToObject(r, "output", c->output_name);
  if (c->online == ONLINE_INPUT) cJSON_AddStringToObject(r, "online_input", "down_proj R4 (weight half)");
  if (c->online == ONLINE_INPUT_HEADS) cJSON_AddStringToObject(r, "online_input", "heads rotation (weight half)");
  return r;
}

static cJSON *verification_record(const quarot_processor *p, const rotation_record_run *run) {
  cJSON *verification = cJSON_CreateObject();
  if (p->check)
    json_add_to_object(verification, "in_stream", stream_check_to_json(p->check));
  else
    cJSON_AddStringToObject(verification, "in_stream", "off (--no-verify)");
  cJSON_AddStringToObject(verification, "whole_model", run->whole_model);
  return verification;
}

cJSON *rotation_record_build(const quarot_processor *p, const rotation_record_run *run) {
  cJSON *root = cJSON_CreateObject();
  if (!root) return NULL;
  cJSON_AddStringToObject(root, "rotq_version", rotq_version());
  cJSON_AddStringToObject(root, "source", p->ck->dir);
  cJSON_AddStringToObject(root, "architecture", p->ck->config.architecture);
  cJSON_AddStringToObject(root, "adapter", p->adapter->family);
  json_add_to_object(root, "seed", json_seed_create(p->seed));
  cJSON_AddStringToObject(root, "config_name", p->config->origin);
  cJSON_AddStringToObject(root, "config_yaml", p->config->text);
  cJSON_AddBoolToObject(root, "use_float64", p->config->use_float64);
  /* group-sized rotations (the config's block_size or the caller's): only when set */
  if (p->config->block_size > 0) cJSON_AddNumberToObject(root, "block_size", p->config->block_size);
  json_add_to_object(root, "matrices", rotation_set_to_json(&p->matrices));
  cJSON *tensors = cJSON_AddObjectToObject(root, "tensors");
  for (size_t i = 0; i < p->commands.count; i++) {
    const rotate_command *c = &p->commands.items[i];
    if (command_changes_tensor(c)) json_add_to_object(tensors, c->name, command_record(c));
  }
  json_add_to_object(root, "online", cJSON_Duplicate(p->online_section, 1));
  if (run->previous) json_add_to_object(root, "previous", cJSON_Duplicate(run->previous, 1));
  json_add_to_object(root, "verification", verification_record(p, run));
  cJSON *warnings = cJSON_AddArrayToObject(root, "warnings");
  for (int i = 0; i < p->commands.warning_count; i++)
    json_add_to_array(warnings, cJSON_CreateString(p->commands.warnings[i]));
  return root;
}

int rotation_record_write(const char *dir, const quarot_processor *p, const rotation_record_run *run, rotq_error *err) {
  cJSON *root = rotation_record_build(p, run);
  if (!root) return rotq_fail(err, "%s/rotation.json: out of memory", dir);
  char path[4200];
  snprintf(path, sizeof path, "%s/rotation.json", dir);
  int rc = json_file_write(path, root, err);
  cJSON_Delete(root);
  return rc;
}

int rotation_record_read_previous(const checkpoint *ck, cJSON **previous, rotq_error *err) {
  *previous = NULL;
  const cJSON *q = cJSON_GetObjectItemCaseSensitive(ck->config.json, "quantization_config");
  if (q && cJSON_GetObjectItemCaseSensitive(q, "transform_config"))
    return rotq_fail(err,
                     "%s/config.json: quantization_config has a transform_config: the checkpoint carries online "
                     "rotations (a `rotq rotate --online` output?) that a second rotation would drop; rotate the "
                     "original checkpoint instead",
                     ck->dir);
  char path[4200];
  snprintf(path, sizeof path, "%s/rotation.json", ck->dir);
  struct stat st;
  if (stat(path, &st) != 0) return 0;
  cJSON *record = json_file_read(path, err);
  if (!record) return rotq_fail_context(err, "the input's rotation record");
  const cJSON *online = cJSON_GetObjectItemCaseSensitive(record, "online");
  if (online && !cJSON_IsNull(online)) {
    cJSON_Delete(record);
    return rotq_fail(err,
                     "%s: the checkpoint was rotated with online rotations, whose activation halves a second "
                     "rotation would drop; rotate the original checkpoint instead",
                     path);
  }
  *previous = record;
  return 0;
}

int rotation_record_seed(const cJSON *record, uint64_t *seed, rotq_error *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(record, "seed");
  if (json_seed_get(v, seed) == 0) return 0;
  return rotq_fail(err, "rotation.json: field 'seed' must be a decimal string of a 64-bit unsigned integer");
}

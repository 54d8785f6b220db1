#include "rotate/online_processor.h"

#include <cjson/cJSON.h>

int online_pre_run(quarot_processor *p, const char *online_for, uint64_t seed, rotq_error *err) {
  (void)p, (void)online_for, (void)seed;
  return rotq_fail(err, "online rotations are not available in this build yet");
}
int online_preprocess(quarot_processor *p, int layer, rotq_error *err) { (void)p, (void)layer, (void)err; return 0; }
size_t online_extra_tensor_count(const quarot_processor *p) { (void)p; return 0; }
size_t online_extra_tensor_specs(const quarot_processor *p, st_spec *specs) { (void)p, (void)specs; return 0; }
int online_write_tensors(quarot_processor *p, rotq_error *err) { (void)p, (void)err; return 0; }
int online_add_quantization_config(const quarot_processor *p, cJSON *config, rotq_error *err) { (void)p, (void)config, (void)err; return 0; }
cJSON *online_record(const quarot_processor *p) { (void)p; return cJSON_CreateNull(); }
void online_free(quarot_processor *p) { (void)p; }

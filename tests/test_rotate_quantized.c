/* Quantized sources (issue 17), end to end: a bf16 Llama checkpoint quantized by the test to each
 * source format rotq reads (FP8 per 128×128 block with weight_scale_inv, FP8 per channel and per
 * tensor as compressed-tensors writes them, MXFP4 blocks/scales), rotated by rotq, equals bit for
 * bit the rotation of the dequantized model (every value exact, as F64) written in the same dtype;
 * the in-stream and whole-model checks run on both and pass. The output holds no scale tensors and
 * its config.json no quantization_config. An FP8 NaN code is refused, naming the tensor. */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "io/json_file.h"
#include "rotq.h"
#include "support/quantize_checkpoint.h"
#include "support/test_support.h"
#include "synth/synth.h"

/* hidden 256 = two 128-blocks, intermediate 320 = 2.5 blocks (partial last block, and a multiple
 * of 32 for MXFP4). */
static const synth_spec llama = {.architecture = "LlamaForCausalLM",
                                 .hidden_size = 256,
                                 .intermediate_size = 320,
                                 .num_layers = 2,
                                 .num_heads = 4,
                                 .num_kv_heads = 2,
                                 .vocab_size = 128,
                                 .tie_word_embeddings = true,
                                 .dtype = DTYPE_BF16,
                                 .seed = 17};

static void rotate(const char *in, const char *out, const char *dtype_name) {
  rotq_rotate_options o = rotq_rotate_default_options();
  o.model_dir = in;
  o.output_dir = out;
  o.seed = 3;
  o.quiet = 1;
  o.threads = 2;
  o.dtype = dtype_name;
  o.verify = ROTQ_VERIFY_ALL;
  rotq_error err = {{0}};
  if (rotq_rotate(&o, &err) != 0) fail_msg("rotate %s: %s", in, err.message);
}

/* Every tensor of a and b: same names, dtypes, shapes and bytes. */
static void same_tensors(const char *a, const char *b) {
  checkpoint x, y;
  rotq_error err = {{0}};
  if (checkpoint_open(a, &x, &err) != 0 || checkpoint_open(b, &y, &err) != 0) fail_msg("%s", err.message);
  assert_int_equal(x.tensor_count, y.tensor_count);
  for (size_t i = 0; i < x.tensor_count; i++) {
    const st_tensor *s = x.tensors[i], *t = y.tensors[i];
    assert_string_equal(s->name, t->name);
    assert_int_equal(s->dtype, t->dtype);
    assert_int_equal(s->ndim, t->ndim);
    assert_memory_equal(s->shape, t->shape, sizeof(int64_t) * (size_t)s->ndim);
    assert_int_equal(s->nbytes, t->nbytes);
    if (memcmp(s->data, t->data, s->nbytes) != 0) fail_msg("tensor '%s' differs between %s and %s", s->name, a, b);
  }
  checkpoint_close(&x);
  checkpoint_close(&y);
}

static cJSON *read_json(const char *dir, const char *file) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  rotq_error err = {{0}};
  cJSON *j = json_file_read(path, &err);
  if (!j) fail_msg("%s", err.message);
  return j;
}

/* The output config: no quantization_config, torch_dtype as written; rotation.json: both checks passed. */
static void output_is_plain(const char *dir, const char *torch_dtype) {
  cJSON *config = read_json(dir, "config.json");
  assert_null(cJSON_GetObjectItemCaseSensitive(config, "quantization_config"));
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(config, "torch_dtype")->valuestring, torch_dtype);
  cJSON_Delete(config);
  cJSON *record = read_json(dir, "rotation.json");
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(record, "verification");
  const char *whole = cJSON_GetObjectItemCaseSensitive(v, "whole_model")->valuestring;
  assert_true(strncmp(whole, "passed", 6) == 0);
  assert_true(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(v, "in_stream")));
  cJSON_Delete(record);
}

/* Quantizes the bf16 model to format, rotates it and its dequantized twin, compares. */
static void round_trip(quant_format format, const char *tag, const char *dtype_name, const char *torch_dtype) {
  char *scratch = scratch_dir(tag);
  char base[4200], q[4200], r[4200], qo[4200], ro[4200];
  snprintf(base, sizeof base, "%s/base", scratch);
  snprintf(q, sizeof q, "%s/quantized", scratch);
  snprintf(r, sizeof r, "%s/dequantized", scratch);
  snprintf(qo, sizeof qo, "%s/quantized-rotated", scratch);
  snprintf(ro, sizeof ro, "%s/dequantized-rotated", scratch);
  rotq_error err = {{0}};
  if (synth_write(&llama, base, &err) != 0) fail_msg("synth: %s", err.message);
  assert_int_equal(run_command("mkdir '%s' '%s'", q, r), 0);
  if (quantize_checkpoint(base, q, r, format, &err) != 0) fail_msg("quantize: %s", err.message);
  rotate(q, qo, dtype_name);                       /* default: bf16 for a quantized source */
  rotate(r, ro, dtype_name ? dtype_name : "bf16"); /* the F64 twin, written in the same dtype */
  same_tensors(qo, ro);
  output_is_plain(qo, torch_dtype);
  scratch_remove(scratch);
  free(scratch);
}

static void fp8_block_round_trip(void **state) { round_trip(QUANT_FP8_BLOCK, "q-block", NULL, "bfloat16"); }
static void fp8_block_round_trip_f32(void **state) { round_trip(QUANT_FP8_BLOCK, "q-block32", "f32", "float32"); }
static void fp8_channel_round_trip(void **state) { round_trip(QUANT_FP8_CHANNEL, "q-channel", NULL, "bfloat16"); }
static void fp8_tensor_e5m2_round_trip(void **state) { round_trip(QUANT_FP8_TENSOR, "q-tensor", NULL, "bfloat16"); }
static void mxfp4_round_trip(void **state) { round_trip(QUANT_MXFP4, "q-mxfp4", NULL, "bfloat16"); }

/* A NaN code (E4M3 0x7F) in a quantized weight: refused, naming the tensor; no output. */
static void fp8_nan_code_refused(void **state) {
  char *scratch = scratch_dir("q-nan");
  char base[4200], q[4200], r[4200], out[4200], shard[4300];
  snprintf(base, sizeof base, "%s/base", scratch);
  snprintf(q, sizeof q, "%s/quantized", scratch);
  snprintf(r, sizeof r, "%s/dequantized", scratch);
  snprintf(out, sizeof out, "%s/out", scratch);
  snprintf(shard, sizeof shard, "%s/model.safetensors", q);
  rotq_error err = {{0}};
  if (synth_write(&llama, base, &err) != 0) fail_msg("synth: %s", err.message);
  assert_int_equal(run_command("mkdir '%s' '%s'", q, r), 0);
  if (quantize_checkpoint(base, q, r, QUANT_FP8_BLOCK, &err) != 0) fail_msg("quantize: %s", err.message);
  st_file f;
  if (st_open(shard, &f, &err) != 0) fail_msg("%s", err.message);
  const st_tensor *t = st_find(&f, "model.layers.1.mlp.up_proj.weight");
  assert_non_null(t);
  off_t at = (off_t)((const unsigned char *)t->data - (const unsigned char *)f.map) + 5;
  st_close(&f);
  int fd = open(shard, O_WRONLY);
  assert_true(fd >= 0);
  unsigned char nan_code = 0x7f;
  assert_int_equal(pwrite(fd, &nan_code, 1, at), 1);
  close(fd);
  rotq_rotate_options o = rotq_rotate_default_options();
  o.model_dir = q;
  o.output_dir = out;
  o.quiet = 1;
  assert_int_equal(rotq_rotate(&o, &err), -1);
  assert_non_null(strstr(err.message, "tensor 'model.layers.1.mlp.up_proj.weight': element 5 is not finite"));
  assert_int_not_equal(access(out, F_OK), 0);
  scratch_remove(scratch);
  free(scratch);
}

/* rotq synth --dtype fp8: the decoder layers' linears in E4M3 with weight_scale_inv per 128×128
 * block, the values those of the bf16 synth within FP8's precision; it rotates and verifies. */
static void synth_fp8_checkpoint(void **state) {
  char *scratch = scratch_dir("q-synth");
  char bf[4200], f8[4200], out[4200];
  snprintf(bf, sizeof bf, "%s/bf16", scratch);
  snprintf(f8, sizeof f8, "%s/fp8", scratch);
  snprintf(out, sizeof out, "%s/out", scratch);
  synth_spec spec = llama;
  rotq_error err = {{0}};
  if (synth_write(&spec, bf, &err) != 0) fail_msg("%s", err.message);
  spec.dtype = DTYPE_F8_E4M3;
  if (synth_write(&spec, f8, &err) != 0) fail_msg("%s", err.message);
  checkpoint a, b;
  if (checkpoint_open(bf, &a, &err) != 0 || checkpoint_open(f8, &b, &err) != 0) fail_msg("%s", err.message);
  assert_int_equal(a.tensor_count, b.tensor_count);
  size_t quantized = 0;
  for (size_t i = 0; i < b.tensor_count; i++) {
    const st_tensor *t = b.tensors[i];
    if (!st_is_quantized(t)) {
      assert_int_equal(t->dtype, DTYPE_BF16);
      assert_memory_equal(t->data, a.tensors[i]->data, t->nbytes); /* the same draw, bf16 */
      continue;
    }
    quantized++;
    assert_int_equal(t->scaling, ST_SCALE_BLOCK);
    size_t n = st_numel(t);
    double *x = NULL, *y = NULL, diff = 0, norm = 0;
    assert_int_equal(checkpoint_read_f64(&a, t->name, n, &x, &err), 0);
    assert_int_equal(checkpoint_read_f64(&b, t->name, n, &y, &err), 0);
    for (size_t k = 0; k < n; k++) diff += (x[k] - y[k]) * (x[k] - y[k]), norm += x[k] * x[k];
    assert_true(diff > 0 && diff < 0.05 * 0.05 * norm); /* E4M3 keeps 4 significant bits */
    free(x);
    free(y);
  }
  assert_int_equal(quantized, 7 * 2);
  checkpoint_close(&a);
  checkpoint_close(&b);
  rotate(f8, out, NULL);
  output_is_plain(out, "bfloat16");
  scratch_remove(scratch);
  free(scratch);
}

/* The library refuses an output dtype it cannot write, before writing anything. */
static void unknown_output_dtype_refused(void **state) {
  char *scratch = scratch_dir("q-dtype");
  char in[4200], out[4200];
  snprintf(in, sizeof in, "%s/in", scratch);
  snprintf(out, sizeof out, "%s/out", scratch);
  rotq_error err = {{0}};
  if (synth_write(&llama, in, &err) != 0) fail_msg("%s", err.message);
  rotq_rotate_options o = rotq_rotate_default_options();
  o.model_dir = in;
  o.output_dir = out;
  o.quiet = 1;
  o.dtype = "fp8";
  assert_int_equal(rotq_rotate(&o, &err), -1);
  assert_non_null(strstr(err.message, "dtype 'fp8': bf16, f16, f32 or f64 are written"));
  assert_int_not_equal(access(out, F_OK), 0);
  scratch_remove(scratch);
  free(scratch);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(fp8_block_round_trip),   cmocka_unit_test(fp8_block_round_trip_f32),
      cmocka_unit_test(fp8_channel_round_trip), cmocka_unit_test(fp8_tensor_e5m2_round_trip),
      cmocka_unit_test(mxfp4_round_trip),       cmocka_unit_test(fp8_nan_code_refused),
      cmocka_unit_test(synth_fp8_checkpoint),   cmocka_unit_test(unknown_output_dtype_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

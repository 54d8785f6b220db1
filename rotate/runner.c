/* The Runner of the seed's sequence: `rotq rotate` as a library call. It opens the checkpoint,
 * lets the QuaRotProcessor plan the run (online rotations included: processor_init), lays out the
 * output shards from the plan, then drives pre_run and preprocess(layer) for every decoder layer
 * and finish, writes config.json and the other files of the input, runs the whole-model check, and
 * writes rotation.json once (rotate/rotation_record.h) before renaming the output into place. */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "io/json_file.h"
#include "rotate/output_dir.h"
#include "rotate/pipeline.h"
#include "rotate/quantize_command.h"
#include "rotate/quarot_processor.h"
#include "rotate/rotation_record.h"
#include "rotate/stream_check.h"
#include "rotate/verify.h"
#include "rotq.h"

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The torch name of a float dtype. */
static const char *torch_dtype(dtype t) {
  return t == DTYPE_F64 ? "float64" : t == DTYPE_F32 ? "float32" : t == DTYPE_F16 ? "float16" : "bfloat16";
}

/* A quantized source's quantization_config no longer applies to the dequantized output: it is
 * dropped, and torch_dtype (and dtype, where present) names what was written; so it is with
 * --dtype. A float source's config is left as it was. */
static int output_dtype_config(const quarot_processor *p, cJSON *json) {
  const transform_context *ctx = &p->context;
  if (!p->ck->quantized_count && !ctx->has_out_dtype) return 0;
  if (p->ck->quantized_count) cJSON_DeleteItemFromObject(json, "quantization_config");
  const char *name = torch_dtype(ctx->has_out_dtype ? ctx->out_dtype : DTYPE_BF16);
  if (cJSON_GetObjectItemCaseSensitive(json, "dtype"))
    cJSON_ReplaceItemInObject(json, "dtype", cJSON_CreateString(name));
  cJSON_DeleteItemFromObject(json, "torch_dtype");
  return cJSON_AddStringToObject(json, "torch_dtype", name) ? 0 : -1;
}

/* config.json of the output: untied embeddings (lm_head now has its own fused, rotated weight),
 * plus the plan's quantization_config (the online export) when there is one. */
static int write_config(const quarot_processor *p, const char *dir, rotq_error *err) {
  const quantize_stream *quant = p->context.quant;
  cJSON *json = cJSON_Duplicate(p->ck->config.json, 1);
  if (!json) return rotq_fail(err, "out of memory");
  cJSON_DeleteItemFromObject(json, "tie_word_embeddings");
  cJSON_AddBoolToObject(json, "tie_word_embeddings", 0);
  if (output_dtype_config(p, json) < 0) { /* drops a quantized source's quantization_config */
    cJSON_Delete(json);
    return rotq_fail(err, "out of memory");
  }
  if (p->quantization_config) /* the plan's: the input has none left (processor_init refused one) */
    json_add_to_object(json, "quantization_config", cJSON_Duplicate(p->quantization_config, 1));
  if (quant && quantize_stream_config(quant, json, err) < 0) {
    cJSON_Delete(json);
    return -1;
  }
  char path[4200];
  snprintf(path, sizeof path, "%s/config.json", dir);
  int rc = json_file_write(path, json, err);
  cJSON_Delete(json);
  return rc;
}

/* Weight files of other formats (PyTorch, TensorFlow, Flax, GGUF, ...) and their indexes: rotq
 * does not rotate them, so it does not carry them over (the output would otherwise also hold
 * the unrotated weights). A *.bin is weights when named so by transformers or when it is a
 * torch.save file (a zip archive or a pickle); other .bin files (tokenizers) are copied. */
static bool unrotated_weights(const char *dir, const char *n) {
  static const char *const suffixes[] = {".bin.index.json",
                                         ".pt",
                                         ".pth",
                                         ".ckpt",
                                         ".h5",
                                         ".msgpack",
                                         ".msgpack.index.json",
                                         ".gguf",
                                         ".safetensors.index.json",
                                         ".pkl",
                                         ".pickle",
                                         ".onnx",
                                         ".h5.index.json",
                                         ".ckpt.index"};
  size_t len = strlen(n);
  for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
    size_t k = strlen(suffixes[i]);
    if (len > k && !strcmp(n + len - k, suffixes[i])) return true;
  }
  if (len <= 4 || strcmp(n + len - 4, ".bin") != 0) return false;
  if (!strncmp(n, "pytorch_model", 13) || !strncmp(n, "adapter_model", 13) || !strncmp(n, "training_args", 13))
    return true;
  char path[4200];
  unsigned char magic[4] = {0};
  snprintf(path, sizeof path, "%s/%s", dir, n);
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ssize_t got = fd >= 0 ? read(fd, magic, sizeof magic) : -1;
  if (fd >= 0) close(fd);
  return got == 4 && ((magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4) ||
                      (magic[0] == 0x80 && magic[1] >= 2 && magic[1] <= 5));
}

/* Copies every other regular file of the input (tokenizer, generation config, licence, ...),
 * except weight files it did not rotate, which it names through o->notice. */
static int copy_other_files(const rotq_rotate_options *o, const char *in, const char *out, rotq_error *err) {
  DIR *d = opendir(in);
  if (!d) return rotq_fail(err, "%s: cannot list directory", in);
  struct dirent *e;
  int rc = 0;
  while (rc == 0 && (e = readdir(d))) {
    const char *n = e->d_name;
    size_t len = strlen(n);
    if (n[0] == '.' || !strcmp(n, "config.json") || !strcmp(n, "rotation.json") ||
        !strcmp(n, "model.safetensors.index.json") || (len > 12 && !strcmp(n + len - 12, ".safetensors")))
      continue;
    char src[4200], dst[4200];
    snprintf(src, sizeof src, "%s/%s", in, n);
    snprintf(dst, sizeof dst, "%s/%s", out, n);
    struct stat st;
    if (stat(src, &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (unrotated_weights(in, n)) {
      char message[4400];
      snprintf(message, sizeof message, "skipped %s: weights in a format rotq does not rotate", src);
      if (o->notice) o->notice(message, o->notice_context);
      continue;
    }
    rc = copy_file(src, dst, err);
  }
  closedir(d);
  return rc;
}

/* The output's tensor bytes: in all (layer -1) or of decoder layer `layer` and the pre-run
 * tensors before it. */
static uint64_t output_bytes(const quarot_processor *p, int layer) {
  uint64_t bytes = 0;
  for (size_t i = 0; i < p->commands.count; i++) {
    const rotate_command *c = &p->commands.items[i];
    if (layer >= 0 && c->layer != layer && !(layer == 0 && c->layer < 0)) continue;
    const st_tensor *t = checkpoint_find(p->ck, c->source);
    if (t) bytes += t->nbytes;
  }
  return bytes;
}

/* Tells o->on_progress (when set) that phase began, or layer `layer` of `layers` is written. */
static void progress(const rotq_rotate_options *o, const char *phase, int layer, int layers, uint64_t written,
                     uint64_t total) {
  if (!o->on_progress) return;
  const rotq_progress report = {
      .phase = phase, .layer = layer, .layers = layers, .bytes_written = written, .bytes_total = total};
  o->on_progress(&report, o->progress_context);
}

static int check_cancel(const rotq_rotate_options *o, rotq_error *err) {
  if (!o->cancel || !o->cancel(o->cancel_context)) return 0;
  return rotq_fail(err, "cancelled; the partial output was removed");
}

/* The scheme of --quantize. */
static int quantize_scheme(const rotq_rotate_options *o, ct_scheme *s, rotq_error *err) {
  if (o->quantize_group < 0) return rotq_fail(err, "options: quantize_group %d is negative", o->quantize_group);
  bool w4 = !strcasecmp(o->quantize, "W4A16");
  if ((o->quantize_group || o->quantize_asymmetric) && !w4)
    return rotq_fail(err, "options: quantize_group and quantize_asymmetric apply to W4A16 only, not '%s'", o->quantize);
  if (ct_scheme_parse(o->quantize, w4 ? (o->quantize_group ? o->quantize_group : 128) : 0, o->quantize_asymmetric, s) <
      0)
    return rotq_fail(err, "options: quantize '%s' is not W4A16, W8A8, FP8, FP8_BLOCK, NVFP4A16 or MXFP4A16",
                     o->quantize);
  return 0;
}

/* Everything between opening the checkpoint and committing the output directory. */
static int rotate_into(const rotq_rotate_options *o, const checkpoint *ck, const rotation_config *config,
                       const output_dir *out, const cJSON *previous, rotq_error *err) {
  const logger log = {o->log, o->log_context};
  const model_adapter *adapter = adapter_for(&ck->config, err);
  if (!adapter) return rotq_fail_context(err, "%s/config.json", ck->dir);
  ct_scheme scheme;
  if (o->quantize && quantize_scheme(o, &scheme, err) < 0) return -1;
  quarot_processor p;
  processor_options plan = {
      .seed = o->seed, .threads = o->threads, .online = o->online, .online_for = o->online_for, .dtype = o->dtype};
  if (processor_init(&p, ck, adapter, config, &plan, err) < 0) return rotq_fail_context(err, "%s", ck->dir);
  int rc = 0;
  quantize_stream *quant = NULL;
  st_writer *writer = NULL;
  if (o->quantize) {
    quant = quantize_stream_open(adapter, &scheme, p.outputs, p.output_count, out->temp_path, o->max_shard_bytes,
                                 o->threads, err);
    if (!quant) rc = -1;
    if (quant && o->verify != ROTQ_VERIFY_OFF) quantize_stream_keep_rows(quant); /* the check reads them */
    p.context.quant = quant;
  } else {
    writer = st_writer_open(out->temp_path, p.outputs, p.output_count, o->max_shard_bytes, err);
    if (!writer) rc = -1;
  }
  if (quant) writer = quantize_stream_writer(quant);
  if (!writer) rc = -1;
  p.context.writer = writer;
  if (rc == 0 && o->verify != ROTQ_VERIFY_OFF && !(p.check = stream_check_create(&p, err))) rc = -1;
  double start = now_seconds();
  for (int i = 0; rc == 0 && i < p.commands.warning_count; i++)
    log_message(&log, ROTQ_LOG_WARNING, "%s", p.commands.warnings[i]);
  int layers = ck->config.num_hidden_layers;
  uint64_t total_bytes = output_bytes(&p, -1), written = 0;
  if (rc == 0) progress(o, "prepare", 0, layers, 0, total_bytes);
  if (rc == 0) rc = processor_pre_run(&p, err);
  for (int layer = 0; rc == 0 && layer < layers; layer++) {
    rc = check_cancel(o, err);
    if (rc == 0) rc = processor_preprocess(&p, layer, err);
    written += output_bytes(&p, layer);
    if (rc == 0) progress(o, "layers", layer + 1, layers, written, total_bytes);
  }
  if (rc == 0) rc = processor_finish(&p, err);
  if (rc == 0) rc = check_cancel(o, err);
  if (rc == 0) progress(o, "finish", layers, layers, total_bytes, total_bytes);
  if (rc == 0) {
    rc = quant ? quantize_stream_finish(quant, err) : st_writer_finish(writer, err);
    writer = NULL;
  }
  pipeline_stop_check(p.pipeline); /* after an error the check thread may still read the writer */
  if (writer && !quant) st_writer_abort(writer);
  if (rc == 0) rc = write_config(&p, out->temp_path, err);
  if (rc == 0) rc = copy_other_files(o, ck->dir, out->temp_path, err);
  if (rc == 0) rc = check_cancel(o, err);
  if (rc == 0) {
    if (p.check) {
      const stream_check_summary *v = stream_check_result(p.check);
      log_message(&log, ROTQ_LOG_INFO,
                  "verify: in-stream: %d batches, %zu tensors proven equivalent; max relative error %.3g "
                  "(%.2g of its tolerance, at %s); %.2fs",
                  v->batches, v->tensors, v->max_relative, v->max_ratio, v->worst[0] ? v->worst : "-", v->seconds);
    } else {
      log_message(&log, ROTQ_LOG_WARNING, "--no-verify: the output was not verified");
    }
  }
  char status[800] = "not run (by default only for models up to 50M parameters; --verify)";
  if (rc == 0 && quant) {
    /* the reference forward pass of the quantized output computes another function (the
     * quantization's): the in-stream check proved the rotation of the values quantized */
    snprintf(status, sizeof status, "not run: the output is quantized (--quantize %s)", ct_scheme_name(&scheme));
    if (o->verify == ROTQ_VERIFY_ALL)
      rc = rotq_fail(err,
                     "verify: the whole-model check cannot run on a quantized output (--quantize %s); the "
                     "in-stream check proves the rotation of the weights before they are quantized",
                     ct_scheme_name(&scheme));
  }
  if (rc == 0 && !quant && verify_wanted(o->verify, ck)) {
    /* The reference forward pass may not run every config (e.g. a rope_scaling it does not model);
     * the rotation itself does not depend on it, and the in-stream check has proven the output.
     * The rotated model's online hooks come from the plan: rotation.json is written after. */
    char why[600] = "";
    progress(o, "verify", layers, layers, total_bytes, total_bytes);
    rc = verify_equivalence(ck->dir, out->temp_path, p.online_section, &log, why, sizeof why, err);
    if (rc > 0 && (o->verify == ROTQ_VERIFY_ALL || !p.check))
      rc = rotq_fail(err, "verify: the whole-model check cannot run: %s", why);
    if (rc > 0)
      log_message(&log, ROTQ_LOG_WARNING, "whole-model check skipped (%s); the in-stream check proved the output", why);
    snprintf(status, sizeof status, rc > 0 ? "skipped: the reference forward pass cannot run this model: %s" : "%s",
             rc > 0 ? why : "passed: the reference forward pass, original vs rotated logits on 16 tokens");
    if (rc > 0) rc = 0;
  }
  if (rc == 0)
    rc = rotation_record_write(out->temp_path, &p, &(rotation_record_run){.previous = previous, .whole_model = status},
                               err);
  if (rc == 0) rc = check_cancel(o, err);
  if (rc == 0)
    log_message(&log, ROTQ_LOG_INFO, "%s (%s): %zu tensors, %d layers, %d warnings, %.2fs", ck->config.architecture,
                p.adapter->family, p.commands.count, layers, p.commands.warning_count, now_seconds() - start);
  stream_check_free(p.check);
  p.check = NULL;
  char timing[600];
  processor_timing(&p, timing, sizeof timing);
  log_message(&log, ROTQ_LOG_DEBUG, "%s", timing);
  if (quant) {
    size_t peak_held, peak_pool;
    quantize_stream_memory(quant, NULL, &peak_held, &peak_pool);
    log_message(&log, ROTQ_LOG_DEBUG, "quantize: rotated rows held at most %.1f MB at once (buffers %.1f MB)",
                (double)peak_held / 1e6, (double)peak_pool / 1e6);
  }
  p.context.quant = NULL;
  quantize_stream_free(quant);
  processor_free(&p);
  return rc;
}

rotq_rotate_options rotq_rotate_default_options(void) { return (rotq_rotate_options){.verify = ROTQ_VERIFY_AUTO}; }

int rotq_rotate(const rotq_rotate_options *o, rotq_error *err) {
  if (!o->model_dir || !o->output_dir) return rotq_fail(err, "both the model and the output directory are required");
  if (o->config && o->config_text)
    return rotq_fail(err, "options: config ('%s') and config_text are exclusive: give the config one way", o->config);
  if (o->online_for && !o->online)
    return rotq_fail(err, "options: online_for ('%s') needs online: set online = 1 for the online rotations",
                     o->online_for);
  if (!o->quantize && (o->quantize_group || o->quantize_asymmetric))
    return rotq_fail(err, "options: quantize_group and quantize_asymmetric need quantize = \"W4A16\"");
  checkpoint ck;
  if (checkpoint_open(o->model_dir, &ck, err) < 0) return -1;
  /* Without --config, the family's own built-in config (transformer_universal for LLaMA). */
  const model_adapter *adapter = adapter_for(&ck.config, NULL);
  const char *config_name = o->config                            ? o->config
                            : adapter && adapter->builtin_config ? adapter->builtin_config
                                                                 : "transformer_universal";
  rotation_config config;
  cJSON *previous = NULL;
  if (rotation_record_read_previous(&ck, &previous, err) < 0 ||
      (o->config_text ? rotation_config_parse(o->config_text, "<config text>", &config, err)
                      : rotation_config_load(config_name, &config, err)) < 0) {
    cJSON_Delete(previous);
    checkpoint_close(&ck);
    return -1;
  }
  if (o->block_size < -1 || o->block_size > (1 << 20) || (o->block_size > 0 && (o->block_size & (o->block_size - 1)))) {
    rotation_config_free(&config);
    cJSON_Delete(previous);
    checkpoint_close(&ck);
    return rotq_fail(err, "options: block_size %d is not -1, 0 or a power of two up to 2^20", o->block_size);
  }
  if (o->block_size) config.block_size = o->block_size > 0 ? o->block_size : 0;
  /* rotq parallelises above BLAS; threaded OpenBLAS would change the last bits of dense products
   * with the thread count. The thread count is the process's (the caller's) to set: only said. */
  const logger log = {o->log, o->log_context};
  int blas_threads = openblas_get_num_threads();
  if (blas_threads > 1)
    log_message(&log, ROTQ_LOG_WARNING,
                "OpenBLAS runs %d threads: dense products may differ in their last bits from a one-thread run "
                "(set OPENBLAS_NUM_THREADS=1 for reproducible output)",
                blas_threads);
  output_dir out;
  int rc = output_dir_begin(o->model_dir, o->output_dir, o->force, &log, &out, err);
  if (rc == 0) {
    rc = rotate_into(o, &ck, &config, &out, previous, err);
    if (rc == 0) rc = output_dir_commit(&out, err);
    if (rc != 0) output_dir_abort(&out);
    if (rc == 0 && out.replaced[0] && o->notice) {
      char message[4400];
      snprintf(message, sizeof message, "replaced %s, which was %s", out.final_path, out.replaced);
      o->notice(message, o->notice_context);
    }
  }
  cJSON_Delete(previous);
  checkpoint_close(&ck);
  rotation_config_free(&config);
  return rc;
}

/* The Runner of the seed's sequence: `rotq rotate` as a library call. It opens the checkpoint,
 * lets the QuaRotProcessor (and, with online rotations, the QuaRotOnlineProcessor) prepare their
 * commands, plans the output shards, then drives pre_run and preprocess(layer) for every decoder
 * layer, and finally writes config.json, rotation.json and the other files of the input before
 * renaming the output into place. */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io/json_file.h"
#include "rotate/online_processor.h"
#include "rotate/output_dir.h"
#include "rotate/pipeline.h"
#include "rotate/quarot_processor.h"
#include "rotate/stream_check.h"
#include "rotate/verify.h"
#include "rotq.h"

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) { interrupted = sig; }

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The output tensors in command order (pre-run first, then layer by layer). */
static st_writer *open_writer(const quarot_processor *p, const char *dir, size_t max_shard, rotq_error *err) {
  size_t n = p->commands.count + online_extra_tensor_count(p);
  st_spec *specs = calloc(n ? n : 1, sizeof *specs);
  if (!specs) {
    rotq_fail(err, "out of memory");
    return NULL;
  }
  size_t k = 0;
  for (size_t i = 0; i < p->commands.count; i++) {
    const rotate_command *c = &p->commands.items[i];
    const st_tensor *t = checkpoint_find(p->ck, c->source);
    specs[k] = (st_spec){.name = c->name, .dtype = transform_output_dtype(&p->context, t), .ndim = t->ndim};
    memcpy(specs[k].shape, t->shape, sizeof t->shape);
    k++;
  }
  k += online_extra_tensor_specs(p, specs + k);
  st_writer *w = st_writer_open(dir, specs, k, max_shard, err);
  free(specs);
  return w;
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
 * plus the online export when there is one. */
static int write_config(const quarot_processor *p, const char *dir, rotq_error *err) {
  cJSON *json = cJSON_Duplicate(p->ck->config.json, 1);
  if (!json) return rotq_fail(err, "out of memory");
  cJSON_DeleteItemFromObject(json, "tie_word_embeddings");
  cJSON_AddBoolToObject(json, "tie_word_embeddings", 0);
  if (output_dtype_config(p, json) < 0 || online_add_quantization_config(p, json, err) < 0) {
    cJSON_Delete(json);
    return -1;
  }
  char path[4200];
  snprintf(path, sizeof path, "%s/config.json", dir);
  int rc = json_file_write(path, json, err);
  cJSON_Delete(json);
  return rc;
}

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

/* rotation.json: what was done, reproducibly: version, seed, the resolved config, every matrix's
 * construction, every tensor's operations, the online rotations, warnings. */
static int write_record(const quarot_processor *p, const rotq_rotate_options *o, const char *dir,
                        const char *whole_model, const cJSON *previous, rotq_error *err) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "rotq_version", rotq_version());
  cJSON_AddStringToObject(root, "source", p->ck->dir);
  cJSON_AddStringToObject(root, "architecture", p->ck->config.architecture);
  cJSON_AddStringToObject(root, "adapter", p->adapter->family);
  cJSON_AddNumberToObject(root, "seed", (double)o->seed);
  cJSON_AddStringToObject(root, "config_name", p->config->origin);
  cJSON_AddStringToObject(root, "config_yaml", p->config->text);
  cJSON_AddBoolToObject(root, "use_float64", p->config->use_float64);
  json_add_to_object(root, "matrices", rotation_set_to_json(&p->matrices));
  cJSON *tensors = cJSON_AddObjectToObject(root, "tensors");
  for (size_t i = 0; i < p->commands.count; i++) {
    const rotate_command *c = &p->commands.items[i];
    if (command_changes_tensor(c)) json_add_to_object(tensors, c->name, command_record(c));
  }
  json_add_to_object(root, "online", online_record(p));
  if (previous) json_add_to_object(root, "previous", cJSON_Duplicate(previous, 1));
  cJSON *verification = cJSON_AddObjectToObject(root, "verification");
  if (p->check)
    json_add_to_object(verification, "in_stream", stream_check_to_json(p->check));
  else
    cJSON_AddStringToObject(verification, "in_stream", "off (--no-verify)");
  cJSON_AddStringToObject(verification, "whole_model", whole_model);
  cJSON *warnings = cJSON_AddArrayToObject(root, "warnings");
  for (int i = 0; i < p->commands.warning_count; i++)
    json_add_to_array(warnings, cJSON_CreateString(p->commands.warnings[i]));
  char path[4200];
  snprintf(path, sizeof path, "%s/rotation.json", dir);
  int rc = json_file_write(path, root, err);
  cJSON_Delete(root);
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

static void progress(const rotq_rotate_options *o, int done, int total, double start) {
  if (!o->progress) return;
  double elapsed = now_seconds() - start;
  double eta = done > 0 ? elapsed / done * (total - done) : 0;
  fprintf(stderr, "\rrotq rotate: layer %d/%d  elapsed %.1fs  ETA %.1fs   ", done, total, elapsed, eta);
  if (done == total) fputc('\n', stderr);
}

static int check_interrupt(rotq_error *err) {
  if (!interrupted) return 0;
  return rotq_fail(err, "interrupted by signal %d; the partial output was removed", (int)interrupted);
}

/* An input rotq (or another tool) already rotated: refused when it carries online rotations, whose
 * activation halves a second rotation would silently drop (its transform_config and rotation.json
 * would no longer describe the weights); otherwise its rotation.json is kept as "previous" in the
 * new record (*previous, or NULL). */
static int check_input_history(const checkpoint *ck, cJSON **previous, rotq_error *err) {
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

/* The --dtype names: 1 and *t if name is bf16, f16, f32 or f64 (either case), else 0. */
static int output_dtype_parse(const char *name, dtype *t) {
  static const struct {
    const char *name;
    dtype t;
  } names[] = {{"bf16", DTYPE_BF16}, {"f16", DTYPE_F16}, {"f32", DTYPE_F32}, {"f64", DTYPE_F64}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcasecmp(name, names[i].name) == 0) return *t = names[i].t, 1;
  return 0;
}

/* Everything between opening the checkpoint and committing the output directory. */
static int rotate_into(const rotq_rotate_options *o, const checkpoint *ck, const rotation_config *config,
                       const output_dir *out, const cJSON *previous, rotq_error *err) {
  const model_adapter *adapter = adapter_for(&ck->config, err);
  if (!adapter) return rotq_fail_context(err, "%s/config.json", ck->dir);
  quarot_processor p;
  if (processor_init(&p, ck, adapter, config, o->seed, o->threads, err) < 0)
    return rotq_fail_context(err, "%s", ck->dir);
  int rc = 0;
  if (o->dtype) { /* before anything plans an output tensor */
    p.context.has_out_dtype = true;
    if (!output_dtype_parse(o->dtype, &p.context.out_dtype))
      rc = rotq_fail(err, "options: dtype '%s': bf16, f16, f32 or f64 are written", o->dtype);
  }
  if (rc == 0 && (config->online || o->online)) rc = online_pre_run(&p, o->online_for, o->seed, err);
  st_writer *writer = rc == 0 ? open_writer(&p, out->temp_path, o->max_shard_bytes, err) : NULL;
  if (!writer) rc = -1;
  p.context.writer = writer;
  if (rc == 0 && o->verify != ROTQ_VERIFY_OFF && !(p.check = stream_check_create(&p, err))) rc = -1;
  double start = now_seconds();
  for (int i = 0; rc == 0 && !o->quiet && i < p.commands.warning_count; i++)
    fprintf(stderr, "rotq rotate: warning: %s\n", p.commands.warnings[i]);
  if (rc == 0) rc = processor_pre_run(&p, err);
  int layers = ck->config.num_hidden_layers;
  for (int layer = 0; rc == 0 && layer < layers; layer++) {
    rc = check_interrupt(err);
    if (rc == 0) rc = online_preprocess(&p, layer, err);
    if (rc == 0) rc = processor_preprocess(&p, layer, err);
    if (rc == 0) progress(o, layer + 1, layers, start);
  }
  if (rc == 0) rc = processor_finish(&p, err);
  if (rc == 0) rc = online_write_tensors(&p, err);
  if (rc == 0) rc = check_interrupt(err);
  if (rc == 0) {
    rc = st_writer_finish(writer, err);
    writer = NULL;
  }
  pipeline_stop_check(p.pipeline); /* after an error the check thread may still read the writer */
  if (writer) st_writer_abort(writer);
  if (rc == 0) rc = write_config(&p, out->temp_path, err);
  bool whole_model = verify_wanted(o->verify, ck);
  if (rc == 0)
    rc = write_record(&p, o, out->temp_path,
                      whole_model ? "pending" : "not run (by default only for models up to 50M parameters; --verify)",
                      previous, err);
  if (rc == 0) rc = copy_other_files(o, ck->dir, out->temp_path, err);
  if (rc == 0) rc = check_interrupt(err);
  if (rc == 0 && !o->quiet) {
    if (p.check) {
      const stream_check_summary *v = stream_check_result(p.check);
      fprintf(stderr,
              "rotq rotate: verify: in-stream: %d batches, %zu tensors proven equivalent; max relative error %.3g "
              "(%.2g of its tolerance, at %s); %.2fs\n",
              v->batches, v->tensors, v->max_relative, v->max_ratio, v->worst[0] ? v->worst : "-", v->seconds);
    } else {
      fprintf(stderr, "rotq rotate: warning: --no-verify: the output was not verified\n");
    }
  }
  if (rc == 0 && whole_model) {
    /* The reference forward pass may not run every config (e.g. a rope_scaling it does not model);
     * the rotation itself does not depend on it, and the in-stream check has proven the output. */
    char why[600] = "";
    rc = verify_equivalence(ck->dir, out->temp_path, !o->quiet, why, sizeof why, err);
    if (rc > 0 && (o->verify == ROTQ_VERIFY_ALL || !p.check))
      rc = rotq_fail(err, "verify: the whole-model check cannot run: %s", why);
    if (rc > 0 && !o->quiet)
      fprintf(stderr, "rotq rotate: warning: whole-model check skipped (%s); the in-stream check proved the output\n",
              why);
    char status[800];
    snprintf(status, sizeof status, rc > 0 ? "skipped: the reference forward pass cannot run this model: %s" : "%s",
             rc > 0 ? why : "passed: the reference forward pass, original vs rotated logits on 16 tokens");
    char record[4200];
    snprintf(record, sizeof record, "%s/rotation.json", out->temp_path);
    if (rc >= 0 && unlink(record) != 0) rc = rotq_fail(err, "%s: cannot replace: %s", record, strerror(errno));
    if (rc >= 0) rc = write_record(&p, o, out->temp_path, status, previous, err);
  }
  if (rc == 0) rc = check_interrupt(err);
  if (rc == 0 && !o->quiet)
    fprintf(stderr, "rotq rotate: %s (%s): %zu tensors, %d layers, %d warnings, %.2fs\n", ck->config.architecture,
            p.adapter->family, p.commands.count, layers, p.commands.warning_count, now_seconds() - start);
  online_free(&p);
  stream_check_free(p.check);
  processor_free(&p);
  return rc;
}

rotq_rotate_options rotq_rotate_default_options(void) { return (rotq_rotate_options){.verify = ROTQ_VERIFY_AUTO}; }

int rotq_rotate(const rotq_rotate_options *o, rotq_error *err) {
  if (!o->model_dir || !o->output_dir) return rotq_fail(err, "both the model and the output directory are required");
  if (o->config && o->config_text)
    return rotq_fail(err, "options: config ('%s') and config_text are exclusive: give the config one way", o->config);
  checkpoint ck;
  if (checkpoint_open(o->model_dir, &ck, err) < 0) return -1;
  /* Without --config, the family's own built-in config (transformer_universal for LLaMA). */
  const model_adapter *adapter = adapter_for(&ck.config, NULL);
  const char *config_name = o->config                            ? o->config
                            : adapter && adapter->builtin_config ? adapter->builtin_config
                                                                 : "transformer_universal";
  rotation_config config;
  cJSON *previous = NULL;
  if (check_input_history(&ck, &previous, err) < 0 ||
      (o->config_text ? rotation_config_parse(o->config_text, "<config text>", &config, err)
                      : rotation_config_load(config_name, &config, err)) < 0) {
    cJSON_Delete(previous);
    checkpoint_close(&ck);
    return -1;
  }
  /* Signals are caught before the temporary directory exists, so none is left behind; SIGXFSZ
   * (a file size limit) is ignored so that the write fails with EFBIG and is cleaned up. */
  struct sigaction sa = {.sa_handler = on_signal}, ignore = {.sa_handler = SIG_IGN}, old_int, old_term, old_xfsz;
  sigemptyset(&sa.sa_mask);
  sigemptyset(&ignore.sa_mask);
  interrupted = 0;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  sigaction(SIGXFSZ, &ignore, &old_xfsz);
  output_dir out;
  int rc = output_dir_begin(o->model_dir, o->output_dir, o->force, &out, err);
  if (rc == 0) {
    /* rotq parallelises above BLAS; threaded OpenBLAS would change the last bits of dense
     * products with the thread count, and the output must not depend on it. */
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    rc = rotate_into(o, &ck, &config, &out, previous, err);
    openblas_set_num_threads(blas_threads);
    if (rc == 0) rc = output_dir_commit(&out, err);
    if (rc != 0) output_dir_abort(&out);
    if (rc == 0 && out.replaced[0] && o->notice) {
      char message[4400];
      snprintf(message, sizeof message, "replaced %s, which was %s", out.final_path, out.replaced);
      o->notice(message, o->notice_context);
    }
  }
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  sigaction(SIGXFSZ, &old_xfsz, NULL);
  cJSON_Delete(previous);
  checkpoint_close(&ck);
  rotation_config_free(&config);
  return rc;
}

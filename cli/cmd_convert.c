/* rotq convert: a llama.cpp GGUF checkpoint (LLaMA architecture) → a HF checkpoint
 * (config.json + model.safetensors) that rotq and transformers load as LlamaForCausalLM. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/rotate_run.h"
#include "family/family.h"
#include "io/dtype.h"
#include "io/gguf.h"
#include "io/json_file.h"
#include "io/safetensors_writer.h"
#include "rotate/output_dir.h"

static const char *help =
    "usage: rotq convert --gguf FILE --output DIR [--dtype f32|bf16|f16] [--force]\n\n"
    "Converts a llama.cpp GGUF checkpoint of the LLaMA architecture (general.architecture\n"
    "\"llama\": Llama, SmolLM, Mistral-style models) into a HF checkpoint: config.json (from the\n"
    "llama.* metadata) and model.safetensors with HF's tensor names. Tensors of type F32, F16,\n"
    "BF16, Q8_0, Q4_0, Q4_1, Q4_K and Q6_K are dequantized exactly as ggml does; the q/k rows that\n"
    "llama.cpp's converter permuted for its interleaved RoPE are permuted back to HF's half-split\n"
    "layout. Without an 'output' tensor the embeddings are tied (tie_word_embeddings: true).\n"
    "The tokenizer is not converted: scripts/gguf_tokenizer.py builds tokenizer.json from the same\n"
    "GGUF file (byte-level BPE vocabularies; see scripts/fetch-smollm2.sh).\n\n"
    "  --gguf FILE     the GGUF file (version 2 or 3)\n"
    "  --output DIR    output directory (created; must not exist unless --force)\n"
    "  --dtype T       f32 (default: exact for every supported type), bf16 or f16\n"
    "  --force         replace an existing output directory\n";

#define ARCH "llama"

typedef struct hparams {
  uint64_t hidden, layers, intermediate, heads, kv_heads, vocab, context, head_dim;
  double rope_theta, rms_eps;
  uint64_t bos, eos;
  bool has_bos, has_eos, tied;
} hparams;

static int get_uint(const gguf_file *f, const char *key, uint64_t *v, rotq_error *err) {
  return gguf_get_uint(f, key, v, err);
}

static int read_hparams(const gguf_file *f, hparams *h, rotq_error *err) {
  char arch[64];
  if (gguf_get_string(f, "general.architecture", arch, sizeof arch, err) != 0) return -1;
  if (strcmp(arch, ARCH) != 0)
    return rotq_fail(err, "%s: metadata key 'general.architecture': '%s' (rotq convert reads 'llama')", f->path, arch);
  if (get_uint(f, ARCH ".embedding_length", &h->hidden, err) != 0 ||
      get_uint(f, ARCH ".block_count", &h->layers, err) != 0 ||
      get_uint(f, ARCH ".feed_forward_length", &h->intermediate, err) != 0 ||
      get_uint(f, ARCH ".attention.head_count", &h->heads, err) != 0)
    return -1;
  if (gguf_find_kv(f, ARCH ".attention.head_count_kv")) {
    if (get_uint(f, ARCH ".attention.head_count_kv", &h->kv_heads, err) != 0) return -1;
  } else {
    h->kv_heads = h->heads;
  }
  h->context = 2048;
  if (gguf_find_kv(f, ARCH ".context_length") && get_uint(f, ARCH ".context_length", &h->context, err) != 0) return -1;
  h->rope_theta = 10000.0;
  if (gguf_find_kv(f, ARCH ".rope.freq_base") && gguf_get_float(f, ARCH ".rope.freq_base", &h->rope_theta, err) != 0)
    return -1;
  if (gguf_get_float(f, ARCH ".attention.layer_norm_rms_epsilon", &h->rms_eps, err) != 0) return -1;
  const gguf_kv *scaling = gguf_find_kv(f, ARCH ".rope.scaling.type");
  if (scaling && !(scaling->type == GGUF_VALUE_STRING && scaling->str_len == 4 && !memcmp(scaling->str, "none", 4)))
    return rotq_fail(
        err, "%s: metadata key '" ARCH ".rope.scaling.type': RoPE scaling is not supported by rotq convert", f->path);
  if (h->hidden == 0 || h->layers == 0 || h->intermediate == 0 || h->heads == 0 || h->kv_heads == 0 ||
      h->hidden % h->heads != 0 || h->heads % h->kv_heads != 0 || h->hidden > (1u << 20) || h->layers > 4096)
    return rotq_fail(err,
                     "%s: metadata: inconsistent sizes (hidden %" PRIu64 ", heads %" PRIu64 ", kv heads %" PRIu64
                     ", layers %" PRIu64 ")",
                     f->path, h->hidden, h->heads, h->kv_heads, h->layers);
  h->head_dim = h->hidden / h->heads;
  if (h->head_dim % 2 != 0)
    return rotq_fail(err, "%s: metadata: head_dim %" PRIu64 " is odd (RoPE needs it even)", f->path, h->head_dim);
  uint64_t rope_dim;
  if (gguf_find_kv(f, ARCH ".rope.dimension_count")) {
    if (get_uint(f, ARCH ".rope.dimension_count", &rope_dim, err) != 0) return -1;
    if (rope_dim != h->head_dim)
      return rotq_fail(err,
                       "%s: metadata key '" ARCH ".rope.dimension_count': %" PRIu64 " (partial RoPE) is not "
                       "supported; head_dim is %" PRIu64,
                       f->path, rope_dim, h->head_dim);
  }
  const gguf_tensor *embd = gguf_find_tensor(f, "token_embd.weight");
  if (!embd) return rotq_fail(err, "%s: tensor 'token_embd.weight' is missing", f->path);
  h->vocab = (uint64_t)embd->ne[1];
  h->has_bos = gguf_find_kv(f, "tokenizer.ggml.bos_token_id") != NULL;
  h->has_eos = gguf_find_kv(f, "tokenizer.ggml.eos_token_id") != NULL;
  if (h->has_bos && get_uint(f, "tokenizer.ggml.bos_token_id", &h->bos, err) != 0) return -1;
  if (h->has_eos && get_uint(f, "tokenizer.ggml.eos_token_id", &h->eos, err) != 0) return -1;
  h->tied = gguf_find_tensor(f, "output.weight") == NULL;
  return 0;
}

typedef struct mapping {
  char gguf[64];
  char hf[128];
  int ndim;
  int64_t rows, cols; /* HF shape [rows, cols] (ndim 2) or [cols] (ndim 1) */
  int permute_heads;  /* > 0: undo llama.cpp's RoPE permutation with this many heads */
} mapping;

static void add(mapping *m, size_t *n, const char *gguf, const char *hf, int64_t rows, int64_t cols, int heads) {
  mapping *e = &m[(*n)++];
  snprintf(e->gguf, sizeof e->gguf, "%s", gguf);
  snprintf(e->hf, sizeof e->hf, "%s", hf);
  e->ndim = rows ? 2 : 1;
  e->rows = rows;
  e->cols = cols;
  e->permute_heads = heads;
}

/* GGUF's llama tensor names and the HF names of the same tensors, taken from the llama family's
 * descriptor (family/llama.c), the one owner of LLaMA's names. */
static mapping *build_mappings(const hparams *h, size_t *count) {
  const family_descriptor *fam = family_find("LlamaForCausalLM", NULL);
  const family_layer_names *nm = &fam->names;
  size_t cap = 3 + 9 * (size_t)h->layers;
  mapping *m = calloc(cap, sizeof *m);
  if (!m) return NULL;
  size_t n = 0;
  int64_t H = (int64_t)h->hidden, I = (int64_t)h->intermediate, KV = (int64_t)(h->kv_heads * h->head_dim);
  char f[128];
  snprintf(f, sizeof f, "%s.weight", fam->embed);
  add(m, &n, "token_embd.weight", f, (int64_t)h->vocab, H, 0);
  const struct {
    const char *gguf, *hf;
    int64_t rows, cols;
    int heads;
  } per_layer[] = {
      {"attn_norm", nm->attn_norm, 0, H, 0},
      {"attn_q", nm->q_proj, H, H, (int)h->heads},
      {"attn_k", nm->k_proj, KV, H, (int)h->kv_heads},
      {"attn_v", nm->v_proj, KV, H, 0},
      {"attn_output", nm->o_proj, H, H, 0},
      {"ffn_norm", nm->mlp_norm, 0, H, 0},
      {"ffn_gate", nm->gate_proj, I, H, 0},
      {"ffn_up", nm->up_proj, I, H, 0},
      {"ffn_down", nm->down_proj, H, I, 0},
  };
  for (uint64_t l = 0; l < h->layers; l++)
    for (size_t k = 0; k < sizeof per_layer / sizeof per_layer[0]; k++) {
      char g[64], module[112];
      snprintf(g, sizeof g, "blk.%" PRIu64 ".%s.weight", l, per_layer[k].gguf);
      family_layer_module(fam, (int)l, per_layer[k].hf, module, sizeof module);
      snprintf(f, sizeof f, "%s.weight", module);
      add(m, &n, g, f, per_layer[k].rows, per_layer[k].cols, per_layer[k].heads);
    }
  snprintf(f, sizeof f, "%s.weight", fam->final_norm);
  add(m, &n, "output_norm.weight", f, 0, H, 0);
  snprintf(f, sizeof f, "%s.weight", fam->lm_head);
  if (!h->tied) add(m, &n, "output.weight", f, (int64_t)h->vocab, H, 0);
  *count = n;
  return m;
}

/* llama.cpp's convert_hf_to_gguf permute(): HF row h·d + s·d/2 + i (half-split RoPE) went to
 * row h·d + 2i + s (interleaved pairs). Undone here: dst[HF row] = src[GGUF row]. */
static void unpermute_rows(const float *src, float *dst, int64_t rows, int64_t cols, int heads) {
  int64_t d = rows / heads, half = d / 2;
  for (int64_t h = 0; h < heads; h++)
    for (int64_t i = 0; i < half; i++)
      for (int64_t s = 0; s < 2; s++)
        memcpy(dst + (h * d + s * half + i) * cols, src + (h * d + 2 * i + s) * cols, (size_t)cols * sizeof(float));
}

static int check_shape(const gguf_file *f, const gguf_tensor *t, const mapping *m, rotq_error *err) {
  bool ok = m->ndim == 2 ? (t->ndim == 2 && t->ne[0] == m->cols && t->ne[1] == m->rows)
                         : (t->ndim == 1 && t->ne[0] == m->cols);
  if (ok) return 0;
  if (m->ndim == 2)
    return rotq_fail(err,
                     "%s: tensor '%s': shape ne=[%" PRId64 ", %" PRId64 "] (%d dims), expected [%" PRId64 ", %" PRId64
                     "] from the llama.* metadata",
                     f->path, t->name, t->ne[0], t->ne[1], t->ndim, m->cols, m->rows);
  return rotq_fail(err, "%s: tensor '%s': shape ne=[%" PRId64 "] (%d dims), expected [%" PRId64 "]", f->path, t->name,
                   t->ne[0], t->ndim, m->cols);
}

static cJSON *make_config(const hparams *h, const char *dtype_name_hf) {
  cJSON *c = cJSON_CreateObject();
  cJSON *arch = cJSON_AddArrayToObject(c, "architectures");
  cJSON_AddItemToArray(arch, cJSON_CreateString("LlamaForCausalLM"));
  cJSON_AddStringToObject(c, "model_type", "llama");
  cJSON_AddNumberToObject(c, "hidden_size", (double)h->hidden);
  cJSON_AddNumberToObject(c, "intermediate_size", (double)h->intermediate);
  cJSON_AddNumberToObject(c, "num_hidden_layers", (double)h->layers);
  cJSON_AddNumberToObject(c, "num_attention_heads", (double)h->heads);
  cJSON_AddNumberToObject(c, "num_key_value_heads", (double)h->kv_heads);
  cJSON_AddNumberToObject(c, "head_dim", (double)h->head_dim);
  cJSON_AddNumberToObject(c, "vocab_size", (double)h->vocab);
  cJSON_AddNumberToObject(c, "max_position_embeddings", (double)h->context);
  /* GGUF stores the epsilon as float32: 1e-5 reads back as 9.99999974738e-06. Written as the
   * shortest decimal that rounds to the same float32, as HF's config had it. */
  char eps[32];
  snprintf(eps, sizeof eps, "%.9g", h->rms_eps);
  for (int digits = 1; digits <= 9; digits++) {
    char t[32];
    snprintf(t, sizeof t, "%.*g", digits, h->rms_eps);
    if ((float)strtod(t, NULL) == (float)h->rms_eps) {
      snprintf(eps, sizeof eps, "%s", t);
      break;
    }
  }
  cJSON_AddItemToObject(c, "rms_norm_eps", cJSON_CreateNumber(strtod(eps, NULL)));
  cJSON_AddNumberToObject(c, "rope_theta", h->rope_theta);
  cJSON_AddBoolToObject(c, "tie_word_embeddings", h->tied);
  cJSON_AddBoolToObject(c, "attention_bias", false);
  cJSON_AddBoolToObject(c, "mlp_bias", false);
  cJSON_AddStringToObject(c, "hidden_act", "silu");
  if (h->has_bos) cJSON_AddNumberToObject(c, "bos_token_id", (double)h->bos);
  if (h->has_eos) cJSON_AddNumberToObject(c, "eos_token_id", (double)h->eos);
  cJSON_AddStringToObject(c, "torch_dtype", dtype_name_hf);
  return c;
}

static int convert(const char *gguf_path, const char *out_dir, dtype out_dtype, rotq_error *err) {
  gguf_file f;
  if (gguf_open(gguf_path, &f, err) != 0) return -1;
  int status = -1;
  mapping *maps = NULL;
  st_spec *specs = NULL;
  float *buf = NULL, *perm = NULL;
  void *cast = NULL;
  st_writer *w = NULL;
  hparams h = {0};
  if (read_hparams(&f, &h, err) != 0) goto done;
  size_t count = 0;
  maps = build_mappings(&h, &count);
  specs = calloc(count, sizeof *specs);
  if (!maps || !specs) {
    rotq_fail(err, "out of memory");
    goto done;
  }
  /* Every GGUF tensor must be one that is mapped: an unknown one would be silently lost. */
  for (size_t i = 0; i < f.tensor_count; i++) {
    bool known = false;
    for (size_t j = 0; j < count && !known; j++) known = strcmp(maps[j].gguf, f.tensors[i].name) == 0;
    if (!known) {
      rotq_fail(err, "%s: tensor '%s': not part of a LLaMA checkpoint rotq convert knows (layers 0..%" PRIu64 ")",
                gguf_path, f.tensors[i].name, h.layers - 1);
      goto done;
    }
  }
  size_t largest = 0;
  for (size_t j = 0; j < count; j++) {
    const gguf_tensor *t = gguf_find_tensor(&f, maps[j].gguf);
    if (!t) {
      rotq_fail(err, "%s: tensor '%s' is missing", gguf_path, maps[j].gguf);
      goto done;
    }
    if (check_shape(&f, t, &maps[j], err) != 0) goto done;
    if (!gguf_type_supported(t->type)) {
      gguf_dequantize(&f, t, NULL, err); /* the error message */
      goto done;
    }
    specs[j].name = maps[j].hf;
    specs[j].dtype = out_dtype;
    specs[j].ndim = maps[j].ndim;
    if (maps[j].ndim == 2) {
      specs[j].shape[0] = maps[j].rows;
      specs[j].shape[1] = maps[j].cols;
    } else {
      specs[j].shape[0] = maps[j].cols;
    }
    if (gguf_numel(t) > largest) largest = gguf_numel(t);
  }
  buf = malloc(largest * sizeof *buf);
  perm = malloc(largest * sizeof *perm);
  cast = malloc(largest * dtype_size(out_dtype));
  if (!buf || !perm || !cast) {
    rotq_fail(err, "out of memory (%zu elements)", largest);
    goto done;
  }
  w = st_writer_open(out_dir, specs, count, 0, err);
  if (!w) goto done;
  for (size_t j = 0; j < count; j++) {
    const gguf_tensor *t = gguf_find_tensor(&f, maps[j].gguf);
    size_t n = gguf_numel(t);
    if (gguf_dequantize(&f, t, buf, err) != 0) goto done;
    const float *src = buf;
    if (maps[j].permute_heads > 0) {
      unpermute_rows(buf, perm, maps[j].rows, maps[j].cols, maps[j].permute_heads);
      src = perm;
    }
    dtype_from_f32(out_dtype, src, cast, n);
    if (st_writer_write(w, j, cast, err) != 0) goto done;
  }
  int rc = st_writer_finish(w, err);
  w = NULL;
  if (rc != 0) goto done;
  char path[4200];
  snprintf(path, sizeof path, "%s/config.json", out_dir);
  const char *hf_dtype = out_dtype == DTYPE_F32 ? "float32" : out_dtype == DTYPE_BF16 ? "bfloat16" : "float16";
  cJSON *config = make_config(&h, hf_dtype);
  rc = json_file_write(path, config, err);
  cJSON_Delete(config);
  if (rc != 0) goto done;
  status = 0;
done:
  if (w) st_writer_abort(w);
  free(cast);
  free(perm);
  free(buf);
  free(specs);
  free(maps);
  gguf_close(&f);
  return status;
}

int cmd_convert(int argc, char **argv) {
  const char *gguf = NULL, *output = NULL, *dtype_arg = "f32";
  bool force = false;
  const arg_spec specs[] = {{"gguf", ARG_STRING, &gguf},
                            {"output", ARG_STRING, &output},
                            {"dtype", ARG_STRING, &dtype_arg},
                            {"force", ARG_FLAG, &force}};
  int parsed = args_parse("convert", argc, argv, specs, 4);
  if (parsed == 1) {
    fputs(help, stdout);
    return 0;
  }
  if (parsed < 0) return 2;
  if (!gguf || !output) {
    fprintf(stderr, "rotq convert: --gguf FILE and --output DIR are required (see rotq convert --help)\n");
    return 2;
  }
  dtype out_dtype;
  if (!strcmp(dtype_arg, "f32"))
    out_dtype = DTYPE_F32;
  else if (!strcmp(dtype_arg, "bf16"))
    out_dtype = DTYPE_BF16;
  else if (!strcmp(dtype_arg, "f16"))
    out_dtype = DTYPE_F16;
  else {
    fprintf(stderr, "rotq convert: --dtype '%s': expected f32, bf16 or f16\n", dtype_arg);
    return 2;
  }
  rotq_error err = {{0}};
  output_dir o;
  cli_log log = {.command = "convert"};
  if (output_dir_begin(gguf, output, force, &(logger){cli_print_log, &log}, &o, &err) != 0) {
    fprintf(stderr, "rotq convert: %s\n", err.message);
    return 1;
  }
  if (convert(gguf, o.temp_path, out_dtype, &err) != 0 || output_dir_commit(&o, &err) != 0) {
    output_dir_abort(&o);
    fprintf(stderr, "rotq convert: %s\n", err.message);
    return 1;
  }
  printf("converted %s → %s (%s)\n", gguf, output, dtype_arg);
  return 0;
}

#include "synth/synth.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/parallel.h"
#include "io/json_file.h"
#include "io/safetensors_writer.h"
#include "linalg/rng.h"
#include "synth/synth_features.h"
#include "synth/synth_internal.h"
#include "synth/synth_outliers.h"

/* A LLaMA-family architecture's layout rules (as its transformers modeling file defines them),
 * from its registry entry (family/llama.c): the loader's flags are the layout's. */
typedef struct synth_family {
  const char *architecture, *model_type;
  bool qkv_bias_always, allows_attention_bias, allows_mlp_bias, qk_norm, writes_head_dim;
} synth_family;

static synth_family family_of(const family_variant *v) {
  return (synth_family){.architecture = v->architecture,
                        .model_type = v->model_types[0],
                        .qkv_bias_always = v->loader.qkv_bias,
                        .allows_attention_bias = v->loader.attention_bias,
                        .allows_mlp_bias = v->loader.mlp_bias,
                        .qk_norm = v->loader.qk_norm,
                        .writes_head_dim = !v->no_head_dim_field};
}

const char *synth_torch_dtype(dtype t) {
  switch (t) {
  case DTYPE_F64: return "float64";
  case DTYPE_F32: return "float32";
  case DTYPE_F16: return "float16";
  case DTYPE_BF16: return "bfloat16";
  case DTYPE_F8_E4M3: return "bfloat16"; /* the unquantized tensors' dtype, as DeepSeek-V3 writes it */
  default: break;
  }
  return "float32";
}

static void add_tensor(synth_tensor *list, size_t *count, weight_kind kind, int64_t rows, int64_t cols, const char *fmt,
                       int layer) {
  synth_tensor *t = &list[(*count)++];
  snprintf(t->name, sizeof t->name, fmt, layer);
  t->kind = kind;
  t->ndim = cols ? 2 : 1;
  t->shape[0] = rows;
  t->shape[1] = cols;
}

/* Every tensor of the checkpoint in model order; list has room for 2 + 18·layers + 1. */
static size_t list_tensors(const synth_spec *spec, const synth_family *family, int head_dim, synth_tensor *list) {
  const int64_t hidden = spec->hidden_size, intermediate = spec->intermediate_size;
  const int64_t q_dim = (int64_t)spec->num_heads * head_dim, kv_dim = (int64_t)spec->num_kv_heads * head_dim;
  const bool qkv_bias = family->qkv_bias_always || spec->attention_bias;
  size_t n = 0;
  add_tensor(list, &n, KIND_EMBEDDING, spec->vocab_size, hidden, "model.embed_tokens.weight", 0);
  for (int l = 0; l < spec->num_layers; l++) {
    add_tensor(list, &n, KIND_NORM, hidden, 0, "model.layers.%d.input_layernorm.weight", l);
    add_tensor(list, &n, KIND_LINEAR, q_dim, hidden, "model.layers.%d.self_attn.q_proj.weight", l);
    if (qkv_bias) add_tensor(list, &n, KIND_BIAS, q_dim, 0, "model.layers.%d.self_attn.q_proj.bias", l);
    add_tensor(list, &n, KIND_LINEAR, kv_dim, hidden, "model.layers.%d.self_attn.k_proj.weight", l);
    if (qkv_bias) add_tensor(list, &n, KIND_BIAS, kv_dim, 0, "model.layers.%d.self_attn.k_proj.bias", l);
    add_tensor(list, &n, KIND_LINEAR, kv_dim, hidden, "model.layers.%d.self_attn.v_proj.weight", l);
    if (qkv_bias) add_tensor(list, &n, KIND_BIAS, kv_dim, 0, "model.layers.%d.self_attn.v_proj.bias", l);
    if (family->qk_norm) {
      add_tensor(list, &n, KIND_NORM, head_dim, 0, "model.layers.%d.self_attn.q_norm.weight", l);
      add_tensor(list, &n, KIND_NORM, head_dim, 0, "model.layers.%d.self_attn.k_norm.weight", l);
    }
    add_tensor(list, &n, KIND_LINEAR, hidden, q_dim, "model.layers.%d.self_attn.o_proj.weight", l);
    if (spec->attention_bias) add_tensor(list, &n, KIND_BIAS, hidden, 0, "model.layers.%d.self_attn.o_proj.bias", l);
    add_tensor(list, &n, KIND_NORM, hidden, 0, "model.layers.%d.post_attention_layernorm.weight", l);
    add_tensor(list, &n, KIND_LINEAR, intermediate, hidden, "model.layers.%d.mlp.gate_proj.weight", l);
    if (spec->mlp_bias) add_tensor(list, &n, KIND_BIAS, intermediate, 0, "model.layers.%d.mlp.gate_proj.bias", l);
    add_tensor(list, &n, KIND_LINEAR, intermediate, hidden, "model.layers.%d.mlp.up_proj.weight", l);
    if (spec->mlp_bias) add_tensor(list, &n, KIND_BIAS, intermediate, 0, "model.layers.%d.mlp.up_proj.bias", l);
    add_tensor(list, &n, KIND_LINEAR, hidden, intermediate, "model.layers.%d.mlp.down_proj.weight", l);
    if (spec->mlp_bias) add_tensor(list, &n, KIND_BIAS, hidden, 0, "model.layers.%d.mlp.down_proj.bias", l);
  }
  add_tensor(list, &n, KIND_NORM, hidden, 0, "model.norm.weight", 0);
  if (!spec->tie_word_embeddings) add_tensor(list, &n, KIND_LINEAR, spec->vocab_size, hidden, "lm_head.weight", 0);
  return n;
}

/* A tensor's stream of values: uniforms from its generator, standard normals by Marsaglia's polar
 * method (two per accepted pair of uniforms, no trigonometry: fast enough for 16 GB models). */
typedef struct value_stream {
  rng g;
  int has_spare; /* normals come in pairs; the second waits here */
  double spare;
} value_stream;

/* The tensor's stream, seeded by the spec's seed and the tensor's name. */
static void seed_stream(const synth_tensor *t, uint64_t seed, value_stream *s) {
  uint64_t name_hash = 1469598103934665603ULL; /* FNV-1a */
  for (const char *p = t->name; *p; p++) name_hash = (name_hash ^ (unsigned char)*p) * 1099511628211ULL;
  rng_seed(&s->g, seed ^ name_hash);
  s->has_spare = 0;
}

static double next_normal(value_stream *s) {
  if (s->has_spare) {
    s->has_spare = 0;
    return s->spare;
  }
  double u, v, r;
  do {
    u = 2 * rng_uniform(&s->g) - 1;
    v = 2 * rng_uniform(&s->g) - 1;
    r = u * u + v * v;
  } while (r >= 1 || r == 0);
  double f = sqrt(-2 * log(r) / r);
  s->spare = v * f;
  s->has_spare = 1;
  return u * f;
}

/* The next n values of tensor t, drawn from its stream s. */
static void draw_values(const synth_tensor *t, value_stream *s, int hidden, double *values, size_t n) {
  double offset = 0, scale = 1; /* normal kinds: offset + scale·N(0, 1) */
  switch (t->kind) {
  case KIND_EMBEDDING: scale = 1 / sqrt(hidden); break;
  case KIND_LINEAR: scale = 1 / sqrt((double)t->shape[t->ndim - 1]); break;
  case KIND_NORM: offset = 1, scale = 0.2; break;
  case KIND_BIAS: scale = 0.1; break;
  case KIND_SKIP: offset = 1, scale = 0.2; break;
  case KIND_NORM_DELTA: scale = 0.2; break;
  case KIND_A_LOG:
    for (size_t i = 0; i < n; i++) values[i] = log(1 + 15 * rng_uniform(&s->g));
    return;
  case KIND_DT_BIAS:
    for (size_t i = 0; i < n; i++) {
      double dt = exp(log(0.001) + (log(0.1) - log(0.001)) * rng_uniform(&s->g));
      values[i] = dt + log(-expm1(-dt)); /* softplus⁻¹(dt) */
    }
    return;
  }
  for (size_t i = 0; i < n; i++) values[i] = offset + scale * next_normal(s);
}

/* Values each thread writes at a time, and draws and converts at a time (whole rows of the
 * tensor, so that the outliers can be planted; the smaller block stays in the L2 cache). */
#define CHUNK_VALUES ((size_t)1 << 20)
#define BLOCK_VALUES ((size_t)1 << 15)
/* FP8 checkpoints (spec->dtype F8_E4M3): the decoder layers' linear weights in E4M3 with a float32
 * weight_scale_inv per FP8_BLOCK × FP8_BLOCK block (amax / 448), the other tensors in bf16. */
#define FP8_BLOCK 128
#define E4M3_MAX 448.0

/* The tensors of one synth_write_tensors call, shared by its threads. */
typedef struct synth_batch {
  const synth_spec *spec;
  const synth_tensor *tensors;
  size_t *order; /* tensor indices, largest first, so that the big ones start early */
  size_t count;
  size_t chunk_values, block_values; /* the largest chunk and block of any tensor */
  st_writer *writer;
  size_t *scale_index; /* FP8: tensor i's weight_scale_inv among the writer's tensors, or SIZE_MAX */
  atomic_size_t next;  /* the next entry of order to take */
  atomic_bool failed;
  pthread_mutex_t lock; /* guards error */
  rotq_error error;
} synth_batch;

/* Rows of tensor t per limit values (at least one), and the values of one row. */
static size_t rows_within(const synth_tensor *t, size_t limit, size_t *row_values) {
  size_t rows = t->ndim ? (size_t)t->shape[0] : 1, numel = synth_numel(t);
  *row_values = rows ? numel / rows : 0;
  size_t count = *row_values ? limit / *row_values : rows;
  return count ? count : 1;
}

/* A trained model's peaked predictions: lm_head's values times spec->logit_scale, so that every
 * logit is that many times larger (a temperature of 1 / logit_scale). */
static void scale_logits(const synth_spec *spec, const synth_tensor *t, double *values, size_t n) {
  if (spec->logit_scale <= 0 || spec->logit_scale == 1 || strcmp(t->name, "lm_head.weight") != 0) return;
  for (size_t i = 0; i < n; i++) values[i] *= spec->logit_scale;
}

/* Is t written as FP8 (spec->dtype F8_E4M3: the decoder layers' linear weights)? */
static bool fp8_tensor(const synth_spec *spec, const synth_tensor *t) {
  return spec->dtype == DTYPE_F8_E4M3 && t->kind == KIND_LINEAR && t->ndim == 2 &&
         strncmp(t->name, "model.layers.", 13) == 0;
}

/* The dtype t is written in. */
static dtype tensor_dtype(const synth_spec *spec, const synth_tensor *t) {
  if (spec->dtype != DTYPE_F8_E4M3) return spec->dtype;
  return fp8_tensor(spec, t) ? DTYPE_F8_E4M3 : DTYPE_BF16;
}

/* Bytes of the widest element written. */
static size_t widest_element(const synth_spec *spec) {
  return dtype_size(spec->dtype == DTYPE_F8_E4M3 ? DTYPE_BF16 : spec->dtype);
}

/* FP8 tensor i's rows [row0, row0 + rows) (one block row: row0 a multiple of FP8_BLOCK; values
 * [rows, cols], overwritten) as E4M3 codes at out, each FP8_BLOCK-wide block divided by its scale
 * amax / 448 (1 for a zero block), and the float32 scales written into its weight_scale_inv. */
static int quantize_block(synth_batch *b, size_t i, double *values, size_t rows, size_t cols, size_t row0,
                          unsigned char *out, rotq_error *err) {
  size_t blocks = (cols + FP8_BLOCK - 1) / FP8_BLOCK;
  float *scales = malloc(blocks * sizeof *scales);
  if (!scales) return rotq_fail(err, "out of memory");
  for (size_t j = 0; j < blocks; j++) {
    size_t c0 = j * FP8_BLOCK, width = cols - c0 < FP8_BLOCK ? cols - c0 : FP8_BLOCK;
    double amax = 0;
    for (size_t r = 0; r < rows; r++)
      for (size_t c = c0; c < c0 + width; c++) amax = fmax(amax, fabs(values[r * cols + c]));
    float scale = amax > 0 ? (float)(amax / E4M3_MAX) : 1.0f;
    scales[j] = scale;
    for (size_t r = 0; r < rows; r++) {
      double *v = values + r * cols + c0;
      for (size_t c = 0; c < width; c++) v[c] /= scale;
      dtype_from_f64(DTYPE_F8_E4M3, v, out + r * cols + c0, width);
    }
  }
  int rc = st_writer_write_part(b->writer, b->scale_index[i], row0 / FP8_BLOCK * blocks * sizeof *scales, scales,
                                blocks * sizeof *scales, err);
  free(scales);
  return rc;
}

/* Draws tensor i block by block (its stream continuing across blocks, so the values do not depend
 * on the blocking), gives it the feature structure, plants the outliers, scales the logits,
 * converts, and writes a chunk at a time. */
static int write_tensor(synth_batch *b, size_t i, double *values, unsigned char *converted, rotq_error *err) {
  const synth_tensor *t = &b->tensors[i];
  const bool fp8 = fp8_tensor(b->spec, t);
  const size_t element = dtype_size(tensor_dtype(b->spec, t)), rows = t->ndim ? (size_t)t->shape[0] : 1;
  size_t row_values, block = fp8 ? FP8_BLOCK : rows_within(t, BLOCK_VALUES, &row_values);
  size_t chunk = (rows_within(t, CHUNK_VALUES, &row_values) + block - 1) / block * block;
  if (synth_numel(t) == 0) return st_writer_write(b->writer, i, converted, err);
  value_stream stream;
  seed_stream(t, b->spec->seed, &stream);
  for (size_t r = 0; r < rows; r += chunk) {
    size_t chunk_rows = rows - r < chunk ? rows - r : chunk;
    for (size_t q = 0; q < chunk_rows; q += block) {
      size_t count = chunk_rows - q < block ? chunk_rows - q : block, n = count * row_values;
      draw_values(t, &stream, b->spec->hidden_size, values, n);
      synth_shape_features(b->spec, t, (int64_t)(r + q), (int64_t)count, values);
      synth_plant_outliers(b->spec, t, (int64_t)(r + q), (int64_t)count, values);
      scale_logits(b->spec, t, values, n);
      if (fp8 && quantize_block(b, i, values, count, row_values, r + q, converted + q * row_values, err) < 0) return -1;
      if (!fp8)
        dtype_from_f64(b->spec->dtype == DTYPE_F8_E4M3 ? DTYPE_BF16 : b->spec->dtype, values,
                       converted + q * row_values * element, n);
    }
    if (st_writer_write_part(b->writer, i, r * row_values * element, converted, chunk_rows * row_values * element,
                             err) < 0)
      return -1;
  }
  return 0;
}

static void *write_worker(void *arg) {
  synth_batch *b = arg;
  rotq_error err = {{0}};
  double *values = malloc(b->block_values * sizeof *values);
  unsigned char *converted = malloc(b->chunk_values * widest_element(b->spec));
  int status = values && converted ? 0 : rotq_fail(&err, "out of memory");
  while (status == 0 && !atomic_load(&b->failed)) {
    size_t k = atomic_fetch_add(&b->next, 1);
    if (k >= b->count) break;
    status = write_tensor(b, b->order[k], values, converted, &err);
    st_writer_drop_cache(b->writer); /* what reached the disk leaves the page cache: reuse its memory */
  }
  if (status != 0) {
    pthread_mutex_lock(&b->lock);
    if (!atomic_exchange(&b->failed, true)) b->error = err;
    pthread_mutex_unlock(&b->lock);
  }
  free(values);
  free(converted);
  return NULL;
}

static int larger_first(const void *x, const void *y, void *tensors) {
  const synth_tensor *list = tensors;
  size_t a = synth_numel(&list[*(const size_t *)x]), b = synth_numel(&list[*(const size_t *)y]);
  if (a != b) return a > b ? -1 : 1;
  return *(const size_t *)x < *(const size_t *)y ? -1 : 1;
}

/* The tensors' write order: largest first (ties in declaration order). */
static void order_by_size(synth_batch *b) {
  for (size_t i = 0; i < b->count; i++) b->order[i] = i;
  qsort_r(b->order, b->count, sizeof *b->order, larger_first, (void *)b->tensors);
}

int synth_write_tensors(const synth_spec *spec, const synth_tensor *tensors, size_t count, const char *dir,
                        rotq_error *err) {
  st_spec *specs = calloc(2 * count + 1, sizeof *specs); /* the tensors, then FP8 scales */
  char(*scale_names)[sizeof tensors[0].name + 16] = calloc(count + 1, sizeof *scale_names);
  synth_batch b = {.spec = spec, .tensors = tensors, .count = count, .chunk_values = 1, .block_values = 1};
  b.order = malloc((count ? count : 1) * sizeof *b.order);
  b.scale_index = malloc((count ? count : 1) * sizeof *b.scale_index);
  if (!specs || !scale_names || !b.order || !b.scale_index) {
    free(specs);
    free(scale_names);
    free(b.order);
    free(b.scale_index);
    return rotq_fail(err, "%s: out of memory", dir);
  }
  size_t written = count;
  for (size_t i = 0; i < count; i++) {
    const bool fp8 = fp8_tensor(spec, &tensors[i]);
    specs[i] = (st_spec){.name = tensors[i].name, .dtype = tensor_dtype(spec, &tensors[i]), .ndim = tensors[i].ndim};
    for (int d = 0; d < tensors[i].ndim; d++) specs[i].shape[d] = tensors[i].shape[d];
    b.scale_index[i] = SIZE_MAX;
    if (fp8) { /* weight_scale_inv [⌈out/128⌉, ⌈in/128⌉] */
      snprintf(scale_names[i], sizeof scale_names[i], "%s_scale_inv", tensors[i].name);
      specs[written] = (st_spec){.name = scale_names[i], .dtype = DTYPE_F32, .ndim = 2};
      for (int d = 0; d < 2; d++) specs[written].shape[d] = (tensors[i].shape[d] + FP8_BLOCK - 1) / FP8_BLOCK;
      b.scale_index[i] = written++;
    }
    size_t row_values, block = fp8 ? FP8_BLOCK : rows_within(&tensors[i], BLOCK_VALUES, &row_values);
    size_t chunk = (rows_within(&tensors[i], CHUNK_VALUES, &row_values) + block - 1) / block * block;
    if (chunk * row_values > b.chunk_values) b.chunk_values = chunk * row_values;
    if (block * row_values > b.block_values) b.block_values = block * row_values;
  }
  order_by_size(&b);
  b.writer = st_writer_open(dir, specs, written, spec->max_shard_bytes, err);
  free(specs);
  if (!b.writer) {
    free(scale_names);
    free(b.order);
    free(b.scale_index);
    return -1;
  }
  atomic_init(&b.next, 0);
  atomic_init(&b.failed, false);
  pthread_mutex_init(&b.lock, NULL);
  int threads = cpu_count() < 64 ? cpu_count() : 64;
  pthread_t ids[64];
  bool started[64] = {false};
  for (int t = 1; t < threads; t++) started[t] = pthread_create(&ids[t], NULL, write_worker, &b) == 0;
  write_worker(&b);
  for (int t = 1; t < threads; t++)
    if (started[t]) pthread_join(ids[t], NULL);
  pthread_mutex_destroy(&b.lock);
  free(b.order);
  free(b.scale_index);
  int status = 0;
  if (atomic_load(&b.failed)) {
    *err = b.error;
    st_writer_abort(b.writer);
    status = -1;
  } else {
    status = st_writer_finish(b.writer, err);
  }
  free(scale_names); /* the writer keeps pointers to the names until it is finished */
  return status;
}

/* config.json as transformers writes it for the family (keys sorted). */
static cJSON *config_json(const synth_spec *spec, const synth_family *family, int head_dim) {
  const bool llama = strcmp(family->model_type, "llama") == 0;
  const bool mistral = strcmp(family->model_type, "mistral") == 0;
  const bool qwen3 = strcmp(family->model_type, "qwen3") == 0;
  const bool qwen = !llama && !mistral; /* qwen2 or qwen3 */
  const int max_positions = spec->max_position_embeddings > 0 ? spec->max_position_embeddings : 2048;
  cJSON *c = cJSON_CreateObject();
  cJSON *architectures = cJSON_AddArrayToObject(c, "architectures");
  cJSON_AddItemToArray(architectures, cJSON_CreateString(family->architecture));
  if (family->allows_attention_bias) cJSON_AddBoolToObject(c, "attention_bias", spec->attention_bias);
  cJSON_AddNumberToObject(c, "attention_dropout", 0.0);
  cJSON_AddNumberToObject(c, "bos_token_id", spec->bos_token_id > 0 ? spec->bos_token_id : 1);
  cJSON_AddNumberToObject(c, "eos_token_id", spec->eos_token_id > 0 ? spec->eos_token_id : 2);
  if (family->writes_head_dim) cJSON_AddNumberToObject(c, "head_dim", head_dim);
  cJSON_AddStringToObject(c, "hidden_act", "silu");
  cJSON_AddNumberToObject(c, "hidden_size", spec->hidden_size);
  cJSON_AddNumberToObject(c, "initializer_range", 0.02);
  cJSON_AddNumberToObject(c, "intermediate_size", spec->intermediate_size);
  cJSON_AddNumberToObject(c, "max_position_embeddings", max_positions);
  if (qwen) cJSON_AddNumberToObject(c, "max_window_layers", spec->num_layers);
  if (llama) cJSON_AddBoolToObject(c, "mlp_bias", spec->mlp_bias);
  cJSON_AddStringToObject(c, "model_type", family->model_type);
  cJSON_AddNumberToObject(c, "num_attention_heads", spec->num_heads);
  cJSON_AddNumberToObject(c, "num_hidden_layers", spec->num_layers);
  cJSON_AddNumberToObject(c, "num_key_value_heads", spec->num_kv_heads);
  if (llama) cJSON_AddNumberToObject(c, "pretraining_tp", 1);
  if (spec->dtype == DTYPE_F8_E4M3) { /* DeepSeek-V3's block FP8 */
    cJSON *q = cJSON_AddObjectToObject(c, "quantization_config");
    cJSON_AddStringToObject(q, "activation_scheme", "dynamic");
    cJSON_AddStringToObject(q, "fmt", "e4m3");
    cJSON_AddStringToObject(q, "quant_method", "fp8");
    const int block[2] = {FP8_BLOCK, FP8_BLOCK};
    cJSON_AddItemToObject(q, "weight_block_size", cJSON_CreateIntArray(block, 2));
  }
  cJSON_AddNumberToObject(c, "rms_norm_eps", spec->rms_norm_eps > 0 ? spec->rms_norm_eps : 1e-6);
  if (spec->llama3_rope_scaling) {
    cJSON *scaling = cJSON_AddObjectToObject(c, "rope_scaling");
    cJSON_AddNumberToObject(scaling, "factor", spec->llama3_rope_factor > 0 ? spec->llama3_rope_factor : 32.0);
    cJSON_AddNumberToObject(scaling, "high_freq_factor", 4.0);
    cJSON_AddNumberToObject(scaling, "low_freq_factor", 1.0);
    cJSON_AddNumberToObject(scaling, "original_max_position_embeddings", 8192);
    cJSON_AddStringToObject(scaling, "rope_type", "llama3");
  } else if (!mistral) {
    cJSON_AddNullToObject(c, "rope_scaling");
  }
  cJSON_AddNumberToObject(c, "rope_theta", spec->rope_theta > 0 ? spec->rope_theta : 10000.0);
  if (mistral) cJSON_AddNumberToObject(c, "sliding_window", 4096);
  if (qwen3)
    cJSON_AddNullToObject(c, "sliding_window");
  else if (qwen)
    cJSON_AddNumberToObject(c, "sliding_window", max_positions);
  cJSON_AddBoolToObject(c, "tie_word_embeddings", spec->tie_word_embeddings);
  cJSON_AddStringToObject(c, "torch_dtype", synth_torch_dtype(spec->dtype));
  cJSON_AddStringToObject(c, "transformers_version", "4.51.3");
  cJSON_AddBoolToObject(c, "use_cache", true);
  if (qwen) cJSON_AddBoolToObject(c, "use_sliding_window", false);
  cJSON_AddNumberToObject(c, "vocab_size", spec->vocab_size);
  return c;
}

/* Checks the spec against family; NULL with an error. */
static const synth_family *check_spec(const synth_spec *spec, const synth_family *family, int *head_dim,
                                      rotq_error *err) {
  if (spec->hidden_size < 1 || spec->intermediate_size < 1 || spec->num_layers < 1 || spec->num_heads < 1 ||
      spec->num_kv_heads < 1 || spec->vocab_size < 1 || spec->head_dim < 0) {
    rotq_fail(err, "synth: sizes must be positive");
    return NULL;
  }
  if (spec->num_heads % spec->num_kv_heads != 0) {
    rotq_fail(err, "synth: %d heads is not a multiple of %d kv heads", spec->num_heads, spec->num_kv_heads);
    return NULL;
  }
  if (!spec->head_dim && spec->hidden_size % spec->num_heads != 0) {
    rotq_fail(err, "synth: hidden size %d is not a multiple of %d heads; give head_dim", spec->hidden_size,
              spec->num_heads);
    return NULL;
  }
  *head_dim = spec->head_dim ? spec->head_dim : spec->hidden_size / spec->num_heads;
  if (*head_dim % 2 != 0) {
    rotq_fail(err, "synth: head_dim %d is odd; RoPE needs it even", *head_dim);
    return NULL;
  }
  if (!family->writes_head_dim && *head_dim * spec->num_heads != spec->hidden_size) {
    rotq_fail(err, "synth: %s has no head_dim field: head_dim must be hidden / heads", family->architecture);
    return NULL;
  }
  if ((spec->attention_bias && !family->allows_attention_bias) || (spec->mlp_bias && !family->allows_mlp_bias)) {
    rotq_fail(err, "synth: %s has no %s option", family->architecture,
              spec->attention_bias && !family->allows_attention_bias ? "attention_bias" : "mlp_bias");
    return NULL;
  }
  return family;
}

int synth_write(const synth_spec *spec, const char *dir, rotq_error *err) {
  if (spec->logit_scale < 0 || (spec->logit_scale > 0 && spec->logit_scale != 1 && spec->tie_word_embeddings))
    return rotq_fail(err, "synth: a logit scale needs a positive value and an untied lm_head");
  if (spec->outlier_channels < 0 || spec->outlier_scale < 0 || spec->feature_rank < 0 ||
      (spec->feature_rank > 0 && spec->feature_rank > spec->hidden_size - spec->outlier_channels))
    return rotq_fail(err, "synth: the feature rank must be at most the hidden size less the outlier channels");
  const family_variant *v = NULL;
  if (!spec->architecture || !family_find(spec->architecture, &v) || !v->synth)
    return rotq_fail(err, "synth: architecture '%s' is not one of %s",
                     spec->architecture ? spec->architecture : "(none)", family_supported_list());
  if (spec->dtype == DTYPE_F8_E4M3 && v->synth != synth_llama)
    return rotq_fail(err, "synth: FP8 checkpoints are written for LlamaForCausalLM, MistralForCausalLM, "
                          "Qwen2ForCausalLM and Qwen3ForCausalLM only");
  return v->synth(spec, v, dir, err);
}

/* The LLaMA family's generator (family/llama.c): Llama, Mistral, Qwen2, Qwen3. */
int synth_llama(const synth_spec *spec, const family_variant *v, const char *dir, rotq_error *err) {
  int head_dim = 0;
  const synth_family layout = family_of(v);
  const synth_family *family = check_spec(spec, &layout, &head_dim, err);
  if (!family) return -1;
  if (mkdir(dir, 0777) != 0 && errno != EEXIST) return rotq_fail(err, "%s: cannot create: %s", dir, strerror(errno));
  synth_tensor *tensors = malloc((3 + 18 * (size_t)spec->num_layers) * sizeof *tensors);
  if (!tensors) return rotq_fail(err, "%s: out of memory", dir);
  size_t count = list_tensors(spec, family, head_dim, tensors);
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  cJSON *config = config_json(spec, family, head_dim);
  int status = config ? json_file_write(path, config, err) : rotq_fail(err, "%s: out of memory", path);
  cJSON_Delete(config);
  if (status == 0) status = synth_write_tensors(spec, tensors, count, dir, err);
  free(tensors);
  return status;
}

int synth_dtype_parse(const char *name, dtype *t) {
  static const struct {
    const char *name;
    dtype type;
  } names[] = {
      {"bf16", DTYPE_BF16}, {"f16", DTYPE_F16}, {"f32", DTYPE_F32}, {"f64", DTYPE_F64}, {"fp8", DTYPE_F8_E4M3}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(name, names[i].name) == 0) {
      *t = names[i].type;
      return 0;
    }
  return -1;
}

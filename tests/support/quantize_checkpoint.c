#include "support/quantize_checkpoint.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/json_file.h"
#include "io/safetensors_writer.h"

#define MAX_OUT 4096

/* The tensors of one output checkpoint, built in memory (the tests' models are small). */
typedef struct out_list {
  st_spec specs[MAX_OUT];
  void *data[MAX_OUT];
  size_t count;
} out_list;

static void add(out_list *o, const char *name, dtype t, int ndim, const int64_t *shape, void *data) {
  st_spec *s = &o->specs[o->count];
  *s = (st_spec){.name = strdup(name), .dtype = t, .ndim = ndim};
  memcpy(s->shape, shape, sizeof(int64_t) * (size_t)ndim);
  o->data[o->count++] = data;
}

static void list_free(out_list *o) {
  for (size_t i = 0; i < o->count; i++) free((char *)o->specs[i].name), free(o->data[i]);
}

static int write_list(const char *dir, out_list *o, rotq_error *err) {
  st_writer *w = st_writer_open(dir, o->specs, o->count, 0, err);
  if (!w) return -1;
  for (size_t i = 0; i < o->count; i++)
    if (st_writer_write(w, i, o->data[i], err) < 0) {
      st_writer_abort(w);
      return -1;
    }
  return st_writer_finish(w, err);
}

static void *bytes_of(dtype t, const double *values, size_t n) {
  unsigned char *b = malloc(n * dtype_size(t) + 1);
  dtype_from_f64(t, values, b, n);
  return b;
}

static double rounded(dtype t, double x) {
  unsigned char b[8];
  dtype_from_f64(t, &x, b, 1);
  dtype_to_f64(t, b, &x, 1);
  return x;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Code of the E2M1 value nearest |x| (ties to the even code; beyond 6: 6), with x's sign. */
static unsigned e2m1_encode(double x) {
  double a = fabs(x), best = INFINITY;
  unsigned code = 0;
  for (unsigned c = 0; c < 8; c++) {
    double d = fabs(a - fp4_e2m1_value(c));
    if (d < best || (d == best && (c & 1) == 0)) best = d, code = c;
  }
  return code | (x < 0 ? 8u : 0u);
}

/* FP8 of w / scale for n values (codes), their dequantized values into deq. */
static void fp8_codes(dtype t, const double *w, double scale, size_t n, unsigned char *codes, double *deq) {
  for (size_t i = 0; i < n; i++) {
    double q = w[i] / scale;
    dtype_from_f64(t, &q, codes + i, 1);
    deq[i] = (t == DTYPE_F8_E4M3 ? fp8_e4m3_value(codes[i]) : fp8_e5m2_value(codes[i])) * scale;
  }
}

static double amax(const double *w, size_t n, size_t stride, size_t rows) {
  double m = 0;
  for (size_t r = 0; r < rows; r++)
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(w[r * stride + i]));
  return m;
}

/* Quantizes weight `name` [R, C] (values w) into o; deq gets the dequantized values. */
static void quantize(out_list *o, const char *name, size_t R, size_t C, const double *w, double *deq, quant_format f) {
  char scale_name[600];
  int64_t shape[3] = {(int64_t)R, (int64_t)C, 0};
  if (f == QUANT_MXFP4) {
    size_t G = C / 32;
    unsigned char *blocks = calloc(R * G * 16, 1), *scales = malloc(R * G);
    for (size_t r = 0; r < R; r++)
      for (size_t g = 0; g < G; g++) {
        const double *x = w + r * C + g * 32;
        double m = amax(x, 32, 0, 1);
        int e = m > 0 ? (int)floor(log2(m)) - 2 : 0; /* OCP MX: floor(log2(amax)) − emax(E2M1) */
        e = e < -127 ? -127 : e > 127 ? 127 : e;
        scales[r * G + g] = (unsigned char)(e + 127);
        for (size_t k = 0; k < 32; k++) {
          unsigned code = e2m1_encode(ldexp(x[k], -e));
          blocks[(r * G + g) * 16 + k / 2] |= (unsigned char)(code << (4 * (k & 1)));
          deq[r * C + g * 32 + k] = ldexp(fp4_e2m1_value(code), e);
        }
      }
    int64_t bshape[3] = {(int64_t)R, (int64_t)G, 16};
    snprintf(scale_name, sizeof scale_name, "%s_blocks", name);
    add(o, scale_name, DTYPE_U8, 3, bshape, blocks);
    snprintf(scale_name, sizeof scale_name, "%s_scales", name);
    add(o, scale_name, DTYPE_U8, 2, bshape, scales);
    return;
  }
  unsigned char *codes = malloc(R * C);
  if (f == QUANT_FP8_BLOCK) {
    size_t br = (R + 127) / 128, bc = (C + 127) / 128;
    float *scale = malloc(sizeof(float) * br * bc);
    for (size_t i = 0; i < br; i++)
      for (size_t j = 0; j < bc; j++) {
        size_t r0 = i * 128, c0 = j * 128, rows = R - r0 < 128 ? R - r0 : 128, cols = C - c0 < 128 ? C - c0 : 128;
        double m = amax(w + r0 * C + c0, cols, C, rows);
        float s = m > 0 ? (float)(m / 448) : 1.0f;
        scale[i * bc + j] = s;
        for (size_t r = r0; r < r0 + rows; r++)
          fp8_codes(DTYPE_F8_E4M3, w + r * C + c0, s, cols, codes + r * C + c0, deq + r * C + c0);
      }
    add(o, name, DTYPE_F8_E4M3, 2, shape, codes);
    int64_t sshape[2] = {(int64_t)br, (int64_t)bc};
    snprintf(scale_name, sizeof scale_name, "%s_scale_inv", name);
    add(o, scale_name, DTYPE_F32, 2, sshape, scale);
  } else if (f == QUANT_FP8_CHANNEL) {
    double *scale = malloc(sizeof(double) * R);
    for (size_t r = 0; r < R; r++) {
      double m = amax(w + r * C, C, 0, 1);
      scale[r] = m > 0 ? rounded(DTYPE_BF16, m / 448) : 1.0;
      fp8_codes(DTYPE_F8_E4M3, w + r * C, scale[r], C, codes + r * C, deq + r * C);
    }
    add(o, name, DTYPE_F8_E4M3, 2, shape, codes);
    int64_t sshape[2] = {(int64_t)R, 1};
    snprintf(scale_name, sizeof scale_name, "%s_scale", name);
    add(o, scale_name, DTYPE_BF16, 2, sshape, bytes_of(DTYPE_BF16, scale, R));
    free(scale);
    double one = 0.5;
    int64_t ishape[1] = {1};
    snprintf(scale_name, sizeof scale_name, "%.*s.input_scale", (int)(strlen(name) - 7), name);
    add(o, scale_name, DTYPE_F32, 1, ishape, bytes_of(DTYPE_F32, &one, 1));
  } else {
    double m = amax(w, R * C, 0, 1);
    double s = m > 0 ? rounded(DTYPE_F32, m / 57344) : 1.0;
    fp8_codes(DTYPE_F8_E5M2, w, s, R * C, codes, deq);
    add(o, name, DTYPE_F8_E5M2, 2, shape, codes);
    int64_t sshape[1] = {1};
    snprintf(scale_name, sizeof scale_name, "%s_scale", name);
    add(o, scale_name, DTYPE_F32, 1, sshape, bytes_of(DTYPE_F32, &s, 1));
  }
}

static cJSON *quantization_config(quant_format f) {
  cJSON *q = cJSON_CreateObject();
  if (f == QUANT_FP8_BLOCK) {
    cJSON_AddStringToObject(q, "quant_method", "fp8");
    cJSON_AddStringToObject(q, "fmt", "e4m3");
    cJSON_AddStringToObject(q, "activation_scheme", "dynamic");
    int block[2] = {128, 128};
    cJSON_AddItemToObject(q, "weight_block_size", cJSON_CreateIntArray(block, 2));
  } else if (f == QUANT_MXFP4) {
    cJSON_AddStringToObject(q, "quant_method", "mxfp4");
  } else {
    cJSON_AddStringToObject(q, "quant_method", "compressed-tensors");
    cJSON_AddStringToObject(q, "format", "float-quantized");
    cJSON_AddStringToObject(q, "quantization_status", "compressed");
  }
  return q;
}

static int write_config(const checkpoint *ck, const char *dir, cJSON *quantization, rotq_error *err) {
  cJSON *json = cJSON_Duplicate(ck->config.json, 1);
  cJSON_DeleteItemFromObject(json, "torch_dtype");
  if (quantization) {
    cJSON_AddItemToObject(json, "quantization_config", quantization);
    cJSON_AddStringToObject(json, "torch_dtype", "bfloat16");
  } else {
    cJSON_AddStringToObject(json, "torch_dtype", "float64");
  }
  char path[4200];
  snprintf(path, sizeof path, "%s/config.json", dir);
  int rc = json_file_write(path, json, err);
  cJSON_Delete(json);
  return rc;
}

int quantize_checkpoint(const char *src, const char *dst, const char *ref, quant_format format, rotq_error *err) {
  checkpoint ck;
  if (checkpoint_open(src, &ck, err) < 0) return -1;
  static out_list q, d;
  q.count = d.count = 0;
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < ck.tensor_count; i++) {
    const st_tensor *t = ck.tensors[i];
    size_t n = st_numel(t);
    double *w = NULL;
    if ((rc = checkpoint_read_f64(&ck, t->name, 0, &w, err)) < 0) break;
    double *deq = malloc(sizeof(double) * (n ? n : 1));
    memcpy(deq, w, sizeof(double) * n);
    bool linear = t->ndim == 2 && strncmp(t->name, "model.layers.", 13) == 0 && ends_with(t->name, "_proj.weight");
    if (linear && (format != QUANT_MXFP4 || t->shape[1] % 32 == 0)) {
      quantize(&q, t->name, (size_t)t->shape[0], (size_t)t->shape[1], w, deq, format);
    } else {
      void *copy = malloc(t->nbytes + 1);
      memcpy(copy, t->data, t->nbytes);
      add(&q, t->name, t->dtype, t->ndim, t->shape, copy);
    }
    add(&d, t->name, DTYPE_F64, t->ndim, t->shape, deq);
    free(w);
  }
  if (rc == 0) rc = write_list(dst, &q, err);
  if (rc == 0) rc = write_list(ref, &d, err);
  if (rc == 0) rc = write_config(&ck, dst, quantization_config(format), err);
  if (rc == 0) rc = write_config(&ck, ref, NULL, err);
  list_free(&q);
  list_free(&d);
  checkpoint_close(&ck);
  return rc;
}

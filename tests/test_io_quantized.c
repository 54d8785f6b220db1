/* Quantized source formats at the io level: every bit pattern of FP8 E4M3 (incl. the NaN codes
 * 0x7F/0xFF), FP8 E5M2 (incl. ±inf and NaN), FP4 E2M1 and E8M0 (0xFF = NaN) against an
 * independent formula and known anchors, through the single-code functions and the bulk
 * conversions; the FP8 encoders; and checkpoints: each layout dequantized exactly (against the
 * values the quantizer computed), scale tensors hidden, MXFP4 pairs named without _blocks, and the
 * malformed layouts refused with the tensor named. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/finite.h"
#include "io/safetensors_writer.h"
#include "support/quantize_checkpoint.h"
#include "support/test_support.h"
#include "synth/synth.h"

/* The value of a minifloat code by the textbook formula, written independently of io/dtype.c:
 * (−1)^s · 2^(E − bias) · (1 + M / 2^m) for E > 0, (−1)^s · 2^(1 − bias) · M / 2^m for E = 0. */
static double textbook(unsigned code, int e_bits, int m_bits) {
  unsigned s = code >> (e_bits + m_bits) & 1, E = code >> m_bits & ((1u << e_bits) - 1),
           M = code & ((1u << m_bits) - 1);
  int bias = (1 << (e_bits - 1)) - 1;
  double frac = (double)M / pow(2.0, m_bits);
  double v = E ? pow(2.0, (double)E - bias) * (1.0 + frac) : pow(2.0, 1.0 - bias) * frac;
  return s ? -v : v;
}

static void same_value(double got, double want, unsigned code) {
  if (isnan(want)) {
    if (!isnan(got)) fail_msg("code 0x%02x: %g, expected NaN", code, got);
    return;
  }
  if (got != want || signbit(got) != signbit(want)) fail_msg("code 0x%02x: %.17g, expected %.17g", code, got, want);
}

static void e4m3_every_code(void **state) {
  unsigned char codes[256];
  double bulk[256];
  float bulk32[256];
  for (unsigned c = 0; c < 256; c++) codes[c] = (unsigned char)c;
  dtype_to_f64(DTYPE_F8_E4M3, codes, bulk, 256);
  dtype_to_f32(DTYPE_F8_E4M3, codes, bulk32, 256);
  for (unsigned c = 0; c < 256; c++) {
    double want = (c & 0x7f) == 0x7f ? NAN : textbook(c, 4, 3); /* "fn": no infinity, S.1111.111 NaN */
    same_value(fp8_e4m3_value((unsigned char)c), want, c);
    same_value(bulk[c], want, c);
    same_value(bulk32[c], want, c);
    assert_int_equal(first_non_finite(DTYPE_F8_E4M3, &codes[c], 1), isnan(want) ? 0 : 1);
    if (!isnan(want)) { /* the encoder inverts the decoder on every finite code */
      unsigned char back;
      dtype_from_f64(DTYPE_F8_E4M3, &want, &back, 1);
      assert_int_equal(back, c);
    }
  }
  assert_true(fp8_e4m3_value(0x7e) == 448 && fp8_e4m3_value(0xfe) == -448);
  assert_true(fp8_e4m3_value(0x38) == 1 && fp8_e4m3_value(0x08) == 0x1p-6 && fp8_e4m3_value(0x01) == 0x1p-9);
  assert_int_equal(first_non_finite(DTYPE_F8_E4M3, codes, 256), 0x7f);
}

/* The scaled path (a tensor read through its scale) gives every code's value times the scale. */
static void scaled_every_code(void **state) {
  unsigned char codes[256];
  for (unsigned c = 0; c < 256; c++) codes[c] = (unsigned char)c;
  const float scales[] = {1.0f, 0.1f, 3e-5f};
  for (int f = 0; f < 2; f++)
    for (size_t k = 0; k < 3; k++) {
      dtype t = f ? DTYPE_F8_E5M2 : DTYPE_F8_E4M3;
      st_tensor scale = {.name = "s", .dtype = DTYPE_F32, .ndim = 1, .shape = {1}, .data = &scales[k]};
      st_tensor q = {.name = "q",
                     .dtype = t,
                     .ndim = 2,
                     .shape = {4, 64},
                     .data = codes,
                     .scaling = ST_SCALE_TENSOR,
                     .scale = &scale};
      double got[256];
      st_to_f64(&q, 0, 256, got);
      for (unsigned c = 0; c < 256; c++)
        same_value(got[c], (f ? fp8_e5m2_value((unsigned char)c) : fp8_e4m3_value((unsigned char)c)) * scales[k], c);
    }
}

static void e5m2_every_code(void **state) {
  unsigned char codes[256];
  double bulk[256];
  for (unsigned c = 0; c < 256; c++) codes[c] = (unsigned char)c;
  dtype_to_f64(DTYPE_F8_E5M2, codes, bulk, 256);
  for (unsigned c = 0; c < 256; c++) {
    unsigned e = c >> 2 & 31, m = c & 3;
    double want = e == 31 ? (m ? NAN : (c & 0x80 ? -INFINITY : INFINITY)) : textbook(c, 5, 2);
    same_value(fp8_e5m2_value((unsigned char)c), want, c);
    same_value(bulk[c], want, c);
    assert_int_equal(first_non_finite(DTYPE_F8_E5M2, &codes[c], 1), isfinite(want) ? 1 : 0);
    if (isfinite(want)) {
      unsigned char back;
      dtype_from_f64(DTYPE_F8_E5M2, &want, &back, 1);
      assert_int_equal(back, c);
    }
  }
  assert_true(fp8_e5m2_value(0x7b) == 57344 && fp8_e5m2_value(0x3c) == 1 && fp8_e5m2_value(0x01) == 0x1p-16);
}

static void e2m1_every_code(void **state) {
  static const double table[16] = {0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6};
  unsigned char packed[8];
  for (unsigned i = 0; i < 8; i++) packed[i] = (unsigned char)((2 * i) | (2 * i + 1) << 4); /* low nibble first */
  double bulk[16];
  dtype_to_f64(DTYPE_F4_E2M1, packed, bulk, 16);
  for (unsigned c = 0; c < 16; c++) {
    same_value(fp4_e2m1_value(c), table[c], c);
    same_value(fp4_e2m1_value(c), textbook(c, 2, 1), c);
    same_value(bulk[c], table[c], c);
  }
}

static void e8m0_every_code(void **state) {
  for (unsigned c = 0; c < 256; c++)
    same_value(e8m0_value((unsigned char)c), c == 255 ? NAN : pow(2.0, (double)c - 127), c);
  assert_true(e8m0_value(127) == 1 && e8m0_value(0) == 0x1p-127 && e8m0_value(254) == 0x1p127);
}

/* Rounding to FP8: ties to even, E4M3 overflow NaN (no infinity), E5M2 overflow inf. */
static void fp8_encoders_round(void **state) {
  const struct {
    dtype t;
    double x;
    unsigned char code;
  } cases[] = {
      {DTYPE_F8_E4M3, 464, 0x7e},   {DTYPE_F8_E4M3, 464.5, 0x7f},  {DTYPE_F8_E4M3, 1e6, 0x7f},
      {DTYPE_F8_E4M3, -1e6, 0xff},  {DTYPE_F8_E4M3, 1.0625, 0x38}, {DTYPE_F8_E4M3, 1.1875, 0x3a},
      {DTYPE_F8_E4M3, 0x1p-10, 0},  {DTYPE_F8_E4M3, 0x1.8p-10, 1}, {DTYPE_F8_E4M3, 136, 0x70},
      {DTYPE_F8_E4M3, NAN, 0x7f},   {DTYPE_F8_E5M2, 61440, 0x7c},  {DTYPE_F8_E5M2, 1e6, 0x7c},
      {DTYPE_F8_E5M2, 1.125, 0x3c}, {DTYPE_F8_E5M2, 0x1p-17, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    unsigned char got;
    dtype_from_f64(cases[i].t, &cases[i].x, &got, 1);
    if (got != cases[i].code)
      fail_msg("%s of %g: 0x%02x, expected 0x%02x", dtype_name(cases[i].t), cases[i].x, got, cases[i].code);
  }
}

static const synth_spec tiny = {.architecture = "LlamaForCausalLM",
                                .hidden_size = 64,
                                .intermediate_size = 160,
                                .num_layers = 1,
                                .num_heads = 4,
                                .num_kv_heads = 2,
                                .vocab_size = 64,
                                .dtype = DTYPE_BF16,
                                .seed = 5};

/* Each layout read back equals, value for value, what the quantizer dequantized. */
static void layouts_dequantize_exactly(void **state) {
  const quant_format formats[] = {QUANT_FP8_BLOCK, QUANT_FP8_CHANNEL, QUANT_FP8_TENSOR, QUANT_MXFP4};
  const st_scaling scalings[] = {ST_SCALE_BLOCK, ST_SCALE_CHANNEL, ST_SCALE_TENSOR, ST_SCALE_MXFP4};
  for (int f = 0; f < 4; f++) {
    char *scratch = scratch_dir("io-quant");
    char base[4200], q[4200], r[4200];
    snprintf(base, sizeof base, "%s/base", scratch);
    snprintf(q, sizeof q, "%s/q", scratch);
    snprintf(r, sizeof r, "%s/r", scratch);
    rotq_error err = {{0}};
    if (synth_write(&tiny, base, &err) != 0) fail_msg("%s", err.message);
    assert_int_equal(run_command("mkdir '%s' '%s'", q, r), 0);
    if (quantize_checkpoint(base, q, r, formats[f], &err) != 0) fail_msg("%s", err.message);
    checkpoint cq, cr;
    if (checkpoint_open(q, &cq, &err) != 0 || checkpoint_open(r, &cr, &err) != 0) fail_msg("%s", err.message);
    assert_int_equal(cq.tensor_count, cr.tensor_count); /* no scale, input_scale or _blocks names left */
    size_t quantized = 0;
    for (size_t i = 0; i < cq.tensor_count; i++) {
      const st_tensor *t = cq.tensors[i], *want = cr.tensors[i];
      assert_string_equal(t->name, want->name);
      assert_int_equal(t->ndim, want->ndim);
      assert_memory_equal(t->shape, want->shape, sizeof(int64_t) * (size_t)t->ndim);
      if (st_is_quantized(t)) quantized++, assert_int_equal(t->scaling, scalings[f]);
      size_t n = st_numel(t);
      double *a = NULL, *b = NULL;
      assert_int_equal(checkpoint_read_f64(&cq, t->name, n, &a, &err), 0);
      assert_int_equal(checkpoint_read_f64(&cr, t->name, n, &b, &err), 0);
      if (memcmp(a, b, n * sizeof(double)) != 0) fail_msg("format %d: tensor '%s' differs", f, t->name);
      for (size_t k = 1; k + 7 < n; k += 97) { /* ranges starting anywhere (odd nibbles, mid-block) */
        double part[7];
        st_to_f64(t, k, 7, part);
        assert_memory_equal(part, b + k, sizeof part);
      }
      free(a);
      free(b);
    }
    /* MXFP4 leaves down_proj (in 160 = 5·32: quantized) — every _proj weight is quantized here */
    assert_int_equal(quantized, 7);
    checkpoint_close(&cq);
    checkpoint_close(&cr);
    scratch_remove(scratch);
    free(scratch);
  }
}

/* A checkpoint of the tiny model's config with the given extra tensors: opening it fails with a
 * message containing want. */
typedef struct extra {
  const char *name;
  dtype t;
  int ndim;
  int64_t shape[3];
  unsigned char fill;
} extra;

static void refused(const extra *tensors, size_t count, const char *config_extra, const char *want) {
  char *scratch = scratch_dir("io-quant-bad");
  char base[4200], dir[4200];
  snprintf(base, sizeof base, "%s/base", scratch);
  snprintf(dir, sizeof dir, "%s/bad", scratch);
  rotq_error err = {{0}};
  if (synth_write(&tiny, base, &err) != 0) fail_msg("%s", err.message);
  assert_int_equal(run_command("mkdir '%s' && cp '%s/config.json' '%s/'", dir, base, dir), 0);
  if (config_extra) assert_int_equal(run_command("sed -i 's/^{/{%s,/' '%s/config.json'", config_extra, dir), 0);
  st_spec specs[4];
  void *data[4];
  for (size_t i = 0; i < count; i++) {
    specs[i] = (st_spec){.name = tensors[i].name, .dtype = tensors[i].t, .ndim = tensors[i].ndim};
    memcpy(specs[i].shape, tensors[i].shape, sizeof specs[i].shape[0] * 3);
    size_t n = 1;
    for (int d = 0; d < tensors[i].ndim; d++) n *= (size_t)tensors[i].shape[d];
    data[i] = malloc(n * dtype_size(tensors[i].t));
    memset(data[i], tensors[i].fill, n * dtype_size(tensors[i].t));
  }
  st_writer *w = st_writer_open(dir, specs, count, 0, &err);
  assert_non_null(w);
  for (size_t i = 0; i < count; i++) assert_int_equal(st_writer_write(w, i, data[i], &err), 0), free(data[i]);
  assert_int_equal(st_writer_finish(w, &err), 0);
  checkpoint ck;
  assert_int_equal(checkpoint_open(dir, &ck, &err), -1);
  if (!strstr(err.message, want)) fail_msg("message '%s' lacks '%s'", err.message, want);
  scratch_remove(scratch);
  free(scratch);
}

static void malformed_layouts_refused(void **state) {
  extra no_scale[] = {{"w.weight", DTYPE_F8_E4M3, 2, {4, 8}, 0x38}};
  refused(no_scale, 1, NULL, "tensor 'w.weight' is F8_E4M3 but has no scale tensor ('w.weight_scale_inv'");
  extra bad_block[] = {{"w.weight", DTYPE_F8_E4M3, 2, {130, 8}, 0x38}, {"w.weight_scale_inv", DTYPE_F32, 2, {1, 1}, 0}};
  refused(bad_block, 2, NULL,
          "tensor 'w.weight_scale_inv' is [1, 1]: for 'w.weight' [130, 8] in 128×128 blocks it must be [2, 1]");
  extra small_block[] = {{"w.weight", DTYPE_F8_E4M3, 2, {4, 8}, 0x38}, {"w.weight_scale_inv", DTYPE_F32, 2, {1, 1}, 0}};
  refused(small_block, 2, "\"quantization_config\":{\"quant_method\":\"fp8\",\"weight_block_size\":[2,4]}",
          "in 2×4 blocks it must be [2, 2]");
  extra nan_scale[] = {{"w.weight", DTYPE_F8_E4M3, 2, {4, 8}, 0x38}, {"w.weight_scale", DTYPE_F32, 1, {1}, 0xff}};
  refused(nan_scale, 2, NULL, "tensor 'w.weight_scale': scale 0 is not finite");
  extra bad_channel[] = {{"w.weight", DTYPE_F8_E5M2, 2, {4, 8}, 0x3c}, {"w.weight_scale", DTYPE_BF16, 2, {8, 1}, 0}};
  refused(bad_channel, 2, NULL, "tensor 'w.weight_scale' is [8, 1]: for 'w.weight' [4, 8] it must be one scale");
  extra e8m0_nan[] = {{"e.proj_blocks", DTYPE_U8, 3, {2, 1, 16}, 0x21}, {"e.proj_scales", DTYPE_U8, 2, {2, 1}, 0xff}};
  refused(e8m0_nan, 2, NULL, "tensor 'e.proj_scales': scale 0 is not finite (E8M0 0xFF is NaN)");
  extra bad_blocks[] = {{"e.proj_blocks", DTYPE_U8, 3, {2, 1, 8}, 0}, {"e.proj_scales", DTYPE_U8, 2, {2, 1}, 127}};
  refused(bad_blocks, 2, NULL, "are not MXFP4 blocks [..., G, 16] and scales [..., G]");
  extra orphan[] = {{"e.codes", DTYPE_U8, 1, {4}, 0}};
  refused(orphan, 1, NULL, "tensor 'e.codes' is U8 but not part of an MXFP4 pair");
}

/* A well-formed MXFP4 pair of any rank: [..., G·32], scaled per block. */
static void mxfp4_three_dimensional(void **state) {
  char *scratch = scratch_dir("io-mx3");
  char base[4200], dir[4200];
  snprintf(base, sizeof base, "%s/base", scratch);
  snprintf(dir, sizeof dir, "%s/mx", scratch);
  rotq_error err = {{0}};
  if (synth_write(&tiny, base, &err) != 0) fail_msg("%s", err.message);
  assert_int_equal(run_command("mkdir '%s' && cp '%s/config.json' '%s/'", dir, base, dir), 0);
  unsigned char blocks[2 * 3 * 2 * 16], scales[2 * 3 * 2];
  for (size_t i = 0; i < sizeof blocks; i++) blocks[i] = (unsigned char)(i * 37 + 11);
  for (size_t i = 0; i < sizeof scales; i++) scales[i] = (unsigned char)(120 + i);
  st_spec specs[2] = {{.name = "experts.gate_up_proj_blocks", .dtype = DTYPE_U8, .ndim = 4, .shape = {2, 3, 2, 16}},
                      {.name = "experts.gate_up_proj_scales", .dtype = DTYPE_U8, .ndim = 3, .shape = {2, 3, 2}}};
  st_writer *w = st_writer_open(dir, specs, 2, 0, &err);
  assert_int_equal(st_writer_write(w, 0, blocks, &err), 0);
  assert_int_equal(st_writer_write(w, 1, scales, &err), 0);
  assert_int_equal(st_writer_finish(w, &err), 0);
  checkpoint ck;
  if (checkpoint_open(dir, &ck, &err) != 0) fail_msg("%s", err.message);
  assert_int_equal(ck.tensor_count, 1);
  assert_null(checkpoint_find(&ck, "experts.gate_up_proj_blocks"));
  const st_tensor *t = checkpoint_find(&ck, "experts.gate_up_proj");
  assert_non_null(t);
  assert_int_equal(t->ndim, 3);
  assert_true(t->shape[0] == 2 && t->shape[1] == 3 && t->shape[2] == 64);
  double *v = NULL;
  assert_int_equal(checkpoint_read_f64(&ck, t->name, 2 * 3 * 64, &v, &err), 0);
  for (size_t i = 0; i < 2 * 3 * 64; i++) { /* element i: nibble i % 2 of byte i / 2, scale of block i / 32 */
    unsigned nibble = (blocks[i / 2] >> (4 * (i % 2))) & 15;
    double want = fp4_e2m1_value(nibble) * pow(2.0, (double)scales[i / 32] - 127);
    if (v[i] != want) fail_msg("element %zu: %g, expected %g", i, v[i], want);
  }
  free(v);
  checkpoint_close(&ck);
  scratch_remove(scratch);
  free(scratch);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(e4m3_every_code),
      cmocka_unit_test(e5m2_every_code),
      cmocka_unit_test(e2m1_every_code),
      cmocka_unit_test(e8m0_every_code),
      cmocka_unit_test(scaled_every_code),
      cmocka_unit_test(fp8_encoders_round),
      cmocka_unit_test(layouts_dequantize_exactly),
      cmocka_unit_test(malformed_layouts_refused),
      cmocka_unit_test(mxfp4_three_dimensional),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

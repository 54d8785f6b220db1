/* rotq eval on the compressed-tensors checkpoints rotq writes (io/quantized.h reads pack-quantized
 * W4A16, int-quantized W8A8 and float-quantized FP8 as their dequantized values): the perplexity
 * must equal the fake-quantized evaluation's exactly (the same bits of the mean NLL):
 *
 *   - against the fake-quantized checkpoint (quantize's --fake-quant-output: every quantized
 *     weight replaced by (q − z)·scale rounded to the weight's dtype, what compressed-tensors'
 *     decompression computes) for float64, float32 and bfloat16 models, every scheme;
 *   - for a float64 model also against `rotq eval --wbits 4 --w-group G` / `--wbits 8` /
 *     `--wformat fp8` on the unquantized rotated model (eval's own fake quantizer, linalg's RTN,
 *     which with float64 scales is the packed format's rounding bit for bit);
 *   - and the one-pass `rotate --quantize` output evaluates as rotate-then-quantize's.
 *
 * FP8 on a float32 or bfloat16 model is the one case not compared bit for bit with the
 * fake-quantized checkpoint: the reader returns the FP8 code × scale exactly (as vLLM's FP8 GEMM
 * uses it, and as rotate reads FP8 sources), while the fake-quantized checkpoint rounds that
 * product to the weight's dtype (a 4-bit code times a 24- or 8-bit scale needs up to 28 bits);
 * the test bounds the difference (relative 1e-3 of the NLL; measured 4e-10 for float32) instead,
 * and compares bit for bit with eval's own FP8 fake quantization on float64.
 *
 * The families whose decoder linears are not all q/k/v/o/gate/up/down (MoE experts and shared
 * experts, Mamba-2 and gated-DeltaNet projections, Qwen3-Next's gated q_proj) are checked the same
 * way in float64: eval's own RTN must quantize exactly the linears the export quantizes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rotate/quantize_command.h"
#include "rotq.h"
#include "support/test_support.h"
#include "synth/synth.h"

static void synth(const char *dir, dtype t) {
  synth_spec spec = {.architecture = "LlamaForCausalLM",
                     .hidden_size = 64,
                     .intermediate_size = 128,
                     .num_layers = 2,
                     .num_heads = 4,
                     .num_kv_heads = 2,
                     .vocab_size = 512,
                     .dtype = t,
                     .seed = 11};
  rotq_error err = {{0}};
  if (synth_write(&spec, dir, &err) < 0) fail_msg("synth: %s", err.message);
}

static void rotate(const char *in, const char *out, const char *quantize, int group) {
  rotq_rotate_options o = rotq_rotate_default_options();
  o.model_dir = in, o.output_dir = out, o.threads = 2, o.quantize = quantize, o.quantize_group = group;
  rotq_error err = {{0}};
  if (rotq_rotate(&o, &err) != 0) fail_msg("rotate %s: %s", in, err.message);
}

static void quantize(const char *in, const char *out, const char *fake, const char *scheme, int group, bool asym) {
  quantize_options o = {.model_dir = in, .output_dir = out, .fake_quant_dir = fake, .threads = 2};
  assert_int_equal(ct_scheme_parse(scheme, group, asym, &o.scheme), 0);
  rotq_error err = {{0}};
  quantize_result r;
  if (quantize_compressed(&o, &r, &err) != 0) fail_msg("quantize %s %s: %s", in, scheme, err.message);
}

/* The mean NLL of dir on 6 segments of 64 tokens, fake-quantized as q says (NULL: not). */
static double nll(const char *dir, const rotq_quant_options *q) {
  rotq_eval_options o = {
      .model_dir = dir, .tokens_path = source_path("data/tinystories_val.tok512.u16"), .ctx = 64, .segments = 6};
  if (q) o.quant = *q;
  rotq_eval_result r;
  rotq_error err = {{0}};
  if (rotq_eval(&o, &r, &err) != 0) fail_msg("eval %s: %s", dir, err.message);
  assert_true(r.predicted > 100);
  return r.nll;
}

static void expect_same(double a, double b, const char *what) {
  if (memcmp(&a, &b, sizeof a) != 0) fail_msg("%s: nll %.17g vs %.17g", what, a, b);
}

typedef struct scheme_case {
  const char *scheme;
  int group;
  bool asym;
  rotq_quant_options fake; /* eval's own fake quantization of the same weights */
  bool has_fake;
} scheme_case;

static const scheme_case cases[] = {
    {"W4A16", 32, false, {.wbits = 4, .w_group = 32}, true},
    {"W4A16", 16, true, {0}, false}, /* eval has no asymmetric weights */
    {"W8A8", 0, false, {.wbits = 8}, true},
    {"FP8", 0, false, {.wbits = 8, .wformat = "fp8"}, true},
    {"FP8_BLOCK", 0, false, {0}, false}, /* eval fake-quantizes FP8 per channel only */
    {"MXFP4A16", 0, false, {0}, false},  /* compressed-tensors' MX scale rounds up where eval's does not */
};

static void check_dtype(dtype t, const char *tag) {
  char *dir = scratch_dir(tag);
  char in[4200], rotated[4200];
  snprintf(in, sizeof in, "%s/in", dir);
  snprintf(rotated, sizeof rotated, "%s/rotated", dir);
  synth(in, t);
  rotate(in, rotated, NULL, 0);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const scheme_case *c = &cases[i];
    char packed[4300], fake[4300], what[200];
    snprintf(packed, sizeof packed, "%s/packed%zu", dir, i);
    snprintf(fake, sizeof fake, "%s/fake%zu", dir, i);
    snprintf(what, sizeof what, "%s %s group %d%s", dtype_name(t), c->scheme, c->group, c->asym ? " asymmetric" : "");
    quantize(rotated, packed, fake, c->scheme, c->group, c->asym);
    double got = nll(packed, NULL);
    if (!strncmp(c->scheme, "FP8", 3) && t != DTYPE_F64) {
      /* exact code × scale vs its rounding to the dtype (relative 2^-9 per weight for bfloat16) */
      double other = nll(fake, NULL);
      if (fabs(got - other) > 1e-3 * fabs(other)) fail_msg("%s: nll %.17g vs %.17g", what, got, other);
    } else {
      expect_same(got, nll(fake, NULL), what);
    }
    if (t == DTYPE_F64 && c->has_fake) expect_same(got, nll(rotated, &c->fake), what);
    if (c->asym) continue;
    /* the one-pass rotate --quantize output: the same checkpoint, the same perplexity */
    char one[4300];
    snprintf(one, sizeof one, "%s/one%zu", dir, i);
    rotate(in, one, c->scheme, c->group);
    expect_same(got, nll(one, NULL), what);
  }
  scratch_remove(dir);
  free(dir);
}

static void test_float64(void **state) {
  (void)state;
  check_dtype(DTYPE_F64, "quantized-eval-f64");
}

static void test_float32(void **state) {
  (void)state;
  check_dtype(DTYPE_F32, "quantized-eval-f32");
}

static void test_bfloat16(void **state) {
  (void)state;
  check_dtype(DTYPE_BF16, "quantized-eval-bf16");
}

/* Families with experts, Mamba-2 or DeltaNet: `rotq eval --wbits 4 --w-group 8` of the float64
 * model and `rotq eval` of its W4A16 export give the same mean NLL, bit for bit. */
static void test_other_linears(void **state) {
  (void)state;
  const synth_spec specs[] = {
      {.architecture = "MixtralForCausalLM",
       .hidden_size = 64,
       .intermediate_size = 96,
       .num_layers = 2,
       .num_heads = 4,
       .num_kv_heads = 2,
       .vocab_size = 512,
       .dtype = DTYPE_F64,
       .seed = 21,
       .num_experts = 4,
       .num_experts_per_tok = 2},
      {.architecture = "Qwen2MoeForCausalLM",
       .hidden_size = 64,
       .intermediate_size = 80,
       .num_layers = 2,
       .num_heads = 4,
       .num_kv_heads = 2,
       .vocab_size = 512,
       .dtype = DTYPE_F64,
       .seed = 22,
       .num_experts = 5,
       .num_experts_per_tok = 2,
       .moe_intermediate_size = 48,
       .shared_expert_intermediate_size = 96,
       .decoder_sparse_step = 1},
      {.architecture = "Qwen3NextForCausalLM",
       .hidden_size = 64,
       .intermediate_size = 96,
       .num_layers = 4,
       .num_heads = 4,
       .num_kv_heads = 2,
       .head_dim = 16,
       .vocab_size = 512,
       .dtype = DTYPE_F64,
       .seed = 23,
       .num_experts = 4,
       .num_experts_per_tok = 2,
       .moe_intermediate_size = 40,
       .shared_expert_intermediate_size = 48,
       .decoder_sparse_step = 2},
      {.architecture = "NemotronHForCausalLM",
       .hidden_size = 64,
       .intermediate_size = 96,
       .moe_intermediate_size = 32,
       .num_experts = 8,
       .num_experts_per_tok = 2,
       .num_layers = 6,
       .num_heads = 4,
       .num_kv_heads = 2,
       .head_dim = 16,
       .vocab_size = 512,
       .dtype = DTYPE_F64,
       .seed = 24,
       .hybrid_override_pattern = "ME*-EM",
       .mamba_num_heads = 8,
       .mamba_head_dim = 8,
       .ssm_state_size = 16,
       .n_groups = 2,
       .conv_kernel = 4},
  };
  const rotq_quant_options w4 = {.wbits = 4, .w_group = 8};
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
    char *dir = scratch_dir("quantized-eval-other");
    char in[4200], packed[4300], fake[4300];
    snprintf(in, sizeof in, "%s/in", dir);
    snprintf(packed, sizeof packed, "%s/packed", dir);
    snprintf(fake, sizeof fake, "%s/fake", dir);
    rotq_error err = {{0}};
    if (synth_write(&specs[i], in, &err) < 0) fail_msg("synth %s: %s", specs[i].architecture, err.message);
    quantize(in, packed, fake, "W4A16", 8, false);
    double full = nll(in, NULL), got = nll(packed, NULL);
    if (got == full) fail_msg("%s: quantization changed nothing", specs[i].architecture);
    expect_same(got, nll(in, &w4), specs[i].architecture);
    scratch_remove(dir);
    free(dir);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_float64),
      cmocka_unit_test(test_float32),
      cmocka_unit_test(test_bfloat16),
      cmocka_unit_test(test_other_linears),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

#!/usr/bin/env bash
# Quantized sources through the CLI: `rotq synth --dtype fp8` writes DeepSeek-V3's block FP8,
# `rotq info` shows it, `rotq rotate` rotates it (in-stream and whole-model checks) into a bf16
# checkpoint without scales or quantization_config, `--dtype f16` writes every tensor as F16, and a
# bad --dtype is a usage error. The bit-for-bit round trips are tests/test_rotate_quantized.c.
set -u
. "${ROTQ_SOURCE_DIR:?ROTQ_SOURCE_DIR is not set}/tests/support/cli_test.sh" cli_quantized

IN=$SCRATCH/fp8
expect 0 'wrote .*fp8' -- "$ROTQ" synth --shape small --layers 2 --dtype fp8 --output "$IN"
grep -q '"quant_method":[[:space:]]*"fp8"' "$IN/config.json" || fail "synth fp8: no quantization_config"
expect 0 'dtypes +BF16 \(7 tensors\) F8_E4M3 \(14 tensors\)' -- "$ROTQ" info --model "$IN"

OUT=$SCRATCH/rotated
expect 0 'verify: max .*argmax 16/16' -- "$ROTQ" rotate --model "$IN" --output "$OUT" --verify
grep -q 'quantization_config' "$OUT/config.json" && fail "the output keeps quantization_config"
grep -q '"torch_dtype":[[:space:]]*"bfloat16"' "$OUT/config.json" || fail "the output's torch_dtype is not bfloat16"
grep -q '_scale_inv' "$OUT/model.safetensors" && fail "the output holds scale tensors"
expect 0 'dtypes +BF16 \(21 tensors\)$' -- "$ROTQ" info --model "$OUT"

expect 0 'verify: in-stream' -- "$ROTQ" rotate --model "$IN" --output "$SCRATCH/f16" --dtype f16
expect 0 'dtypes +F16 \(21 tensors\)$' -- "$ROTQ" info --model "$SCRATCH/f16"
grep -q '"torch_dtype":[[:space:]]*"float16"' "$SCRATCH/f16/config.json" || fail "--dtype f16: torch_dtype"

expect 2 "rotq rotate: --dtype takes bf16, f16, f32 or f64, not 'fp8'" -- \
  "$ROTQ" rotate --model "$IN" --output "$SCRATCH/bad" --dtype fp8
expect 0 'Quantized sources are read' -- "$ROTQ" rotate --help
finish

#!/usr/bin/env bash
# rotq quantize --method gptq from the command line: usage errors (exit 2), inputs it refuses
# (exit 1, the file or architecture named, no output left), and on the bundled model (float32) and
# its rotations (bfloat16, and with online rotations): `rotq eval` of the GPTQ checkpoint equals, to
# the printed digit, the eval of its --fake-quant-output, and `rotq compare` finds their logits
# equal (max |Δlogit| 0; W4A16 symmetric and asymmetric, W8A8); and
# GPTQ's perplexity is lower than RTN's for W4A16. The codes themselves are checked against
# independent GPTQs by tests/test_gptq_format.c and tests/hf/test_gptq_pipeline.py, the format by
# tests/hf/test_quantized_export.py.
set -u
. "${ROTQ_SOURCE_DIR:?ROTQ_SOURCE_DIR is not set}/tests/support/cli_test.sh" cli_quantize_gptq

# no_output NAME: neither $SCRATCH/NAME nor a partial directory of it exists.
no_output() {
  local left
  left=$(cd "$SCRATCH" && ls -A | grep -E "^(\.)?$1(\.rotq-partial-[0-9]+)?\$")
  [ -z "$left" ] || fail "output '$1': left behind: $left"
}

# nll DIR: the mean NLL `rotq eval` prints for DIR's first 12 segments (the calibration segments
# are the file's last 24).
nll() {
  "$ROTQ" eval --model "$1" --tokens "$TOKENS" --segments 12 2>&1 | sed -n 's/^nll \([0-9.]*\) .*/\1/p'
}

GPTQ=(--method gptq --calib "$TOKENS" --calib-n 24 --calib-ctx 256)

# --- usage errors: exit 2 ---
expect 2 "--method gptq needs calibration tokens: --calib FILE" -- \
  "$ROTQ" quantize --model "$MODEL" --output "$SCRATCH/o" --scheme W8A8 --method gptq
expect 2 "--method must be rtn or gptq, not 'awq'" -- \
  "$ROTQ" quantize --model "$MODEL" --output "$SCRATCH/o" --scheme W8A8 --method awq
expect 2 "--calib and --act-order apply to --method gptq only" -- \
  "$ROTQ" quantize --model "$MODEL" --output "$SCRATCH/o" --scheme W8A8 --calib "$TOKENS"
expect 2 "--act-order is not supported: rotq does not write compressed-tensors' activation ordering \(weight_g_idx\)" -- \
  "$ROTQ" quantize --model "$MODEL" --output "$SCRATCH/o" --scheme W8A8 "${GPTQ[@]}" --act-order
expect 2 "--damp in \(0, 1\)" -- "$ROTQ" quantize --model "$MODEL" --output "$SCRATCH/o" --scheme W8A8 "${GPTQ[@]}" --damp 0
no_output o

# --- refused: exit 1, named, nothing written ---
expect 1 "GPTQ quantizes the int schemes only \(W4A16, W8A8\), not FP8" -- \
  "$ROTQ" quantize --model "$MODEL" --output "$SCRATCH/o" --scheme FP8 "${GPTQ[@]}"
expect 1 "GPTQ quantizes the int schemes only \(W4A16, W8A8\), not NVFP4A16" -- \
  "$ROTQ" quantize --model "$MODEL" --output "$SCRATCH/o" --scheme NVFP4A16 "${GPTQ[@]}"
expect 1 "no-such-file.u16" -- \
  "$ROTQ" quantize --model "$MODEL" --output "$SCRATCH/o" --scheme W8A8 --method gptq --calib "$SCRATCH/no-such-file.u16"
no_output o
rm -rf "$SCRATCH/mixtral" && cp -r "$MODEL" "$SCRATCH/mixtral" && sed -i 's/LlamaForCausalLM/MixtralForCausalLM/' "$SCRATCH/mixtral/config.json"
expect 1 "architecture 'MixtralForCausalLM' cannot be loaded a layer at a time \(only the LLaMA-layout decoders" -- \
  "$ROTQ" quantize --model "$SCRATCH/mixtral" --output "$SCRATCH/o" --scheme W8A8 "${GPTQ[@]}"
no_output o
expect 1 "the group size 128 does not divide its 172 input columns" -- \
  "$ROTQ" quantize --model "$MODEL" --output "$SCRATCH/o" --scheme W4A16 "${GPTQ[@]}"
no_output o

# --- the quantized checkpoint evaluates as its fake-quantized twin ---
# same_eval DIR ARGS...: GPTQ of DIR into $SCRATCH/q and $SCRATCH/f; their eval NLLs must be equal.
same_eval() {
  local model=$1
  shift
  rm -rf "$SCRATCH/q" "$SCRATCH/f"
  expect 0 "wrote .*q \(.*, GPTQ\): 35 weights quantized" -- \
    "$ROTQ" quantize --model "$model" --output "$SCRATCH/q" --fake-quant-output "$SCRATCH/f" "$@" "${GPTQ[@]}"
  local a b
  a=$(nll "$SCRATCH/q") b=$(nll "$SCRATCH/f")
  [ -n "$a" ] && [ "$a" = "$b" ] || fail "$model $*: eval of the GPTQ checkpoint ($a) differs from its fake quantization ($b)"
  expect 0 "max \|dlogit\| +0\.000e\+00" -- "$ROTQ" compare --a "$SCRATCH/q" --b "$SCRATCH/f" --tokens "$TOKENS"
}
same_eval "$MODEL" --scheme W4A16 --group-size 4
same_eval "$MODEL" --scheme W4A16 --group-size 4 --asymmetric
same_eval "$MODEL" --scheme W8A8
expect 0 "" -- "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/rot-bf16" --dtype bf16 --no-verify
same_eval "$SCRATCH/rot-bf16" --scheme W4A16 --group-size 4 --asymmetric
same_eval "$SCRATCH/rot-bf16" --scheme W8A8
expect 0 "" -- "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/rot-online" --online --no-verify
same_eval "$SCRATCH/rot-online" --scheme W4A16 --group-size 4

# --- GPTQ beats RTN (W4A16, group 4, on the first 12 segments; the calibration is the last 24) ---
rm -rf "$SCRATCH/rtn" "$SCRATCH/gptq"
expect 0 "wrote" -- "$ROTQ" quantize --model "$MODEL" --output "$SCRATCH/rtn" --scheme W4A16 --group-size 4
expect 0 "wrote" -- "$ROTQ" quantize --model "$MODEL" --output "$SCRATCH/gptq" --scheme W4A16 --group-size 4 "${GPTQ[@]}"
fp=$(nll "$MODEL") rtn=$(nll "$SCRATCH/rtn") gptq=$(nll "$SCRATCH/gptq")
echo "stories260K W4A16 g4, NLL on 12 segments: FP $fp, RTN $rtn, GPTQ $gptq"
awk -v f="$fp" -v r="$rtn" -v g="$gptq" 'BEGIN { exit !(f < g && g < r) }' ||
  fail "expected FP < GPTQ < RTN in NLL, got FP $fp, RTN $rtn, GPTQ $gptq"

finish

#!/usr/bin/env bash
# rotq rotate --quantize SCHEME: rotation and quantization in one read and one write. The output
# must be the bytes of `rotq rotate` followed by `rotq quantize --scheme SCHEME` (every shard, the
# index, config.json, the other files), for every scheme, with online rotations, several shards,
# --dtype, and an FP8 source (NVFP4A16's fused global scales too); usage errors exit 2; --verify
# (the whole-model check, which cannot run on a quantized output) and a refused weight exit 1
# leaving nothing behind (and nothing in /dev/shm, where an earlier version kept the check's
# copy). tests/test_rotate_quantize_stream.c shows the in-stream check still catches a broken
# rotation of the quantized weights.
set -u
. "${ROTQ_SOURCE_DIR:?ROTQ_SOURCE_DIR is not set}/tests/support/cli_test.sh" cli_rotate_quantize

shm_dirs() { ls -d /dev/shm/rotq-check-* 2>/dev/null | sort; }
shm_before=$(shm_dirs)

# same_as_two_commands NAME INPUT "ROTATE OPTIONS" "QUANTIZE OPTIONS": rotate --quantize equals
# rotate then quantize, byte for byte.
same_as_two_commands() {
  local name=$1 in=$2 rot=$3 quant=$4 a=$SCRATCH/$1-two b=$SCRATCH/$1-one f proof="in-stream: .* tensors proven equivalent"
  [[ $rot == *--no-verify* ]] && proof="--no-verify: the output was not verified"
  # shellcheck disable=SC2086
  "$ROTQ" rotate --model "$in" --output "$a.rotated" --quiet $rot || { fail "$name: rotate"; return; }
  # shellcheck disable=SC2086
  "$ROTQ" quantize --model "$a.rotated" --output "$a" --quiet $quant || { fail "$name: quantize"; return; }
  # shellcheck disable=SC2086
  expect 0 "$proof" -- "$ROTQ" rotate --model "$in" --output "$b" $rot \
    --quantize ${quant#--scheme }
  [ "$(cd "$a" && ls | grep -v rotation.json)" = "$(cd "$b" && ls | grep -v rotation.json)" ] ||
    fail "$name: files differ: $(ls "$a") vs $(ls "$b")"
  for f in "$a"/*; do
    [ "$(basename "$f")" = rotation.json ] && continue
    cmp -s "$f" "$b/$(basename "$f")" || fail "$name: $(basename "$f") differs from rotate + quantize"
  done
  grep -q '"not run: the output is quantized' "$b/rotation.json" || fail "$name: rotation.json's whole-model status"
  rm -rf "$a" "$a.rotated" "$b"
}

# --- usage errors: exit 2 ---
expect 0 "--quantize SCHEME" -- "$ROTQ" rotate --help
expect 2 "--quantize takes W4A16, W8A8, FP8, FP8_BLOCK, NVFP4A16 or MXFP4A16, not 'W3'" -- \
  "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/o" --quantize W3
expect 2 "apply to --quantize W4A16 only" -- "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/o" --group-size 4
expect 2 "apply to --quantize W4A16 only" -- \
  "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/o" --quantize W8A8 --asymmetric

# --- refused: the whole-model check on a quantized output; a group that does not divide ---
expect 1 "the whole-model check cannot run on a quantized output" -- \
  "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/o" --quantize W8A8 --verify
expect 1 "tensor 'model.layers.0.mlp.down_proj.weight' \[64, 172\]: the group size 128 does not divide" -- \
  "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/o" --quantize W4A16
[ -z "$(cd "$SCRATCH" && ls -A | grep -E '^\.?o(\.rotq-partial-[0-9]+)?$')" ] || fail "a refused run left an output"

# --- the same bytes as the two commands (stories260K: float32, hidden 64, intermediate 172) ---
same_as_two_commands w4 "$MODEL" "" "--scheme W4A16 --group-size 4"
same_as_two_commands w4a "$MODEL" "" "--scheme W4A16 --group-size 4 --asymmetric"
same_as_two_commands w8 "$MODEL" "" "--scheme W8A8"
same_as_two_commands fp8 "$MODEL" "" "--scheme FP8"
same_as_two_commands fp8-block "$MODEL" "" "--scheme FP8_BLOCK"
same_as_two_commands w8-bf16 "$MODEL" "--dtype bf16" "--scheme W8A8"
same_as_two_commands w4-online "$MODEL" "--online" "--scheme W4A16 --group-size 4"
same_as_two_commands w4-vllm "$MODEL" "--online-for vllm --dtype bf16" "--scheme W4A16 --group-size 4"
same_as_two_commands w8-shards "$MODEL" "--max-shard-size 100000" "--scheme W8A8 --max-shard-size 100000"
"$ROTQ" synth --shape tiny --layers 2 --output "$SCRATCH/tiny" >/dev/null 2>&1 || fail "synth tiny"
same_as_two_commands tiny-w4 "$SCRATCH/tiny" "--threads 1" "--scheme W4A16 --group-size 16"
same_as_two_commands tiny-fp8 "$SCRATCH/tiny" "" "--scheme FP8"
"$ROTQ" synth --shape tiny --layers 2 --dtype fp8 --output "$SCRATCH/tiny-fp8" >/dev/null 2>&1 || fail "synth fp8"
same_as_two_commands fp8-source-w8 "$SCRATCH/tiny-fp8" "" "--scheme W8A8"
"$ROTQ" synth --shape small --layers 1 --output "$SCRATCH/small" >/dev/null 2>&1 || fail "synth small"
same_as_two_commands small-mxfp4 "$SCRATCH/small" "" "--scheme MXFP4A16"
same_as_two_commands small-fp8-block "$SCRATCH/small" "--online" "--scheme FP8_BLOCK"
same_as_two_commands no-verify "$SCRATCH/tiny" "--no-verify" "--scheme W4A16 --group-size 16"
# NVFP4A16: each fused q/k/v and gate/up group held until complete, quantized with its joint
# global scale (with and without the check, one thread, online rotations, several shards)
same_as_two_commands tiny-nvfp4 "$SCRATCH/tiny" "" "--scheme NVFP4A16"
same_as_two_commands tiny-nvfp4-1 "$SCRATCH/tiny" "--threads 1 --no-verify" "--scheme NVFP4A16"
same_as_two_commands small-nvfp4-online "$SCRATCH/small" "--online" "--scheme NVFP4A16"
same_as_two_commands nvfp4-shards "$SCRATCH/tiny" "--max-shard-size 300000 --dtype bf16" \
  "--scheme NVFP4A16 --max-shard-size 300000"

left=$(comm -13 <(echo "$shm_before") <(shm_dirs))
[ -z "$left" ] || fail "scratch directories left in /dev/shm: $left"
finish

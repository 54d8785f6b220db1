#!/usr/bin/env bash
# rotq quantize from the command line: usage errors (exit 2), inputs it must refuse with a message
# naming the tensor or file (exit 1, no output left behind), and the outputs of every scheme on the
# bundled model (hidden 64, intermediate 172) and on a rotated one: the tensors compressed-tensors
# names, their dtypes and shapes, config.json's quantization_config, the other files copied. The
# values themselves are checked bit for bit by tests/hf/test_quantized_export.py and
# tests/test_quant_pack.c.
set -u
. "${ROTQ_SOURCE_DIR:?ROTQ_SOURCE_DIR is not set}/tests/support/cli_test.sh" cli_quantize

# header FILE: the safetensors header of FILE as JSON.
header() {
  python3 -c 'import json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]; print(f.read(n).decode())' "$1"
}

# check_tensor DIR NAME DTYPE SHAPE: the tensor NAME of DIR/model.safetensors has DTYPE and SHAPE
# (a JSON list, e.g. [64,8]).
check_tensor() {
  local got
  got=$(header "$1/model.safetensors" | python3 -c 'import json, sys
h = json.load(sys.stdin); t = h.get(sys.argv[1])
print("missing" if t is None else t["dtype"] + " " + json.dumps(t["shape"], separators=(",", ":")))' "$2")
  [ "$got" = "$(echo $3 $4)" ] || fail "$1: tensor $2 is '$got', expected '$3 $4'"
}

# config_value DIR EXPRESSION: a Python expression of q (config.json's quantization_config).
config_value() {
  python3 -c 'import json, sys
q = json.load(open(sys.argv[1] + "/config.json"))["quantization_config"]; print(eval(sys.argv[2]))' "$1" "$2"
}

# no_output NAME: neither $SCRATCH/NAME nor a partial directory of it exists.
no_output() {
  local left
  left=$(cd "$SCRATCH" && ls -A | grep -E "^(\.)?$1(\.rotq-partial-[0-9]+)?\$")
  [ -z "$left" ] || fail "output '$1': left behind: $left"
}

# --- usage errors: exit 2 ---
expect 0 "usage: rotq quantize" -- "$ROTQ" quantize --help
expect 2 "--model, --output and --scheme are required" -- "$ROTQ" quantize --model "$MODEL" --output "$SCRATCH/o"
expect 2 "unknown scheme 'W3A7' \(W4A16, W8A8, FP8, FP8_BLOCK, NVFP4A16, MXFP4A16\)" -- \
  "$ROTQ" quantize --model "$MODEL" --output "$SCRATCH/o" --scheme W3A7
expect 2 "apply to W4A16 only, not W8A8" -- \
  "$ROTQ" quantize --model "$MODEL" --output "$SCRATCH/o" --scheme W8A8 --asymmetric
expect 2 "apply to W4A16 only, not FP8" -- \
  "$ROTQ" quantize --model "$MODEL" --output "$SCRATCH/o" --scheme FP8 --group-size 32
expect 2 "group-size must be at least 1, not 0" -- \
  "$ROTQ" quantize --model "$MODEL" --output "$SCRATCH/o" --scheme W4A16 --group-size 0
expect 2 "exclusive" -- "$ROTQ" quantize --model "$MODEL" --output "$SCRATCH/o" --scheme W4A16 --symmetric --asymmetric
expect 2 "unknown option '--bits'" -- "$ROTQ" quantize --model "$MODEL" --output "$SCRATCH/o" --scheme W4A16 --bits 4
no_output o

# --- inputs it refuses: exit 1, the tensor or file named, nothing left ---
expect 1 "^rotq quantize: .*stories260K/model.safetensors: tensor 'model.layers.0.mlp.down_proj.weight' \[64, 172\]: the group size 128 does not divide its 172 input columns" -- \
  "$ROTQ" quantize --model "$MODEL" --output "$SCRATCH/o" --scheme W4A16
no_output o
expect 1 "no-such-model/config.json: cannot open" -- \
  "$ROTQ" quantize --model "$SCRATCH/no-such-model" --output "$SCRATCH/o" --scheme W8A8
no_output o

rm -rf "$SCRATCH/nan" && cp -r "$MODEL" "$SCRATCH/nan"
python3 "$ROOT/tests/support/checkpoint_surgery.py" poke "$SCRATCH/nan/model.safetensors" model.layers.1.mlp.down_proj.weight 70 nan ||
  fail "checkpoint_surgery.py poke"
expect 1 "nan/model.safetensors: tensor 'model.layers.1.mlp.down_proj.weight': element 70 \(row 0\) is NaN or infinite" -- \
  "$ROTQ" quantize --model "$SCRATCH/nan" --output "$SCRATCH/o" --scheme W8A8
no_output o

# --- W4A16 (group 4: divides 64 and 172), symmetric ---
out=$SCRATCH/w4
expect 0 "wrote .*w4 \(W4A16, pack-quantized\): 35 weights quantized, 12 tensors copied" -- \
  "$ROTQ" quantize --model "$MODEL" --output "$out" --scheme W4A16 --group-size 4
check_tensor "$out" model.layers.0.self_attn.q_proj.weight_packed I32 "[64,8]"
check_tensor "$out" model.layers.0.self_attn.q_proj.weight_scale F32 "[64,16]"
check_tensor "$out" model.layers.0.self_attn.q_proj.weight_shape I64 "[2]"
check_tensor "$out" model.layers.0.mlp.down_proj.weight_packed I32 "[64,22]" # ⌈172/8⌉
check_tensor "$out" model.layers.0.mlp.down_proj.weight_scale F32 "[64,43]"
check_tensor "$out" model.layers.0.self_attn.q_proj.weight missing ""
check_tensor "$out" model.layers.0.self_attn.q_proj.weight_zero_point missing ""
check_tensor "$out" model.embed_tokens.weight F32 "[512,64]"
check_tensor "$out" model.layers.0.input_layernorm.weight F32 "[64]"
[ "$(config_value "$out" 'q["format"], q["quant_method"], q["ignore"], q["version"]')" = \
  "('pack-quantized', 'compressed-tensors', ['lm_head'], '0.20.1')" ] || fail "w4: quantization_config $(config_value "$out" q)"
[ "$(config_value "$out" 'q["config_groups"]["group_0"]["weights"]["group_size"], q["config_groups"]["group_0"]["weights"]["symmetric"]')" = "(4, True)" ] ||
  fail "w4: weights $(config_value "$out" 'q["config_groups"]')"
for f in tok512.bin tokenizer.model tokenizer_config.json; do cmp -s "$MODEL/$f" "$out/$f" || fail "w4: $f not copied"; done
expect 1 "already has a quantization_config" -- "$ROTQ" quantize --model "$out" --output "$SCRATCH/again" --scheme W8A8
no_output again
expect 1 "exists" -- "$ROTQ" quantize --model "$MODEL" --output "$out" --scheme W4A16 --group-size 4
expect 0 "wrote" -- "$ROTQ" quantize --model "$MODEL" --output "$out" --scheme W4A16 --group-size 4 --force

# --- W4A16 asymmetric: packed zero points [⌈64/8⌉, groups] ---
out=$SCRATCH/w4a
expect 0 "wrote" -- "$ROTQ" quantize --model "$MODEL" --output "$out" --scheme W4A16 --group-size 4 --asymmetric
check_tensor "$out" model.layers.1.mlp.down_proj.weight_zero_point I32 "[8,43]"
[ "$(config_value "$out" 'q["config_groups"]["group_0"]["weights"]["symmetric"]')" = False ] || fail "w4a: symmetric"

# --- W8A8 and FP8: per-channel scales, dynamic per-token activations ---
out=$SCRATCH/w8
expect 0 "wrote .*\(W8A8, int-quantized\)" -- "$ROTQ" quantize --model "$MODEL" --output "$out" --scheme w8a8
check_tensor "$out" model.layers.0.mlp.up_proj.weight I8 "[172,64]"
check_tensor "$out" model.layers.0.mlp.up_proj.weight_scale F32 "[172,1]"
[ "$(config_value "$out" 'q["config_groups"]["group_0"]["input_activations"]["strategy"], q["config_groups"]["group_0"]["input_activations"]["dynamic"]')" = "('token', True)" ] ||
  fail "w8: input_activations $(config_value "$out" 'q["config_groups"]')"
out=$SCRATCH/fp8
expect 0 "wrote .*\(FP8, float-quantized\)" -- "$ROTQ" quantize --model "$MODEL" --output "$out" --scheme FP8 --threads 1
check_tensor "$out" model.layers.1.self_attn.o_proj.weight F8_E4M3 "[64,64]"
[ "$(config_value "$out" 'q["config_groups"]["group_0"]["weights"]["type"]')" = float ] || fail "fp8: type"

# --- NVFP4A16: needs input dimensions in blocks of 16 (172 is not) ---
expect 1 "tensor 'model.layers.0.mlp.down_proj.weight' \[64, 172\]: the group size 16 does not divide its 172" -- \
  "$ROTQ" quantize --model "$MODEL" --output "$SCRATCH/nv" --scheme NVFP4A16
no_output nv
"$ROTQ" synth --shape tiny --layers 1 --output "$SCRATCH/tiny" >/dev/null 2>&1 || fail "synth tiny"
out=$SCRATCH/nv
expect 0 "wrote .*\(NVFP4A16, nvfp4-pack-quantized\)" -- "$ROTQ" quantize --model "$SCRATCH/tiny" --output "$out" --scheme NVFP4A16
check_tensor "$out" model.layers.0.mlp.down_proj.weight_packed U8 "[256,344]"
check_tensor "$out" model.layers.0.mlp.down_proj.weight_scale F8_E4M3 "[256,43]"
check_tensor "$out" model.layers.0.mlp.down_proj.weight_global_scale F32 "[1]"
[ "$(config_value "$out" 'q["config_groups"]["group_0"]["weights"]["strategy"]')" = tensor_group ] || fail "nv: strategy"

# --- FP8_BLOCK: a scale per 128×128 block ([1, 1] here), activations per group of 128 ---
out=$SCRATCH/fp8b
expect 0 "wrote .*\(FP8_BLOCK, float-quantized\)" -- "$ROTQ" quantize --model "$MODEL" --output "$out" --scheme FP8_BLOCK
check_tensor "$out" model.layers.0.mlp.down_proj.weight F8_E4M3 "[64,172]"
check_tensor "$out" model.layers.0.mlp.down_proj.weight_scale F32 "[1,2]"
[ "$(config_value "$out" 'q["config_groups"]["group_0"]["weights"]["strategy"], q["config_groups"]["group_0"]["weights"]["block_structure"], q["config_groups"]["group_0"]["input_activations"]["group_size"]')" = "('block', [128, 128], 128)" ] ||
  fail "fp8b: $(config_value "$out" 'q["config_groups"]')"

# --- MXFP4A16: E2M1 in groups of 32 with E8M0 scales (tiny: 256 and 688 = 21.5 groups: refused) ---
expect 1 "the group size 32 does not divide its 688 input columns" -- \
  "$ROTQ" quantize --model "$SCRATCH/tiny" --output "$SCRATCH/mx" --scheme MXFP4A16
"$ROTQ" synth --shape small --layers 1 --output "$SCRATCH/small" >/dev/null 2>&1 || fail "synth small"
out=$SCRATCH/mx
expect 0 "wrote .*\(MXFP4A16, mxfp4-pack-quantized\)" -- "$ROTQ" quantize --model "$SCRATCH/small" --output "$out" --scheme MXFP4A16
check_tensor "$out" model.layers.0.mlp.down_proj.weight_packed U8 "[1024,1408]"
check_tensor "$out" model.layers.0.mlp.down_proj.weight_scale U8 "[1024,88]"
[ "$(config_value "$out" 'q["config_groups"]["group_0"]["weights"]["group_size"], q["config_groups"]["group_0"]["weights"]["scale_dtype"]')" = "(32, 'torch.uint8')" ] ||
  fail "mx: $(config_value "$out" 'q["config_groups"]')"

# --- the two-command path: rotate, then quantize the rotated checkpoint ---
expect 0 "" -- "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/rotated" --quiet
expect 0 "wrote" -- "$ROTQ" quantize --model "$SCRATCH/rotated" --output "$SCRATCH/rotated-w8" --scheme W8A8
cmp -s "$SCRATCH/rotated/rotation.json" "$SCRATCH/rotated-w8/rotation.json" || fail "rotation.json not carried over"
check_tensor "$SCRATCH/rotated-w8" lm_head.weight F32 "[512,64]"

finish

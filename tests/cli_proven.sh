#!/usr/bin/env bash
# Every output proven (docs/reliability.md, "Wrong rotations"): on a model over 50M parameters,
# where the whole-model check does not run by default, each broken plan, matrix or input makes
# `rotq rotate` exit 1 with a message naming the tensor (or file), write no output and leave its
# input unchanged, without any flag; a correct rotation passes with the in-stream check recorded.
set -u
. "${ROTQ_SOURCE_DIR:?ROTQ_SOURCE_DIR is not set}/tests/support/cli_test.sh" cli_proven

BIG=$SCRATCH/small8
"$ROTQ" synth --shape small --layers 8 --output "$BIG" >/dev/null 2>&1 || fail "synth small --layers 8"
params=$("$ROTQ" info --model "$BIG" | awk '$1 == "parameters" {print $2}')
[ "${params:-0}" -gt 50000000 ] || fail "the test model has ${params:-?} parameters, not over 50M"
"$ROTQ" config show transformer_universal >"$SCRATCH/base.yaml"

snapshot() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }

# rotate_refused MODEL PATTERN [options...]: exit 1 naming PATTERN, no output, input unchanged.
rotate_refused() {
  local model=$1 pattern=$2
  shift 2
  local before
  before=$(snapshot "$model")
  expect 1 "^rotq rotate: .*$pattern" -- "$ROTQ" rotate --model "$model" --output "$SCRATCH/out" --quiet "$@"
  local left
  left=$(cd "$SCRATCH" && ls -A | grep -E '^\.?out(\.rotq-partial-[0-9]+)?$')
  [ -z "$left" ] || fail "output left behind: $left"
  [ "$(snapshot "$model")" = "$before" ] || fail "rotate changed its input $model"
  rm -rf "${SCRATCH:?}/out"
}

# config NAME SED: base.yaml edited by the sed script, as $SCRATCH/NAME.yaml
config() { sed "$2" "$SCRATCH/base.yaml" >"$SCRATCH/$1.yaml"; }

# 1. A correct rotation: in-stream check on by default, recorded in rotation.json.
expect 0 "verify: in-stream: 9 batches, [0-9]+ tensors proven equivalent" -- \
  "$ROTQ" rotate --model "$BIG" --output "$SCRATCH/good"
python3 - "$SCRATCH/good/rotation.json" <<'EOF' || fail "rotation.json lacks the verification record"
import json, sys
v = json.load(open(sys.argv[1]))["verification"]
assert v["in_stream"]["batches"] == 9 and v["in_stream"]["max_error_over_tolerance"] < 1, v
assert v["whole_model"].startswith("not run"), v
EOF
expect 0 "output was not verified" -- "$ROTQ" rotate --model "$BIG" --output "$SCRATCH/unverified" --no-verify

# 2. R2 larger than a head: it would mix two heads' values.
config r2big 's/dim: "head_dim"/dim: 128/'
rotate_refused "$BIG" "tensor 'model\.layers\.0\.self_attn\.o_proj\.weight': matrix 'r2' has dim 128, which does not divide head_dim 64" \
  --config "$SCRATCH/r2big.yaml"

# 3. A fuse map that leaves out a reader of a norm (the norm is still reset).
config noup 's/\[mlp.up_proj, mlp.gate_proj\]/[mlp.gate_proj]/'
rotate_refused "$BIG" "tensor 'model\.layers\.0\.mlp\.up_proj\.weight' reads the residual stream through 'model\.layers\.0\.post_attention_layernorm\.weight'.*not fused into it" \
  --config "$SCRATCH/noup.yaml"
config nov 's/\[self_attn.q_proj, self_attn.k_proj, self_attn.v_proj\]/[self_attn.q_proj, self_attn.k_proj]/; s/"\*v_proj": \[r1, r2\]/"*v_proj": [null, r2]/'
rotate_refused "$BIG" "tensor 'model\.layers\.0\.self_attn\.v_proj\.weight' reads the residual stream" --config "$SCRATCH/nov.yaml"

# 4. A learned matrix (mode: file) holding a NaN.
python3 - "$SCRATCH/r1.safetensors" <<'EOF' || fail "writing the NaN matrix"
import json, math, struct, sys
n = 1024
h = [[1.0]]
while len(h) < n:
    h = [row + row for row in h] + [row + [-x for x in row] for row in h]
flat = [x / math.sqrt(n) for row in h for x in row]
flat[5 * n + 7] = float("nan")
header = json.dumps({"r1": {"dtype": "F32", "shape": [n, n], "data_offsets": [0, 4 * n * n]}}).encode()
header += b" " * (-len(header) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(header)) + header + struct.pack("<%df" % (n * n), *flat))
EOF
config nanfile "s|mode: hadamard      # hadamard|mode: file\n    file: \"$SCRATCH/r1.safetensors\"  # hadamard|"
rotate_refused "$BIG" "r1\.safetensors: tensor 'r1': element \[5, 7\] is not finite" --config "$SCRATCH/nanfile.yaml"

# 5. Rotating again a checkpoint written with --online: its online halves would be dropped.
"$ROTQ" rotate --model "$BIG" --output "$SCRATCH/online" --online --quiet || fail "rotate --online"
rotate_refused "$SCRATCH/online" "config\.json: quantization_config has a transform_config"
# ...while a plain rotated checkpoint rotates again, its record kept as "previous".
expect 0 "wrote" -- "$ROTQ" rotate --model "$SCRATCH/good" --output "$SCRATCH/twice" --seed 5
python3 -c "import json,sys; assert json.load(open(sys.argv[1]))['previous']['seed'] == '0'" \
  "$SCRATCH/twice/rotation.json" || fail "rotation.json of a second rotation lacks 'previous'"

# 6. Finite float16 weights that overflow once the norm is fused and the rows rotated.
F16=$SCRATCH/f16
"$ROTQ" synth --shape small --layers 8 --dtype f16 --output "$F16" >/dev/null 2>&1 || fail "synth f16"
python3 - "$F16/model.safetensors" <<'EOF' || fail "editing the f16 model"
import json, struct, sys
path = sys.argv[1]
blob = bytearray(open(path, "rb").read())
length = struct.unpack("<Q", blob[:8])[0]
header = json.loads(blob[8:8 + length])
def fill(name, value):
    begin, end = header[name]["data_offsets"]
    assert header[name]["dtype"] == "F16"
    blob[8 + length + begin:8 + length + end] = struct.pack("<e", value) * ((end - begin) // 2)
fill("model.layers.3.input_layernorm.weight", 60000.0)
fill("model.layers.3.self_attn.k_proj.weight", 1.0)
open(path, "wb").write(blob)
EOF
rotate_refused "$F16" "tensor 'model\.layers\.3\.self_attn\.k_proj\.weight': element [0-9]+ is not finite once rotated and rounded to F16"

# 7. A required projection of shape [0, n].
EMPTY=$SCRATCH/empty
cp -r "$BIG" "$EMPTY"
python3 - "$EMPTY/model.safetensors" <<'EOF' || fail "editing the empty projection"
import json, struct, sys
path = sys.argv[1]
blob = open(path, "rb").read()
length = struct.unpack("<Q", blob[:8])[0]
header = json.loads(blob[8:8 + length])
entry = header["model.layers.2.self_attn.q_proj.weight"]
entry["shape"] = [0, entry["shape"][1]]
entry["data_offsets"] = [entry["data_offsets"][0], entry["data_offsets"][0]]
text = json.dumps(header, separators=(",", ":")).encode()
text += b" " * (length - len(text)) if len(text) <= length else b""
assert len(text) == length
open(path, "wb").write(blob[:8] + text + blob[8 + length:])
EOF
rotate_refused "$EMPTY" "tensor 'model\.layers\.2\.self_attn\.q_proj\.weight' is empty"

# 8. A rope scaling the reference forward pass does not model: the rotation does not depend on
# RoPE, so a small model rotates, proven in-stream, the whole-model check skipped with its reason.
YARN=$SCRATCH/yarn
cp -r "$MODEL" "$YARN"
python3 - "$YARN/config.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256}
json.dump(c, open(sys.argv[1], "w"))
EOF
expect 0 "whole-model check skipped \(.*rope_scaling type 'yarn' is not modelled.*\); the in-stream check proved" -- \
  "$ROTQ" rotate --model "$YARN" --output "$SCRATCH/yarn-out"
python3 -c "import json,sys; assert json.load(open(sys.argv[1]))['verification']['whole_model'].startswith('skipped')" \
  "$SCRATCH/yarn-out/rotation.json" || fail "rotation.json does not say the whole-model check was skipped"
rotate_refused "$YARN" "whole-model check cannot run: .*yarn" --verify

# 9. compare's default tolerance follows the dtype (bf16 rotation accepted, as rotate accepts it).
expect 0 "tolerance 5\.0e-02" -- "$ROTQ" compare --a "$BIG" --b "$SCRATCH/good" --n 16
expect 1 "exceeds the tolerance 1\.0e-06" -- "$ROTQ" compare --a "$BIG" --b "$SCRATCH/good" --n 16 --tolerance 1e-6

finish

#!/usr/bin/env bash
# rotq report --format on the bundled stories260K (2 segments of 64 tokens): the table's shape
# (4 columns: original, R1R2, R1R2 block, R1R2 block+online; 4 rows: FP, weights, activations,
# both), the JSON's, rotated columns computing the original's function (FP KL ~ 0), quantized
# cells differing from it, and the usage errors.
set -u
. "${ROTQ_SOURCE_DIR:?ROTQ_SOURCE_DIR is not set}/tests/support/cli_test.sh" cli_report_format
command -v python3 >/dev/null || { echo "python3 is needed to read the JSON"; exit 77; }

for format in mxfp4 nvfp4 fp8 int4; do
  out="$SCRATCH/$format"
  extra=(); [ "$format" = int4 ] && extra=(--w-group 4) # a group dividing 64 and 172 columns
  expect 0 "wrote $out.md and $out.json" -- "$ROTQ" report --format "$format" --model "$MODEL" --tokens "$TOKENS" \
    --segments 2 --ctx 64 --output "$out" "${extra[@]}"
  md=$(cat "$out.md")
  label=$(tr a-z A-Z <<<"$format")
  bits=4; [ "$format" = fp8 ] && bits=8
  group=""; [ "$format" = int4 ] && group=" g4"
  grep -Eq '^\| Config \| original ppl \| original KL \| R1R2 ppl \| R1R2 KL \| R1R2 block ppl \| R1R2 block KL \| R1R2 block\+online ppl \| R1R2 block\+online KL \|$' <<<"$md" ||
    fail "$format: header: $md"
  rows=$(grep -Ec '^\| ' <<<"$md")
  [ "$rows" -eq 5 ] || fail "$format: $rows table lines, expected 5 (header and 4 rows): $md"
  for row in "FP" "W${bits}A16 $label$group" "W16A$bits $label$group" "W${bits}A$bits $label$group"; do
    grep -Eq "^\| $row( \| [0-9.e+-]+){8} \|$" <<<"$md" || fail "$format: no full row '$row': $md"
  done
  grep -q "2 segments (the first), 64 tokens each at most" <<<"$md" || fail "$format: header line: $md"
  python3 - "$out.json" "$format" <<'PY' || fail "$format: JSON: $(cat "$out.json")"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["format"] == sys.argv[2], j["format"]
want_block = {"mxfp4": 32, "nvfp4": 16, "fp8": 128, "int4": 4}[sys.argv[2]]
assert j["block_size"] == want_block, j["block_size"]
assert j["unavailable"] == {}, j["unavailable"]
cells = {(r["model"], r["config"]): r for r in j["results"]}
models = ["original", "R1R2", "R1R2 block", "R1R2 block+online"]
assert len(j["results"]) == 16 and {m for m, _ in cells} == set(models), cells.keys()
for m in models:
    assert cells[(m, "FP")]["kl"] < 1e-6, (m, cells[(m, "FP")])
    quantized = [r for (mm, c), r in cells.items() if mm == m and c != "FP"]
    assert len(quantized) == 3 and all(r["kl"] > 1e-4 for r in quantized), quantized
    assert sum(r["weights_quantized"] for r in quantized) == 2 and sum(r["activations_quantized"] for r in quantized) == 2
PY
done

# the group-sized columns differ from the full rotation's (another matrix), and --block-size is used
out="$SCRATCH/mx16"
expect 0 "blocks of at most 16" -- "$ROTQ" report --format mxfp4 --block-size 16 --model "$MODEL" --tokens "$TOKENS" \
  --segments 2 --ctx 64 --output "$out"
python3 - "$out.json" <<'PY' || fail "--block-size 16: $(cat "$out.json")"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["block_size"] == 16
cells = {(r["model"], r["config"]): r["ppl"] for r in j["results"]}
assert cells[("R1R2", "W4A4 MXFP4")] != cells[("R1R2 block", "W4A4 MXFP4")]
PY

expect 2 "--format takes mxfp4, nvfp4, fp8 or int4, not 'fp4'" -- \
  "$ROTQ" report --format fp4 --model "$MODEL" --tokens "$TOKENS" --output "$SCRATCH/x"
expect 2 "--block-size takes a power of two, with --format" -- \
  "$ROTQ" report --format mxfp4 --block-size 24 --model "$MODEL" --tokens "$TOKENS" --output "$SCRATCH/x"
expect 2 "--block-size takes a power of two, with --format" -- \
  "$ROTQ" report --block-size 32 --model "$MODEL" --tokens "$TOKENS" --output "$SCRATCH/x"
expect 0 "--format F" -- "$ROTQ" report --help
expect 2 "--block-size takes -1 or a power of two" -- \
  "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/r" --block-size 12
expect 0 "block-diagonal, 2 blocks of random Hadamard H_32" -- sh -c \
  "'$ROTQ' rotate --model '$MODEL' --output '$SCRATCH/r' --block-size 32 --quiet && cat '$SCRATCH/r/rotation.json'"
finish

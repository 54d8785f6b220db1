#!/usr/bin/env bash
# The same outputs, bit for bit, as the recorded ones (tests/data/golden_cli.txt): the bundled
# stories260K model rotated in several ways, and a synthetic Llama-3.2-1B (2.5 GB, full size)
# written by `rotq synth` and rotated. The sha256 of every output file but rotation.json (which
# names the paths) is compared with the record, made before the redesign of issue 19. A deliberate
# change of the output regenerates it: ROTQ_UPDATE_GOLDEN=1 (and its commit says why).
# ROTQ_GOLDEN_SKIP_1B=1 leaves the 1B case out (it needs 5 GB of scratch space and ~15 s).
set -u
. "${ROTQ_SOURCE_DIR:?ROTQ_SOURCE_DIR is not set}/tests/support/cli_test.sh" cli_golden
RECORD=$ROOT/tests/data/golden_cli.txt

# digest DIR: one sha256 over the names and sha256s of its files but rotation.json.
digest() {
  (cd "$1" && find . -type f ! -name rotation.json | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -c1-64
}

results=()
# case LABEL ARGS...: rotates with ARGS, records LABEL's digest.
case_() {
  local label=$1
  shift
  expect 0 '^' -- "$ROTQ" rotate --quiet --output "$SCRATCH/$label" "$@"
  results+=("$label $(digest "$SCRATCH/$label")")
  rm -rf "${SCRATCH:?}/$label"
}

case_ stories260K --model "$MODEL"
case_ stories260K-seed3 --model "$MODEL" --seed 3
case_ stories260K-online --model "$MODEL" --online
case_ stories260K-online-vllm --model "$MODEL" --online --online-for vllm
"$ROTQ" config show transformer_universal | sed 's/mode: hadamard /mode: orthogonal /' > "$SCRATCH/ortho.yaml"
case_ stories260K-orthogonal --model "$MODEL" --config "$SCRATCH/ortho.yaml" --seed 11
"$ROTQ" config show transformer_universal | sed 's/mode: hadamard /mode: base_hadamard /' > "$SCRATCH/base.yaml"
case_ stories260K-base-hadamard --model "$MODEL" --config "$SCRATCH/base.yaml"
case_ stories260K-sharded --model "$MODEL" --max-shard-size 300000

expect 0 '^' -- "$ROTQ" synth --shape tiny --dtype f32 --output "$SCRATCH/tiny"
results+=("synth-tiny-f32 $(digest "$SCRATCH/tiny")")
case_ tiny-f32-online --model "$SCRATCH/tiny" --online --seed 2
if [ "${ROTQ_GOLDEN_SKIP_1B:-0}" != 1 ]; then
  expect 0 '^' -- "$ROTQ" synth --shape llama-3.2-1b --output "$SCRATCH/1b"
  results+=("synth-llama-3.2-1b $(digest "$SCRATCH/1b")")
  case_ llama-3.2-1b --model "$SCRATCH/1b"
  rm -rf "${SCRATCH:?}/1b"
fi

if [ "${ROTQ_UPDATE_GOLDEN:-0}" = 1 ]; then
  { echo "# tests/cli_golden.sh: case, sha256 over the sha256s of its output files (rotation.json excepted)"
    printf '%s\n' "${results[@]}"; } > "$RECORD"
  echo "cli_golden: wrote $RECORD"
  finish
fi
[ -f "$RECORD" ] || fail "$RECORD is missing (ROTQ_UPDATE_GOLDEN=1 writes it)"
for r in "${results[@]}"; do
  label=${r%% *}
  want=$(awk -v l="$label" '$1 == l { print $2 }' "$RECORD")
  [ -n "$want" ] || { fail "$label: not in the record"; continue; }
  [ "$want" = "${r#* }" ] || fail "$label: output differs from the record (${r#* } vs $want)"
done
finish

#!/usr/bin/env bash
# The main job on the bundled model: rotate stories260K, show that the rotated model computes the
# same function (logits and perplexity), and print what was written.
set -euo pipefail
rotq=${1:-build/rotq}
root=$(cd "$(dirname "$0")/.." && pwd)
model=$root/models/stories260K
tokens=$root/data/tinystories_val.tok512.u16
out=$root/out/stories260K-rotated

echo "== rotq rotate: $model -> $out (transformer_universal, random Hadamard, float64)"
"$rotq" rotate --model "$model" --output "$out" --config transformer_universal --seed 0 --force --verify
echo
echo "== rotq compare: original vs rotated logits on 64 evaluation tokens"
"$rotq" compare --a "$model" --b "$out" --tokens "$tokens" --n 64 --tolerance 1e-5
echo
echo "== rotq eval: perplexity on 100 evaluation segments, original then rotated"
"$rotq" eval --model "$model" --tokens "$tokens" --segments 100
"$rotq" eval --model "$out" --tokens "$tokens" --segments 100
echo
echo "== output directory"
ls -l "$out"

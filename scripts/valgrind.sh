#!/usr/bin/env bash
# Runs rotq under valgrind's memcheck on the bundled model: generate (the forward pass), rotate
# (verify on; plain, then with the online rotations) and compare (original against rotated). Any invalid access, use of uninitialised
# memory or definite leak fails the script.
# usage: scripts/valgrind.sh [rotq-binary]      (default build/rotq, what `make build` makes)
set -euo pipefail
cd "$(dirname "$0")/.."
rotq=${1:-build/rotq}
scratch=$(mktemp -d "${TMPDIR:-/tmp}/rotq-valgrind-XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export OPENBLAS_NUM_THREADS=1
memcheck=(valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite
          --track-origins=yes)
model=models/stories260K
run() {
  local start=$SECONDS
  "${memcheck[@]}" "$rotq" "$@" >"$scratch/log" 2>&1 || { cat "$scratch/log" >&2; echo "valgrind: FAILED: rotq $*" >&2; exit 1; }
  echo "valgrind: ok ($((SECONDS - start)) s): rotq $*"
}
run generate --model "$model" --max-new 8
run rotate --model "$model" --output "$scratch/rotated" --quiet --verify
run rotate --model "$model" --output "$scratch/online" --quiet --verify --online
run compare --a "$model" --b "$scratch/rotated" --n 16

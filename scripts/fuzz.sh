#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ (clang, ASan+UBSan, ROTQ_FUZZ=ON) in build-fuzz/ and runs
# each for SECONDS (default 30) from its checked-in seeds fuzz/corpus/<target>/ and its dictionary
# fuzz/<target>.dict. New inputs go to build-fuzz/corpus/<target>/ (kept between runs); a crash,
# sanitizer report, leak, timeout (10 s per input) or out-of-memory stops the target and fails
# the script, leaving the input in build-fuzz/crashes/<target>/ and the log in build-fuzz/<target>.log.
# SECONDS 0 only replays the seeds and the kept corpus (a regression check).
# usage: scripts/fuzz.sh [SECONDS] [target...]      e.g. scripts/fuzz.sh 3600 fuzz_safetensors_header
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
[ $# -gt 0 ] && shift
build=${ROTQ_FUZZ_BUILD:-build-fuzz}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for src in fuzz/fuzz_*.c; do targets+=("$(basename "$src" .c)"); done
fi
cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS="-g -Wno-unknown-warning-option" \
  -DROTQ_FUZZ=ON >/dev/null
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"
if [ "$seconds" -eq 0 ]; then limit=(-runs=0); else limit=(-max_total_time="$seconds"); fi
export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=()
for target in "${targets[@]}"; do
  mkdir -p "$build/corpus/$target" "$build/crashes/$target"
  dictionary=()
  [ -f "fuzz/$target.dict" ] && dictionary=(-dict="fuzz/$target.dict")
  start=$SECONDS
  if "$build/$target" "${limit[@]}" "${dictionary[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$build/crashes/$target/" "$build/corpus/$target" "fuzz/corpus/$target" \
      >"$build/$target.log" 2>&1; then
    runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$build/$target.log" | grep -Eo '[0-9]+$' || echo '?')
    echo "fuzz: $target: ok ($runs inputs in $((SECONDS - start)) s)"
  else
    echo "fuzz: $target: FAILED, see $build/$target.log and $build/crashes/$target/:" >&2
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|.*Test unit written)' "$build/$target.log" >&2 || tail -20 "$build/$target.log" >&2
    failed+=("$target")
  fi
done
[ ${#failed[@]} -eq 0 ] || { echo "fuzz: failed: ${failed[*]}" >&2; exit 1; }

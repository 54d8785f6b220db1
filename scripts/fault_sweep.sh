#!/usr/bin/env bash
# Fault-injection sweep (docs/reliability.md): builds rotq with ASan+UBSan, gcov and the shim of
# tests/fault/fault_inject.c (ROTQ_FAULT_INJECT=ON) in build-fault/, runs one clean rotation of
# the bundled model recording every malloc/write/fsync/rename call and the code site it comes
# from, then reruns the rotation failing one call at a time:
#   - every write, fsync and rename call;
#   - for malloc (about 2,300 calls, most of them inside cJSON parsing config.json): the first
#     FAULT_SWEEP_EVERY (default 40) calls, the first two calls from each distinct site, and every
#     FAULT_SWEEP_STRIDE-th (default 50) call.
# Each faulted run must exit 1 (not crash, no sanitizer report, no leak) with a "rotq rotate: ..."
# message, and leave no output, partial directory or lock file; or, if it absorbed the fault and
# exited 0, have written exactly the clean run's output. The input must be unchanged at the end.
# Prints the error sites (calls to rotq_fail/rotq_fail_context) the sweep reached, from gcov.
# usage: scripts/fault_sweep.sh [build-dir]       (FAULT_SWEEP_VERIFY=1: rotations with --verify)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${1:-build-fault}
every=${FAULT_SWEEP_EVERY:-40}
stride=${FAULT_SWEEP_STRIDE:-50}
jobs=$(nproc)
start=$SECONDS

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS=-g -DROTQ_FAULT_INJECT=ON -DROTQ_COVERAGE=ON >/dev/null
cmake --build "$build" --target rotq -j "$jobs" >/dev/null
find "$build" -name '*.gcda' -delete
rotq=$root/$build/rotq
export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1
export UBSAN_OPTIONS=abort_on_error=1:print_stacktrace=1:halt_on_error=1

scratch=$(mktemp -d "${TMPDIR:-/tmp}/rotq-fault-sweep-XXXXXX")
trap 'rm -rf "$scratch"' EXIT
cp -r models/stories260K "$scratch/in"
snapshot() { (cd "$1" && find . -printf '%p %y %s %m %T@\n' | sort && find . -type f -print0 | sort -z | xargs -0 sha256sum); }
input_before=$(snapshot "$scratch/in")
verify=--no-verify
[ "${FAULT_SWEEP_VERIFY:-0}" = 1 ] && verify=--verify
export rotq scratch verify

# The clean run: the reference output and the trace of every call.
mkdir "$scratch/ref"
ROTQ_FAIL_TRACE=$scratch/trace "$rotq" rotate --model "$scratch/in" --output "$scratch/ref/out" --threads 1 $verify --quiet

# The plan: "kind n" lines.
awk -v every="$every" -v stride="$stride" '
  $1 != "malloc" { print $1, $2; next }
  { seen[$3]++ }
  $2 <= every || $2 % stride == 0 || seen[$3] <= 2 { print $1, $2 }' "$scratch/trace" >"$scratch/plan"

# run_one KIND N: one faulted rotation; prints "ok ..." or "FAIL ...".
run_one() {
  local kind=$1 n=$2 dir=$scratch/runs/$1-$2 status
  mkdir -p "$dir"
  ROTQ_FAIL_KIND=$kind ROTQ_FAIL_AT=$n ROTQ_FAIL_REPORT=$dir/report \
    "$rotq" rotate --model "$scratch/in" --output "$dir/out" --threads 1 $verify --quiet >"$dir/stdout" 2>"$dir/stderr"
  status=$?
  local fired=no
  grep -q '^fired ' "$dir/report" 2>/dev/null && fired=yes
  local left
  left=$(ls -A "$dir" | grep -vxE 'report|stdout|stderr|out' || true)
  if [ "$status" -eq 1 ]; then
    if ! grep -Eq '^rotq rotate: .+' "$dir/stderr"; then
      echo "FAIL $kind $n: exit 1 without a message: $(head -c 300 "$dir/stderr")"
    elif [ -e "$dir/out" ] || [ -n "$left" ]; then
      echo "FAIL $kind $n: exit 1 but left: $(ls -A "$dir" | tr '\n' ' ') ($(head -c 300 "$dir/stderr"))"
    elif [ "$fired" = no ]; then
      echo "FAIL $kind $n: exit 1 although no fault was injected: $(head -c 300 "$dir/stderr")"
    else
      echo "ok $kind $n exit-1 $(grep -m1 '^rotq rotate: ' "$dir/stderr" | head -c 200)"
    fi
  elif [ "$status" -eq 0 ]; then
    if [ "$fired" = yes ] && ! diff -r "$scratch/ref/out" "$dir/out" >/dev/null; then
      echo "FAIL $kind $n: the fault was absorbed (exit 0) but the output differs from the clean run's"
    elif [ -n "$left" ]; then
      echo "FAIL $kind $n: exit 0 but left: $left"
    else
      echo "ok $kind $n absorbed"
    fi
  else
    echo "FAIL $kind $n: exit $status (crash, sanitizer report or leak): $(grep -m3 -E 'ERROR|SUMMARY|runtime error' "$dir/stderr" | head -c 400)"
  fi
  rm -rf "$dir/out"
}
export -f run_one

xargs -P "$jobs" -L 1 bash -c 'run_one "$0" "$1"' <"$scratch/plan" >"$scratch/results"
[ "$(snapshot "$scratch/in")" = "$input_before" ] || echo "FAIL: the faulted runs changed their input" >>"$scratch/results"

runs=$(wc -l <"$scratch/plan")
failures=$(grep -c '^FAIL' "$scratch/results" || true)
absorbed=$(grep -c ' absorbed$' "$scratch/results" || true)
echo "fault sweep: $runs faulted rotations ($(cut -d' ' -f1 "$scratch/plan" | sort | uniq -c | awk '{printf "%s%s %s", sep, $2, $1; sep=", "}')) of $(awk '{print $1}' "$scratch/trace" | sort | uniq -c | awk '{printf "%s%s %s", sep, $2, $1; sep=", "}') calls; $absorbed absorbed, $failures failures, $((SECONDS - start)) s"
grep '^FAIL' "$scratch/results" | head -40 || true

# Distinct call sites failed, and the error sites (rotq_fail / rotq_fail_context calls) reached.
sites=$(cat "$scratch"/runs/*/report 2>/dev/null | awk '$1 == "fired" {print $4}' | sort -u)
echo "call sites failed: $(echo "$sites" | grep -c . || true) distinct ($(awk '{print $3}' "$scratch/trace" | sort -u | wc -l) in the clean run)"
python3 scripts/error_sites.py "$build" || true

[ "$failures" -eq 0 ]

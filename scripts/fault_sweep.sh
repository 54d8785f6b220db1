#!/usr/bin/env bash
# Fault-injection sweep (docs/reliability.md): builds rotq with ASan+UBSan, gcov and the shim of
# tests/fault/fault_inject.c (ROTQ_FAULT_INJECT=ON) in build-fault/, and for two rotations (the
# bundled model, verified; the same split in two shards with an index, with the online rotations,
# written as several shards) runs a clean rotation recording every malloc/write/fsync/rename call
# and the code site it comes from, then reruns it failing one call at a time:
#   - every write, fsync and rename call;
#   - for malloc (about 16,400 calls in the two, most of them cJSON's and the checks'): the first
#     FAULT_SWEEP_EVERY (default 40) calls, the first two calls from each distinct site, and every
#     FAULT_SWEEP_STRIDE-th (default 50) call.
# Each faulted run must exit 1 (not crash, no sanitizer report, no leak) with a "rotq rotate: ..."
# message, and leave no output, partial directory or lock file; or, if it absorbed the fault and
# exited 0, have written exactly the clean run's output (but for the timing and the in-stream
# check's error statistics that rotation.json records: the tensors must be bitwise identical). The input must be unchanged at the end.
# Prints the error sites (calls to rotq_fail/rotq_fail_context) the sweep reached, from gcov.
# usage: scripts/fault_sweep.sh [build-dir]
#   FAULT_SWEEP_VERIFY=0       rotations with --no-verify (default: --verify, which also loads
#                              both models: more sites, about the same time)
#   FAULT_SWEEP_CATALOGUE=1    then also run tests/cli_errors.sh on the same binary and report
#                              the error sites the two reach together
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
verify=--verify
[ "${FAULT_SWEEP_VERIFY:-1}" = 0 ] && verify=--no-verify

# sweep NAME INPUT OPTIONS...: the clean run (reference output, trace of every call), then the
# planned faulted runs, into $scratch/NAME; appends to $scratch/plan, trace and results.
sweep() {
  local name=$1 input=$2
  shift 2
  local dir=$scratch/$name
  mkdir -p "$dir/ref"
  ROTQ_FAIL_TRACE=$dir/trace "$rotq" rotate --model "$input" --output "$dir/ref/out" --threads 1 "$@" --quiet
  awk -v every="$every" -v stride="$stride" '
    $1 != "malloc" { print $1, $2; next }
    { seen[$3]++ }
    $2 <= every || $2 % stride == 0 || seen[$3] <= 2 { print $1, $2 }' "$dir/trace" >"$dir/plan"
  sed "s/^/$name /" "$dir/trace" >>"$scratch/trace"
  sed "s/^/$name /" "$dir/plan" >>"$scratch/plan"
  SWEEP_DIR=$dir SWEEP_INPUT=$input SWEEP_OPTIONS="$*" xargs -P "$jobs" -L 1 bash -c 'run_one "$0" "$1"' \
    <"$dir/plan" >>"$scratch/results"
}

# run_one KIND N: one faulted rotation; prints "ok ..." or "FAIL ...".
run_one() {
  local kind=$1 n=$2 dir=$SWEEP_DIR/runs/$1-$2 status
  mkdir -p "$dir"
  # shellcheck disable=SC2086
  ROTQ_FAIL_KIND=$kind ROTQ_FAIL_AT=$n ROTQ_FAIL_REPORT=$dir/report \
    "$rotq" rotate --model "$SWEEP_INPUT" --output "$dir/out" --threads 1 $SWEEP_OPTIONS --quiet >"$dir/stdout" 2>"$dir/stderr"
  status=$?
  local fired=no where="${SWEEP_DIR##*/} $kind $n"
  grep -q '^fired ' "$dir/report" 2>/dev/null && fired=yes
  local left
  left=$(ls -A "$dir" | grep -vxE 'report|stdout|stderr|out' || true)
  if [ "$status" -eq 1 ]; then
    if ! grep -Eq '^rotq rotate: .+' "$dir/stderr"; then
      echo "FAIL $where: exit 1 without a message: $(head -c 300 "$dir/stderr")"
    elif [ -e "$dir/out" ] || [ -n "$left" ]; then
      echo "FAIL $where: exit 1 but left: $(ls -A "$dir" | tr '\n' ' ') ($(head -c 300 "$dir/stderr"))"
    elif [ "$fired" = no ]; then
      echo "FAIL $where: exit 1 although no fault was injected: $(head -c 300 "$dir/stderr")"
    else
      echo "ok $where exit-1 $(grep -m1 '^rotq rotate: ' "$dir/stderr" | head -c 200)"
    fi
  elif [ "$status" -eq 0 ]; then
    if [ "$fired" = yes ] && ! diff -r -I '"seconds":' -I '"max_relative_error":' -I '"max_error_over_tolerance":' \
      -I '"closest_to_tolerance":' "$SWEEP_DIR/ref/out" "$dir/out" >/dev/null; then
      echo "FAIL $where: the fault was absorbed (exit 0) but the output differs from the clean run's"
    elif [ -n "$left" ]; then
      echo "FAIL $where: exit 0 but left: $left"
    else
      echo "ok $where absorbed"
    fi
  else
    echo "FAIL $where: exit $status (crash, sanitizer report or leak): $(grep -m3 -E 'ERROR|SUMMARY|runtime error' "$dir/stderr" | head -c 400)"
  fi
  rm -rf "$dir/out"
}
export -f run_one
export rotq

# 1. the bundled model, one shard, verified; 2. the same split in two shards with an index,
# with the online rotations, written as several shards and an index.
sweep plain "$scratch/in" $verify
cp -r "$scratch/in" "$scratch/in-sharded"
python3 tests/support/checkpoint_surgery.py shard "$scratch/in-sharded"
input_before=$(snapshot "$scratch/in")$(snapshot "$scratch/in-sharded")
sweep sharded "$scratch/in-sharded" --online --max-shard-size 300000 $verify
[ "$(snapshot "$scratch/in")$(snapshot "$scratch/in-sharded")" = "$input_before" ] ||
  echo "FAIL: the faulted runs changed their input" >>"$scratch/results"

runs=$(wc -l <"$scratch/plan")
failures=$(grep -c '^FAIL' "$scratch/results" || true)
absorbed=$(grep -c ' absorbed$' "$scratch/results" || true)
echo "fault sweep: $runs faulted rotations ($(cut -d' ' -f2 "$scratch/plan" | sort | uniq -c | awk '{printf "%s%s %s", sep, $2, $1; sep=", "}')) of $(awk '{print $2}' "$scratch/trace" | sort | uniq -c | awk '{printf "%s%s %s", sep, $2, $1; sep=", "}') calls in 2 rotations; $absorbed absorbed, $failures failures, $((SECONDS - start)) s"
grep '^FAIL' "$scratch/results" | head -40 || true

# Distinct call sites failed, and the error sites (rotq_fail / rotq_fail_context calls) reached.
sites=$(cat "$scratch"/*/runs/*/report 2>/dev/null | awk '$1 == "fired" {print $2, $4}' | sort -u)
echo "call sites failed: $(echo "$sites" | grep -c . || true) distinct ($(awk '{print $2, $4}' "$scratch/trace" | sort -u | wc -l) in the clean runs)"
echo "the sweep alone:"
python3 scripts/error_sites.py "$build" || true
if [ "${FAULT_SWEEP_CATALOGUE:-0}" = 1 ]; then # the error catalogue too, on the same binary
  ROTQ_SOURCE_DIR=$root ROTQ_BIN=$rotq bash tests/cli_errors.sh >"$scratch/catalogue.log" 2>&1 ||
    echo "FAIL: tests/cli_errors.sh on $rotq: $(tail -5 "$scratch/catalogue.log")"
  echo "the sweep and tests/cli_errors.sh:"
  python3 scripts/error_sites.py "$build" || true
fi

[ "$failures" -eq 0 ]

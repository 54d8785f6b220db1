#!/usr/bin/env bash
# bench/run.sh end to end on the tiny shape (seconds): every step runs, the report is complete, the
# threads-1 and threads-N outputs are identical, and the dense GEMM and the fast kernels of the
# benchmark give rotq's output bit for bit (on the full model and on the in-memory one).
set -u
. "${ROTQ_SOURCE_DIR:?ROTQ_SOURCE_DIR is not set}/tests/support/cli_test.sh" cli_bench

BUILD=$(dirname "$ROTQ")
[ -x "$BUILD/bench_dense_rotate" ] || { echo "cli_bench: $BUILD/bench_dense_rotate not built" >&2; exit 1; }
expect 0 'rotq rotate, [0-9]+ threads' -- env BENCH_DIR="$SCRATCH/bench" ROTQ_BUILD="$BUILD" DENSE_LAYERS=2 \
  MEM_LAYERS=2 MEMORY_SHAPES="tiny tiny:1" bash "$ROOT/bench/run.sh" tiny bf16
REPORT=$SCRATCH/bench/results-tiny-bf16.md
[ -f "$REPORT" ] || fail "no report written"
for pattern in '^\| cp -r \| [0-9.]+ ' '^\| disk floor.*\| [0-9.]+ \| rotq rotate = [0-9.]+× the floor' \
  '^\| dense float64 GEMM, compute only \(estimate\) \| [0-9.]+ \| [0-9.]+× rotq rotate' \
  'output: identical' 'dense versus rotq.s output: 0 of [1-9][0-9]* elements differ' \
  'fast versus rotq.s output: 0 of [1-9][0-9]* elements differ' \
  '^\| rotq rotate with the in-stream check \(the default\) \| [0-9.]+ \| [0-9.]+× rotq rotate --no-verify' \
  'outputs identical' 'in-stream check: in-stream: 5 batches, [0-9]+ tensors proven equivalent'; do
  grep -Eq -- "$pattern" "$REPORT" || fail "report lacks /$pattern/: $(cat "$REPORT")"
done
# the in-memory comparison, unless /dev/shm lacks room for even the tiny model
comparisons=4
if grep -q 'in memory (2 layers.*skipped (no room' "$REPORT"; then
  comparisons=2
else
  grep -Eq 'in memory \(2 layers.*rotq rotate [0-9.]+ s \(with the in-stream check [0-9.]+ s: [0-9.]+×\), dense [0-9.]+ s: [0-9.]+×' "$REPORT" ||
    fail "report lacks the in-memory comparison: $(cat "$REPORT")"
fi
[ "$(grep -Ec 'versus rotq.s output: 0 of' "$REPORT")" -eq "$comparisons" ] ||
  fail "expected $comparisons comparisons with rotq's output"
ls /dev/shm | grep -q rotq-bench && fail "the in-memory model was left on /dev/shm"
# bench/memory.sh's table (tmpfs to tmpfs against cp -r): both rows, outputs identical across
# --threads 1, N and the checked run, and the kernel against memcpy
if ! grep -q '| tiny | .*skipped: no room' "$REPORT"; then
  for pattern in '^\| tiny \| [0-9.]+ \| [0-9.]+ \([0-9.]+\) \| [0-9.]+ \([0-9.]+\) \| ([0-9.]+|-) \| ([0-9.]+|-) \|.*\| identical \(--threads 1' \
    '^\| tiny \(1 layers\) \|.*\| identical \(--threads 1' 'kernel, float64 +[0-9.]+ GB/s' 'memcpy +[0-9.]+ GB/s'; do
    grep -Eq -- "$pattern" "$REPORT" || fail "report lacks /$pattern/ (bench/memory.sh): $(cat "$REPORT")"
  done
fi
ls /dev/shm | grep -q rotq-memory && fail "bench/memory.sh left its files on /dev/shm"
finish

#!/usr/bin/env bash
# bench/run.sh [SHAPE] [DTYPE]: rotation at the cost of a copy? Generates a synthetic checkpoint
# (rotq synth; default llama-3-8b bf16, 16 GB) and times, in the same run:
#   (a) cp -r of the checkpoint (and the sync after it),
#   (b) rotq rotate (transformer_universal: random Hadamard R1/R2, float64), all cores, with
#       ROTQ_TIMING=1 (read / compute / convert / write shares) and peak RSS (/usr/bin/time),
#   (c) the same rotation with dense float64 GEMM, the Python tools' method
#       (bench_dense_rotate: a few layers measured, extrapolated to the model),
#   (d) rotq rotate --threads 1, whose output must be bitwise identical to (b)'s: every shard is
#       compared with cmp when there is room for both outputs (small shapes), else by SHA-256.
# Before each timed step the page cache is dropped when this user may (sync; echo 3 >
# /proc/sys/vm/drop_caches); the report says whether it was.
# Environment: BENCH_DIR (work directory, default /tmp/rotq-bench; needs ~3× the checkpoint's size),
# ROTQ_BUILD (a Release build directory to use instead of building bench/../build-bench),
# DENSE_LAYERS (layers the dense benchmark measures, default 2), KEEP=1 (keep the files).
# Prints a Markdown report and writes it to $BENCH_DIR/results-SHAPE-DTYPE.md.
set -euo pipefail

SHAPE=${1:-llama-3-8b}
DTYPE=${2:-bf16}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${BENCH_DIR:-/tmp/rotq-bench}
DENSE_LAYERS=${DENSE_LAYERS:-2}
if [ -n "${ROTQ_BUILD:-}" ]; then
  BUILD=$ROTQ_BUILD
else
  BUILD=$ROOT/build-bench
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target rotq bench_dense_rotate >/dev/null
fi
ROTQ=$BUILD/rotq
DENSE=$BUILD/bench_dense_rotate

MODEL=$WORK/$SHAPE-$DTYPE
COPY=$WORK/copy
OUT2=$WORK/rotated
OUT1=$WORK/rotated-threads1
REPORT=$WORK/results-$SHAPE-$DTYPE.md
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p "$WORK"
rm -rf "$COPY" "$OUT1" "$OUT2"
cleanup() { [ "${KEEP:-0}" = 1 ] || rm -rf "$COPY" "$OUT1" "$OUT2" "$MODEL"; }
trap cleanup EXIT

CACHE="dropped before each timed step (sync; echo 3 > /proc/sys/vm/drop_caches)"
drop_caches() {
  sync
  if ! (echo 3 > /proc/sys/vm/drop_caches) 2>/dev/null; then
    CACHE="not dropped (no permission): timings may include cached data"
  fi
}

# seconds and peak RSS (KB) of a command, into the globals SECONDS_TAKEN and RSS_KB
timed() {
  local log=$WORK/time.log
  /usr/bin/time -f "%e %M" -o "$log" "$@"
  read -r SECONDS_TAKEN RSS_KB < "$log"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo "== synth $SHAPE $DTYPE" >&2
rm -rf "$MODEL"
SYNTH_LINE=$("$ROTQ" synth --shape "$SHAPE" --dtype "$DTYPE" --output "$MODEL")
echo "$SYNTH_LINE" >&2
SIZE_BYTES=$(du -sb "$MODEL" | cut -f1)
SIZE_GB=$(awk -v b="$SIZE_BYTES" 'BEGIN { printf "%.2f", b / 1e9 }')

echo "== cp -r" >&2
drop_caches
timed cp -r "$MODEL" "$COPY"
CP_S=$SECONDS_TAKEN
T0=$(date +%s.%N)
sync
SYNC_S=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
CP_SYNC_S=$(awk -v a="$CP_S" -v b="$SYNC_S" 'BEGIN { printf "%.2f", a + b }')
rm -rf "$COPY"

echo "== rotq rotate (all cores)" >&2
drop_caches
ROTATE_LOG=$WORK/rotate.log
ROTQ_TIMING=1 timed "$ROTQ" rotate --model "$MODEL" --output "$OUT2" --no-verify --quiet 2> "$ROTATE_LOG"
ROT_S=$SECONDS_TAKEN
ROT_RSS_MB=$((RSS_KB / 1024))
TIMING=$(grep '^rotq timing' "$ROTATE_LOG" | sed 's/^rotq timing: //')

echo "== dense GEMM ($DENSE_LAYERS layers, extrapolated)" >&2
drop_caches
DENSE_LOG=$WORK/dense.log
"$DENSE" --model "$MODEL" --layers "$DENSE_LAYERS" --rotated "$OUT2" > "$DENSE_LOG"
DENSE_S=$(sed -n 's/^dense estimate for the whole model: \([0-9.]*\) s.*/\1/p' "$DENSE_LOG")

echo "== rotq rotate --threads 1" >&2
FREE_KB=$(df -Pk "$WORK" | awk 'NR == 2 { print $4 }')
shards() { (cd "$1" && ls ./*.safetensors); }
if [ $((FREE_KB * 1024)) -gt $((SIZE_BYTES * 2)) ]; then
  METHOD="cmp of every shard"
  drop_caches
  timed "$ROTQ" rotate --model "$MODEL" --output "$OUT1" --threads 1 --no-verify --quiet
  SAME=identical
  for s in $(shards "$OUT2"); do cmp -s "$OUT2/$s" "$OUT1/$s" || SAME="DIFFERENT ($s)"; done
else
  METHOD="SHA-256 of every shard (no room for two outputs)"
  SUMS=$(cd "$OUT2" && sha256sum ./*.safetensors)
  rm -rf "$OUT2"
  drop_caches
  timed "$ROTQ" rotate --model "$MODEL" --output "$OUT1" --threads 1 --no-verify --quiet
  SAME=identical
  (cd "$OUT1" && echo "$SUMS" | sha256sum --quiet -c -) >/dev/null || SAME=DIFFERENT
fi
ROT1_S=$SECONDS_TAKEN

FS=$(df -PT "$WORK" | awk 'NR == 2 { print $2 " on " $1 }')
{
  echo "### $SHAPE $DTYPE ($SIZE_GB GB), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'),"
  echo "$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $FS, load average at the start: $LOAD."
  echo "Page cache: $CACHE."
  echo
  echo "| step | wall (s) | ratio |"
  echo "|---|---|---|"
  echo "| rotq synth | $(echo "$SYNTH_LINE" | sed -n 's/.*, \([0-9.]*\) s, \([0-9]*\) MB\/s/\1 (\2 MB\/s)/p') | |"
  echo "| cp -r | $CP_S | |"
  echo "| cp -r + sync | $CP_SYNC_S | |"
  echo "| rotq rotate, $(nproc) threads (fsync'd) | $ROT_S | $(ratio "$ROT_S" "$CP_S")× cp -r, $(ratio "$ROT_S" "$CP_SYNC_S")× cp -r + sync |"
  echo "| rotq rotate, 1 thread | $ROT1_S | |"
  echo "| dense float64 GEMM (estimate) | $DENSE_S | $(ratio "$DENSE_S" "$ROT_S")× rotq rotate |"
  echo
  echo "- rotq rotate peak RSS: $ROT_RSS_MB MB"
  echo "- rotq timing: $TIMING"
  echo "- --threads 1 vs --threads $(nproc) output: $SAME ($METHOD)"
  echo "- dense benchmark:"
  sed 's/^/    /' "$DENSE_LOG"
} | tee "$REPORT"

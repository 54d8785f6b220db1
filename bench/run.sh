#!/usr/bin/env bash
# bench/run.sh [SHAPE] [DTYPE]: rotation at the cost of a copy? Generates a synthetic checkpoint
# (rotq synth; default llama-3-8b bf16, 16 GB) and times, in the same run:
#   (a) cp -r of the checkpoint (and the sync after it),
#   (b) rotq rotate (transformer_universal: random Hadamard R1/R2, float64), all cores, with
#       ROTQ_TIMING=1 (read / compute / convert / write shares) and peak RSS (/usr/bin/time),
#   (c) the same rotation with dense float64 GEMM, the Python tools' method
#       (bench_dense_rotate: a few layers measured, extrapolated to the model),
#   (b') the same with the in-stream check on (rotq's default; (b) runs --no-verify): its cost as a
#       ratio, the bytes read from the disk by each (the check must read nothing more), peak RSS,
#       and that both write the same bytes,
#   (d) rotq rotate --threads 1, whose output must be bitwise identical to (b)'s: every shard is
#       compared with cmp when there is room for both outputs (small shapes), else by SHA-256,
#   (e) the disk's floor: every shard copied with dd and O_DIRECT on both sides (16 MB blocks),
#       the least time any tool can spend reading and writing the checkpoint here,
#   (f) the arithmetic alone, in memory: a copy of the model cut to MEM_LAYERS decoder layers
#       (default 4; embedding and lm_head whole) on /dev/shm, rotated by rotq from tmpfs to tmpfs
#       (its second run: the first pays for fresh tmpfs pages) and by the dense benchmark (compute
#       only), when there is room,
#   (g) bench/memory.sh: the in-memory comparison as its own table (rotate vs cp -r, tmpfs to tmpfs,
#       llama-3.2-1b and llama-3-8b cut to MEM8B_LAYERS layers; GB/s of weights; the check's cost;
#       --threads 1 vs all; the per-row-block kernel against memcpy). MEMORY=0 skips it;
#       MEMORY_SHAPES (words SHAPE[:LAYERS]) replaces its two shapes.
# Before each timed step the page cache is dropped when this user may (sync; echo 3 >
# /proc/sys/vm/drop_caches); the report says whether it was.
# Environment: BENCH_DIR (work directory, default /tmp/rotq-bench; needs ~3× the checkpoint's size),
# ROTQ_BUILD (a Release build directory to use instead of building bench/../build-bench),
# DENSE_LAYERS (layers the dense benchmark measures, default 2), MEM_LAYERS (layers of the
# in-memory model of (f), default 4; 0 skips it), KEEP=1 (keep the files).
# Prints a Markdown report and writes it to $BENCH_DIR/results-SHAPE-DTYPE.md.
set -euo pipefail

SHAPE=${1:-llama-3-8b}
DTYPE=${2:-bf16}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${BENCH_DIR:-/tmp/rotq-bench}
DENSE_LAYERS=${DENSE_LAYERS:-2}
MEM_LAYERS=${MEM_LAYERS:-4}
if [ -n "${ROTQ_BUILD:-}" ]; then
  BUILD=$ROTQ_BUILD
else
  BUILD=$ROOT/build-bench
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target rotq bench_dense_rotate bench_kernel >/dev/null
fi
ROTQ=$BUILD/rotq
DENSE=$BUILD/bench_dense_rotate

MODEL=$WORK/$SHAPE-$DTYPE
COPY=$WORK/copy
OUT2=$WORK/rotated
OUT1=$WORK/rotated-threads1
FLOOR=$WORK/floor
SHM=/dev/shm/rotq-bench-$$
REPORT=$WORK/results-$SHAPE-$DTYPE.md
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p "$WORK"
rm -rf "$COPY" "$OUT1" "$OUT2" "$FLOOR"
cleanup() {
  rm -rf "$SHM" "$FLOOR"
  [ "${KEEP:-0}" = 1 ] || rm -rf "$COPY" "$OUT1" "$OUT2" "$MODEL"
}
trap cleanup EXIT

CACHE="dropped before each timed step (sync; echo 3 > /proc/sys/vm/drop_caches)"
drop_caches() {
  sync
  if ! (echo 3 > /proc/sys/vm/drop_caches) 2>/dev/null; then
    CACHE="not dropped (no permission): timings may include cached data"
  fi
}

# seconds, peak RSS (KB) and file system inputs (512-byte blocks read from the disk) of a command,
# into the globals SECONDS_TAKEN, RSS_KB and INPUT_BLOCKS
timed() {
  local log=$WORK/time.log
  /usr/bin/time -f "%e %M %I" -o "$log" "$@"
  read -r SECONDS_TAKEN RSS_KB INPUT_BLOCKS < "$log"
}
gb_of_blocks() { awk -v b="$1" 'BEGIN { printf "%.2f", b * 512 / 1e9 }'; }

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

echo "== disk floor: dd with O_DIRECT" >&2
drop_caches
mkdir -p "$FLOOR"
T0=$(date +%s.%N)
for f in "$MODEL"/*; do
  if dd if="$f" of="$FLOOR/$(basename "$f")" bs=16M iflag=direct oflag=direct status=none 2>/dev/null; then :
  else cp "$f" "$FLOOR/"; fi # small files (config) or a file system without O_DIRECT
done
sync
FLOOR_S=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
rm -rf "$FLOOR"

echo "== rotq rotate (all cores)" >&2
drop_caches
ROTATE_LOG=$WORK/rotate.log
ROTQ_TIMING=1 timed "$ROTQ" rotate --model "$MODEL" --output "$OUT2" --no-verify --quiet 2> "$ROTATE_LOG"
ROT_S=$SECONDS_TAKEN
ROT_RSS_MB=$((RSS_KB / 1024))
ROT_IN_GB=$(gb_of_blocks "$INPUT_BLOCKS")
TIMING=$(grep '^rotq timing' "$ROTATE_LOG" | sed 's/^rotq timing: //')

echo "== rotq rotate with the in-stream check (the default)" >&2
OUTV=$WORK/rotated-verified
rm -rf "$OUTV"
drop_caches
VERIFY_LOG=$WORK/verify.log
timed "$ROTQ" rotate --model "$MODEL" --output "$OUTV" 2> "$VERIFY_LOG"
VER_S=$SECONDS_TAKEN
VER_RSS_MB=$((RSS_KB / 1024))
VER_IN_GB=$(gb_of_blocks "$INPUT_BLOCKS")
VER_LINE=$(grep 'verify: in-stream' "$VERIFY_LOG" | sed 's/^rotq rotate: verify: //')
VER_SAME=identical
for s in $(cd "$OUT2" && ls ./*.safetensors); do cmp -s "$OUT2/$s" "$OUTV/$s" || VER_SAME="DIFFERENT ($s)"; done
rm -rf "$OUTV"

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

MEM_LINE="skipped (MEM_LAYERS=0)"
if [ "$MEM_LAYERS" -gt 0 ]; then
  echo "== in memory: $MEM_LAYERS layers on /dev/shm" >&2
  MEM_MODEL=$WORK/model-$MEM_LAYERS-layers
  rm -rf "$MEM_MODEL"
  "$ROTQ" synth --shape "$SHAPE" --dtype "$DTYPE" --layers "$MEM_LAYERS" --output "$MEM_MODEL" > /dev/null
  MEM_BYTES=$(du -sb "$MEM_MODEL" | cut -f1)
  SHM_FREE_KB=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')
  if [ -n "$SHM_FREE_KB" ] && [ $((SHM_FREE_KB * 1024)) -gt $((MEM_BYTES * 5 / 2)) ]; then
    mkdir -p "$SHM"
    cp -r "$MEM_MODEL" "$SHM/model"
    # twice, timing the second: the first pays for the VM handing out fresh memory for tmpfs pages
    "$ROTQ" rotate --model "$SHM/model" --output "$SHM/rotated" --no-verify --quiet
    rm -rf "$SHM/rotated"
    timed "$ROTQ" rotate --model "$SHM/model" --output "$SHM/rotated-verified" --quiet
    MEM_VER_S=$SECONDS_TAKEN
    rm -rf "$SHM/rotated-verified"
    timed "$ROTQ" rotate --model "$SHM/model" --output "$SHM/rotated" --no-verify --quiet
    MEM_ROT_S=$SECONDS_TAKEN
    MEM_DENSE_LOG=$WORK/dense-memory.log
    "$DENSE" --model "$SHM/model" --layers "$MEM_LAYERS" --rotated "$SHM/rotated" > "$MEM_DENSE_LOG"
    MEM_DENSE_S=$(sed -n 's/^dense estimate for the whole model: \([0-9.]*\) s.*/\1/p' "$MEM_DENSE_LOG")
    MEM_LINE="rotq rotate $MEM_ROT_S s (with the in-stream check $MEM_VER_S s: $(ratio "$MEM_VER_S" "$MEM_ROT_S")×), dense $MEM_DENSE_S s: $(ratio "$MEM_DENSE_S" "$MEM_ROT_S")×"
    rm -rf "$SHM"
  else
    MEM_LINE="skipped (no room on /dev/shm for 2.5 × $MEM_BYTES bytes)"
  fi
  rm -rf "$MEM_MODEL"
fi
DENSE_E2E_S=$(awk -v a="$DENSE_S" -v b="$FLOOR_S" 'BEGIN { printf "%.1f", a + b }')

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
  echo "| rotq rotate with the in-stream check (the default) | $VER_S | $(ratio "$VER_S" "$ROT_S")× rotq rotate --no-verify |"
  echo "| rotq rotate, 1 thread | $ROT1_S | |"
  echo "| disk floor: dd O_DIRECT copy + sync | $FLOOR_S | rotq rotate = $(ratio "$ROT_S" "$FLOOR_S")× the floor |"
  echo "| dense float64 GEMM, compute only (estimate) | $DENSE_S | $(ratio "$DENSE_S" "$ROT_S")× rotq rotate |"
  echo "| dense float64 GEMM + disk floor (lower bound of a dense tool's wall time) | $DENSE_E2E_S | $(ratio "$DENSE_E2E_S" "$ROT_S")× rotq rotate |"
  echo
  echo "- rotq rotate peak RSS: $ROT_RSS_MB MB --no-verify, $VER_RSS_MB MB with the in-stream check"
  echo "- read from the disk: $ROT_IN_GB GB --no-verify, $VER_IN_GB GB with the in-stream check; outputs $VER_SAME"
  echo "- in-stream check: $VER_LINE"
  echo "- rotq timing: $TIMING"
  echo "- --threads 1 vs --threads $(nproc) output: $SAME ($METHOD)"
  echo "- in memory ($MEM_LAYERS layers, /dev/shm, arithmetic and conversions only): $MEM_LINE"
  echo "- dense benchmark:"
  sed 's/^/    /' "$DENSE_LOG"
  if [ -n "${MEM_DENSE_LOG:-}" ]; then
    echo "- dense benchmark on the in-memory model:"
    sed 's/^/    /' "$MEM_DENSE_LOG"
  fi
  if [ "${MEMORY:-1}" != 0 ]; then
    echo
    # shellcheck disable=SC2086 # MEMORY_SHAPES is a list of words
    ROTQ_BUILD=$BUILD "$ROOT/bench/memory.sh" ${MEMORY_SHAPES:-}
  fi
} | tee "$REPORT"

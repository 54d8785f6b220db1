#!/usr/bin/env bash
# bench/memory.sh [SHAPE[:LAYERS] ...]: the arithmetic at memory speed, where no disk hides it (the
# checkpoint in memory, or on fast NVMe). For each shape (default: llama-3.2-1b whole, and llama-3-8b
# cut to MEM8B_LAYERS decoder layers, default 2, embedding and lm_head whole), a bf16 checkpoint
# made by rotq synth on /dev/shm is, in the same run, in this order:
#   cp -r to /dev/shm                              twice, the second timed
#   rotq rotate --no-verify, tmpfs → tmpfs         twice, the second timed (the first run pays for
#                                                  the VM handing out fresh memory for tmpfs pages)
#   rotq rotate (the default: the in-stream check) twice, the second timed
#   rotq rotate --threads 1 --no-verify            once (after the runs above: pages recycled)
# and the outputs of the three compared with cmp (they must be bitwise identical). Reported: wall
# and CPU seconds, the ratio to cp -r, GB/s of weights, peak RSS, the check's cost, the efficiency of
# the threads (t1 / (N · tN)). Then bench_kernel: the per-row-block kernel against a memcpy of the
# same rows (one thread). The machine may be shared: CPU seconds (user + sys) are steadier than wall
# seconds, and the load average is printed.
# Environment: ROTQ_BUILD (a Release build directory; default: build bench/../build-bench),
# MEM8B_LAYERS, SHM_DIR (default /dev/shm/rotq-memory-$$). Prints a Markdown report.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${ROTQ_BUILD:-}" ]; then
  BUILD=$ROTQ_BUILD
else
  BUILD=$ROOT/build-bench
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target rotq bench_kernel >/dev/null
fi
ROTQ=$BUILD/rotq
SHM=${SHM_DIR:-/dev/shm/rotq-memory-$$}
MEM8B_LAYERS=${MEM8B_LAYERS:-2}
if [ $# -gt 0 ]; then SHAPES=("$@"); else SHAPES=(llama-3.2-1b "llama-3-8b:$MEM8B_LAYERS"); fi
THREADS=$(nproc)
trap 'rm -rf "$SHM"' EXIT

# wall seconds, CPU seconds (user + sys) and peak RSS (MB) of a command: WALL, CPU, RSS_MB
timed() {
  local log
  log=$(mktemp)
  /usr/bin/time -f "%e %U %S %M" -o "$log" "$@" >/dev/null 2>&1
  read -r WALL user sys rss < "$log"
  rm -f "$log"
  CPU=$(awk -v a="$user" -v b="$sys" 'BEGIN { printf "%.2f", a + b }')
  RSS_MB=$((rss / 1024))
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }
twice() { # the command twice, removing $1 before each; the second timed
  local out=$1
  shift
  rm -rf "$out"
  "$@" >/dev/null 2>&1
  rm -rf "$out"
  timed "$@"
}

echo "### In memory: rotation vs cp -r, tmpfs to tmpfs ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo
echo "Machine: $THREADS cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'),"
echo "$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM; load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)."
echo "Second of two runs each; bf16, transformer_universal (random Hadamard R1/R2, float64); rotq with $THREADS threads."
echo
echo "| model | GB | cp -r s (CPU s) | rotate --no-verify s (CPU s) | × cp -r | GB/s | rotate, checked s (CPU s) | × cp -r | check's cost | --threads 1 s | thread efficiency | peak RSS MB | outputs |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for spec in "${SHAPES[@]}"; do
  shape=${spec%%:*}
  layers_arg=()
  label=$shape
  if [ "$spec" != "$shape" ]; then
    layers_arg=(--layers "${spec#*:}")
    label="$shape (${spec#*:} layers)"
  fi
  rm -rf "$SHM"
  mkdir -p "$SHM"
  "$ROTQ" synth --shape "$shape" --dtype bf16 "${layers_arg[@]}" --output "$SHM/model" >/dev/null
  bytes=$(du -sb "$SHM/model" | cut -f1)
  avail_kb=$(awk '/MemAvailable/ { print $2 }' /proc/meminfo)
  shm_kb=$(df -Pk /dev/shm | awk 'NR == 2 { print $4 }')
  if [ $((avail_kb * 1024)) -lt $((bytes * 5 / 2)) ] || [ $((shm_kb * 1024)) -lt $((bytes * 5 / 2)) ]; then
    echo "| $label | $(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1e9 }') | skipped: no room in memory for 3 copies | | | | | | | | | | |"
    continue
  fi
  gb=$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1e9 }')
  twice "$SHM/copy" cp -r "$SHM/model" "$SHM/copy"
  cp_s=$WALL cp_cpu=$CPU
  rm -rf "$SHM/copy"
  twice "$SHM/out" "$ROTQ" rotate --model "$SHM/model" --output "$SHM/out" --no-verify --quiet
  rot_s=$WALL rot_cpu=$CPU rot_rss=$RSS_MB
  twice "$SHM/checked" "$ROTQ" rotate --model "$SHM/model" --output "$SHM/checked" --quiet
  ver_s=$WALL ver_cpu=$CPU ver_rss=$RSS_MB
  same=identical
  for s in $(cd "$SHM/out" && ls ./*.safetensors); do cmp -s "$SHM/out/$s" "$SHM/checked/$s" || same="DIFFERENT (checked, $s)"; done
  rm -rf "$SHM/checked"
  rm -rf "$SHM/one"
  timed "$ROTQ" rotate --model "$SHM/model" --output "$SHM/one" --threads 1 --no-verify --quiet
  one_s=$WALL
  for s in $(cd "$SHM/out" && ls ./*.safetensors); do cmp -s "$SHM/out/$s" "$SHM/one/$s" || same="DIFFERENT (--threads 1, $s)"; done
  rm -rf "$SHM/one" "$SHM/out"
  efficiency=$(awk -v a="$one_s" -v b="$rot_s" -v n="$THREADS" 'BEGIN { if (b > 0) printf "%.0f%%", 100 * a / (n * b); else printf "-" }')
  echo "| $label | $gb | $cp_s ($cp_cpu) | $rot_s ($rot_cpu) | $(ratio "$rot_s" "$cp_s") | $(ratio "$gb" "$rot_s") | $ver_s ($ver_cpu) | $(ratio "$ver_s" "$cp_s") | $(ratio "$ver_s" "$rot_s")× wall, $(ratio "$ver_cpu" "$rot_cpu")× CPU | $one_s | $efficiency | $rot_rss / $ver_rss checked | $same (--threads 1, $THREADS, checked) |"
done
rm -rf "$SHM"
echo
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
echo
echo '```'
"$BUILD/bench_kernel" 8192 2048 5
"$BUILD/bench_kernel" 14336 4096 3
echo '```'

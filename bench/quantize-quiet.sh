#!/bin/bash
# bench/quantize-quiet.sh: issue 21's bench on a quiet machine: llama-3-8b bf16 (rotq synth), page cache
# dropped before every run, `rotq rotate` alone vs `rotq rotate --quantize SCHEME` (RTN in the rotation
# stream), both with the in-stream check (the default), alternating, ROUNDS times (default 3); then the
# one-pass NVFP4A16 and W8A8 once each. Prints wall seconds, rc and the ratio per round. Needs root (drops
# the page cache), about 30 GB in $B (default /tmp/b), and a Release build/rotq (R= another binary).
# SCHEMES= (empty) skips the single runs after the rounds; VERIFY=--no-verify times both without the check.
set -u
R=${R:-$(cd "$(dirname "$0")/.." && pwd)/build/rotq}
B=${B:-/tmp/b}
ROUNDS=${ROUNDS:-3}
mkdir -p "$B"
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# wall seconds, rc and CPU seconds (user + sys) of a command
t() {
  local s=$(date +%s.%N); /usr/bin/time -f "%U %S" -o $B/cpu "$@" >/dev/null 2>$B/last.err; local rc=$?; local e=$(date +%s.%N)
  echo "$(echo "$e - $s" | bc) rc=$rc cpu=$(awk '{ print $1 + $2 }' $B/cpu)"
}
echo "load: $(cat /proc/loadavg)"
rm -rf $B/bf16 $B/out $B/q
echo "synth bf16: $(t $R synth --shape llama-3-8b --output $B/bf16)"
for i in $(seq "$ROUNDS"); do
  drop; r=$(t $R rotate --model $B/bf16 --output $B/out --quiet ${VERIFY:-}); rm -rf $B/out
  drop; q=$(t $R rotate --model $B/bf16 --output $B/q --quantize W4A16 --quiet ${VERIFY:-}); rm -rf $B/q
  echo "round $i: rotate $r | rotate --quantize W4A16 $q | ratio $(echo "scale=3; ${q%% *} / ${r%% *}" | bc)"
done
for s in ${SCHEMES-NVFP4A16 W8A8}; do
  drop; echo "rotate --quantize $s: $(t $R rotate --model $B/bf16 --output $B/q --quantize $s --quiet)"
  du -sb $B/q | sed "s/^/$s bytes: /"; rm -rf $B/q
done
rm -rf $B/bf16
echo "load: $(cat /proc/loadavg)"

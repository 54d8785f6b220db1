#!/bin/bash
# bench/fullsize-quiet.sh: the full-size runs of bench/RESULTS.md "Full size on a quiet machine" (issues
# 17 and 21): FP8 and bf16 llama-3-8b rotate, with and without the check, rotate --quantize W4A16, and
# dd O_DIRECT floors. Needs root (drops the page cache), about 45 GB in $B (default /tmp/b), and a Release
# build/rotq (R= another binary).
set -u
mkdir -p "${B:-/tmp/b}"
R=${R:-$(cd "$(dirname "$0")/.." && pwd)/build/rotq}
B=${B:-/tmp/b}
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
t() { local s=$(date +%s.%N); "$@" >/dev/null 2>$B/last.err; local rc=$?; local e=$(date +%s.%N); echo "$(echo "$e - $s" | bc) rc=$rc"; }
echo "load: $(cat /proc/loadavg)"
rm -rf $B/fp8 $B/out $B/q
t $R synth --shape llama-3-8b --dtype fp8 --output $B/fp8 | sed 's/^/synth fp8: /'
du -sb $B/fp8 | sed 's/^/fp8 bytes: /'
for i in 1 2; do
  drop; echo "fp8 rotate --no-verify: $(t $R rotate --model $B/fp8 --output $B/out --no-verify --quiet)"; rm -rf $B/out
  drop; echo "fp8 rotate (check): $(t $R rotate --model $B/fp8 --output $B/out --quiet)"; [ $i = 2 ] || rm -rf $B/out
done
du -sb $B/out | sed 's/^/written bytes: /'
drop; echo "floor read fp8 (dd O_DIRECT): $(t bash -c "for f in $B/fp8/*.safetensors; do dd if=\$f of=/dev/null bs=16M iflag=direct status=none; done")"
drop; echo "floor copy of the 16 GB output (dd O_DIRECT both sides + sync): $(t bash -c "mkdir -p $B/floor; for f in $B/out/*.safetensors; do dd if=\$f of=$B/floor/\$(basename \$f) bs=16M iflag=direct oflag=direct status=none; done; sync")"
rm -rf $B/floor $B/out $B/fp8
t $R synth --shape llama-3-8b --output $B/bf16 | sed 's/^/synth bf16: /'
for i in 1 2; do
  drop; echo "bf16 rotate (check): $(t $R rotate --model $B/bf16 --output $B/out --quiet)"; rm -rf $B/out
  drop; echo "bf16 rotate --quantize W4A16 (check): $(t $R rotate --model $B/bf16 --output $B/q --quantize W4A16 --quiet)"; [ $i = 2 ] || rm -rf $B/q
done
du -sb $B/q | sed 's/^/W4A16 bytes: /'
drop; echo "bf16 rotate --no-verify: $(t $R rotate --model $B/bf16 --output $B/out --no-verify --quiet)"; rm -rf $B/out
drop; echo "bf16 rotate --quantize W4A16 --no-verify: $(t $R rotate --model $B/bf16 --output $B/q2 --quantize W4A16 --no-verify --quiet)"; rm -rf $B/q2
drop; echo "floor copy bf16 (dd O_DIRECT + sync): $(t bash -c "mkdir -p $B/floor; for f in $B/bf16/*.safetensors; do dd if=\$f of=$B/floor/\$(basename \$f) bs=16M iflag=direct oflag=direct status=none; done; sync")"
rm -rf $B/floor $B/q $B/bf16
echo "load: $(cat /proc/loadavg)"

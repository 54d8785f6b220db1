#!/usr/bin/env bash
# What rotation buys on a real trained model: `rotq report` on SmolLM2-135M-Instruct (fetched and
# converted by scripts/fetch-smollm2.sh into cache/smollm2/) on WikiText-2 and TinyStories tokens,
# and `rotq stats`' outlier plot. Writes bench/smollm2-{wiki,tinystories}.{md,json},
# bench/smollm2-stats.txt, docs/smollm2_outliers.svg (per-channel JSON:
# cache/smollm2/smollm2-stats.json). Settings by environment:
# RUNS ("wiki tinystories stats"), WIKI_SEGMENTS (8), STORY_SEGMENTS (20), STATS_SEGMENTS (4),
# METHODS (rtn: GPTQ recomputes every group's inputs from the embedding, quadratic in the depth,
# too slow for 30 layers on 2 cores), CALIB_N (16, for gptq), PRECISION (--f32; empty = float64).
# About 25 minutes per report on this project's shared 2-core machine.
# usage: bench/smollm2.sh [ROTQ_BIN]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rotq=${1:-$root/build/rotq}
cache=${ROTQ_CACHE:-$root/cache}/smollm2
[ -f "$cache/hf/model.safetensors" ] || "$root/scripts/fetch-smollm2.sh" "$rotq"
precision=${PRECISION---f32}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
run() {
  echo "+ $*" >&2
  /usr/bin/time -f "%e s wall, %M KB peak" "$@"
}
for step in ${RUNS:-wiki tinystories stats}; do
  case $step in
  wiki)
    run "$rotq" report --model "$cache/hf" --tokens "$cache/wiki.test.u16" --segments "${WIKI_SEGMENTS:-8}" \
      --calib-n "${CALIB_N:-16}" --methods "${METHODS:-rtn}" $precision --output "$root/bench/smollm2-wiki"
    ;;
  tinystories)
    run "$rotq" report --model "$cache/hf" --tokens "$cache/tinystories_val.u16" --segments "${STORY_SEGMENTS:-20}" \
      --calib-n "${CALIB_N:-16}" --methods "${METHODS:-rtn}" $precision --output "$root/bench/smollm2-tinystories"
    ;;
  stats)
    run "$rotq" stats --model "$cache/hf" --tokens "$cache/wiki.test.u16" --segments "${STATS_SEGMENTS:-4}" \
      --svg "$root/docs/smollm2_outliers.svg" --json "$cache/smollm2-stats.json" |
      tee "$root/bench/smollm2-stats.txt"
    ;;
  *) echo "bench/smollm2.sh: unknown step '$step' (wiki, tinystories, stats)" >&2; exit 2 ;;
  esac
done

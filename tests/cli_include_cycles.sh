#!/usr/bin/env bash
# The library's include graph has no cycles, between files or directories (scripts/include_cycles.sh),
# and the script does find them: on small trees made with a directory cycle and a file cycle.
set -u
. "${ROTQ_SOURCE_DIR:?ROTQ_SOURCE_DIR is not set}/tests/support/cli_test.sh" cli_include_cycles
CHECK=$ROOT/scripts/include_cycles.sh

expect 0 '^include graph: no cycles' -- bash "$CHECK" "$ROOT"
# the layering the library keeps: model/ below eval/, linalg/ below model/
grep -q 'model eval' <<<"$OUTPUT" && fail "model/ includes eval/: $OUTPUT"
grep -q 'linalg model' <<<"$OUTPUT" && fail "linalg/ includes model/: $OUTPUT"

# a directory cycle (model → eval → model), each file including a different one: no file cycle
tree=$SCRATCH/dircycle
mkdir -p "$tree/model" "$tree/eval"
printf '#include "eval/quantize.h"\n' >"$tree/model/forward.h"
printf '#include "model/model.h"\n' >"$tree/eval/quantize.h"
: >"$tree/model/model.h"
expect 1 'cycle between directories' -- bash "$CHECK" "$tree"
grep -q 'cycle between files' <<<"$OUTPUT" && fail "a directory cycle reported as a file cycle: $OUTPUT"

# a file cycle inside one directory
tree=$SCRATCH/filecycle
mkdir -p "$tree/rotate"
printf '#include "rotate/b.h"\n' >"$tree/rotate/a.h"
printf '#include "rotate/a.h"\n' >"$tree/rotate/b.h"
expect 1 'cycle between files' -- bash "$CHECK" "$tree"
finish

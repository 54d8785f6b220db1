#!/usr/bin/env bash
# The include graph of the library: no cycles, between files or between directories.
#
#   scripts/include_cycles.sh [ROOT]        (ROOT: the source tree, default the repository)
#
# Reads every #include "dir/file" of the library's directories (common io config family linalg
# rotate model eval synth; cli/, tests/ and the rest are users of the library, not part of it) and
# builds two graphs: file → included file, and directory → directory (dir A includes something
# of dir B ≠ A). Either containing a cycle is an error: tsort names the cycle, the exit status is 1.
# A directory graph without cycles is a layering: every directory can be built, read and tested
# with only the ones below it (eval/ on model/ on linalg/ ..., never back up).
set -u
ROOT=${1:-$(cd "$(dirname "$0")/.." && pwd)}
LIB_DIRS="common io config family linalg rotate model eval synth"
files=$(mktemp) dirs=$(mktemp) out=$(mktemp)
trap 'rm -f "$files" "$dirs" "$out"' EXIT

for d in $LIB_DIRS; do
  [ -d "$ROOT/$d" ] || continue
  for f in "$ROOT/$d"/*.c "$ROOT/$d"/*.h; do
    [ -f "$f" ] || continue
    from=${f#"$ROOT/"}
    echo "$from $from" >>"$files" # every file a node, included or not
    sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f" | while read -r inc; do
      [ -f "$ROOT/$inc" ] || continue # a sibling or generated header, not a library path
      echo "$from $inc" >>"$files"
      to_dir=${inc%%/*}
      [ "$to_dir" != "$d" ] && case " $LIB_DIRS " in *" $to_dir "*) echo "$d $to_dir" >>"$dirs" ;; esac
    done
  done
done

status=0
if ! tsort "$files" >/dev/null 2>"$out"; then
  echo "include cycle between files:" >&2
  sed 's/^tsort: [^:]*: /  /' "$out" >&2
  status=1
fi
sort -u "$dirs" -o "$dirs"
if ! tsort "$dirs" >/dev/null 2>"$out"; then
  echo "include cycle between directories (the edges: directory includes directory):" >&2
  sed 's/^tsort: [^:]*: /  /' "$out" >&2
  sed 's/^/  /' "$dirs" >&2
  status=1
fi
[ "$status" -eq 0 ] && echo "include graph: no cycles ($(wc -l <"$dirs") directory edges: $(tr '\n' ';' <"$dirs"))"
exit "$status"

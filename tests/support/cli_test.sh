# Sourced by the shell tests (tests/cli_*.sh): paths, a scratch directory removed at exit, and the
# checks. Usage: `. "$ROTQ_SOURCE_DIR/tests/support/cli_test.sh" NAME` then `expect ...`, `finish`.
ROOT=${ROTQ_SOURCE_DIR:?ROTQ_SOURCE_DIR is not set}
ROTQ=${ROTQ_BIN:?ROTQ_BIN is not set}
MODEL=$ROOT/models/stories260K
TOKENS=$ROOT/data/tinystories_val.tok512.u16
TEST_NAME=$1
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/rotq-$TEST_NAME-XXXXXX")
trap 'chmod -R u+w "$SCRATCH"; rm -rf "$SCRATCH"' EXIT
failures=0

# fail MESSAGE: counts a failure.
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# expect STATUS PATTERN -- command...: runs it; its exit status must be STATUS (a status >= 128 is
# a crash, reported as such) and its stdout+stderr, left in OUTPUT, must match the extended regex.
expect() {
  local expected=$1 pattern=$2
  shift 3
  OUTPUT=$("$@" 2>&1)
  local status=$?
  if [ "$status" -ge 128 ] && [ "$expected" -lt 128 ]; then
    fail "crashed with status $status: $*: $OUTPUT"
  elif [ "$status" -ne "$expected" ]; then
    fail "exited $status, expected $expected: $*: $OUTPUT"
  fi
  grep -Eq -- "$pattern" <<<"$OUTPUT" || fail "output lacks /$pattern/: $*: $OUTPUT"
}

# finish: the test's exit status.
finish() {
  if [ "$failures" -ne 0 ]; then
    echo "$TEST_NAME: $failures failure(s)" >&2
    exit 1
  fi
  echo "$TEST_NAME: all checks passed"
  exit 0
}

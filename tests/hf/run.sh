#!/usr/bin/env bash
# ctest's hf_oracle: runs the transformers oracle suite (tests/hf, pytest) with the venv that
# scripts/install-py-test-deps.sh creates (.venv-test/, or $ROTQ_PY_VENV). Without that venv the test
# is skipped (exit 77, ctest's SKIP_RETURN_CODE) saying so; .ci/run always creates it first.
set -u
ROOT=${ROTQ_SOURCE_DIR:?ROTQ_SOURCE_DIR is not set}
VENV=${ROTQ_PY_VENV:-$ROOT/.venv-test}
if [ ! -x "$VENV/bin/python" ]; then
  echo "SKIP: hf_oracle: no Python test environment at $VENV (scripts/install-py-test-deps.sh creates it; .ci/run does)"
  exit 77
fi
BASETEMP=$(mktemp -d "${TMPDIR:-/tmp}/rotq-hf-oracle-XXXXXX")
trap 'rm -rf "$BASETEMP"' EXIT
cd "$ROOT/tests/hf" || exit 1
# One thread per process: the models are tiny and ctest runs tests side by side.
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1 \
  "$VENV/bin/python" -m pytest -q -p no:cacheprovider --basetemp="$BASETEMP/pytest" "$@" .
status=$?
if [ "$status" -eq 5 ]; then
  echo "FAIL: hf_oracle: pytest collected no tests" >&2
  exit 1
fi
exit "$status"

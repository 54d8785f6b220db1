#!/usr/bin/env bash
# The Python package (python/rotq, ctypes over librotq.so) against the rotq CLI: runs
# tests/python/test_rotq_api.py -- rotate(dir) byte-equal to `rotq rotate` (config by name, YAML
# path and dict; errors as RotqError), a LlamaForCausalLM-shaped torch module from stories260K's
# weights rotated in place and saved, tensor by tensor byte-equal to `rotq rotate`, tied lm_head
# untied, logits equal to the original's in float64 -- with Debian's python3-torch/python3-numpy
# (scripts/install-deps.sh installs them), then again with transformers' own LlamaForCausalLM when
# the .venv-test of scripts/install-py-test-deps.sh is there. Also: the package finds librotq.so
# beside itself and where ROTQ_LIBRARY points. Skipped (77) only when no Python has torch and numpy.
. "$ROTQ_SOURCE_DIR/tests/support/cli_test.sh" cli_python_api
LIB=$(dirname "$ROTQ")/librotq.so
[ -e "$LIB" ] || { echo "FAIL: $LIB not built" >&2; exit 1; }

PY=
for candidate in ${ROTQ_PYTHON:-} /usr/bin/python3 python3; do
  if "$candidate" -c 'import torch, numpy' 2>/dev/null; then PY=$candidate; break; fi
done
if [ -z "$PY" ]; then
  echo "SKIP: cli_python_api: no python3 with torch and numpy (scripts/install-deps.sh installs python3-torch python3-numpy)"
  exit 77
fi

# A sanitized build (scripts/sanitize.sh) gives a librotq.so that needs the ASan runtime loaded
# first; Python itself leaks by design, so leak detection is off for these processes.
SAN=()
if ldd "$LIB" | grep -q libasan; then
  SAN=(LD_PRELOAD="$(cc -print-file-name=libasan.so) $(cc -print-file-name=libubsan.so)"
       ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0")
fi
RUN=(env -u ROTQ_LIBRARY "${SAN[@]}" PYTHONPATH="$ROOT/python" PYTHONDONTWRITEBYTECODE=1 OMP_NUM_THREADS=1)

# Where the library is found: ROTQ_LIBRARY, and beside the package.
SHOW='import rotq; from rotq import _lib; print(_lib.lib()._name, rotq.version())'
expect 0 "^$LIB 0\.1\.0$" -- "${RUN[@]}" ROTQ_LIBRARY="$LIB" "$PY" -c "$SHOW"
mkdir -p "$SCRATCH/site" && cp -r "$ROOT/python/rotq" "$SCRATCH/site/" && cp -L "$LIB" "$SCRATCH/site/rotq/librotq.so"
expect 0 "^$SCRATCH/site/rotq/librotq.so 0\.1\.0$" -- "${RUN[@]}" PYTHONPATH="$SCRATCH/site" "$PY" -c "$SHOW"
expect 1 "ROTQ_LIBRARY" -- "${RUN[@]}" ROTQ_LIBRARY="$SCRATCH/nowhere.so" "$PY" -c 'import rotq; rotq.version()'

echo "cli_python_api: $PY ($("$PY" -c 'import torch; print("torch", torch.__version__)'))"
"${RUN[@]}" ROTQ_LIBRARY="$LIB" "$PY" "$ROOT/tests/python/test_rotq_api.py" "$SCRATCH/debian" ||
  fail "tests/python/test_rotq_api.py with $PY"

VENV=${ROTQ_PY_VENV:-$ROOT/.venv-test}
if [ -x "$VENV/bin/python" ]; then
  echo "cli_python_api: transformers' LlamaForCausalLM in $VENV"
  "${RUN[@]}" ROTQ_LIBRARY="$LIB" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 \
    "$VENV/bin/python" "$ROOT/tests/python/test_rotq_api.py" "$SCRATCH/hf" --hf || fail "test_rotq_api.py --hf in $VENV"
else
  echo "cli_python_api: no $VENV: transformers' LlamaForCausalLM not tried (the stand-in was)"
fi
finish

#!/usr/bin/env bash
# Creates .venv-test/ (git-ignored) with the pinned Python packages of the transformers oracle suite
# (tests/hf/, run by ctest's hf_oracle when the venv exists): torch 2.13.0 — asked for by exact
# version, which takes the CPU build on this machine's disk (plain `torch` would download a CUDA
# build of several GB) — transformers, compressed-tensors and pytest, each pinned. Idempotent: an
# existing venv whose pins match is kept. Usage: scripts/install-py-test-deps.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-test}
PINS=(torch==2.13.0 transformers==5.23.0 compressed-tensors==0.20.1 pytest==9.2.0)
STAMP="$VENV/.rotq-pins"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "${PINS[*]}" ]; then
  exit 0
fi
python3 -c 'import venv, ensurepip' 2>/dev/null || scripts/install-deps.sh python3-venv
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q "${PINS[0]}"
"$VENV/bin/python" -m pip install -q "${PINS[@]}"
"$VENV/bin/python" -c 'import torch, transformers, compressed_tensors, pytest; print("rotq: python test venv:", "torch", torch.__version__, "transformers", transformers.__version__, "compressed-tensors", compressed_tensors.__version__)'
echo "${PINS[*]}" >"$STAMP"

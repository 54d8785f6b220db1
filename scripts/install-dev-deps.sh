#!/usr/bin/env bash
# Installs the tools of the reliability checks (scripts/sanitize.sh, fuzz.sh, valgrind.sh) on top
# of scripts/install-deps.sh: clang with libFuzzer and the sanitizer runtimes, and valgrind. As
# root with apt-get, otherwise prints the command to run. Exits 0 when everything is present.
set -euo pipefail
exec "$(dirname "$0")/install-deps.sh" clang libclang-rt-dev valgrind

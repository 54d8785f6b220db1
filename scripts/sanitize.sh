#!/usr/bin/env bash
# Builds rotq and its tests with AddressSanitizer and UndefinedBehaviorSanitizer (ROTQ_SANITIZE=ON)
# in build-asan/ and runs the whole test suite. Any sanitizer report aborts the process at fault
# (abort_on_error), so a test sees a crash (status >= 128) rather than an ordinary failure.
# usage: scripts/sanitize.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-asan}
jobs=$(nproc)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS=-g -DROTQ_SANITIZE=ON >/dev/null
cmake --build "$build" -j "$jobs"
export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1
export UBSAN_OPTIONS=abort_on_error=1:print_stacktrace=1:halt_on_error=1
cd "$build" && ctest --output-on-failure -j "$jobs"

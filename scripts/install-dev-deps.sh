#!/usr/bin/env bash
# Installs the tools of the reliability checks (scripts/sanitize.sh, fuzz.sh, valgrind.sh) on top
# of scripts/install-deps.sh: clang with libFuzzer and the sanitizer runtimes, and valgrind. As
# root with apt-get, otherwise prints the command to run. Exits 0 when everything is present.
set -euo pipefail
"$(dirname "$0")/install-deps.sh"
packages=(clang libclang-rt-dev valgrind)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "rotq: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "rotq: missing packages; run:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

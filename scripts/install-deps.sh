#!/usr/bin/env bash
# Installs rotq's build dependencies (and any package names given as arguments) from Debian's packages: as root with apt-get, otherwise
# prints the exact command to run. Exits 0 when everything is present.
set -euo pipefail
packages=(build-essential cmake pkg-config libcjson-dev libyaml-dev libopenblas-dev liblapacke-dev libcmocka-dev
          python3 python3-numpy python3-torch "$@")
# python3: tests/cli_errors.sh edits checkpoints with tests/support/checkpoint_surgery.py;
# python3-numpy, python3-torch: tests/cli_python_api.sh (the rotq Python package on a torch model)
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

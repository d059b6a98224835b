#!/usr/bin/env bash
# Install what minicon and its tests need on a Debian/Ubuntu machine (as root), then a virtualenv
# in .venv with minicon installed in editable mode. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(
  gcc libc6-dev    # the tests compile tiny C programs
  binutils         # readelf: the ELF parser is checked against it
  tar              # GNU tar extracts the tars the tests make
  libcap2-bin      # setcap/getcap: file capabilities must survive
  mmdebstrap       # builds the Debian root filesystems of the e2e tests
  strace procps    # the tracing benchmark's reference; pgrep in the tracer tests
  python3-venv
)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
else
  echo "setup: not root or no apt-get: install ${apt_packages[*]} yourself" >&2
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
log=$(mktemp)
if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e '.[dev]'; } >"$log" 2>&1; then
  cat "$log" >&2
  rm -f "$log"
  echo "setup: pip install failed" >&2
  exit 1
fi
rm -f "$log"
.venv/bin/python -c 'import minicon, minimizer, elftools, click'

echo "setup: ready (.venv/bin/minicon)"

#!/usr/bin/env bash
# The whole test suite: starts the local PostgreSQL the store's tests also run on and sets up
# bcc for the eBPF backend's (as root; scripts/postgres.sh and scripts/ebpf.sh install what is
# missing), then pytest with any arguments given.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${MINICON_TEST_PG_URL:-}" ] && [ "$(id -u)" = 0 ]; then
  MINICON_TEST_PG_URL=$(bash scripts/postgres.sh)
  export MINICON_TEST_PG_URL
fi
if [ "$(id -u)" = 0 ]; then  # bcc and kernel headers; without them the eBPF tests skip (CI: fail)
  bash scripts/ebpf.sh || echo "test.sh: eBPF set-up failed; its tests will say why" >&2
fi
exec .venv/bin/python -m pytest "$@"

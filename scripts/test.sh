#!/usr/bin/env bash
# The whole test suite: starts the local PostgreSQL the store's tests also run on (as root;
# scripts/postgres.sh installs it if needed), then pytest with any arguments given.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${MINICON_TEST_PG_URL:-}" ] && [ "$(id -u)" = 0 ]; then
  MINICON_TEST_PG_URL=$(bash scripts/postgres.sh)
  export MINICON_TEST_PG_URL
fi
exec .venv/bin/python -m pytest "$@"

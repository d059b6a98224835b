#!/usr/bin/env bash
# Install and start a local PostgreSQL for the store's tests (as root, Debian/Ubuntu), with a
# role that may create databases. Prints the URL to export, e.g.
#   export MINICON_TEST_PG_URL=$(bash scripts/postgres.sh)
set -euo pipefail
if ! command -v pg_lsclusters >/dev/null || [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
read -r version cluster port status _ < <(pg_lsclusters -h | head -n1)
if [ "$status" != online ]; then
  pg_ctlcluster "$version" "$cluster" start >&2
fi
password=minicon-test
su postgres -c "psql -q -p $port -v ON_ERROR_STOP=1" >&2 <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'minicon_test') THEN
    CREATE ROLE minicon_test LOGIN CREATEDB PASSWORD '$password';
  END IF;
END \$\$;
SELECT 'CREATE DATABASE minicon_test OWNER minicon_test'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'minicon_test') \gexec
SQL
echo "postgresql+psycopg://minicon_test:$password@127.0.0.1:$port/minicon_test"

#!/usr/bin/env bash
# Install (Debian/Ubuntu) and start a local PostgreSQL for the scale-out tests; as root.
# Creates role and database "autoaug" and prints the URL to export, e.g.
#   export AUTOAUG_TEST_POSTGRES=$(sudo bash scripts/start_postgres.sh)
set -euo pipefail
PASSWORD=${AUTOAUG_PG_PASSWORD:-autoaug-s3cret}
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends postgresql >&2
fi
if ! pg_lsclusters -h 2>/dev/null | grep -q .; then  # no cluster (e.g. a container image)
  pg_createcluster --locale C.UTF-8 "$(ls /usr/lib/postgresql | sort -n | tail -1)" main >&2
fi
read -r version cluster port status _ < <(pg_lsclusters -h | head -1)
if [ "$status" != "online" ]; then
  pg_ctlcluster "$version" "$cluster" start >&2
fi
for _ in $(seq 30); do
  su postgres -c "psql -p $port -qAtc 'select 1'" >/dev/null 2>&1 && break
  sleep 1
done
su postgres -c "psql -p $port -qAt" >&2 <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'autoaug') THEN CREATE ROLE autoaug; END IF;
END \$\$;
ALTER ROLE autoaug LOGIN PASSWORD '$PASSWORD';
SQL
if ! su postgres -c "psql -p $port -qAtc \"select 1 from pg_database where datname = 'autoaug'\"" | grep -q 1; then
  su postgres -c "createdb -p $port -O autoaug autoaug" >&2
fi
echo "postgresql://autoaug:$PASSWORD@127.0.0.1:$port/autoaug"

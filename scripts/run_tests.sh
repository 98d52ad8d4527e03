#!/usr/bin/env bash
# The README's test command: sets up everything the suite needs, where it is missing, then runs
# it. Extra args go to pytest (e.g. `bash scripts/run_tests.sh tests/test_policy.py -x`).
# Tests run in AUTOAUG_TEST_WORKERS pytest-xdist processes (default 2; 0 runs them in this one):
# most of a test's time is single-threaded (imports, tracing, MLflow), so two share 2 cores well.
#
# On a fresh Debian/Ubuntu machine (as root, or through sudo) it installs Debian's chromium and
# fonts-dejavu-core (the real-browser test) and PostgreSQL (the multi-worker tests), starts
# PostgreSQL with scripts/start_postgres.sh and exports its URL as AUTOAUG_TEST_POSTGRES,
# creates .venv (scripts/setup_venv.sh), then runs pytest. Each step is skipped when already
# done: chromium on the PATH (or AUTOAUG_CHROMIUM naming one), AUTOAUG_TEST_POSTGRES already
# set (that server is used as it is), .venv up to date. MLflow servers are started by the
# tests themselves on loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "run_tests: '$*' needs root (or sudo); run as root, or set up what it installs yourself" >&2
    return 1
  fi
}

if [ -n "${AUTOAUG_CHROMIUM:-}" ] && [ -x "$AUTOAUG_CHROMIUM" ]; then
  :
elif ! command -v chromium >/dev/null 2>&1; then
  echo "run_tests: installing chromium and fonts-dejavu-core (apt-get)" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium fonts-dejavu-core >/dev/null
fi

if [ -z "${AUTOAUG_TEST_POSTGRES:-}" ]; then
  # A real PostgreSQL (installed if missing, started if stopped): role and database "autoaug".
  if ! AUTOAUG_TEST_POSTGRES=$(as_root bash scripts/start_postgres.sh); then
    echo "run_tests: could not install or start PostgreSQL (scripts/start_postgres.sh failed);" \
         "or set AUTOAUG_TEST_POSTGRES=postgresql://user:password@host:port/db" >&2
    exit 1
  fi
  export AUTOAUG_TEST_POSTGRES
fi
echo "run_tests: chromium $(command -v chromium || echo "${AUTOAUG_CHROMIUM:-}"), PostgreSQL" \
     "$(echo "$AUTOAUG_TEST_POSTGRES" | sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#')" >&2

bash scripts/setup_venv.sh
export TF_CPP_MIN_LOG_LEVEL=2
# --durations: the slowest tests, printed at the end, are where to cut when CI nears its 30 minutes
exec .venv/bin/python -m pytest -n "${AUTOAUG_TEST_WORKERS:-2}" --dist worksteal --durations=25 "$@"

#!/usr/bin/env bash
# Install Debian's PostgreSQL server when its binaries are missing: the platform database tests start a
# throwaway cluster with initdb + pg_ctl (tests/platform_db_fixture.py). Needs root (apt-get).
# Retries: 3 attempts, backing off 10 s then 30 s, for a package mirror that hiccups.
set -euo pipefail

find_initdb() {
  command -v initdb 2>/dev/null && return 0
  ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 | grep . && return 0
  return 1
}

if initdb_path="$(find_initdb)"; then
  echo "install-postgres: $("$initdb_path" --version) already installed ($initdb_path)"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-postgres: initdb not found and not root; install it with: apt-get install -y postgresql" >&2
  exit 2
fi
command -v apt-get >/dev/null || { echo "install-postgres: no apt-get: install PostgreSQL (initdb, pg_ctl) yourself" >&2; exit 2; }

export DEBIAN_FRONTEND=noninteractive
attempt=1
delays=(10 30)
until apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql >/dev/null; do
  if [ "$attempt" -ge 3 ]; then
    echo "install-postgres: apt-get failed $attempt times, giving up" >&2
    exit 1
  fi
  delay="${delays[$((attempt - 1))]}"
  echo "install-postgres: apt-get failed (attempt $attempt), retrying in ${delay}s" >&2
  sleep "$delay"
  attempt=$((attempt + 1))
done

# Debian's package starts a cluster of its own; the tests start theirs, so that one is not needed.
if command -v pg_ctlcluster >/dev/null; then
  for cluster in $(pg_lsclusters -h 2>/dev/null | awk '{print $1 "/" $2}'); do
    pg_ctlcluster "${cluster%/*}" "${cluster#*/}" stop 2>/dev/null || true
  done
fi

initdb_path="$(find_initdb)" || { echo "install-postgres: postgresql installed but initdb not found" >&2; exit 1; }
echo "install-postgres: $("$initdb_path" --version) installed ($initdb_path)"

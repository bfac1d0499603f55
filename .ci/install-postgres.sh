#!/usr/bin/env bash
# Install Debian's PostgreSQL server when its binaries are missing: the platform database tests start a
# throwaway cluster with initdb + pg_ctl (tests/platform_db_fixture.py). Needs root (apt-get).
# Retries: 3 attempts, backing off 10 s then 30 s, for a package mirror that hiccups.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

find_initdb() {
  command -v initdb 2>/dev/null && return 0
  ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 | grep . && return 0
  return 1
}

if initdb_path="$(find_initdb)"; then
  echo "install-postgres: $("$initdb_path" --version) already installed ($initdb_path)"
  exit 0
fi

ci_require_apt install-postgres initdb postgresql "PostgreSQL (initdb, pg_ctl)"
ci_apt_install install-postgres postgresql

# Debian's package starts a cluster of its own; the tests start theirs, so that one is not needed.
if command -v pg_ctlcluster >/dev/null; then
  for cluster in $(pg_lsclusters -h 2>/dev/null | awk '{print $1 "/" $2}'); do
    pg_ctlcluster "${cluster%/*}" "${cluster#*/}" stop 2>/dev/null || true
  done
fi

initdb_path="$(find_initdb)" || { echo "install-postgres: postgresql installed but initdb not found" >&2; exit 1; }
echo "install-postgres: $("$initdb_path" --version) installed ($initdb_path)"

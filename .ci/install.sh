#!/usr/bin/env bash
# Install everything the project needs from its own files: a virtualenv with the package and its
# dev tools (amazon-kclpy downloads the KCL jars from Maven Central while it installs), and the
# Node.js packages of the local stack. Network steps are retried.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

retry() {
  local attempt=1
  until "$@"; do
    if [ "$attempt" -ge 4 ]; then
      echo "install: '$*' failed $attempt times, giving up" >&2
      return 1
    fi
    echo "install: '$*' failed (attempt $attempt), retrying in $((attempt * 10))s" >&2
    sleep $((attempt * 10))
    attempt=$((attempt + 1))
  done
}

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
retry .venv/bin/pip install --quiet --disable-pip-version-check --upgrade pip setuptools wheel
retry .venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'

jars=$(.venv/bin/python -c 'import amazon_kclpy, pathlib; print(len(list((pathlib.Path(amazon_kclpy.__file__).parent / "jars").glob("*.jar"))))')
if [ "$jars" -lt 10 ]; then
  echo "install: amazon-kclpy has $jars KCL jars; its install should have downloaded them" >&2
  exit 1
fi
echo "install: amazon-kclpy with $jars KCL jars"

bash .ci/install-node-deps.sh

# Debian packages the tests use: PostgreSQL (a throwaway cluster for the platform database tests).
bash .ci/install-postgres.sh
# Prometheus (the end-to-end tests scrape the worker with a real server).
bash .ci/install-prometheus.sh
# Chromium (the lobby page tests drive it headless with Playwright).
bash .ci/install-chromium.sh

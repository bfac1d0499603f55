#!/usr/bin/env bash
# Install devstack's Node.js dependencies (kinesis-mock, npm package kinesis-local, pinned in
# devstack/node/package-lock.json) into devstack/node/node_modules with `npm ci`.
# Retries: 3 attempts, backing off 5 s then 15 s, for a registry that hiccups.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
node_dir="$root/devstack/node"

command -v node >/dev/null || { echo "install-node-deps: node (Node.js >= 18) is not installed" >&2; exit 2; }
command -v npm >/dev/null || { echo "install-node-deps: npm is not installed" >&2; exit 2; }

attempt=1
delays=(5 15)
until (cd "$node_dir" && npm ci --no-audit --no-fund --prefer-offline --loglevel=warn); do
  if [ "$attempt" -ge 3 ]; then
    echo "install-node-deps: npm ci failed $attempt times, giving up" >&2
    exit 1
  fi
  delay="${delays[$((attempt - 1))]}"
  echo "install-node-deps: npm ci failed (attempt $attempt), retrying in ${delay}s" >&2
  sleep "$delay"
  attempt=$((attempt + 1))
done

test -f "$node_dir/node_modules/kinesis-local/main.js" || {
  echo "install-node-deps: kinesis-local/main.js missing after npm ci" >&2
  exit 1
}
echo "install-node-deps: kinesis-local $(node -p "require('$node_dir/node_modules/kinesis-local/package.json').version") installed in $node_dir/node_modules"

#!/usr/bin/env bash
# Install Debian's Prometheus server when it is missing: the end-to-end tests scrape the worker with a
# real Prometheus and check its output with promtool. Needs root (apt-get). Retries: 3 attempts.
set -euo pipefail
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  echo "install-prometheus: $(prometheus --version 2>&1 | head -n 1)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-prometheus: prometheus not found and not root; install it with: apt-get install -y prometheus" >&2
  exit 2
fi
export DEBIAN_FRONTEND=noninteractive
attempt=1
delays=(10 30)
until apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; do
  if [ "$attempt" -ge 3 ]; then
    echo "install-prometheus: apt-get failed $attempt times, giving up" >&2
    exit 1
  fi
  echo "install-prometheus: apt-get failed (attempt $attempt), retrying in ${delays[$((attempt - 1))]}s" >&2
  sleep "${delays[$((attempt - 1))]}"
  attempt=$((attempt + 1))
done
# The package may start its own server where services start on install; the tests run their own.
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl stop prometheus || true
fi
echo "install-prometheus: $(prometheus --version 2>&1 | head -n 1)"

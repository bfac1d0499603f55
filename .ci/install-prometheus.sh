#!/usr/bin/env bash
# Install Debian's Prometheus server when it is missing: the end-to-end tests scrape the worker with a
# real Prometheus and check its output with promtool. Needs root (apt-get). Retries: 3 attempts.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  echo "install-prometheus: $(prometheus --version 2>&1 | head -n 1)"
  exit 0
fi
ci_require_apt install-prometheus prometheus prometheus "Prometheus (prometheus, promtool)"
ci_apt_install install-prometheus prometheus
# The package may start its own server where services start on install; the tests run their own.
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl stop prometheus || true
fi
echo "install-prometheus: $(prometheus --version 2>&1 | head -n 1)"

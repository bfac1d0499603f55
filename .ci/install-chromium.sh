#!/usr/bin/env bash
# Install Debian's Chromium when it is missing: the lobby page tests drive it headless with Playwright
# (tests/integration/test_lobby_page.py launches /usr/bin/chromium; Playwright's own browser download is
# never used). Needs root (apt-get). Retries: 3 attempts, backing off 10 s then 30 s, for a package mirror
# that hiccups.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
  echo "install-chromium: $("$CHROMIUM" --version 2>/dev/null || echo chromium) already installed ($CHROMIUM)"
  exit 0
fi

ci_require_apt install-chromium "$CHROMIUM" chromium "Chromium at $CHROMIUM"
ci_apt_install install-chromium chromium fonts-liberation

[ -x "$CHROMIUM" ] || { echo "install-chromium: chromium installed but $CHROMIUM not found" >&2; exit 1; }
echo "install-chromium: $("$CHROMIUM" --version) installed ($CHROMIUM)"

#!/usr/bin/env bash
# Install Debian's Chromium when it is missing: the lobby page tests drive it headless with Playwright
# (tests/integration/test_lobby_page.py launches /usr/bin/chromium; Playwright's own browser download is
# never used). Needs root (apt-get). Retries: 3 attempts, backing off 10 s then 30 s, for a package mirror
# that hiccups.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
  echo "install-chromium: $("$CHROMIUM" --version 2>/dev/null || echo chromium) already installed ($CHROMIUM)"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-chromium: $CHROMIUM not found and not root; install it with: apt-get install -y chromium" >&2
  exit 2
fi
command -v apt-get >/dev/null || { echo "install-chromium: no apt-get: install Chromium at $CHROMIUM yourself" >&2; exit 2; }

export DEBIAN_FRONTEND=noninteractive
attempt=1
delays=(10 30)
until apt-get update -qq -o DPkg::Lock::Timeout=300 && apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends chromium fonts-liberation >/dev/null; do
  if [ "$attempt" -ge 3 ]; then
    echo "install-chromium: apt-get failed $attempt times, giving up" >&2
    exit 1
  fi
  delay="${delays[$((attempt - 1))]}"
  echo "install-chromium: apt-get failed (attempt $attempt), retrying in ${delay}s" >&2
  sleep "$delay"
  attempt=$((attempt + 1))
done

[ -x "$CHROMIUM" ] || { echo "install-chromium: chromium installed but $CHROMIUM not found" >&2; exit 1; }
echo "install-chromium: $("$CHROMIUM" --version) installed ($CHROMIUM)"

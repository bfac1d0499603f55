# shellcheck shell=bash
# Shared by the .ci/install-*.sh scripts (source it; it runs nothing by itself): installing Debian
# packages as root, retrying a package mirror that hiccups.

# ci_require_apt TAG MISSING PACKAGE MANUAL: exit 2 with a hint unless this runs as root with apt-get.
# MISSING names what was not found; MANUAL says what to install by hand where there is no apt-get.
ci_require_apt() {
  local tag="$1" missing="$2" package="$3" manual="$4"
  if [ "$(id -u)" -ne 0 ]; then
    echo "$tag: $missing not found and not root; install it with: apt-get install -y $package" >&2
    exit 2
  fi
  command -v apt-get >/dev/null || { echo "$tag: no apt-get: install $manual yourself" >&2; exit 2; }
}

# ci_apt_install TAG PACKAGE...: apt-get update + install (no recommends, quiet), 3 attempts backing off
# 10 s then 30 s; exit 1 after the third failure. Waits up to 300 s for another apt-get's lock.
ci_apt_install() {
  local tag="$1" attempt=1 delay
  shift
  local delays=(10 30)
  export DEBIAN_FRONTEND=noninteractive
  until apt-get update -qq -o DPkg::Lock::Timeout=300 \
    && apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "$@" >/dev/null; do
    if [ "$attempt" -ge 3 ]; then
      echo "$tag: apt-get failed $attempt times, giving up" >&2
      exit 1
    fi
    delay="${delays[$((attempt - 1))]}"
    echo "$tag: apt-get failed (attempt $attempt), retrying in ${delay}s" >&2
    sleep "$delay"
    attempt=$((attempt + 1))
  done
}

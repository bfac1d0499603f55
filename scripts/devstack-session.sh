# shellcheck shell=bash
# Sourced by scripts/*.sh (runs nothing by itself): use the local stack in state dir $STATE, starting it
# unless it is running and stopping on exit only what this script started, then export its environment
# (the AWS endpoints, the stream's and the emulator's names). Needs BIN (the venv's bin) and STATE set.
devstack_started=0
if ! "$BIN/devstack" status --state-dir "$STATE" >/dev/null 2>&1; then
  "$BIN/devstack" up --state-dir "$STATE" --edge-port 0
  devstack_started=1
fi
devstack_session_end() {
  if [ "$devstack_started" = 1 ]; then "$BIN/devstack" down --state-dir "$STATE" >/dev/null 2>&1 || true; fi
}
trap devstack_session_end EXIT
eval "$("$BIN/devstack" env --state-dir "$STATE")"

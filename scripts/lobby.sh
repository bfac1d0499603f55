#!/usr/bin/env bash
# The batch pipeline and the lobby on the local stack, in the order the data travels:
#   devstack up -> pam db seed (SQLite) -> batch datasets (S3) -> batch personalize apply (emulator)
#   -> batch similar run (SIMS batch inference -> DynamoDB) -> pam serve, with a token for a demo player.
# Prints the lobby page's URL and serves until Ctrl-C; stops the stack it started on exit.
# LOBBY_PORT (default 8080) is PAM's port; LOBBY_OUT (default out/lobby) holds the database and logs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=.venv/bin
STATE="${DEVSTACK_STATE_DIR:-.devstack}"
OUT="${LOBBY_OUT:-out/lobby}"
PORT="${LOBBY_PORT:-8080}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

# shellcheck source=devstack-session.sh source-path=SCRIPTDIR
source scripts/devstack-session.sh

export PAM_DATABASE_URL="sqlite:///$OUT/platform.db"
export BATCH_DATABASE_URL="$PAM_DATABASE_URL"
export BATCH_S3_BUCKET=patron-datasets BATCH_S3_PREFIX=datasets
# The emulator accepts any role; on AWS this is the role Personalize assumes to read the bucket.
export BATCH_PERSONALIZE_ROLE_ARN="${BATCH_PERSONALIZE_ROLE_ARN:-arn:aws:iam::000000000000:role/PersonalizeS3Access}"

echo "== platform database: $OUT/platform.db"
"$BIN/pam" db seed --upgrade --replace --players 400 --sessions 3000 --days 45 --games 150 --seed 1
echo "== batch datasets -> s3://$BATCH_S3_BUCKET/$BATCH_S3_PREFIX/"
"$BIN/batch" datasets
echo "== batch personalize apply"
"$BIN/batch" personalize apply --outputs "$OUT/personalize-outputs.json"
echo "== batch similar run"
"$BIN/batch" similar run

export PAM_OUTPUTS_FILE="$OUT/personalize-outputs.json"
export PAM_CATALOG_URL="s3://$BATCH_S3_BUCKET/$BATCH_S3_PREFIX/games.json"
# A throwaway signing secret for this run only; production verifies with PAM_JWT_PUBLIC_KEY.
PAM_JWT_SECRET="$("$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(48))')"
export PAM_JWT_SECRET
player="$("$BIN/python" - "$OUT/platform.db" <<'PY'
import sqlite3, sys
with sqlite3.connect(sys.argv[1]) as db:
    row = db.execute(
        "SELECT player_id FROM game_sessions WHERE player_id IS NOT NULL "
        "GROUP BY player_id ORDER BY COUNT(*) DESC, player_id LIMIT 1"
    ).fetchone()
print(row[0])
PY
)"
token="$("$BIN/pam" token "$player" --ttl 86400)"
echo
echo "== the lobby of player $player (the page polls the API and follows changes):"
echo "   http://127.0.0.1:$PORT/lobby#player=$player&token=$token"
echo "   curl -H 'Authorization: Bearer $token' http://127.0.0.1:$PORT/v1/players/$player/lobby"
echo "   Ctrl-C stops PAM and the local stack."
echo
"$BIN/pam" serve --host 127.0.0.1 --port "$PORT"

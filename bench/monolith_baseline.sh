#!/usr/bin/env bash
# The monolith stand-in's own capacity: the baseline every gateway figure is compared with.
# GET /v2/rooms/{id}/messages?force=1 (the latest 100 messages, ~20 KB) with wrk on loopback,
# at 1 and 10 connections, in the busiest room of the walk-through account of the seeded data.
# Usage: bench/monolith_baseline.sh [seconds per run, default 10]   (needs `make demo` first)
source "$(dirname "${BASH_SOURCE[0]}")/../deploy/lib.sh"
SECONDS_PER_RUN="${1:-10}"
[[ "$SECONDS_PER_RUN" =~ ^[1-9][0-9]*$ ]] || die "seconds per run must be a positive whole number"
command -v wrk >/dev/null || die "wrk missing: run deploy/install-system.sh"

read -r TOKEN ROOM COUNT < <(bash "$DEPLOY_DIR/mariadb.sh" sql -N "${MIG_DB_NAME:-chat}" -e "
  SELECT t.token, m.room_id, COUNT(*) AS n FROM api_tokens t
    JOIN room_members rm ON rm.account_id = t.account_id
    JOIN messages m ON m.room_id = rm.room_id AND m.deleted = 0
   WHERE t.account_id = 1 GROUP BY t.token, m.room_id ORDER BY n DESC LIMIT 1")
[[ -n "${ROOM:-}" ]] || die "no seeded data: run 'make demo' first"
URL="http://127.0.0.1:$MONOLITH_PORT/v2/rooms/$ROOM/messages?force=1"
BYTES=$(curl -s -H "X-ChatWorkToken: $TOKEN" "$URL" | wc -c)
echo "monolith baseline: GET /v2/rooms/$ROOM/messages?force=1 (room of $COUNT messages, answer $BYTES bytes), ${SECONDS_PER_RUN}s per run"
printf '%-44s %12s %12s %12s\n' "path" "req/s" "mean" "p99"
run() {  # label connections url [header]
  local out
  out=$(wrk -t1 -c"$2" -d"${SECONDS_PER_RUN}s" --latency -H "X-ChatWorkToken: $TOKEN" "$3")
  local rps mean p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  mean=$(awk '/^ +Latency/ {print $2; exit}' <<<"$out")
  p99=$(awk '/ 99%/ {print $2}' <<<"$out")
  grep -q "Non-2xx" <<<"$out" && [[ "$1" != *401* ]] && echo "warning: non-2xx answers in '$1'" >&2
  printf '%-44s %12s %12s %12s\n' "$1" "$rps" "$mean" "$p99"
}
run "messages force=1, direct, c=1" 1 "$URL"
run "messages force=1, direct, c=10" 10 "$URL"
run "GET /v2/me (auth + 1 row), c=10" 10 "http://127.0.0.1:$MONOLITH_PORT/v2/me"

#!/usr/bin/env bash
# Start-up and demo timings of the foundation, side by side in one run:
#   demo generation, cold and warm server start with the demo lake present,
#   the weekly campaign query through psql vs `watershed sql`.
# Usage: benches/startup.sh [path/to/release/watershed]   (run from the repository root)
set -euo pipefail
BIN="${1:-target/release/watershed}"
DATA="$(mktemp -d)"
PORT=55433
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DATA"' EXIT

now_ms() { date +%s%3N; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(date -u +%F)"

start=$(now_ms)
"$BIN" --data-dir "$DATA" demo --scale 1 2>/dev/null
echo "demo generation (scale 1): $(( $(now_ms) - start )) ms"

wait_ready() {
  until psql -h 127.0.0.1 -p "$PORT" -U watershed -d watershed -Atqc 'SELECT 1' >/dev/null 2>&1; do sleep 0.02; done
}
serve_once() {
  local label="$1"
  start=$(now_ms)
  "$BIN" --data-dir "$DATA" --listen "127.0.0.1:$PORT" 2>/dev/null &
  local pid=$!
  wait_ready
  echo "$label start (until the first query answers): $(( $(now_ms) - start )) ms"
  kill -INT "$pid"; wait "$pid" || true
}
# Cold: the page cache holds none of the lake (needs root; skipped where not allowed).
if sync && echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; then serve_once cold; else echo "cold start: page cache could not be dropped"; fi
serve_once warm

"$BIN" --data-dir "$DATA" --listen "127.0.0.1:$PORT" 2>/dev/null &
wait_ready
for run in 1 2 3; do
  psql_ms=$( { echo '\timing on'; cat benches/weekly_campaign.sql; echo ';'; } \
    | psql -h 127.0.0.1 -p "$PORT" -U watershed -d watershed 2>&1 | awk '/^Time:/ {print $2}')
  start=$(now_ms)
  "$BIN" --data-dir "$DATA" sql -- "$(cat benches/weekly_campaign.sql)" >/dev/null 2>&1
  sql_ms=$(( $(now_ms) - start ))
  echo "weekly campaign query, run $run: psql ${psql_ms} ms (query only) | watershed sql ${sql_ms} ms (whole process: open catalog + query)"
done

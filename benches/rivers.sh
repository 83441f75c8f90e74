#!/usr/bin/env bash
# Rivers, side by side with PostgreSQL on the same machine in one run:
#   1. COPY FROM STDIN of 1M csv rows into a durable ingest source vs into a PostgreSQL
#      table (both acknowledge only after fsync);
#   2. an ad-hoc TUMBLE aggregation over 10M retained events vs the same date_bin
#      aggregation over a 10M-row PostgreSQL table.
# Usage: benches/rivers.sh [path/to/release/watershed]   (run from the repository root;
# PostgreSQL on 127.0.0.1:5432 with trust auth, as on the project's machines)
set -euo pipefail
BIN="${1:-target/release/watershed}"
WORK="$(mktemp -d)"
PORT=55434
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"; psql -h 127.0.0.1 -p 5432 -U postgres -qc "DROP TABLE IF EXISTS bench_events" >/dev/null 2>&1 || true' EXIT

now_ms() { date +%s%3N; }
ws() { psql -h 127.0.0.1 -p "$PORT" -U watershed -d watershed -Atq "$@"; }
pg() { psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atq "$@"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(date -u +%F)"
mkdir -p "$WORK/catalog"
"$BIN" --data-dir "$WORK/data" --catalog-dir "$WORK/catalog" --listen "127.0.0.1:$PORT" 2>/dev/null &
until ws -c 'SELECT 1' >/dev/null 2>&1; do sleep 0.05; done

python3 - "$WORK/events.csv" <<'EOF'
import sys, datetime
base = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
with open(sys.argv[1], "w") as out:
    for i in range(1_000_000):
        ts = base + datetime.timedelta(milliseconds=i)
        out.write(f"{i},{'click' if i % 3 else 'order'},{i % 1000}.25,{ts.isoformat()}\n")
EOF

ws -c "CREATE SOURCE events (id BIGINT, kind TEXT, amount DECIMAL(10,2), ts TIMESTAMPTZ,
       WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH (connector = 'ingest', retention_bytes = '8GB')"
pg -c "DROP TABLE IF EXISTS bench_events" -c "CREATE TABLE bench_events (id BIGINT, kind TEXT, amount NUMERIC(10,2), ts TIMESTAMPTZ)"

start=$(now_ms); ws -c "\\copy events FROM '$WORK/events.csv' CSV"; ws_copy=$(( $(now_ms) - start ))
start=$(now_ms); pg -c "\\copy bench_events FROM '$WORK/events.csv' CSV"; pg_copy=$(( $(now_ms) - start ))
echo "| COPY 1M csv rows FROM STDIN (durable) | $ws_copy ms = $(( 1000000 * 1000 / ws_copy )) rows/s | $pg_copy ms = $(( 1000000 * 1000 / pg_copy )) rows/s | $(ratio "$ws_copy" "$pg_copy") |"

# 10M events: the 1M rows again, ten times shifted by 1000 s each.
for k in 1 2 3 4 5 6 7 8 9; do
  ws -c "INSERT INTO events SELECT id + $k * 1000000, kind, amount, ts + INTERVAL '${k}000 seconds' FROM events WHERE id < 1000000"
  pg -c "INSERT INTO bench_events SELECT id + $k * 1000000, kind, amount, ts + INTERVAL '${k}000 seconds' FROM bench_events WHERE id < 1000000"
done
pg -c "VACUUM ANALYZE bench_events"
echo "retained: $(ws -c 'SELECT events FROM watershed.sources') events in watershed, $(pg -c 'SELECT count(*) FROM bench_events') rows in PostgreSQL"

WS_Q="SELECT window_start, kind, count(*), sum(amount) FROM TUMBLE(events, ts, INTERVAL '1' MINUTE) GROUP BY 1, 2"
PG_Q="SELECT date_bin('1 minute', ts, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS window_start, kind, count(*), sum(amount) FROM bench_events GROUP BY 1, 2"
for run in 1 2 3; do
  start=$(now_ms); ws -c "$WS_Q" >/dev/null; ws_q=$(( $(now_ms) - start ))
  start=$(now_ms); pg -c "$PG_Q" >/dev/null; pg_q=$(( $(now_ms) - start ))
  echo "| TUMBLE 1 min over 10M retained events, run $run | $ws_q ms | $pg_q ms | $(ratio "$ws_q" "$pg_q") |"
done

#!/usr/bin/env bash
# COPY throughput through psql's \copy: ROWS rows (default 1M) of four columns
# (BIGINT, TEXT, DOUBLE, BOOLEAN) as CSV into a managed Delta table (COPY FROM STDIN),
# then out again as CSV, text and binary (COPY TO STDOUT), each timed end to end.
# Usage: benches/copy.sh [path/to/watershed]   (run from the repository root)
set -euo pipefail
BIN="${1:-target/debug/watershed}"
ROWS="${ROWS:-1000000}"
WORK="$(mktemp -d)"
PORT=55434
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

now_ms() { date +%s%3N; }
psql_c() { psql -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U watershed -d watershed -Atqc "$1"; }
rate() { echo "$(( $1 * 1000 / ($2 > 0 ? $2 : 1) ))"; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(date -u +%F); binary $BIN"
awk -v n="$ROWS" 'BEGIN { for (i = 0; i < n; i++) printf "%d,name %d,%d.25,%s\n", i, i, i % 1000, (i % 2 ? "true" : "false") }' > "$WORK/in.csv"
echo "input: $ROWS rows, $(du -m "$WORK/in.csv" | cut -f1) MiB of CSV"

mkdir -p "$WORK/catalog"
"$BIN" --data-dir "$WORK/data" --catalog-dir "$WORK/catalog" --listen "127.0.0.1:$PORT" 2>/dev/null &
until psql_c 'SELECT 1' >/dev/null 2>&1; do sleep 0.02; done
psql_c 'CREATE TABLE bench (id BIGINT, name TEXT, x DOUBLE, flag BOOLEAN)'

start=$(now_ms)
psql_c "\\copy bench from '$WORK/in.csv' with (format csv)" >/dev/null
ms=$(( $(now_ms) - start ))
echo "COPY FROM STDIN csv: $ms ms, $(rate "$ROWS" "$ms") rows/s"
test "$(psql_c 'SELECT count(*) FROM bench')" = "$ROWS"

for format in csv text binary; do
  start=$(now_ms)
  psql_c "\\copy bench to '$WORK/out.$format' with (format $format)" >/dev/null
  ms=$(( $(now_ms) - start ))
  echo "COPY TO STDOUT $format: $ms ms, $(rate "$ROWS" "$ms") rows/s, $(du -m "$WORK/out.$format" | cut -f1) MiB"
done

#!/usr/bin/env bash
# Connections per second and `SELECT 1` queries per second, with and without TLS, and
# with and without SCRAM authentication, measured with pgbench against one server.
#   connections/s: pgbench -C (a new connection, startup, auth, one SELECT 1, close)
#   queries/s:     pgbench without -C (one connection, SELECT 1 over and over)
# Usage: benches/connect.sh [path/to/watershed] [seconds per run]  (from the repository root)
set -euo pipefail
BIN="${1:-target/release/watershed}"
SECONDS_PER_RUN="${2:-10}"
WORK="$(mktemp -d)"
PORT=55434
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(date -u +%F); binary $BIN"

# A throw-away CA and server certificate (EC P-256, as a small deployment would use).
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
( cd "$WORK"
  openssl req -x509 -new "${ec[@]}" -keyout ca.key -out ca.crt -days 2 -subj "/CN=bench CA" 2>/dev/null
  openssl req -new "${ec[@]}" -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
  printf "subjectAltName=DNS:localhost,IP:127.0.0.1\n" > server.ext
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt \
    -days 2 -extfile server.ext 2>/dev/null )
echo "bench-pw" | "$BIN" user add bench --role read --users-file "$WORK/users.toml" 2>/dev/null
echo 'SELECT 1;' > "$WORK/select1.sql"

serve() {
  "$BIN" --data-dir "$WORK/data" --catalog-dir "$WORK/catalog" --listen "127.0.0.1:$PORT" \
    --tls-cert "$WORK/server.crt" --tls-key "$WORK/server.key" "$@" 2>/dev/null &
  SERVER=$!
  until PGSSLMODE=disable psql -h 127.0.0.1 -p "$PORT" -U "$PGUSER" -d watershed -Atqwc 'SELECT 1' >/dev/null 2>&1; do sleep 0.05; done
}
stop() { kill -INT "$SERVER"; wait "$SERVER" || true; }

run() { # label sslmode extra-pgbench-args...
  local label="$1" mode="$2"; shift 2
  local tps
  tps=$(PGSSLMODE="$mode" pgbench -n -h 127.0.0.1 -p "$PORT" -U "$PGUSER" -f "$WORK/select1.sql" \
        -T "$SECONDS_PER_RUN" -c 1 -j 1 "$@" watershed 2>/dev/null \
        | awk '/^tps/ {print int($3)}')
  printf '%-44s %8s/s\n' "$label" "$tps"
}

export PGUSER=watershed
serve
run "connections, trust, plaintext" disable -C
run "connections, trust, TLS" require -C
run "SELECT 1 queries, plaintext" disable
run "SELECT 1 queries, TLS" require
stop

export PGUSER=bench PGPASSWORD=bench-pw
serve --users-file "$WORK/users.toml"
run "connections, SCRAM-SHA-256, plaintext" disable -C
run "connections, SCRAM-SHA-256, TLS" require -C
stop

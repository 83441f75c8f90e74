#!/usr/bin/env bash
# The wire suite (issue 6): SELECT 1 and a point lookup in queries/s with 1, 8 and 32
# connections (pgbench, -M prepared), and a bulk read of 10M rows x 4 int8 (COPY TO STDOUT,
# binary and text), against watershed and PostgreSQL 15 (127.0.0.1:5432, database test) in
# one run. Writes its table into benches/README.md. Installs its Python packages under
# ~/.cache/watershed/bench-venv; data under ~/.cache/watershed (PostgreSQL: schema wire).
# Usage (from the repository root): benches/wire.sh [path/to/watershed] [run.py options...]
# e.g. benches/wire.sh target/release/watershed --seconds 10
set -euo pipefail
BIN="${1:-target/release/watershed}"
shift $(( $# < 1 ? $# : 1 ))
source benches/venv.sh
exec "$VENV/bin/python" benches/wire/run.py --bin "$BIN" --cache "$CACHE" \
  --command "benches/wire.sh $BIN${*:+ $*}" "$@"

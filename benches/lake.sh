#!/usr/bin/env bash
# The lake suite (issue 6): the 22 TPC-H queries at SF1 and the demo's campaign queries, side
# by side in one run: watershed over pgwire (Parquet and Delta), DataFusion in-process over the
# same files, DuckDB, Spark local[2], PostgreSQL 15 (127.0.0.1:5432, database test).
# Writes its tables into benches/README.md. Everything it installs goes under
# ~/.cache/watershed (Python venv from PyPI; TPC-H data; PostgreSQL schemas tpch and demo).
# Usage (from the repository root, after `cargo build --release --features bench --examples`):
#   benches/lake.sh [path/to/watershed] [path/to/lake_inprocess] [run.py options...]
# e.g. benches/lake.sh target/release/watershed target/release/examples/lake_inprocess --runs 3
set -euo pipefail
BIN="${1:-target/release/watershed}"
INPROCESS="${2:-target/release/examples/lake_inprocess}"
shift $(( $# < 2 ? $# : 2 ))
source benches/venv.sh
exec "$VENV/bin/python" benches/lake/run.py --bin "$BIN" --inprocess "$INPROCESS" --cache "$CACHE" \
  --command "benches/lake.sh $BIN $INPROCESS${*:+ $*}" "$@"

#!/bin/sh
# Regenerates the SQLite conformance table in sql-tests/README.md: every file of
# ../shared/conformance/sqlite (skipped cleanly when absent), over the wire with the extended
# protocol. SLT_JOBS (file runs at a time) and CARGO_TARGET_DIR pass through.
set -eu
cd "$(dirname "$0")/.."
SLT_SQLITE=all SLT_MODE=extended SLT_FAILURES="${SLT_FAILURES:-0}" \
    SLT_REPORT=sql-tests/README.md cargo test --test slt

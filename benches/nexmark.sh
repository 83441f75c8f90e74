#!/usr/bin/env bash
# The Nexmark streaming suite (issue 6): watershed views on one core (benches/nexmark.rs)
# and q5's windowed aggregation in Spark Structured Streaming on the same bids. Writes its
# table into benches/README.md. Installs pyspark under ~/.cache/watershed/bench-venv.
# Usage (from the repository root): benches/nexmark.sh [--events N]
set -euo pipefail
source benches/venv.sh
exec "$VENV/bin/python" benches/nexmark/run.py --cache "$CACHE" --command "benches/nexmark.sh${*:+ $*}" "$@"

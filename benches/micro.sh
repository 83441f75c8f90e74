#!/usr/bin/env bash
# The Criterion microbenchmarks (benches/micro.rs): row encoding, window assignment, JSON
# decoding, ingest append. Runs them and writes their table into benches/README.md.
# Usage (from the repository root): benches/micro.sh [extra criterion arguments...]
# CARGO_TARGET_DIR is honoured as cargo does.
set -euo pipefail
OUT="$(mktemp)"
trap 'rm -f "$OUT"' EXIT
LOAD="$(cut -d' ' -f1 /proc/loadavg)"
cargo bench --features bench --bench micro -- "$@" | tee "$OUT"
python3 - "$OUT" "$LOAD" "$*" <<'PY'
import re, sys, datetime, os
out, load, extra = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3]
rows, name = [], None
for line in out.splitlines():
    m = re.match(r"^(\S+/\S+)\s+time:\s+\[\S+ \S+ (\S+ \S+) \S+ \S+\]", line) or re.match(r"^(\S+/\S+)$", line.strip())
    if m and "time:" in line:
        name = m.group(1); rows.append([name, m.group(2), "-"])
    elif m:
        name = m.group(1)
    else:
        t = re.match(r"^\s+time:\s+\[\S+ \S+ (\S+ \S+) \S+ \S+\]", line)
        if t and name:
            rows.append([name, t.group(1), "-"])
        r = re.match(r"^\s+thrpt:\s+\[\S+ \S+ (\S+ \S+) \S+ \S+\]", line)
        if r and rows:
            rows[-1][2] = r.group(1)
mem = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1]) // 1024 // 1024
cmd = "benches/micro.sh" + (f" {extra}" if extra else "")
text = [f"Machine: {os.cpu_count()} cores, {mem} GiB; load average at start {load}. Date: {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC.",
        "", f"Command: `{cmd}` (runs `cargo bench --features bench --bench micro`; median of Criterion's samples).", "",
        "| benchmark | time per iteration | throughput (elements = rows or events) |", "|---|---|---|"]
text += [f"| `{n}` | {t} | {r} |" for n, t, r in rows]
block = "<!-- micro-suite:begin -->\n" + "\n".join(text) + "\n<!-- micro-suite:end -->"
readme = "benches/README.md"
current = open(readme).read()
if "<!-- micro-suite:begin -->" in current:
    before, rest = current.split("<!-- micro-suite:begin -->", 1)
    current = before + block + rest.split("<!-- micro-suite:end -->", 1)[1]
else:
    current = current.rstrip("\n") + "\n\n" + block + "\n"
open(readme, "w").write(current)
print("\n".join(text))
PY

#!/usr/bin/env python3
"""The wire suite (issue 6), side by side with PostgreSQL 15 in one run.

  - `SELECT 1` and the point lookup `SELECT * FROM products WHERE product_id = $1` (a random
    id of the demo's 10,000 products) in queries/s with 1, 8 and 32 connections: pgbench
    custom scripts, extended protocol with prepared statements (`-M prepared`).
  - Bulk read of 10M rows x four int8 columns, `COPY ... TO STDOUT` in binary and text
    through psql into /dev/null, in rows/s.

watershed serves the demo lake's `products` Delta table and a 10M-row Parquet file;
PostgreSQL gets the same rows in schema `wire` of database `test` (products with its
primary key, as an application would have it). Writes its table into benches/README.md
between the wire-suite markers. Run through benches/wire.sh.
"""

import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lake"))
import run as lake  # noqa: E402  (shared helpers: Server, pg_load, machine, README update)

REPO = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- wire-suite:begin -->", "<!-- wire-suite:end -->"
BULK_ROWS = 10_000_000


def log(message):
    print(f"[wire {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ensure_data(binary, cache, work):
    demo_data = cache / "lake-bench-demo"
    products = demo_data / "demo" / "products"
    if not (products / "_delta_log").exists():
        log("generating the demo lake (watershed demo --scale 1)")
        catalog = work / "catalog-demo"
        catalog.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "catalog" / "demo.toml", catalog / "demo.toml")
        subprocess.run([str(binary), "--data-dir", str(demo_data), "--catalog-dir", str(catalog), "demo", "--scale", "1"],
                       check=True, stdout=subprocess.DEVNULL)
    bulk = cache / "wire" / f"bulk_{BULK_ROWS}.parquet"
    if not bulk.exists():
        import duckdb

        log(f"writing {BULK_ROWS:,} rows x 4 int8 to {bulk}")
        bulk.parent.mkdir(parents=True, exist_ok=True)
        tmp = bulk.with_suffix(".tmp")
        duckdb.connect().execute(
            f"COPY (SELECT i AS a, i * 7919 % 1000003 AS b, i // 16 AS c, -i AS d FROM range({BULK_ROWS}) t(i)) "
            f"TO '{tmp}' (FORMAT parquet)")
        tmp.rename(bulk)
    return products, bulk


def pg_ensure(conn, products, bulk):
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

    def load():
        log("loading products and the bulk table into PostgreSQL")
        lake.pg_load(conn, "wire", "products", lake.delta_dataset(products), "product_id")
        lake.pg_load(conn, "wire", "bulk", ds.dataset(bulk))
        with conn.cursor() as cur:
            cur.execute("VACUUM wire.bulk")

    lake.pg_stamped(conn, "wire", f"products@{DeltaTable(str(products)).version()},{bulk.name}", load)


def pgbench(port, user, script, clients, seconds, mode, options=""):
    env = dict(os.environ, PGOPTIONS=options, PGSSLMODE="disable")
    out = subprocess.run(
        ["pgbench", "-n", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-f", str(script), "-M", mode,
         "-c", str(clients), "-j", str(min(clients, os.cpu_count() or 1)), "-T", str(seconds), "test"],
        env=env, capture_output=True, text=True,
    )
    match = re.search(r"^tps = ([0-9.]+)", out.stdout, re.M)
    failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
    if out.returncode != 0 or not match or (failed and int(failed.group(1)) > 0):
        raise RuntimeError(f"pgbench failed: {(out.stderr or out.stdout).strip().splitlines()[-1:]}")
    return float(match.group(1))


def copy_out(port, user, sql, options=""):
    env = dict(os.environ, PGOPTIONS=options, PGSSLMODE="disable")
    start = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", "test", "-Atq", "-c", sql],
                       env=env, stdout=sink, check=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True)
    parser.add_argument("--cache", required=True, type=Path)
    parser.add_argument("--seconds", type=int, default=10, help="pgbench -T per figure")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--mode", default="prepared", help="pgbench -M: simple, extended, prepared")
    parser.add_argument("--bulk-runs", type=int, default=2)
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument("--command", default="benches/wire.sh")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    cache = args.cache.resolve()
    work = cache / "wire-bench"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    machine_line = lake.machine()

    products, bulk = ensure_data(args.bin, cache, work)
    pg = psycopg.connect(f"host=127.0.0.1 port={args.pg_port} user={args.pg_user} dbname=test", autocommit=True)
    pg_ensure(pg, products, bulk)
    pg.close()

    catalog = work / "catalog"
    catalog.mkdir()
    (catalog / "wire.toml").write_text(
        f'[[table]]\nname = "products"\nformat = "delta"\nlocation = "{products}"\n\n'
        f'[[table]]\nname = "bulk"\nformat = "parquet"\nlocation = "{bulk}"\n')
    (work / "select1.sql").write_text("SELECT 1;\n")
    (work / "point.sql").write_text("\\set id random(1, 10000)\nSELECT * FROM products WHERE product_id = :id;\n")
    server = lake.Server(args.bin, work / "data", catalog, 55470, work / "server.log")
    targets = {
        "watershed": (server.port, "watershed", ""),
        "postgres": (args.pg_port, args.pg_user, "-c search_path=wire"),
    }
    qps, bulk_s = {}, {}
    try:
        for script in ("select1", "point"):
            for clients in [int(c) for c in args.clients.split(",")]:
                for engine, (port, user, options) in targets.items():
                    try:
                        value = pgbench(port, user, work / f"{script}.sql", clients, args.seconds, args.mode, options)
                    except Exception as error:
                        value = lake.first_line(error)
                    qps[(script, clients, engine)] = value
                    log(f"{script} c={clients} {engine}: {value}")
        for fmt, clause in (("binary", " (FORMAT binary)"), ("text", "")):
            for engine, (port, user, options) in targets.items():
                times = []
                for _ in range(args.bulk_runs):
                    times.append(copy_out(port, user, f"COPY bulk TO STDOUT{clause}", options))
                bulk_s[(fmt, engine)] = min(times)
                log(f"bulk {fmt} {engine}: {min(times):.2f} s")
    finally:
        server.stop()

    def cell(value):
        return f"{value:,.0f}" if isinstance(value, float) else f"error: {value}"

    def ratio(a, b):
        return f"{a / b:.2f}" if isinstance(a, float) and isinstance(b, float) and b > 0 else "-"

    lines = [
        f"Machine: {machine_line}. Date: {started:%Y-%m-%d %H:%M} UTC. watershed: `{args.bin}`; "
        "PostgreSQL 15 as installed (shared_buffers 128MB), same machine, same run.",
        "",
        f"Command: `{args.command}` (from the repository root). Queries/s: pgbench, `-M {args.mode}`, "
        f"`-T {args.seconds}`, `-j` = min(clients, cores); the point lookup draws `product_id` uniformly from "
        "1..10000 (watershed: a Delta table without indexes; PostgreSQL: a heap table with its primary key).",
        "",
        "| measurement | clients | watershed | PostgreSQL 15 | ratio (watershed / PostgreSQL, higher is better) |",
        "|---|---|---|---|---|",
    ]
    for script, title in (("select1", "`SELECT 1`, queries/s"), ("point", "point lookup by `product_id`, queries/s")):
        for clients in [int(c) for c in args.clients.split(",")]:
            ours, theirs = qps[(script, clients, "watershed")], qps[(script, clients, "postgres")]
            lines.append(f"| {title} | {clients} | {cell(ours)} | {cell(theirs)} | {ratio(ours, theirs)} |")
    for fmt in ("binary", "text"):
        ours, theirs = bulk_s[(fmt, "watershed")], bulk_s[(fmt, "postgres")]
        lines.append(
            f"| bulk read, 10M rows x 4 int8, `COPY TO STDOUT` {fmt}, rows/s (best of {args.bulk_runs}) | 1 | "
            f"{BULK_ROWS / ours:,.0f} ({ours:.2f} s) | {BULK_ROWS / theirs:,.0f} ({theirs:.2f} s) | {theirs / ours:.2f} |")
    report = "\n".join(lines)
    print(report)
    if not args.no_readme:
        lake.update_readme(report, BEGIN, END)


if __name__ == "__main__":
    main()

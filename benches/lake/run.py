#!/usr/bin/env python3
"""The lake suite (issue 6): TPC-H and the demo's campaign queries, side by side in one run.

Engines, each timed on the same files in the same run, query by query in turn:
  watershed over pgwire (psycopg, extended protocol, binary results, every row fetched),
    once over the Parquet files and once over the Delta tables;
  DataFusion in-process (examples/lake_inprocess.rs) over the same Parquet files and
    Delta tables, with a watershed session's execution settings;
  DuckDB over the Parquet files; Spark local[2] over the Parquet files;
  PostgreSQL 15 (127.0.0.1:5432, database `test`) with the same data loaded.
The demo's campaign queries (benches/weekly_campaign.sql, benches/campaign_live.sql) run on
watershed's demo lake and on PostgreSQL with the same rows loaded.

Each query runs once to warm up, then --runs times; the figure is the best of those runs,
in milliseconds. Writes the tables into benches/README.md between the lake-suite markers.
Run through benches/lake.sh, which installs the Python packages first.
"""

import argparse
import datetime
import io
import math
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[2]
TPCH_TABLES = ["lineitem", "orders", "customer", "part", "partsupp", "supplier", "nation", "region"]
TPCH_QUERIES = sorted((REPO / "benches" / "tpch").glob("q*.sql"))
DEMO_TABLES = ["products", "campaigns", "customers", "orders_history"]
# Primary keys of the TPC-H schema (the specification's 1.4.2.2), for PostgreSQL.
TPCH_KEYS = {
    "lineitem": "l_orderkey, l_linenumber", "orders": "o_orderkey", "customer": "c_custkey",
    "part": "p_partkey", "partsupp": "ps_partkey, ps_suppkey", "supplier": "s_suppkey",
    "nation": "n_nationkey", "region": "r_regionkey",
}
BEGIN, END = "<!-- lake-suite:begin -->", "<!-- lake-suite:end -->"


def log(message):
    print(f"[lake {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def first_line(error):
    text = " ".join(str(error).split())
    return text if len(text) <= 160 else text[:157] + "..."


# ---------------------------------------------------------------------------------------
# Data


def ensure_tpch(cache, sf, venv_bin):
    """TPC-H at scale `sf` as Parquet (tpchgen-cli) and as Delta tables (deltalake)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import write_deltalake

    root = cache / "tpch" / f"sf{sf}"
    parquet = root / "parquet"
    if not (parquet / "COMPLETE").exists():
        log(f"generating TPC-H SF{sf} Parquet with tpchgen-cli")
        shutil.rmtree(parquet, ignore_errors=True)
        subprocess.run([str(venv_bin / "tpchgen-cli"), "parquet", "-s", str(sf), "--output-dir", str(parquet)], check=True)
        (parquet / "COMPLETE").touch()
    delta = root / "delta"
    for table in TPCH_TABLES:
        target = delta / table
        if (target / "_delta_log").exists():
            continue
        log(f"writing Delta table {table}")
        data = pq.read_table(parquet / f"{table}.parquet")
        # Delta has no string_view type: the same strings as plain UTF-8.
        schema = pa.schema([
            pa.field(f.name, pa.string() if f.type == pa.string_view() else f.type, f.nullable) for f in data.schema
        ])
        tmp = delta / f".{table}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        write_deltalake(str(tmp), data.cast(schema), mode="overwrite")
        tmp.rename(target)
    return parquet, delta


def write_catalog(directory, tables, fmt, location):
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "tpch.toml", "w") as out:
        for table in tables:
            out.write(f'[[table]]\nname = "{table}"\nformat = "{fmt}"\nlocation = "{location(table)}"\n\n')


class Server:
    """A watershed server on a loopback port, stopped with SIGINT."""

    def __init__(self, binary, data_dir, catalog_dir, port, log_path, ready_s=600):
        self.port = port
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [str(binary), "--data-dir", str(data_dir), "--catalog-dir", str(catalog_dir), "--listen", f"127.0.0.1:{port}", "serve"],
            stdout=self.log, stderr=self.log,
        )
        deadline = time.monotonic() + ready_s
        while True:
            try:
                psycopg.connect(self.dsn(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"watershed exited with {self.proc.returncode}; see {log_path}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"watershed not ready after {ready_s} s; see {log_path}")
                time.sleep(0.2)

    def dsn(self):
        return f"host=127.0.0.1 port={self.port} user=watershed dbname=watershed"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ---------------------------------------------------------------------------------------
# Engines: each has run(sql_file, runs) -> (rows, [ms per run]) and raises on failure.


def timed(once, runs):
    """One warm-up call of `once` (which returns the row count), then `runs` timed ones."""
    once()
    times, rows = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        rows = once()
        times.append((time.perf_counter() - start) * 1e3)
    return rows, times


class PgwireEngine:
    """watershed or PostgreSQL through psycopg: extended protocol, binary results."""

    def __init__(self, dsn, timeout_s, search_path=None):
        self.conn = psycopg.connect(dsn, autocommit=True)
        with self.conn.cursor() as cur:
            cur.execute(f"SET statement_timeout = '{timeout_s}s'")
            if search_path:
                cur.execute(f"SET search_path TO {search_path}")

    def run(self, path, runs):
        sql = Path(path).read_text()

        def once():
            with self.conn.cursor(binary=True) as cur:
                cur.execute(sql)
                return len(cur.fetchall())

        return timed(once, runs)

    def close(self):
        self.conn.close()


class InProcessEngine:
    """examples/lake_inprocess.rs, driven one query at a time over its stdin."""

    def __init__(self, binary, fmt, directory, tables):
        self.proc = subprocess.Popen(
            [str(binary), fmt, str(directory), *tables],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )

    def run(self, path, runs):
        self.proc.stdin.write(f"{runs + 1}\t{path}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"lake_inprocess exited with {self.proc.wait()}")
        kind, _, rest = line.rstrip("\n").partition("\t")
        if kind != "ok":
            raise RuntimeError(rest)
        rows, _, times = rest.partition("\t")
        return int(rows), [float(t) for t in times.split(",")][1:]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


class DuckDbEngine:
    def __init__(self, views):
        import duckdb

        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        for name, source in views.items():
            self.con.execute(f"CREATE VIEW {name} AS SELECT * FROM {source}")

    def run(self, path, runs):
        sql = Path(path).read_text()
        return timed(lambda: len(self.con.execute(sql).fetchall()), runs)

    def close(self):
        self.con.close()


class SparkEngine:
    def __init__(self, parquet_dir, tables, memory):
        from pyspark.sql import SparkSession

        self.spark = (
            SparkSession.builder.master("local[2]").appName("watershed-lake-bench")
            .config("spark.driver.memory", memory)
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate()
        )
        self.spark.sparkContext.setLogLevel("ERROR")
        for table in tables:
            self.spark.read.parquet(str(parquet_dir / f"{table}.parquet")).createOrReplaceTempView(table)

    def run(self, path, runs):
        sql = Path(path).read_text()
        return timed(lambda: len(self.spark.sql(sql).collect()), runs)

    def close(self):
        self.spark.stop()


# ---------------------------------------------------------------------------------------
# PostgreSQL loading


def pg_type(arrow_type):
    import pyarrow as pa
    import pyarrow.types as t

    if t.is_decimal(arrow_type):
        return f"numeric({arrow_type.precision},{arrow_type.scale})"
    if t.is_timestamp(arrow_type):
        return "timestamptz" if arrow_type.tz else "timestamp"
    if arrow_type in (pa.string(), pa.large_string(), pa.string_view()):
        return "text"
    simple = [(t.is_int8, "smallint"), (t.is_int16, "smallint"), (t.is_int32, "integer"), (t.is_int64, "bigint"),
              (t.is_float32, "real"), (t.is_float64, "double precision"), (t.is_boolean, "boolean"), (t.is_date, "date")]
    for test, name in simple:
        if test(arrow_type):
            return name
    raise ValueError(f"no PostgreSQL type for {arrow_type}")


def pg_load(conn, schema, table, dataset, key=None):
    """Creates schema.table from an Arrow dataset's schema and COPYs every row in (CSV)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    arrow_schema = dataset.schema
    columns = ", ".join(f'"{f.name}" {pg_type(f.type)}' for f in arrow_schema)
    plain = pa.schema([pa.field(f.name, pa.string() if f.type == pa.string_view() else f.type) for f in arrow_schema])
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {schema}.{table}")
        cur.execute(f"CREATE UNLOGGED TABLE {schema}.{table} ({columns})")
        with cur.copy(f"COPY {schema}.{table} FROM STDIN (FORMAT csv)") as copy:
            for batch in dataset.to_batches(batch_size=65_536):
                buffer = io.BytesIO()
                pacsv.write_csv(pa.Table.from_batches([batch]).cast(plain), buffer, pacsv.WriteOptions(include_header=False))
                copy.write(buffer.getvalue())
        if key:
            cur.execute(f"ALTER TABLE {schema}.{table} ADD PRIMARY KEY ({key})")
        cur.execute(f"ANALYZE {schema}.{table}")


def pg_ensure_tpch(conn, parquet_dir, sf):
    import pyarrow.dataset as ds

    def load():
        for table in TPCH_TABLES:
            log(f"loading TPC-H {table} into PostgreSQL")
            pg_load(conn, "tpch", table, ds.dataset(parquet_dir / f"{table}.parquet"), TPCH_KEYS[table])

    pg_stamped(conn, "tpch", f"tpchgen-cli sf{sf}", load)


def pg_stamped(conn, schema, stamp, load):
    """Runs `load` unless `schema` already holds what `stamp` names (loads are minutes)."""
    with conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        cur.execute(f"CREATE TABLE IF NOT EXISTS {schema}.loaded (what text)")
        cur.execute(f"SELECT what FROM {schema}.loaded")
        if [r[0] for r in cur.fetchall()] == [stamp]:
            return
        cur.execute(f"DELETE FROM {schema}.loaded")
    load()
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO {schema}.loaded VALUES (%s)", [stamp])


def delta_dataset(path):
    from deltalake import DeltaTable

    return DeltaTable(str(path)).to_pyarrow_dataset()


def pg_ensure_demo(conn, demo_dir):
    from deltalake import DeltaTable

    def load():
        for table in DEMO_TABLES:
            log(f"loading demo {table} into PostgreSQL")
            pg_load(conn, "demo", table, delta_dataset(demo_dir / table))

    pg_stamped(conn, "demo", ",".join(f"{t}@{DeltaTable(str(demo_dir / t)).version()}" for t in DEMO_TABLES), load)


def pg_copy_live(ws_dsn, pg_conn, source):
    """Snapshots a live source of the demo server into PostgreSQL (COPY out, COPY in)."""
    with psycopg.connect(ws_dsn, autocommit=True) as ws, ws.cursor() as wcur:
        wcur.execute(f"SELECT * FROM {source} LIMIT 0")
        columns = [(d.name, d.type_code) for d in wcur.description]
        types = {oid: name for oid, name in [(20, "bigint"), (23, "integer"), (1700, "numeric"), (1184, "timestamptz"),
                                              (1114, "timestamp"), (25, "text"), (701, "double precision"), (16, "boolean")]}
        ddl = ", ".join(f'"{name}" {types[oid]}' for name, oid in columns)
        with pg_conn.cursor() as pcur:
            pcur.execute(f"DROP TABLE IF EXISTS demo.{source}")
            pcur.execute(f"CREATE UNLOGGED TABLE demo.{source} ({ddl})")
            with wcur.copy(f"COPY (SELECT * FROM {source}) TO STDOUT") as out, \
                    pcur.copy(f"COPY demo.{source} FROM STDIN") as into:
                for block in out:
                    into.write(block)
            pcur.execute(f"ANALYZE demo.{source}")
            pcur.execute(f"SELECT count(*) FROM demo.{source}")
            return pcur.fetchone()[0]


# ---------------------------------------------------------------------------------------
# Running and reporting


def measure(engines, queries, runs, order):
    """results[query][engine] = dict(ms, rows) or dict(error)."""
    results = {}
    for path in queries:
        name = path.stem
        results[name] = {}
        for label in order:
            engine = engines.get(label)
            if engine is None:
                continue
            try:
                rows, times = engine.run(path, runs)
                results[name][label] = {"ms": min(times), "rows": rows, "times": times}
                log(f"{name} {label}: {min(times):.0f} ms, {rows} rows")
            except Exception as error:  # an engine's failure is a result, not the end of the run
                results[name][label] = {"error": first_line(error)}
                log(f"{name} {label}: ERROR {first_line(error)}")
    return results


def geomean(values):
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def fmt_ms(cell):
    if cell is None:
        return "-"
    if "error" in cell:
        return "timeout" if "statement timeout" in cell["error"] else "error"
    ms = cell["ms"]
    return f"{ms:,.0f}" if ms >= 10 else f"{ms:.1f}"


def ratio(results, query, ours, theirs):
    a, b = results[query].get(ours), results[query].get(theirs)
    if a and b and "ms" in a and "ms" in b and b["ms"] > 0:
        return a["ms"] / b["ms"]
    return None


def table(results, columns, ratios):
    """Markdown: one row per query, the engines' ms, then our ratios; geomean rows last."""
    head = ["query"] + [title for _, title in columns] + [title for _, _, title in ratios]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for query in results:
        cells = [query] + [fmt_ms(results[query].get(label)) for label, _ in columns]
        for ours, theirs, _ in ratios:
            r = ratio(results, query, ours, theirs)
            cells.append(f"{r:.2f}" if r is not None else "-")
        rows = {c["rows"] for c in results[query].values() if "rows" in c}
        if len(rows) > 1:
            cells[0] += " (row counts differ!)"
        lines.append("| " + " | ".join(cells) + " |")
    # Geometric means over the queries every engine of the table answered.
    labels = [label for label, _ in columns]
    common = [q for q in results if all("ms" in results[q].get(l, {}) for l in labels)]
    cells = [f"geomean ({len(common)} queries all answered)"]
    cells += [f"{g:,.0f}" if (g := geomean([results[q][l]["ms"] for q in common])) else "-" for l in labels]
    for ours, theirs, _ in ratios:
        g = geomean([ratio(results, q, ours, theirs) for q in common])
        cells.append(f"**{g:.2f}**" if g else "-")
    lines.append("| " + " | ".join(cells) + " |")
    # And per ratio over the queries both engines answered.
    cells = ["geomean of each ratio (queries both answered)"] + [""] * len(columns)
    for ours, theirs, _ in ratios:
        both = [ratio(results, q, ours, theirs) for q in results]
        both = [r for r in both if r is not None]
        g = geomean(both)
        cells.append(f"{g:.2f} ({len(both)})" if g else "-")
    lines.append("| " + " | ".join(cells) + " |")
    return lines


def errors(results):
    out = []
    for query, cells in results.items():
        for label, cell in cells.items():
            if "error" in cell:
                out.append(f"- {query}, {label}: `{cell['error']}`")
    return out


def machine():
    cores = os.cpu_count()
    with open("/proc/meminfo") as meminfo:
        kb = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
    load = os.getloadavg()
    return f"{cores} cores, {kb / 1024 / 1024:.0f} GiB, {platform.machine()}; load average at start {load[0]:.1f}"


def update_readme(text, begin=BEGIN, end=END):
    """Replaces the block between the suite's markers in benches/README.md (or appends it)."""
    readme = REPO / "benches" / "README.md"
    current = readme.read_text()
    block = f"{begin}\n{text}\n{end}"
    if begin in current and end in current:
        before, rest = current.split(begin, 1)
        current = before + block + rest.split(end, 1)[1]
    else:
        current = current.rstrip("\n") + "\n\n" + block + "\n"
    readme.write_text(current)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, help="the watershed binary (a release build)")
    parser.add_argument("--inprocess", required=True, help="the lake_inprocess example binary")
    parser.add_argument("--cache", required=True, type=Path, help="where data, venv and logs live")
    parser.add_argument("--sf", type=int, default=1, help="TPC-H scale factor")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per query after one warm-up")
    parser.add_argument("--timeout-s", type=int, default=60, help="statement_timeout for watershed and PostgreSQL")
    parser.add_argument("--pg", default="host=127.0.0.1 port=5432 user=postgres dbname=test")
    parser.add_argument("--spark-memory", default="4g")
    parser.add_argument("--skip", default="", help="comma-separated engines to leave out")
    parser.add_argument("--queries", default="", help="comma-separated TPC-H query names (q01,...); all by default")
    parser.add_argument("--command", default="benches/lake.sh", help="the command line recorded in the README")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    cache = args.cache.resolve()
    venv_bin = Path(sys.executable).parent
    work = cache / "lake-bench"
    work.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    machine_line = machine()

    parquet, delta = ensure_tpch(cache, args.sf, venv_bin)
    queries = TPCH_QUERIES
    if args.queries:
        wanted = set(args.queries.split(","))
        queries = [q for q in queries if q.stem in wanted]

    pg = None
    if "postgres" not in skip:
        pg = psycopg.connect(args.pg, autocommit=True)
        pg_ensure_tpch(pg, parquet, args.sf)

    # --- TPC-H -------------------------------------------------------------------------
    servers, engines = [], {}
    try:
        for fmt, location in (("parquet", lambda t: parquet / f"{t}.parquet"), ("delta", lambda t: delta / t)):
            label = f"watershed-{fmt}"
            if label in skip:
                continue
            catalog = work / f"catalog-{fmt}"
            shutil.rmtree(catalog, ignore_errors=True)
            write_catalog(catalog, TPCH_TABLES, fmt, location)
            port = 55450 + len(servers)
            server = Server(args.bin, work / f"data-{fmt}", catalog, port, work / f"server-{fmt}.log")
            servers.append(server)
            engines[label] = PgwireEngine(server.dsn(), args.timeout_s)
        if "datafusion-parquet" not in skip:
            engines["datafusion-parquet"] = InProcessEngine(args.inprocess, "parquet", parquet, TPCH_TABLES)
        if "datafusion-delta" not in skip:
            engines["datafusion-delta"] = InProcessEngine(args.inprocess, "delta", delta, TPCH_TABLES)
        if "duckdb" not in skip:
            engines["duckdb"] = DuckDbEngine({t: f"read_parquet('{parquet / (t + '.parquet')}')" for t in TPCH_TABLES})
        if "spark" not in skip:
            log("starting Spark local[2]")
            engines["spark"] = SparkEngine(parquet, TPCH_TABLES, args.spark_memory)
        if pg is not None:
            engines["postgres"] = PgwireEngine(args.pg, args.timeout_s, "tpch")
        order = ["watershed-parquet", "datafusion-parquet", "watershed-delta", "datafusion-delta", "duckdb", "spark", "postgres"]
        tpch = measure(engines, queries, args.runs, order)
    finally:
        for engine in engines.values():
            engine.close()
        for server in servers:
            server.stop()

    # --- The demo's campaign queries ---------------------------------------------------
    demo_results, live_rows = {}, {}
    if "demo" not in skip:
        demo_data = cache / "lake-bench-demo"
        catalog = work / "catalog-demo"
        shutil.rmtree(catalog, ignore_errors=True)
        # The demo's Delta sink creates its managed table (and that table's catalog entry)
        # on first start; a fresh catalog needs a fresh table beside it.
        shutil.rmtree(demo_data / "tables", ignore_errors=True)
        catalog.mkdir(parents=True)
        shutil.copy(REPO / "catalog" / "demo.toml", catalog / "demo.toml")
        server = Server(args.bin, demo_data, catalog, 55460, work / "server-demo.log")
        engines = {}
        try:
            demo_dir = demo_data / "demo"
            engines["watershed-delta"] = PgwireEngine(server.dsn(), args.timeout_s)
            engines["datafusion-delta"] = InProcessEngine(args.inprocess, "delta", demo_dir, DEMO_TABLES)
            if "duckdb" not in skip:
                from deltalake import DeltaTable

                views = {}
                for t in DEMO_TABLES:
                    files = ", ".join(f"'{u}'" for u in DeltaTable(str(demo_dir / t)).file_uris())
                    views[t] = f"read_parquet([{files}], hive_partitioning = true)"
                engines["duckdb"] = DuckDbEngine(views)
            if pg is not None:
                pg_ensure_demo(pg, demo_dir)
                for source in ("clicks", "orders"):
                    live_rows[source] = pg_copy_live(server.dsn(), pg, source)
                engines["postgres"] = PgwireEngine(args.pg, args.timeout_s, "demo")
            weekly = REPO / "benches" / "weekly_campaign.sql"
            demo_results.update(measure(engines, [weekly], args.runs, ["watershed-delta", "datafusion-delta", "duckdb", "postgres"]))
            live = {k: v for k, v in engines.items() if k in ("watershed-delta", "postgres")}
            live_pg = REPO / "benches" / "lake" / "pg" / "campaign_live.sql"
            live_results = measure({"watershed-delta": live["watershed-delta"]}, [REPO / "benches" / "campaign_live.sql"], args.runs, ["watershed-delta"])
            if "postgres" in live:
                pg_live = measure({"postgres": live["postgres"]}, [live_pg], args.runs, ["postgres"])
                live_results["campaign_live"]["postgres"] = pg_live["campaign_live"]["postgres"]
            demo_results.update(live_results)
        finally:
            for engine in engines.values():
                engine.close()
            server.stop()

    if pg is not None:
        pg.close()

    # --- Report ------------------------------------------------------------------------
    titles = {
        "watershed-parquet": "watershed, Parquet", "datafusion-parquet": "DataFusion in-process, Parquet",
        "watershed-delta": "watershed, Delta", "datafusion-delta": "DataFusion in-process, Delta",
        "duckdb": "DuckDB, Parquet", "spark": "Spark local[2], Parquet", "postgres": "PostgreSQL 15",
    }
    columns = [(label, titles[label]) for label in
               ["watershed-parquet", "datafusion-parquet", "watershed-delta", "datafusion-delta", "duckdb", "spark", "postgres"]
               if any(label in cells for cells in tpch.values())]
    ratios = [(o, t, title) for o, t, title in [
        ("watershed-parquet", "datafusion-parquet", "ws/DF Parquet (target <= 1.10)"),
        ("watershed-delta", "datafusion-delta", "ws/DF Delta (target <= 1.10)"),
        ("watershed-parquet", "duckdb", "ws/DuckDB (target <= 1.0)"),
        ("watershed-parquet", "spark", "ws/Spark (target <= 0.2)"),
        ("watershed-parquet", "postgres", "ws/PostgreSQL"),
    ] if any(o in c and t in c for c in tpch.values())]
    text = [
        f"Machine: {machine_line}. Date: {started:%Y-%m-%d %H:%M} UTC. TPC-H SF{args.sf} generated by "
        f"tpchgen-cli (Parquet, one file per table; the Delta tables hold the same rows, written by deltalake).",
        "",
        f"Command: `{args.command}` (from the repository root). Figures: milliseconds, best of {args.runs} runs "
        "after one warm-up, every result row fetched by the client (watershed and PostgreSQL: psycopg, extended "
        "protocol, binary format). Ratios are time over time: below 1 means watershed is faster.",
        "",
        *table(tpch, columns, ratios),
    ]
    failed = errors(tpch)
    if failed:
        text += ["", "Queries that failed (first line of the error):", "", *failed]
    if demo_results:
        demo_columns = [(label, titles[label]) for label in ["watershed-delta", "datafusion-delta", "duckdb", "postgres"]
                        if any(label in cells for cells in demo_results.values())]
        demo_ratios = [(o, t, title) for o, t, title in [
            ("watershed-delta", "datafusion-delta", "ws/DF"),
            ("watershed-delta", "duckdb", "ws/DuckDB"),
            ("watershed-delta", "postgres", "ws/PostgreSQL"),
        ] if any(o in c and t in c for c in demo_results.values())]
        text += [
            "",
            "The demo's campaign queries on the demo lake (`watershed demo --scale 1`: 5.75M orders in Delta), "
            "PostgreSQL with the same rows loaded. `campaign_live` reads the live `clicks` and `orders` sources "
            "(TUMBLE windows); PostgreSQL gets a snapshot of them copied from the server just before "
            f"({', '.join(f'{k}: {v:,} rows' for k, v in live_rows.items()) or 'not run'}) and runs the same query with "
            "`date_bin` (benches/lake/pg/campaign_live.sql). DuckDB reads the Delta tables' current Parquet files.",
            "",
            *table(demo_results, demo_columns, demo_ratios),
        ]
        failed = errors(demo_results)
        if failed:
            text += ["", "Failed:", "", *failed]
    report = "\n".join(text)
    print(report)
    if not args.no_readme:
        update_readme(report)


if __name__ == "__main__":
    main()

"""psycopg 3: text and binary results, server-side prepared statements once a query has
run prepare_threshold (5) times, named (server-side) cursors, a transaction block with
a savepoint, errors with their SQLSTATE."""
import datetime

import psycopg
from psycopg import errors, pq

from common import DSN, TYPES_SQL, check, check_types

with psycopg.connect(DSN, autocommit=True) as conn:
    check(conn.info.server_version >= 160000, f"server_version {conn.info.server_version}")
    version = conn.execute("SELECT version()").fetchone()[0]
    check(version.startswith("PostgreSQL 16") and "watershed" in version, f"version() {version}")
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    check(pid == conn.info.backend_pid, f"pg_backend_pid {pid} is the BackendKeyData pid")

    # Metadata.
    tables = [r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")]
    check("products" in tables, f"information_schema.tables lists products: {tables}")
    cols = conn.execute(
        "SELECT column_name, data_type, ordinal_position FROM information_schema.columns "
        "WHERE table_name = 'products' ORDER BY ordinal_position").fetchall()
    check(cols[0][2] == 1 and cols[0][0] == "product_id" and cols[0][1] == "bigint",
          f"information_schema.columns of products: {cols}")

    # Types, text and binary.
    cur = conn.cursor()
    cur.execute(TYPES_SQL)
    check_types(cur.fetchone(), [d.name for d in cur.description], "text")
    bcur = conn.cursor(binary=True)
    bcur.execute(TYPES_SQL)
    check(bcur.pgresult.fformat(0) == pq.Format.BINARY, "binary result format")
    check_types(bcur.fetchone(), [d.name for d in bcur.description], "binary")

    # Parameters of every kind, and NULL parameters.
    row = conn.execute(
        "SELECT %s::int8 + 1, %s::text || '!', %s::date, %s::float8 * 2, %s::boolean, %s::text IS NULL",
        (41, "hi", datetime.date(2024, 1, 2), 1.25, False, None)).fetchone()
    check(row == (42, "hi!", datetime.date(2024, 1, 2), 2.5, False, True), f"parameters {row}")
    row = conn.execute("SELECT %b::int8 * 2, %b::text", (21, "bin")).fetchone()
    check(row == (42, "bin"), f"binary parameters {row}")

    # Prepared statements after prepare_threshold executions.
    names = set()
    for i in range(8):
        r = conn.execute("SELECT product_id, name FROM products WHERE product_id = %s", (i + 1,)).fetchone()
        assert r is not None and r[0] == i + 1, r
        names.update(conn._prepared._names.values())
    check(conn.prepare_threshold == 5 and len(names) >= 1, f"prepared after threshold: {names}")
    row = conn.execute("SELECT count(*) FROM products WHERE name IS NULL", prepare=True).fetchone()
    check(row[0] == 0, "explicitly prepared statement")

    # Settings through functions and statements.
    conn.execute("SET application_name = 'psycopg-test'")
    check(conn.execute("SELECT current_setting('application_name')").fetchone()[0] == "psycopg-test",
          "current_setting sees SET")
    conn.execute("SELECT set_config('application_name', 'via-set-config', false)")
    check(conn.execute("SHOW application_name").fetchone()[0] == "via-set-config", "set_config changes SHOW")
    conn.execute("RESET ALL")
    check(conn.execute("SHOW application_name").fetchone()[0] == "", "RESET ALL")

    # Errors carry their SQLSTATE.
    try:
        conn.execute("SELECT 1 / 0")
        raise AssertionError("division by zero succeeded")
    except errors.DivisionByZero as e:
        check(e.sqlstate == "22012", f"division by zero is {e.sqlstate}")
    try:
        conn.execute("SELECT * FROM no_such_table")
        raise AssertionError("unknown table succeeded")
    except errors.UndefinedTable as e:
        check(e.sqlstate == "42P01", f"undefined table is {e.sqlstate}")

# A transaction block (autocommit off), a savepoint, a failed block and its rollback.
with psycopg.connect(DSN) as conn:
    conn.execute("DROP TABLE IF EXISTS psycopg3_t")
    conn.commit()
    with conn.transaction():
        conn.execute("CREATE TABLE psycopg3_t (id BIGINT, note TEXT)")
        conn.execute("INSERT INTO psycopg3_t VALUES (%s, %s), (%s, %s)", (1, "one", 2, None))
        with conn.transaction():  # SAVEPOINT / RELEASE
            conn.execute("INSERT INTO psycopg3_t VALUES (3, 'three')")
        check(conn.info.transaction_status == pq.TransactionStatus.INTRANS, "in a transaction block")
    rows = conn.execute("SELECT id, note FROM psycopg3_t ORDER BY id").fetchall()
    check(rows == [(1, "one"), (2, None), (3, "three")], f"rows after the block {rows}")
    conn.commit()
    try:
        conn.execute("SELECT no_such_column FROM psycopg3_t")
    except errors.UndefinedColumn as e:
        check(e.sqlstate == "42703", f"undefined column is {e.sqlstate}")
    check(conn.info.transaction_status == pq.TransactionStatus.INERROR, "failed block reported")
    try:
        conn.execute("SELECT 1")
        raise AssertionError("a failed block accepted a statement")
    except errors.InFailedSqlTransaction as e:
        check(e.sqlstate == "25P02", "failed block refuses statements with 25P02")
    conn.rollback()
    check(conn.execute("SELECT 1").fetchone()[0] == 1, "session usable after ROLLBACK")

    # Named cursor: DECLARE / FETCH / CLOSE.
    with conn.cursor(name="products_cursor") as named:
        named.itersize = 7
        named.execute("SELECT product_id FROM products ORDER BY product_id LIMIT %s", (20,))
        first = named.fetchmany(5)
        rest = named.fetchall()
        check([r[0] for r in first + rest] == list(range(1, 21)), "named cursor fetches all rows in order")
    conn.commit()
    conn.execute("DROP TABLE psycopg3_t")
    conn.commit()
print("psycopg3 ok")

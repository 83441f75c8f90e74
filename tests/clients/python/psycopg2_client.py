"""psycopg2: metadata, parameters, every type, NULLs, a transaction block (psycopg2 opens
one implicitly), a named cursor, errors with their SQLSTATE."""
import datetime

import psycopg2
import psycopg2.errors
import psycopg2.extensions as ext

from common import DSN, TYPES_SQL, check, check_types

conn = psycopg2.connect(DSN)
check(conn.server_version >= 160000, f"server_version {conn.server_version}")
cur = conn.cursor()
cur.execute("SELECT current_setting('server_version_num')")
check(cur.fetchone()[0] == str(conn.server_version), "server_version_num")

cur.execute("SELECT nspname FROM pg_catalog.pg_namespace ORDER BY 1")
schemas = [r[0] for r in cur.fetchall()]
check("public" in schemas and "pg_catalog" in schemas, f"pg_namespace {schemas}")
cur.execute("SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1")
relations = [r[0] for r in cur.fetchall()]
check("products" in relations and "orders_history" in relations, f"pg_class {relations}")

cur.execute(TYPES_SQL)
check_types(cur.fetchone(), [d.name for d in cur.description], "psycopg2")

cur.execute("SELECT %s::int8 + 1, %s, %s::date, %s IS NULL, %s::numeric * 2",
            (41, "text 'quoted'", datetime.date(2024, 1, 2), None, 1.5))
row = cur.fetchone()
check(row[:4] == (42, "text 'quoted'", datetime.date(2024, 1, 2), True) and float(row[4]) == 3.0, f"parameters {row}")
cur.execute("SELECT name FROM products WHERE product_id = %(id)s", {"id": 3})
check(len(cur.fetchall()) == 1, "named parameter")
conn.commit()

# The block psycopg2 opens implicitly, with data written in it.
cur.execute("DROP TABLE IF EXISTS psycopg2_t")
cur.execute("CREATE TABLE psycopg2_t (id BIGINT, note TEXT)")
check(conn.get_transaction_status() == ext.TRANSACTION_STATUS_INTRANS, "in a transaction block")
cur.execute("INSERT INTO psycopg2_t VALUES (%s, %s), (%s, %s)", (1, "one", 2, None))
check(cur.rowcount == 2, f"INSERT rowcount {cur.rowcount}")
cur.execute("SAVEPOINT s1")
cur.execute("RELEASE SAVEPOINT s1")
conn.commit()
cur.execute("SELECT id, note FROM psycopg2_t ORDER BY id")
check(cur.fetchall() == [(1, "one"), (2, None)], "rows after commit")

try:
    cur.execute("SELECT 1 / 0")
    raise AssertionError("division by zero succeeded")
except psycopg2.errors.DivisionByZero as e:
    check(e.pgcode == "22012", f"division by zero is {e.pgcode}")
check(conn.get_transaction_status() == ext.TRANSACTION_STATUS_INERROR, "failed block reported")
conn.rollback()

named = conn.cursor(name="ps2_cursor")
named.itersize = 3
named.execute("SELECT product_id FROM products ORDER BY product_id LIMIT 10")
check([r[0] for r in named] == list(range(1, 11)), "named cursor")
named.close()
conn.commit()

cur.execute("DROP TABLE psycopg2_t")
conn.commit()
conn.close()
print("psycopg2 ok")

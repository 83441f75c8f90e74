"""asyncpg: the binary protocol for every value, type introspection, prepared
statements, a transaction block, errors with their SQLSTATE.

asyncpg decodes text[] and oid[] itself but learns every other array type (int8[] here)
through its type introspection query: a recursive CTE inside a correlated subquery,
which the server evaluates per outer value (src/session/correlated.rs)."""
import asyncio
import datetime

import asyncpg

from common import HOST, PORT, USER, DBNAME, TYPES_SQL, check, check_types


async def main():
    conn = await asyncpg.connect(host=HOST, port=PORT, user=USER, database=DBNAME)
    check(conn.get_server_version().major == 16, f"server version {conn.get_server_version()}")

    rows = await conn.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = $1", "public")
    check("products" in [r["table_name"] for r in rows], "information_schema.tables")

    # int8[] is learnt through the introspection query (see above).
    row = dict(await conn.fetchrow(TYPES_SQL))
    check_types(row, label="asyncpg binary")
    row = await conn.fetchrow("SELECT $1::int4[] AS a, $2::float8[] AS b", [1, None, 3], [0.5])
    check(tuple(row) == ([1, None, 3], [0.5]), f"introspected array parameters {tuple(row)}")
    types = await conn.fetch(
        "SELECT t.typname FROM pg_catalog.pg_type t WHERE t.oid = any($1::oid[]) ORDER BY 1", [20, 1016])
    check([r["typname"] for r in types] == ["_int8", "int8"], f"pg_type by oid[] {types}")

    row = await conn.fetchrow("SELECT $1::int8 + 1 AS a, $2::text AS b, $3::date AS c, $4::timestamptz AS d, $5::text[] AS e",
                              41, "x", datetime.date(2024, 1, 2),
                              datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc), ["1", None, "3"])
    check(tuple(row) == (42, "x", datetime.date(2024, 1, 2),
                         datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc), ["1", None, "3"]),
          f"binary parameters {tuple(row)}")

    stmt = await conn.prepare("SELECT name FROM products WHERE product_id = $1")
    names = [await stmt.fetchval(i) for i in range(1, 6)]
    check(all(isinstance(n, str) for n in names), "prepared statement reused")
    check([a.name for a in stmt.get_attributes()] == ["name"], "prepared statement attributes")

    await conn.execute("DROP TABLE IF EXISTS asyncpg_t")
    async with conn.transaction():
        await conn.execute("CREATE TABLE asyncpg_t (id BIGINT, at TIMESTAMPTZ)")
        await conn.executemany("INSERT INTO asyncpg_t VALUES ($1, $2)",
                               [(1, datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)), (2, None)])
        check(conn.is_in_transaction(), "in a transaction block")
    check(await conn.fetchval("SELECT count(*) FROM asyncpg_t") == 2, "rows written in the block")
    check(await conn.fetchval("SELECT count(*) FROM asyncpg_t WHERE at IS NULL") == 1, "NULL stored")

    try:
        await conn.fetch("SELECT 1 / 0")
        raise AssertionError("division by zero succeeded")
    except asyncpg.exceptions.DivisionByZeroError as e:
        check(e.sqlstate == "22012", f"division by zero is {e.sqlstate}")

    await conn.execute("DROP TABLE asyncpg_t")
    await conn.close()
    print("asyncpg ok")


asyncio.run(main())

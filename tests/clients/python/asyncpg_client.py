"""asyncpg: the binary protocol for every value, prepared statements, a transaction
block, errors with their SQLSTATE, and type introspection.

asyncpg decodes scalars, text[] and oid[] itself and learns every other type (int8[],
float8[]...) by running its introspection query (a recursive CTE over pg_type,
pg_attribute and pg_range, with `$1::oid[]` and `array_agg(atttypid)`) on the server:
that query's own parameter and columns must be types asyncpg knows, or it introspects
again without end. Every query below runs under a timeout for that reason."""
import asyncio
import datetime

import asyncpg

# A bound on each query that needs introspection: a wrong type in the introspection
# query's own description sends asyncpg round without end instead of failing.
INTROSPECTION_TIMEOUT_S = 30

from common import HOST, PORT, USER, DBNAME, TYPES_SQL, check, check_types


async def main():
    conn = await asyncpg.connect(host=HOST, port=PORT, user=USER, database=DBNAME)
    check(conn.get_server_version().major == 16, f"server version {conn.get_server_version()}")

    rows = await conn.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = $1", "public")
    check("products" in [r["table_name"] for r in rows], "information_schema.tables")

    # int8[] is learnt through introspection (see above).
    row = dict(await asyncio.wait_for(conn.fetchrow(TYPES_SQL), INTROSPECTION_TIMEOUT_S))
    check_types(row, label="asyncpg binary")

    arrays = await asyncio.wait_for(
        conn.fetchrow("SELECT ARRAY[1, NULL]::int4[] AS i4, ARRAY[1.5]::float8[] AS f8, "
                      "ARRAY[true, false] AS b, ARRAY[DATE '2024-01-02'] AS d"),
        INTROSPECTION_TIMEOUT_S)
    check(tuple(arrays) == ([1, None], [1.5], [True, False], [datetime.date(2024, 1, 2)]),
          f"introspected array types {tuple(arrays)}")
    # The introspection query itself, as asyncpg sends it: its columns are the types
    # asyncpg decodes without asking (oid, oid[], text[], char, text).
    intro = await asyncio.wait_for(conn.fetch(conn._intro_query, [1016]), INTROSPECTION_TIMEOUT_S)
    by_oid = {r["oid"]: r for r in intro}
    check(by_oid[1016]["elemtype"] == 20 and by_oid[1016]["elemtype_name"] == "bigint"
          and by_oid[20]["elemtype_name"] == "-"
          and 20 in by_oid, f"introspection of int8[] {[dict(r) for r in intro]}")

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

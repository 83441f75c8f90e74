"""SQLAlchemy 2 over psycopg 3 and psycopg2: create_engine, inspect() (table names and
columns, which SQLAlchemy reads from pg_catalog), a bound-parameter query, a transaction
block, an error with its SQLSTATE, and pandas.read_sql."""
import pandas
import sqlalchemy
from sqlalchemy import exc, inspect, text

from common import HOST, PORT, USER, DBNAME, TYPES_SQL, check, check_types

for driver in ("psycopg", "psycopg2"):
    engine = sqlalchemy.create_engine(f"postgresql+{driver}://{USER}@{HOST}:{PORT}/{DBNAME}")
    with engine.connect() as conn:
        check(engine.dialect.server_version_info[0] == 16, f"{driver}: server_version_info {engine.dialect.server_version_info}")
        inspector = inspect(conn)
        tables = inspector.get_table_names()
        check({"products", "campaigns", "customers", "orders_history"} <= set(tables), f"{driver}: get_table_names {tables}")
        # get_columns: SQLAlchemy's reflection query, whose identity-options subquery is
        # correlated through an expression (pg_get_serial_sequence of outer columns) and
        # runs per outer value (session/correlated.rs).
        columns = inspector.get_columns("products")
        check([(c["name"], type(c["type"]).__name__, c["nullable"]) for c in columns]
              == [("product_id", "BIGINT", False), ("name", "TEXT", False), ("category", "TEXT", False),
                  ("price", "NUMERIC", False)], f"{driver}: get_columns {columns}")
        check(all(c["default"] is None and "identity" not in c for c in columns), f"{driver}: no defaults {columns}")
        described = conn.execute(text(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_name = 'products' ORDER BY ordinal_position")).all()
        check([tuple(r) for r in described] == [("product_id", "bigint", "NO"), ("name", "text", "NO"),
                                                ("category", "text", "NO"), ("price", "numeric", "NO")],
              f"{driver}: columns of products {described}")
        check(inspector.get_schema_names().count("public") == 1, f"{driver}: get_schema_names")

        row = conn.execute(text(TYPES_SQL)).mappings().one()
        check_types(row, label=driver)
        row = conn.execute(text("SELECT name FROM products WHERE product_id = :id"), {"id": 2}).one()
        check(isinstance(row[0], str), f"{driver}: bound parameter")

        try:
            conn.execute(text("SELECT * FROM no_such_table"))
            raise AssertionError("unknown table succeeded")
        except exc.ProgrammingError as e:
            code = getattr(e.orig, "sqlstate", None) or getattr(e.orig, "pgcode", None)
            check(code == "42P01", f"{driver}: undefined table is {code}")
        conn.rollback()

    table = f"sqlalchemy_{driver}_t"
    with engine.begin() as conn:  # one transaction block
        conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        conn.execute(text(f"CREATE TABLE {table} (id BIGINT, note TEXT)"))
        conn.execute(text(f"INSERT INTO {table} VALUES (:id, :note)"), [{"id": 1, "note": "a"}, {"id": 2, "note": None}])
    frame = pandas.read_sql(f"SELECT * FROM {table} ORDER BY id", engine)
    check(list(frame["id"]) == [1, 2] and frame["note"].isna().tolist() == [False, True], f"{driver}: pandas.read_sql")
    frame = pandas.read_sql(text("SELECT category, count(*) AS n FROM products GROUP BY category"), engine)
    check(len(frame) > 0 and frame["n"].sum() > 0, f"{driver}: pandas.read_sql aggregate")
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {table}"))
    engine.dispose()
print("sqlalchemy ok")

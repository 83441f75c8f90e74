"""What every Python client test checks, shared so that each driver is held to the same
answers: the server's address comes from the environment tests/clients.rs sets."""
import datetime
import decimal
import os

HOST = os.environ.get("WATERSHED_HOST", "127.0.0.1")
PORT = int(os.environ["WATERSHED_PORT"])
USER = "watershed"
DBNAME = "watershed"
DSN = f"host={HOST} port={PORT} user={USER} dbname={DBNAME}"
URL = f"postgresql://{USER}@{HOST}:{PORT}/{DBNAME}"

# One row of every type the matrix covers, plus a NULL of each kind of value.
TYPES_SQL = """
SELECT 1::int2 AS i2, 2::int4 AS i4, 3::int8 AS i8,
       12.34::numeric(10,2) AS num, 1.5::float4 AS f4, 2.25::float8 AS f8,
       'hé llo'::text AS t, true AS b, DATE '2024-02-29' AS d,
       TIMESTAMP '2024-02-29 13:14:15.5' AS ts,
       '2024-02-29 13:14:15+00'::timestamptz AS tstz,
       INTERVAL '1 day 2 hours' AS iv,
       ARRAY[1, 2, 3]::int8[] AS arr,
       ARRAY['a', NULL, 'c'] AS tarr,
       NULL::int8 AS null_i8, NULL::text AS null_t, NULL::date AS null_d
"""

EXPECTED = {
    "i2": 1,
    "i4": 2,
    "i8": 3,
    "num": decimal.Decimal("12.34"),
    "f4": 1.5,
    "f8": 2.25,
    "t": "hé llo",
    "b": True,
    "d": datetime.date(2024, 2, 29),
    "ts": datetime.datetime(2024, 2, 29, 13, 14, 15, 500000),
    "tstz": datetime.datetime(2024, 2, 29, 13, 14, 15, tzinfo=datetime.timezone.utc),
    "iv": datetime.timedelta(days=1, hours=2),
    "arr": [1, 2, 3],
    "tarr": ["a", None, "c"],
    "null_i8": None,
    "null_t": None,
    "null_d": None,
}


def check_types(row, names=None, label=""):
    """`row` is a sequence in TYPES_SQL's column order, or a mapping."""
    if not hasattr(row, "keys"):
        row = dict(zip(names or EXPECTED.keys(), row))
    for name, expected in EXPECTED.items():
        got = row[name]
        if isinstance(expected, datetime.datetime) and expected.tzinfo is not None:
            assert got is not None and got.tzinfo is not None, f"{label} {name}: {got!r} has no time zone"
            assert got == expected, f"{label} {name}: {got!r} != {expected!r}"
        else:
            assert got == expected, f"{label} {name}: {got!r} ({type(got).__name__}) != {expected!r}"
    print(f"ok types {label}")


def check(condition, message):
    assert condition, message
    print(f"ok {message}")

"""COPY through psycopg 3's copy API (``cursor.copy()``), both directions.

Meant for the client-matrix harness: it expects a running watershed whose address is in
``WATERSHED_DSN`` (default ``host=127.0.0.1 port=5433 user=watershed dbname=watershed``)
and runs with ``pytest tests/clients/python/test_copy.py``. Each test uses its own tables
named after a random suffix so that runs against one server do not collide.
"""

import os
import uuid

import psycopg
import pytest

DSN = os.environ.get(
    "WATERSHED_DSN", "host=127.0.0.1 port=5433 user=watershed dbname=watershed"
)

ROWS = [
    (1, "plain", None),
    (2, "tab\there", "new\nline"),
    (3, "back\\slash", 'comma, and "quotes"'),
    (4, "", "empty name"),
    (5, "ünïcødé ✓", "cr\rhere"),
]


@pytest.fixture()
def conn():
    with psycopg.connect(DSN, autocommit=True) as connection:
        yield connection


def table_name(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def create(cur, name):
    cur.execute(f"CREATE TABLE {name} (id BIGINT, name TEXT, note TEXT)")


def fetch(cur, name):
    cur.execute(f"SELECT id, name, note FROM {name} ORDER BY id")
    return cur.fetchall()


@pytest.mark.parametrize("fmt", ["text", "csv"])
def test_copy_in_rows_then_copy_out(conn, fmt):
    cur = conn.cursor()
    name = table_name(f"py_copy_{fmt}")
    create(cur, name)
    with cur.copy(f"COPY {name} FROM STDIN (FORMAT {fmt})") as copy:
        for row in ROWS:
            copy.write_row(row)
    assert cur.rowcount == len(ROWS)
    assert fetch(cur, name) == ROWS

    out = bytearray()
    with cur.copy(f"COPY (SELECT * FROM {name} ORDER BY id) TO STDOUT (FORMAT {fmt})") as copy:
        for block in copy:
            out += block
    if fmt == "text":
        assert out.decode().splitlines()[0] == "1\tplain\t\\N"
        assert out.decode().splitlines()[1] == "2\ttab\\there\tnew\\nline"
    else:
        assert out.decode().startswith('1,plain,\n2,tab\there,"new\nline"\n')


def test_copy_out_rows_typed(conn):
    cur = conn.cursor()
    name = table_name("py_copy_rows")
    create(cur, name)
    with cur.copy(f"COPY {name} FROM STDIN") as copy:
        for row in ROWS:
            copy.write_row(row)
    with cur.copy(f"COPY (SELECT * FROM {name} ORDER BY id) TO STDOUT") as copy:
        copy.set_types(["int8", "text", "text"])
        got = list(copy.rows())
    assert got == ROWS


def test_copy_binary_out(conn):
    cur = conn.cursor()
    name = table_name("py_copy_bin")
    create(cur, name)
    with cur.copy(f"COPY {name} FROM STDIN (FORMAT csv)") as copy:
        copy.write(b'1,a,\n2,"",x\n')
    with cur.copy(f"COPY (SELECT * FROM {name} ORDER BY id) TO STDOUT (FORMAT binary)") as copy:
        copy.set_types(["int8", "text", "text"])
        got = list(copy.rows())
    assert got == [(1, "a", None), (2, "", "x")]


def test_malformed_copy_writes_nothing(conn):
    cur = conn.cursor()
    name = table_name("py_copy_bad")
    create(cur, name)
    with pytest.raises(psycopg.errors.InvalidTextRepresentation) as failure:
        with cur.copy(f"COPY {name} FROM STDIN (FORMAT csv)") as copy:
            copy.write(b"1,a,b\nnot a number,c,d\n")
    assert "line 2" in str(failure.value)
    cur.execute(f"SELECT count(*) FROM {name}")
    assert cur.fetchone() == (0,)

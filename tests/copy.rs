//! COPY over the wire: `COPY ... TO STDOUT` in text, CSV and binary, and
//! `COPY ... FROM STDIN` in text and CSV into managed Delta tables, through
//! tokio-postgres's copy API and psql's `\copy`; PostgreSQL's escaping and quoting,
//! NULLs, round trips, atomicity on malformed input or CopyFail, and a large COPY.
//! Each test starts its own server on an ephemeral loopback port.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, TryStreamExt, pin_mut};
use tokio_postgres::binary_copy::BinaryCopyOutStream;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};

mod support;

use support::{Server, code_of};

async fn start() -> Server {
    // Small batches so that even the modest COPYs here span many of them.
    Server::start(tempfile::tempdir().expect("temp dir"), |config| config.limits.batch_rows_max = 1000).await
}

/// What these tests do with a server: connect, and run psql against it.
trait CopyServer {
    async fn connect(&self) -> Client;
    async fn psql_output(&self, command: &str) -> std::process::Output;
    async fn psql(&self, command: &str) -> String;
}

impl CopyServer for Server {
    async fn connect(&self) -> Client {
        let url = format!("host=127.0.0.1 port={} user=watershed dbname=watershed", self.port);
        let (client, connection) = tokio_postgres::connect(&url, NoTls).await.expect("connects");
        tokio::spawn(connection);
        client
    }

    /// Runs psql with one `-c` command (asynchronously: the server shares this runtime).
    async fn psql_output(&self, command: &str) -> std::process::Output {
        tokio::process::Command::new("psql")
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "watershed", "-d", "watershed", "-c", command])
            .output()
            .await
            .expect("psql runs")
    }

    /// Runs psql with one `-c` command; returns stdout, panics with stderr on failure.
    async fn psql(&self, command: &str) -> String {
        let output = self.psql_output(command).await;
        assert!(output.status.success(), "psql {command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("utf-8 output")
    }
}

async fn copy_out(client: &Client, sql: &str) -> String {
    let stream = client.copy_out(sql).await.expect(sql);
    let chunks: Vec<Bytes> = stream.try_collect().await.expect(sql);
    String::from_utf8(chunks.concat()).expect("utf-8 copy data")
}

/// Sends `data` in chunks of `chunk` bytes (cutting records anywhere) and finishes.
async fn copy_in(client: &Client, sql: &str, data: &[u8], chunk: usize) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in::<_, Bytes>(sql).await?;
    pin_mut!(sink);
    for piece in data.chunks(chunk) {
        sink.send(Bytes::copy_from_slice(piece)).await?;
    }
    sink.finish().await
}

async fn count(client: &Client, table: &str) -> i64 {
    client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.expect("count").get(0)
}

type Row = (i64, Option<String>, Option<String>);

async fn rows(client: &Client, table: &str) -> Vec<Row> {
    client
        .query(&format!("SELECT id, name, note FROM {table} ORDER BY id"), &[])
        .await
        .expect("rows")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Values that need every kind of escaping and quoting.
const TRICKY: &str = "CREATE TABLE t (id BIGINT, name TEXT, note TEXT);
    INSERT INTO t VALUES
      (1, 'plain', NULL),
      (2, E'tab\\there', E'new\\nline'),
      (3, E'back\\\\slash', 'comma, and \"quotes\"'),
      (4, '', 'empty name'),
      (5, 'ünïcødé ✓', E'cr\\rhere'),
      (6, '\\N', 'backslash-N text')";

fn tricky_rows() -> Vec<Row> {
    let s = |v: &str| Some(v.to_string());
    vec![
        (1, s("plain"), None),
        (2, s("tab\there"), s("new\nline")),
        (3, s("back\\slash"), s("comma, and \"quotes\"")),
        (4, s(""), s("empty name")),
        (5, s("ünïcødé ✓"), s("cr\rhere")),
        (6, s("\\N"), s("backslash-N text")),
    ]
}

#[tokio::test]
async fn copy_to_stdout_text_and_csv_are_postgres_exact() {
    let server = start().await;
    let client = server.connect().await;
    client.batch_execute(TRICKY).await.expect("setup");
    assert_eq!(rows(&client, "t").await, tricky_rows());

    let text = copy_out(&client, "COPY (SELECT * FROM t ORDER BY id) TO STDOUT").await;
    assert_eq!(
        text,
        "1\tplain\t\\N\n\
         2\ttab\\there\tnew\\nline\n\
         3\tback\\\\slash\tcomma, and \"quotes\"\n\
         4\t\tempty name\n\
         5\tünïcødé ✓\tcr\\rhere\n\
         6\t\\\\N\tbackslash-N text\n"
    );

    let csv = copy_out(&client, "COPY (SELECT * FROM t ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)").await;
    assert_eq!(
        csv,
        "id,name,note\n\
         1,plain,\n\
         2,tab\there,\"new\nline\"\n\
         3,back\\slash,\"comma, and \"\"quotes\"\"\"\n\
         4,\"\",empty name\n\
         5,ünïcødé ✓,\"cr\rhere\"\n\
         6,\\N,backslash-N text\n"
    );

    let custom = copy_out(
        &client,
        "COPY (SELECT id, note FROM t WHERE id IN (1, 3) ORDER BY id) TO STDOUT \
         WITH (FORMAT csv, DELIMITER '|', NULL 'NULL', FORCE_QUOTE (id))",
    )
    .await;
    assert_eq!(custom, "\"1\"|NULL\n\"3\"|\"comma, and \"\"quotes\"\"\"\n");

    // The table form, a column list, and the legacy option syntax psql users type.
    let table = copy_out(&client, "COPY t (id) TO STDOUT CSV HEADER").await;
    let mut ids: Vec<&str> = table.lines().collect();
    assert_eq!(ids.remove(0), "id");
    ids.sort();
    assert_eq!(ids, vec!["1", "2", "3", "4", "5", "6"]);
    server.stop().await;
}

#[tokio::test]
async fn copy_to_stdout_binary_decodes_with_the_client_types() {
    let server = start().await;
    let client = server.connect().await;
    client.batch_execute(TRICKY).await.expect("setup");
    let stream =
        client.copy_out("COPY (SELECT * FROM t ORDER BY id) TO STDOUT (FORMAT binary)").await.expect("binary copy");
    let binary = BinaryCopyOutStream::new(stream, &[Type::INT8, Type::TEXT, Type::TEXT]);
    let decoded: Vec<Row> = binary
        .map_ok(|row| (row.get::<i64>(0), row.get::<Option<String>>(1), row.get::<Option<String>>(2)))
        .try_collect()
        .await
        .expect("PGCOPY stream decodes");
    assert_eq!(decoded, tricky_rows());

    // The raw bytes: signature, flags, extension length, then tuples and the trailer.
    let raw: Vec<Bytes> = client
        .copy_out("COPY (SELECT 7::INT AS x) TO STDOUT (FORMAT binary)")
        .await
        .expect("copy")
        .try_collect()
        .await
        .expect("bytes");
    let raw = raw.concat();
    let mut expected = b"PGCOPY\n\xff\r\n\0".to_vec();
    expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    expected.extend_from_slice(&[0, 1, 0, 0, 0, 4, 0, 0, 0, 7]);
    expected.extend_from_slice(&[0xff, 0xff]);
    assert_eq!(raw, expected);
    server.stop().await;
}

#[tokio::test]
async fn copy_from_stdin_csv_and_text_into_delta() {
    let server = start().await;
    let client = server.connect().await;
    client.batch_execute("CREATE TABLE t (id BIGINT, name TEXT, note TEXT)").await.expect("table");

    let csv = "id,name,note\n\
               1,plain,\n\
               2,tab\there,\"new\nline\"\n\
               3,back\\slash,\"comma, and \"\"quotes\"\"\"\n\
               4,\"\",empty name\n\
               5,ünïcødé ✓,\"cr\rhere\"\n\
               6,\\N,backslash-N text\n";
    // Chunks of 7 bytes cut records, quoted newlines and UTF-8 characters apart.
    let copied = copy_in(&client, "COPY t FROM STDIN WITH (FORMAT csv, HEADER true)", csv.as_bytes(), 7)
        .await
        .expect("csv copy");
    assert_eq!(copied, 6);
    assert_eq!(rows(&client, "t").await, tricky_rows());

    client.batch_execute("CREATE TABLE u (id BIGINT, name TEXT, note TEXT)").await.expect("table");
    let text = "1\tplain\t\\N\n\
                2\ttab\\there\tnew\\nline\n\
                3\tback\\\\slash\tcomma, and \"quotes\"\n\
                4\t\tempty name\n\
                5\tünïcødé ✓\tcr\\rhere\n\
                6\t\\\\N\tbackslash-N text\n\
                \\.\n";
    let copied = copy_in(&client, "COPY u FROM STDIN", text.as_bytes(), 5).await.expect("text copy");
    assert_eq!(copied, 6);
    assert_eq!(rows(&client, "u").await, tricky_rows());

    // A column list: the other columns get NULL. Custom delimiter and NULL string.
    let copied = copy_in(&client, "COPY u (note, id) FROM STDIN (DELIMITER '|', NULL 'nil')", b"x|7\nnil|8\n", 64)
        .await
        .expect("column list");
    assert_eq!(copied, 2);
    let tail: Vec<Row> = rows(&client, "u").await.into_iter().filter(|r| r.0 >= 7).collect();
    assert_eq!(tail, vec![(7, None, Some("x".into())), (8, None, None)]);
    server.stop().await;
}

#[tokio::test]
async fn round_trip_through_copy_keeps_every_value() {
    let server = start().await;
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE typed (id BIGINT, n INT, f DOUBLE, flag BOOLEAN, d DATE, ts TIMESTAMP, \
             tz TIMESTAMPTZ, amount DECIMAL(12, 2), name TEXT);
             INSERT INTO typed VALUES
               (1, 10, 1.5, true, DATE '2026-01-02', TIMESTAMP '2026-01-02 03:04:05.123456',
                TIMESTAMPTZ '2026-01-02 03:04:05+00', 12.34, E'a,b\\n\"c\"'),
               (2, NULL, -0.25, false, NULL, NULL, NULL, -0.01, NULL),
               (3, -7, 1e300, NULL, DATE '1999-12-31', TIMESTAMP '1999-12-31 23:59:59',
                TIMESTAMPTZ '1999-12-31 23:59:59.5+00', 0, '')",
        )
        .await
        .expect("setup");
    let select = "SELECT id, n, f, flag, d, ts, tz, amount, name FROM {} ORDER BY id";
    let original = client.simple_query(&select.replace("{}", "typed")).await.expect("original");
    let text_of = |messages: &[tokio_postgres::SimpleQueryMessage]| -> Vec<Vec<Option<String>>> {
        messages
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    Some((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect())
                }
                _ => None,
            })
            .collect()
    };
    for (format, table) in [("csv", "typed_csv"), ("text", "typed_text")] {
        client
            .batch_execute(&format!("CREATE TABLE {table} AS SELECT * FROM typed WHERE false"))
            .await
            .expect("empty copy of the table");
        let data = copy_out(&client, &format!("COPY typed TO STDOUT (FORMAT {format})")).await;
        let copied = copy_in(&client, &format!("COPY {table} FROM STDIN (FORMAT {format})"), data.as_bytes(), 4096)
            .await
            .expect("copy back in");
        assert_eq!(copied, 3, "{format}");
        let again = client.simple_query(&select.replace("{}", table)).await.expect("copied");
        assert_eq!(text_of(&again), text_of(&original), "{format} round trip");
    }
    server.stop().await;
}

#[tokio::test]
async fn malformed_input_writes_nothing_and_names_the_line() {
    let server = start().await;
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE t (id BIGINT, name TEXT); INSERT INTO t VALUES (0, 'before')")
        .await
        .expect("setup");
    // Many good rows first, so that some batches have reached the insert already.
    let mut data = String::new();
    for i in 1..=5000 {
        data.push_str(&format!("{i},row {i}\n"));
    }
    let bad_line = 5001;
    let cases = [
        (format!("{data}oops,bad id\n"), SqlState::INVALID_TEXT_REPRESENTATION),
        (format!("{data}1,two,three\n"), SqlState::BAD_COPY_FILE_FORMAT),
        (format!("{data}1\n"), SqlState::BAD_COPY_FILE_FORMAT),
        (format!("{data}1,\"unterminated\n"), SqlState::BAD_COPY_FILE_FORMAT),
    ];
    for (input, expected) in cases {
        let error = copy_in(&client, "COPY t FROM STDIN (FORMAT csv)", input.as_bytes(), 1000)
            .await
            .expect_err("malformed input fails");
        assert_eq!(code_of(&error), expected, "{error:?}");
        let message = error.as_db_error().expect("db error").message().to_string();
        assert!(message.contains(&format!("line {bad_line}")), "{message}");
        assert_eq!(count(&client, "t").await, 1, "nothing of the failed COPY is visible");
    }
    // The text format reports its own errors the same way.
    let error = copy_in(&client, "COPY t FROM STDIN", b"1\tok\nx\tbad\n", 64).await.expect_err("bad text");
    assert_eq!(code_of(&error), SqlState::INVALID_TEXT_REPRESENTATION);
    assert_eq!(count(&client, "t").await, 1);

    // The simple protocol (psql) fails the same way and the session goes on.
    let file = server.dir().join("bad.csv");
    std::fs::write(&file, "7,fine\nnot a number,x\n").expect("write file");
    let output = server.psql_output(&format!("\\copy t from '{}' with (format csv)", file.display())).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 2") && stderr.contains("bigint"), "{stderr}");
    assert_eq!(count(&client, "t").await, 1);
    server.stop().await;
}

#[tokio::test]
async fn copy_fail_from_the_client_writes_nothing() {
    let server = start().await;
    let client = server.connect().await;
    client.batch_execute("CREATE TABLE t (id BIGINT)").await.expect("table");
    {
        let sink = client.copy_in::<_, Bytes>("COPY t FROM STDIN").await.expect("copy starts");
        pin_mut!(sink);
        let data: String = (0..3000).map(|i| format!("{i}\n")).collect();
        sink.send(Bytes::from(data)).await.expect("data");
        // Dropped without finish: tokio-postgres sends CopyFail.
    }
    assert_eq!(count(&client, "t").await, 0);
    let copied = copy_in(&client, "COPY t FROM STDIN", b"1\n2\n", 64).await.expect("next copy works");
    assert_eq!(copied, 2);
    server.stop().await;
}

#[tokio::test]
async fn server_files_are_refused() {
    let server = start().await;
    let client = server.connect().await;
    client.batch_execute("CREATE TABLE t (id BIGINT)").await.expect("table");
    for sql in [
        "COPY t TO '/tmp/watershed-copy-test.csv'",
        "COPY t FROM '/tmp/watershed-copy-test.csv'",
        "COPY t FROM PROGRAM 'cat'",
        "COPY t FROM STDIN (FORMAT binary)",
        "COPY t FROM STDIN (FORCE_NULL (id))",
    ] {
        let error = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(code_of(&error), SqlState::FEATURE_NOT_SUPPORTED, "{sql}");
    }
    let error =
        client.simple_query("COPY t FROM STDIN (FORMAT csv, DELIMITER ',', QUOTE ',')").await.expect_err("same");
    assert_eq!(code_of(&error), SqlState::INVALID_PARAMETER_VALUE);
    let error = client.simple_query("COPY nope FROM STDIN").await.expect_err("missing table");
    assert_eq!(code_of(&error), SqlState::UNDEFINED_TABLE);
    server.stop().await;
}

#[tokio::test]
async fn psql_copy_both_directions() {
    let server = start().await;
    let client = server.connect().await;
    client.batch_execute(TRICKY).await.expect("setup");
    for (format, options) in [("csv", "with (format csv, header)"), ("text", "")] {
        let file = server.dir().join(format!("t.{format}"));
        let out = server.psql(&format!("\\copy t to '{}' {options}", file.display())).await;
        assert_eq!(out.trim(), "COPY 6");
        let table = format!("back_{format}");
        client.batch_execute(&format!("CREATE TABLE {table} (id BIGINT, name TEXT, note TEXT)")).await.expect("table");
        let out = server.psql(&format!("\\copy {table} from '{}' {options}", file.display())).await;
        assert_eq!(out.trim(), "COPY 6");
        assert_eq!(rows(&client, &table).await, tricky_rows(), "psql {format}");
    }
    // psql's \copy of a query to its stdout.
    let out =
        server.psql("\\copy (SELECT id, name FROM t WHERE id <= 2 ORDER BY id) to stdout with (format csv)").await;
    assert_eq!(out, "1,plain\n2,tab\there\n");
    server.stop().await;
}

#[tokio::test]
async fn large_copy_streams_in_and_out() {
    const ROWS: usize = 200_000;
    let server = start().await;
    let client = server.connect().await;
    client.batch_execute("CREATE TABLE big (id BIGINT, name TEXT, x DOUBLE, flag BOOLEAN)").await.expect("table");
    let sink = client.copy_in::<_, Bytes>("COPY big FROM STDIN (FORMAT csv)").await.expect("copy starts");
    pin_mut!(sink);
    // Generated and sent block by block: neither side ever holds the whole input.
    let mut block = String::new();
    for i in 0..ROWS {
        block.push_str(&format!("{i},name {i},{}.5,{}\n", i % 1000, i % 2 == 0));
        if block.len() >= 64 * 1024 {
            sink.send(Bytes::from(std::mem::take(&mut block))).await.expect("block");
        }
    }
    sink.send(Bytes::from(block)).await.expect("last block");
    assert_eq!(sink.finish().await.expect("copy"), ROWS as u64);
    let row =
        client.query_one("SELECT count(*), sum(id), count(DISTINCT name) FROM big", &[]).await.expect("aggregate");
    assert_eq!(row.get::<_, i64>(0), ROWS as i64);
    assert_eq!(row.get::<_, i64>(1), (ROWS * (ROWS - 1) / 2) as i64);
    assert_eq!(row.get::<_, i64>(2), ROWS as i64);

    let stream = client.copy_out("COPY big TO STDOUT").await.expect("copy out");
    pin_mut!(stream);
    let (mut lines, mut messages) = (0usize, 0usize);
    while let Some(chunk) = stream.try_next().await.expect("chunk") {
        lines += chunk.iter().filter(|&&b| b == b'\n').count();
        messages += 1;
    }
    assert_eq!(lines, ROWS);
    assert!(messages >= ROWS, "one CopyData per row, as PostgreSQL sends them");
    server.stop().await;
}

#[tokio::test]
async fn cancel_ends_a_copy_out_midway() {
    let server = start().await;
    let client = server.connect().await;
    let outcome = tokio::time::timeout(Duration::from_secs(120), async {
        // Far too long to finish on its own; rows flow while it runs.
        let stream =
            client.copy_out("COPY (SELECT * FROM range(0, 100000000000) a) TO STDOUT").await.expect("copy starts");
        pin_mut!(stream);
        stream.try_next().await.expect("first row").expect("rows flow");
        // The statement is running, so one cancel request reaches it.
        client.cancel_token().cancel_query(NoTls).await.expect("cancel request sent");
        loop {
            match stream.try_next().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the copy ended without the cancel"),
                Err(error) => break error,
            }
        }
    })
    .await
    .expect("the copy ends once canceled");
    assert_eq!(code_of(&outcome), SqlState::QUERY_CANCELED);
    let row = client.query_one("SELECT 1::BIGINT", &[]).await.expect("session goes on");
    assert_eq!(row.get::<_, i64>(0), 1);
    server.stop().await;
}

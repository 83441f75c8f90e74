//! Wire-protocol behaviour that .slt files cannot express: bad input of every kind gets
//! its SQLSTATE or closes only its own connection, cancel, portals with row limits,
//! session isolation, the connection limit and graceful shutdown. Each test starts its
//! own server on an ephemeral loopback port.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};
use watershed::config::Config;

mod support;
use support::{Server, code_of, read_until_close, send_query};

async fn start_with(adjust: impl FnOnce(&mut Config)) -> Server {
    Server::start(tempfile::tempdir().expect("temp dir"), adjust).await
}

async fn start() -> Server {
    start_with(|_| {}).await
}

impl Server {
    fn url(&self) -> String {
        format!("host=127.0.0.1 port={} user=watershed dbname=watershed", self.port)
    }

    async fn connect(&self) -> Client {
        let (client, connection) = tokio_postgres::connect(&self.url(), NoTls).await.expect("connects");
        tokio::spawn(connection);
        client
    }

    /// The server still answers a fresh connection.
    async fn assert_alive(&self) {
        let client = self.connect().await;
        let row = client.query_one("SELECT 41 + 1", &[]).await.expect("still serving");
        assert_eq!(row.get::<_, i64>(0), 42);
    }
}

async fn show(client: &Client, name: &str) -> String {
    let messages = client.simple_query(&format!("SHOW {name}")).await.expect("show");
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or_default().to_string()),
            _ => None,
        })
        .expect("SHOW returns a row")
}

#[tokio::test]
async fn errors_carry_sqlstate_and_session_goes_on() {
    let server = start().await;
    let client = server.connect().await;
    let cases = [
        ("SELEC 1", SqlState::SYNTAX_ERROR),
        ("SELECT * FROM no_such_table", SqlState::UNDEFINED_TABLE),
        ("SELECT no_such_column FROM (VALUES (1)) AS t(a)", SqlState::UNDEFINED_COLUMN),
        ("SELECT 1 / 0", SqlState::DIVISION_BY_ZERO),
        ("CREATE TEMPORARY VIEW v AS SELECT 1", SqlState::FEATURE_NOT_SUPPORTED),
    ];
    for (sql, expected) in cases {
        let simple = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(code_of(&simple), expected, "simple protocol: {sql}");
        let extended = client.query(sql, &[]).await.expect_err(sql);
        assert_eq!(code_of(&extended), expected, "extended protocol: {sql}");
        // The same session keeps working after each error.
        let row = client.query_one("SELECT 1::BIGINT", &[]).await.expect("session goes on");
        assert_eq!(row.get::<_, i64>(0), 1);
    }
    server.stop().await;
}

#[tokio::test]
async fn several_statements_in_one_message_run_in_order_and_stop_at_error() {
    let server = start().await;
    let client = server.connect().await;
    let messages = client
        .simple_query("CREATE TABLE t (a BIGINT); INSERT INTO t VALUES (1), (2); SELECT count(*) FROM t")
        .await
        .expect("three statements");
    let tags: Vec<u64> = messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(tags, vec![0, 2, 1], "CREATE TABLE, INSERT 0 2, SELECT 1");
    let error = client
        .simple_query("INSERT INTO t VALUES (3); SELECT 1/0; INSERT INTO t VALUES (4)")
        .await
        .expect_err("second statement fails");
    assert_eq!(code_of(&error), SqlState::DIVISION_BY_ZERO);
    let row = client.query_one("SELECT count(*) FROM t", &[]).await.expect("count");
    assert_eq!(row.get::<_, i64>(0), 3, "the statement after the error did not run");
    server.stop().await;
}

#[tokio::test]
async fn parameters_infer_types_and_portals_suspend() {
    let server = start().await;
    let mut client = server.connect().await;
    client
        .batch_execute("CREATE TABLE p (id BIGINT, name TEXT); INSERT INTO p VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        .await
        .expect("setup");
    // $1 typed by the column it is compared with.
    let row = client.query_one("SELECT name FROM p WHERE id = $1", &[&2i64]).await.expect("typed");
    assert_eq!(row.get::<_, String>(0), "b");
    // A bare $1 is text, as in PostgreSQL.
    let row = client.query_one("SELECT $1", &[&"hello"]).await.expect("bare");
    assert_eq!(row.get::<_, String>(0), "hello");
    // A cast $1.
    let row = client.query_one("SELECT $1::BIGINT + 1", &[&41i64]).await.expect("cast");
    assert_eq!(row.get::<_, i64>(0), 42);
    // Execute with a row limit: the portal is suspended and resumed.
    let transaction = client.transaction().await.expect("begin");
    let portal = transaction.bind("SELECT id FROM p ORDER BY id", &[]).await.expect("bind");
    let first = transaction.query_portal(&portal, 2).await.expect("first two");
    assert_eq!(first.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>(), vec![1, 2]);
    let rest = transaction.query_portal(&portal, 2).await.expect("the rest");
    assert_eq!(rest.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>(), vec![3]);
    transaction.commit().await.expect("commit");
    server.stop().await;
}

#[tokio::test]
async fn set_in_one_session_never_changes_another() {
    let server = start().await;
    let a = server.connect().await;
    let b = server.connect().await;
    a.batch_execute("SET application_name = 'alpha'").await.expect("set");
    assert_eq!(show(&a, "application_name").await, "alpha");
    assert_eq!(show(&b, "application_name").await, "");
    server.stop().await;
}

#[tokio::test]
async fn cancel_request_cancels_the_running_query() {
    let server = start().await;
    let client = server.connect().await;
    let token = client.cancel_token();
    // Long enough that it cannot finish on its own. A cancel that arrives before the
    // statement starts is a no-op, so keep asking until the statement ends.
    let query = client.simple_query("SELECT count(*) FROM range(0, 100000000000) a");
    tokio::pin!(query);
    let mut retry = tokio::time::interval(Duration::from_millis(50));
    let outcome = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            tokio::select! {
                outcome = &mut query => break outcome,
                _ = retry.tick() => token.cancel_query(NoTls).await.expect("cancel request sent"),
            }
        }
    })
    .await
    .expect("the statement ends once canceled");
    let error = outcome.expect_err("canceled");
    assert_eq!(code_of(&error), SqlState::QUERY_CANCELED);
    let row = client.query_one("SELECT 1::BIGINT", &[]).await.expect("session goes on");
    assert_eq!(row.get::<_, i64>(0), 1);
    server.stop().await;
}

#[tokio::test]
async fn client_leaving_mid_result_does_not_hurt_the_server() {
    let server = start().await;
    {
        let mut socket = raw_startup(server.port).await;
        // A large result; read a little of it, then vanish.
        send_query(&mut socket, "SELECT * FROM range(0, 50000000) a").await;
        let mut buffer = vec![0u8; 64 * 1024];
        let read = socket.read(&mut buffer).await.expect("some rows arrive");
        assert!(read > 0);
    }
    server.assert_alive().await;
    server.stop().await;
}

#[tokio::test]
async fn malformed_message_closes_only_that_connection() {
    let server = start().await;
    let bystander = server.connect().await;
    let mut socket = raw_startup(server.port).await;
    // A Bind message whose body is garbage: parameter counts past the end of the message.
    socket.write_all(&[b'B', 0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff]).await.expect("write");
    // pgwire ends a connection whose message it cannot decode (no ErrorResponse).
    read_until_close(&mut socket).await;
    let row = bystander.query_one("SELECT 2::BIGINT", &[]).await.expect("others unaffected");
    assert_eq!(row.get::<_, i64>(0), 2);
    server.assert_alive().await;
    server.stop().await;
}

#[tokio::test]
async fn oversized_message_is_refused() {
    let server = start().await;
    let mut socket = raw_startup(server.port).await;
    // Declares a 2 GiB query; the server must refuse it without reading it.
    socket.write_all(&[b'Q', 0x7f, 0xff, 0xff, 0xff]).await.expect("write");
    // Refused at the header: the connection ends without the server reading 2 GiB.
    let reply = read_until_close(&mut socket).await;
    assert!(reply.len() < 1024, "no result was produced");
    server.assert_alive().await;
    server.stop().await;
}

#[tokio::test]
async fn long_statement_text_gets_54000() {
    let server = start_with(|config| config.limits.query_text_bytes_max = 1024).await;
    let client = server.connect().await;
    let sql = format!("SELECT '{}'", "x".repeat(2048));
    let error = client.simple_query(&sql).await.expect_err("over the limit");
    assert_eq!(code_of(&error), SqlState::PROGRAM_LIMIT_EXCEEDED);
    server.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_get_53300() {
    let server = start_with(|config| config.limits.connections_max = 2).await;
    let _a = server.connect().await;
    let _b = server.connect().await;
    let error = tokio_postgres::connect(&server.url(), NoTls).await.err().expect("third connection refused");
    assert_eq!(code_of(&error), SqlState::TOO_MANY_CONNECTIONS);
    drop(_a);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_lets_running_statements_finish() {
    const ROWS: usize = 2_000_000;
    // A grace long enough for any machine: the test is about finishing, not speed.
    let server = start_with(|config| config.limits.shutdown_grace_ms = 600_000).await;
    let socket = raw_startup(server.port).await;
    let mut socket = tokio::io::BufReader::new(socket);
    send_query(socket.get_mut(), &format!("SELECT * FROM range(0, {ROWS}) a")).await;
    // The first row proves the statement is running; only then does shutdown begin.
    let (mut kind, _) = read_message(&mut socket).await;
    while kind != b'D' {
        kind = read_message(&mut socket).await.0;
    }
    let stopping = tokio::spawn(server.stop());
    let mut rows = 1usize;
    let tag = loop {
        match read_message(&mut socket).await {
            (b'D', _) => rows += 1,
            (b'C', body) => break String::from_utf8_lossy(&body).trim_end_matches('\0').to_string(),
            (other, body) => panic!("unexpected message {:?}: {:?}", other as char, String::from_utf8_lossy(&body)),
        }
    };
    assert_eq!(rows, ROWS, "every row arrived during the grace period");
    assert_eq!(tag, format!("SELECT {ROWS}"));
    stopping.await.expect("server stops after the statement");
}

/// Reads one backend message: its type byte and body.
async fn read_message(socket: &mut tokio::io::BufReader<TcpStream>) -> (u8, Vec<u8>) {
    let kind = socket.read_u8().await.expect("message type");
    let length = socket.read_i32().await.expect("message length");
    assert!(length >= 4, "a message length counts itself");
    let mut body = vec![0u8; length as usize - 4];
    socket.read_exact(&mut body).await.expect("message body");
    (kind, body)
}

async fn raw_startup(port: u16) -> TcpStream {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let mut body = Vec::new();
    body.extend_from_slice(&196608i32.to_be_bytes());
    for part in ["user", "watershed", "database", "watershed"] {
        body.extend_from_slice(part.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut message = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    message.extend_from_slice(&body);
    socket.write_all(&message).await.expect("startup");
    // Read up to ReadyForQuery ('Z', length 5, status).
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    while !seen.windows(2).any(|w| w == [b'Z', 0]) || seen.len() < 6 {
        let n = socket.read(&mut buffer).await.expect("startup reply");
        assert!(n > 0, "server closed during startup");
        seen.extend_from_slice(&buffer[..n]);
        if seen.ends_with(&[b'Z', 0, 0, 0, 5, b'I']) {
            break;
        }
    }
    socket
}

#[tokio::test]
async fn shutdown_closes_idle_connections_without_waiting_for_the_grace() {
    // A grace of an hour: the stop below can only finish if idle clients are closed.
    let server = start_with(|config| config.limits.shutdown_grace_ms = 3_600_000).await;
    let idle = server.connect().await;
    idle.query_one("SELECT 1::BIGINT", &[]).await.expect("used once, then idle");
    server.stop().await;
    assert!(idle.query_one("SELECT 1::BIGINT", &[]).await.is_err(), "the idle connection was closed");
}

/// A statement's parameters inside a correlated subquery DataFusion cannot decorrelate
/// (a non-equality correlation), which then runs per outer value: the parameter is typed
/// by the subquery and bound like any other, one prepared statement for several values.
#[tokio::test]
async fn parameters_inside_correlated_subqueries_are_bound() {
    let server = start().await;
    let client = server.connect().await;
    client.batch_execute("CREATE TABLE corr_p (k BIGINT, tag TEXT)").await.expect("create");
    client.batch_execute("INSERT INTO corr_p VALUES (1, 'a'), (2, 'b'), (3, 'a'), (4, 'a')").await.expect("insert");
    let statement = client
        .prepare("SELECT o.k, (SELECT count(*) FROM corr_p AS i WHERE i.k < o.k AND i.tag = $1) FROM corr_p AS o ORDER BY o.k")
        .await
        .expect("prepares");
    assert_eq!(statement.params(), &[tokio_postgres::types::Type::TEXT]);
    for (tag, expected) in [("a", [0i64, 1, 1, 2]), ("b", [0, 0, 1, 1])] {
        let rows = client.query(&statement, &[&tag]).await.expect("runs");
        let counts: Vec<i64> = rows.iter().map(|row| row.get(1)).collect();
        assert_eq!(counts, expected, "tag {tag}");
    }
    server.stop().await;
}

/// Repeated output names are PostgreSQL's: unaliased expressions that collide show the
/// name PostgreSQL gives them, repeated aliases show the alias, in RowDescription for the
/// simple and the extended protocol.
#[tokio::test]
async fn repeated_output_names_are_shown_as_postgresql_shows_them() {
    let server = start().await;
    let client = server.connect().await;
    let statement = client
        .prepare("SELECT NULL, NULL, 1 AS x, 2 AS x, count(*), count(*), 1::bigint, 2::bigint, 3")
        .await
        .expect("prepares");
    let names: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names[..6], ["?column?", "?column?", "x", "x", "count", "count"]);
    let row = client.query_one(&statement, &[]).await.expect("runs");
    assert_eq!((row.get::<_, i64>(2), row.get::<_, i64>(3)), (1, 2));
    let messages = client.simple_query("SELECT 'p' AS a, 'q' AS a").await.expect("simple query");
    let row = messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .expect("a row");
    assert_eq!(row.columns().iter().map(|c| c.name()).collect::<Vec<_>>(), ["a", "a"]);
    assert_eq!((row.get(0), row.get(1)), (Some("p"), Some("q")));
    server.stop().await;
}

/// Unaliased output columns are named as PostgreSQL names them: PostgreSQL on 127.0.0.1:5432
/// is the oracle, asked the same statements.
#[tokio::test]
async fn output_names_are_postgresqls() {
    let server = start().await;
    let client = server.connect().await;
    let (oracle, connection) = tokio_postgres::connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", NoTls)
        .await
        .expect("PostgreSQL runs on 127.0.0.1:5432 (the oracle)");
    tokio::spawn(connection);
    let setup = "CREATE TEMP TABLE names_t (a BIGINT, b TEXT)";
    oracle.batch_execute(setup).await.unwrap();
    client.batch_execute("CREATE TABLE names_t (a BIGINT, b TEXT)").await.unwrap();
    for sql in [
        "SELECT count(*), sum(a), max(b), min(a) + 1 FROM names_t",
        "SELECT 1, 'x', a, names_t.b, a + 1, -a, CAST(a AS TEXT), a::bigint, 1::int4 FROM names_t",
        "SELECT CASE WHEN a > 0 THEN 1 END, coalesce(a, 0), upper(b), (SELECT 1) FROM names_t",
        "SELECT a, count(*) FROM names_t GROUP BY a ORDER BY count(*) DESC",
        "SELECT DISTINCT a + 1 FROM names_t ORDER BY 1",
        "SELECT a + 1 FROM names_t UNION SELECT 2",
    ] {
        let ours = client.prepare(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let theirs = oracle.prepare(sql).await.unwrap_or_else(|e| panic!("PostgreSQL: {sql}: {e}"));
        let names =
            |s: &tokio_postgres::Statement| s.columns().iter().map(|c| c.name().to_string()).collect::<Vec<_>>();
        assert_eq!(names(&ours), names(&theirs), "{sql}");
        client.query(&ours, &[]).await.unwrap_or_else(|e| panic!("{sql} runs: {:?}", e.as_db_error()));
    }
    server.stop().await;
}

/// Object identifiers are described as PostgreSQL describes them, through `array_agg`,
/// `CASE` and a correlated subquery, and a `$n::oid[]` parameter is announced as `oid[]`
/// (asyncpg's type introspection needs exactly these; tests/clients has asyncpg itself).
#[tokio::test]
async fn object_identifiers_are_described_as_oids() {
    use tokio_postgres::types::Type;
    let server = start().await;
    let client = server.connect().await;
    let statement = client
        .prepare(
            "SELECT t.oid, array_agg(a.atttypid) AS types, \
             CASE WHEN t.oid > 0 THEN (SELECT array_agg(b.atttypid) FROM pg_attribute b WHERE b.attrelid = t.oid) END AS c, \
             t.oid::regtype::text AS shown \
             FROM pg_class t JOIN pg_attribute a ON a.attrelid = t.oid \
             WHERE t.oid = any($1::oid[]) GROUP BY t.oid",
        )
        .await
        .expect("prepares");
    let types: Vec<&Type> = statement.columns().iter().map(|c| c.type_()).collect();
    assert_eq!(types, [&Type::OID, &Type::OID_ARRAY, &Type::OID_ARRAY, &Type::TEXT]);
    assert_eq!(statement.params(), [Type::OID_ARRAY]);
    let row = client.query_one("SELECT 20::regtype::text, 0::regtype::text", &[]).await.expect("runs");
    assert_eq!((row.get::<_, &str>(0), row.get::<_, &str>(1)), ("bigint", "-"));
    server.stop().await;
}

/// A client whose notices (NoticeResponse) are kept, in arrival order.
async fn connect_with_notices(
    server: &Server,
) -> (Client, tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::error::DbError>) {
    let (client, mut connection) = tokio_postgres::connect(&server.url(), NoTls).await.expect("connects");
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = futures::StreamExt::next(&mut messages).await {
            if let tokio_postgres::AsyncMessage::Notice(notice) = message {
                let _ = sender.send(notice);
            }
        }
    });
    (client, receiver)
}

fn drain(receiver: &mut tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::error::DbError>) -> Vec<(String, String)> {
    let mut notices = Vec::new();
    while let Ok(notice) = receiver.try_recv() {
        notices.push((notice.code().code().to_string(), notice.message().to_string()));
    }
    notices
}

/// Transactions are statement-level: a ROLLBACK (or ABORT, or ROLLBACK TO, or COMMIT of a
/// failed block) after writes in the block keeps them, and warns (01000) that it cannot
/// undo them; a block that only read ends without a warning. Outside a block, COMMIT and
/// ROLLBACK warn as PostgreSQL does (25P01), BEGIN inside one too (25001).
#[tokio::test]
async fn rollback_after_writes_warns_that_they_stay() {
    let server = start().await;
    let (client, mut notices) = connect_with_notices(&server).await;
    client.batch_execute("CREATE TABLE rb (a BIGINT)").await.expect("create");
    assert!(drain(&mut notices).is_empty());
    let warned = |notices: &[(String, String)]| {
        notices.len() == 1 && notices[0].0 == "01000" && notices[0].1.contains("ROLLBACK cannot undo their writes")
    };
    for (sql, ends_with) in [
        ("BEGIN; INSERT INTO rb VALUES (1); ROLLBACK", "simple protocol"),
        ("BEGIN; INSERT INTO rb VALUES (2); ABORT", "ABORT"),
        ("BEGIN; INSERT INTO rb VALUES (3); SELECT 1 / 0", "COMMIT of a failed block"),
        ("BEGIN; INSERT INTO rb VALUES (4); SAVEPOINT p; SELECT 1 / 0", "ROLLBACK TO"),
    ] {
        let result = client.batch_execute(sql).await;
        match ends_with {
            "COMMIT of a failed block" => {
                result.expect_err("division by zero");
                client.batch_execute("COMMIT").await.expect("commit of a failed block rolls back");
            }
            "ROLLBACK TO" => {
                result.expect_err("division by zero");
                client.batch_execute("ROLLBACK TO SAVEPOINT p").await.expect("rollback to");
                assert!(warned(&drain(&mut notices)), "{ends_with}");
                client.batch_execute("COMMIT").await.expect("commit");
                continue;
            }
            _ => result.expect(sql),
        }
        // The notice arrives before the tag, so it is here once the statement returned.
        assert!(warned(&drain(&mut notices)), "{ends_with}");
    }
    // The extended protocol sends it too.
    client.batch_execute("BEGIN").await.expect("begin");
    client.execute("INSERT INTO rb VALUES (5)", &[]).await.expect("insert");
    client.execute("ROLLBACK", &[]).await.expect("rollback");
    assert!(warned(&drain(&mut notices)), "extended protocol");
    // ...and the writes are all there.
    let rows = client.query("SELECT a FROM rb ORDER BY a", &[]).await.expect("rows");
    assert_eq!(rows.iter().map(|row| row.get::<_, i64>(0)).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    // A block that only read, or committed, ends silently.
    client.batch_execute("BEGIN; SELECT count(*) FROM rb; ROLLBACK").await.expect("read-only block");
    client.batch_execute("BEGIN; INSERT INTO rb VALUES (6); COMMIT").await.expect("committed block");
    assert!(drain(&mut notices).is_empty());
    // PostgreSQL's own warnings around blocks.
    client.batch_execute("ROLLBACK").await.expect("rollback outside a block");
    assert_eq!(drain(&mut notices), vec![("25P01".to_string(), "there is no transaction in progress".to_string())]);
    client.batch_execute("BEGIN; BEGIN; COMMIT").await.expect("begin twice");
    assert_eq!(
        drain(&mut notices),
        vec![("25001".to_string(), "there is already a transaction in progress".to_string())]
    );
    server.stop().await;
}

/// `CREATE ... IF NOT EXISTS` on a name already taken does nothing and says so, with
/// PostgreSQL's NOTICE (42P07, "relation ... already exists, skipping"); a sink, which is
/// not a relation, with 42710.
#[tokio::test]
async fn create_if_not_exists_on_a_taken_name_notices_the_skip() {
    let server = start().await;
    let (client, mut notices) = connect_with_notices(&server).await;
    client
        .batch_execute(
            "CREATE TABLE ine (a BIGINT, ts TIMESTAMP); \
             CREATE SOURCE ine_src (a BIGINT, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts) WITH (connector = 'ingest')",
        )
        .await
        .expect("create");
    assert!(drain(&mut notices).is_empty(), "a CREATE that creates is silent");
    let relation = |name: &str| vec![("42P07".to_string(), format!("relation \"{name}\" already exists, skipping"))];
    for (sql, expected) in [
        ("CREATE TABLE IF NOT EXISTS ine (a BIGINT)", relation("ine")),
        ("CREATE TABLE IF NOT EXISTS ine AS SELECT 1 AS a", relation("ine")),
        (
            "CREATE SOURCE IF NOT EXISTS ine_src (a BIGINT, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts) WITH (connector = 'ingest')",
            relation("ine_src"),
        ),
        ("CREATE MATERIALIZED VIEW IF NOT EXISTS ine AS SELECT a FROM ine_src", relation("ine")),
    ] {
        client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(drain(&mut notices), expected, "{sql}");
    }
    // PostgreSQL says the same, word for word, for a table.
    let (oracle, connection) = tokio_postgres::connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", NoTls)
        .await
        .expect("PostgreSQL runs on 127.0.0.1:5432 (the oracle)");
    let (sender, mut oracle_notices) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut connection = connection;
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = futures::StreamExt::next(&mut messages).await {
            if let tokio_postgres::AsyncMessage::Notice(notice) = message {
                let _ = sender.send(notice);
            }
        }
    });
    oracle
        .batch_execute("CREATE TEMP TABLE ine (a BIGINT); CREATE TEMP TABLE IF NOT EXISTS ine (a BIGINT)")
        .await
        .unwrap();
    assert_eq!(drain(&mut oracle_notices), relation("ine"));
    server.stop().await;
}

/// Notices with their DETAIL field, for the `drop cascades to ...` lists.
fn drain_detailed(
    receiver: &mut tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::error::DbError>,
) -> Vec<(String, String, Option<String>)> {
    let mut notices = Vec::new();
    while let Ok(notice) = receiver.try_recv() {
        notices.push((
            notice.code().code().to_string(),
            notice.message().to_string(),
            notice.detail().map(String::from),
        ));
    }
    notices
}

/// Rows of a query as text (NULL as "NULL"), for comparing two servers.
async fn text_rows(client: &Client, sql: &str) -> Vec<Vec<String>> {
    let rows = client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter()
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => {
                Some((0..row.len()).map(|i| row.get(i).unwrap_or("NULL").to_string()).collect())
            }
            _ => None,
        })
        .collect()
}

/// Views against PostgreSQL on 127.0.0.1:5432 as the oracle, asked the same statements:
/// the catalog listings of a view (information_schema.tables/views/columns, pg_views,
/// pg_class, pg_attribute, pg_get_viewdef being set), OR REPLACE refusals, and DROP's
/// dependency error (code, message, DETAIL, HINT) and CASCADE notice (message, DETAIL),
/// word for word. The view definitions themselves differ: PostgreSQL prints its deparsed
/// query, this server the query as written.
#[tokio::test]
async fn views_are_listed_and_dropped_as_in_postgresql() {
    let Ok((oracle, connection)) =
        tokio_postgres::connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", NoTls).await
    else {
        eprintln!(
            "SKIPPED views_are_listed_and_dropped_as_in_postgresql: PostgreSQL is not reachable on 127.0.0.1:5432"
        );
        return;
    };
    let (sender, mut oracle_notices) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut connection = connection;
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = futures::StreamExt::next(&mut messages).await {
            if let tokio_postgres::AsyncMessage::Notice(notice) = message {
                let _ = sender.send(notice);
            }
        }
    });
    let server = start().await;
    let (client, mut notices) = connect_with_notices(&server).await;
    oracle.batch_execute("DROP TABLE IF EXISTS ws_vo_t CASCADE").await.unwrap();
    drain_detailed(&mut oracle_notices);
    let setup = "CREATE TABLE ws_vo_t (a BIGINT, b TEXT);
                 CREATE VIEW ws_vo_v AS SELECT a, b FROM ws_vo_t WHERE a > 1;
                 CREATE VIEW ws_vo_w (x) AS SELECT a FROM ws_vo_v";
    oracle.batch_execute(setup).await.unwrap();
    client.batch_execute(setup).await.unwrap();
    for sql in [
        "SELECT table_schema, table_name, table_type FROM information_schema.tables \
         WHERE table_name LIKE 'ws_vo_%' ORDER BY table_name",
        "SELECT table_schema, table_name, check_option FROM information_schema.views \
         WHERE table_name LIKE 'ws_vo_%' ORDER BY table_name",
        "SELECT table_name, column_name, ordinal_position, data_type, is_nullable FROM information_schema.columns \
         WHERE table_name LIKE 'ws_vo_%' ORDER BY table_name, ordinal_position",
        "SELECT schemaname, viewname, viewowner FROM pg_views WHERE viewname LIKE 'ws_vo_%' ORDER BY viewname",
        "SELECT relname, relkind, relnatts FROM pg_class WHERE relname LIKE 'ws_vo_%' ORDER BY relname",
        "SELECT c.relname, a.attname, a.attnum, a.atttypid::regtype::text FROM pg_attribute a \
         JOIN pg_class c ON a.attrelid = c.oid WHERE c.relname LIKE 'ws_vo_%' AND a.attnum > 0 \
         ORDER BY c.relname, a.attnum",
        "SELECT pg_get_viewdef('ws_vo_v'::regclass) IS NOT NULL, pg_get_viewdef('ws_vo_w') IS NOT NULL, \
         pg_get_viewdef('ws_vo_t'::regclass) IS NULL",
    ] {
        assert_eq!(text_rows(&client, sql).await, text_rows(&oracle, sql).await, "{sql}");
    }
    let refusal = |error: tokio_postgres::Error| {
        let db = error.as_db_error().expect("a database error").clone();
        (
            db.code().code().to_string(),
            db.message().to_string(),
            db.detail().map(String::from),
            db.hint().map(String::from),
        )
    };
    for sql in [
        "CREATE OR REPLACE VIEW ws_vo_v AS SELECT a FROM ws_vo_t",
        "CREATE OR REPLACE VIEW ws_vo_v AS SELECT a AS z, b FROM ws_vo_t",
        "CREATE OR REPLACE VIEW ws_vo_v AS SELECT a::int, b FROM ws_vo_t",
        "CREATE OR REPLACE VIEW ws_vo_t AS SELECT 1",
        "CREATE VIEW ws_vo_v AS SELECT 1",
        "DROP TABLE ws_vo_t",
        "DROP VIEW ws_vo_v",
        "DROP VIEW ws_vo_t",
        "DROP TABLE ws_vo_v",
        "DROP VIEW ws_vo_nope",
    ] {
        let ours = refusal(client.batch_execute(sql).await.expect_err(sql));
        let theirs = refusal(oracle.batch_execute(sql).await.expect_err(sql));
        assert_eq!(ours, theirs, "{sql}");
    }
    // A compatible replacement (one more column) is accepted by both.
    let replace = "CREATE OR REPLACE VIEW ws_vo_v AS SELECT a, b, a + 1 AS c FROM ws_vo_t";
    client.batch_execute(replace).await.unwrap();
    oracle.batch_execute(replace).await.unwrap();
    drain_detailed(&mut notices);
    for sql in ["DROP VIEW IF EXISTS ws_vo_nope", "DROP TABLE ws_vo_t CASCADE"] {
        client.batch_execute(sql).await.unwrap();
        oracle.batch_execute(sql).await.unwrap();
        assert_eq!(drain_detailed(&mut notices), drain_detailed(&mut oracle_notices), "{sql}");
    }
    // One dependent: the notice names it, without a DETAIL.
    let one = "CREATE TABLE ws_vo_t (a BIGINT); CREATE VIEW ws_vo_v AS SELECT a FROM ws_vo_t";
    client.batch_execute(one).await.unwrap();
    oracle.batch_execute(one).await.unwrap();
    let sql = "DROP TABLE ws_vo_t CASCADE";
    client.batch_execute(sql).await.unwrap();
    oracle.batch_execute(sql).await.unwrap();
    let ours = drain_detailed(&mut notices);
    assert_eq!(ours, vec![("00000".to_string(), "drop cascades to view ws_vo_v".to_string(), None)]);
    assert_eq!(ours, drain_detailed(&mut oracle_notices));
    server.stop().await;
}

//! Security over a real socket: SCRAM-SHA-256 and md5 logins against a users file
//! written by `watershed user add`, refusals with PostgreSQL's SQLSTATEs (28P01, 28000,
//! 42501), TLS with psql (`sslmode=require`, `verify-full` against a test CA made with
//! the openssl command), start-up refusals (broken TLS files, an open listen address
//! without authentication), and the limits: statement_timeout (57014) and memory per
//! query (53200, with the server still serving).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};
use watershed::config::Config;
use watershed::error::sqlstate;

mod support;
use support::{Server, code_of, read_until_close, send_query};

impl Server {
    fn users_file(&self) -> PathBuf {
        self.dir().join("users.toml")
    }

    fn url(&self, user: &str, password: Option<&str>) -> String {
        let mut url = format!("host=127.0.0.1 port={} user={user} dbname=watershed", self.port);
        if let Some(password) = password {
            url.push_str(&format!(" password={password}"));
        }
        url
    }

    async fn login(&self, user: &str, password: Option<&str>) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::connect(&self.url(user, password), NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }
}

async fn show(client: &Client, name: &str) -> String {
    let row = client.query_one(&format!("SHOW {name}"), &[]).await.expect("show");
    row.get(0)
}

/// Runs `watershed user add` with `password` on stdin.
async fn user_add(file: &Path, name: &str, role: &str, method: &str, password: &str) -> std::process::Output {
    let mut child = tokio::process::Command::new(support::binary())
        .args(["user", "add", name, "--role", role, "--method", method, "--users-file"])
        .arg(file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watershed runs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(format!("{password}\n").as_bytes()).await.expect("password written");
    drop(stdin);
    child.wait_with_output().await.expect("watershed ends")
}

/// A server with three users made by `watershed user add`: reader (read, SCRAM),
/// writer (write, md5) and boss (admin, SCRAM).
async fn server_with_users(adjust: impl FnOnce(&mut Config)) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("users.toml");
    for (name, role, method) in
        [("reader", "read", "scram-sha-256"), ("writer", "write", "md5"), ("boss", "admin", "scram-sha-256")]
    {
        let out = user_add(&file, name, role, method, &format!("{name}-pw")).await;
        assert!(out.status.success(), "user add {name}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Server::start(dir, |config| {
        config.security.users_file = Some(file);
        adjust(config);
    })
    .await
}

#[tokio::test]
async fn user_add_refuses_an_empty_password_and_replaces_a_user() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.toml");
    let out = user_add(&file, "ann", "read", "scram-sha-256", "").await;
    assert!(!out.status.success(), "an empty password is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!file.exists(), "nothing written");
    assert!(user_add(&file, "ann", "read", "scram-sha-256", "one").await.status.success());
    let out = user_add(&file, "ann", "admin", "scram-sha-256", "two").await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("replaced"), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.matches("[[user]]").count(), 1, "{text}");
    assert!(text.contains("role = \"admin\"") && !text.contains("two"), "{text}");
    let out = user_add(&file, "ann", "root", "scram-sha-256", "x").await;
    assert!(!out.status.success(), "an unknown role is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_are_checked_with_scram_and_md5() {
    let server = server_with_users(|_| {}).await;
    // SCRAM and md5 users with the right password.
    let reader = server.login("reader", Some("reader-pw")).await.expect("SCRAM login");
    let row = reader.query_one("SELECT 41 + 1", &[]).await.expect("reader reads");
    assert_eq!(row.get::<_, i64>(0), 42);
    let writer = server.login("writer", Some("writer-pw")).await.expect("md5 login");
    writer.simple_query("SELECT 1").await.expect("writer reads");
    // Wrong password, for both methods.
    for user in ["reader", "writer"] {
        let error = server.login(user, Some("wrong")).await.expect_err("wrong password refused");
        assert_eq!(code_of(&error), SqlState::INVALID_PASSWORD, "{user}");
    }
    // Unknown user: the same answer as a wrong password, so names cannot be probed.
    let error = server.login("nobody", Some("whatever")).await.expect_err("unknown user refused");
    assert_eq!(code_of(&error), SqlState::INVALID_PASSWORD);
    let message = error.as_db_error().expect("a server error").message();
    assert_eq!(message, "password authentication failed for user \"nobody\"");
    // No password: the server asks for one and the client cannot give it.
    let error = server.login("reader", None).await.expect_err("no password refused");
    assert!(error.code().is_none() && format!("{error:?}").contains("password missing"), "{error:?}");
    // A user added while the server runs can log in at once; a broken file keeps the
    // users read before.
    let file = server.users_file();
    let error = server.login("late", Some("late-pw")).await.expect_err("not yet a user");
    assert_eq!(code_of(&error), SqlState::INVALID_PASSWORD);
    assert!(user_add(&file, "late", "read", "scram-sha-256", "late-pw").await.status.success());
    server.login("late", Some("late-pw")).await.expect("added while running");
    std::fs::write(&file, "[[user]]\nname = 1\n").unwrap();
    server.login("late", Some("late-pw")).await.expect("a broken file changes nothing");
    // Every refusal ended only its own connection.
    reader.simple_query("SELECT 1").await.expect("reader still connected");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_instead_of_a_password_is_refused_and_runs_nothing() {
    let server = server_with_users(|_| {}).await;
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await.expect("connects");
    let mut startup = Vec::new();
    startup.extend_from_slice(&196608i32.to_be_bytes()); // protocol 3.0
    for part in ["user", "writer", "database", "watershed", ""] {
        startup.extend_from_slice(part.as_bytes());
        startup.push(0);
    }
    let mut message = ((startup.len() + 4) as i32).to_be_bytes().to_vec();
    message.extend_from_slice(&startup);
    socket.write_all(&message).await.expect("startup");
    // writer is an md5 user: AuthenticationMD5Password ('R', code 5) comes back.
    assert_eq!(socket.read_u8().await.expect("a message"), b'R');
    let length = socket.read_i32().await.expect("length");
    assert_eq!(socket.read_i32().await.expect("code"), 5, "md5 challenge");
    let mut salt = vec![0u8; length as usize - 8];
    socket.read_exact(&mut salt).await.expect("salt");
    send_query(&mut socket, "CREATE TABLE hacked (a BIGINT)").await;
    let reply = read_until_close(&mut socket).await;
    assert_eq!(reply.first(), Some(&b'E'), "an ErrorResponse, then the connection closes");
    let fields = String::from_utf8_lossy(&reply);
    assert!(fields.contains("C08P01") && fields.contains("FATAL"), "{fields:?}");
    let boss = server.login("boss", Some("boss-pw")).await.expect("admin login");
    let error = boss.query("SELECT * FROM hacked", &[]).await.expect_err("no such table");
    assert_eq!(code_of(&error), SqlState::UNDEFINED_TABLE);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_enforced_with_42501() {
    let server = server_with_users(|_| {}).await;
    let boss = server.login("boss", Some("boss-pw")).await.expect("admin login");
    let writer = server.login("writer", Some("writer-pw")).await.expect("write login");
    let reader = server.login("reader", Some("reader-pw")).await.expect("read login");
    boss.batch_execute("CREATE TABLE t (a BIGINT)").await.expect("admin runs DDL");
    // write: INSERT yes, DDL no.
    writer.batch_execute("INSERT INTO t VALUES (1), (2)").await.expect("writer inserts");
    let error = writer.batch_execute("CREATE TABLE u (a BIGINT)").await.expect_err("writer has no DDL");
    assert_eq!(code_of(&error), SqlState::INSUFFICIENT_PRIVILEGE);
    let error = writer.query("DROP TABLE t", &[]).await.expect_err("writer has no DROP");
    assert_eq!(code_of(&error), SqlState::INSUFFICIENT_PRIVILEGE, "extended protocol too");
    // read: SELECT, SET, SHOW, transactions yes; INSERT no, not even inside EXPLAIN ANALYZE.
    let row = reader.query_one("SELECT count(*) FROM t", &[]).await.expect("reader selects");
    assert_eq!(row.get::<_, i64>(0), 2);
    reader
        .batch_execute("BEGIN; SET application_name = 'r'; SHOW application_name; COMMIT")
        .await
        .expect("session statements");
    for sql in ["INSERT INTO t VALUES (3)", "EXPLAIN ANALYZE INSERT INTO t VALUES (3)", "CREATE TABLE v (a BIGINT)"] {
        let error = reader.batch_execute(sql).await.expect_err(sql);
        assert_eq!(code_of(&error), SqlState::INSUFFICIENT_PRIVILEGE, "{sql}");
        assert!(error.as_db_error().unwrap().message().contains("role read"), "{error:?}");
    }
    let row = boss.query_one("SELECT count(*) FROM t", &[]).await.expect("admin reads");
    assert_eq!(row.get::<_, i64>(0), 2, "refused statements changed nothing");
    // Cursors are read statements; their query is checked at DECLARE like the query itself.
    reader.batch_execute("BEGIN; DECLARE c CURSOR FOR SELECT a FROM t ORDER BY a").await.expect("reader declares");
    let rows = reader.query("FETCH 1 FROM c", &[]).await.expect("reader fetches");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i64>(0), 1);
    reader.batch_execute("CLOSE c; COMMIT").await.expect("reader closes");
    // Only admin is a superuser to clients that ask, also after RESET ALL / DISCARD ALL.
    reader.batch_execute("RESET ALL; DISCARD ALL").await.expect("reader resets");
    assert_eq!(show(&reader, "is_superuser").await, "off");
    assert_eq!(show(&boss, "is_superuser").await, "on");
    boss.batch_execute("DROP TABLE t").await.expect("admin drops");
    server.stop().await;
}

/// Every statement kind, over the wire, against the read and write roles: refused with
/// 42501 below the role roles.rs gives it (unit tests there walk every kind), run at or
/// above it; a refused statement changed nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_statement_kind_against_read_and_write_roles() {
    let server = server_with_users(|_| {}).await;
    let boss = server.login("boss", Some("boss-pw")).await.expect("admin login");
    boss.batch_execute(
        "CREATE TABLE t (a BIGINT); CREATE SOURCE s (a BIGINT) WITH (connector = 'ingest');
         CREATE MATERIALIZED VIEW v AS SELECT a FROM s;
         CREATE SINK k FROM v WITH (connector = 'notify', channel = 'c')",
    )
    .await
    .expect("setup");
    let writer = server.login("writer", Some("writer-pw")).await.expect("write login");
    let reader = server.login("reader", Some("reader-pw")).await.expect("read login");
    // (statement, least role); the write ones leave the objects as they are.
    let cases = [
        ("INSERT INTO t VALUES (1)", "write"),
        ("INSERT INTO s VALUES (1)", "write"),
        ("EXPLAIN ANALYZE INSERT INTO t VALUES (1)", "write"),
        ("NOTIFY c, 'x'", "write"),
        ("CREATE TABLE u (a BIGINT)", "admin"),
        ("CREATE TABLE u AS SELECT 1 AS a", "admin"),
        ("CREATE EXTERNAL TABLE e STORED AS DELTA LOCATION 'tables/t'", "admin"),
        ("DROP TABLE t", "admin"),
        ("CREATE INDEX t_a ON t (a)", "admin"),
        ("DROP INDEX IF EXISTS t_a", "admin"),
        ("CREATE SOURCE s2 (a BIGINT) WITH (connector = 'ingest')", "admin"),
        ("DROP SOURCE s", "admin"),
        ("CREATE MATERIALIZED VIEW v2 AS SELECT a FROM s", "admin"),
        ("DROP MATERIALIZED VIEW v", "admin"),
        ("CREATE SINK k2 FROM v WITH (connector = 'notify', channel = 'c')", "admin"),
        ("DROP SINK k", "admin"),
        ("SET datafusion.execution.batch_size = 17", "admin"),
        ("SELECT a FROM t", "read"),
        ("LISTEN c", "read"),
        ("UNLISTEN *", "read"),
        ("SET application_name = 'x'", "read"),
        ("SHOW application_name", "read"),
        ("BEGIN; DECLARE c CURSOR FOR SELECT a FROM t; FETCH 1 FROM c; MOVE 1 IN c; CLOSE c; COMMIT", "read"),
        ("BEGIN; SAVEPOINT p; RELEASE SAVEPOINT p; SAVEPOINT q; ROLLBACK TO SAVEPOINT q; ROLLBACK", "read"),
        ("SET TRANSACTION READ ONLY; RESET ALL; DISCARD ALL; DEALLOCATE ALL", "read"),
        ("DECLARE live CURSOR WITH HOLD FOR SUBSCRIBE TO v; CLOSE live", "read"),
    ];
    for (sql, least) in cases {
        for (client, role) in [(&reader, "read"), (&writer, "write")] {
            let allowed = matches!((role, least), (_, "read") | ("write", "write"));
            let result = client.batch_execute(sql).await;
            if allowed {
                result.unwrap_or_else(|error| panic!("{sql} as {role}: {error:?}"));
            } else {
                let error = result.expect_err(sql);
                assert_eq!(code_of(&error), SqlState::INSUFFICIENT_PRIVILEGE, "{sql} as {role}");
            }
        }
    }
    let error = reader.copy_in::<_, bytes::Bytes>("COPY t FROM STDIN").await.err().expect("reader has no COPY FROM");
    assert_eq!(code_of(&error), SqlState::INSUFFICIENT_PRIVILEGE);
    // The writer's INSERT went in (the one EXPLAIN ANALYZE ran shows once the lake snapshot
    // is refreshed, within --lake-staleness-ms); nothing else changed.
    let row = boss.query_one("SELECT count(*) FROM t", &[]).await.expect("count");
    assert!((1..=2).contains(&row.get::<_, i64>(0)));
    let sinks = boss.query("SELECT name FROM watershed.sinks", &[]).await.expect("sinks");
    assert_eq!(sinks.len(), 1);
    for missing in ["u", "e", "s2", "v2"] {
        let error = boss.query(&format!("SELECT * FROM {missing}"), &[]).await.expect_err(missing);
        assert_eq!(code_of(&error), SqlState::UNDEFINED_TABLE, "{missing}");
    }
    server.stop().await;
}

/// Every statement kind that writes, run by an admin inside `BEGIN READ ONLY`: each gets
/// 25006 with PostgreSQL's words and changes nothing; reads, SET, LISTEN and NOTIFY still
/// run there; `default_transaction_read_only` refuses the same outside a block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_transactions_refuse_every_write_with_25006() {
    let server = server_with_users(|_| {}).await;
    let boss = server.login("boss", Some("boss-pw")).await.expect("admin login");
    boss.batch_execute(
        "CREATE TABLE t (a BIGINT); INSERT INTO t VALUES (1);
         CREATE SOURCE s (a BIGINT) WITH (connector = 'ingest');
         CREATE MATERIALIZED VIEW v AS SELECT a FROM s;
         CREATE SINK k FROM v WITH (connector = 'notify', channel = 'c')",
    )
    .await
    .expect("setup");
    let writes = [
        ("INSERT INTO t VALUES (2)", "INSERT"),
        ("INSERT INTO s VALUES (2)", "INSERT"),
        ("EXPLAIN ANALYZE INSERT INTO t VALUES (2)", "INSERT"),
        ("CREATE TABLE u (a BIGINT)", "CREATE TABLE"),
        ("CREATE TABLE u AS SELECT 1 AS a", "CREATE TABLE AS"),
        ("CREATE EXTERNAL TABLE e STORED AS DELTA LOCATION 'tables/t'", "CREATE EXTERNAL TABLE"),
        ("DROP TABLE t", "DROP TABLE"),
        ("CREATE INDEX t_a ON t (a)", "CREATE INDEX"),
        ("DROP INDEX IF EXISTS t_a", "DROP INDEX"),
        ("CREATE SOURCE s2 (a BIGINT) WITH (connector = 'ingest')", "CREATE SOURCE"),
        ("DROP SOURCE s", "DROP SOURCE"),
        ("CREATE MATERIALIZED VIEW v2 AS SELECT a FROM s", "CREATE MATERIALIZED VIEW"),
        ("DROP MATERIALIZED VIEW v", "DROP MATERIALIZED VIEW"),
        ("CREATE SINK k2 FROM v WITH (connector = 'notify', channel = 'c')", "CREATE SINK"),
        ("DROP SINK k", "DROP SINK"),
    ];
    for (sql, words) in writes {
        boss.batch_execute("BEGIN READ ONLY").await.expect("begin");
        let error = boss.batch_execute(sql).await.expect_err(sql);
        assert_eq!(code_of(&error), SqlState::READ_ONLY_SQL_TRANSACTION, "{sql}");
        let message = error.as_db_error().unwrap().message().to_string();
        assert_eq!(message, format!("cannot execute {words} in a read-only transaction"), "{sql}");
        boss.batch_execute("ROLLBACK").await.expect("rollback");
    }
    // COPY FROM STDIN is refused before the client sends any data. (Simple protocol: after
    // a refused copy_in, tokio-postgres misreads the next reply, against PostgreSQL too.)
    boss.batch_execute("BEGIN READ ONLY").await.expect("begin");
    let error = boss.simple_query("COPY t FROM STDIN").await.expect_err("COPY FROM refused");
    assert_eq!(code_of(&error), SqlState::READ_ONLY_SQL_TRANSACTION);
    assert!(error.as_db_error().unwrap().message().contains("COPY FROM"), "{error:?}");
    boss.batch_execute("ROLLBACK").await.expect("rollback");
    // Reads, settings, LISTEN and NOTIFY run in a read-only transaction, as in PostgreSQL.
    boss.batch_execute(
        "BEGIN READ ONLY; SELECT count(*) FROM t; EXPLAIN INSERT INTO t VALUES (3); SET application_name = 'ro';
         SELECT set_config('application_name', 'ro2', false); LISTEN c; NOTIFY c, 'hi'; UNLISTEN c; COMMIT",
    )
    .await
    .expect("reads and session statements in READ ONLY");
    // Outside a block, default_transaction_read_only makes every statement read-only.
    boss.batch_execute("SET default_transaction_read_only = on").await.expect("set");
    let error = boss.batch_execute("INSERT INTO t VALUES (4)").await.expect_err("read-only by default");
    assert_eq!(code_of(&error), SqlState::READ_ONLY_SQL_TRANSACTION);
    boss.batch_execute("BEGIN READ WRITE; INSERT INTO t VALUES (5); COMMIT").await.expect("a read-write block");
    boss.batch_execute("RESET default_transaction_read_only").await.expect("reset");
    // Nothing refused took effect: t has its rows, the objects are all there.
    let rows = boss.query("SELECT a FROM t ORDER BY a", &[]).await.expect("t");
    assert_eq!(rows.iter().map(|row| row.get::<_, i64>(0)).collect::<Vec<_>>(), vec![1, 5]);
    for relation in ["s", "v"] {
        boss.query(&format!("SELECT * FROM {relation}"), &[]).await.expect(relation);
    }
    let sinks = boss.query("SELECT name FROM watershed.sinks", &[]).await.expect("sinks");
    assert_eq!(sinks.len(), 1);
    for missing in ["u", "e", "s2", "v2"] {
        let error = boss.query(&format!("SELECT * FROM {missing}"), &[]).await.expect_err(missing);
        assert_eq!(code_of(&error), SqlState::UNDEFINED_TABLE, "{missing}");
    }
    server.stop().await;
}

/// `set_config()` changes settings from inside a query; it gets the check SET gets, so
/// a read or write user cannot change DataFusion's options (which can undo server limits)
/// that way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_config_of_datafusion_options_needs_admin_like_set() {
    let server = server_with_users(|_| {}).await;
    let option = "datafusion.execution.batch_size";
    for (user, password) in [("reader", "reader-pw"), ("writer", "writer-pw")] {
        let client = server.login(user, Some(password)).await.expect("login");
        let before = show(&client, option).await;
        let error = client.batch_execute(&format!("SET {option} = 17")).await.expect_err("SET refused");
        assert_eq!(code_of(&error), SqlState::INSUFFICIENT_PRIVILEGE, "{user}");
        for sql in [
            format!("SELECT set_config('{option}', '17', false)"),
            "SELECT set_config('DataFusion.Execution.Batch_Size', '17', false)".to_string(),
            format!("SELECT a FROM (VALUES (1)) AS v(a) WHERE set_config('{option}', '17', false) IS NOT NULL"),
        ] {
            let error = client.query(sql.as_str(), &[]).await.expect_err(&sql);
            assert_eq!(code_of(&error), SqlState::INSUFFICIENT_PRIVILEGE, "{user}: {sql}");
            assert!(error.as_db_error().unwrap().message().contains("datafusion"), "{error:?}");
        }
        assert_eq!(show(&client, option).await, before, "{user}: the option is unchanged");
        // Their own PostgreSQL settings they may change, by SET or set_config.
        let row =
            client.query_one("SELECT set_config('application_name', 'mine', false)", &[]).await.expect("own setting");
        assert_eq!(row.get::<_, String>(0), "mine");
    }
    let boss = server.login("boss", Some("boss-pw")).await.expect("admin login");
    let row = boss.query_one(&format!("SELECT set_config('{option}', '17', false)"), &[]).await.expect("admin may");
    assert_eq!(row.get::<_, String>(0), "17");
    assert_eq!(show(&boss, option).await, "17");
    server.stop().await;
}

/// A test CA and a server certificate it signed for `localhost` and 127.0.0.1, plus a
/// key that belongs to neither, made with the openssl command.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    stray_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn make_pki(dir: &Path) -> Pki {
    std::fs::create_dir_all(dir).unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509", "-new"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=watershed test CA"]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-new"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    openssl(dir, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", "stray.key"]);
    Pki {
        ca: dir.join("ca.crt"),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
        stray_key: dir.join("stray.key"),
    }
}

/// Runs one psql command against the server; `conninfo` adds to host, port, user.
async fn psql(port: u16, user: &str, password: &str, conninfo: &str, command: &str) -> std::process::Output {
    let target = format!("host=localhost hostaddr=127.0.0.1 port={port} user={user} dbname=watershed {conninfo}");
    let run = tokio::process::Command::new("psql")
        .arg(target)
        .args(["-X", "-A", "-t", "-w", "-c", command])
        .env("PGPASSWORD", password)
        .env_remove("PGSSLMODE")
        .env_remove("PGSSLROOTCERT")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run).await.expect("psql ends").expect("psql runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_require_and_verify_full_and_plaintext_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(&dir.path().join("pki"));
    let server = server_with_users(|config| {
        config.security.tls_cert = Some(pki.cert.clone());
        config.security.tls_key = Some(pki.key.clone());
        config.security.tls_required = true;
    })
    .await;
    // sslmode=require: encrypted, certificate not checked; SCRAM inside TLS.
    let out = psql(server.port, "reader", "reader-pw", "sslmode=require", "\\conninfo").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("SSL connection"), "{}", text(&out.stdout));
    // verify-full against the test CA: chain and host name checked.
    let root = format!("sslmode=verify-full sslrootcert={}", pki.ca.display());
    let out = psql(server.port, "boss", "boss-pw", &root, "SELECT 6 * 7").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "42");
    // The check is real: another host name fails verification on the client.
    let wrong_name = format!("{root} host=not-localhost.invalid");
    let out = psql(server.port, "boss", "boss-pw", &wrong_name, "SELECT 1").await;
    assert!(!out.status.success(), "a certificate for another name is refused");
    // md5 works inside TLS too.
    let out = psql(server.port, "writer", "writer-pw", "sslmode=require", "SELECT 1").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    // TLS required but absent: 28000 before any password is asked.
    let error = server.login("reader", Some("reader-pw")).await.expect_err("plaintext refused");
    assert_eq!(code_of(&error), SqlState::INVALID_AUTHORIZATION_SPECIFICATION);
    let out = psql(server.port, "reader", "reader-pw", "sslmode=disable", "SELECT 1").await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("accepts TLS connections only"), "{}", text(&out.stderr));
    server.stop().await;
}

#[tokio::test]
async fn broken_tls_configuration_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(&dir.path().join("pki"));
    let missing = dir.path().join("missing.pem");
    let cases: [(Option<&Path>, Option<&Path>, bool, &str); 6] = [
        (Some(&missing), Some(&pki.key), false, "missing.pem"),
        (Some(&pki.key), Some(&pki.key), false, "no CERTIFICATE"),
        (Some(&pki.cert), Some(&pki.cert), false, "private key"),
        (Some(&pki.cert), Some(&pki.stray_key), false, "do not work together"),
        (Some(&pki.cert), None, false, "both"),
        (None, None, true, "--tls-required"),
    ];
    for (cert, key, required, expected) in cases {
        let mut config = Config::rooted_at(dir.path());
        config.security.tls_cert = cert.map(Path::to_path_buf);
        config.security.tls_key = key.map(Path::to_path_buf);
        config.security.tls_required = required;
        let error = watershed::server::Security::load(&config).err().expect("refused");
        assert_eq!(error.code, sqlstate::CONFIG_FILE_ERROR);
        assert!(error.message.contains(expected), "{expected}: {}", error.message);
    }
    // The binary stops before serving, naming the file.
    let out = run_binary(
        dir.path(),
        &["--tls-cert", &pki.cert.display().to_string(), "--tls-key", &pki.stray_key.display().to_string(), "serve"],
    )
    .await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("do not work together"), "{}", text(&out.stderr));
}

/// Runs the binary with data and catalog in `dir`; it must end by itself.
async fn run_binary(dir: &Path, args: &[&str]) -> std::process::Output {
    let run = tokio::process::Command::new(support::binary())
        .current_dir(dir)
        .args(["--data-dir", "data", "--catalog-dir", "catalog"])
        .args(args)
        .env_remove("WATERSHED_USERS_FILE")
        .env_remove("WATERSHED_INSECURE_NO_AUTH")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("watershed exits by itself")
        .expect("watershed runs")
}

#[tokio::test]
async fn open_listen_without_authentication_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_binary(dir.path(), &["--listen", "0.0.0.0:0", "serve"]).await;
    assert!(!out.status.success(), "refused to start");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--insecure-no-auth") && stderr.contains("--users-file"), "{stderr}");
    let open: std::net::SocketAddr = "0.0.0.0:5433".parse().unwrap();
    let mut config = Config::rooted_at(dir.path());
    let security = watershed::server::Security::load(&config).unwrap();
    assert!(security.check_listen(open).is_err());
    assert!(security.check_listen("127.0.0.1:5433".parse().unwrap()).is_ok());
    assert!(security.check_listen("[::1]:5433".parse().unwrap()).is_ok());
    config.security.insecure_no_auth = true;
    assert!(watershed::server::Security::load(&config).unwrap().check_listen(open).is_ok());
    let file = dir.path().join("users.toml");
    assert!(user_add(&file, "ann", "read", "scram-sha-256", "pw").await.status.success());
    config.security.insecure_no_auth = false;
    config.security.users_file = Some(file);
    assert!(watershed::server::Security::load(&config).unwrap().check_listen(open).is_ok());
}

/// Runs until canceled: counting 10^11 rows takes far longer than any timeout here.
const LONG_QUERY: &str = "SELECT count(*) FROM range(0, 100000000000) a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_ends_a_statement_with_57014() {
    let server = Server::start(tempfile::tempdir().unwrap(), |config| config.limits.statement_timeout_ms = 200).await;
    let client = server.login("watershed", None).await.expect("trust login");
    assert_eq!(show(&client, "statement_timeout").await, "200ms", "the server default");
    let error = client.simple_query(LONG_QUERY).await.expect_err("timed out");
    assert_eq!(code_of(&error), SqlState::QUERY_CANCELED);
    assert!(error.as_db_error().unwrap().message().contains("statement timeout"), "{error:?}");
    let error = client.query(LONG_QUERY, &[]).await.expect_err("timed out (extended protocol)");
    assert_eq!(code_of(&error), SqlState::QUERY_CANCELED);
    // SET and RESET with PostgreSQL's units and display.
    client.batch_execute("SET statement_timeout = '2min'").await.expect("set");
    assert_eq!(show(&client, "statement_timeout").await, "2min");
    let error = client.batch_execute("SET statement_timeout = 'soon'").await.expect_err("not a duration");
    assert_eq!(code_of(&error), SqlState::INVALID_PARAMETER_VALUE);
    client.batch_execute("RESET statement_timeout").await.expect("reset");
    assert_eq!(show(&client, "statement_timeout").await, "200ms");
    client.batch_execute("SET statement_timeout = 0").await.expect("off");
    let row = client.query_one("SELECT count(*) FROM range(0, 1000) a", &[]).await.expect("no timeout");
    assert_eq!(row.get::<_, i64>(0), 1000);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_per_query_gives_53200_and_the_server_lives() {
    // 1 MiB: a hash join must hold its build side (3M rows) in memory and cannot spill.
    let server =
        Server::start(tempfile::tempdir().unwrap(), |config| config.limits.query_memory_bytes_max = 1 << 20).await;
    let client = server.login("watershed", None).await.expect("trust login");
    let join = "SELECT count(*) FROM range(0, 3000000) a JOIN range(0, 3000000) b ON a.value = b.value";
    let error = client.simple_query(join).await.expect_err("over the memory limit");
    assert_eq!(code_of(&error), SqlState::OUT_OF_MEMORY, "{error:?}");
    let row = client.query_one("SELECT 41 + 1", &[]).await.expect("the session goes on");
    assert_eq!(row.get::<_, i64>(0), 42);
    let other = server.login("watershed", None).await.expect("the server still accepts connections");
    let row = other.query_one("SELECT count(*) FROM range(0, 1000) a", &[]).await.expect("and answers");
    assert_eq!(row.get::<_, i64>(0), 1000);
    server.stop().await;
}

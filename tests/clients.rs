//! The client matrix: real PostgreSQL clients against a running watershed serving a small
//! demo lake. Each test drives one client (psql, psycopg 3, psycopg2, asyncpg,
//! SQLAlchemy + pandas, node-postgres, postgres.js, pgJDBC, tokio-postgres) through
//! connect, metadata, a parameterized query, NULLs, every common type, a transaction
//! block and an error with its SQLSTATE; the scripts live in tests/clients/.
//!
//! One server per test process, on an ephemeral loopback port, started on its own thread
//! and runtime so every test (sync or async) can reach it. The client toolchains are
//! installed on first use by tests/clients/bootstrap.sh into ~/.cache/watershed/clients
//! (idempotent, under a file lock, so parallel tests and CI pre-warming never race).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use watershed::config::Config;
use watershed::session::Engine;

/// Size of the demo lake the clients browse: 100 products, ~50k orders; generated once
/// under the target dir and reused by later runs (it is deterministic).
const DEMO_SCALE: f64 = 0.01;

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn scratch_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

fn demo_catalog(lake: &Path) -> String {
    let mut toml = format!("[demo]\nseed = 42\nscale = {DEMO_SCALE}\nlocation = \"{}\"\n", lake.display());
    for table in ["products", "campaigns", "customers", "orders_history"] {
        toml.push_str(&format!(
            "\n[[table]]\nname = \"{table}\"\nformat = \"delta\"\nlocation = \"{}\"\n",
            lake.join(table).display()
        ));
    }
    toml
}

/// Port of the shared server, started on first call.
fn server_port() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        let (ready, port) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("server runtime");
            runtime.block_on(async move {
                // A fresh data dir per run (tables the clients create); the lake is shared.
                let run = scratch_dir().join("clients-run");
                let _ = std::fs::remove_dir_all(&run);
                let mut config = Config::rooted_at(&run);
                std::fs::create_dir_all(&config.catalog_dir).expect("catalog dir");
                let lake = scratch_dir().join(format!("clients-demo-{DEMO_SCALE}"));
                std::fs::write(config.catalog_dir.join("demo.toml"), demo_catalog(&lake)).expect("catalog file");
                config.demo_autogenerate = true;
                let engine = Engine::open(config).await.expect("engine opens on the demo lake");
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                ready.send(listener.local_addr().expect("addr").port()).expect("test waits");
                // Runs until the test process exits.
                watershed::server::serve(engine, listener, std::future::pending()).await.expect("server runs");
            });
        });
        port.recv().expect("server starts")
    })
}

/// Runs a command to completion; fails the test with its whole output unless it exits 0.
fn run(mut command: Command, what: &str) -> String {
    let output = command.output().unwrap_or_else(|error| panic!("{what}: cannot start {command:?}: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}", output.status);
    stdout
}

fn clients_cache() -> PathBuf {
    match std::env::var_os("WATERSHED_CLIENTS_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/watershed/clients"),
    }
}

fn bootstrap(part: &str) {
    let mut command = Command::new("bash");
    command.arg(manifest_dir().join("tests/clients/bootstrap.sh")).arg(part);
    run(command, &format!("bootstrap of the {part} clients"));
}

fn client_env(command: &mut Command) {
    command.env("WATERSHED_HOST", "127.0.0.1").env("WATERSHED_PORT", server_port().to_string());
}

fn python(script: &str) {
    let port = server_port();
    bootstrap("python");
    let mut command = Command::new(clients_cache().join("venv/bin/python"));
    command.arg(manifest_dir().join("tests/clients/python").join(script));
    command.current_dir(manifest_dir().join("tests/clients/python"));
    client_env(&mut command);
    let out = run(command, script);
    assert!(out.contains(" ok"), "{script} (port {port}) did not report success:\n{out}");
}

fn node(script: &str) {
    server_port();
    bootstrap("node");
    let mut command = Command::new("node");
    command.arg(manifest_dir().join("tests/clients/node").join(script));
    command.env("NODE_PATH", clients_cache().join("node/node_modules"));
    client_env(&mut command);
    let out = run(command, script);
    assert!(out.contains(" ok"), "{script} did not report success:\n{out}");
}

fn psql(commands: &[&str]) -> String {
    bootstrap("psql");
    let mut command = Command::new("psql");
    command
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "watershed", "-d", "watershed"])
        .args(["-p", &server_port().to_string()]);
    for sql in commands {
        command.args(["-c", sql]);
    }
    command.env("PGAPPNAME", "psql-test");
    run(command, &format!("psql {commands:?}"))
}

#[test]
fn psql_meta_commands() {
    let listing = psql(&["\\l"]);
    assert!(listing.contains("watershed"), "\\l lists the database:\n{listing}");
    let schemas = psql(&["\\dn"]);
    assert!(schemas.contains("public") && !schemas.contains("pg_catalog"), "\\dn:\n{schemas}");
    let tables = psql(&["\\dt"]);
    for table in ["products", "campaigns", "customers", "orders_history"] {
        assert!(tables.contains(table), "\\dt lists {table}:\n{tables}");
    }
    // `\d products`: psql's column query, its footers (row security, extended statistics,
    // publications: repeated unnamed NULLs, a table function of outer columns) all run.
    let described = psql(&["\\d products"]);
    assert!(described.contains("Table \"public.products\""), "\\d products:\n{described}");
    for expected in ["product_id | bigint", "not null", "price      | numeric"] {
        assert!(described.contains(expected), "\\d products shows {expected}:\n{described}");
    }
    // Indexes: `\di` lists them with their tables; the definition is PostgreSQL's.
    let indexed = psql(&[
        "DROP TABLE IF EXISTS psql_idx_t",
        "CREATE TABLE psql_idx_t (id BIGINT, note TEXT)",
        "INSERT INTO psql_idx_t VALUES (1, 'a'), (2, NULL)",
        "CREATE INDEX psql_idx_t_note ON psql_idx_t (note, id DESC)",
        "\\di",
        "SELECT pg_get_indexdef('psql_idx_t_note'::regclass)",
        "\\d psql_idx_t",
        "DROP TABLE psql_idx_t",
    ]);
    assert!(
        indexed.contains("psql_idx_t_note")
            && indexed.contains("| psql_idx_t")
            && indexed.contains("CREATE INDEX psql_idx_t_note ON public.psql_idx_t USING btree (note, id DESC)")
            && indexed.contains("\"psql_idx_t_note\" btree (note, id DESC)"),
        "\\di lists the index:\n{indexed}"
    );
    // Views: `\dv` lists them, `\d v` shows their columns; the definition by OID as `\d+`
    // asks for it (`\d+` itself needs an `ARRAY(subquery)` over reloptions that DataFusion
    // does not plan, for tables as for views).
    let viewed = psql(&[
        "DROP VIEW IF EXISTS psql_view_v",
        "CREATE VIEW psql_view_v (pid, n) AS SELECT product_id, name FROM products WHERE product_id < 10",
        "\\dv",
        "\\d psql_view_v",
        "SELECT pg_catalog.pg_get_viewdef(c.oid, true) AS definition FROM pg_catalog.pg_class c \
         WHERE c.relname = 'psql_view_v'",
        "DROP VIEW psql_view_v",
    ]);
    let listed = viewed.lines().any(|line| {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        cells.len() == 4 && cells[0] == "public" && cells[1] == "psql_view_v" && cells[2] == "view"
    });
    assert!(listed, "\\dv lists the view:\n{viewed}");
    assert!(viewed.contains("View \"public.psql_view_v\""), "\\d describes the view:\n{viewed}");
    for expected in ["pid    | bigint", "n      | text", "WHERE product_id < 10"] {
        assert!(viewed.contains(expected), "\\d psql_view_v shows {expected}:\n{viewed}");
    }
    let functions = psql(&["\\df"]);
    assert!(functions.contains("List of functions"), "\\df:\n{functions}");
    let expanded = psql(&["\\x", "SELECT product_id, name FROM products WHERE product_id = 1"]);
    assert!(expanded.contains("-[ RECORD 1 ]") && expanded.contains("product_id | 1"), "\\x:\n{expanded}");
}

#[test]
fn psql_queries_types_transactions_errors() {
    let out =
        psql(&["SELECT 1::int2 AS i2, 2::int4 AS i4, 3::int8 AS i8, 12.34::numeric(10,2) AS num, 1.5::float4 AS f4, \
         2.25::float8 AS f8, 'hé'::text AS t, true AS b, DATE '2024-02-29' AS d, INTERVAL '1 day' AS iv, \
         ARRAY[1,2]::int8[] AS arr, NULL::text IS NULL AS isnull"]);
    for expected in ["12.34", "hé", "2024-02-29", "{1,2}", "1 day"] {
        assert!(out.contains(expected), "psql shows {expected}:\n{out}");
    }
    // A parameterized query: psql interpolates its variables (psql 16's \bind would use
    // the extended protocol; the Debian psql here is 15).
    let script = manifest_dir().join("tests/clients/psql_variables.sql");
    let mut bound = Command::new("psql");
    bound
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-v", "n=21", "-h", "127.0.0.1", "-U", "watershed", "-d", "watershed"])
        .args(["-p", &server_port().to_string(), "-f"])
        .arg(&script);
    let bound = run(bound, "psql with a variable");
    assert!(bound.contains("42") && bound.contains(" t"), "psql variable:\n{bound}");
    let block = psql(&[
        "BEGIN; DROP TABLE IF EXISTS psql_t; CREATE TABLE psql_t (id BIGINT); INSERT INTO psql_t VALUES (1), (NULL); \
         SAVEPOINT s; RELEASE SAVEPOINT s; COMMIT; SELECT count(*) AS n, count(id) AS m FROM psql_t; DROP TABLE psql_t",
    ]);
    // Every statement's tag, in order, the block committed (not rolled back), and its
    // rows read back after it.
    let mut rest = block.as_str();
    for part in ["BEGIN", "CREATE TABLE", "INSERT 0 2", "SAVEPOINT", "RELEASE", "COMMIT", " 2 | 1", "DROP TABLE"] {
        let at = rest.find(part).unwrap_or_else(|| panic!("transaction block shows {part:?} in order:\n{block}"));
        rest = &rest[at + part.len()..];
    }
    assert!(!block.contains("ROLLBACK"), "transaction block:\n{block}");
    // A ROLLBACK after writes answers ROLLBACK and warns that the writes stay.
    let mut rollback = Command::new("psql");
    rollback
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "watershed", "-d", "watershed"])
        .args(["-p", &server_port().to_string(), "-c"])
        .arg("DROP TABLE IF EXISTS psql_rb; CREATE TABLE psql_rb (id BIGINT); BEGIN; INSERT INTO psql_rb VALUES (1); ROLLBACK")
        .args(["-c", "SELECT count(*) AS kept FROM psql_rb", "-c", "DROP TABLE psql_rb"]);
    let output = rollback.output().expect("psql runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("ROLLBACK") && stdout.contains("\n    1\n"), "{stdout}");
    assert!(
        stderr.contains("WARNING:  statements of this transaction block that wrote were already committed"),
        "{stderr}"
    );
    let mut failing = Command::new("psql");
    failing
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose", "-h", "127.0.0.1", "-U", "watershed"])
        .args(["-p", &server_port().to_string(), "-c", "SELECT 1 / 0"]);
    let output = failing.output().expect("psql runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("22012"), "division by zero carries 22012:\n{stderr}");
}

#[test]
fn psycopg3() {
    python("psycopg3_client.py");
}

#[test]
fn psycopg2() {
    python("psycopg2_client.py");
}

#[test]
fn asyncpg() {
    python("asyncpg_client.py");
}

#[test]
fn sqlalchemy_and_pandas() {
    python("sqlalchemy_client.py");
}

#[test]
fn node_postgres() {
    node("pg_client.js");
}

#[test]
fn postgres_js() {
    node("postgres_js_client.js");
}

#[test]
fn pgjdbc() {
    server_port();
    bootstrap("java");
    let mut command = Command::new("java");
    let classpath = format!("/usr/share/java/postgresql.jar:{}", clients_cache().join("java").display());
    command.args(["-cp", &classpath, "JdbcClient"]);
    client_env(&mut command);
    let out = run(command, "pgJDBC");
    assert!(out.contains("pgjdbc ok"), "pgJDBC did not report success:\n{out}");
}

/// Raw bytes of a binary-format value, for types tokio-postgres decodes only with
/// optional features this crate does not enable (dates, timestamps, intervals).
struct Raw(Vec<u8>);

impl<'a> tokio_postgres::types::FromSql<'a> for Raw {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
}

#[tokio::test]
async fn tokio_postgres_client() {
    let port = server_port();
    let url = format!("host=127.0.0.1 port={port} user=watershed dbname=watershed");
    let (mut client, connection) = tokio_postgres::connect(&url, NoTls).await.expect("connects");
    tokio::spawn(connection);

    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n \
             ON n.oid = c.relnamespace WHERE n.nspname = $1 ORDER BY 1",
            &[&"public"],
        )
        .await
        .expect("pg_class");
    let names: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    assert!(names.contains(&"products".to_string()), "pg_class lists products: {names:?}");

    // Binary results of each type.
    let row = client
        .query_one(
            "SELECT 1::int2, 2::int4, 3::int8, 1.5::float4, 2.25::float8, 'hé'::text, true, \
             DATE '2000-01-02', TIMESTAMP '2000-01-01 00:00:01', '2000-01-01 00:00:02+00'::timestamptz, \
             INTERVAL '3 days', ARRAY[1, 2]::int8[], NULL::int8, 12.5::numeric(10,2)",
            &[],
        )
        .await
        .expect("types");
    assert_eq!(row.get::<_, i16>(0), 1);
    assert_eq!(row.get::<_, i32>(1), 2);
    assert_eq!(row.get::<_, i64>(2), 3);
    assert_eq!(row.get::<_, f32>(3), 1.5);
    assert_eq!(row.get::<_, f64>(4), 2.25);
    assert_eq!(row.get::<_, String>(5), "hé");
    assert!(row.get::<_, bool>(6));
    assert_eq!(row.get::<_, Raw>(7).0, 1i32.to_be_bytes(), "date: days since 2000-01-01");
    assert_eq!(row.get::<_, Raw>(8).0, 1_000_000i64.to_be_bytes(), "timestamp: µs since 2000");
    assert_eq!(row.get::<_, Raw>(9).0, 2_000_000i64.to_be_bytes(), "timestamptz: µs since 2000 UTC");
    let interval = row.get::<_, Raw>(10).0;
    assert_eq!(interval[8..12], 3i32.to_be_bytes(), "interval days");
    assert_eq!(row.get::<_, Vec<i64>>(11), vec![1, 2]);
    assert_eq!(row.get::<_, Option<i64>>(12), None);
    assert_eq!(row.columns()[13].type_(), &tokio_postgres::types::Type::NUMERIC);

    // Parameters, NULL parameters.
    let row = client
        .query_one("SELECT $1::int8 + 1, $2::text IS NULL", &[&41i64, &None::<String>])
        .await
        .expect("parameters");
    assert_eq!(row.get::<_, i64>(0), 42);
    assert!(row.get::<_, bool>(1));

    // A transaction block with a savepoint.
    client.batch_execute("DROP TABLE IF EXISTS tokio_pg_t").await.expect("drop");
    let mut transaction = client.transaction().await.expect("BEGIN");
    transaction.batch_execute("CREATE TABLE tokio_pg_t (id BIGINT)").await.expect("create");
    let inserted = transaction.execute("INSERT INTO tokio_pg_t VALUES ($1), ($2)", &[&1i64, &None::<i64>]).await;
    assert_eq!(inserted.expect("insert"), 2);
    let savepoint = transaction.savepoint("s1").await;
    savepoint.expect("SAVEPOINT").commit().await.expect("RELEASE");
    transaction.commit().await.expect("COMMIT");
    let row = client.query_one("SELECT count(*), count(id) FROM tokio_pg_t", &[]).await.expect("count");
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (2, 1));

    // Errors carry their SQLSTATE; a failed block refuses statements until ROLLBACK.
    let error = client.query("SELECT 1 / 0", &[]).await.expect_err("division by zero");
    assert_eq!(error.code(), Some(&SqlState::DIVISION_BY_ZERO));
    client.batch_execute("BEGIN").await.expect("BEGIN");
    client.batch_execute("SELECT nope").await.expect_err("unknown column");
    let refused = client.query("SELECT 1", &[]).await.expect_err("failed block");
    assert_eq!(refused.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    client.batch_execute("ROLLBACK").await.expect("ROLLBACK");
    client.batch_execute("DROP TABLE tokio_pg_t").await.expect("drop");
}

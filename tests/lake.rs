//! Lake tables across processes and restarts: commits by other writers become visible
//! within the staleness bound, own writes at once; the catalog survives a restart; a
//! broken catalog file stops start-up naming the file and line.

use std::path::Path;

use futures::StreamExt;

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use std::sync::Arc;
use watershed::config::Config;
use watershed::session::{Engine, Session};

async fn engine(root: &Path, staleness_ms: u64) -> Engine {
    let mut config = Config::rooted_at(root);
    config.limits.lake_staleness_ms = staleness_ms;
    Engine::open(config).await.expect("engine opens")
}

async fn count(session: &mut Session, table: &str) -> i64 {
    let results = session.run_collect(&format!("SELECT count(*) FROM {table}")).await.expect("count");
    let batch = &results[0].batches[0];
    batch.column(0).as_any().downcast_ref::<Int64Array>().expect("count is int8").value(0)
}

/// Appends rows to a Delta table the way another process would: through its own
/// deltalake handle, not through watershed.
async fn append_elsewhere(table_dir: &Path, values: &[i64]) {
    let url = url::Url::from_directory_path(table_dir).expect("absolute path");
    let table = deltalake::open_table(url).await.expect("open from outside");
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).expect("batch");
    table.write(vec![batch]).with_save_mode(deltalake::protocol::SaveMode::Append).await.expect("outside commit");
}

#[tokio::test]
async fn other_writers_are_seen_within_the_staleness_bound() {
    let dir = tempfile::tempdir().expect("temp dir");
    let table_dir = dir.path().join("data/tables/t");

    // A bound of an hour: the outside commit stays invisible, our own writes do not.
    let slow = engine(dir.path(), 3_600_000).await;
    let mut session = slow.session();
    session.run_collect("CREATE TABLE t (id BIGINT); INSERT INTO t VALUES (1), (2)").await.expect("setup");
    assert_eq!(count(&mut session, "t").await, 2, "own writes are visible at once");
    append_elsewhere(&table_dir, &[10, 11, 12]).await;
    assert_eq!(count(&mut session, "t").await, 2, "within the bound the snapshot may be stale");
    session.run_collect("INSERT INTO t VALUES (3)").await.expect("own insert");
    assert_eq!(count(&mut session, "t").await, 6, "an own write refreshes: it sees everything committed");
    drop(session);
    drop(slow);

    // A bound of zero: every query sees the latest commit.
    let fresh = engine(dir.path(), 0).await;
    let mut session = fresh.session();
    assert_eq!(count(&mut session, "t").await, 6);
    append_elsewhere(&table_dir, &[20]).await;
    assert_eq!(count(&mut session, "t").await, 7, "the outside commit is visible");
    // Time travel still sees the old versions: 0 create, 1 insert, 2 outside, 3 insert.
    let v1 = session.run_collect("SELECT count(*) FROM t VERSION AS OF 1").await.expect("v1");
    let v1 = v1[0].batches[0].column(0).as_any().downcast_ref::<Int64Array>().expect("int8").value(0);
    assert_eq!(v1, 2);
}

#[tokio::test]
async fn catalog_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let first = engine(dir.path(), 5_000).await;
        let mut session = first.session();
        session
            .run_collect(
                "CREATE TABLE kept (id BIGINT, day DATE) PARTITIONED BY (day);
                 INSERT INTO kept VALUES (1, DATE '2026-01-01'), (2, DATE '2026-01-02');
                 CREATE TABLE gone AS SELECT 1 AS x;
                 CREATE EXTERNAL TABLE kept_again STORED AS DELTA LOCATION 'tables/kept';
                 DROP TABLE gone",
            )
            .await
            .expect("ddl");
    }
    assert!(dir.path().join("data/catalog/kept.toml").exists(), "DDL persists under the data dir");
    assert!(!dir.path().join("data/catalog/gone.toml").exists(), "dropped tables leave the catalog");
    assert!(!dir.path().join("catalog").exists(), "the declared catalog dir is never written");
    assert!(!dir.path().join("data/tables/gone").exists(), "managed data is deleted on drop");
    let second = engine(dir.path(), 5_000).await;
    let mut session = second.session();
    assert_eq!(count(&mut session, "kept").await, 2);
    assert_eq!(count(&mut session, "kept_again").await, 2);
    let missing = session.run_collect("SELECT * FROM gone").await.expect_err("gone is gone");
    assert_eq!(missing.code, "42P01");
    // Dropping an external table keeps the data it points at.
    session.run_collect("DROP TABLE kept_again").await.expect("drop external");
    assert_eq!(count(&mut session, "kept").await, 2);
}

/// Texts of the first column of a one-column result.
async fn texts(session: &mut Session, sql: &str) -> Vec<String> {
    let results = session.run_collect(sql).await.expect(sql);
    let mut out = Vec::new();
    for batch in &results[0].batches {
        let column = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8).expect("text");
        let column = column.as_any().downcast_ref::<datafusion::arrow::array::StringArray>().expect("utf8");
        out.extend(column.iter().map(|v| v.unwrap_or("NULL").to_string()));
    }
    out
}

#[tokio::test]
async fn an_index_z_orders_its_table_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let table_dir = dir.path().join("data/tables/zt");
    let url = url::Url::from_directory_path(&table_dir).expect("absolute path");
    {
        let first = engine(dir.path(), 5_000).await;
        let mut session = first.session();
        session.run_collect("CREATE TABLE zt (a BIGINT, b TEXT, day DATE) PARTITIONED BY (day)").await.expect("create");
        // Four commits, each spread over the whole range of a: four files per day.
        for i in 0..4 {
            let values: Vec<String> = (0..5).map(|k| format!("({}, 'v{k}', DATE '2026-01-01')", k * 100 + i)).collect();
            session.run_collect(&format!("INSERT INTO zt VALUES {}", values.join(", "))).await.expect("insert");
        }
        let before = deltalake::open_table(url.clone()).await.expect("open").get_file_uris().expect("files").count();
        assert_eq!(before, 4);
        // `day` is a partition column: partitioning already clusters it, z-order leaves it out.
        session.run_collect("CREATE INDEX zt_a ON zt (a, day)").await.expect("create index");
        let table = deltalake::open_table(url.clone()).await.expect("open");
        let last = table.history(Some(1)).next().await.expect("a commit").expect("commit info");
        assert_eq!(last.operation.as_deref(), Some("OPTIMIZE"), "CREATE INDEX rewrote the files in z-order");
        assert_eq!(table.get_file_uris().expect("files").count(), 1, "the day's four files became one, ordered by a");
        assert_eq!(count(&mut session, "zt").await, 20, "the rewrite keeps every row");
        let error = session.run_collect("CREATE INDEX zt_a ON zt (b)").await.expect_err("duplicate");
        assert_eq!(error.code, "42P07");
        let error = session.run_collect("CREATE UNIQUE INDEX zt_u ON zt (b)").await.expect_err("unique");
        assert_eq!(error.code, "0A000");
        session.run_collect("CREATE INDEX zt_b ON zt (b DESC)").await.expect("second index");
        session.run_collect("DROP INDEX zt_b").await.expect("drop index");
    }
    let second = engine(dir.path(), 5_000).await;
    let mut session = second.session();
    assert_eq!(
        texts(&mut session, "SELECT indexdef FROM pg_indexes WHERE tablename = 'zt'").await,
        vec!["CREATE INDEX zt_a ON public.zt USING btree (a, day)".to_string()],
        "the index is declared with its table; the dropped one is gone"
    );
    assert_eq!(
        texts(
            &mut session,
            "SELECT c.relkind FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid WHERE c.relname = 'zt_a'"
        )
        .await,
        vec!["i".to_string()]
    );
    session.run_collect("DROP TABLE zt").await.expect("drop table");
    assert!(texts(&mut session, "SELECT indexname FROM pg_indexes").await.is_empty(), "indexes go with their table");
}

#[tokio::test]
async fn broken_catalog_file_names_file_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let catalog = dir.path().join("catalog");
    std::fs::create_dir_all(&catalog).expect("catalog dir");
    std::fs::write(
        catalog.join("broken.toml"),
        "[[table]]\nname = \"a\"\nformat = \"delta\"\nlocation = \"nowhere\"\n\n[[table]]\nname = \"b\"\nformat = delta\n",
    )
    .expect("write");
    let error = Engine::open(Config::rooted_at(dir.path())).await.err().expect("refuses to start");
    assert_eq!(error.code, "F0000");
    assert!(error.message.contains("broken.toml:8"), "{}", error.message);

    // A well-formed file whose table cannot be opened also names its file and line.
    std::fs::write(
        catalog.join("broken.toml"),
        "[[table]]\nname = \"a\"\nformat = \"delta\"\nlocation = \"nowhere\"\n",
    )
    .expect("write");
    let error = Engine::open(Config::rooted_at(dir.path())).await.err().expect("refuses to start");
    assert!(error.message.contains("broken.toml:2"), "{}", error.message);
}

/// A catalog file edited while the server runs (catalog files are to be edited while it
/// is stopped) makes DROP an F0000 error naming the file, not a panic; nothing is dropped.
#[tokio::test]
async fn drop_after_the_catalog_file_was_edited_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::rooted_at(dir.path());
    let file = config.ddl_dir.join("edited.toml");
    let engine = Engine::open(config).await.expect("engine opens");
    let mut session = engine.session();
    session
        .run_collect("CREATE TABLE edited (id BIGINT); INSERT INTO edited VALUES (1); CREATE SOURCE ev (id BIGINT) WITH (connector = 'ingest')")
        .await
        .expect("ddl");
    let text = std::fs::read_to_string(&file).expect("the table's catalog file");
    std::fs::write(&file, text.replace("name = \"edited\"", "name = \"renamed\"")).expect("edit");
    for sql in ["DROP TABLE edited", "CREATE INDEX edited_id ON edited (id)"] {
        let error = session.run_collect(sql).await.expect_err("refused");
        assert_eq!(error.code, "F0000", "{sql}");
        assert!(error.message.contains("edited.toml") && error.message.contains("changed"), "{}", error.message);
    }
    assert_eq!(count(&mut session, "edited").await, 1, "nothing was dropped");
    std::fs::remove_file(engine.config().ddl_dir.join("ev.toml")).expect("remove the source's file");
    let error = session.run_collect("DROP SOURCE ev").await.expect_err("refused");
    assert_eq!(error.code, "F0000");
    assert_eq!(count(&mut session, "ev").await, 0, "the source is still there");
}

async fn code(session: &mut Session, sql: &str) -> String {
    session.run_collect(sql).await.err().unwrap_or_else(|| panic!("{sql} must fail")).code.to_string()
}

/// One namespace, checked at CREATE for every kind: a name a catalog file declares for a
/// sink (as the demo's `big_orders`) is refused to tables, CTAS, external tables, sources,
/// views and indexes with 42710, a relation's or index's name to the others with 42P07, a
/// name a catalog file cannot hold with 0A000; and the next start accepts everything the
/// server accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_namespace_at_create_and_every_start_accepts_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::rooted_at(dir.path());
    std::fs::create_dir_all(&config.catalog_dir).expect("catalog dir");
    std::fs::write(
        config.catalog_dir.join("shop.toml"),
        "[[source]]\nname = \"orders\"\nconnector = \"ingest\"\ncolumns = [{ name = \"amount\", type = \"BIGINT\" }]\n\n\
         [[sink]]\nname = \"big_orders\"\ninput = { query = \"SELECT amount FROM orders WHERE amount > 1000\" }\n\
         options = { connector = \"notify\", channel = \"big_orders\" }\n",
    )
    .expect("catalog file");
    let engine = Engine::open(config.clone()).await.expect("engine opens");
    let mut session = engine.session();
    session
        .run_collect("CREATE TABLE t (a BIGINT); INSERT INTO t VALUES (1); CREATE INDEX t_a ON t (a)")
        .await
        .expect("setup");
    for sql in [
        "CREATE TABLE big_orders AS SELECT 1 AS a",
        "CREATE TABLE IF NOT EXISTS big_orders AS SELECT 1 AS a",
        "CREATE TABLE big_orders (a BIGINT)",
        "CREATE EXTERNAL TABLE big_orders STORED AS DELTA LOCATION 'tables/t'",
        "CREATE SOURCE big_orders (a BIGINT) WITH (connector = 'ingest')",
        "CREATE MATERIALIZED VIEW big_orders AS SELECT amount FROM orders",
        "CREATE INDEX big_orders ON t (a)",
        "CREATE SINK big_orders AS SELECT amount FROM orders WITH (connector = 'notify', channel = 'x')",
    ] {
        assert_eq!(code(&mut session, sql).await, "42710", "{sql}");
    }
    for name in ["t", "t_a", "orders"] {
        for sql in [
            format!("CREATE TABLE {name} AS SELECT 1 AS a"),
            format!("CREATE SOURCE {name} (a BIGINT) WITH (connector = 'ingest')"),
            format!("CREATE MATERIALIZED VIEW {name} AS SELECT amount FROM orders"),
            format!("CREATE INDEX {name} ON t (a)"),
            format!("CREATE SINK {name} AS SELECT amount FROM orders WITH (connector = 'notify', channel = 'x')"),
            format!(
                "CREATE SINK IF NOT EXISTS {name} AS SELECT amount FROM orders WITH (connector = 'notify', channel = 'x')"
            ),
        ] {
            assert_eq!(code(&mut session, &sql).await, "42P07", "{sql}");
        }
    }
    // IF NOT EXISTS skips a name of its own class (relations; sinks), as in PostgreSQL.
    session
        .run_collect(
            "CREATE TABLE IF NOT EXISTS t_a (a BIGINT); CREATE INDEX IF NOT EXISTS orders ON t (a);
             CREATE SINK IF NOT EXISTS big_orders AS SELECT amount FROM orders WITH (connector = 'notify', channel = 'x')",
        )
        .await
        .expect("skipped");
    assert_eq!(code(&mut session, "CREATE TABLE \"Big\" (a BIGINT)").await, "0A000");
    assert!(!dir.path().join("data/tables/big_orders").exists(), "a refused CTAS leaves no data");
    engine.catalog().stop_sources().await;
    drop(session);
    drop(engine);
    let engine = Engine::open(config).await.expect("the next start accepts what the server accepted");
    let mut session = engine.session();
    assert_eq!(count(&mut session, "t").await, 1);
    let sinks = session.run_collect("SELECT name FROM watershed.sinks").await.expect("sinks");
    assert_eq!(sinks[0].batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    engine.catalog().stop_sources().await;
}

/// CREATE of a view, a sink or a CTAS is all or nothing: when its catalog file cannot be
/// written, it is not registered either (and a CTAS leaves no data); once the file can be
/// written, the same CREATE succeeds and survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_catalog_file_fails_leaves_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::rooted_at(dir.path());
    let engine = Engine::open(config.clone()).await.expect("engine opens");
    let mut session = engine.session();
    session.run_collect("CREATE SOURCE ev (a BIGINT) WITH (connector = 'ingest')").await.expect("source");
    let creates = [
        ("v", "CREATE MATERIALIZED VIEW v AS SELECT a FROM ev"),
        ("w", "CREATE TABLE w AS SELECT 1 AS a"),
        ("k", "CREATE SINK k AS SELECT a FROM ev WITH (connector = 'notify', channel = 'k')"),
    ];
    for (name, create) in creates {
        // A directory where write_atomic's temporary file goes makes the write fail.
        let obstacle = config.ddl_dir.join(format!("{name}.toml.tmp"));
        std::fs::create_dir_all(&obstacle).expect("obstacle");
        session.run_collect(create).await.err().unwrap_or_else(|| panic!("{create} must fail"));
        assert!(!config.ddl_dir.join(format!("{name}.toml")).exists(), "{name}: no file");
        match name {
            "k" => {
                let sinks = session.run_collect("SELECT name FROM watershed.sinks").await.expect("sinks");
                assert_eq!(sinks[0].batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0, "k is not registered");
            }
            _ => assert_eq!(
                code(&mut session, &format!("SELECT * FROM {name}")).await,
                "42P01",
                "{name} is not registered"
            ),
        }
        if name == "w" {
            assert!(!dir.path().join("data/tables/w").exists(), "no data left behind");
        }
        std::fs::remove_dir(&obstacle).expect("remove the obstacle");
        session.run_collect(create).await.unwrap_or_else(|error| panic!("{create}: {error}"));
        assert!(config.ddl_dir.join(format!("{name}.toml")).exists(), "{name}: persisted");
    }
    engine.catalog().stop_sources().await;
    drop(session);
    drop(engine);
    let engine = Engine::open(config).await.expect("restarts");
    let mut session = engine.session();
    assert_eq!(count(&mut session, "w").await, 1);
    assert_eq!(count(&mut session, "v").await, 0);
    engine.catalog().stop_sources().await;
}

/// The declared catalog (`--catalog-dir`, the repository's `catalog/` for the demo) is
/// read, never written: DDL persists under the data dir (`--ddl-dir`), and DDL that would
/// change a declared object is refused with 42501, its file untouched. Configured as one
/// directory, both are the same writable catalog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_declared_catalog_is_read_only_and_ddl_goes_under_the_data_dir() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::rooted_at(dir.path());
    {
        let engine = Engine::open(config.clone()).await.expect("engine opens");
        engine.session().run_collect("CREATE TABLE lake (a BIGINT); INSERT INTO lake VALUES (1)").await.expect("table");
    }
    std::fs::create_dir_all(&config.catalog_dir).expect("catalog dir");
    let declared = config.catalog_dir.join("shipped.toml");
    let text = "[[table]]\nname = \"shipped\"\nformat = \"delta\"\nlocation = \"tables/lake\"\n\n\
                [[source]]\nname = \"feed\"\nconnector = \"ingest\"\ncolumns = [{ name = \"a\", type = \"BIGINT\" }]\n\n\
                [[materialized_view]]\nname = \"feed_view\"\nemit = \"on_window_close\"\nquery = \"SELECT a FROM feed\"\n\n\
                [[sink]]\nname = \"feed_sink\"\ninput = { view = \"feed_view\" }\noptions = { connector = \"notify\", channel = \"c\" }\n";
    std::fs::write(&declared, text).expect("declared catalog");
    let engine = Engine::open(config.clone()).await.expect("engine opens");
    let mut session = engine.session();
    assert_eq!(count(&mut session, "shipped").await, 1);
    for sql in [
        "DROP SINK feed_sink",
        "DROP MATERIALIZED VIEW feed_view",
        "DROP SOURCE feed",
        "DROP TABLE shipped",
        "CREATE INDEX shipped_a ON shipped (a)",
    ] {
        let error = session.run_collect(sql).await.err().unwrap_or_else(|| panic!("{sql} must be refused"));
        assert_eq!(error.code, "42501", "{sql}");
        assert!(error.message.contains("shipped.toml") && error.message.contains("--ddl-dir"), "{}", error.message);
    }
    assert_eq!(std::fs::read_to_string(&declared).expect("declared"), text, "the declared file is untouched");
    assert_eq!(count(&mut session, "shipped").await, 1);
    session.run_collect("CREATE TABLE mine AS SELECT 2 AS a").await.expect("ctas");
    assert!(config.ddl_dir.join("mine.toml").exists());
    assert!(!config.catalog_dir.join("mine.toml").exists());
    engine.catalog().stop_sources().await;
    drop(session);
    drop(engine);
    // One directory for both: DDL writes where it reads, as before the split.
    let mut same = config.clone();
    same.ddl_dir = same.catalog_dir.clone();
    std::fs::rename(config.ddl_dir.join("lake.toml"), same.catalog_dir.join("lake.toml")).expect("move");
    std::fs::remove_file(config.ddl_dir.join("mine.toml")).expect("forget mine");
    let engine = Engine::open(same).await.expect("engine opens");
    let mut session = engine.session();
    session.run_collect("DROP SINK feed_sink; DROP MATERIALIZED VIEW feed_view").await.expect("writable");
    let left = std::fs::read_to_string(&declared).expect("declared");
    assert!(!left.contains("feed_sink") && !left.contains("feed_view") && left.contains("shipped"), "{left}");
    engine.catalog().stop_sources().await;
}

/// A table a view or a sink reads cannot be dropped from under it (2BP01, as for a source):
/// the next start plans the view again and would fail. Once they are gone, it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_read_by_a_view_or_sink_is_not_dropped_from_under_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::rooted_at(dir.path());
    let engine = Engine::open(config.clone()).await.expect("engine opens");
    let mut session = engine.session();
    session
        .run_collect(
            "CREATE TABLE lookup (a BIGINT, b TEXT); INSERT INTO lookup VALUES (1, 'one');
             CREATE SOURCE ev (a BIGINT) WITH (connector = 'ingest');
             CREATE MATERIALIZED VIEW joined AS SELECT e.a, l.b FROM ev e JOIN lookup l ON l.a = e.a;
             CREATE TABLE other (a BIGINT);
             CREATE SINK other_sink AS SELECT e.a FROM ev e WHERE e.a IN (SELECT a FROM other)
               WITH (connector = 'notify', channel = 'c')",
        )
        .await
        .expect("setup");
    for (sql, reader) in [("DROP TABLE lookup", "joined"), ("DROP TABLE other", "other_sink")] {
        let error = session.run_collect(sql).await.err().unwrap_or_else(|| panic!("{sql} must be refused"));
        assert_eq!(error.code, "2BP01", "{sql}");
        assert!(error.message.contains(reader), "{}", error.message);
    }
    engine.catalog().stop_sources().await;
    drop(session);
    drop(engine);
    let engine = Engine::open(config).await.expect("the next start plans the view again");
    let mut session = engine.session();
    session
        .run_collect("DROP MATERIALIZED VIEW joined; DROP SINK other_sink; DROP TABLE lookup; DROP TABLE other")
        .await
        .expect("drops in order");
    engine.catalog().stop_sources().await;
}

/// Writes, a rename and a new column survive a restart: the catalog file moves with the
/// name, the data stays where it was, and the new name's history has every commit.
#[tokio::test]
async fn writes_and_alterations_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let first = engine(dir.path(), 5_000).await;
        let mut session = first.session();
        session
            .run_collect(
                "CREATE TABLE before (id BIGINT);
                 INSERT INTO before VALUES (1), (2), (3);
                 UPDATE before SET id = id * 10 WHERE id > 1;
                 DELETE FROM before WHERE id = 1;
                 ALTER TABLE before ADD COLUMN note TEXT;
                 MERGE INTO before USING (SELECT 20 AS id, 'merged' AS note) AS s ON before.id = s.id
                   WHEN MATCHED THEN UPDATE SET note = s.note;
                 ALTER TABLE before RENAME TO after",
            )
            .await
            .expect("writes");
    }
    assert!(!dir.path().join("data/catalog/before.toml").exists(), "the old name's declaration is gone");
    assert!(dir.path().join("data/catalog/after.toml").exists(), "the new name is declared");
    assert!(dir.path().join("data/tables/before/_delta_log").exists(), "the data stayed where it was");
    let second = engine(dir.path(), 5_000).await;
    let mut session = second.session();
    assert_eq!(
        texts(&mut session, "SELECT id || ':' || coalesce(note, '-') FROM after ORDER BY id").await,
        vec!["20:merged", "30:-"]
    );
    assert_eq!(
        texts(&mut session, "SELECT operation FROM table_history('after') ORDER BY version").await,
        vec!["CREATE TABLE", "WRITE", "UPDATE", "DELETE", "ADD COLUMN", "MERGE"]
    );
    // A new table of the old name gets a directory of its own.
    session.run_collect("CREATE TABLE before (x BIGINT)").await.expect("the old name is free");
    assert_eq!(count(&mut session, "before").await, 0);
    assert_eq!(count(&mut session, "after").await, 2);
}

/// Polls a count query in `session` until it reaches `want`, within a deadline.
async fn wait_for_count(session: &mut Session, sql: &str, want: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let results = session.run_collect(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let got = results[0]
            .batches
            .first()
            .map_or(0, |batch| batch.column(0).as_any().downcast_ref::<Int64Array>().expect("count is int8").value(0));
        if got == want {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{sql}: {got}, waited for {want}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Plain views persist as `[[view]]` catalog files and are planned again at every read:
/// a view over a Delta table sees a commit made by another writer after it was created,
/// views over views and OR REPLACE survive a restart (registered in dependency order),
/// DROP ... CASCADE takes dependent views along and RESTRICT refuses, and a materialized
/// view can read a plain view over a source (then DROP VIEW is refused while it runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_survive_a_restart_and_see_later_commits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let table_dir = dir.path().join("data/tables/t");
    {
        let first = engine(dir.path(), 0).await;
        let mut session = first.session();
        session.run_collect("CREATE TABLE t (id BIGINT); INSERT INTO t VALUES (1), (2), (3)").await.expect("table");
        let missing = session.run_collect("CREATE VIEW a_top (n) AS SELECT id FROM b_mid").await.err();
        assert_eq!(missing.expect("a view over a relation that does not exist is refused").code, "42P01");
        session
            .run_collect(
                "CREATE VIEW b_mid AS SELECT id FROM t WHERE id >= 2;
                 CREATE VIEW a_top (n) AS SELECT id FROM b_mid WHERE id > 2;
                 CREATE VIEW gone AS SELECT id FROM t",
            )
            .await
            .expect("views");
        assert_eq!(count(&mut session, "b_mid").await, 2);
        assert_eq!(count(&mut session, "a_top").await, 1);
        session.run_collect("CREATE OR REPLACE VIEW b_mid AS SELECT id FROM t WHERE id >= 1").await.expect("replace");
        session.run_collect("DROP VIEW gone").await.expect("drop");
        first.catalog().stop_sources().await;
    }
    let file = std::fs::read_to_string(dir.path().join("data/catalog/b_mid.toml")).expect("one file per view");
    assert!(file.contains("[[view]]") && file.contains("id >= 1"), "{file}");
    assert!(!dir.path().join("data/catalog/gone.toml").exists(), "a dropped view leaves the catalog");
    // a_top sorts before b_mid, which it reads: the start registers them in dependency order.
    let second = engine(dir.path(), 0).await;
    let mut session = second.session();
    assert_eq!(count(&mut session, "b_mid").await, 3, "the replaced definition survived");
    assert_eq!(count(&mut session, "a_top").await, 1);
    append_elsewhere(&table_dir, &[10, 11]).await;
    assert_eq!(count(&mut session, "a_top").await, 3, "the view reads the latest commit");
    let names = texts(&mut session, "SELECT n FROM a_top ORDER BY n").await;
    assert_eq!(names, vec!["3", "10", "11"]);
    // RESTRICT refuses with PostgreSQL's words; CASCADE drops both views.
    let error = session.run_collect("DROP TABLE t").await.expect_err("refused");
    assert_eq!(error.code, "2BP01");
    assert_eq!(error.message, "cannot drop table t because other objects depend on it");
    assert_eq!(error.detail.as_deref(), Some("view b_mid depends on table t\nview a_top depends on view b_mid"));
    assert_eq!(error.hint.as_deref(), Some("Use DROP ... CASCADE to drop the dependent objects too."));
    let dropped = session.run_collect("DROP TABLE t CASCADE").await.expect("cascade");
    assert_eq!(dropped[0].notices[0].message, "drop cascades to 2 other objects");
    assert_eq!(
        dropped[0].notices[0].detail.as_deref(),
        Some("drop cascades to view b_mid\ndrop cascades to view a_top")
    );
    assert!(
        !dir.path().join("data/catalog/a_top.toml").exists() && !dir.path().join("data/catalog/b_mid.toml").exists()
    );
    assert_eq!(session.run_collect("SELECT * FROM a_top").await.expect_err("gone").code, "42P01");

    // A materialized view over a plain view over a source: its plan reads the source.
    session
        .run_collect(
            "CREATE SOURCE ev (id BIGINT) WITH (connector = 'ingest');
             CREATE VIEW odd AS SELECT id FROM ev WHERE id % 2 = 1;
             CREATE MATERIALIZED VIEW odd_kept AS SELECT id FROM odd;
             INSERT INTO ev VALUES (1), (2), (3)",
        )
        .await
        .expect("a materialized view over a view");
    wait_for_count(&mut session, "SELECT count(*) FROM odd_kept", 2).await;
    for sql in ["DROP VIEW odd", "DROP VIEW odd CASCADE", "DROP SOURCE ev CASCADE"] {
        let error = session.run_collect(sql).await.err().unwrap_or_else(|| panic!("{sql} must be refused"));
        assert_eq!(error.code, "2BP01", "{sql}");
        assert!(error.message.contains("odd_kept"), "{sql}: {}", error.message);
    }
    second.catalog().stop_sources().await;
    drop(session);
    drop(second);
    // After a restart the materialized view is planned again through the view.
    let third = engine(dir.path(), 0).await;
    let mut session = third.session();
    session.run_collect("INSERT INTO ev VALUES (5), (6)").await.expect("insert");
    wait_for_count(&mut session, "SELECT count(*) FROM odd_kept", 3).await;
    session
        .run_collect("DROP MATERIALIZED VIEW odd_kept; DROP SOURCE ev CASCADE")
        .await
        .expect("drops once nothing continuous reads the view");
    assert_eq!(session.run_collect("SELECT * FROM odd").await.expect_err("cascaded").code, "42P01");
    third.catalog().stop_sources().await;
}

/// A view declared in the checked-in catalog directory is read-only like the other
/// declared objects: DROP VIEW and CREATE OR REPLACE VIEW are refused with 42501, and a
/// DROP TABLE ... CASCADE that would take it along too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_view_is_read_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::rooted_at(dir.path());
    {
        let engine = Engine::open(config.clone()).await.expect("engine opens");
        engine
            .session()
            .run_collect("CREATE TABLE lake (a BIGINT); INSERT INTO lake VALUES (1), (2)")
            .await
            .expect("table");
    }
    std::fs::create_dir_all(&config.catalog_dir).expect("catalog dir");
    let declared = config.catalog_dir.join("shipped.toml");
    let text = "[[view]]\nname = \"shipped_view\"\nquery = \"SELECT a FROM lake WHERE a > 1\"\ncolumns = [\"x\"]\n";
    std::fs::write(&declared, text).expect("declared catalog");
    let engine = Engine::open(config.clone()).await.expect("engine opens");
    let mut session = engine.session();
    assert_eq!(texts(&mut session, "SELECT x FROM shipped_view").await, vec!["2"]);
    for sql in [
        "DROP VIEW shipped_view",
        "CREATE OR REPLACE VIEW shipped_view AS SELECT a AS x FROM lake",
        "DROP TABLE lake CASCADE",
    ] {
        let error = session.run_collect(sql).await.err().unwrap_or_else(|| panic!("{sql} must be refused"));
        assert_eq!(error.code, "42501", "{sql}");
        assert!(error.message.contains("shipped.toml"), "{}", error.message);
    }
    assert_eq!(std::fs::read_to_string(&declared).expect("declared"), text, "the declared file is untouched");
    assert_eq!(texts(&mut session, "SELECT x FROM shipped_view").await, vec!["2"]);
}

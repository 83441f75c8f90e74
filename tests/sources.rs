//! Sources over the wire: ingest durability across kill -9 (a real server process),
//! event-time pruning, the datagen connector and the watershed.sources view.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

/// A watershed server process on its own data and catalog dirs.
struct Process {
    child: Child,
    port: u16,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("addr").port()
}

impl Process {
    fn start(root: &std::path::Path, port: u16) -> Process {
        let child = Command::new(env!("CARGO_BIN_EXE_watershed"))
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(root.join("data"))
            .arg("--catalog-dir")
            .arg(root.join("catalog"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the watershed binary starts");
        Process { child, port }
    }

    /// Connects, retrying while the server is still starting (bounded by a deadline).
    async fn connect(&mut self) -> Client {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("host=127.0.0.1 port={} user=watershed dbname=watershed", self.port);
        loop {
            match tokio_postgres::connect(&url, NoTls).await {
                Ok((client, connection)) => {
                    tokio::spawn(connection);
                    return client;
                }
                Err(error) => {
                    if let Some(status) = self.child.try_wait().expect("child status") {
                        panic!("server exited with {status} before accepting connections");
                    }
                    assert!(Instant::now() < deadline, "server not accepting connections: {error}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ROWS_PER_STATEMENT: i64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_ingest_rows_survive_kill_9() {
    let root = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut server = Process::start(root.path(), port);
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE SOURCE s (id BIGINT NOT NULL, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
             WITH (connector = 'ingest', segment_bytes = '4KB')",
        )
        .await
        .expect("create source");

    // Four writers insert statements of ten rows; each records the statements the server
    // acknowledged. The server is killed while they are writing.
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel::<i64>();
    let mut writers = Vec::new();
    for writer in 0..4i64 {
        let connection = server.connect().await;
        let acked = acked_tx.clone();
        writers.push(tokio::spawn(async move {
            for statement in 0.. {
                let first = (writer * 1_000_000 + statement) * ROWS_PER_STATEMENT;
                let sql = format!(
                    "INSERT INTO s SELECT {first} + value, now() FROM generate_series(0, {}) AS g(value)",
                    ROWS_PER_STATEMENT - 1
                );
                match connection.batch_execute(&sql).await {
                    Ok(()) => {
                        if acked.send(first).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    drop(acked_tx);
    let mut acknowledged = Vec::new();
    while acknowledged.len() < 200 {
        acknowledged.push(acked_rx.recv().await.expect("writers keep acknowledging"));
    }
    server.kill_9();
    for writer in writers {
        writer.await.expect("writer task ends once the server is gone");
    }
    while let Ok(first) = acked_rx.try_recv() {
        acknowledged.push(first);
    }

    let mut server = Process::start(root.path(), port);
    let client = server.connect().await;
    let rows = client.query("SELECT id FROM s", &[]).await.expect("read back");
    let ids: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    for first in &acknowledged {
        for id in *first..first + ROWS_PER_STATEMENT {
            assert!(ids.contains(&id), "acknowledged row {id} was lost");
        }
    }
    // Statements are atomic: each one's rows are all there or none is.
    for id in &ids {
        let first = id - id.rem_euclid(ROWS_PER_STATEMENT);
        for sibling in first..first + ROWS_PER_STATEMENT {
            assert!(ids.contains(&sibling), "row {id} is there but {sibling} of the same INSERT is not");
        }
    }
    assert!(ids.len() as i64 >= acknowledged.len() as i64 * ROWS_PER_STATEMENT);
    // The restarted source accepts more rows after the replayed ones.
    client.batch_execute("INSERT INTO s VALUES (-1, now())").await.expect("insert after restart");
    let count: i64 = client.query_one("SELECT count(*) FROM s", &[]).await.unwrap().get(0);
    assert_eq!(count, ids.len() as i64 + 1);
}

async fn start_in_process() -> (Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = watershed::session::Engine::open(watershed::config::Config::rooted_at(dir.path()))
        .await
        .expect("engine opens");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        watershed::server::serve(engine, listener, std::future::pending()).await.expect("serves");
    });
    let url = format!("host=127.0.0.1 port={port} user=watershed dbname=watershed");
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.expect("connects");
    tokio::spawn(connection);
    (client, dir)
}

#[tokio::test]
async fn filters_on_event_time_skip_chunks() {
    let (client, _dir) = start_in_process().await;
    client
        .batch_execute(
            "CREATE SOURCE s (id BIGINT, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts) WITH (connector = 'ingest')",
        )
        .await
        .unwrap();
    // Two hours of events, one INSERT per five minutes of event time.
    for slot in 0..24 {
        client
            .batch_execute(&format!(
                // 1767225600 s is 2026-01-01T00:00:00Z.
                "INSERT INTO s SELECT {slot} * 100 + value, to_timestamp_seconds(1767225600 + {slot} * 300 + value) \
                 FROM generate_series(0, 99) AS g(value)"
            ))
            .await
            .unwrap();
    }
    let last_five_minutes = "FROM s WHERE ts >= TIMESTAMPTZ '2026-01-01T01:55:00Z'";
    let count: i64 = client.query_one(&format!("SELECT count(*) {last_five_minutes}"), &[]).await.unwrap().get(0);
    assert_eq!(count, 100);
    let plan = client.query(&format!("EXPLAIN SELECT count(*) {last_five_minutes}"), &[]).await.unwrap();
    let text: String = plan.iter().map(|row| row.get::<_, String>(1)).collect::<Vec<_>>().join("\n");
    assert!(
        text.contains("chunks_retained=24, chunks_scanned=1"),
        "only the last chunk is read:\n{text}"
    );
}

#[tokio::test]
async fn datagen_fills_a_source_and_the_view_reports_it() {
    let (client, _dir) = start_in_process().await;
    client
        .batch_execute(
            "CREATE SOURCE clicks (user_id BIGINT, campaign_id BIGINT, product_id BIGINT, ts TIMESTAMPTZ, \
             WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) \
             WITH (connector = 'datagen', kind = 'clicks', rate = '200/s', backfill = '1 minute', scale = '0.01', batch_interval = '1ms')",
        )
        .await
        .unwrap();
    // The backfilled minute appears at the generator's first tick.
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let row = client
            .query_one("SELECT events, connector, watermark IS NOT NULL FROM watershed.sources WHERE name = 'clicks'", &[])
            .await
            .unwrap();
        let events: i64 = row.get(0);
        if events >= 12_000 {
            assert_eq!(row.get::<_, String>(1), "datagen");
            assert!(row.get::<_, bool>(2), "a watermark once events arrived");
            break events;
        }
        assert!(Instant::now() < deadline, "datagen produced only {events} events");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(events >= 12_000);
    // Ad clicks carry campaigns of the demo shop (ids 1..=campaigns at this scale).
    let row = client
        .query_one("SELECT count(*) FILTER (WHERE campaign_id IS NOT NULL), max(campaign_id), min(product_id) FROM clicks", &[])
        .await
        .unwrap();
    assert!(row.get::<_, i64>(0) > 0);
    assert!(row.get::<_, i64>(1) <= 10, "scale 0.01 has 10 campaigns");
    assert!(row.get::<_, i64>(2) >= 1);
    // One statement sees one snapshot: two scans of the source agree while it grows.
    for _ in 0..20 {
        let row = client
            .query_one("SELECT (SELECT count(*) FROM clicks) - (SELECT count(*) FROM clicks)", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), 0);
    }
    let shown = client.query("SHOW SOURCES", &[]).await.unwrap();
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].get::<_, String>("name"), "clicks");
}

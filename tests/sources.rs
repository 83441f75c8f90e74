//! Sources over the wire: ingest durability across kill -9 (a real server process),
//! event-time pruning, the datagen connector and the watershed.sources view.

mod support;

use support::{Process, free_port, start_in_process};

use std::time::{Duration, Instant};

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
    assert!(text.contains("chunks_retained=24, chunks_scanned=1"), "only the last chunk is read:\n{text}");
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
            .query_one(
                "SELECT events, connector, watermark IS NOT NULL FROM watershed.sources WHERE name = 'clicks'",
                &[],
            )
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
        .query_one(
            "SELECT count(*) FILTER (WHERE campaign_id IS NOT NULL), max(campaign_id), min(product_id) FROM clicks",
            &[],
        )
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

#[tokio::test]
async fn copy_from_stdin_feeds_an_ingest_source_atomically() {
    use futures::SinkExt;
    let (client, _dir) = start_in_process().await;
    client
        .batch_execute(
            "CREATE SOURCE s (id BIGINT NOT NULL, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
             WITH (connector = 'ingest')",
        )
        .await
        .unwrap();
    let copy = |data: String| {
        let client = &client;
        async move {
            let sink = client.copy_in::<_, bytes::Bytes>("COPY s FROM STDIN WITH (FORMAT csv)").await?;
            futures::pin_mut!(sink);
            sink.send(bytes::Bytes::from(data)).await?;
            sink.finish().await
        }
    };
    let rows: String = (0..5_000).map(|i| format!("{i},2026-01-01T00:00:{:02}Z\n", i % 60)).collect();
    assert_eq!(copy(rows).await.expect("copy into the source"), 5_000);
    // A malformed row: the whole COPY is refused and nothing of it is retained.
    let error =
        copy("5000,2026-01-01T00:00:00Z\nnot-a-number,2026-01-01T00:00:01Z\n".into()).await.expect_err("malformed row");
    assert_eq!(error.code(), Some(&tokio_postgres::error::SqlState::INVALID_TEXT_REPRESENTATION));
    let row = client.query_one("SELECT count(*), max(id) FROM s", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 5_000);
    assert_eq!(row.get::<_, i64>(1), 4_999);
}

#[tokio::test]
async fn retention_drops_events_and_deletes_segments() {
    let (client, dir) = start_in_process().await;
    client
        .batch_execute(
            "CREATE SOURCE s (id BIGINT, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts) \
             WITH (connector = 'ingest', retention = '1 second', segment_bytes = '1KB')",
        )
        .await
        .unwrap();
    for statement in 0..20 {
        client
            .batch_execute(&format!(
                "INSERT INTO s SELECT {statement} * 100 + value, now() FROM generate_series(0, 99) AS g(value)"
            ))
            .await
            .unwrap();
    }
    let segments = || std::fs::read_dir(dir.path().join("data/sources/s")).unwrap().count();
    assert!(segments() > 1, "1KB segments roll over");
    // Upkeep runs every second; within a few ticks the events are past retention.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let retained: i64 = client.query_one("SELECT events FROM watershed.sources", &[]).await.unwrap().get(0);
        if retained == 0 && segments() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "still {retained} events and {} segments", segments());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let count: i64 = client.query_one("SELECT count(*) FROM s", &[]).await.unwrap().get(0);
    assert_eq!(count, 0);
    let total: i64 = client.query_one("SELECT events_total FROM watershed.sources", &[]).await.unwrap().get(0);
    assert_eq!(total, 2_000, "offsets keep counting past retention");
}

/// The Nexmark connector: three sources of one bounded sequence, and q8 (people who opened
/// auctions, per window) as a window-join view equal to the same query run as a batch
/// over the windows the view has closed.
#[tokio::test]
async fn nexmark_sources_share_one_sequence_and_q8_runs_as_a_view() {
    let (client, _dir) = start_in_process().await;
    let columns = [
        (
            "person",
            "id BIGINT, name TEXT, email_address TEXT, credit_card TEXT, city TEXT, state TEXT, date_time TIMESTAMPTZ, extra TEXT",
        ),
        (
            "auction",
            "id BIGINT, item_name TEXT, description TEXT, initial_bid BIGINT, reserve BIGINT, date_time TIMESTAMPTZ, \
             expires TIMESTAMPTZ, seller BIGINT, category BIGINT, extra TEXT",
        ),
        (
            "bid",
            "auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT, url TEXT, date_time TIMESTAMPTZ, extra TEXT",
        ),
    ];
    for (table, columns) in columns {
        client
            .batch_execute(&format!(
                "CREATE SOURCE {table} ({columns}, WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND) \
                 WITH (connector = 'nexmark', table = '{table}', rate = '1000/s', events = '20000', backfill = '1 minute')"
            ))
            .await
            .unwrap();
    }
    let error = client
        .batch_execute("CREATE SOURCE b2 (auction BIGINT) WITH (connector = 'nexmark', table = 'bid')")
        .await
        .expect_err("wrong columns");
    assert_eq!(error.code().map(|c| c.code()), Some("42804"), "{error}");
    // 20,000 events: of every 50, 1 person, 3 auctions and 46 bids.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row = client
            .query_one("SELECT (SELECT count(*) FROM person) AS p, (SELECT count(*) FROM auction) AS a, (SELECT count(*) FROM bid) AS b", &[])
            .await
            .unwrap();
        let counts: (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        if counts == (400, 1_200, 18_400) {
            break;
        }
        assert!(Instant::now() < deadline, "the sequence is incomplete: {counts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // 20 s of event time at 1000 events/s.
    let row = client
        .query_one("SELECT extract(epoch FROM max(date_time) - min(date_time))::float8 FROM auction", &[])
        .await
        .unwrap();
    let span_s: f64 = row.get(0);
    // (extract(epoch) of a timestamp difference counts whole seconds in DataFusion 55.)
    assert!((19.0..20.0).contains(&span_s), "event time spans {span_s} s");
    let q8 = "SELECT P.id, P.name, P.window_end FROM ( \
                SELECT id, name, window_start, window_end FROM TUMBLE(person, date_time, INTERVAL '2' SECOND) \
                GROUP BY id, name, window_start, window_end) P \
              JOIN ( \
                SELECT seller, window_start, window_end FROM TUMBLE(auction, date_time, INTERVAL '2' SECOND) \
                GROUP BY seller, window_start, window_end) A \
              ON P.id = A.seller AND P.window_start = A.window_start AND P.window_end = A.window_end";
    client.batch_execute(&format!("CREATE MATERIALIZED VIEW q8 AS {q8}")).await.unwrap();
    // Once the view has read every person and auction, its windows up to its watermark are
    // closed and must equal the batch query's.
    let rows = |sql: String| {
        let client = &client;
        async move {
            client
                .query(&sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1), r.get::<_, String>(2)))
                .collect::<Vec<_>>()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = client
            .query_one("SELECT events_in, watermark FROM watershed.materialized_views WHERE name = 'q8'", &[])
            .await
            .unwrap();
        let watermark: Option<std::time::SystemTime> = state.get(1);
        if state.get::<_, i64>(0) == 1_600 && watermark.is_some() {
            let view = rows("SELECT id, name, window_end::text FROM q8 ORDER BY 3, 1".into()).await;
            let batch = rows(format!(
                "SELECT id, name, window_end::text FROM ({q8}) q \
                 WHERE window_end <= (SELECT watermark FROM watershed.materialized_views WHERE name = 'q8') ORDER BY 3, 1"
            ))
            .await;
            if view == batch && view.len() >= 5 {
                break;
            }
            assert!(Instant::now() < deadline, "q8 view {view:?}\nbatch {batch:?}");
        }
        assert!(Instant::now() < deadline, "q8 did not read the sequence");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

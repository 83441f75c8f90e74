//! Materialized views, subscriptions and sinks over the wire.
//!
//! The differential tests feed the same seeded, out-of-order (but not late) events to an
//! ingest source, let views over each window type close every window but the last, and
//! compare each view with the ad-hoc batch query over the same source: incremental
//! maintenance must give exactly the rows of the batch query.

mod support;

use std::time::{Duration, Instant};

use support::{Process, Server, code_of, free_port};
use tokio_postgres::{Client, SimpleQueryMessage};

/// 2026-01-01 00:00:00 UTC, in ms.
const BASE_MS: i64 = 1_767_225_600_000;
const EVENTS: i64 = 3_000;
/// Events are 200 ms apart in nominal time and displaced by up to ±5 s, under the
/// source's 10 s watermark delay: out of order, never late.
const SPACING_MS: i64 = 200;
const JITTER_MS: i64 = 5_000;

const SOURCE: &str = "CREATE SOURCE ev (k TEXT, v BIGINT, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts - INTERVAL '10' SECOND) \
                      WITH (connector = 'ingest')";

/// A small deterministic generator (no shared RNG state between tests).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

/// (k, v, ts_ms) in arrival order.
fn events(seed: u64) -> Vec<(String, i64, i64)> {
    let mut rng = Lcg(seed);
    (0..EVENTS)
        .map(|i| {
            let jitter = (rng.next() % (2 * JITTER_MS as u64 + 1)) as i64 - JITTER_MS;
            let k = format!("k{}", rng.next() % 5);
            let v = (rng.next() % 100) as i64;
            (k, v, BASE_MS + i * SPACING_MS + jitter)
        })
        .collect()
}

async fn insert(client: &Client, events: &[(String, i64, i64)]) {
    insert_into(client, "ev", events).await;
}

async fn insert_into(client: &Client, table: &str, events: &[(String, i64, i64)]) {
    for chunk in events.chunks(250) {
        let values: Vec<String> =
            chunk.iter().map(|(k, v, ts)| format!("('{k}', {v}, to_timestamp_millis({ts}))")).collect();
        client.batch_execute(&format!("INSERT INTO {table} VALUES {}", values.join(", "))).await.expect("insert");
    }
}

/// Rows of a query as text, as a client sees them.
async fn text_rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", e.as_db_error().map_or(e.to_string(), |d| d.message().to_string())));
    messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect()),
            _ => None,
        })
        .collect()
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

/// Polls `sql` (one BIGINT) until it reaches `want`, within a deadline.
async fn wait_for_count(client: &Client, sql: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = count(client, sql).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {got}, waited for {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One past the last nominal event: an event there closes every window before it.
fn closing_ms() -> i64 {
    BASE_MS + EVENTS * SPACING_MS + 3_600_000
}

/// Feeds the events and the closing event, then checks each view against its query run
/// as a batch over the source, restricted to the windows the watermark has closed.
async fn views_equal_batch(client: &Client, views: &[(&str, &str)]) {
    for (name, query) in views {
        client.batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}")).await.expect("create view");
    }
    insert(client, &events(7)).await;
    insert(client, &[("k0".to_string(), 0, closing_ms())]).await;
    let watermark = format!("to_timestamp_millis({}) AT TIME ZONE 'UTC'", closing_ms() - 10_000);
    for (name, query) in views {
        let batch = format!("SELECT * FROM ({query}) q WHERE window_end <= {watermark} ORDER BY 1, 2, 3");
        let expected = text_rows(client, &batch).await;
        assert!(expected.len() >= 10, "{name}: the batch query has rows ({})", expected.len());
        wait_for_count(client, &format!("SELECT count(*) FROM {name}"), expected.len() as i64).await;
        let got = text_rows(client, &format!("SELECT * FROM {name} ORDER BY 1, 2, 3")).await;
        assert_eq!(got, expected, "view {name} equals its batch query");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tumble_hop_and_cumulate_views_equal_the_batch_query() {
    let server = Server::start(tempfile::tempdir().unwrap(), |_| {}).await;
    let client = server.client().await;
    client.batch_execute(SOURCE).await.unwrap();
    views_equal_batch(
        &client,
        &[
            (
                "t",
                "SELECT window_start, window_end, k, count(*) AS n, sum(v) AS s, avg(v) AS a, min(v) AS lo, max(v) AS hi, \
                 count(DISTINCT v % 7) AS d FROM TUMBLE(ev, ts, INTERVAL '1' MINUTE) GROUP BY window_start, window_end, k",
            ),
            (
                "h",
                "SELECT window_start, window_end, k, count(*) AS n, sum(v) AS s, approx_distinct(v) AS d \
                 FROM HOP(ev, ts, INTERVAL '30' SECOND, INTERVAL '2' MINUTE) WHERE v > 10 GROUP BY window_start, window_end, k",
            ),
            (
                "c",
                "SELECT window_start, window_end, count(*) AS n, sum(v) AS s, max(v) - min(v) AS spread \
                 FROM CUMULATE(ev, ts, INTERVAL '30' SECOND, INTERVAL '2' MINUTE) GROUP BY window_start, window_end \
                 HAVING count(*) > 10",
            ),
        ],
    )
    .await;
    let state = text_rows(
        &client,
        "SELECT name, emit, late_rows, windows_open, last_error FROM watershed.materialized_views ORDER BY name",
    )
    .await;
    assert_eq!(state.len(), 3);
    for row in &state {
        assert_eq!(row[1].as_deref(), Some("EMIT ON WINDOW CLOSE"));
        assert_eq!(row[2].as_deref(), Some("0"), "no late rows: {row:?}");
        assert_eq!(row[4], None, "no error: {row:?}");
        // At most the closing event's windows stay open: state is bounded by the watermark.
        let open: i64 = row[3].as_deref().unwrap().parse().unwrap();
        assert!((0..=4).contains(&open), "{row:?}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_join_of_two_sources_equals_the_batch_query() {
    let server = Server::start(tempfile::tempdir().unwrap(), |_| {}).await;
    let client = server.client().await;
    client.batch_execute(SOURCE).await.unwrap();
    client.batch_execute(&SOURCE.replace("ev (", "ev2 (")).await.unwrap();
    // The second source gets its own events; the view's watermark is the least of both.
    insert_into(&client, "ev2", &events(99)).await;
    insert_into(&client, "ev2", &[("k0".to_string(), 0, closing_ms())]).await;
    views_equal_batch(
        &client,
        &[(
            "j",
            "SELECT a.window_start, a.window_end, a.k, count(*) AS pairs, sum(b.v) AS s \
             FROM TUMBLE(ev, ts, INTERVAL '1' MINUTE) a JOIN TUMBLE(ev2, ts, INTERVAL '1' MINUTE) b \
               ON a.k = b.k AND a.window_start = b.window_start AND a.window_end = b.window_end \
             GROUP BY a.window_start, a.window_end, a.k",
        )],
    )
    .await;
    let state = text_rows(&client, "SELECT source, last_error FROM watershed.materialized_views").await;
    assert_eq!(state, vec![vec![Some("ev, ev2".to_string()), None]]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_rows_are_counted_not_added_and_views_survive_a_restart() {
    let server = Server::start(tempfile::tempdir().unwrap(), |_| {}).await;
    let client = server.client().await;
    client.batch_execute(SOURCE).await.unwrap();
    views_equal_batch(
        &client,
        &[(
            "t",
            "SELECT window_start, window_end, count(*) AS n, sum(v) AS s FROM TUMBLE(ev, ts, INTERVAL '1' MINUTE) \
             GROUP BY window_start, window_end",
        )],
    )
    .await;
    let before = text_rows(&client, "SELECT * FROM t ORDER BY 1").await;
    // An event for the first (long closed) window: late, counted, not added.
    insert(&client, &[("k1".to_string(), 1_000, BASE_MS + 1_000)]).await;
    wait_for_count(&client, "SELECT late_rows FROM watershed.materialized_views WHERE name = 't'", 1).await;
    assert_eq!(text_rows(&client, "SELECT * FROM t ORDER BY 1").await, before, "a late row changes no closed window");

    // After a restart the view replays its source and shows the same rows: the log
    // replays in arrival order and finds the same row late again.
    let dir = server.stop().await;
    let server = Server::start(dir, |_| {}).await;
    let client = server.client().await;
    wait_for_count(&client, "SELECT count(*) FROM t", before.len() as i64).await;
    assert_eq!(text_rows(&client, "SELECT * FROM t ORDER BY 1").await, before, "the same rows after a restart");
    server.stop().await;
}

/// Flink's rule, checked against its window tests with late events: a row behind the
/// watermark is late for a view only when its window was already emitted. A row behind the
/// watermark whose window is still open counts, live and after a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_behind_the_watermark_count_in_windows_not_yet_emitted() {
    let server = Server::start(tempfile::tempdir().unwrap(), |_| {}).await;
    let client = server.client().await;
    client.batch_execute(SOURCE).await.unwrap();
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW m AS SELECT window_start, window_end, count(*) AS n, sum(v) AS s \
             FROM TUMBLE(ev, ts, INTERVAL '1' MINUTE) GROUP BY window_start, window_end",
        )
        .await
        .unwrap();
    let at = |s: i64| BASE_MS + s * 1_000;
    // Watermark 40 s after the second row (delay 10 s); 35 s is behind it, but the window
    // [0, 60 s) ends ahead of it: on time for the view.
    insert(&client, &[("k".to_string(), 1, at(0))]).await;
    insert(&client, &[("k".to_string(), 2, at(50))]).await;
    insert(&client, &[("k".to_string(), 4, at(35))]).await;
    assert_eq!(
        count(&client, "SELECT late_rows FROM watershed.sources WHERE name = 'ev'").await,
        1,
        "behind the watermark"
    );
    // 70 s closes [0, 60 s) (watermark 60 s); then 20 s is late: its window was emitted.
    insert(&client, &[("k".to_string(), 8, at(70))]).await;
    wait_for_count(&client, "SELECT count(*) FROM m", 1).await;
    insert(&client, &[("k".to_string(), 16, at(20))]).await;
    wait_for_count(&client, "SELECT late_rows FROM watershed.materialized_views WHERE name = 'm'", 1).await;
    let expected = vec![vec![Some("3".to_string()), Some("7".to_string())]];
    assert_eq!(text_rows(&client, "SELECT n, s FROM m").await, expected, "the row behind the watermark counts");

    // A replay reads the whole log at once and decides the same.
    let dir = server.stop().await;
    let server = Server::start(dir, |_| {}).await;
    let client = server.client().await;
    wait_for_count(&client, "SELECT count(*) FROM m", 1).await;
    wait_for_count(&client, "SELECT late_rows FROM watershed.materialized_views WHERE name = 'm'", 1).await;
    assert_eq!(text_rows(&client, "SELECT n, s FROM m").await, expected, "the same after a replay");
    server.stop().await;
}

/// A limit refuses before it is passed, and a view that cannot go on stops and says why:
/// it never emits windows that miss the rows of the step it refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_past_a_limit_stops_and_emits_nothing_partial() {
    let server = Server::start(tempfile::tempdir().unwrap(), |config| config.limits.views.windows_open_max = 3).await;
    let client = server.client().await;
    client.batch_execute(SOURCE).await.unwrap();
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW m AS SELECT window_start, window_end, count(*) AS n \
             FROM TUMBLE(ev, ts, INTERVAL '1' SECOND) GROUP BY window_start, window_end",
        )
        .await
        .unwrap();
    // Two windows: within the limit, and nothing closes (watermark 10 s behind).
    insert(&client, &[("k".to_string(), 1, BASE_MS), ("k".to_string(), 1, BASE_MS + 1_000)]).await;
    // Five more windows in one statement: over windows_open_max = 3, refused whole.
    let five: Vec<_> = (2..7).map(|s| ("k".to_string(), 1, BASE_MS + s * 1_000)).collect();
    insert(&client, &five).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = text_rows(&client, "SELECT state, last_error FROM watershed.materialized_views").await;
        if state[0][0].as_deref() == Some("stopped") {
            let error = state[0][1].clone().expect("the reason is shown");
            assert!(error.contains("windows_open_max = 3"), "{error}");
            break;
        }
        assert!(Instant::now() < deadline, "the view did not stop: {state:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An event that would close every window: a stopped view emits nothing, in
    // particular not the first two windows without the rows it refused. Its task has
    // ended (state is set as it leaves its loop), so nothing needs waiting for: the
    // acknowledged row is in the source, and the view reads no more.
    let read_before = count(&client, "SELECT events_in FROM watershed.materialized_views").await;
    insert(&client, &[("k".to_string(), 1, BASE_MS + 3_600_000)]).await;
    assert_eq!(count(&client, "SELECT count(*) FROM m").await, 0);
    assert_eq!(count(&client, "SELECT events_in FROM watershed.materialized_views").await, read_before);
    assert_eq!(count(&client, "SELECT count(*) FROM ev").await, 8, "the source keeps every row");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_that_cannot_be_maintained_are_refused_with_the_reason() {
    let server = Server::start(tempfile::tempdir().unwrap(), |_| {}).await;
    let client = server.client().await;
    client.batch_execute(SOURCE).await.unwrap();
    client
        .batch_execute(
            "CREATE SOURCE other (k TEXT, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts) WITH (connector = 'ingest')",
        )
        .await
        .unwrap();
    for (query, reason) in [
        ("SELECT * FROM ev LIMIT 5", "LIMIT"),
        ("SELECT e.k FROM ev e JOIN other o ON e.k = o.k", "joins sources without windows"),
        (
            "SELECT window_start, window_end, count(*) FROM SESSION(ev, ts, INTERVAL '1' MINUTE) GROUP BY window_start, window_end",
            "SESSION",
        ),
        ("SELECT k, count(*) FROM ev GROUP BY k EMIT ON WINDOW CLOSE", "no window to close"),
        ("SELECT 1 AS one", "no source"),
    ] {
        let error = client.batch_execute(&format!("CREATE MATERIALIZED VIEW bad AS {query}")).await.expect_err(query);
        assert_eq!(code_of(&error), tokio_postgres::error::SqlState::FEATURE_NOT_SUPPORTED, "{query}");
        let message = error.as_db_error().unwrap().message().to_string();
        assert!(message.contains(reason), "{query}: {message}");
    }
    assert_eq!(count(&client, "SELECT count(*) FROM watershed.materialized_views").await, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_emit_rows_and_aggregates_without_windows_emit_on_update() {
    let server = Server::start(tempfile::tempdir().unwrap(), |_| {}).await;
    let client = server.client().await;
    client.batch_execute(SOURCE).await.unwrap();
    client.batch_execute("CREATE MATERIALIZED VIEW big AS SELECT k, v FROM ev WHERE v >= 90").await.unwrap();
    client
        .batch_execute("CREATE MATERIALIZED VIEW per_key AS SELECT k, count(*) AS n, sum(v) AS s FROM ev GROUP BY k")
        .await
        .unwrap();
    let events = events(11);
    insert(&client, &events).await;
    let big = events.iter().filter(|e| e.1 >= 90).count() as i64;
    wait_for_count(&client, "SELECT count(*) FROM big", big).await;
    wait_for_count(&client, "SELECT sum(n) FROM per_key", EVENTS).await;
    let expected = text_rows(&client, "SELECT k, count(*), sum(v) FROM ev GROUP BY k ORDER BY k").await;
    assert_eq!(text_rows(&client, "SELECT * FROM per_key ORDER BY k").await, expected);
    let emit = text_rows(&client, "SELECT emit FROM watershed.materialized_views WHERE name = 'per_key'").await;
    assert_eq!(emit, vec![vec![Some("EMIT ON UPDATE".to_string())]]);

    // A subscription to an EMIT ON UPDATE view says what each row is.
    client.batch_execute("BEGIN; DECLARE c CURSOR FOR SUBSCRIBE TO per_key").await.unwrap();
    let snapshot = text_rows(&client, "FETCH 10 FROM c").await;
    assert_eq!(snapshot.len(), 5, "one row per key");
    assert!(snapshot.iter().all(|row| row[0].as_deref() == Some("insert")), "{snapshot:?}");
    let writer = server.client().await;
    insert(&writer, &[("k3".to_string(), 1, BASE_MS)]).await;
    let update = text_rows(&client, "FETCH 10 FROM c").await;
    assert_eq!(update.len(), 1, "{update:?}");
    assert_eq!(update[0][0].as_deref(), Some("update"));
    assert_eq!(update[0][1].as_deref(), Some("k3"));
    client.batch_execute("COMMIT").await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_streams_closed_windows_through_copy_and_cursors() {
    let server = Server::start(tempfile::tempdir().unwrap(), |_| {}).await;
    let client = server.client().await;
    client.batch_execute(SOURCE).await.unwrap();
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW t AS SELECT window_start, window_end, count(*) AS n \
             FROM TUMBLE(ev, ts, INTERVAL '1' MINUTE) GROUP BY window_start, window_end",
        )
        .await
        .unwrap();
    // A cursor without snapshot sees only what is emitted after it opened.
    client.batch_execute("DECLARE c CURSOR WITH HOLD FOR SUBSCRIBE TO t WITH (snapshot = false)").await.unwrap();
    let copy = server.client().await;
    let stream = copy.copy_out("COPY (SUBSCRIBE TO t) TO STDOUT WITH (FORMAT csv)").await.unwrap();
    let writer = server.client().await;
    let events = events(3);
    insert(&writer, &events[..1_000]).await;
    let rows = text_rows(&client, "FETCH 100 FROM c").await;
    assert!(!rows.is_empty(), "windows closed by the first thousand events arrive");
    // What the subscriptions deliver is what the view stores.
    let stored = text_rows(&client, "SELECT * FROM t ORDER BY window_start").await;
    for row in &rows {
        assert!(stored.contains(row), "{row:?} is a row of the view");
    }
    use futures::StreamExt;
    futures::pin_mut!(stream);
    let first = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("COPY (SUBSCRIBE) sends rows as windows close")
        .expect("a row")
        .expect("no error");
    let line = String::from_utf8(first.to_vec()).unwrap();
    let oldest = &stored[0];
    let expected = format!(
        "{},{},{}\n",
        oldest[0].as_deref().unwrap(),
        oldest[1].as_deref().unwrap(),
        oldest[2].as_deref().unwrap()
    );
    assert_eq!(line, expected, "the snapshot starts with the oldest window");
    client.batch_execute("CLOSE c").await.unwrap();
    // SUBSCRIBE on its own is refused: its result would never end.
    let error = client.batch_execute("SUBSCRIBE TO t").await.unwrap_err();
    assert_eq!(code_of(&error), tokio_postgres::error::SqlState::FEATURE_NOT_SUPPORTED);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_sink_reaches_listeners() {
    let server = Server::start(tempfile::tempdir().unwrap(), |_| {}).await;
    let client = server.client().await;
    client.batch_execute(SOURCE).await.unwrap();
    client
        .batch_execute(
            "CREATE SINK big AS SELECT k, v FROM ev WHERE v >= 95 WITH (connector = 'notify', channel = 'alerts')",
        )
        .await
        .unwrap();
    // A listener on its own connection, reading notifications from the socket.
    let url = format!("host=127.0.0.1 port={} user=watershed dbname=watershed", server.port);
    let (listener, mut connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        use futures::StreamExt;
        while let Some(Ok(message)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                let _ = tx.send((n.channel().to_string(), n.payload().to_string()));
            }
        }
    });
    listener.batch_execute("LISTEN alerts").await.unwrap();
    insert(&client, &[("k1".to_string(), 99, BASE_MS), ("k2".to_string(), 5, BASE_MS)]).await;
    let (channel, payload) = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.unwrap().unwrap();
    assert_eq!(channel, "alerts");
    assert_eq!(payload, r#"{"k":"k1","v":99}"#);
    // Plain NOTIFY between sessions too.
    client.batch_execute("NOTIFY alerts, 'by hand'").await.unwrap();
    let (_, payload) = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.unwrap().unwrap();
    assert_eq!(payload, "by hand");
    let sinks = text_rows(&client, "SELECT name, connector, rows_written FROM watershed.sinks").await;
    assert_eq!(sinks, vec![vec![Some("big".into()), Some("notify".into()), Some("1".into())]]);
    server.stop().await;
}

/// A LISTEN connection that stops reading its socket: once its queue is full, the
/// notify sink's notifications to it are dropped, and watershed.sinks counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_a_listener_does_not_read_are_counted_as_dropped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start(tempfile::tempdir().unwrap(), |_| {}).await;
    let client = server.client().await;
    client.batch_execute(SOURCE).await.unwrap();
    client
        .batch_execute("CREATE SINK loud AS SELECT k, v FROM ev WITH (connector = 'notify', channel = 'loud')")
        .await
        .unwrap();
    // A raw connection: startup, LISTEN, then it never reads again.
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    let mut startup = Vec::new();
    startup.extend_from_slice(&196_608i32.to_be_bytes());
    startup.extend_from_slice(b"user\0watershed\0database\0watershed\0\0");
    let mut message = ((startup.len() + 4) as i32).to_be_bytes().to_vec();
    message.extend_from_slice(&startup);
    socket.write_all(&message).await.unwrap();
    let ready = b"Z\0\0\0\x05I";
    let read_until_ready = async |socket: &mut tokio::net::TcpStream| {
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        while !seen.windows(ready.len()).any(|w| w == ready) {
            let n = tokio::time::timeout(Duration::from_secs(30), socket.read(&mut buffer)).await.unwrap().unwrap();
            assert!(n > 0, "the server closed the connection");
            seen.extend_from_slice(&buffer[..n]);
        }
    };
    read_until_ready(&mut socket).await;
    support::send_query(&mut socket, "LISTEN loud").await;
    read_until_ready(&mut socket).await;
    // Notifications of about 7 kB: the socket's buffers and then the connection's queue
    // (4096 notifications) fill within a few thousand rows.
    let dropped_sql = "SELECT messages_dropped FROM watershed.sinks WHERE name = 'loud'";
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut inserted = 0;
    while count(&client, dropped_sql).await == 0 {
        assert!(Instant::now() < deadline, "no notification dropped after {inserted} rows");
        client
            .batch_execute(&format!(
                "INSERT INTO ev SELECT repeat('x', 7000), value, to_timestamp_millis({BASE_MS}) FROM generate_series(1, 500)"
            ))
            .await
            .unwrap();
        inserted += 500;
    }
    let row = client
        .query_one("SELECT rows_written, messages_dropped FROM watershed.sinks WHERE name = 'loud'", &[])
        .await
        .unwrap();
    let (written, dropped): (i64, i64) = (row.get(0), row.get(1));
    assert!(dropped > 0 && dropped <= written, "{dropped} dropped of {written} sent");
    drop(socket);
    server.stop().await;
}

/// Kill -9 at random points of an ingest -> TUMBLE view -> Delta sink pipeline: after
/// the last restart the Delta table holds every closed window exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delta_sink_is_exactly_once_across_kill_9() {
    let root = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = Process::start(root.path(), port);
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE SOURCE ev (k TEXT, v BIGINT, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts) WITH (connector = 'ingest'); \
             CREATE MATERIALIZED VIEW w AS SELECT window_start, window_end, k, count(*) AS n, sum(v) AS s \
               FROM TUMBLE(ev, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end, k; \
             CREATE SINK out FROM w WITH (connector = 'delta', table = 'impact', checkpoint_interval = '3')",
        )
        .await
        .unwrap();
    drop(client);
    let mut rng = Lcg(42);
    // Rounds of one second of event time each (so each round closes about a tenth of a
    // window), with a kill -9 after a random pause in a third of them.
    let rounds = 60;
    let per_round = 20;
    let mut client = server.connect().await;
    for round in 0..rounds {
        let batch: Vec<(String, i64, i64)> = (0..per_round)
            .map(|i| (format!("k{}", i % 3), (round * per_round + i), BASE_MS + round * 1_000 + i * 50))
            .collect();
        insert(&client, &batch).await;
        if rng.next().is_multiple_of(3) {
            tokio::time::sleep(Duration::from_millis(rng.next() % 300)).await;
            server.kill_9();
            server = Process::start(root.path(), port);
            client = server.connect().await;
        }
    }
    // Close every window and wait for the sink to deliver them.
    insert(&client, &[("k0".to_string(), 0, BASE_MS + 3_600_000)]).await;
    let windows = rounds / 10;
    wait_for_count(&client, "SELECT count(DISTINCT window_start) FROM impact", windows).await;
    let got = text_rows(&client, "SELECT window_start, k, n, s FROM impact ORDER BY 1, 2").await;
    let expected = text_rows(
        &client,
        &format!(
            "SELECT window_start, k, count(*), sum(v) FROM TUMBLE(ev, ts, INTERVAL '10' SECOND) \
             WHERE ts < to_timestamp_millis({}) GROUP BY 1, 2 ORDER BY 1, 2",
            BASE_MS + 3_600_000
        ),
    )
    .await;
    assert_eq!(expected.len() as i64, windows * 3);
    assert_eq!(got, expected, "each window once, none lost");
    let commits = text_rows(&client, "SELECT last_error FROM watershed.sinks WHERE name = 'out'").await;
    assert_eq!(commits, vec![vec![None]]);
}

/// A view joining a lake table reads it as of processing time: rows processed after the
/// table commits see the new rows, rows processed before keep what they found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_follow_the_lake_tables_commits() {
    let server = Server::start(tempfile::tempdir().unwrap(), |config| config.limits.lake_staleness_ms = 100).await;
    let client = server.client().await;
    client.batch_execute(SOURCE).await.unwrap();
    client.batch_execute("CREATE TABLE names AS SELECT 'k1' AS k, 'one' AS name").await.unwrap();
    client
        .batch_execute("CREATE MATERIALIZED VIEW named AS SELECT e.v, n.name FROM ev e JOIN names n ON e.k = n.k")
        .await
        .unwrap();
    insert(&client, &[("k1".to_string(), 1, BASE_MS), ("k2".to_string(), 2, BASE_MS)]).await;
    wait_for_count(&client, "SELECT count(*) FROM named", 1).await;
    client.batch_execute("INSERT INTO names VALUES ('k2', 'two')").await.unwrap();
    // Events for k2 keep coming; once the view has re-read `names`, they join.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut v = 100;
    while count(&client, "SELECT count(*) FROM named WHERE name = 'two'").await == 0 {
        assert!(Instant::now() < deadline, "the view never saw the lake table's commit");
        insert(&client, &[("k2".to_string(), v, BASE_MS)]).await;
        v += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        count(&client, "SELECT count(*) FROM named WHERE v = 2").await,
        0,
        "processed before the commit, not joined"
    );
    server.stop().await;
}

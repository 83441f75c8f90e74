//! Materialized view figures (issue 5), in one process on the library API:
//!
//! 1. throughput: events/s a view absorbs, for a tumbling count and a HOP aggregate, next
//!    to the same query run once as an ad-hoc batch over the same retained events (the
//!    ratio is what a view costs per event compared with a batch scan);
//! 2. delay: from the append that moves the watermark past a window's end to that
//!    window's row reaching a subscriber (p50, p99);
//! 3. state: the view's window state against the number of events absorbed.
//!
//! Events go straight into the source's log (the ingest path is measured elsewhere), so
//! the figures are the view's own. Run: `cargo bench --bench views` (add `-- quick` for a
//! smaller run).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use watershed::config::Config;
use watershed::session::{Engine, Session};
use watershed::stream::Source;

const BATCH_ROWS: usize = 8_192;
/// 2026-01-01 00:00:00 UTC in µs.
const BASE_US: i64 = 1_767_225_600_000_000;

fn batch(source: &Source, first: i64, rows: usize, spacing_us: i64) -> RecordBatch {
    let ids: Vec<i64> = (first..first + rows as i64).collect();
    let keys: Vec<String> = ids.iter().map(|i| format!("k{}", i % 100)).collect();
    let times: Vec<i64> = ids.iter().map(|i| BASE_US + i * spacing_us).collect();
    RecordBatch::try_new(
        source.spec.schema.clone(),
        vec![
            Arc::new(StringArray::from(keys)),
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
        ],
    )
    .expect("the bench batch matches the source")
}

async fn engine() -> (Engine, Session, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = Engine::open(Config::rooted_at(dir.path())).await.expect("engine opens");
    let mut session = engine.session();
    session
        .run_collect(
            "CREATE SOURCE ev (k TEXT, v BIGINT, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts) \
             WITH (connector = 'ingest', retention_bytes = '8GB')",
        )
        .await
        .expect("source");
    (engine, session, dir)
}

async fn wait_events(engine: &Engine, view: &str, events: u64) {
    let view = engine.catalog().view(view).await.expect("view exists");
    while view.stats.events_in.load(Ordering::Relaxed) < events {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Events/s of a view over `events` events already in the log, and of the same query
/// as one batch.
async fn throughput(name: &str, query: &str, events: usize) {
    let (engine, mut session, _dir) = engine().await;
    let source = engine.catalog().source("ev").await.expect("source");
    let mut first = 0i64;
    while (first as usize) < events {
        let rows = BATCH_ROWS.min(events - first as usize);
        // 1 ms apart: 1M events span 16 minutes of event time.
        source.log.append(0, batch(&source, first, rows, 1_000), 0).expect("append");
        first += rows as i64;
    }
    let started = Instant::now();
    session.run_collect(&format!("CREATE MATERIALIZED VIEW v AS {query}")).await.expect("view");
    wait_events(&engine, "v", events as u64).await;
    let view_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    session.run_collect(&format!("SELECT count(*) FROM ({query}) q")).await.expect("batch");
    let batch_s = started.elapsed().as_secs_f64();
    let view = engine.catalog().view("v").await.expect("view");
    println!(
        "| {name} | {events} | {:.0} | {:.0} | {:.2} | {} |",
        events as f64 / view_s,
        events as f64 / batch_s,
        view_s / batch_s,
        view.stats.state_bytes.load(Ordering::Relaxed),
    );
}

/// Delay from the watermark passing a window's end to the subscriber getting its row.
async fn delay(windows: usize) {
    let (engine, mut session, _dir) = engine().await;
    session
        .run_collect(
            "CREATE MATERIALIZED VIEW v AS SELECT window_start, window_end, count(*) AS n \
             FROM TUMBLE(ev, ts, INTERVAL '1' SECOND) GROUP BY window_start, window_end",
        )
        .await
        .expect("view");
    let view = engine.catalog().view("v").await.expect("view");
    let source = engine.catalog().source("ev").await.expect("source");
    let (_, _, _, mut receiver) = view.store.subscribe(false).expect("subscribe");
    let mut delays_us = Vec::with_capacity(windows);
    // 1000 events per 1-second window; the first event of window i+1 closes window i.
    for window in 0..windows as i64 {
        source.log.append(0, batch(&source, window * 1_000, 1_000, 1_000), 0).expect("append");
        let closing = Instant::now();
        if window == 0 {
            continue;
        }
        source.log.append(0, batch(&source, (window + 1) * 1_000, 1, 1_000), 0).expect("append");
        loop {
            let emission = receiver.recv().await.expect("emissions flow");
            if emission.batch.num_rows() > 0 {
                break;
            }
        }
        delays_us.push(closing.elapsed().as_micros() as u64);
    }
    delays_us.sort_unstable();
    let at = |q: f64| delays_us[((delays_us.len() - 1) as f64 * q) as usize] as f64 / 1_000.0;
    println!("| {} windows | {:.2} ms | {:.2} ms | {:.2} ms |", delays_us.len(), at(0.5), at(0.99), at(1.0));
}

/// Window state after `events` events in one open window of 100 groups.
async fn state(events: usize) {
    let (engine, mut session, _dir) = engine().await;
    session
        .run_collect(
            "CREATE MATERIALIZED VIEW v AS SELECT window_start, window_end, k, count(*) AS n, sum(v) AS s, \
             count(DISTINCT v % 1000) AS d FROM TUMBLE(ev, ts, INTERVAL '1' DAY) GROUP BY window_start, window_end, k",
        )
        .await
        .expect("view");
    let source = engine.catalog().source("ev").await.expect("source");
    let mut first = 0i64;
    while (first as usize) < events {
        let rows = BATCH_ROWS.min(events - first as usize);
        source.log.append(0, batch(&source, first, rows, 1), 0).expect("append");
        first += rows as i64;
    }
    wait_events(&engine, "v", events as u64).await;
    let view = engine.catalog().view("v").await.expect("view");
    // The step that absorbed the last events updates the figure after its updates.
    tokio::time::sleep(Duration::from_millis(100)).await;
    println!("| {events} | {} |", view.stats.state_bytes.load(Ordering::Relaxed));
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let events = if quick { 200_000 } else { 2_000_000 };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    runtime.block_on(async {
        println!("| view | events | view events/s | batch events/s | view time / batch time | state bytes at end |");
        println!("|---|---|---|---|---|---|");
        throughput(
            "TUMBLE 1 min, count(*) per window",
            "SELECT window_start, window_end, count(*) AS n FROM TUMBLE(ev, ts, INTERVAL '1' MINUTE) GROUP BY window_start, window_end",
            events,
        )
        .await;
        throughput(
            "HOP 10 s / 1 min, count, sum, avg per key",
            "SELECT window_start, window_end, k, count(*) AS n, sum(v) AS s, avg(v) AS a \
             FROM HOP(ev, ts, INTERVAL '10' SECOND, INTERVAL '1' MINUTE) GROUP BY window_start, window_end, k",
            events,
        )
        .await;
        println!();
        println!("| subscriber | p50 | p99 | max |");
        println!("|---|---|---|---|");
        delay(if quick { 50 } else { 300 }).await;
        println!();
        println!("| events in one open window (100 keys) | state bytes |");
        println!("|---|---|");
        for n in [events / 8, events / 4, events / 2, events] {
            state(n).await;
        }
    });
}

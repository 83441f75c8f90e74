//! Nexmark (issue 6, streaming suite): the Flink reference queries q0, q1, q2, q5, q7 and
//! q8 as watershed materialized views over `connector = 'nexmark'` sources, on one core.
//!
//! The sources are declared with a backfill covering the whole run, so the generator
//! appends all events first; each view is then created over the retained events and
//! timed until it has absorbed them all. The figures are therefore the view's own (the
//! generator is timed on its own line). Two rates per query:
//!
//! - rows/s: rows of the view's sources absorbed per second;
//! - sequence events/s: events of the Nexmark sequence (people, auctions and bids)
//!   covered per second, the figure Flink's and RisingWave's Nexmark reports give (their
//!   one source generates every event and each query filters the kinds it reads).
//!
//! `q5-agg` is q5's windowed aggregation alone (bids per auction per HOP window), the
//! part benches/nexmark/spark_q5.py runs in Spark Structured Streaming for the ratio.
//!
//! Run: `cargo bench --features bench --bench nexmark -- [events N] [parquet DIR]`
//! (`parquet DIR` also writes the bids to DIR as Parquet files for the Spark run).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use watershed::config::Config;
use watershed::session::{Engine, Session};

/// Nexmark's default rate: 10,000 events per second of event time.
const RATE_PER_S: u64 = 10_000;

/// The queries, as in the Flink reference (nexmark/queries/*.sql) with watershed's
/// window table functions; window joins name window_end, which says when rows are final.
const QUERIES: [(&str, &[&str], &str); 7] = [
    ("q0", &["bid"], "SELECT auction, bidder, price, date_time, extra FROM bid"),
    ("q1", &["bid"], "SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bid"),
    ("q2", &["bid"], "SELECT auction, price FROM bid WHERE auction % 123 = 0"),
    (
        "q5-agg",
        &["bid"],
        "SELECT auction, count(*) AS num, window_start, window_end \
         FROM HOP(bid, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND) \
         GROUP BY auction, window_start, window_end",
    ),
    (
        "q5",
        &["bid"],
        "SELECT AuctionBids.auction, AuctionBids.num, AuctionBids.window_end FROM ( \
           SELECT auction, count(*) AS num, window_start, window_end \
           FROM HOP(bid, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND) \
           GROUP BY auction, window_start, window_end) AS AuctionBids \
         JOIN ( \
           SELECT max(CountBids.num) AS maxn, CountBids.window_start, CountBids.window_end FROM ( \
             SELECT count(*) AS num, window_start, window_end \
             FROM HOP(bid, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND) \
             GROUP BY auction, window_start, window_end) AS CountBids \
           GROUP BY CountBids.window_start, CountBids.window_end) AS MaxBids \
         ON AuctionBids.window_start = MaxBids.window_start AND AuctionBids.window_end = MaxBids.window_end \
            AND AuctionBids.num >= MaxBids.maxn",
    ),
    (
        "q7",
        &["bid"],
        "SELECT B.auction, B.price, B.bidder, B.date_time, B.extra, B.window_end \
         FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND) B \
         JOIN ( \
           SELECT max(price) AS maxprice, window_start, window_end \
           FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND) GROUP BY window_start, window_end) B1 \
         ON B.window_start = B1.window_start AND B.price = B1.maxprice",
    ),
    (
        "q8",
        &["person", "auction"],
        "SELECT P.id, P.name, P.window_start AS starttime, P.window_end FROM ( \
           SELECT id, name, window_start, window_end FROM TUMBLE(person, date_time, INTERVAL '10' SECOND) \
           GROUP BY id, name, window_start, window_end) P \
         JOIN ( \
           SELECT seller, window_start, window_end FROM TUMBLE(auction, date_time, INTERVAL '10' SECOND) \
           GROUP BY seller, window_start, window_end) A \
         ON P.id = A.seller AND P.window_start = A.window_start AND P.window_end = A.window_end",
    ),
];

/// Rows of each table among the first `events` of the sequence (1 person, 3 auctions and
/// 46 bids in every 50, in that order).
fn rows_of(table: &str, events: u64) -> u64 {
    let (first, share) = match table {
        "person" => (0, 1),
        "auction" => (1, 3),
        _ => (4, 46),
    };
    events / 50 * share + (events % 50).saturating_sub(first).min(share)
}

const COLUMNS: [(&str, &str); 3] = [
    (
        "person",
        "id BIGINT, name TEXT, email_address TEXT, credit_card TEXT, city TEXT, state TEXT, date_time TIMESTAMPTZ, extra TEXT",
    ),
    (
        "auction",
        "id BIGINT, item_name TEXT, description TEXT, initial_bid BIGINT, reserve BIGINT, date_time TIMESTAMPTZ, \
         expires TIMESTAMPTZ, seller BIGINT, category BIGINT, extra TEXT",
    ),
    ("bid", "auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT, url TEXT, date_time TIMESTAMPTZ, extra TEXT"),
];

async fn sources(events: u64) -> (Engine, Session, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = Engine::open(Config::rooted_at(dir.path())).await.expect("engine opens");
    let mut session = engine.session();
    // The backfill puts every event's time in the past: the generator appends them all now.
    let backfill_s = events / RATE_PER_S + 1;
    let started = Instant::now();
    for (table, columns) in COLUMNS {
        session
            .run_collect(&format!(
                "CREATE SOURCE {table} ({columns}, WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND) \
                 WITH (connector = 'nexmark', table = '{table}', rate = '{RATE_PER_S}/s', events = '{events}', \
                 backfill = '{backfill_s} seconds', retention_bytes = '16GB')"
            ))
            .await
            .expect("nexmark source");
    }
    for (table, _) in COLUMNS {
        let source = engine.catalog().source(table).await.expect("source exists");
        while source.log.next_offset() < rows_of(table, events) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "| generator (all three tables) | {events} | {events} | {seconds:.2} | {:.0} | {:.0} | - |",
        events as f64 / seconds,
        events as f64 / seconds
    );
    (engine, session, dir)
}

async fn run(engine: &Engine, session: &mut Session, name: &str, tables: &[&str], query: &str, events: u64) {
    let inputs: u64 = tables.iter().map(|table| rows_of(table, events)).sum();
    let view_name = format!("nexmark_{}", name.replace('-', "_"));
    let started = Instant::now();
    session.run_collect(&format!("CREATE MATERIALIZED VIEW {view_name} AS {query}")).await.expect("view");
    let view = engine.catalog().view(&view_name).await.expect("view exists");
    // Done when the view has read every row and stored what the sources' final
    // watermark closes (the view publishes its watermark after storing the rows).
    let mut watermark_us = i64::MAX;
    for table in tables {
        let source = engine.catalog().source(table).await.expect("source exists");
        watermark_us = watermark_us.min(source.log.watermark_us().expect("the sources have events"));
    }
    while view.stats.events_in.load(Ordering::Relaxed) < inputs || view.stats.watermark_us() < Some(watermark_us) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let rows = view.store.rows();
    println!(
        "| {name} | {inputs} | {events} | {seconds:.2} | {:.0} | {:.0} | {rows} |",
        inputs as f64 / seconds,
        events as f64 / seconds,
    );
    session.run_collect(&format!("DROP MATERIALIZED VIEW {view_name}")).await.expect("drop view");
}

/// Writes the bids to `dir` as Parquet files of at most 1M rows, the input of the
/// Spark run.
async fn write_parquet(session: &mut Session, dir: &str) {
    use datafusion::parquet::arrow::ArrowWriter;
    std::fs::create_dir_all(dir).expect("parquet dir");
    let collected = session.run_collect("SELECT * FROM bid").await.expect("bids").remove(0);
    let (mut file_index, mut writer, mut rows) = (0, None::<ArrowWriter<std::fs::File>>, 0usize);
    for batch in collected.batches {
        if writer.is_none() {
            let file = std::fs::File::create(format!("{dir}/bids-{file_index:04}.parquet")).expect("parquet file");
            writer = Some(ArrowWriter::try_new(file, batch.schema(), None).expect("parquet writer"));
            file_index += 1;
        }
        rows += batch.num_rows();
        writer.as_mut().expect("opened above").write(&batch).expect("parquet write");
        if rows >= 1_000_000 {
            writer.take().expect("opened above").close().expect("parquet close");
            rows = 0;
        }
    }
    if let Some(writer) = writer {
        writer.close().expect("parquet close");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let after = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let events: u64 = after("events").map_or(2_000_000, |n| n.parse().expect("events N"));
    let parquet = after("parquet");
    let only = after("only");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    runtime.block_on(async {
        println!("| query | source rows | sequence events | seconds | rows/s | sequence events/s | view rows |");
        println!("|---|---|---|---|---|---|---|");
        let (engine, mut session, _dir) = sources(events).await;
        for (name, tables, query) in QUERIES {
            if only.as_deref().is_some_and(|only| !only.split(',').any(|q| q == name)) {
                continue;
            }
            run(&engine, &mut session, name, tables, query, events).await;
        }
        if let Some(dir) = parquet {
            write_parquet(&mut session, &dir).await;
        }
    });
}

//! Window table functions over the generated demo lake (Delta tables read through the
//! catalog): each window type is checked against an independent computation of the same
//! figures with plain SQL over the same table.

use std::path::Path;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use watershed::config::Config;
use watershed::session::{Engine, Session};

async fn demo_session(root: &Path) -> Session {
    let mut config = Config::rooted_at(root);
    config.demo_autogenerate = true;
    std::fs::create_dir_all(&config.catalog_dir).unwrap();
    let catalog = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("catalog/demo.toml"))
        .unwrap()
        .replace("scale = 1.0", "scale = 0.002");
    std::fs::write(config.catalog_dir.join("demo.toml"), catalog).unwrap();
    Engine::open(config).await.expect("engine opens with a tiny demo lake").session()
}

async fn rows(session: &mut Session, sql: &str) -> Vec<RecordBatch> {
    let mut results = session.run_collect(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    results.pop().expect("one result").batches
}

/// The single BIGINT column of a result, in order.
async fn numbers(session: &mut Session, sql: &str) -> Vec<i64> {
    rows(session, sql)
        .await
        .iter()
        .flat_map(|batch| batch.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

async fn number(session: &mut Session, sql: &str) -> i64 {
    let values = numbers(session, sql).await;
    assert_eq!(values.len(), 1, "{sql}");
    values[0]
}

#[tokio::test]
async fn windows_over_the_demo_lake_agree_with_plain_sql() {
    let dir = tempfile::tempdir().unwrap();
    let mut session = demo_session(dir.path()).await;
    let total = number(&mut session, "SELECT count(*) FROM orders_history").await;
    assert!(total > 1000, "the tiny demo still has orders: {total}");

    // TUMBLE by day = GROUP BY the UTC day.
    let tumble = numbers(
        &mut session,
        "SELECT count(*) FROM TUMBLE(orders_history, ts, INTERVAL '1' DAY) GROUP BY window_start ORDER BY window_start",
    )
    .await;
    let by_day = numbers(
        &mut session,
        "SELECT count(*) FROM orders_history GROUP BY date_trunc('day', ts) ORDER BY date_trunc('day', ts)",
    )
    .await;
    assert_eq!(tumble, by_day);
    assert!(tumble.len() > 300, "two years of days: {}", tumble.len());

    // HOP of a day sliding by 6 hours: every order is in exactly four windows, and each
    // window holds the orders of its four quarter days.
    let hop_rows =
        number(&mut session, "SELECT count(*) FROM HOP(orders_history, ts, INTERVAL '6' HOUR, INTERVAL '1' DAY)").await;
    assert_eq!(hop_rows, 4 * total);
    let mismatched = number(
        &mut session,
        "WITH h AS (SELECT window_start, count(*) AS n
                    FROM HOP(orders_history, ts, INTERVAL '6' HOUR, INTERVAL '1' DAY) GROUP BY window_start),
              d AS (SELECT h.window_start, count(*) AS n FROM h JOIN orders_history o
                    ON o.ts >= h.window_start AND o.ts < h.window_start + INTERVAL '1' DAY GROUP BY h.window_start)
         SELECT count(*) FROM h FULL JOIN d ON h.window_start = d.window_start WHERE h.n IS DISTINCT FROM d.n",
    )
    .await;
    assert_eq!(mismatched, 0);

    // CUMULATE by 6 hours up to a day: the full-day windows are TUMBLE's, and each window
    // holds the orders from its start to its end.
    let full_days = numbers(
        &mut session,
        "SELECT count(*) FROM CUMULATE(orders_history, ts, INTERVAL '6' HOUR, INTERVAL '1' DAY)
         WHERE window_end = window_start + INTERVAL '1' DAY GROUP BY window_start ORDER BY window_start",
    )
    .await;
    assert_eq!(full_days, by_day);
    let mismatched = number(
        &mut session,
        "WITH c AS (SELECT window_start, window_end, count(*) AS n
                    FROM CUMULATE(orders_history, ts, INTERVAL '6' HOUR, INTERVAL '1' DAY) GROUP BY 1, 2),
              d AS (SELECT c.window_start, c.window_end, count(*) AS n FROM c JOIN orders_history o
                    ON o.ts >= c.window_start AND o.ts < c.window_end GROUP BY 1, 2)
         SELECT count(*) FROM c FULL JOIN d ON c.window_start = d.window_start AND c.window_end = d.window_end
         WHERE c.n IS DISTINCT FROM d.n",
    )
    .await;
    assert_eq!(mismatched, 0);

    // SESSION per customer with a 30-day gap: every order is in one session; sessions of a
    // customer do not overlap; consecutive orders of a session are less than the gap apart.
    let session_rows = number(
        &mut session,
        "SELECT sum(n) FROM (SELECT customer_id, window_start, window_end, count(*) AS n
         FROM SESSION(orders_history, ts, INTERVAL '30' DAY) GROUP BY customer_id, window_start, window_end)",
    )
    .await;
    assert_eq!(session_rows, total);
    let overlapping = number(
        &mut session,
        "WITH s AS (SELECT customer_id, window_start, window_end
                    FROM SESSION(orders_history, ts, INTERVAL '30' DAY) GROUP BY customer_id, window_start, window_end)
         SELECT count(*) FROM s a JOIN s b ON a.customer_id = b.customer_id
           AND a.window_start < b.window_start AND b.window_start < a.window_end",
    )
    .await;
    assert_eq!(overlapping, 0);
    // Recomputed with window functions: a new session where the previous order of the
    // customer is 30 days back or more.
    let sessions = number(
        &mut session,
        "SELECT count(*) FROM (SELECT customer_id, window_start FROM SESSION(orders_history, ts, INTERVAL '30' DAY)
                               GROUP BY customer_id, window_start)",
    )
    .await;
    let expected = number(
        &mut session,
        "SELECT count(*) FROM (
           SELECT ts, lag(ts) OVER (PARTITION BY customer_id ORDER BY ts) AS previous FROM orders_history)
         WHERE previous IS NULL OR date_part('epoch', ts) - date_part('epoch', previous) >= 30 * 86400",
    )
    .await;
    assert_eq!(sessions, expected);
    assert!(sessions > 1000 && sessions < total, "sessions {sessions} of {total} orders");

    // Window columns keep the lake's timestamptz type.
    let typed = rows(
        &mut session,
        "SELECT window_start, window_end FROM TUMBLE(orders_history, ts, INTERVAL '1' HOUR) LIMIT 1",
    )
    .await;
    let ts_type =
        rows(&mut session, "SELECT ts FROM orders_history LIMIT 1").await[0].schema().field(0).data_type().clone();
    assert_eq!(typed[0].schema().field(0).data_type(), &ts_type);
    assert_eq!(typed[0].schema().field(1).data_type(), &ts_type);
    assert!(typed[0].column(0).null_count() == 0);
}

//! Tests of the demo lake: generation at a tiny scale, reading the tables back through
//! deltalake + DataFusion, determinism, layout, referential sanity and campaign lift.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use datafusion::prelude::SessionContext;
use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::compute::{cast, concat_batches};
use deltalake::arrow::datatypes::{DataType, Int64Type, TimeUnit};

use super::*;

const TINY: DemoSpec = DemoSpec { seed: 7, scale: 0.002 };

fn table_url(lake: &Path, table: &str) -> url::Url {
    url::Url::from_directory_path(lake.join(table)).expect("absolute temp dir")
}

async fn session(lake: &Path) -> SessionContext {
    let ctx = SessionContext::new();
    for name in DEMO_TABLES {
        let table = deltalake::open_table(table_url(lake, name)).await.expect("open demo table");
        table.update_datafusion_session(&ctx.state()).expect("register store");
        let provider = table.table_provider().await.expect("table provider");
        ctx.register_table(name, provider).expect("register table");
    }
    ctx
}

async fn query(ctx: &SessionContext, sql: &str) -> RecordBatch {
    let df = ctx.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let schema = df.schema().inner().clone();
    let batches = df.collect().await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    concat_batches(&schema, &batches).expect("concat")
}

/// Column `index` as i64s (nulls as None); dates and timestamps become their raw numbers.
fn i64s(batch: &RecordBatch, index: usize) -> Vec<Option<i64>> {
    let column = batch.column(index);
    let column = match column.data_type() {
        DataType::Date32 => cast(column, &DataType::Int32).expect("date as int"),
        _ => column.clone(),
    };
    let column = cast(&column, &DataType::Int64).expect("as int64");
    column.as_primitive::<Int64Type>().iter().collect()
}

/// Column `index` as strings (the Delta scan may hand out Utf8View).
fn strings(batch: &RecordBatch, index: usize) -> Vec<Option<String>> {
    let column = cast(batch.column(index), &DataType::Utf8).expect("as utf8");
    column.as_string::<i32>().iter().map(|s| s.map(str::to_string)).collect()
}

async fn scalar(ctx: &SessionContext, sql: &str) -> i64 {
    i64s(&query(ctx, sql).await, 0)[0].expect("non-null scalar")
}

#[tokio::test]
async fn generates_consistent_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path();
    assert!(!is_present(lake));
    let report = generate(lake, &TINY, false).await.expect("generate");
    eprintln!(
        "tiny demo: {report:?} ({:.0} orders/s, debug build)",
        report.orders as f64 * 1000.0 / report.elapsed_ms.max(1) as f64
    );
    assert!(is_present(lake));
    assert_eq!((report.products, report.campaigns, report.customers), (50, 10, 200));
    assert!(report.orders >= 10_000, "{report:?}");

    let ctx = session(lake).await;
    for (table, expected) in [
        ("products", report.products),
        ("campaigns", report.campaigns),
        ("customers", report.customers),
        ("orders_history", report.orders),
    ] {
        assert_eq!(scalar(&ctx, &format!("SELECT count(*) FROM {table}")).await as u64, expected, "{table}");
    }

    // Types as clients will see them.
    let orders = query(&ctx, "SELECT * FROM orders_history LIMIT 1").await;
    let schema = orders.schema();
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    assert_eq!(schema.field_with_name("ts").expect("ts").data_type(), &utc);
    assert_eq!(schema.field_with_name("amount").expect("amount").data_type(), &DataType::Decimal128(12, 2));
    assert_eq!(schema.field_with_name("quantity").expect("quantity").data_type(), &DataType::Int32);
    assert_eq!(schema.field_with_name("order_date").expect("order_date").data_type(), &DataType::Date32);

    let zero_checks = [
        "SELECT count(*) FROM orders_history WHERE CAST(ts AS DATE) <> order_date",
        "SELECT count(*) FROM orders_history WHERE ts < TIMESTAMP '2024-11-01T00:00:00Z' OR ts >= TIMESTAMP '2026-11-01T00:00:00Z'",
        "SELECT count(*) FROM orders_history o JOIN products p USING (product_id) WHERE o.amount <> p.price * o.quantity",
        "SELECT count(*) FROM orders_history o LEFT JOIN customers c USING (customer_id) WHERE c.signed_up_at IS NULL OR c.signed_up_at > o.ts",
        "SELECT count(*) - count(DISTINCT order_id) FROM orders_history",
        "SELECT count(*) FROM (SELECT ts, lag(ts) OVER (ORDER BY order_id) AS prev FROM orders_history) WHERE ts < prev",
        "SELECT count(*) FROM campaigns WHERE (product_id IS NULL) = (category IS NULL)",
        "SELECT count(*) FROM campaigns WHERE ends_at < starts_at + INTERVAL '7 days' OR ends_at > starts_at + INTERVAL '30 days'",
        "SELECT count(*) FROM campaigns c LEFT JOIN products p USING (product_id) WHERE c.product_id IS NOT NULL AND p.name IS NULL",
        "SELECT count(*) FROM customers WHERE length(country) <> 2 OR email NOT LIKE '%@example.com'",
    ];
    for sql in zero_checks {
        assert_eq!(scalar(&ctx, sql).await, 0, "{sql}");
    }
    assert!(scalar(&ctx, "SELECT count(DISTINCT category) FROM products").await >= 15);

    // Layout: partitioned by order_date, one file per day, few commits.
    let orders_table = deltalake::open_table(table_url(lake, "orders_history")).await.expect("open");
    let state = orders_table.snapshot().expect("loaded");
    assert_eq!(state.metadata().partition_columns(), &["order_date".to_string()]);
    let files: Vec<String> = orders_table.get_file_uris().expect("files").collect();
    assert!(files.iter().all(|f| f.contains("order_date=")), "{:?}", &files[..3]);
    assert_eq!(files.len(), data::ORDER_DAYS as usize, "one file per day");
    let version = orders_table.version().expect("version");
    assert!((20..=30).contains(&version), "orders_history has {version} commits");

    assert_campaign_lift(&ctx).await;
}

/// For each product some campaign targets, compare its orders on campaign days with what
/// its own rate on the other days predicts. Pooling predicted vs actual counts over all
/// targeted products keeps the statistic stable at tiny scale (few orders per product-day).
async fn assert_campaign_lift(ctx: &SessionContext) {
    let products = query(ctx, "SELECT product_id, category FROM products").await;
    let categories = strings(&products, 1);
    let category_of: HashMap<i64, String> = i64s(&products, 0)
        .into_iter()
        .enumerate()
        .map(|(row, id)| (id.expect("id"), categories[row].clone().expect("category")))
        .collect();
    let campaigns = query(ctx, "SELECT starts_at, ends_at, product_id, category FROM campaigns").await;
    let (starts, ends, targets) = (i64s(&campaigns, 0), i64s(&campaigns, 1), i64s(&campaigns, 2));
    let campaign_categories = strings(&campaigns, 3);
    let micros_per_day = 86_400_000_000;
    let first_day = 20_028; // 2024-11-01 as days since the epoch
    let mut campaign_days: HashMap<i64, HashSet<i64>> = HashMap::new();
    for row in 0..campaigns.num_rows() {
        let days = starts[row].expect("start") / micros_per_day..ends[row].expect("end") / micros_per_day;
        let targeted: Vec<i64> = match targets[row] {
            Some(product) => vec![product],
            None => {
                let category = campaign_categories[row].clone().expect("product or category target");
                category_of.iter().filter(|(_, c)| **c == category).map(|(p, _)| *p).collect()
            }
        };
        for product in targeted {
            campaign_days
                .entry(product)
                .or_default()
                .extend(days.clone().filter(|d| (first_day..first_day + 730).contains(d)));
        }
    }
    let daily = query(ctx, "SELECT product_id, order_date, count(*) FROM orders_history GROUP BY 1, 2").await;
    let (product_ids, dates, counts) = (i64s(&daily, 0), i64s(&daily, 1), i64s(&daily, 2));
    let mut inside: HashMap<i64, i64> = HashMap::new();
    let mut outside: HashMap<i64, i64> = HashMap::new();
    for row in 0..daily.num_rows() {
        let product = product_ids[row].expect("product");
        let Some(days) = campaign_days.get(&product) else {
            continue;
        };
        let side = if days.contains(&dates[row].expect("date")) { &mut inside } else { &mut outside };
        *side.entry(product).or_default() += counts[row].expect("count");
    }
    let (mut actual, mut predicted) = (0.0, 0.0);
    for (product, days) in &campaign_days {
        let days_inside = days.len() as f64;
        let days_outside = 730.0 - days_inside;
        assert!(days_outside > 0.0);
        actual += *inside.get(product).unwrap_or(&0) as f64;
        predicted += *outside.get(product).unwrap_or(&0) as f64 / days_outside * days_inside;
    }
    let lift = actual / predicted;
    eprintln!("campaign lift: {actual} orders on campaign days vs {predicted:.0} predicted = {lift:.2}x");
    assert!(predicted > 50.0, "too few orders to measure lift: {predicted}");
    assert!(lift > 2.0 && lift < 4.5, "campaign lift {lift:.2} not near {}", data::CAMPAIGN_LIFT);
}

/// The payments business: referential sanity, labels only on fraud and reported days
/// later, one partition per day, a fraud rate in the intended band, and the fraud
/// signals stronger in fraud than in genuine payments (but present in both).
#[tokio::test]
async fn payments_are_consistent_and_fraud_is_rare_and_learnable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path();
    let spec = DemoSpec { seed: 11, scale: 0.01 };
    let report = generate(lake, &spec, false).await.expect("generate");
    eprintln!("payments demo at scale 0.01: {report:?}");
    assert_eq!((report.cards, report.merchants), (1_500, 200));
    assert!(report.transactions >= 50_000, "{report:?}");
    let rate = report.frauds as f64 / report.transactions as f64;
    assert!((0.004..=0.012).contains(&rate), "fraud rate {rate:.4} outside 0.4-1.2%");

    let ctx = session(lake).await;
    assert_eq!(scalar(&ctx, "SELECT count(*) FROM transactions_history").await as u64, report.transactions);
    assert_eq!(scalar(&ctx, "SELECT count(*) FROM transactions_history WHERE is_fraud").await as u64, report.frauds);
    let zero_checks = [
        "SELECT count(*) FROM transactions_history WHERE CAST(ts AS DATE) <> tx_date",
        "SELECT count(*) FROM transactions_history WHERE is_fraud <> (reported_at IS NOT NULL)",
        "SELECT count(*) FROM transactions_history WHERE reported_at < ts + INTERVAL '1 day' OR reported_at > ts + INTERVAL '30 days'",
        "SELECT count(*) FROM transactions_history t LEFT JOIN cards c USING (card_id) WHERE c.customer_id IS NULL",
        "SELECT count(*) FROM transactions_history t LEFT JOIN merchants m USING (merchant_id) WHERE m.country IS NULL OR m.country <> t.country",
        "SELECT count(*) FROM cards c LEFT JOIN customers u USING (customer_id) WHERE u.country IS NULL",
        "SELECT count(*) - count(DISTINCT tx_id) FROM transactions_history",
        "SELECT count(*) FROM (SELECT ts, lag(ts) OVER (ORDER BY tx_id) AS prev FROM transactions_history) WHERE ts < prev",
        "SELECT count(*) FROM transactions_history WHERE amount <= 0 OR channel NOT IN ('pos', 'online')",
    ];
    for sql in zero_checks {
        assert_eq!(scalar(&ctx, sql).await, 0, "{sql}");
    }
    // Each signal is more frequent in fraud, and also present in genuine payments.
    let share = |condition: &str, fraud: bool| {
        format!(
            "SELECT CAST(1000 * avg(CASE WHEN {condition} THEN 1.0 ELSE 0.0 END) AS BIGINT)
             FROM transactions_history t JOIN cards c USING (card_id) JOIN customers u USING (customer_id)
             WHERE is_fraud = {fraud}"
        )
    };
    for condition in
        ["t.country <> u.country", "new_device", "extract(hour FROM ts) < 6", "t.amount > 4 * c.usual_amount"]
    {
        let (in_fraud, in_genuine) =
            (scalar(&ctx, &share(condition, true)).await, scalar(&ctx, &share(condition, false)).await);
        eprintln!("{condition}: {in_fraud} per mille of fraud, {in_genuine} of genuine payments");
        assert!(in_fraud > 2 * in_genuine && in_genuine > 0, "{condition}: {in_fraud} vs {in_genuine}");
    }

    let history = deltalake::open_table(table_url(lake, "transactions_history")).await.expect("open");
    assert_eq!(history.snapshot().expect("loaded").metadata().partition_columns(), &["tx_date".to_string()]);
    let files: Vec<String> = history.get_file_uris().expect("files").collect();
    assert_eq!(files.len(), data::ORDER_DAYS as usize, "one file per day");
}

#[tokio::test]
async fn same_seed_same_rows_other_seed_differs() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("tempdir")).collect();
    let other = DemoSpec { seed: TINY.seed + 1, ..TINY };
    let first = generate(dirs[0].path(), &TINY, false).await.expect("generate");
    // Generating over an existing demo lake replaces it.
    generate(dirs[1].path(), &other, false).await.expect("generate");
    let again = generate(dirs[1].path(), &TINY, false).await.expect("regenerate");
    generate(dirs[2].path(), &other, false).await.expect("generate");
    assert_eq!((first.products, first.orders), (again.products, again.orders));

    let sessions = [session(dirs[0].path()).await, session(dirs[1].path()).await, session(dirs[2].path()).await];
    for sql in [
        "SELECT * FROM products ORDER BY product_id",
        "SELECT * FROM campaigns ORDER BY campaign_id",
        "SELECT * FROM customers ORDER BY customer_id",
        "SELECT * FROM orders_history ORDER BY order_id",
        "SELECT * FROM cards ORDER BY card_id",
        "SELECT * FROM merchants ORDER BY merchant_id",
        "SELECT * FROM transactions_history ORDER BY tx_id",
    ] {
        let [a, b, c] =
            [query(&sessions[0], sql).await, query(&sessions[1], sql).await, query(&sessions[2], sql).await];
        assert_eq!(a, b, "same seed must give the same rows: {sql}");
        assert_ne!(a, c, "another seed must give other rows: {sql}");
    }
}

#[tokio::test]
async fn rejects_bad_scale_and_detects_partial_lakes() {
    let dir = tempfile::tempdir().expect("tempdir");
    for scale in [0.0, -1.0, f64::NAN, 1e9] {
        let err = generate(dir.path(), &DemoSpec { seed: 1, scale }, false).await.expect_err("bad scale");
        assert!(matches!(err, DemoError::InvalidSpec(_)), "{err}");
    }
    // A table dir with an empty log is not a present demo lake.
    for table in DEMO_TABLES {
        std::fs::create_dir_all(dir.path().join(table).join("_delta_log")).expect("mkdir");
    }
    assert!(!is_present(dir.path()));
}

/// Timing at a larger scale: `cargo test --release --lib demo::tests::speed -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn speed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scale = std::env::var("DEMO_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(0.1);
    let report = generate(dir.path(), &DemoSpec { seed: 1, scale }, true).await.expect("generate");
    eprintln!("{report:?}: {:.0} orders/s", report.orders as f64 * 1000.0 / report.elapsed_ms.max(1) as f64);
}

//! The built-in demo shop lake: a deterministic generator of four Delta tables
//! (`products`, `campaigns`, `customers`, `orders_history`) under one lake directory.
//!
//! This module owns the tables' schemas, their on-disk layout (`lake_dir/<table name>`,
//! `orders_history` partitioned by `order_date`), and the data itself: seeded ChaCha8
//! streams per table and per day (see `data.rs`), so one spec always yields the same rows.
//! Orders are generated day by day and committed about once per month of history, so
//! memory stays bounded at any scale. Campaigns lift the order rate of the products they
//! target (by product or category) `CAMPAIGN_LIFT` times while they run, which is what the
//! ad-campaign scenario (DESIGN.md section 1) measures. Campaigns span whole UTC days
//! (midnight to midnight), so `ts >= starts_at AND ts < ends_at` matches the lifted days.
//! The payments business of the fraud scenario (payments.rs) lives in the same lake:
//! `cards` (held by the shop's customers), `merchants` and `transactions_history`
//! (labelled payments over the same two years, partitioned by `tx_date`).
//! The two large tables are written before the small ones, so an interrupted run never
//! looks complete to `is_present`.

mod data;
pub mod payments;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::Datelike;
use deltalake::arrow::array::{BooleanArray, RecordBatch};
use deltalake::arrow::datatypes::{DataType as ArrowType, SchemaRef};
use deltalake::arrow::error::ArrowError;
use deltalake::kernel::{DataType as DeltaType, StructField};
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What to generate. `scale` 1.0 = full size (10k products, 200 campaigns, 100k customers,
/// 5M+ orders); smaller scales shrink every table but keep small minimums.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DemoSpec {
    pub seed: u64,
    pub scale: f64,
}

impl Default for DemoSpec {
    fn default() -> Self {
        DemoSpec { seed: 42, scale: 1.0 }
    }
}

/// Rows written per table and the wall time of the whole generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoReport {
    pub products: u64,
    pub campaigns: u64,
    pub customers: u64,
    pub orders: u64,
    pub cards: u64,
    pub merchants: u64,
    pub transactions: u64,
    pub frauds: u64,
    pub elapsed_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("invalid demo spec: {0}")]
    InvalidSpec(String),
    #[error("demo lake: {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("demo lake: building table {table}: {source}")]
    Arrow {
        table: &'static str,
        #[source]
        source: ArrowError,
    },
    #[error("demo lake: writing Delta table {table}: {source}")]
    Delta {
        table: &'static str,
        #[source]
        source: DeltaTableError,
    },
}

/// Table names and their locations relative to `lake_dir`.
pub const DEMO_TABLES: [&str; 7] =
    ["products", "campaigns", "customers", "orders_history", "cards", "merchants", "transactions_history"];

/// Orders accumulated before a commit even if the month is not over (bounds memory at
/// large scales; at scale 1.0 a month is ~200k orders, so commits stay monthly: 24 total).
const ORDER_ROWS_PER_COMMIT_MAX: usize = 500_000;
/// Largest accepted scale: 100 = 500M orders, beyond what a demo should ever need.
const SCALE_MAX: f64 = 100.0;

/// Written last into the lake dir: the seed and scale the lake was generated with, so
/// that the live generator follows the lake actually on disk.
const SPEC_FILE: &str = "demo_spec.toml";

/// The spec the demo lake under `lake_dir` was generated with, when it says.
pub fn read_spec(lake_dir: &Path) -> Option<DemoSpec> {
    let text = std::fs::read_to_string(lake_dir.join(SPEC_FILE)).ok()?;
    let value: toml::Table = text.parse().ok()?;
    let seed = value.get("seed")?.as_integer()?;
    let scale = value.get("scale").and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))?;
    Some(DemoSpec { seed: u64::try_from(seed).ok()?, scale })
}

/// True when all four Delta tables exist under lake_dir (each has a _delta_log with a commit).
pub fn is_present(lake_dir: &Path) -> bool {
    DEMO_TABLES.iter().all(|table| {
        let Ok(entries) = std::fs::read_dir(lake_dir.join(table).join("_delta_log")) else {
            return false;
        };
        entries.flatten().any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // A commit is `<20-digit version>.json`.
            name.strip_suffix(".json")
                .is_some_and(|version| version.len() == 20 && version.bytes().all(|b| b.is_ascii_digit()))
        })
    })
}

/// Generates the four Delta tables under lake_dir/<table name>, replacing any earlier demo tables there
/// (delete those dirs first). Shows an indicatif progress bar on stderr when `progress` is true
/// (hidden otherwise). Deterministic: the same spec gives byte-identical row contents.
///
/// Row generation is CPU work done inline on the calling task (a few ms per day of orders);
/// Delta writes are awaited between months.
pub async fn generate(lake_dir: &Path, spec: &DemoSpec, progress: bool) -> Result<DemoReport, DemoError> {
    let started = Instant::now();
    if !(spec.scale.is_finite() && spec.scale > 0.0 && spec.scale <= SCALE_MAX) {
        return Err(DemoError::InvalidSpec(format!("scale must be in (0, {SCALE_MAX}], got {}", spec.scale)));
    }
    let sizes = data::sizes(spec.scale);
    let seed = spec.seed;

    std::fs::create_dir_all(lake_dir).map_err(io_error("creating", lake_dir))?;
    for table in DEMO_TABLES {
        let dir = lake_dir.join(table);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io_error("removing old demo table", &dir))?;
        }
    }

    // The small tables are generated first (orders depend on them) but written last, so an
    // interrupted generation leaves at least one table missing and is_present() stays false.
    let bar = progress_bar(progress, 2 * data::ORDER_DAYS as u64 + 5);
    bar.set_message("products, campaigns, customers");
    let (products, products_batch) = data::products(seed, sizes.products).map_err(arrow_error("products"))?;
    let (campaigns, campaigns_batch) =
        data::campaigns(seed, sizes.campaigns, &products).map_err(arrow_error("campaigns"))?;
    let (signups, customers_batch) = data::customers(seed, sizes.customers).map_err(arrow_error("customers"))?;

    const ORDERS: &str = "orders_history";
    let mut orders_table = create_table(lake_dir, ORDERS, &data::orders_schema(), &["order_date"]).await?;
    let base_counts = data::base_day_counts(seed, sizes.orders_min);
    let mut next_order_id: i64 = 1;
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_rows = 0usize;
    for day in 0..data::ORDER_DAYS {
        let date = data::order_date(day);
        bar.set_message(format!("orders {date}"));
        let mix = data::day_mix(day, &products, &campaigns);
        // Lift adds orders on top of the baseline instead of taking them from other products.
        let count = (base_counts[day as usize] as f64 * mix.lift_ratio).ceil() as usize;
        let batch =
            data::order_day(seed, day, count, next_order_id, &mix, &products, &signups).map_err(arrow_error(ORDERS))?;
        next_order_id += count as i64;
        pending_rows += count;
        pending.push(batch);
        let month_done = data::order_date(day + 1).month() != date.month();
        if month_done || pending_rows >= ORDER_ROWS_PER_COMMIT_MAX || day + 1 == data::ORDER_DAYS {
            bar.set_message(format!("orders: committing through {date}"));
            orders_table = append(orders_table, ORDERS, std::mem::take(&mut pending)).await?;
            pending_rows = 0;
        }
        bar.inc(1);
    }
    assert!(pending.is_empty(), "every generated day of orders is committed");
    let orders = (next_order_id - 1) as u64;
    assert!(orders >= sizes.orders_min, "{orders} orders < minimum {}", sizes.orders_min);

    // The payments business: card holders are the shop's customers.
    let payment_sizes = payments::sizes(spec.scale);
    let model = payments::PaymentsModel::new(seed, spec.scale, &payments::customer_countries(&customers_batch));
    let compromised = payments::compromises(seed, payment_sizes.merchants);
    const HISTORY: &str = "transactions_history";
    let mut history = create_table(lake_dir, HISTORY, &payments::history_schema(), &["tx_date"]).await?;
    let day_counts = payments::day_counts(seed, payment_sizes.payments_min);
    let (mut next_tx_id, mut frauds): (i64, u64) = (1, 0);
    for day in 0..data::ORDER_DAYS {
        let date = data::order_date(day);
        bar.set_message(format!("transactions {date}"));
        let batch = payments::history_day(&model, seed, day, day_counts[day as usize], &compromised, next_tx_id)
            .map_err(arrow_error(HISTORY))?;
        next_tx_id += batch.num_rows() as i64;
        pending_rows += batch.num_rows();
        let labels = batch.column_by_name("is_fraud").expect("history has is_fraud");
        frauds += labels.as_any().downcast_ref::<BooleanArray>().expect("is_fraud is boolean").true_count() as u64;
        pending.push(batch);
        let month_done = data::order_date(day + 1).month() != date.month();
        if month_done || pending_rows >= ORDER_ROWS_PER_COMMIT_MAX || day + 1 == data::ORDER_DAYS {
            bar.set_message(format!("transactions: committing through {date}"));
            history = append(history, HISTORY, std::mem::take(&mut pending)).await?;
            pending_rows = 0;
        }
        bar.inc(1);
    }
    let transactions = (next_tx_id - 1) as u64;
    assert!(transactions >= payment_sizes.payments_min, "{transactions} payments < {}", payment_sizes.payments_min);
    let cards_batch = payments::cards_batch(seed, &model).map_err(arrow_error("cards"))?;
    let merchants_batch = payments::merchants_batch(&model).map_err(arrow_error("merchants"))?;

    for (name, batch) in [
        ("cards", cards_batch),
        ("merchants", merchants_batch),
        ("campaigns", campaigns_batch),
        ("customers", customers_batch),
        ("products", products_batch),
    ] {
        bar.set_message(name);
        write_table(lake_dir, name, batch).await?;
        bar.inc(1);
    }
    bar.finish_with_message(format!("demo lake ready: {orders} orders, {transactions} payments"));
    let spec_path = lake_dir.join(SPEC_FILE);
    std::fs::write(&spec_path, format!("seed = {}\nscale = {}\n", spec.seed, spec.scale))
        .map_err(io_error("write", &spec_path))?;

    Ok(DemoReport {
        products: sizes.products as u64,
        campaigns: sizes.campaigns as u64,
        customers: sizes.customers as u64,
        orders,
        cards: payment_sizes.cards as u64,
        merchants: payment_sizes.merchants as u64,
        transactions,
        frauds,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

fn progress_bar(visible: bool, steps: u64) -> ProgressBar {
    let target = if visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let bar = ProgressBar::with_draw_target(Some(steps), target);
    // The template is a constant, so failing to parse it is a bug, not a runtime condition.
    let style = ProgressStyle::with_template("{spinner} demo lake [{bar:40}] {pos}/{len} {wide_msg} ({elapsed})")
        .expect("valid progress template")
        .progress_chars("=> ");
    bar.with_style(style)
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DemoError {
    let path = path.to_path_buf();
    move |source| DemoError::Io { action, path, source }
}

fn arrow_error(table: &'static str) -> impl FnOnce(ArrowError) -> DemoError {
    move |source| DemoError::Arrow { table, source }
}

fn delta_error(table: &'static str) -> impl FnOnce(DeltaTableError) -> DemoError {
    move |source| DemoError::Delta { table, source }
}

/// The Delta column type for each Arrow type the generator produces.
fn delta_type(arrow: &ArrowType) -> DeltaType {
    match arrow {
        ArrowType::Int64 => DeltaType::LONG,
        ArrowType::Int32 => DeltaType::INTEGER,
        ArrowType::Boolean => DeltaType::BOOLEAN,
        ArrowType::Utf8 => DeltaType::STRING,
        ArrowType::Date32 => DeltaType::DATE,
        ArrowType::Timestamp(_, Some(_)) => DeltaType::TIMESTAMP,
        ArrowType::Decimal128(precision, scale) => {
            DeltaType::decimal(*precision, *scale as u8).expect("generator decimals are valid Delta decimals")
        }
        other => unreachable!("the demo schemas do not use {other}"),
    }
}

/// Creates an empty Delta table at lake_dir/name with the schema and partition columns.
async fn create_table(
    lake_dir: &Path,
    name: &'static str,
    schema: &SchemaRef,
    partition_columns: &[&str],
) -> Result<DeltaTable, DemoError> {
    let dir = lake_dir.join(name);
    std::fs::create_dir_all(&dir).map_err(io_error("creating", &dir))?;
    // from_directory_path needs an absolute path.
    let absolute = std::path::absolute(&dir).map_err(io_error("resolving", &dir))?;
    let url = url::Url::from_directory_path(&absolute).map_err(|()| DemoError::Io {
        action: "turning into a file URL",
        path: absolute.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an absolute directory path"),
    })?;
    let table = DeltaTable::try_from_url(url).await.map_err(delta_error(name))?;
    let columns = schema
        .fields()
        .iter()
        .map(|field| StructField::new(field.name().clone(), delta_type(field.data_type()), field.is_nullable()));
    table
        .create()
        .with_table_name(name)
        .with_comment("watershed demo shop (generated)")
        .with_columns(columns)
        .with_partition_columns(partition_columns.iter().copied())
        .with_save_mode(SaveMode::ErrorIfExists)
        .await
        .map_err(delta_error(name))
}

/// Appends batches to the table as one commit; returns the table at the new version.
async fn append(table: DeltaTable, name: &'static str, batches: Vec<RecordBatch>) -> Result<DeltaTable, DemoError> {
    table.write(batches).with_save_mode(SaveMode::Append).await.map_err(delta_error(name))
}

/// A small table: create it and write its single batch.
async fn write_table(lake_dir: &Path, name: &'static str, batch: RecordBatch) -> Result<(), DemoError> {
    let table = create_table(lake_dir, name, &batch.schema(), &[]).await?;
    append(table, name, vec![batch]).await?;
    Ok(())
}

/// The cards and merchants of the demo's payments business, for the live `transactions`
/// generator (connectors/datagen): the same ones the lake holds.
pub fn payments_model(spec: &DemoSpec) -> Result<payments::PaymentsModel, DemoError> {
    let sizes = data::sizes(spec.scale);
    let (_, customers) = data::customers(spec.seed, sizes.customers).map_err(arrow_error("customers"))?;
    Ok(payments::PaymentsModel::new(spec.seed, spec.scale, &payments::customer_countries(&customers)))
}

/// What the live event generator (connectors/datagen) needs to stay consistent with the
/// lake: the same products (prices, popularity, categories), customers and campaigns,
/// derived from the same seed and scale.
pub struct ShopModel {
    pub customers: usize,
    /// Price of product `i + 1` in cents.
    pub price_cents: Vec<i64>,
    /// Running sum of popularity weights, for weighted picks of a product index.
    pub popularity_cumulative: Vec<f64>,
    /// For campaign `i + 1`: the product indexes it advertises.
    pub campaign_products: Vec<Vec<usize>>,
}

impl ShopModel {
    pub fn new(spec: &DemoSpec) -> Result<ShopModel, DemoError> {
        let sizes = data::sizes(spec.scale);
        let (products, _) = data::products(spec.seed, sizes.products).map_err(arrow_error("products"))?;
        let (campaigns, _) =
            data::campaigns(spec.seed, sizes.campaigns, &products).map_err(arrow_error("campaigns"))?;
        let campaign_products = campaigns
            .iter()
            .map(|campaign| match campaign.target {
                data::Target::Product(p) => vec![p],
                data::Target::Category(c) => {
                    (0..products.category.len()).filter(|p| products.category[*p] == c).collect()
                }
            })
            .collect();
        let mut running = 0.0;
        let popularity_cumulative = products
            .popularity
            .iter()
            .map(|w| {
                running += w;
                running
            })
            .collect();
        Ok(ShopModel {
            customers: sizes.customers,
            price_cents: products.price_cents,
            popularity_cumulative,
            campaign_products,
        })
    }

    /// A product index picked by popularity, from a uniform draw in [0, 1).
    pub fn popular_product(&self, uniform: f64) -> usize {
        let total = *self.popularity_cumulative.last().expect("a shop has products");
        self.popularity_cumulative.partition_point(|c| *c <= uniform * total).min(self.popularity_cumulative.len() - 1)
    }
}

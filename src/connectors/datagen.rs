//! `connector = 'datagen'`: the demo shop's live events, consistent with the demo lake.
//!
//! One seeded sequence of clicks drives both kinds: `kind = 'clicks'` emits the clicks,
//! `kind = 'orders'` the orders some of those clicks turn into (the same customer and
//! product, a few seconds to ten minutes later). Two sources declared with the same seed,
//! scale and rate therefore tell one story. A tenth of the lake's campaigns (picked by the
//! seed) run live; their clicks carry `campaign_id` (5% of clicks), and a click on an advertised product
//! converts `CAMPAIGN_LIFT` times as often, so the campaign effect shows in SQL.
//!
//! `kind = 'transactions'` emits the demo's card payments (demo/payments.rs): the same
//! cards, merchants and kinds of fraud as the lake's `transactions_history`, without the
//! labels (whether a payment is fraud is what a model is asked), `rate` payments a second.
//!
//! Event time is the wall clock at generation, except that a fraction of events is
//! emitted with an older timestamp: `out_of_order` ones up to `max_disorder` behind, and
//! `late` ones further behind than the watermark delay, so they arrive late. The
//! sequence of events is deterministic for a seed; their timestamps follow the clock.

use std::collections::BinaryHeap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Decimal128Array, Int64Array, RecordBatch, TimestampMicrosecondArray};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::demo::{DemoSpec, ShopModel};
use crate::error::{WsError, WsResult, sqlstate};
use crate::stream::Source;
use crate::stream::spec::{SourceSpec, parse_duration_ms};

pub const OPTIONS: [&str; 9] =
    ["kind", "rate", "seed", "scale", "out_of_order", "late", "max_disorder", "backfill", "batch_interval"];

/// Upper bound on the configured rate; the generator is not a load tester.
pub const RATE_MAX: f64 = 5_000_000.0;
/// Upper bound on one batch, whatever the rate and interval.
const BATCH_ROWS_MAX: usize = 65_536;
/// Share of clicks that come from an ad (and carry its campaign_id).
const AD_CLICK_SHARE: f64 = 0.05;
/// Conversion of an organic click into an order; ad clicks on advertised products convert
/// CAMPAIGN_LIFT times as often.
const ORGANIC_CONVERSION: f64 = 0.04;
const CAMPAIGN_LIFT: f64 = 3.0;
/// Orders follow their click by 5 s to 10 min.
const ORDER_DELAY_US: (i64, i64) = (5_000_000, 600_000_000);
/// Live order ids start here, above any id in the lake's history.
const ORDER_ID_BASE: i64 = 1_000_000_000;
/// One in this many campaigns runs live.
const LIVE_CAMPAIGN_EVERY: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Clicks,
    Orders,
    Transactions,
}

#[derive(Debug, Clone)]
pub struct DatagenConfig {
    pub kind: Kind,
    pub rate_per_s: f64,
    pub shop: DemoSpec,
    pub out_of_order: f64,
    pub late: f64,
    pub max_disorder_us: i64,
    pub backfill_us: i64,
    pub batch_interval_ms: u64,
}

fn timestamptz() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The columns each kind produces, as the demo schemas say.
pub fn schema_of(kind: Kind) -> SchemaRef {
    let fields = match kind {
        Kind::Clicks => vec![
            Field::new("user_id", DataType::Int64, true),
            Field::new("campaign_id", DataType::Int64, true),
            Field::new("product_id", DataType::Int64, true),
            Field::new("ts", timestamptz(), true),
        ],
        Kind::Orders => vec![
            Field::new("order_id", DataType::Int64, true),
            Field::new("customer_id", DataType::Int64, true),
            Field::new("product_id", DataType::Int64, true),
            Field::new("amount", DataType::Decimal128(12, 2), true),
            Field::new("ts", timestamptz(), true),
        ],
        Kind::Transactions => return crate::demo::payments::live_schema(),
    };
    Arc::new(Schema::new(fields))
}

fn fraction(spec: &SourceSpec, key: &str, default: f64) -> WsResult<f64> {
    match spec.option(key) {
        None => Ok(default),
        Some(text) => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| (0.0..=1.0).contains(f))
            .ok_or_else(|| invalid(format!("{key} must be a fraction between 0 and 1, got {text:?}"))),
    }
}

fn invalid(message: String) -> WsError {
    WsError::new(sqlstate::INVALID_PARAMETER_VALUE, message)
}

impl DatagenConfig {
    /// Validates the options and that the declared columns are the kind's columns.
    pub fn from_spec(spec: &SourceSpec, demo: Option<DemoSpec>) -> WsResult<DatagenConfig> {
        spec.check_options(&OPTIONS)?;
        let kind = match spec.option("kind").map(str::to_ascii_lowercase).as_deref() {
            Some("clicks") => Kind::Clicks,
            Some("orders") => Kind::Orders,
            Some("transactions") => Kind::Transactions,
            other => {
                return Err(invalid(format!(
                    "datagen needs kind = 'clicks', 'orders' or 'transactions', got {other:?}"
                )));
            }
        };
        spec.check_columns(&schema_of(kind), &format!("datagen kind {kind:?}"))?;
        let rate_text = spec.option("rate").unwrap_or("1000/s");
        let rate_per_s = rate_text
            .trim()
            .trim_end_matches("/s")
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|r| *r > 0.0 && *r <= RATE_MAX)
            .ok_or_else(|| invalid(format!("rate must be events per second in (0, {RATE_MAX}], got {rate_text:?}")))?;
        let demo = demo.unwrap_or_default();
        let seed = match spec.option("seed") {
            Some(text) => {
                text.trim().parse().map_err(|_| invalid(format!("seed must be a whole number, got {text:?}")))?
            }
            None => demo.seed,
        };
        let scale = match spec.option("scale") {
            Some(text) => text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| *s > 0.0 && *s <= 100.0)
                .ok_or_else(|| invalid(format!("scale must be in (0, 100], got {text:?}")))?,
            None => demo.scale,
        };
        let duration_us = |key: &str, default_ms: u64| -> WsResult<i64> {
            let ms = match spec.option(key) {
                Some(text) => parse_duration_ms(text)?,
                None => default_ms,
            };
            Ok(ms as i64 * 1_000)
        };
        let watermark_delay_us = spec.event_time.as_ref().map_or(0, |e| e.delay_us);
        let max_disorder_us = duration_us("max_disorder", (watermark_delay_us / 1_000) as u64)?;
        let config = DatagenConfig {
            kind,
            rate_per_s,
            shop: DemoSpec { seed, scale },
            out_of_order: fraction(spec, "out_of_order", 0.05)?,
            late: fraction(spec, "late", 0.01)?,
            max_disorder_us,
            backfill_us: duration_us("backfill", 0)?,
            batch_interval_ms: (duration_us("batch_interval", 100)? / 1_000).max(1) as u64,
        };
        if config.backfill_us > spec.retention_ms as i64 * 1_000 {
            return Err(invalid("backfill must not exceed the source's retention".into()));
        }
        Ok(config)
    }
}

/// A click of the shared sequence.
#[derive(Debug, Clone, Copy)]
struct Click {
    index: u64,
    user_id: i64,
    campaign_id: Option<i64>,
    product: usize,
    nominal_us: i64,
}

/// The deterministic click sequence and the orders it leads to.
/// An order waiting for its time: (ts, order fields), ordered by time first.
type PendingOrder = (i64, i64, i64, usize, i128);

pub struct Generator {
    config: DatagenConfig,
    shop: ShopModel,
    live_campaigns: Vec<usize>,
    clicks_rng: ChaCha8Rng,
    orders_rng: ChaCha8Rng,
    timing_rng: ChaCha8Rng,
    start_us: i64,
    next_click: u64,
    /// Orders waiting for their time: (Reverse(ts), order fields).
    pending: BinaryHeap<std::cmp::Reverse<PendingOrder>>,
    /// `kind = 'transactions'`: the payments generator (None for the shop's kinds).
    payments: Option<crate::demo::payments::LivePayments>,
    next_payment: u64,
}

/// Live payment ids start here, above any id in the lake's history.
const TX_ID_BASE: i64 = 1_000_000_000;

impl Generator {
    pub fn new(config: DatagenConfig, start_us: i64) -> WsResult<Generator> {
        let shop = ShopModel::new(&config.shop).map_err(|e| WsError::internal(format!("datagen shop model: {e}")))?;
        let mut pick = ChaCha8Rng::seed_from_u64(config.shop.seed ^ 0x11FE);
        let mut campaigns: Vec<usize> = (0..shop.campaign_products.len()).collect();
        campaigns.shuffle(&mut pick);
        campaigns.truncate((campaigns.len() / LIVE_CAMPAIGN_EVERY).max(1));
        campaigns.retain(|c| !shop.campaign_products[*c].is_empty());
        let seed = config.shop.seed;
        let payments = match config.kind {
            Kind::Transactions => {
                let model = crate::demo::payments_model(&config.shop)
                    .map_err(|e| WsError::internal(format!("datagen payments model: {e}")))?;
                Some(crate::demo::payments::LivePayments::new(model, seed))
            }
            Kind::Clicks | Kind::Orders => None,
        };
        Ok(Generator {
            payments,
            next_payment: 0,
            live_campaigns: campaigns,
            shop,
            clicks_rng: ChaCha8Rng::seed_from_u64(seed ^ 0xC11C),
            orders_rng: ChaCha8Rng::seed_from_u64(seed ^ 0x0DE5),
            // Disorder draws come from the kind's own stream so both kinds keep the same
            // click sequence whatever their disorder settings.
            timing_rng: ChaCha8Rng::seed_from_u64(seed ^ 0x7131 ^ config.kind as u64),
            start_us: start_us - config.backfill_us,
            next_click: 0,
            pending: BinaryHeap::new(),
            config,
        })
    }

    fn next_click(&mut self) -> Click {
        let index = self.next_click;
        self.next_click += 1;
        let rng = &mut self.clicks_rng;
        let user_id = rng.random_range(1..=self.shop.customers as i64);
        let (campaign_id, product) = if !self.live_campaigns.is_empty() && rng.random_bool(AD_CLICK_SHARE) {
            let campaign = self.live_campaigns[rng.random_range(0..self.live_campaigns.len())];
            let products = &self.shop.campaign_products[campaign];
            (Some(campaign as i64 + 1), products[rng.random_range(0..products.len())])
        } else {
            (None, self.shop.popular_product(rng.random::<f64>()))
        };
        let nominal_us = self.start_us + (index as f64 * 1_000_000.0 / self.config.rate_per_s) as i64;
        Click { index, user_id, campaign_id, product, nominal_us }
    }

    /// Shifts an event's time back for the out-of-order and late fractions.
    fn disorder(&mut self, ts: i64, watermark_delay_us: i64) -> i64 {
        let draw: f64 = self.timing_rng.random();
        if draw < self.config.late {
            let extra = self.timing_rng.random_range(1_000_000..=60_000_000);
            ts - watermark_delay_us - extra
        } else if draw < self.config.late + self.config.out_of_order && self.config.max_disorder_us > 0 {
            ts - self.timing_rng.random_range(0..=self.config.max_disorder_us)
        } else {
            ts
        }
    }

    /// Every event due at or before `now_us`, as at most one batch of `schema`.
    pub fn generate(
        &mut self,
        now_us: i64,
        watermark_delay_us: i64,
        schema: &SchemaRef,
    ) -> WsResult<Option<RecordBatch>> {
        match self.config.kind {
            Kind::Clicks => self.clicks_until(now_us, watermark_delay_us, schema),
            Kind::Orders => self.orders_until(now_us, watermark_delay_us, schema),
            Kind::Transactions => self.payments_until(now_us, watermark_delay_us, schema),
        }
    }

    fn payments_until(&mut self, now_us: i64, delay_us: i64, schema: &SchemaRef) -> WsResult<Option<RecordBatch>> {
        let count = (self.due(now_us).saturating_sub(self.next_payment) as usize).min(BATCH_ROWS_MAX);
        if count == 0 {
            return Ok(None);
        }
        let mut payments = Vec::with_capacity(count);
        for _ in 0..count {
            let nominal_us = self.start_us + (self.next_payment as f64 * 1_000_000.0 / self.config.rate_per_s) as i64;
            let mut payment = self.payments.as_mut().expect("a transactions generator has its model").next(nominal_us);
            payment.ts_us = self.disorder(nominal_us, delay_us);
            payments.push(payment);
            self.next_payment += 1;
        }
        let first_id = TX_ID_BASE + (self.next_payment - count as u64) as i64;
        let columns = crate::demo::payments::live_columns(&payments, first_id)?;
        Ok(Some(RecordBatch::try_new(schema.clone(), columns)?))
    }

    fn due(&self, now_us: i64) -> u64 {
        let elapsed_us = (now_us - self.start_us).max(0) as f64;
        (elapsed_us * self.config.rate_per_s / 1_000_000.0) as u64
    }

    fn clicks_until(&mut self, now_us: i64, delay_us: i64, schema: &SchemaRef) -> WsResult<Option<RecordBatch>> {
        let count = (self.due(now_us).saturating_sub(self.next_click) as usize).min(BATCH_ROWS_MAX);
        if count == 0 {
            return Ok(None);
        }
        let (mut users, mut campaigns, mut products, mut times) = (
            Vec::with_capacity(count),
            Vec::with_capacity(count),
            Vec::with_capacity(count),
            Vec::with_capacity(count),
        );
        for _ in 0..count {
            let click = self.next_click();
            users.push(click.user_id);
            campaigns.push(click.campaign_id);
            products.push(click.product as i64 + 1);
            times.push(self.disorder(click.nominal_us, delay_us));
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(users)),
            Arc::new(Int64Array::from(campaigns)),
            Arc::new(Int64Array::from(products)),
            Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
        ];
        Ok(Some(RecordBatch::try_new(schema.clone(), columns)?))
    }

    fn orders_until(&mut self, now_us: i64, delay_us: i64, schema: &SchemaRef) -> WsResult<Option<RecordBatch>> {
        // Walk the clicks due by now; each may schedule one order in the future.
        let due = self.due(now_us);
        let mut walked = 0;
        while self.next_click < due && walked < BATCH_ROWS_MAX * 8 {
            walked += 1;
            let click = self.next_click();
            let rng = &mut self.orders_rng;
            let conversion =
                if click.campaign_id.is_some() { ORGANIC_CONVERSION * CAMPAIGN_LIFT } else { ORGANIC_CONVERSION };
            if !rng.random_bool(conversion) {
                continue;
            }
            let at = click.nominal_us + rng.random_range(ORDER_DELAY_US.0..ORDER_DELAY_US.1);
            let quantity = rng.random_range(1..=3) as i128;
            let amount = self.shop.price_cents[click.product] as i128 * quantity;
            let order_id = ORDER_ID_BASE + click.index as i64;
            self.pending.push(std::cmp::Reverse((at, order_id, click.user_id, click.product, amount)));
        }
        // Clicks not walked yet can only lead to orders after their time plus the shortest
        // delay: emitting beyond that horizon would put their orders out of order.
        let next_click_us = self.start_us + (self.next_click as f64 * 1_000_000.0 / self.config.rate_per_s) as i64;
        let horizon_us = now_us.min(next_click_us + ORDER_DELAY_US.0);
        let (mut ids, mut customers, mut products, mut amounts, mut times) = (vec![], vec![], vec![], vec![], vec![]);
        while let Some(std::cmp::Reverse((at, ..))) = self.pending.peek() {
            if *at > horizon_us || ids.len() >= BATCH_ROWS_MAX {
                break;
            }
            let std::cmp::Reverse((at, order_id, customer, product, amount)) = self.pending.pop().expect("peeked");
            ids.push(order_id);
            customers.push(customer);
            products.push(product as i64 + 1);
            amounts.push(amount);
            times.push(self.disorder(at, delay_us));
        }
        if ids.is_empty() {
            return Ok(None);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(Int64Array::from(customers)),
            Arc::new(Int64Array::from(products)),
            Arc::new(Decimal128Array::from(amounts).with_precision_and_scale(12, 2)?),
            Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
        ];
        Ok(Some(RecordBatch::try_new(schema.clone(), columns)?))
    }
}

/// Runs the generator until the source is dropped or the server stops.
pub fn start(source: Arc<Source>, config: DatagenConfig) -> WsResult<()> {
    let now_us = crate::stream::now_ms() * 1_000;
    let mut generator = Generator::new(config.clone(), now_us)?;
    let delay_us = source.spec.event_time.as_ref().map_or(0, |e| e.delay_us);
    let schema = source.spec.schema.clone();
    super::run_generator(source, config.batch_interval_ms, BATCH_ROWS_MAX, move |now_ms| {
        generator.generate(now_ms * 1_000, delay_us, &schema).map(|batch| match batch {
            Some(batch) => super::Generated::Batch(batch),
            None => super::Generated::NothingDue,
        })
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kind: Kind) -> DatagenConfig {
        DatagenConfig {
            kind,
            rate_per_s: 1_000.0,
            shop: DemoSpec { seed: 7, scale: 0.01 },
            out_of_order: 0.1,
            late: 0.0,
            max_disorder_us: 2_000_000,
            backfill_us: 0,
            batch_interval_ms: 100,
        }
    }

    #[test]
    fn same_seed_same_events_and_orders_follow_clicks() {
        let start = 1_700_000_000_000_000;
        let mut a = Generator::new(config(Kind::Clicks), start).unwrap();
        let mut b = Generator::new(config(Kind::Clicks), start).unwrap();
        let schema = schema_of(Kind::Clicks);
        let batch_a = a.generate(start + 10_000_000, 5_000_000, &schema).unwrap().unwrap();
        let batch_b = b.generate(start + 10_000_000, 5_000_000, &schema).unwrap().unwrap();
        assert_eq!(batch_a, batch_b);
        assert_eq!(batch_a.num_rows(), 10_000);
        let campaign = batch_a.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        let ads = campaign.iter().flatten().count();
        assert!(ads > 300 && ads < 700, "about 5% ad clicks, got {ads}");

        let mut orders = Generator::new(config(Kind::Orders), start).unwrap();
        let batch = orders.generate(start + 3_600_000_000, 5_000_000, &schema_of(Kind::Orders)).unwrap().unwrap();
        // 3.6M clicks in an hour at 1000/s is capped per batch; orders are a few percent of clicks walked.
        assert!(batch.num_rows() > 0);
        let ids = batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert!(ids.values().iter().all(|id| *id >= ORDER_ID_BASE));
    }

    #[test]
    fn transactions_follow_the_lake_model_and_repeat_for_a_seed() {
        let start = 1_700_000_000_000_000;
        let schema = schema_of(Kind::Transactions);
        let mut a = Generator::new(config(Kind::Transactions), start).unwrap();
        let mut b = Generator::new(config(Kind::Transactions), start).unwrap();
        let batch = a.generate(start + 60_000_000, 5_000_000, &schema).unwrap().unwrap();
        assert_eq!(batch, b.generate(start + 60_000_000, 5_000_000, &schema).unwrap().unwrap());
        assert_eq!(batch.num_rows(), 60_000);
        let cards = crate::demo::payments_model(&DemoSpec { seed: 7, scale: 0.01 }).unwrap().cards() as i64;
        let card_ids = batch.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        assert!(card_ids.values().iter().all(|c| (1..=cards).contains(c)));
        let ids = batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert!(ids.values().windows(2).all(|w| w[1] == w[0] + 1) && ids.value(0) == TX_ID_BASE);
        // Leaked cards pay many times their usual amount: some payments are far above any
        // genuine one's typical size.
        let amounts = batch.column(3).as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert!(amounts.values().iter().any(|a| *a > 100_000), "some payments above 1000.00");
    }

    #[test]
    fn out_of_order_events_stay_within_the_disorder_bound() {
        let start = 1_700_000_000_000_000;
        let mut generator = Generator::new(config(Kind::Clicks), start).unwrap();
        let batch = generator.generate(start + 5_000_000, 5_000_000, &schema_of(Kind::Clicks)).unwrap().unwrap();
        let ts = batch.column(3).as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap();
        let mut behind = 0;
        for (i, t) in ts.values().iter().enumerate() {
            let nominal = start + i as i64 * 1_000;
            assert!(*t <= nominal && nominal - *t <= 2_000_000);
            behind += (*t < nominal) as usize;
        }
        assert!(behind > 200 && behind < 800, "about 10% out of order, got {behind}");
    }
}

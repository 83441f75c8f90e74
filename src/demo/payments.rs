//! The demo's payments business (DESIGN.md section 1, scenario 2): cards, merchants and two
//! years of labelled card transactions, and the live generator of the same transactions.
//!
//! Deterministic from the demo's seed and scale, like the shop: every table and every day
//! has its own seeded ChaCha stream (data.rs `rng_for`), so a day is generated on its own
//! and the same spec always yields the same rows. Card holders are the shop's customers
//! (their `country` is the card's home country).
//!
//! How fraud happens (about 0.5-1% of transactions), designed so that a model can learn
//! most of it from per-transaction features and a simple rule cannot catch it all:
//! - **leaked cards**: a card's details are stolen; on the leak day the fraudster pays
//!   2-6 times, mostly online and abroad (often from a few high-risk countries), with
//!   amounts several times the card's usual amount; a quarter of leaks stay domestic with
//!   smaller ratios, so "abroad" alone is not the rule;
//! - **card testing**: a quarter of leaks start with a burst of 5-12 tiny online payments
//!   within minutes (a single small payment looks like any app-store purchase; the burst
//!   is what gives it away: a velocity feature);
//! - **compromised merchants**: a few merchants are breached for 2-6 weeks; every payment
//!   there in that time is fraudulent while looking ordinary (only a merchant-level
//!   feature built from past labels can see it);
//! - **weak signals**: night-time and a new device are more frequent in fraud, but common
//!   enough in genuine payments (travellers, new phones) to be only weakly informative;
//!   genuine payments also go abroad (3%) and are sometimes far above the usual amount.
//!
//! Labels arrive late: `reported_at` is 1 to 30 days after the payment, so a model trained
//! at time T only knows fraud reported by T (the split's gap, src/model/).

use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, AsArray, BooleanArray, Date32Array, Decimal128Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::error::ArrowError;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::data::{self, Stream, rng_for};

const MICROS_PER_MINUTE: i64 = 60_000_000;
const MICROS_PER_HOUR: i64 = 60 * MICROS_PER_MINUTE;
const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;
/// Days between 1970-01-01 and the first day of history (data.rs ORDERS_START).
const START_EPOCH_DAYS: i64 = 20_028;

/// Merchant categories: (name, online, typical amount relative to the card's usual one).
#[rustfmt::skip]
const CATEGORIES: [(&str, bool, f64); 12] = [
    ("grocery", false, 0.8), ("restaurant", false, 0.9), ("fuel", false, 1.1), ("pharmacy", false, 0.5),
    ("clothing", false, 1.6), ("electronics", false, 2.5), ("travel", true, 3.0), ("marketplace", true, 1.2),
    ("digital_goods", true, 0.15), ("gaming", true, 0.4), ("jewelry", false, 4.0), ("subscriptions", true, 0.3),
];
/// Relative share of payments per category.
const CATEGORY_WEIGHTS: [f64; 12] = [30.0, 14.0, 10.0, 6.0, 7.0, 4.0, 3.0, 12.0, 6.0, 3.0, 1.0, 4.0];
/// Countries of the card holders (the shop's customers, data.rs) and where they travel.
const HOME_COUNTRIES: [&str; 12] = ["DE", "FR", "GB", "NL", "IT", "ES", "PL", "AT", "SE", "US", "CH", "DK"];
/// Countries a stolen card is used from more often than others; genuine payments go there too, rarely.
const RISKY_COUNTRIES: [&str; 6] = ["BR", "NG", "TH", "RU", "MX", "ID"];
/// Share of merchants outside the home countries.
const FOREIGN_MERCHANT_SHARE: f64 = 0.08;
/// Relative payment rate per UTC hour: quiet nights.
#[rustfmt::skip]
const HOUR_WEIGHTS: [f64; 24] = [
    0.3, 0.2, 0.12, 0.1, 0.1, 0.15, 0.4, 0.8, 1.2, 1.3, 1.4, 1.6, 1.9, 1.7, 1.4, 1.4, 1.6, 1.9,
    2.1, 2.0, 1.7, 1.3, 0.9, 0.5,
];

/// Genuine payments abroad, on a new device, and far above the usual amount.
const GENUINE_ABROAD: f64 = 0.03;
const GENUINE_NEW_DEVICE: f64 = 0.03;
const GENUINE_BIG: f64 = 0.01;
/// Leaks per 10,000 payments, and what a leak does.
const LEAKS_PER_10K_PAYMENTS: f64 = 9.0;
const LEAK_CARD_TESTING: f64 = 0.25;
const LEAK_DOMESTIC: f64 = 0.25;
/// Compromised merchants per 10,000 merchants per day of history.
const COMPROMISES_PER_10K_MERCHANTS_PER_DAY: f64 = 0.3;

/// Row counts of the payments tables for a scale (payments at least this many).
#[derive(Debug, Clone, Copy)]
pub(super) struct PaymentSizes {
    pub cards: usize,
    pub merchants: usize,
    pub payments_min: u64,
}

pub(super) fn sizes(scale: f64) -> PaymentSizes {
    let at_least = |full: f64, min: usize| ((full * scale).round() as usize).max(min);
    PaymentSizes {
        cards: at_least(150_000.0, 300),
        merchants: at_least(20_000.0, 100),
        payments_min: (5_000_000.0 * scale).ceil() as u64,
    }
}

fn timestamptz(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), nullable)
}

pub(super) fn cards_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("card_id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, false),
        Field::new("brand", DataType::Utf8, false),
        Field::new("usual_amount", DataType::Decimal128(10, 2), false),
        timestamptz("issued_at", false),
    ]))
}

pub(super) fn merchants_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("merchant_id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("country", DataType::Utf8, false),
    ]))
}

/// `transactions_history`: the live columns plus the labels and the partition column.
pub(super) fn history_schema() -> SchemaRef {
    let mut fields: Vec<Field> = live_fields();
    fields.push(Field::new("is_fraud", DataType::Boolean, false));
    fields.push(timestamptz("reported_at", true));
    fields.push(Field::new("tx_date", DataType::Date32, false));
    Arc::new(Schema::new(fields))
}

/// The columns of a payment as the live `transactions` source has them.
fn live_fields() -> Vec<Field> {
    vec![
        Field::new("tx_id", DataType::Int64, false),
        Field::new("card_id", DataType::Int64, false),
        Field::new("merchant_id", DataType::Int64, false),
        Field::new("amount", DataType::Decimal128(12, 2), false),
        Field::new("country", DataType::Utf8, false),
        Field::new("channel", DataType::Utf8, false),
        Field::new("new_device", DataType::Boolean, false),
        timestamptz("ts", false),
    ]
}

/// The live source's schema (nullable, as source columns are declared).
pub fn live_schema() -> SchemaRef {
    Arc::new(Schema::new(live_fields().into_iter().map(|f| f.with_nullable(true)).collect::<Vec<_>>()))
}

/// One payment, before it becomes a row.
#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    pub ts_us: i64,
    pub card: usize,
    pub merchant: usize,
    pub amount_cents: i64,
    pub country: &'static str,
    pub online: bool,
    pub new_device: bool,
    pub is_fraud: bool,
}

/// Cards and merchants: everything payments are drawn from, for history and live alike.
pub struct PaymentsModel {
    /// Per card: its holder (a shop customer index), home country index into
    /// HOME_COUNTRIES, usual amount in cents.
    card_customer: Vec<usize>,
    card_home: Vec<usize>,
    card_usual_cents: Vec<i64>,
    /// Running sum of card activity weights.
    card_activity_cumulative: Vec<f64>,
    merchant_category: Vec<usize>,
    merchant_country: Vec<&'static str>,
    /// Running sum of merchant popularity weights, per (home country, category) and for
    /// foreign merchants per category: (merchant indexes, cumulative weights).
    domestic: Vec<Vec<(Vec<usize>, Vec<f64>)>>,
    foreign: Vec<(Vec<usize>, Vec<f64>)>,
    /// Per risky country: its merchants (online ones) for stolen-card use.
    risky: Vec<usize>,
    category_cumulative: Vec<f64>,
    hour_cumulative: Vec<f64>,
}

fn cumulative(weights: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut running = 0.0;
    weights
        .into_iter()
        .map(|w| {
            running += w;
            running
        })
        .collect()
}

fn pick(cumulative: &[f64], rng: &mut ChaCha8Rng) -> usize {
    let total = *cumulative.last().expect("non-empty weights");
    let target = rng.random::<f64>() * total;
    cumulative.partition_point(|c| *c <= target).min(cumulative.len() - 1)
}

/// A standard normal draw (Box-Muller), for log-normal amounts.
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

impl PaymentsModel {
    /// The model for `seed` and `scale`; `customer_countries` are the shop customers'
    /// home countries (customer `i + 1` lives in `customer_countries[i]`).
    pub(super) fn new(seed: u64, scale: f64, customer_countries: &[&str]) -> PaymentsModel {
        let sizes = sizes(scale);
        let mut rng = rng_for(seed, Stream::Cards, 0);
        let (mut card_customer, mut card_home, mut card_usual_cents, mut activity) = (vec![], vec![], vec![], vec![]);
        for _ in 0..sizes.cards {
            let customer = rng.random_range(0..customer_countries.len());
            card_customer.push(customer);
            let home = HOME_COUNTRIES.iter().position(|c| *c == customer_countries[customer]).unwrap_or(0);
            card_home.push(home);
            // Log-normal usual amount around 40.00.
            card_usual_cents.push(((4000.0f64.ln() + 0.6 * normal(&mut rng)).exp() as i64).max(200));
            activity.push((0.8 * normal(&mut rng)).exp());
        }
        let mut rng = rng_for(seed, Stream::Merchants, 0);
        let category_cumulative = cumulative(CATEGORY_WEIGHTS);
        let (mut merchant_category, mut merchant_country, mut popularity) = (vec![], vec![], vec![]);
        for _ in 0..sizes.merchants {
            merchant_category.push(pick(&category_cumulative, &mut rng));
            let country = if rng.random_bool(FOREIGN_MERCHANT_SHARE) {
                RISKY_COUNTRIES[rng.random_range(0..RISKY_COUNTRIES.len())]
            } else {
                HOME_COUNTRIES[rng.random_range(0..HOME_COUNTRIES.len())]
            };
            merchant_country.push(country);
            popularity.push((1.0 * normal(&mut rng)).exp());
        }
        let group = |members: Vec<usize>| {
            let weights = cumulative(members.iter().map(|m| popularity[*m]));
            (members, weights)
        };
        let domestic = (0..HOME_COUNTRIES.len())
            .map(|home| {
                (0..CATEGORIES.len())
                    .map(|category| {
                        group(
                            (0..sizes.merchants)
                                .filter(|m| {
                                    merchant_category[*m] == category && merchant_country[*m] == HOME_COUNTRIES[home]
                                })
                                .collect(),
                        )
                    })
                    .collect()
            })
            .collect();
        let foreign = (0..CATEGORIES.len())
            .map(|category| group((0..sizes.merchants).filter(|m| merchant_category[*m] == category).collect()))
            .collect();
        let risky = (0..sizes.merchants)
            .filter(|m| RISKY_COUNTRIES.contains(&merchant_country[*m]) && CATEGORIES[merchant_category[*m]].1)
            .collect();
        PaymentsModel {
            card_customer,
            card_home,
            card_usual_cents,
            card_activity_cumulative: cumulative(activity),
            merchant_category,
            merchant_country,
            domestic,
            foreign,
            risky,
            category_cumulative,
            hour_cumulative: cumulative(HOUR_WEIGHTS),
        }
    }

    pub fn cards(&self) -> usize {
        self.card_home.len()
    }

    /// A merchant of `category` for a card from `home`: domestic when there is one in that
    /// country (and the payment is not abroad), else any merchant of the category.
    fn merchant(&self, home: usize, category: usize, abroad: bool, rng: &mut ChaCha8Rng) -> usize {
        let (members, weights) = &self.domestic[home][category];
        if !abroad && !members.is_empty() {
            return members[pick(weights, rng)];
        }
        let (members, weights) = &self.foreign[category];
        if members.is_empty() {
            // A tiny scale may lack a category altogether: any merchant will do.
            return rng.random_range(0..self.merchant_category.len());
        }
        // Abroad: retry a few times for a merchant outside the home country.
        for _ in 0..8 {
            let merchant = members[pick(weights, rng)];
            if self.merchant_country[merchant] != HOME_COUNTRIES[home] {
                return merchant;
            }
        }
        members[pick(weights, rng)]
    }

    /// A genuine payment at `ts_us` (the card picked by activity).
    pub fn genuine(&self, ts_us: i64, rng: &mut ChaCha8Rng) -> Payment {
        let card = pick(&self.card_activity_cumulative, rng);
        let home = self.card_home[card];
        let category = pick(&self.category_cumulative, rng);
        let abroad = rng.random_bool(GENUINE_ABROAD);
        let merchant = self.merchant(home, category, abroad, rng);
        let usual = self.card_usual_cents[card] as f64;
        let ratio = if rng.random_bool(GENUINE_BIG) {
            rng.random_range(3.0..10.0)
        } else {
            CATEGORIES[category].2 * (0.5 * normal(rng)).exp()
        };
        Payment {
            ts_us,
            card,
            merchant,
            amount_cents: ((usual * ratio) as i64).max(50),
            country: self.merchant_country[merchant],
            online: CATEGORIES[self.merchant_category[merchant]].1,
            new_device: rng.random_bool(GENUINE_NEW_DEVICE),
            is_fraud: false,
        }
    }

    /// What a fraudster does with a leaked card, starting at `start_us`: an optional
    /// card-testing burst, then a few large payments. In time order.
    pub fn leak(&self, start_us: i64, rng: &mut ChaCha8Rng) -> Vec<Payment> {
        let card = rng.random_range(0..self.cards());
        let home = self.card_home[card];
        let usual = self.card_usual_cents[card] as f64;
        let mut payments = Vec::new();
        let mut at = start_us;
        let new_device_odds = 0.5;
        if rng.random_bool(LEAK_CARD_TESTING) {
            let (members, weights) = &self.foreign[8]; // digital_goods
            for _ in 0..rng.random_range(5..=12) {
                let merchant = if members.is_empty() {
                    rng.random_range(0..self.merchant_category.len())
                } else {
                    members[pick(weights, rng)]
                };
                payments.push(Payment {
                    ts_us: at,
                    card,
                    merchant,
                    amount_cents: rng.random_range(50..300),
                    country: self.merchant_country[merchant],
                    online: true,
                    new_device: rng.random_bool(new_device_odds),
                    is_fraud: true,
                });
                at += rng.random_range(5_000_000..90_000_000);
            }
        }
        let domestic = rng.random_bool(LEAK_DOMESTIC);
        for _ in 0..rng.random_range(2..=6) {
            at += rng.random_range(2 * MICROS_PER_MINUTE..40 * MICROS_PER_MINUTE);
            let (merchant, ratio) = if domestic {
                let category = [4, 5, 7, 10][rng.random_range(0..4)];
                (self.merchant(home, category, false, rng), rng.random_range(1.5..6.0))
            } else if !self.risky.is_empty() && rng.random_bool(0.6) {
                (self.risky[rng.random_range(0..self.risky.len())], rng.random_range(3.0..20.0))
            } else {
                let category = [5, 6, 7, 10][rng.random_range(0..4)];
                (self.merchant(home, category, true, rng), rng.random_range(3.0..20.0))
            };
            payments.push(Payment {
                ts_us: at,
                card,
                merchant,
                amount_cents: (usual * ratio) as i64,
                country: self.merchant_country[merchant],
                online: CATEGORIES[self.merchant_category[merchant]].1,
                new_device: rng.random_bool(new_device_odds),
                is_fraud: true,
            });
        }
        payments
    }

    /// A payment time within day `day_start_us`, by the hourly rhythm.
    fn time_of_day(&self, day_start_us: i64, rng: &mut ChaCha8Rng) -> i64 {
        let hour = pick(&self.hour_cumulative, rng) as i64;
        day_start_us + hour * MICROS_PER_HOUR + rng.random_range(0..MICROS_PER_HOUR)
    }

    /// A fraudster's start time: night-time twice as likely as for genuine payments.
    fn fraud_start(&self, day_start_us: i64, rng: &mut ChaCha8Rng) -> i64 {
        if rng.random_bool(0.35) {
            day_start_us + rng.random_range(0..6 * MICROS_PER_HOUR)
        } else {
            day_start_us + rng.random_range(6 * MICROS_PER_HOUR..20 * MICROS_PER_HOUR)
        }
    }
}

/// Merchants compromised over the history: (merchant, first day, last day exclusive).
pub(super) fn compromises(seed: u64, merchants: usize) -> Vec<(usize, i64, i64)> {
    let mut rng = rng_for(seed, Stream::Compromises, 0);
    let expected = COMPROMISES_PER_10K_MERCHANTS_PER_DAY * merchants as f64 / 10_000.0 * data::ORDER_DAYS as f64;
    let count = expected.round().max(1.0) as usize;
    (0..count)
        .map(|_| {
            let merchant = rng.random_range(0..merchants);
            let start = rng.random_range(0..data::ORDER_DAYS as i64);
            (merchant, start, start + rng.random_range(14..=42))
        })
        .collect()
}

/// Payments per day, summing to at least `payments_min`: the shop's daily rhythm (data.rs).
pub(super) fn day_counts(seed: u64, payments_min: u64) -> Vec<u64> {
    // The shop's per-day factors with a stream of their own, so payments and orders differ.
    data::base_day_counts(seed ^ 0x9A4E_7717, payments_min)
}

/// One day of payments (genuine, leaked-card fraud, compromised-merchant fraud), in time
/// order, with ids from `first_id`, as a `transactions_history` batch.
pub(super) fn history_day(
    model: &PaymentsModel,
    seed: u64,
    day: u32,
    genuine: u64,
    compromised: &[(usize, i64, i64)],
    first_id: i64,
) -> Result<RecordBatch, ArrowError> {
    let mut rng = rng_for(seed, Stream::Payments, day as u64);
    let day_start_us = (START_EPOCH_DAYS + day as i64) * MICROS_PER_DAY;
    let mut payments: Vec<Payment> =
        (0..genuine).map(|_| model.genuine(model.time_of_day(day_start_us, &mut rng), &mut rng)).collect();
    let mut leak_rng = rng_for(seed, Stream::Leaks, day as u64);
    let leaks = poisson(genuine as f64 * LEAKS_PER_10K_PAYMENTS / 10_000.0, &mut leak_rng);
    for _ in 0..leaks {
        let start = model.fraud_start(day_start_us, &mut leak_rng);
        payments.extend(model.leak(start, &mut leak_rng));
    }
    // A leak that runs past midnight keeps only what falls in its day (the partition).
    payments.retain(|p| p.ts_us < day_start_us + MICROS_PER_DAY);
    let today = day as i64;
    for payment in &mut payments {
        if compromised.iter().any(|(m, from, to)| *m == payment.merchant && (*from..*to).contains(&today)) {
            payment.is_fraud = true;
        }
    }
    payments.sort_by_key(|p| p.ts_us);
    let mut label_rng = rng_for(seed, Stream::Labels, day as u64);
    let reported: Vec<Option<i64>> = payments
        .iter()
        .map(|p| p.is_fraud.then(|| p.ts_us + label_rng.random_range(MICROS_PER_DAY..30 * MICROS_PER_DAY)))
        .collect();
    let count = payments.len();
    let mut columns = live_columns(&payments, first_id)?;
    columns.push(Arc::new(BooleanArray::from_iter(payments.iter().map(|p| Some(p.is_fraud)))));
    columns.push(Arc::new(TimestampMicrosecondArray::from(reported).with_timezone("UTC")));
    columns.push(Arc::new(Date32Array::from(vec![(START_EPOCH_DAYS + day as i64) as i32; count])));
    RecordBatch::try_new(history_schema(), columns)
}

/// The live columns of `payments` (ids from `first_id`), in `live_fields` order.
pub fn live_columns(payments: &[Payment], first_id: i64) -> Result<Vec<ArrayRef>, ArrowError> {
    let count = payments.len() as i64;
    Ok(vec![
        Arc::new(Int64Array::from_iter_values(first_id..first_id + count)),
        Arc::new(Int64Array::from_iter_values(payments.iter().map(|p| p.card as i64 + 1))),
        Arc::new(Int64Array::from_iter_values(payments.iter().map(|p| p.merchant as i64 + 1))),
        Arc::new(
            Decimal128Array::from_iter_values(payments.iter().map(|p| p.amount_cents as i128))
                .with_precision_and_scale(12, 2)?,
        ),
        Arc::new(StringArray::from_iter_values(payments.iter().map(|p| p.country))),
        Arc::new(StringArray::from_iter_values(payments.iter().map(|p| if p.online { "online" } else { "pos" }))),
        Arc::new(BooleanArray::from_iter(payments.iter().map(|p| Some(p.new_device)))),
        Arc::new(TimestampMicrosecondArray::from_iter_values(payments.iter().map(|p| p.ts_us)).with_timezone("UTC")),
    ])
}

/// A Poisson draw (Knuth's method for small means, a rounded normal for large ones).
fn poisson(mean: f64, rng: &mut ChaCha8Rng) -> u64 {
    if mean > 30.0 {
        return (mean + mean.sqrt() * normal(rng)).round().max(0.0) as u64;
    }
    let limit = (-mean).exp();
    let (mut k, mut product) = (0u64, rng.random::<f64>());
    while product > limit {
        k += 1;
        product *= rng.random::<f64>();
    }
    k
}

/// The `cards` table.
pub(super) fn cards_batch(seed: u64, model: &PaymentsModel) -> Result<RecordBatch, ArrowError> {
    let mut rng = rng_for(seed, Stream::Cards, 1);
    let count = model.cards();
    let brands = ["visa", "mastercard", "amex"];
    let mut customer_ids = Vec::with_capacity(count);
    let mut brand = Vec::with_capacity(count);
    let mut issued = Vec::with_capacity(count);
    for card in 0..count {
        customer_ids.push(model.card_customer[card] as i64 + 1);
        brand.push(brands[[0, 0, 0, 1, 1, 2][rng.random_range(0..6)]]);
        issued.push((START_EPOCH_DAYS - rng.random_range(30..2_000)) * MICROS_PER_DAY);
    }
    RecordBatch::try_new(
        cards_schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(1..=count as i64)),
            Arc::new(Int64Array::from(customer_ids)),
            Arc::new(StringArray::from(brand)),
            Arc::new(
                Decimal128Array::from_iter_values(model.card_usual_cents.iter().map(|c| *c as i128))
                    .with_precision_and_scale(10, 2)?,
            ),
            Arc::new(TimestampMicrosecondArray::from(issued).with_timezone("UTC")),
        ],
    )
}

/// The `merchants` table.
pub(super) fn merchants_batch(model: &PaymentsModel) -> Result<RecordBatch, ArrowError> {
    let count = model.merchant_category.len();
    let names: Vec<String> = (0..count)
        .map(|m| format!("{} {} #{}", model.merchant_country[m], CATEGORIES[model.merchant_category[m]].0, m + 1))
        .collect();
    RecordBatch::try_new(
        merchants_schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(1..=count as i64)),
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from_iter_values(model.merchant_category.iter().map(|c| CATEGORIES[*c].0))),
            Arc::new(StringArray::from_iter_values(model.merchant_country.iter().copied())),
        ],
    )
}

/// The home countries of the shop's customers, from their batch (column `country`).
pub(super) fn customer_countries(customers: &RecordBatch) -> Vec<&'static str> {
    let column = customers.column_by_name("country").expect("customers have a country column");
    column
        .as_string::<i32>()
        .iter()
        .map(|c| HOME_COUNTRIES.iter().copied().find(|h| Some(*h) == c).unwrap_or(HOME_COUNTRIES[0]))
        .collect()
}

/// The live generator's state: leaks in flight, in time order.
pub struct LivePayments {
    model: PaymentsModel,
    rng: ChaCha8Rng,
    /// Fraud payments scheduled by leaks, by time (min-heap).
    pending: std::collections::BinaryHeap<std::cmp::Reverse<(i64, u64)>>,
    pending_payments: std::collections::HashMap<u64, Payment>,
    next_pending: u64,
}

/// Fraud payments a live generator holds at most (leaks in flight beyond are not started).
const LIVE_PENDING_MAX: usize = 100_000;

impl LivePayments {
    pub fn new(model: PaymentsModel, seed: u64) -> LivePayments {
        LivePayments {
            model,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x7A45_11FE),
            pending: Default::default(),
            pending_payments: Default::default(),
            next_pending: 0,
        }
    }

    /// The payment due at `ts_us` (the next of the sequence): a genuine one, or a
    /// scheduled fraud one whose time has come. Leaks start at the history's rate.
    pub fn next(&mut self, ts_us: i64) -> Payment {
        if let Some(std::cmp::Reverse((at, key))) = self.pending.peek().copied()
            && at <= ts_us
        {
            self.pending.pop();
            let mut payment = self.pending_payments.remove(&key).expect("every pending key has its payment");
            payment.ts_us = ts_us;
            return payment;
        }
        if self.pending.len() < LIVE_PENDING_MAX && self.rng.random_bool(LEAKS_PER_10K_PAYMENTS / 10_000.0) {
            for payment in self.model.leak(ts_us, &mut self.rng) {
                let key = self.next_pending;
                self.next_pending += 1;
                self.pending.push(std::cmp::Reverse((payment.ts_us, key)));
                self.pending_payments.insert(key, payment);
            }
        }
        self.model.genuine(ts_us, &mut self.rng)
    }
}

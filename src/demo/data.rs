//! Deterministic row generation for the demo shop: the vocabulary (categories, names,
//! countries), table sizes, seeded random streams, and one Arrow batch per table (or per
//! day of orders). Pure CPU work: nothing here touches the file system or Delta.

use std::sync::Arc;

use chrono::{Datelike, Days, NaiveDate, Weekday};
use deltalake::arrow::array::{
    ArrayRef, Date32Array, Decimal128Array, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::error::ArrowError;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// First day of the order history (inclusive, UTC); fixed rather than "now" for determinism.
pub(super) const ORDERS_START: NaiveDate = NaiveDate::from_ymd_opt(2024, 11, 1).expect("valid date");
/// Number of days of order history: [2024-11-01, 2026-11-01).
pub(super) const ORDER_DAYS: u32 = 730;
/// Targeted products sell this many times their usual rate while a campaign runs.
pub(super) const CAMPAIGN_LIFT: f64 = 3.0;

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_HOUR: i64 = 3_600 * MICROS_PER_SECOND;
const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;
/// Days between 1970-01-01 and ORDERS_START (Date32 values count days since the epoch).
const ORDERS_START_EPOCH_DAYS: i64 = 20_028;
/// Customers sign up from 2022-01-01 (epoch day 18_993) until 2026-10-15 (20_741).
const SIGNUP_START_EPOCH_DAYS: i64 = 18_993;
const SIGNUP_END_EPOCH_DAYS: i64 = 20_741;
/// Zipf exponent of product popularity: < 1 so the head is strong but the tail still sells.
const POPULARITY_EXPONENT: f64 = 0.8;

/// Separate random streams per table (ChaCha stream ids), so each table, and each day of
/// orders, can be generated independently and in any order.
#[derive(Clone, Copy)]
pub(super) enum Stream {
    Products = 1,
    Campaigns = 2,
    Customers = 3,
    DayFactors = 4,
    Orders = 5,
    // The payments business (payments.rs).
    Cards = 6,
    Merchants = 7,
    Payments = 8,
    Leaks = 9,
    Compromises = 10,
    Labels = 11,
}

/// A generator for (table, index): same seed + stream + index gives the same numbers.
pub(super) fn rng_for(seed: u64, stream: Stream, index: u64) -> ChaCha8Rng {
    assert!(index < 1 << 32, "sub-stream index {index} out of range");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(((stream as u64) << 32) | index);
    rng
}

/// (name, price range in cents, product nouns).
#[rustfmt::skip]
const CATEGORIES: [(&str, i64, i64, [&str; 4]); 20] = [
    ("electronics", 1_999, 149_999, ["Headphones", "Bluetooth Speaker", "Smartwatch", "Power Bank"]),
    ("books", 799, 5_999, ["Novel", "Cookbook", "Travel Guide", "Biography"]),
    ("shoes", 2_999, 19_999, ["Trail Running Shoe", "Sneaker", "Hiking Boot", "Sandal"]),
    ("garden", 499, 29_999, ["Garden Hose", "Planter", "Pruning Shears", "Solar Lamp"]),
    ("toys", 599, 12_999, ["Building Set", "Puzzle", "Plush Bear", "RC Car"]),
    ("kitchen", 899, 59_999, ["Chef Knife", "Frying Pan", "Blender", "Espresso Maker"]),
    ("sports", 999, 79_999, ["Yoga Mat", "Dumbbell Set", "Tennis Racket", "Road Bike Helmet"]),
    ("beauty", 399, 8_999, ["Face Cream", "Shampoo", "Lipstick", "Perfume"]),
    ("clothing", 999, 24_999, ["T-Shirt", "Hoodie", "Rain Jacket", "Jeans"]),
    ("home", 799, 89_999, ["Table Lamp", "Cushion", "Bookshelf", "Rug"]),
    ("office", 199, 49_999, ["Notebook", "Desk Chair", "Monitor Stand", "Pen Set"]),
    ("pet", 299, 14_999, ["Dog Bed", "Cat Toy", "Leash", "Pet Fountain"]),
    ("grocery", 149, 2_999, ["Coffee Beans", "Olive Oil", "Green Tea", "Granola"]),
    ("music", 999, 199_999, ["Acoustic Guitar", "Keyboard", "Vinyl Record", "Ukulele"]),
    ("jewelry", 1_999, 99_999, ["Silver Ring", "Necklace", "Earrings", "Bracelet"]),
    ("automotive", 599, 39_999, ["Car Charger", "Dash Cam", "Floor Mats", "Jump Starter"]),
    ("health", 299, 9_999, ["Vitamin D", "First Aid Kit", "Thermometer", "Massage Gun"]),
    ("baby", 499, 39_999, ["Stroller", "Baby Monitor", "Bib Set", "Teether"]),
    ("tools", 799, 69_999, ["Cordless Drill", "Socket Set", "Tape Measure", "Work Light"]),
    ("games", 1_499, 69_999, ["Board Game", "Game Controller", "Card Game", "Console Bundle"]),
];
#[rustfmt::skip]
const ADJECTIVES: [&str; 12] = [
    "Classic", "Pro", "Ultra", "Eco", "Compact", "Deluxe", "Urban", "Essential", "Premium",
    "Nordic", "Swift", "Everyday",
];
const CHANNELS: [&str; 5] = ["search", "social", "email", "display", "video"];
#[rustfmt::skip]
const CAMPAIGN_THEMES: [&str; 8] = [
    "Spring Sale", "Summer Deals", "Back to School", "Autumn Picks", "Black Friday",
    "Holiday Gifts", "New Year Reset", "Flash Sale",
];
#[rustfmt::skip]
const FIRST_NAMES: [&str; 24] = [
    "Anna", "Ben", "Chloe", "David", "Elena", "Felix", "Grace", "Hugo", "Ines", "Jonas", "Kira",
    "Liam", "Maya", "Noah", "Olivia", "Paul", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera",
    "Wei", "Yuki",
];
#[rustfmt::skip]
const LAST_NAMES: [&str; 24] = [
    "Schmidt", "Smith", "Garcia", "Rossi", "Dubois", "Novak", "Kowalski", "Jensen", "Silva",
    "Muller", "Brown", "Tanaka", "Kim", "Nguyen", "Larsen", "Moreau", "Weber", "Costa", "Hansen",
    "Fischer", "Lopez", "Meyer", "Wagner", "Okafor",
];
/// ISO-2 country codes with relative weights (a European shop that also ships abroad).
#[rustfmt::skip]
const COUNTRIES: [(&str, u32); 12] = [
    ("DE", 30), ("FR", 14), ("GB", 12), ("NL", 8), ("IT", 7), ("ES", 7), ("PL", 6), ("AT", 5),
    ("SE", 4), ("US", 4), ("CH", 2), ("DK", 1),
];
/// Relative order rate per UTC hour: quiet nights, evening peak.
#[rustfmt::skip]
const HOUR_WEIGHTS: [f64; 24] = [
    0.4, 0.25, 0.15, 0.1, 0.1, 0.15, 0.3, 0.6, 0.9, 1.1, 1.2, 1.3, 1.4, 1.3, 1.2, 1.2, 1.3, 1.5,
    1.8, 2.1, 2.3, 2.0, 1.4, 0.8,
];

/// Row counts for a scale; the minimums keep tiny test scales meaningful.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sizes {
    pub products: usize,
    pub campaigns: usize,
    pub customers: usize,
    pub orders_min: u64,
}

pub(super) fn sizes(scale: f64) -> Sizes {
    let at_least = |full: f64, min: usize| ((full * scale).round() as usize).max(min);
    Sizes {
        products: at_least(10_000.0, 50),
        campaigns: at_least(200.0, 10),
        customers: at_least(100_000.0, 100),
        orders_min: (5_000_000.0 * scale).ceil() as u64,
    }
}

fn timestamp_field(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), nullable)
}

pub(super) fn products_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("product_id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("price", DataType::Decimal128(10, 2), false),
    ]))
}

pub(super) fn campaigns_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("campaign_id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("channel", DataType::Utf8, false),
        timestamp_field("starts_at", false),
        timestamp_field("ends_at", false),
        Field::new("budget", DataType::Decimal128(12, 2), false),
        Field::new("product_id", DataType::Int64, true),
        Field::new("category", DataType::Utf8, true),
    ]))
}

pub(super) fn customers_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("email", DataType::Utf8, false),
        Field::new("country", DataType::Utf8, false),
        timestamp_field("signed_up_at", false),
    ]))
}

pub(super) fn orders_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, false),
        Field::new("product_id", DataType::Int64, false),
        Field::new("quantity", DataType::Int32, false),
        Field::new("amount", DataType::Decimal128(12, 2), false),
        timestamp_field("ts", false),
        Field::new("order_date", DataType::Date32, false),
    ]))
}

fn decimal(cents: Vec<i128>, precision: u8) -> Result<ArrayRef, ArrowError> {
    Ok(Arc::new(Decimal128Array::from(cents).with_precision_and_scale(precision, 2)?))
}

fn timestamps(micros: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(micros).with_timezone("UTC"))
}

/// What order generation needs to know about the products.
pub(super) struct Products {
    pub price_cents: Vec<i64>,
    pub category: Vec<usize>,
    /// Relative sales rate (Zipf over a shuffled rank, so popularity is not tied to the id).
    pub popularity: Vec<f64>,
    /// Product indexes sorted by descending popularity.
    pub by_popularity: Vec<usize>,
}

pub(super) fn products(seed: u64, count: usize) -> Result<(Products, RecordBatch), ArrowError> {
    let mut rng = rng_for(seed, Stream::Products, 0);
    let mut ranks: Vec<usize> = (0..count).collect();
    ranks.shuffle(&mut rng);
    let mut by_popularity = vec![0; count];
    for (index, rank) in ranks.iter().enumerate() {
        by_popularity[*rank] = index;
    }
    let (mut names, mut categories, mut price_cents) = (vec![], vec![], vec![]);
    for id in 1..=count {
        let category = rng.random_range(0..CATEGORIES.len());
        let (_, min_cents, max_cents, nouns) = CATEGORIES[category];
        // Log-uniform prices with a .99 ending: many cheap items, few expensive ones.
        let (low, high) = ((min_cents as f64).ln(), (max_cents as f64).ln());
        let raw_cents = (low + rng.random::<f64>() * (high - low)).exp() as i64;
        price_cents.push((raw_cents / 100) * 100 + 99);
        let adjective = ADJECTIVES[rng.random_range(0..ADJECTIVES.len())];
        let noun = nouns[rng.random_range(0..nouns.len())];
        names.push(format!("{adjective} {noun} {id:04}"));
        categories.push(category);
    }
    let popularity = ranks.iter().map(|rank| ((rank + 1) as f64).powf(-POPULARITY_EXPONENT)).collect();
    let batch = RecordBatch::try_new(
        products_schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(1..=count as i64)),
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from_iter_values(categories.iter().map(|c| CATEGORIES[*c].0))),
            decimal(price_cents.iter().map(|c| *c as i128).collect(), 10)?,
        ],
    )?;
    Ok((Products { price_cents, category: categories, popularity, by_popularity }, batch))
}

/// What a campaign targets: one product (index) or a whole category (index).
#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    Product(usize),
    Category(usize),
}

/// A campaign runs over whole UTC days [start_day, start_day + length_days), counted from
/// ORDERS_START; aligned to midnight so that daily lift equals the timestamp interval.
pub(super) struct Campaign {
    pub start_day: i64,
    pub length_days: i64,
    pub target: Target,
}

impl Campaign {
    pub fn is_active(&self, day: i64) -> bool {
        (self.start_day..self.start_day + self.length_days).contains(&day)
    }
}

pub(super) fn campaigns(
    seed: u64,
    count: usize,
    products: &Products,
) -> Result<(Vec<Campaign>, RecordBatch), ArrowError> {
    let mut rng = rng_for(seed, Stream::Campaigns, 0);
    // Shops advertise what already sells: product campaigns pick from the top tenth.
    let head_len = (products.by_popularity.len() / 10).max(5).min(products.by_popularity.len());
    let mut out = Vec::with_capacity(count);
    let (mut names, mut channels, mut starts, mut ends, mut budgets, mut product_ids, mut cats) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for id in 1..=count {
        let start_day = rng.random_range(-14..ORDER_DAYS as i64 - 7);
        let length_days = 7 * rng.random_range(1..=4) + rng.random_range(0..3);
        let channel = CHANNELS[rng.random_range(0..CHANNELS.len())];
        let theme = CAMPAIGN_THEMES[rng.random_range(0..CAMPAIGN_THEMES.len())];
        let target = if rng.random_bool(0.7) {
            Target::Product(products.by_popularity[rng.random_range(0..head_len)])
        } else {
            Target::Category(rng.random_range(0..CATEGORIES.len()))
        };
        let (target_name, product_id, category) = match target {
            Target::Product(p) => (format!("product {}", p + 1), Some(p as i64 + 1), None),
            Target::Category(c) => (CATEGORIES[c].0.to_string(), None, Some(CATEGORIES[c].0)),
        };
        names.push(format!("{theme} #{id}: {target_name} on {channel}"));
        channels.push(channel);
        let start_micros = (ORDERS_START_EPOCH_DAYS + start_day) * MICROS_PER_DAY;
        starts.push(start_micros);
        ends.push(start_micros + length_days * MICROS_PER_DAY);
        budgets.push(rng.random_range(1_000..50_000) as i128 * 100);
        product_ids.push(product_id);
        cats.push(category);
        out.push(Campaign { start_day, length_days, target });
    }
    let batch = RecordBatch::try_new(
        campaigns_schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(1..=count as i64)),
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(channels)),
            timestamps(starts),
            timestamps(ends),
            decimal(budgets, 12)?,
            Arc::new(Int64Array::from(product_ids)),
            Arc::new(StringArray::from(cats)),
        ],
    )?;
    Ok((out, batch))
}

/// Returns the signup instants (sorted ascending: customer ids follow signup order, which
/// lets an order pick only customers who exist at its time) and the table batch.
pub(super) fn customers(seed: u64, count: usize) -> Result<(Vec<i64>, RecordBatch), ArrowError> {
    let mut rng = rng_for(seed, Stream::Customers, 0);
    let span_micros = (SIGNUP_END_EPOCH_DAYS - SIGNUP_START_EPOCH_DAYS) * MICROS_PER_DAY;
    let mut signups: Vec<i64> =
        (0..count).map(|_| SIGNUP_START_EPOCH_DAYS * MICROS_PER_DAY + rng.random_range(0..span_micros)).collect();
    signups.sort_unstable();
    // Someone must exist before the first order.
    signups[0] = SIGNUP_START_EPOCH_DAYS * MICROS_PER_DAY;
    let country_total: u32 = COUNTRIES.iter().map(|(_, w)| w).sum();
    let (mut names, mut emails, mut countries) = (vec![], vec![], vec![]);
    for id in 1..=count {
        let first = FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())];
        let last = LAST_NAMES[rng.random_range(0..LAST_NAMES.len())];
        names.push(format!("{first} {last}"));
        emails.push(format!("{}.{}.{id}@example.com", first.to_lowercase(), last.to_lowercase()));
        let mut pick = rng.random_range(0..country_total);
        let mut country = COUNTRIES[0].0;
        for (code, weight) in COUNTRIES {
            if pick < weight {
                country = code;
                break;
            }
            pick -= weight;
        }
        countries.push(country);
    }
    let batch = RecordBatch::try_new(
        customers_schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(1..=count as i64)),
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(emails)),
            Arc::new(StringArray::from(countries)),
            timestamps(signups.clone()),
        ],
    )?;
    Ok((signups, batch))
}

pub(super) fn order_date(day: u32) -> NaiveDate {
    ORDERS_START + Days::new(day as u64)
}

/// Relative order volume of a day before campaign lift: weekly rhythm, shopping season,
/// growth over the two years, and some day-to-day noise.
fn day_factor(day: u32, noise: f64) -> f64 {
    let date = order_date(day);
    let weekly = match date.weekday() {
        Weekday::Mon => 0.92,
        Weekday::Tue => 0.95,
        Weekday::Wed => 0.97,
        Weekday::Thu => 1.0,
        Weekday::Fri => 1.05,
        Weekday::Sat => 1.12,
        Weekday::Sun => 1.08,
    };
    let seasonal = match (date.month(), date.day()) {
        (11, 22..=30) => 1.7, // Black Friday week
        (12, 1..=20) => 1.35,
        (12, 24..=26) => 0.7,
        (1, _) => 0.85,
        (7 | 8, _) => 0.9,
        _ => 1.0,
    };
    let growth = 1.0 + 0.3 * day as f64 / ORDER_DAYS as f64;
    weekly * seasonal * growth * noise
}

/// Orders per day before lift, summing to at least `orders_min` (ceil per day).
pub(super) fn base_day_counts(seed: u64, orders_min: u64) -> Vec<u64> {
    let mut rng = rng_for(seed, Stream::DayFactors, 0);
    let factors: Vec<f64> = (0..ORDER_DAYS).map(|d| day_factor(d, rng.random_range(0.9..1.1))).collect();
    let total: f64 = factors.iter().sum();
    let counts: Vec<u64> = factors.iter().map(|f| (orders_min as f64 * f / total).ceil() as u64).collect();
    assert!(counts.iter().sum::<u64>() >= orders_min);
    counts
}

/// Per-day product choice: cumulative weights with campaign lift applied.
pub(super) struct DayMix {
    pub cumulative: Vec<f64>,
    /// Total weight with lift / without: lifted products add orders rather than steal them.
    pub lift_ratio: f64,
}

pub(super) fn day_mix(day: u32, products: &Products, campaigns: &[Campaign]) -> DayMix {
    let mut weights = products.popularity.clone();
    let base_total: f64 = weights.iter().sum();
    let active: Vec<&Campaign> = campaigns.iter().filter(|c| c.is_active(day as i64)).collect();
    let mut lifted = vec![false; weights.len()];
    for campaign in active {
        match campaign.target {
            Target::Product(p) => lifted[p] = true,
            Target::Category(c) => {
                for (p, category) in products.category.iter().enumerate() {
                    lifted[p] |= *category == c;
                }
            }
        }
    }
    // Overlapping campaigns on one product do not stack: lift is "advertised or not".
    for (weight, is_lifted) in weights.iter_mut().zip(&lifted) {
        if *is_lifted {
            *weight *= CAMPAIGN_LIFT;
        }
    }
    let mut running = 0.0;
    let cumulative: Vec<f64> = weights
        .iter()
        .map(|w| {
            running += w;
            running
        })
        .collect();
    DayMix { lift_ratio: running / base_total, cumulative }
}

fn pick_weighted(cumulative: &[f64], rng: &mut ChaCha8Rng) -> usize {
    let total = *cumulative.last().expect("non-empty weights");
    let target = rng.random::<f64>() * total;
    cumulative.partition_point(|c| *c <= target).min(cumulative.len() - 1)
}

/// Generates one day of orders with ids `first_order_id..first_order_id + count`,
/// ordered by timestamp (so ids increase with time across days too).
pub(super) fn order_day(
    seed: u64,
    day: u32,
    count: usize,
    first_order_id: i64,
    mix: &DayMix,
    products: &Products,
    signups: &[i64],
) -> Result<RecordBatch, ArrowError> {
    let mut rng = rng_for(seed, Stream::Orders, day as u64);
    let mut hour_cumulative = [0.0; 24];
    let mut running = 0.0;
    for (slot, weight) in hour_cumulative.iter_mut().zip(HOUR_WEIGHTS) {
        running += weight;
        *slot = running;
    }
    let day_start_micros = (ORDERS_START_EPOCH_DAYS + day as i64) * MICROS_PER_DAY;
    let mut ts: Vec<i64> = (0..count)
        .map(|_| {
            let hour = pick_weighted(&hour_cumulative, &mut rng) as i64;
            day_start_micros + hour * MICROS_PER_HOUR + rng.random_range(0..MICROS_PER_HOUR)
        })
        .collect();
    ts.sort_unstable();
    let (mut customers, mut product_ids, mut quantities, mut amounts) =
        (Vec::with_capacity(count), Vec::with_capacity(count), Vec::with_capacity(count), Vec::with_capacity(count));
    for at in &ts {
        // Only customers signed up by now; earlier (loyal) customers order more often.
        let existing = signups.partition_point(|s| s <= at).max(1);
        let customer = (existing as f64 * rng.random::<f64>().powf(1.6)) as usize;
        customers.push(customer.min(existing - 1) as i64 + 1);
        let product = pick_weighted(&mix.cumulative, &mut rng);
        product_ids.push(product as i64 + 1);
        let quantity = match rng.random_range(0..100) {
            0..70 => 1,
            70..90 => 2,
            90..97 => 3,
            _ => rng.random_range(4..=6),
        };
        quantities.push(quantity);
        amounts.push(products.price_cents[product] as i128 * quantity as i128);
    }
    let epoch_day = (ORDERS_START_EPOCH_DAYS + day as i64) as i32;
    RecordBatch::try_new(
        orders_schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(first_order_id..first_order_id + count as i64)),
            Arc::new(Int64Array::from(customers)),
            Arc::new(Int64Array::from(product_ids)),
            Arc::new(Int32Array::from(quantities)),
            decimal(amounts, 12)?,
            timestamps(ts),
            Arc::new(Date32Array::from(vec![epoch_day; count])),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_constants_match_dates() {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid");
        let days = |d: NaiveDate| (d - epoch).num_days();
        assert_eq!(days(ORDERS_START), ORDERS_START_EPOCH_DAYS);
        assert_eq!(days(NaiveDate::from_ymd_opt(2022, 1, 1).expect("valid")), SIGNUP_START_EPOCH_DAYS);
        assert_eq!(days(NaiveDate::from_ymd_opt(2026, 10, 15).expect("valid")), SIGNUP_END_EPOCH_DAYS);
        assert_eq!(order_date(ORDER_DAYS), NaiveDate::from_ymd_opt(2026, 11, 1).expect("valid"));
    }
}

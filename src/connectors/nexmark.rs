//! `connector = 'nexmark'`: the Nexmark benchmark's event streams, from the `nexmark`
//! crate's generator (the one RisingWave and Arroyo use), so the Flink reference queries
//! run as written over `person`, `auction` and `bid` sources.
//!
//! Nexmark is one sequence of events (of every 50: 1 person, 3 auctions, 46 bids); each
//! source takes one table's share of it, so three sources declared with the same `rate`
//! tell one story (bids name auctions and people that exist). Event time is the
//! generator's: the `n`th event of the sequence happens `n / rate` seconds after the
//! source starts (less `backfill`), and the source appends events once their time has
//! come. The sequence is deterministic; its timestamps follow the clock it starts at.
//! With `events = N` the sequence ends after its first N events (all tables counted).

use std::sync::Arc;

use ::nexmark::EventGenerator;
use ::nexmark::config::{NexmarkConfig, RateShape};
use ::nexmark::event::{Event, EventType};
use datafusion::arrow::array::{ArrayRef, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::error::{WsError, WsResult, sqlstate};
use crate::stream::Source;
use crate::stream::spec::{SourceSpec, parse_duration_ms};

use super::Generated;

pub const OPTIONS: [&str; 5] = ["table", "rate", "events", "backfill", "batch_interval"];

/// Upper bound on the configured rate (events of all tables per second).
pub const RATE_MAX: u64 = 50_000_000;
/// Upper bound on one batch, whatever the rate and interval.
const BATCH_ROWS_MAX: usize = 65_536;

/// A Nexmark source's table and pacing, checked at CREATE SOURCE.
#[derive(Debug, Clone)]
pub struct NexmarkSource {
    pub table: EventType,
    /// Events of the whole sequence (all tables) per second of event time.
    pub rate_per_s: u64,
    /// Events of the whole sequence after which the source ends.
    pub events_max: Option<u64>,
    pub backfill_ms: u64,
    pub batch_interval_ms: u64,
}

fn timestamptz() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The columns of each table, as in the Flink and RisingWave Nexmark DDL.
pub fn schema_of(table: EventType) -> SchemaRef {
    let int = |name: &str| Field::new(name, DataType::Int64, true);
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    let time = |name: &str| Field::new(name, timestamptz(), true);
    let fields = match table {
        EventType::Person => vec![
            int("id"),
            text("name"),
            text("email_address"),
            text("credit_card"),
            text("city"),
            text("state"),
            time("date_time"),
            text("extra"),
        ],
        EventType::Auction => vec![
            int("id"),
            text("item_name"),
            text("description"),
            int("initial_bid"),
            int("reserve"),
            time("date_time"),
            time("expires"),
            int("seller"),
            int("category"),
            text("extra"),
        ],
        EventType::Bid => vec![
            int("auction"),
            int("bidder"),
            int("price"),
            text("channel"),
            text("url"),
            time("date_time"),
            text("extra"),
        ],
    };
    Arc::new(Schema::new(fields))
}

fn invalid(message: String) -> WsError {
    WsError::new(sqlstate::INVALID_PARAMETER_VALUE, message)
}

impl NexmarkSource {
    /// Validates the options and that the declared columns are the table's columns.
    pub fn from_spec(spec: &SourceSpec) -> WsResult<NexmarkSource> {
        spec.check_options(&OPTIONS)?;
        let table = match spec.option("table").map(str::to_ascii_lowercase).as_deref() {
            Some("person") => EventType::Person,
            Some("auction") => EventType::Auction,
            Some("bid") => EventType::Bid,
            other => return Err(invalid(format!("nexmark needs table = 'person', 'auction' or 'bid', got {other:?}"))),
        };
        spec.check_columns(&schema_of(table), &format!("nexmark table {table:?}"))?;
        let rate_text = spec.option("rate").unwrap_or("10000/s");
        let rate_per_s = rate_text
            .trim()
            .trim_end_matches("/s")
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|r| *r > 0 && *r <= RATE_MAX)
            .ok_or_else(|| {
                invalid(format!("rate must be whole events per second in (0, {RATE_MAX}], got {rate_text:?}"))
            })?;
        let events_max = match spec.option("events") {
            Some(text) => Some(
                text.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| invalid(format!("events must be a positive whole number, got {text:?}")))?,
            ),
            None => None,
        };
        let duration_ms = |key: &str, default_ms: u64| -> WsResult<u64> {
            spec.option(key).map_or(Ok(default_ms), parse_duration_ms)
        };
        let config = NexmarkSource {
            table,
            rate_per_s,
            events_max,
            backfill_ms: duration_ms("backfill", 0)?,
            batch_interval_ms: duration_ms("batch_interval", 100)?.max(1),
        };
        if config.backfill_ms > spec.retention_ms {
            return Err(invalid("backfill must not exceed the source's retention".into()));
        }
        Ok(config)
    }
}

/// One table's share of the Nexmark sequence, as Arrow batches.
pub struct Generator {
    events: EventGenerator,
    table: EventType,
    events_max: u64,
    schema: SchemaRef,
}

impl Generator {
    /// `base_ms`: the event time of the sequence's first event.
    pub fn new(config: &NexmarkSource, base_ms: u64, schema: SchemaRef) -> Generator {
        let nexmark = NexmarkConfig {
            base_time: base_ms,
            // One steady rate; the crate's default is a sine between two rates.
            rate_shape: RateShape::Square,
            first_rate: config.rate_per_s as usize,
            next_rate: config.rate_per_s as usize,
            ..NexmarkConfig::default()
        };
        Generator {
            events: EventGenerator::new(nexmark).with_type_filter(config.table),
            table: config.table,
            events_max: config.events_max.unwrap_or(u64::MAX),
            schema,
        }
    }

    /// The events of this table whose time is at or before `now_ms`, at most
    /// `rows_max` of them.
    pub fn generate(&mut self, now_ms: u64, rows_max: usize) -> WsResult<Generated> {
        if self.events.global_offset() >= self.events_max {
            return Ok(Generated::Finished);
        }
        let mut rows = Rows::new(self.table, rows_max.min(BATCH_ROWS_MAX));
        while rows.len < rows_max.min(BATCH_ROWS_MAX)
            && self.events.global_offset() < self.events_max
            && self.events.timestamp() <= now_ms
        {
            let event = self.events.next().expect("the Nexmark generator never ends");
            rows.push(event);
        }
        if rows.len == 0 {
            return Ok(Generated::NothingDue);
        }
        Ok(Generated::Batch(rows.finish(&self.schema)?))
    }
}

/// Column builders for one table.
struct Rows {
    len: usize,
    ints: Vec<Int64Builder>,
    texts: Vec<StringBuilder>,
    times: Vec<TimestampMicrosecondBuilder>,
    table: EventType,
}

impl Rows {
    fn new(table: EventType, capacity: usize) -> Rows {
        let (ints, texts, times) = match table {
            EventType::Person => (1, 6, 1),
            EventType::Auction => (5, 3, 2),
            EventType::Bid => (3, 3, 1),
        };
        Rows {
            len: 0,
            ints: (0..ints).map(|_| Int64Builder::with_capacity(capacity)).collect(),
            texts: (0..texts).map(|_| StringBuilder::with_capacity(capacity, capacity * 16)).collect(),
            times: (0..times).map(|_| TimestampMicrosecondBuilder::with_capacity(capacity)).collect(),
            table,
        }
    }

    fn push(&mut self, event: Event) {
        let ms = |t: u64| t as i64 * 1_000;
        match event {
            Event::Person(p) => {
                self.ints[0].append_value(p.id as i64);
                for (builder, value) in
                    self.texts.iter_mut().zip([p.name, p.email_address, p.credit_card, p.city, p.state, p.extra])
                {
                    builder.append_value(value);
                }
                self.times[0].append_value(ms(p.date_time));
            }
            Event::Auction(a) => {
                for (builder, value) in self.ints.iter_mut().zip([a.id, a.initial_bid, a.reserve, a.seller, a.category])
                {
                    builder.append_value(value as i64);
                }
                for (builder, value) in self.texts.iter_mut().zip([a.item_name, a.description, a.extra]) {
                    builder.append_value(value);
                }
                self.times[0].append_value(ms(a.date_time));
                self.times[1].append_value(ms(a.expires));
            }
            Event::Bid(b) => {
                for (builder, value) in self.ints.iter_mut().zip([b.auction, b.bidder, b.price]) {
                    builder.append_value(value as i64);
                }
                for (builder, value) in self.texts.iter_mut().zip([b.channel, b.url, b.extra]) {
                    builder.append_value(value);
                }
                self.times[0].append_value(ms(b.date_time));
            }
        }
        self.len += 1;
    }

    /// The batch, columns in the table's order.
    fn finish(mut self, schema: &SchemaRef) -> WsResult<RecordBatch> {
        let mut ints = self.ints.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef);
        let mut texts = self.texts.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef);
        let mut times = self.times.iter_mut().map(|b| Arc::new(b.finish().with_timezone("UTC")) as ArrayRef);
        // i: int, t: text, T: time, per column of schema_of(table).
        let order: &[u8] = match self.table {
            EventType::Person => b"itttttTt",
            EventType::Auction => b"ittiiTTiit",
            EventType::Bid => b"iiittTt",
        };
        let columns: Option<Vec<ArrayRef>> = order
            .iter()
            .map(|kind| match kind {
                b'i' => ints.next(),
                b'T' => times.next(),
                _ => texts.next(),
            })
            .collect();
        let columns = columns.expect("one builder per column of the table");
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}

/// Runs the source's generator until the source is dropped, the server stops or the
/// sequence ends.
pub fn start(source: Arc<Source>, config: NexmarkSource) -> WsResult<()> {
    let now_ms = crate::stream::now_ms().max(0) as u64;
    let mut generator = Generator::new(&config, now_ms.saturating_sub(config.backfill_ms), source.spec.schema.clone());
    super::run_generator(source, config.batch_interval_ms, BATCH_ROWS_MAX, move |now_ms| {
        generator.generate(now_ms.max(0) as u64, BATCH_ROWS_MAX)
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Int64Type, TimestampMicrosecondType};

    use super::*;

    fn config(table: EventType, events_max: Option<u64>) -> NexmarkSource {
        NexmarkSource { table, rate_per_s: 10_000, events_max, backfill_ms: 0, batch_interval_ms: 100 }
    }

    fn batch(generated: Generated) -> RecordBatch {
        match generated {
            Generated::Batch(batch) => batch,
            _ => panic!("events are due"),
        }
    }

    #[test]
    fn tables_share_one_sequence_paced_by_event_time() {
        let base_ms = 1_767_225_600_000;
        let mut bids = Generator::new(&config(EventType::Bid, None), base_ms, schema_of(EventType::Bid));
        let mut auctions = Generator::new(&config(EventType::Auction, None), base_ms, schema_of(EventType::Auction));
        // One second at 10,000 events/s: 46 of every 50 are bids, 3 auctions.
        let bids = batch(bids.generate(base_ms + 999, 100_000).unwrap());
        let auctions = batch(auctions.generate(base_ms + 999, 100_000).unwrap());
        assert!((9_150..=9_250).contains(&bids.num_rows()), "{} bids", bids.num_rows());
        assert!((590..=610).contains(&auctions.num_rows()), "{} auctions", auctions.num_rows());
        let times = bids.column(5).as_primitive::<TimestampMicrosecondType>();
        assert!(times.values().windows(2).all(|w| w[0] <= w[1]), "in event-time order");
        assert!(times.values().iter().all(|t| (base_ms as i64 * 1_000..(base_ms as i64 + 1_000) * 1_000).contains(t)));
        // Every bid names an auction of the sequence so far or one just ahead of it.
        let auction_ids = auctions.column(0).as_primitive::<Int64Type>();
        let highest = auction_ids.values().iter().max().copied().unwrap();
        let named = bids.column(0).as_primitive::<Int64Type>();
        assert!(named.values().iter().all(|a| *a >= 1_000 && *a <= highest + 10), "bids name known auctions");
        assert_eq!(bids.column(3).null_count(), 0);
    }

    #[test]
    fn a_bounded_sequence_ends_and_nothing_is_due_early() {
        let base_ms = 1_767_225_600_000;
        let mut people = Generator::new(&config(EventType::Person, Some(500)), base_ms, schema_of(EventType::Person));
        assert!(matches!(people.generate(base_ms.saturating_sub(1), 1_000).unwrap(), Generated::NothingDue));
        let first = batch(people.generate(base_ms + 3_600_000, 1_000).unwrap());
        // 500 events hold 10 people.
        assert_eq!(first.num_rows(), 10);
        assert!(matches!(people.generate(base_ms + 3_600_000, 1_000).unwrap(), Generated::Finished));
    }
}

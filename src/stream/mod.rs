//! stream/: rivers and rapids as relations. A [`Source`] is a named, typed stream of
//! events fed by a connector (connectors/): it retains events in memory for a bounded
//! time and size ([`log::RetainedLog`]), tracks event time and the watermark per
//! partition, and counts what went wrong. [`table::SourceTable`] makes it a DataFusion
//! relation: an ad-hoc SELECT scans one consistent snapshot of what is retained, with
//! filters on event time skipping whole chunks. `watershed.sources` ([`system`]) shows
//! every source's state.

pub mod continuous;
pub mod log;
pub mod spec;
pub mod system;
pub mod table;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use tokio_util::sync::CancellationToken;

pub use log::{Chunk, LogStats, RetainedLog};
pub use spec::{ColumnDef, SourceDef, SourceSpec, WatermarkDef};
pub use table::{SourceTable, StatementSnapshots};

use crate::error::{WsError, WsResult, sqlstate};

/// Writes rows durably before they become visible: the ingest connector's segment log.
/// `append` returns once the rows are on disk (fsync) and in the source's log.
#[async_trait]
pub trait DurableAppend: Send + Sync + std::fmt::Debug {
    async fn append(&self, batches: Vec<RecordBatch>) -> WsResult<u64>;

    /// Rows below `offset` have left the log: their storage may go.
    fn retain_from(&self, _offset: u64) {}
}

/// Window of the events/s figure.
const RATE_WINDOW_MS: i64 = 10_000;
/// Samples kept for it (one per tick; ticks are about a second apart).
const RATE_SAMPLES_MAX: usize = 64;

/// A running source: its declaration, retained events and health counters.
#[derive(Debug)]
pub struct Source {
    pub spec: SourceSpec,
    pub log: RetainedLog,
    malformed_rows: AtomicU64,
    last_error: Mutex<Option<String>>,
    rate_samples: Mutex<VecDeque<(i64, u64)>>,
    /// Set by the ingest connector: INSERT and COPY go through it.
    writer: Mutex<Option<Arc<dyn DurableAppend>>>,
    /// Per partition, where the connector stands in its upstream (Kafka: the next offset
    /// to read) for what the log holds; exactly-once sinks and resumes start from here.
    positions: Mutex<BTreeMap<u32, i64>>,
    /// Stops the connector's tasks when the source is dropped or the server stops.
    pub cancel: CancellationToken,
}

impl Source {
    pub fn new(spec: SourceSpec) -> Source {
        let event_time = spec.event_time.as_ref().map(|e| (e.index, e.delay_us));
        let log = RetainedLog::new(
            spec.schema.clone(),
            event_time,
            spec.retention_ms,
            spec.retention_bytes,
            spec.idle_timeout_ms,
        );
        Source {
            spec,
            log,
            malformed_rows: AtomicU64::new(0),
            last_error: Mutex::new(None),
            rate_samples: Mutex::new(VecDeque::new()),
            writer: Mutex::new(None),
            positions: Mutex::new(BTreeMap::new()),
            cancel: CancellationToken::new(),
        }
    }

    pub fn name(&self) -> &str {
        self.spec.name()
    }

    /// Counts a message that could not be decoded; the connector skips it and goes on.
    pub fn record_malformed(&self, error: impl std::fmt::Display) {
        self.malformed_rows.fetch_add(1, Ordering::Relaxed);
        self.record_error(error);
    }

    /// Remembers the last error a connector met (broker gone, decode failure...).
    pub fn record_error(&self, error: impl std::fmt::Display) {
        let text = error.to_string();
        tracing::debug!(source = self.name(), error = %text, "source error");
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
    }

    pub fn clear_error(&self) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub fn malformed_rows(&self) -> u64 {
        self.malformed_rows.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records that `partition`'s rows up to (not including) `next` are in the log.
    pub fn set_position(&self, partition: u32, next: i64) {
        self.positions.lock().unwrap_or_else(|p| p.into_inner()).insert(partition, next);
    }

    /// Upstream position per partition (see `positions`).
    pub fn positions(&self) -> BTreeMap<u32, i64> {
        self.positions.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops the connector and releases the writer (whose thread holds this source).
    pub fn stop(&self) {
        self.cancel.cancel();
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    pub fn set_writer(&self, writer: Arc<dyn DurableAppend>) {
        *self.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(writer);
    }

    /// The durable writer for INSERT/COPY, or 42809 for sources fed by a connector.
    pub fn writer(&self) -> WsResult<Arc<dyn DurableAppend>> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).clone().ok_or_else(|| {
            WsError::new(
                sqlstate::WRONG_OBJECT_TYPE,
                format!(
                    "source \"{}\" is fed by its '{}' connector; only connector = 'ingest' sources accept INSERT and COPY",
                    self.name(),
                    self.spec.connector()
                ),
            )
        })
    }

    /// Periodic upkeep: retention, watermark of idle partitions, the rate figure.
    /// Returns the first log offset still retained.
    pub fn tick(&self, now_ms: i64) -> u64 {
        let first_retained = self.log.trim(now_ms);
        if let Some(writer) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            writer.retain_from(first_retained);
        }
        let total = self.log.next_offset();
        let mut samples = self.rate_samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.push_back((now_ms, total));
        while samples.len() > RATE_SAMPLES_MAX || samples.front().is_some_and(|(at, _)| now_ms - at > RATE_WINDOW_MS) {
            samples.pop_front();
        }
        first_retained
    }

    /// Events per second over the last ten seconds of ticks.
    pub fn events_per_s(&self) -> f64 {
        let samples = self.rate_samples.lock().unwrap_or_else(|p| p.into_inner());
        match (samples.front(), samples.back()) {
            (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => (n1 - n0) as f64 * 1_000.0 / (t1 - t0) as f64,
            _ => 0.0,
        }
    }
}

/// Milliseconds since the Unix epoch, from the wall clock.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

//! connectors/sinks/: where a continuous query's rows go. A sink follows one view's
//! emissions (a named materialized view, or the sink's own query run as an unnamed one)
//! and delivers them:
//!
//! - `delta` (delta.rs): appends to a Delta table, exactly once, each commit carrying a
//!   Delta application transaction (sink id, watermark) and the source offsets it covers;
//! - `kafka` (kafka.rs): each row as a JSON message, at least once: it resumes where
//!   delivery stopped, and stops with an error rather than skip rows it cannot resend;
//! - `notify` (notify.rs): each row as a JSON payload to `LISTEN`ers of a channel, at
//!   most once per listener (as PostgreSQL's NOTIFY).
//!
//! `watershed.sinks` shows each sink's rows written, last commit, lag, messages dropped
//! and last error.

pub mod delta;
pub mod kafka;
pub mod notify;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::{WsError, WsResult, sqlstate};
use crate::sql::SinkInput;
use crate::stream::continuous::MaterializedView;

/// A sink as declared and persisted in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkDef {
    pub name: String,
    pub input: SinkInput,
    pub options: BTreeMap<String, String>,
}

impl SinkDef {
    pub fn connector(&self) -> &str {
        self.options.get("connector").map_or("", String::as_str)
    }

    /// Refuses options the connector does not know, so that a typo fails CREATE SINK.
    pub fn check_options(&self, known: &[&str]) -> WsResult<()> {
        for key in self.options.keys() {
            if key != "connector" && !known.contains(&key.as_str()) {
                return Err(WsError::new(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    format!(
                        "sink option '{key}' is not known to connector '{}' (known: {})",
                        self.connector(),
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Counters `watershed.sinks` shows.
#[derive(Debug)]
pub struct SinkStats {
    pub rows_written: AtomicU64,
    pub commits: AtomicU64,
    /// Messages sent but lost on the way (notify: a listener's queue was full); the
    /// at-least-once and exactly-once sinks never drop one, they retry or stop.
    pub messages_dropped: AtomicU64,
    /// ms since the epoch; i64::MIN before the first.
    last_commit_ms: AtomicI64,
    /// Watermark (µs) up to which rows are delivered; i64::MIN before the first.
    delivered_until_us: AtomicI64,
    last_error: Mutex<Option<String>>,
}

impl Default for SinkStats {
    fn default() -> SinkStats {
        SinkStats {
            rows_written: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            messages_dropped: AtomicU64::new(0),
            last_commit_ms: AtomicI64::new(i64::MIN),
            delivered_until_us: AtomicI64::new(i64::MIN),
            last_error: Mutex::new(None),
        }
    }
}

fn optional(value: i64) -> Option<i64> {
    (value != i64::MIN).then_some(value)
}

impl SinkStats {
    pub fn record_delivery(&self, rows: u64, watermark_us: Option<i64>) {
        self.rows_written.fetch_add(rows, Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.last_commit_ms.store(crate::stream::now_ms(), Ordering::Relaxed);
        if let Some(w) = watermark_us {
            self.delivered_until_us.fetch_max(w, Ordering::Relaxed);
        }
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Rows up to `watermark_us` are delivered, with no new rows (a watermark-only step).
    pub fn record_watermark(&self, watermark_us: Option<i64>) {
        if let Some(w) = watermark_us {
            self.delivered_until_us.fetch_max(w, Ordering::Relaxed);
        }
    }

    pub fn record_error(&self, sink: &str, error: &WsError) {
        tracing::warn!(sink, error = %error.message, "sink delivery failed");
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.message.clone());
    }

    pub fn last_commit_ms(&self) -> Option<i64> {
        optional(self.last_commit_ms.load(Ordering::Relaxed))
    }

    pub fn delivered_until_us(&self) -> Option<i64> {
        optional(self.delivered_until_us.load(Ordering::Relaxed))
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A running sink.
pub struct Sink {
    pub def: SinkDef,
    /// The view it follows; for `CREATE SINK ... AS query`, its own unnamed view.
    pub view: Arc<MaterializedView>,
    /// Whether `view` belongs to the sink (stopped with it).
    pub owns_view: bool,
    pub stats: Arc<SinkStats>,
    cancel: CancellationToken,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").field("name", &self.def.name).finish()
    }
}

/// What starting a sink needs that only the session knows.
pub enum Target {
    Delta(delta::DeltaTarget),
    Notify { channel: String, hub: notify::NotifyHub },
    Kafka(kafka::KafkaTarget),
}

impl Sink {
    pub fn start(def: SinkDef, view: Arc<MaterializedView>, owns_view: bool, target: Target) -> Arc<Sink> {
        let stats = Arc::new(SinkStats::default());
        let cancel = CancellationToken::new();
        let sink = Arc::new(Sink { def, view: view.clone(), owns_view, stats: stats.clone(), cancel: cancel.clone() });
        let name = sink.def.name.clone();
        match target {
            Target::Delta(target) => {
                tokio::spawn(delta::run(name, view, target, stats, cancel));
            }
            Target::Notify { channel, hub } => {
                tokio::spawn(notify::run(name, view, channel, hub, stats, cancel));
            }
            Target::Kafka(target) => {
                tokio::spawn(kafka::run(name, view, target, stats, cancel));
            }
        }
        sink
    }

    pub fn name(&self) -> &str {
        &self.def.name
    }

    pub fn stop(&self) {
        self.cancel.cancel();
        if self.owns_view {
            self.view.stop();
        }
    }
}

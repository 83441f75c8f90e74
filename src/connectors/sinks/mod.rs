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
//! Each is a [`SinkConnector`] in the one registry, [`SinkConnectors`]; it parses its
//! options once, at CREATE SINK, into a [`PreparedSink`] that starts it.
//!
//! `watershed.sinks` shows each sink's rows written, last commit, lag, messages dropped
//! and last error.

pub mod delta;
pub mod kafka;
pub mod notify;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::Schema;
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

/// What a sink connector may ask of the server while it prepares: the lake tables it
/// writes to and the notify hub. The session implements it; connectors know nothing else
/// of the session.
#[async_trait::async_trait]
pub trait SinkHost: Send + Sync {
    fn data_dir(&self) -> &std::path::Path;
    fn notify_hub(&self) -> &notify::NotifyHub;
    /// The catalog's Delta table `table`, or a new managed one with `schema`.
    async fn lake_table(&self, table: &str, schema: &Schema) -> WsResult<Arc<crate::lake::LakeTable>>;
    /// The Delta table at `location` (created with `schema` when there is none), not in
    /// the catalog.
    async fn delta_at_location(
        &self,
        sink: &str,
        location: &str,
        schema: &Schema,
    ) -> WsResult<Arc<crate::lake::LakeTable>>;
}

/// A sink parsed and checked, ready to run: given its name, the view it follows, its
/// counters and its cancel token, it spawns its delivery task.
pub type PreparedSink = Box<dyn FnOnce(String, Arc<MaterializedView>, Arc<SinkStats>, CancellationToken) + Send>;

/// One kind of sink (`WITH (connector = '<name>')`): adding a sink is one file
/// implementing this and one line in [`SinkConnectors::builtin`].
#[async_trait::async_trait]
pub trait SinkConnector: Send + Sync {
    fn name(&self) -> &'static str;
    /// The options it takes besides `connector`, each documented in the README's sink table.
    fn options(&self) -> &'static [&'static str];
    /// Checks the options against the view and parses them once into what runs.
    async fn prepare(&self, def: &SinkDef, view: &MaterializedView, host: &dyn SinkHost) -> WsResult<PreparedSink>;
}

fn count_option(def: &SinkDef, key: &str, default: u64) -> WsResult<u64> {
    def.options.get(key).map_or(Ok(default), |text| {
        text.parse().map_err(|_| {
            WsError::new(sqlstate::INVALID_PARAMETER_VALUE, format!("sink option {key} must be a count, got {text:?}"))
        })
    })
}

struct DeltaSink;

#[async_trait::async_trait]
impl SinkConnector for DeltaSink {
    fn name(&self) -> &'static str {
        "delta"
    }
    fn options(&self) -> &'static [&'static str] {
        &delta::OPTIONS
    }
    async fn prepare(&self, def: &SinkDef, view: &MaterializedView, host: &dyn SinkHost) -> WsResult<PreparedSink> {
        def.check_options(&delta::OPTIONS)?;
        if view.window_end_column.is_none() || view.def.emit != crate::stream::continuous::Emit::OnWindowClose {
            return Err(WsError::unsupported(
                "a delta sink appends closed windows exactly once: its input must EMIT ON WINDOW CLOSE \
                 and have a window_end column",
            ));
        }
        let checkpoint_interval = count_option(def, "checkpoint_interval", 10)?.max(1);
        let compact_interval = count_option(def, "compact_interval", 0)?;
        let schema = view.store.schema();
        let lake = match (def.options.get("table"), def.options.get("location")) {
            (Some(table), None) => host.lake_table(table, &schema).await?,
            (None, Some(location)) => host.delta_at_location(&def.name, location, &schema).await?,
            _ => {
                return Err(WsError::new(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    "a delta sink needs exactly one of table = '<lake table>' or location = '<url>'",
                ));
            }
        };
        let target = delta::DeltaTarget { lake, checkpoint_interval, compact_interval };
        Ok(Box::new(move |name, view, stats, cancel| {
            tokio::spawn(delta::run(name, view, target, stats, cancel));
        }))
    }
}

struct NotifySink;

#[async_trait::async_trait]
impl SinkConnector for NotifySink {
    fn name(&self) -> &'static str {
        "notify"
    }
    fn options(&self) -> &'static [&'static str] {
        &notify::OPTIONS
    }
    async fn prepare(&self, def: &SinkDef, _view: &MaterializedView, host: &dyn SinkHost) -> WsResult<PreparedSink> {
        def.check_options(&notify::OPTIONS)?;
        let channel =
            def.options.get("channel").cloned().ok_or_else(|| {
                WsError::new(sqlstate::INVALID_PARAMETER_VALUE, "a notify sink needs channel = '<name>'")
            })?;
        let hub = host.notify_hub().clone();
        Ok(Box::new(move |name, view, stats, cancel| {
            tokio::spawn(notify::run(name, view, channel, hub, stats, cancel));
        }))
    }
}

struct KafkaSink;

#[async_trait::async_trait]
impl SinkConnector for KafkaSink {
    fn name(&self) -> &'static str {
        "kafka"
    }
    fn options(&self) -> &'static [&'static str] {
        &kafka::OPTIONS
    }
    async fn prepare(&self, def: &SinkDef, view: &MaterializedView, host: &dyn SinkHost) -> WsResult<PreparedSink> {
        let target = kafka::KafkaTarget::from_options(&def.name, &def.options, view, host.data_dir())?;
        Ok(Box::new(move |name, view, stats, cancel| {
            tokio::spawn(kafka::run(name, view, target, stats, cancel));
        }))
    }
}

/// Every sink connector by name: the one place a sink connector name is looked up.
pub struct SinkConnectors {
    by_name: BTreeMap<&'static str, Box<dyn SinkConnector>>,
}

impl SinkConnectors {
    pub fn builtin() -> SinkConnectors {
        let mut registry = SinkConnectors { by_name: BTreeMap::new() };
        registry.register(Box::new(DeltaSink));
        registry.register(Box::new(KafkaSink));
        registry.register(Box::new(NotifySink));
        registry
    }

    pub fn register(&mut self, connector: Box<dyn SinkConnector>) {
        let name = connector.name();
        let previous = self.by_name.insert(name, connector);
        assert!(previous.is_none(), "sink connector {name} is registered once");
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_name.keys().copied()
    }

    /// The connector a sink names: 22023 without one, 0A000 for an unknown one.
    pub fn get(&self, name: &str) -> WsResult<&dyn SinkConnector> {
        if name.is_empty() {
            return Err(WsError::new(sqlstate::INVALID_PARAMETER_VALUE, "CREATE SINK needs WITH (connector = '...')"));
        }
        self.by_name.get(name).map(|c| c.as_ref()).ok_or_else(|| {
            WsError::unsupported(format!(
                "sink connector '{name}' does not exist ({} are available)",
                self.names().collect::<Vec<_>>().join(", ")
            ))
        })
    }
}

impl std::fmt::Debug for SinkConnectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Sink {
    /// Registers the sink's counters and runs what its connector prepared.
    pub fn start(def: SinkDef, view: Arc<MaterializedView>, owns_view: bool, prepared: PreparedSink) -> Arc<Sink> {
        let stats = Arc::new(SinkStats::default());
        let cancel = CancellationToken::new();
        let sink = Arc::new(Sink { def, view: view.clone(), owns_view, stats: stats.clone(), cancel: cancel.clone() });
        prepared(sink.def.name.clone(), view, stats, cancel);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's sink table documents every option each sink connector declares.
    #[test]
    fn the_readme_documents_every_sink_option() {
        let readme = include_str!("../../../README.md");
        let table = readme.split_once("| connector | options | delivery |").expect("the README has the sink table").1;
        let table = table.split("\n\n").next().expect("the table ends");
        let registry = SinkConnectors::builtin();
        for name in registry.names() {
            let row = table
                .lines()
                .find(|line| line.starts_with(&format!("| `{name}` |")))
                .unwrap_or_else(|| panic!("the README has no sink row for {name}"));
            for option in registry.get(name).unwrap().options() {
                assert!(
                    row.contains(&format!("`{option}`")),
                    "the README's row of sink {name} does not name `{option}`"
                );
            }
        }
    }
}

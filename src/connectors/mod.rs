//! connectors/: what feeds sources. Each connector is a [`SourceConnector`] in the one
//! registry, [`SourceConnectors`]: it declares its options, and parses a source's
//! `WITH (...)` once into a [`Prepared`] start at CREATE SOURCE (so a typo fails the
//! statement, not the server later); once the source is registered, that start runs the
//! connector until the source's cancel token fires.
//!
//! - `ingest`: rows INSERTed or COPied over the wire, durable in segment files.
//! - `datagen`: the demo shop's live clicks and orders.
//! - `nexmark`: the Nexmark benchmark's people, auctions and bids.
//! - `kafka`: every partition of one Kafka topic, JSON or CSV messages.

pub mod datagen;
pub mod ingest;
pub mod kafka;
pub mod nexmark;
pub mod sinks;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;

use crate::demo::DemoSpec;
use crate::error::{WsError, WsResult};
use crate::stream::{Source, SourceSpec};

/// What connectors need from the server around them.
#[derive(Debug, Clone)]
pub struct ConnectorContext {
    pub data_dir: PathBuf,
    /// The demo lake's seed and scale, which datagen follows unless told otherwise.
    pub demo: Option<DemoSpec>,
}

/// A source connector parsed from one spec, ready to feed a registered source. It is the
/// only thing `CREATE SOURCE` and a start build from the options, so the options are
/// parsed once: what validated is what runs.
pub type Prepared = Box<dyn FnOnce(Arc<Source>) -> WsResult<()> + Send>;

/// One kind of source connector (`WITH (connector = '<name>')`), in the spirit of
/// DataFusion's `TableProviderFactory`: adding a connector is one file implementing this
/// and one line in [`SourceConnectors::builtin`].
pub trait SourceConnector: Send + Sync {
    fn name(&self) -> &'static str;
    /// The connector's own options (besides the common ones every source takes);
    /// `properties.*` admits every option with that prefix. The README's connector table
    /// documents each (a test checks they agree).
    fn options(&self) -> &'static [&'static str];
    /// Checks the options and columns and parses them into what starts the connector.
    /// Nothing starts here: a failed CREATE leaves nothing behind.
    fn prepare(&self, spec: &SourceSpec, context: &ConnectorContext) -> WsResult<Prepared>;
    /// Deletes what a dropped source of this connector kept on disk.
    fn delete_storage(&self, _spec: &SourceSpec, _data_dir: &Path) {}
}

struct Ingest;

impl SourceConnector for Ingest {
    fn name(&self) -> &'static str {
        "ingest"
    }
    fn options(&self) -> &'static [&'static str] {
        &ingest::OPTIONS
    }
    fn prepare(&self, spec: &SourceSpec, context: &ConnectorContext) -> WsResult<Prepared> {
        spec.check_options(&ingest::OPTIONS)?;
        let data_dir = context.data_dir.clone();
        Ok(Box::new(move |source| ingest::start(source, &data_dir)))
    }
    fn delete_storage(&self, spec: &SourceSpec, data_dir: &Path) {
        let dir = ingest::segments_dir(data_dir, spec.name());
        if let Err(error) = std::fs::remove_dir_all(&dir)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), %error, "could not delete a dropped source's segments");
        }
    }
}

struct Datagen;

impl SourceConnector for Datagen {
    fn name(&self) -> &'static str {
        "datagen"
    }
    fn options(&self) -> &'static [&'static str] {
        &datagen::OPTIONS
    }
    fn prepare(&self, spec: &SourceSpec, context: &ConnectorContext) -> WsResult<Prepared> {
        let config = datagen::DatagenConfig::from_spec(spec, context.demo)?;
        Ok(Box::new(move |source| datagen::start(source, config)))
    }
}

struct Nexmark;

impl SourceConnector for Nexmark {
    fn name(&self) -> &'static str {
        "nexmark"
    }
    fn options(&self) -> &'static [&'static str] {
        &nexmark::OPTIONS
    }
    fn prepare(&self, spec: &SourceSpec, _context: &ConnectorContext) -> WsResult<Prepared> {
        let config = nexmark::NexmarkSource::from_spec(spec)?;
        Ok(Box::new(move |source| nexmark::start(source, config)))
    }
}

struct Kafka;

impl SourceConnector for Kafka {
    fn name(&self) -> &'static str {
        "kafka"
    }
    fn options(&self) -> &'static [&'static str] {
        &kafka::OPTIONS
    }
    fn prepare(&self, spec: &SourceSpec, _context: &ConnectorContext) -> WsResult<Prepared> {
        let config = kafka::KafkaConfig::from_spec(spec)?;
        Ok(Box::new(move |source| kafka::start(source, config)))
    }
}

/// Every source connector by name: the one place a connector name is looked up.
pub struct SourceConnectors {
    by_name: BTreeMap<&'static str, Box<dyn SourceConnector>>,
}

impl SourceConnectors {
    /// The connectors this build has.
    pub fn builtin() -> SourceConnectors {
        let mut registry = SourceConnectors { by_name: BTreeMap::new() };
        registry.register(Box::new(Ingest));
        registry.register(Box::new(Datagen));
        registry.register(Box::new(Nexmark));
        registry.register(Box::new(Kafka));
        registry
    }

    pub fn register(&mut self, connector: Box<dyn SourceConnector>) {
        let name = connector.name();
        let previous = self.by_name.insert(name, connector);
        assert!(previous.is_none(), "connector {name} is registered once");
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_name.keys().copied()
    }

    /// The connector a spec names; 0A000 listing the available ones otherwise.
    pub fn get(&self, name: &str) -> WsResult<&dyn SourceConnector> {
        self.by_name.get(name).map(|c| c.as_ref()).ok_or_else(|| {
            WsError::unsupported(format!(
                "connector '{name}' does not exist ({} are available)",
                self.names().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// Checks a source's connector and options, and parses them for [`Prepared`].
    pub fn prepare(&self, spec: &SourceSpec, context: &ConnectorContext) -> WsResult<Prepared> {
        self.get(spec.connector())?.prepare(spec, context)
    }

    /// Deletes what a dropped source kept on disk (nothing for most connectors).
    pub fn delete_storage(&self, spec: &SourceSpec, data_dir: &Path) {
        if let Ok(connector) = self.get(spec.connector()) {
            connector.delete_storage(spec, data_dir);
        }
    }
}

impl std::fmt::Debug for SourceConnectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

/// What a generator has at one tick.
pub enum Generated {
    /// Rows due now; a batch of `batch_rows_max` rows means more may be due.
    Batch(RecordBatch),
    /// Nothing due until a later tick.
    NothingDue,
    /// A bounded generator has produced all its events.
    Finished,
}

/// Drives a generator source: every `batch_interval_ms`, appends what is due to the
/// source's log, in batches of at most `batch_rows_max` rows (a backfill spans many,
/// with a yield between them so a catch-up does not hold the runtime), until the source
/// is dropped or the generator is finished.
pub fn run_generator(
    source: Arc<Source>,
    batch_interval_ms: u64,
    batch_rows_max: usize,
    mut generate: impl FnMut(i64) -> WsResult<Generated> + Send + 'static,
) {
    assert!(batch_interval_ms > 0 && batch_rows_max > 0);
    let cancel = source.cancel.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_millis(batch_interval_ms));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let now_ms = crate::stream::now_ms();
            loop {
                match generate(now_ms) {
                    Ok(Generated::Batch(batch)) => {
                        let full = batch.num_rows() >= batch_rows_max;
                        if let Err(error) = source.log.append(0, batch, now_ms) {
                            source.record_error(error);
                        }
                        if !full {
                            break;
                        }
                        tokio::task::yield_now().await;
                    }
                    Ok(Generated::NothingDue) => break,
                    Ok(Generated::Finished) => return,
                    Err(error) => {
                        source.record_error(error);
                        break;
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README documents every option each connector declares: in its row of the
    /// source connector table, or in its own section (`## Kafka sources`).
    #[test]
    fn the_readme_documents_every_connector_option() {
        let readme = include_str!("../../README.md");
        let table = readme.split_once("\nConnectors:\n").expect("the README lists the connectors").1;
        let table = table.trim_start().split("\n\n").next().expect("the connector table follows");
        let registry = SourceConnectors::builtin();
        for name in registry.names() {
            let heading = format!("\n## {}{} sources\n", name[..1].to_uppercase(), &name[1..]);
            let doc = match table.lines().find(|line| line.starts_with(&format!("| `{name}` |"))) {
                Some(row) => row.to_string(),
                None => {
                    let section = readme.split_once(&heading).unwrap_or_else(|| panic!("no README doc of {name}")).1;
                    section.split("\n## ").next().unwrap_or_default().to_string()
                }
            };
            for option in registry.get(name).unwrap().options() {
                assert!(doc.contains(&format!("`{option}`")), "the README's doc of {name} does not name `{option}`");
            }
        }
    }

    #[test]
    fn an_unknown_connector_names_the_available_ones() {
        let error = SourceConnectors::builtin().get("kinesis").err().unwrap();
        assert_eq!(error.code, crate::error::sqlstate::FEATURE_NOT_SUPPORTED);
        assert!(error.message.contains("datagen, ingest, kafka, nexmark"), "{}", error.message);
    }
}

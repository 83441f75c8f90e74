//! connectors/: what feeds sources. Each connector validates its `WITH (...)` options
//! at CREATE SOURCE (so a typo fails the statement, not the server later) and, once the
//! source is registered, runs until the source's cancel token fires.
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

/// Checks a source's connector and options without starting anything.
pub fn validate(spec: &SourceSpec, context: &ConnectorContext) -> WsResult<()> {
    match spec.connector() {
        "ingest" => spec.check_options(&ingest::OPTIONS),
        "datagen" => datagen::DatagenConfig::from_spec(spec, context.demo).map(|_| ()),
        "nexmark" => nexmark::NexmarkSource::from_spec(spec).map(|_| ()),
        "kafka" => kafka::KafkaConfig::from_spec(spec).map(|_| ()),
        other => Err(WsError::unsupported(format!(
            "connector '{other}' does not exist (ingest, datagen, nexmark, kafka are available)"
        ))),
    }
}

/// Starts feeding a registered source.
pub fn start(source: Arc<Source>, context: &ConnectorContext) -> WsResult<()> {
    match source.spec.connector() {
        "ingest" => ingest::start(source, &context.data_dir),
        "datagen" => {
            let config = datagen::DatagenConfig::from_spec(&source.spec, context.demo)?;
            datagen::start(source, config)
        }
        "nexmark" => {
            let config = nexmark::NexmarkSource::from_spec(&source.spec)?;
            nexmark::start(source, config)
        }
        "kafka" => {
            let config = kafka::KafkaConfig::from_spec(&source.spec)?;
            kafka::start(source, config)
        }
        _ => validate(&source.spec, context),
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

/// Deletes what a dropped source kept on disk.
pub fn delete_storage(spec: &SourceSpec, data_dir: &Path) {
    if spec.connector() == "ingest" {
        let dir = ingest::segments_dir(data_dir, spec.name());
        if let Err(error) = std::fs::remove_dir_all(&dir) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), %error, "could not delete a dropped source's segments");
            }
        }
    }
}

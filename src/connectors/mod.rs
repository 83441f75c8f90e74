//! connectors/: what feeds sources. Each connector validates its `WITH (...)` options
//! at CREATE SOURCE (so a typo fails the statement, not the server later) and, once the
//! source is registered, runs until the source's cancel token fires.
//!
//! - `ingest`: rows INSERTed or COPied over the wire, durable in segment files.
//! - `datagen`: the demo shop's live clicks and orders.
//! - `kafka`: every partition of one Kafka topic, JSON or CSV messages.

pub mod datagen;
pub mod ingest;
pub mod kafka;
pub mod sinks;

use std::path::{Path, PathBuf};
use std::sync::Arc;

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
        "kafka" => kafka::KafkaConfig::from_spec(spec).map(|_| ()),
        other => Err(WsError::unsupported(format!(
            "connector '{other}' does not exist (ingest, datagen, kafka are available)"
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
        "kafka" => {
            let config = kafka::KafkaConfig::from_spec(&source.spec)?;
            kafka::start(source, config)
        }
        _ => validate(&source.spec, context),
    }
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

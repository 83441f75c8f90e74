//! `connector = 'kafka'`: events read from every partition of one Kafka topic.
//!
//! One reader thread per source owns a librdkafka consumer. It discovers the topic's
//! partitions at start, assigns all of them itself (no consumer group rebalancing: the
//! server is the only reader it answers to), and positions each by `scan.startup.mode`.
//! Offsets are never committed to the broker; what the source holds is tracked per
//! partition in [`Source::positions`] (the next offset to read), which is where a later
//! exactly-once sink or a resume will start from.
//!
//! Messages are buffered per partition and decoded in batches (at most
//! [`BATCH_ROWS_MAX`] messages, or [`BATCH_LINGER_MS`] after the first one), one Kafka
//! partition being one source partition for watermarks. A batch that does not decode
//! cleanly into exactly one row per message is decoded again message by message, so a
//! malformed message is counted and skipped alone and the good ones around it are kept.
//!
//! A broker that goes away is retried by librdkafka's own reconnects; the error shows in
//! `watershed.sources.last_error` until messages flow again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::error::{WsError, WsResult, sqlstate};
use crate::stream::log::PARTITIONS_MAX;
use crate::stream::spec::Encode;
use crate::stream::{Source, SourceSpec};

pub const OPTIONS: [&str; 6] = [
    "topic",
    "properties.bootstrap.server",
    "properties.bootstrap.servers",
    "scan.startup.mode",
    "scan.startup.timestamp.millis",
    "properties.*",
];

/// Messages decoded into one batch at most (per flush, over all partitions).
pub const BATCH_ROWS_MAX: usize = 8_192;
/// A buffered message waits at most this long before its batch is decoded.
pub const BATCH_LINGER_MS: u64 = 50;
/// Longest single wait for a message; also how soon the reader notices a DROP SOURCE.
const POLL_MS: u64 = 100;
/// Bound on one metadata or offsets-for-times request at start-up.
const METADATA_TIMEOUT_MS: u64 = 10_000;
/// Pause between start-up attempts while the broker or the topic is not there.
const START_RETRY_MS: u64 = 1_000;

/// Where reading starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupMode {
    Earliest,
    Latest,
    /// The first message whose Kafka timestamp is at or after this many ms since the epoch.
    Timestamp(i64),
}

/// A kafka source's validated options.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub topic: String,
    pub bootstrap_servers: String,
    pub startup: StartupMode,
    pub encode: Encode,
    /// `properties.*` other than the bootstrap servers, without the prefix: passed to
    /// librdkafka as they are (SASL, timeouts, ...).
    pub properties: BTreeMap<String, String>,
}

fn invalid(message: impl Into<String>) -> WsError {
    WsError::new(sqlstate::INVALID_PARAMETER_VALUE, message)
}

impl KafkaConfig {
    pub fn from_spec(spec: &SourceSpec) -> WsResult<KafkaConfig> {
        spec.check_options(&OPTIONS)?;
        let topic = spec
            .option("topic")
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| invalid("connector 'kafka' needs topic = '...'"))?
            .trim()
            .to_string();
        let bootstrap_servers =
            match (spec.option("properties.bootstrap.server"), spec.option("properties.bootstrap.servers")) {
                (Some(a), Some(b)) if a != b => {
                    return Err(invalid("properties.bootstrap.server and properties.bootstrap.servers disagree"));
                }
                (Some(servers), _) | (None, Some(servers)) if !servers.trim().is_empty() => servers.trim().to_string(),
                _ => return Err(invalid("connector 'kafka' needs 'properties.bootstrap.server' = 'host:port[,...]'")),
            };
        let timestamp = spec.option("scan.startup.timestamp.millis");
        let startup = match spec.option("scan.startup.mode").map(str::to_ascii_lowercase).as_deref() {
            None | Some("earliest") if timestamp.is_none() => StartupMode::Earliest,
            Some("latest") if timestamp.is_none() => StartupMode::Latest,
            // A timestamp alone implies the timestamp mode.
            None | Some("timestamp") => {
                let text = timestamp
                    .ok_or_else(|| invalid("scan.startup.mode = 'timestamp' needs scan.startup.timestamp.millis"))?;
                let millis = text.trim().parse::<i64>().ok().filter(|ms| *ms >= 0).ok_or_else(|| {
                    invalid(format!("scan.startup.timestamp.millis must be ms since the epoch, got {text:?}"))
                })?;
                StartupMode::Timestamp(millis)
            }
            Some(mode @ ("earliest" | "latest")) => {
                return Err(invalid(format!(
                    "scan.startup.timestamp.millis only applies to scan.startup.mode = 'timestamp', not '{mode}'"
                )));
            }
            Some(other) => {
                return Err(invalid(format!("scan.startup.mode must be earliest, latest or timestamp, got '{other}'")));
            }
        };
        let mut properties = BTreeMap::new();
        for (key, value) in &spec.def.options {
            let Some(property) = key.strip_prefix("properties.") else { continue };
            if property == "bootstrap.server" || property == "bootstrap.servers" {
                continue;
            }
            if property == "enable.auto.commit" && !value.eq_ignore_ascii_case("false") {
                return Err(WsError::unsupported(
                    "properties.enable.auto.commit: watershed keeps offsets itself and never commits them to the broker",
                ));
            }
            properties.insert(property.to_string(), value.clone());
        }
        let config =
            KafkaConfig { topic, bootstrap_servers, startup, encode: spec.encode.unwrap_or(Encode::Json), properties };
        if config.encode == Encode::Json {
            // arrow-json refuses some column types (bytea) when the decoder is built:
            // say so now rather than count every message as malformed.
            datafusion::arrow::json::ReaderBuilder::new(spec.schema.clone())
                .build_decoder()
                .map_err(|e| WsError::unsupported(format!("ENCODE JSON cannot fill these columns: {e}")))?;
        }
        // librdkafka checks every property name and value here, without connecting, so a
        // typo fails CREATE SOURCE instead of the reader later.
        config
            .client_config(spec.name())
            .create_native_config()
            .map_err(|e| invalid(format!("kafka properties: {e}")))?;
        Ok(config)
    }

    /// The consumer's settings: ours first, then the user's `properties.*`, then the
    /// ones the reader depends on.
    pub fn client_config(&self, source_name: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            // Partitions are assigned by the reader; the group id only names the client
            // to the broker (nothing is ever committed under it).
            .set("group.id", format!("watershed-{source_name}"))
            .set("client.id", format!("watershed-{source_name}"))
            // When a position is no longer on the broker (retention, a broker that lost
            // its data), read what is there rather than skip to the end.
            .set("auto.offset.reset", "earliest");
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false");
        config
    }
}

/// Routes librdkafka's client-level errors (broker down, authentication...) to the
/// source's `last_error`, remembering that one is shown so that flowing messages clear it.
struct SourceContext {
    source: Arc<Source>,
    broker_error: AtomicBool,
}

impl SourceContext {
    fn broker_error(&self, message: String) {
        self.broker_error.store(true, Ordering::Relaxed);
        self.source.record_error(message);
    }

    /// Messages arrive: a broker error shown before is over. Decode errors stay.
    fn messages_flow(&self) {
        if self.broker_error.swap(false, Ordering::Relaxed) {
            self.source.clear_error();
        }
    }
}

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.broker_error(format!("kafka: {reason} ({error})"));
    }
}

impl ConsumerContext for SourceContext {}

type SourceConsumer = BaseConsumer<SourceContext>;

/// Starts the reader thread; it runs until the source's cancel token fires.
pub fn start(source: Arc<Source>, config: KafkaConfig) -> WsResult<()> {
    let context = SourceContext { source: source.clone(), broker_error: AtomicBool::new(false) };
    let consumer: SourceConsumer = config
        .client_config(source.name())
        .create_with_context(context)
        .map_err(|e| invalid(format!("kafka consumer for source \"{}\": {e}", source.name())))?;
    std::thread::Builder::new()
        .name(format!("kafka-{}", source.name()))
        .spawn(move || {
            let mut reader = Reader::new(source, config, consumer);
            if reader.assign() {
                reader.run();
            }
        })
        .map_err(|e| WsError::internal(format!("kafka reader thread: {e}")))?;
    Ok(())
}

/// Messages of one partition waiting to be decoded.
#[derive(Debug, Default)]
struct PartitionBuffer {
    /// Every payload, each followed by a newline (JSON and CSV both read that as a
    /// separator), so the whole buffer decodes in one call.
    bytes: Vec<u8>,
    /// Per message: its byte range in `bytes` (without the newline) and its offset.
    messages: Vec<(usize, usize, i64)>,
    /// Offset of the last message seen, kept or skipped.
    last_offset: i64,
}

/// Decodes message payloads into batches of the source's schema.
pub struct MessageDecoder {
    schema: SchemaRef,
    encode: Encode,
}

impl MessageDecoder {
    pub fn new(schema: SchemaRef, encode: Encode) -> MessageDecoder {
        MessageDecoder { schema, encode }
    }

    /// Decodes newline-separated messages that should give exactly `rows` rows.
    /// Public for the microbenchmarks (benches/micro.rs): it is the reader's hot path.
    pub fn decode_rows(&self, bytes: &[u8], rows: usize) -> Result<RecordBatch, String> {
        let batch = match self.encode {
            Encode::Json => {
                let mut decoder = datafusion::arrow::json::ReaderBuilder::new(self.schema.clone())
                    .with_batch_size(rows + 1)
                    .with_coerce_primitive(true)
                    .build_decoder()
                    .map_err(|e| e.to_string())?;
                let consumed = decoder.decode(bytes).map_err(|e| e.to_string())?;
                if consumed < bytes.len() {
                    return Err(format!("more than {rows} JSON value(s)"));
                }
                decoder.flush().map_err(|e| e.to_string())?
            }
            Encode::Csv => {
                let mut decoder = datafusion::arrow::csv::ReaderBuilder::new(self.schema.clone())
                    .with_header(false)
                    .with_batch_size(rows + 1)
                    .build_decoder();
                let consumed = decoder.decode(bytes).map_err(|e| e.to_string())?;
                if consumed < bytes.len() {
                    return Err(format!("more than {rows} CSV record(s)"));
                }
                // An empty buffer tells the decoder the input ended.
                decoder.decode(&[]).map_err(|e| e.to_string())?;
                decoder.flush().map_err(|e: ArrowError| e.to_string())?
            }
        };
        let found = batch.as_ref().map_or(0, RecordBatch::num_rows);
        if found != rows {
            return Err(format!("expected {rows} row(s), decoded {found}"));
        }
        batch.ok_or_else(|| "no rows".to_string())
    }

    /// Decodes one message into one row, or says why it is malformed.
    pub fn decode_one(&self, payload: &[u8]) -> Result<RecordBatch, String> {
        if payload.iter().all(u8::is_ascii_whitespace) {
            return Err("empty message".to_string());
        }
        let mut bytes = Vec::with_capacity(payload.len() + 1);
        bytes.extend_from_slice(payload);
        bytes.push(b'\n');
        self.decode_rows(&bytes, 1).map_err(|e| match self.encode {
            Encode::Json => format!("one JSON object per message: {e}"),
            Encode::Csv => format!("one CSV record per message: {e}"),
        })
    }

    /// Decodes a buffer of messages. Rows come in message order; the error list holds
    /// (offset, reason) of every message that was skipped.
    fn decode_buffer(&self, buffer: &PartitionBuffer) -> (Option<RecordBatch>, Vec<(i64, String)>) {
        let all_text = buffer
            .messages
            .iter()
            .all(|(start, end, _)| !buffer.bytes[*start..*end].iter().all(u8::is_ascii_whitespace));
        if all_text && let Ok(batch) = self.decode_rows(&buffer.bytes, buffer.messages.len()) {
            return (Some(batch), Vec::new());
        }
        // Something in the batch is wrong: isolate it, keep the rest.
        let mut rows = Vec::with_capacity(buffer.messages.len());
        let mut errors = Vec::new();
        for (start, end, offset) in &buffer.messages {
            match self.decode_one(&buffer.bytes[*start..*end]) {
                Ok(row) => rows.push(row),
                Err(reason) => errors.push((*offset, reason)),
            }
        }
        if rows.is_empty() {
            return (None, errors);
        }
        match concat_batches(&self.schema, &rows) {
            Ok(batch) => (Some(batch), errors),
            Err(error) => {
                // Rows of one schema always concatenate; keep going if not.
                errors.push((buffer.last_offset, format!("joining decoded rows: {error}")));
                (None, errors)
            }
        }
    }
}

struct Reader {
    source: Arc<Source>,
    config: KafkaConfig,
    consumer: SourceConsumer,
    decoder: MessageDecoder,
    buffers: BTreeMap<i32, PartitionBuffer>,
    buffered: usize,
    first_buffered_at: Option<Instant>,
}

impl Reader {
    fn new(source: Arc<Source>, config: KafkaConfig, consumer: SourceConsumer) -> Reader {
        let decoder = MessageDecoder::new(source.spec.schema.clone(), config.encode);
        Reader { source, config, consumer, decoder, buffers: BTreeMap::new(), buffered: 0, first_buffered_at: None }
    }

    fn cancelled(&self) -> bool {
        self.source.cancel.is_cancelled()
    }

    /// Assigns every partition at its start position, retrying until the broker and
    /// the topic are there. False when the source was dropped meanwhile.
    fn assign(&self) -> bool {
        while !self.cancelled() {
            match self.assignment() {
                Ok(assignment) => match self.consumer.assign(&assignment) {
                    Ok(()) => return true,
                    Err(error) => self.consumer.context().broker_error(format!("kafka: assigning partitions: {error}")),
                },
                Err(message) => self.consumer.context().broker_error(message),
            }
            let until = Instant::now() + Duration::from_millis(START_RETRY_MS);
            while Instant::now() < until && !self.cancelled() {
                std::thread::sleep(Duration::from_millis(POLL_MS));
            }
        }
        false
    }

    fn assignment(&self) -> Result<TopicPartitionList, String> {
        let topic = &self.config.topic;
        let timeout = Duration::from_millis(METADATA_TIMEOUT_MS);
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| format!("kafka: metadata of topic '{topic}': {e}"))?;
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| format!("kafka: topic '{topic}' is not in the broker's metadata"))?;
        if let Some(error) = found.error() {
            return Err(format!("kafka: topic '{topic}': {:?}", error));
        }
        let mut partitions: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
        partitions.sort_unstable();
        if partitions.is_empty() {
            return Err(format!("kafka: topic '{topic}' has no partitions yet"));
        }
        if let Some(beyond) = partitions.iter().find(|p| **p < 0 || **p as usize >= PARTITIONS_MAX) {
            return Err(format!(
                "kafka: topic '{topic}' has partition {beyond}, beyond the {PARTITIONS_MAX} a source holds"
            ));
        }
        let mut assignment = TopicPartitionList::with_capacity(partitions.len());
        let start = match self.config.startup {
            StartupMode::Earliest => Offset::Beginning,
            StartupMode::Latest => Offset::End,
            StartupMode::Timestamp(ms) => Offset::Offset(ms),
        };
        for partition in &partitions {
            assignment
                .add_partition_offset(topic, *partition, start)
                .map_err(|e| format!("kafka: partition {partition}: {e}"))?;
        }
        if let StartupMode::Timestamp(_) = self.config.startup {
            // Turns the timestamp into each partition's first offset at or after it; a
            // partition with nothing that recent starts at its end.
            assignment = self
                .consumer
                .offsets_for_times(assignment, timeout)
                .map_err(|e| format!("kafka: offsets for scan.startup.timestamp.millis: {e}"))?;
            for element in assignment.elements() {
                if let Some(error) = element.error().err() {
                    return Err(format!("kafka: offset by time in partition {}: {error}", element.partition()));
                }
            }
        }
        // Every partition holds the watermark back from the start, also before its first
        // message (until it is idle past the timeout): otherwise a fast partition could
        // close windows that a slower one still has events for.
        let last = *partitions.last().expect("checked non-empty above") as u32;
        self.source.log.declare_partitions(last + 1, crate::stream::now_ms());
        tracing::info!(source = self.source.name(), topic, partitions = partitions.len(), "kafka source assigned");
        Ok(assignment)
    }

    fn run(&mut self) {
        while !self.cancelled() {
            let wait_ms = match self.first_buffered_at {
                Some(at) => BATCH_LINGER_MS.saturating_sub(at.elapsed().as_millis() as u64),
                None => POLL_MS,
            };
            match self.consumer.poll(Duration::from_millis(wait_ms)) {
                Some(Ok(message)) => {
                    self.consumer.context().messages_flow();
                    let buffer = self.buffers.entry(message.partition()).or_default();
                    let start = buffer.bytes.len();
                    buffer.bytes.extend_from_slice(message.payload().unwrap_or_default());
                    buffer.messages.push((start, buffer.bytes.len(), message.offset()));
                    buffer.bytes.push(b'\n');
                    buffer.last_offset = message.offset();
                    self.buffered += 1;
                    self.first_buffered_at.get_or_insert_with(Instant::now);
                }
                Some(Err(error)) => {
                    self.consumer.context().broker_error(format!("kafka: topic '{}': {error}", self.config.topic));
                }
                None => {}
            }
            let linger_over =
                self.first_buffered_at.is_some_and(|at| at.elapsed() >= Duration::from_millis(BATCH_LINGER_MS));
            if self.buffered >= BATCH_ROWS_MAX || linger_over {
                self.flush();
            }
        }
    }

    /// Decodes and appends every buffered message, partition by partition.
    fn flush(&mut self) {
        let arrival_ms = crate::stream::now_ms();
        for (partition, buffer) in std::mem::take(&mut self.buffers) {
            let (batch, errors) = self.decoder.decode_buffer(&buffer);
            for (offset, reason) in errors {
                self.source.record_malformed(format!(
                    "kafka: malformed message {}[{partition}]@{offset}: {reason}",
                    self.config.topic
                ));
            }
            let Err(error) = append_then_advance(&self.source, partition, batch, buffer.last_offset + 1, arrival_ms)
            else {
                continue;
            };
            // The rows are not in the log: read them again from the broker rather than
            // skip them. The position stays where it was; the source shows the error and
            // makes no progress on this partition while the append keeps failing.
            self.source.record_error(&error);
            let first_offset = buffer.messages.first().map_or(buffer.last_offset, |m| m.2);
            let timeout = Duration::from_millis(METADATA_TIMEOUT_MS);
            if let Err(seek) = self.consumer.seek(&self.config.topic, partition, Offset::Offset(first_offset), timeout)
            {
                self.consumer.context().broker_error(format!(
                    "kafka: seeking {}[{partition}] back to {first_offset}: {seek}",
                    self.config.topic
                ));
            }
            std::thread::sleep(Duration::from_millis(START_RETRY_MS));
        }
        self.buffered = 0;
        self.first_buffered_at = None;
    }
}

/// Appends the decoded rows of one partition's messages and only then moves the
/// partition's position past them (`next`): a failed append leaves the position on the
/// first message not in the log, so nothing is skipped.
fn append_then_advance(
    source: &Source,
    partition: i32,
    batch: Option<RecordBatch>,
    next: i64,
    arrival_ms: i64,
) -> Result<(), crate::error::WsError> {
    if let Some(batch) = batch {
        source.log.append(partition as u32, batch, arrival_ms)?;
    }
    source.set_position(partition as u32, next);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{ColumnDef, SourceDef};
    use datafusion::arrow::array::{Array, Int64Array, StringArray};
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    fn spec(options: &[(&str, &str)], encode: &str) -> SourceSpec {
        SourceSpec::new(SourceDef {
            name: "k".into(),
            connector: "kafka".into(),
            columns: vec![
                ColumnDef { name: "id".into(), sql_type: "BIGINT".into(), nullable: false },
                ColumnDef { name: "name".into(), sql_type: "TEXT".into(), nullable: true },
                ColumnDef { name: "ts".into(), sql_type: "TIMESTAMPTZ".into(), nullable: true },
            ],
            watermark: None,
            encode: Some(encode.into()),
            options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        })
        .expect("valid spec")
    }

    #[test]
    fn options_are_validated() {
        let base = [("topic", "t"), ("properties.bootstrap.server", "127.0.0.1:9")];
        let config = KafkaConfig::from_spec(&spec(&base, "json")).unwrap();
        assert_eq!(config.startup, StartupMode::Earliest);
        assert_eq!(config.bootstrap_servers, "127.0.0.1:9");
        let config = KafkaConfig::from_spec(&spec(
            &[
                ("topic", "t"),
                ("properties.bootstrap.servers", "b:1"),
                ("scan.startup.mode", "latest"),
                ("properties.fetch.wait.max.ms", "10"),
            ],
            "csv",
        ))
        .unwrap();
        assert_eq!(config.startup, StartupMode::Latest);
        assert_eq!(config.encode, Encode::Csv);
        assert_eq!(config.properties.get("fetch.wait.max.ms").map(String::as_str), Some("10"));
        let config = KafkaConfig::from_spec(&spec(
            &[
                ("topic", "t"),
                ("properties.bootstrap.server", "b:1"),
                ("scan.startup.timestamp.millis", "1700000000000"),
            ],
            "json",
        ))
        .unwrap();
        assert_eq!(config.startup, StartupMode::Timestamp(1_700_000_000_000));

        let refused = |options: &[(&str, &str)]| KafkaConfig::from_spec(&spec(options, "json")).unwrap_err().code;
        assert_eq!(refused(&[("properties.bootstrap.server", "b:1")]), sqlstate::INVALID_PARAMETER_VALUE);
        assert_eq!(refused(&[("topic", "t")]), sqlstate::INVALID_PARAMETER_VALUE);
        assert_eq!(
            refused(&[("topic", "t"), ("properties.bootstrap.server", "b:1"), ("scan.startup.mode", "timestamp")]),
            sqlstate::INVALID_PARAMETER_VALUE
        );
        assert_eq!(
            refused(&[("topic", "t"), ("properties.bootstrap.server", "b:1"), ("scan.startup.mode", "newest")]),
            sqlstate::INVALID_PARAMETER_VALUE
        );
        assert_eq!(
            refused(&[("topic", "t"), ("properties.bootstrap.server", "b:1"), ("properties.no.such.property", "1")]),
            sqlstate::INVALID_PARAMETER_VALUE
        );
        assert_eq!(
            refused(&[
                ("topic", "t"),
                ("properties.bootstrap.server", "b:1"),
                ("properties.enable.auto.commit", "true")
            ]),
            sqlstate::FEATURE_NOT_SUPPORTED
        );
        assert_eq!(
            refused(&[("topic", "t"), ("properties.bootstrap.server", "b:1"), ("typo", "1")]),
            sqlstate::INVALID_PARAMETER_VALUE
        );
        // This build has SASL PLAIN without TLS; TLS needs OpenSSL, which it does not link.
        let sasl = [
            ("topic", "t"),
            ("properties.bootstrap.server", "b:1"),
            ("properties.security.protocol", "sasl_plaintext"),
            ("properties.sasl.mechanism", "PLAIN"),
            ("properties.sasl.username", "u"),
            ("properties.sasl.password", "p"),
        ];
        assert!(KafkaConfig::from_spec(&spec(&sasl, "json")).is_ok());
        assert_eq!(
            refused(&[("topic", "t"), ("properties.bootstrap.server", "b:1"), ("properties.security.protocol", "ssl")]),
            sqlstate::INVALID_PARAMETER_VALUE
        );
    }

    fn ids(batch: &RecordBatch) -> Vec<i64> {
        batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec()
    }

    fn buffer(messages: &[&str]) -> PartitionBuffer {
        let mut buffer = PartitionBuffer::default();
        for (offset, message) in messages.iter().enumerate() {
            let start = buffer.bytes.len();
            buffer.bytes.extend_from_slice(message.as_bytes());
            buffer.messages.push((start, buffer.bytes.len(), offset as i64));
            buffer.bytes.push(b'\n');
            buffer.last_offset = offset as i64;
        }
        buffer
    }

    #[test]
    fn a_bad_message_is_isolated_and_the_good_ones_kept() {
        let decoder = MessageDecoder::new(spec(&[], "json").schema.clone(), Encode::Json);
        let (batch, errors) = decoder.decode_buffer(&buffer(&[
            r#"{"id": 1, "name": "a", "ts": "2026-01-01T00:00:00Z"}"#,
            r#"{"id": 2, "name": "b""#,
            r#"{"id": 3, "extra": true}"#,
            r#"{"id": "four"}"#,
            r#"{"id": 5}{"id": 6}"#,
            "",
            r#"{"id": 7, "name": 7}"#,
        ]));
        let batch = batch.unwrap();
        assert_eq!(ids(&batch), vec![1, 3, 7], "unknown fields are ignored, numbers coerce to text");
        let names = batch.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(names.value(2), "7");
        assert!(names.is_null(1));
        let skipped: Vec<i64> = errors.iter().map(|(offset, _)| *offset).collect();
        assert_eq!(skipped, vec![1, 3, 4, 5]);

        let csv = MessageDecoder::new(spec(&[], "csv").schema.clone(), Encode::Csv);
        let (batch, errors) = csv.decode_buffer(&buffer(&["1,a,2026-01-01T00:00:00Z", "2,b", "x,c,", "4,,"]));
        assert_eq!(ids(&batch.unwrap()), vec![1, 4]);
        assert_eq!(errors.iter().map(|(o, _)| *o).collect::<Vec<_>>(), vec![1, 2]);
        let (batch, errors) = csv.decode_buffer(&buffer(&["1,a,", "2,b,"]));
        assert_eq!(ids(&batch.unwrap()), vec![1, 2]);
        assert!(errors.is_empty());
    }

    #[test]
    fn a_failed_append_leaves_the_position_on_the_rows_it_did_not_keep() {
        let source = Source::new(spec(&[], "json"));
        let decoder = MessageDecoder::new(source.spec.schema.clone(), Encode::Json);
        let (batch, _) = decoder.decode_buffer(&buffer(&[r#"{"id": 1}"#, r#"{"id": 2}"#]));
        append_then_advance(&source, 0, batch.clone(), 2, 1_000).unwrap();
        assert_eq!(source.positions().get(&0), Some(&2));
        // A partition the log refuses (beyond PARTITIONS_MAX): nothing appended, no move.
        let beyond = PARTITIONS_MAX as i32;
        append_then_advance(&source, beyond, batch, 7, 1_000).unwrap_err();
        assert_eq!(source.positions().get(&(beyond as u32)), None, "the position did not pass rows it lost");
        assert_eq!(source.log.stats().events_total, 2);
    }

    /// Produces `(partition, payload)` messages to the cluster and waits for delivery.
    fn produce(bootstrap: &str, topic: &str, messages: &[(i32, String)]) {
        let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
        for (partition, payload) in messages {
            producer
                .send(BaseRecord::<(), String>::to(topic).partition(*partition).payload(payload))
                .map_err(|(e, _)| e)
                .unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }

    fn mock_source(bootstrap: &str, topic: &str, mode: &str, encode: &str) -> (Arc<Source>, KafkaConfig) {
        let spec =
            spec(&[("topic", topic), ("properties.bootstrap.server", bootstrap), ("scan.startup.mode", mode)], encode);
        let config = KafkaConfig::from_spec(&spec).unwrap();
        (Arc::new(Source::new(spec)), config)
    }

    /// Waits (bounded) until the source holds `events` events.
    fn wait_for_events(source: &Source, events: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while source.log.stats().events_total < events {
            assert!(Instant::now() < deadline, "only {} of {events} events arrived", source.log.stats().events_total);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn all_ids(source: &Source) -> Vec<i64> {
        let mut all: Vec<i64> = source.log.snapshot().iter().flat_map(|c| ids(&c.batch)).collect();
        all.sort_unstable();
        all
    }

    #[test]
    fn reads_every_partition_from_earliest_json_and_csv() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("j", 3, 1).unwrap();
        cluster.create_topic("c", 2, 1).unwrap();
        let bootstrap = cluster.bootstrap_servers();
        let mut json = Vec::new();
        for id in 0..30i64 {
            json.push(((id % 3) as i32, format!(r#"{{"id": {id}, "name": "n{id}"}}"#)));
        }
        json.insert(10, (1, "{not json".to_string()));
        produce(&bootstrap, "j", &json);
        produce(&bootstrap, "c", &[(0, "1,a,".into()), (1, "2,b,2026-01-01 00:00:00".into()), (1, "3".into())]);

        let (source, config) = mock_source(&bootstrap, "j", "earliest", "json");
        start(source.clone(), config).unwrap();
        let (csv_source, config) = mock_source(&bootstrap, "c", "earliest", "csv");
        start(csv_source.clone(), config).unwrap();

        wait_for_events(&source, 30);
        let deadline = Instant::now() + Duration::from_secs(30);
        while source.malformed_rows() < 1 {
            assert!(Instant::now() < deadline, "the malformed message was not counted");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(all_ids(&source), (0..30).collect::<Vec<_>>());
        assert_eq!(source.log.stats().partitions, 3, "one source partition per Kafka partition");
        assert_eq!(source.malformed_rows(), 1);
        assert!(source.last_error().unwrap().contains("malformed message j[1]"), "{:?}", source.last_error());
        // Every chunk holds rows of one partition: ids are congruent to the partition.
        for chunk in source.log.snapshot() {
            assert!(ids(&chunk.batch).iter().all(|id| id % 3 == chunk.partition as i64));
        }
        let positions = source.positions();
        assert_eq!(positions.get(&0), Some(&10));
        assert_eq!(positions.get(&1), Some(&11), "the malformed message is behind the position too");
        assert_eq!(positions.get(&2), Some(&10));

        wait_for_events(&csv_source, 2);
        let deadline = Instant::now() + Duration::from_secs(30);
        while csv_source.malformed_rows() < 1 {
            assert!(Instant::now() < deadline, "the short CSV record was not counted");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(all_ids(&csv_source), vec![1, 2]);
        source.stop();
        csv_source.stop();
    }

    #[test]
    fn latest_reads_only_what_comes_after_the_start() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("l", 2, 1).unwrap();
        let bootstrap = cluster.bootstrap_servers();
        produce(&bootstrap, "l", &[(0, r#"{"id": 1}"#.into()), (1, r#"{"id": 2}"#.into())]);
        let (source, config) = mock_source(&bootstrap, "l", "latest", "json");
        start(source.clone(), config).unwrap();
        // The reader has positioned itself once it has fetched from both partitions; the
        // end offsets it resolved show there, before anything new is produced.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            produce(&bootstrap, "l", &[(0, r#"{"id": 100}"#.into()), (1, r#"{"id": 101}"#.into())]);
            if source.log.stats().events_total >= 2 {
                break;
            }
            assert!(Instant::now() < deadline, "latest never delivered new messages");
            std::thread::sleep(Duration::from_millis(50));
        }
        wait_for_events(&source, 2);
        let seen = all_ids(&source);
        assert!(!seen.contains(&1) && !seen.contains(&2), "latest skipped what was there before: {seen:?}");
        assert!(seen.iter().all(|id| *id == 100 || *id == 101));
        source.stop();
    }
}

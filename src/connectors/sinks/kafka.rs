//! The Kafka sink: each row of a view as a JSON message on a topic, at least once.
//!
//! It starts from the view's stored rows and then follows its emissions; after a restart
//! the view replays its sources and the sink sends what the view stores again, so
//! messages may repeat but none is lost while it is retained. A message is retried
//! until the broker acknowledges it (librdkafka's own retries, then ours every second),
//! and the sink never gets ahead of the broker: rows wait in the view's bounded queue.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::SinkStats;
use super::notify::rows_as_json;
use crate::error::{WsError, WsResult, sqlstate};
use crate::stream::continuous::MaterializedView;

/// Options of `connector = 'kafka'` besides `properties.*`.
pub const OPTIONS: [&str; 3] = ["topic", "properties.bootstrap.server", "key"];

const RETRY_MS: u64 = 1_000;
/// How long librdkafka tries to deliver one message before reporting it failed.
const MESSAGE_TIMEOUT_MS: &str = "30000";

/// Where the sink writes.
pub struct KafkaTarget {
    pub topic: String,
    /// Producer settings: bootstrap servers and the user's `properties.*`.
    pub properties: BTreeMap<String, String>,
    /// View column whose text is each message's key.
    pub key: Option<usize>,
}

impl KafkaTarget {
    pub fn from_options(options: &BTreeMap<String, String>, view: &MaterializedView) -> WsResult<KafkaTarget> {
        let invalid = |message: String| WsError::new(sqlstate::INVALID_PARAMETER_VALUE, message);
        let topic = options.get("topic").ok_or_else(|| invalid("a kafka sink needs topic = '<name>'".into()))?;
        let mut properties = BTreeMap::new();
        for (key, value) in options {
            if let Some(property) = key.strip_prefix("properties.") {
                let property = if property == "bootstrap.server" { "bootstrap.servers" } else { property };
                properties.insert(property.to_string(), value.clone());
            } else if key != "connector" && !OPTIONS.contains(&key.as_str()) {
                return Err(invalid(format!("sink option '{key}' is not known to connector 'kafka' (topic, key, properties.*)")));
            }
        }
        if !properties.contains_key("bootstrap.servers") {
            return Err(invalid("a kafka sink needs properties.bootstrap.server = 'host:port[,...]'".into()));
        }
        let schema = view.store.schema();
        let key = match options.get("key") {
            Some(column) => Some(
                schema
                    .index_of(column)
                    .map_err(|_| invalid(format!("key column \"{column}\" is not a column of the sink's rows")))?,
            ),
            None => None,
        };
        Ok(KafkaTarget { topic: topic.clone(), properties, key })
    }

    fn producer(&self) -> WsResult<FutureProducer> {
        let mut config = ClientConfig::new();
        config.set("message.timeout.ms", MESSAGE_TIMEOUT_MS);
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config.create().map_err(|e| WsError::new(sqlstate::INVALID_PARAMETER_VALUE, format!("kafka producer: {e}")))
    }
}

pub async fn run(
    name: String,
    view: Arc<MaterializedView>,
    target: KafkaTarget,
    stats: Arc<SinkStats>,
    cancel: CancellationToken,
) {
    let producer = match target.producer() {
        Ok(producer) => producer,
        Err(error) => return stats.record_error(&name, &error),
    };
    let (rows, watermark, _, mut receiver) = match view.store.subscribe(true) {
        Ok(subscription) => subscription,
        Err(error) => return stats.record_error(&name, &error),
    };
    for batch in rows {
        if !send_until_delivered(&name, &producer, &target, &batch, watermark, &stats, &cancel).await {
            return;
        }
    }
    loop {
        let received = tokio::select! {
            _ = cancel.cancelled() => return,
            received = receiver.recv() => received,
        };
        match received {
            Ok(emission) => {
                if !send_until_delivered(&name, &producer, &target, &emission.batch, emission.watermark_us, &stats, &cancel).await {
                    return;
                }
            }
            Err(RecvError::Closed) => return,
            Err(RecvError::Lagged(missed)) => {
                let error = WsError::new(
                    sqlstate::PROGRAM_LIMIT_EXCEEDED,
                    format!("{missed} emissions were not sent: the sink fell behind the view"),
                );
                stats.record_error(&name, &error);
            }
        }
    }
}

/// Sends every row of `batch`, retrying until all are acknowledged; false when cancelled.
async fn send_until_delivered(
    name: &str,
    producer: &FutureProducer,
    target: &KafkaTarget,
    batch: &RecordBatch,
    watermark_us: Option<i64>,
    stats: &SinkStats,
    cancel: &CancellationToken,
) -> bool {
    if batch.num_rows() == 0 {
        return true;
    }
    loop {
        match send(producer, target, batch).await {
            Ok(rows) => {
                stats.record_delivery(rows, watermark_us);
                return true;
            }
            Err(error) => stats.record_error(name, &error),
        }
        tokio::select! {
            _ = cancel.cancelled() => return false,
            _ = tokio::time::sleep(Duration::from_millis(RETRY_MS)) => {}
        }
    }
}

async fn send(producer: &FutureProducer, target: &KafkaTarget, batch: &RecordBatch) -> WsResult<u64> {
    let payloads = rows_as_json(batch)?;
    let keys = match target.key {
        Some(index) => {
            let text = cast(batch.column(index), &DataType::Utf8)?;
            let text = text.as_any().downcast_ref::<StringArray>().expect("cast to Utf8 gives strings").clone();
            Some(text)
        }
        None => None,
    };
    let sends = payloads.iter().enumerate().map(|(row, payload)| {
        let mut record = FutureRecord::<str, str>::to(&target.topic).payload(payload);
        if let Some(keys) = &keys
            && keys.is_valid(row)
        {
            record = record.key(keys.value(row));
        }
        producer.send(record, Duration::from_secs(30))
    });
    for delivered in futures::future::join_all(sends).await {
        delivered.map_err(|(error, _)| WsError::new(sqlstate::IO_ERROR, format!("kafka: {error}")))?;
    }
    Ok(payloads.len() as u64)
}

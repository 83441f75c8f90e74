//! The Kafka sink: each row of a view as a JSON message on a topic, at least once.
//!
//! Delivery: a row is delivered when its message has the producer's delivery report
//! (the broker acknowledged it, librdkafka's retries included). The sink takes the view's
//! batches in order, one at a time, and does not take the next until every message of
//! the current one is delivered; a failure sends the whole batch again after a second
//! (so messages may repeat, none is skipped). Meanwhile the view's emissions wait in the
//! sink's bounded queue (`subscriber_buffer_max` emissions).
//!
//! Falling behind: when that queue overflows (a long broker outage), the sink resumes
//! from the view's retained rows, at the batch after the last one it took (found by
//! identity: the view keeps the very batches it emitted). If the view no longer retains
//! that batch (its retention or `rows_max` dropped it), rows were lost to the sink: it
//! stops, with last_error saying so, rather than skip them. An EMIT ON UPDATE view keeps
//! no past changes, so for it an overflow stops the sink the same way.
//!
//! Across restarts: the view rebuilds its rows by replaying its sources and the sink
//! starts from what the view stores. For a view that emits on window close and has a
//! `window_end` column, the sink keeps its position in
//! `<data dir>/sinks/<name>.kafka.json`: the watermark W up to which every window's rows
//! have their delivery reports, written atomically (temporary file, fsync, rename) after
//! each delivered batch, with the topic and query it holds for. After a restart it sends
//! only windows ending after W, so a restart repeats at most the batch in flight. Other
//! views have no order to resume by: after a restart their retained rows are sent again.
//! A sink created again with the same name, topic and query resumes at W (those rows are
//! in the topic); a different topic or query starts from the beginning.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use super::SinkStats;
use super::notify::rows_as_json;
use crate::error::{WsError, WsResult, sqlstate};
use crate::stream::continuous::{Emission, Emit, MaterializedView, ViewStore};

/// Where a sink resumes: the rows still to send, their watermark, and the emissions after them.
type Resumed = (Vec<RecordBatch>, Option<i64>, broadcast::Receiver<Arc<Emission>>);
/// Options of `connector = 'kafka'` besides `properties.*`.
pub const OPTIONS: [&str; 3] = ["topic", "properties.bootstrap.server", "key"];

/// Delay before sending a batch again after a failed delivery.
const RETRY_MS: u64 = 1_000;
/// How long librdkafka tries to deliver one message before reporting it failed.
const MESSAGE_TIMEOUT_MS: &str = "30000";
/// How long a send waits for room in librdkafka's queue before failing (then retried).
const QUEUE_TIMEOUT_MS: u64 = 30_000;

/// Where the sink writes.
pub struct KafkaTarget {
    pub topic: String,
    /// Producer settings: bootstrap servers and the user's `properties.*`.
    pub properties: BTreeMap<String, String>,
    /// View column whose text is each message's key.
    pub key: Option<usize>,
    /// The position file (module doc); None for views it does not apply to.
    pub position_path: Option<PathBuf>,
    /// What the position holds for: another topic or query starts afresh.
    pub fingerprint: String,
}

impl KafkaTarget {
    pub fn from_options(
        name: &str,
        options: &BTreeMap<String, String>,
        view: &MaterializedView,
        data_dir: &Path,
    ) -> WsResult<KafkaTarget> {
        let invalid = |message: String| WsError::new(sqlstate::INVALID_PARAMETER_VALUE, message);
        let topic = options.get("topic").ok_or_else(|| invalid("a kafka sink needs topic = '<name>'".into()))?;
        let mut properties = BTreeMap::new();
        for (key, value) in options {
            if let Some(property) = key.strip_prefix("properties.") {
                let property = if property == "bootstrap.server" { "bootstrap.servers" } else { property };
                properties.insert(property.to_string(), value.clone());
            } else if key != "connector" && !OPTIONS.contains(&key.as_str()) {
                return Err(invalid(format!(
                    "sink option '{key}' is not known to connector 'kafka' (topic, key, properties.*)"
                )));
            }
        }
        let Some(bootstrap) = properties.get("bootstrap.servers").cloned() else {
            return Err(invalid("a kafka sink needs properties.bootstrap.server = 'host:port[,...]'".into()));
        };
        let schema = view.store.schema();
        let key = match options.get("key") {
            Some(column) => Some(
                schema
                    .index_of(column)
                    .map_err(|_| invalid(format!("key column \"{column}\" is not a column of the sink's rows")))?,
            ),
            None => None,
        };
        let position_path = resume_column(view).map(|_| position_path(data_dir, name));
        let fingerprint = serde_json::json!({
            "sink": name, "topic": topic, "bootstrap": bootstrap, "query": view.def.query,
        })
        .to_string();
        Ok(KafkaTarget { topic: topic.clone(), properties, key, position_path, fingerprint })
    }

    fn producer(&self) -> WsResult<KafkaProducer> {
        let mut config = ClientConfig::new();
        config.set("message.timeout.ms", MESSAGE_TIMEOUT_MS);
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        let producer = config
            .create()
            .map_err(|e| WsError::new(sqlstate::INVALID_PARAMETER_VALUE, format!("kafka producer: {e}")))?;
        Ok(KafkaProducer { producer, topic: self.topic.clone(), key: self.key })
    }
}

/// Where a sink's position file lives.
pub fn position_path(data_dir: &Path, sink: &str) -> PathBuf {
    data_dir.join("sinks").join(format!("{}.kafka.json", crate::catalog::file_stem(sink)))
}

/// The `window_end` column the sink resumes by, for views whose rows are final per window.
fn resume_column(view: &MaterializedView) -> Option<usize> {
    (view.def.emit == Emit::OnWindowClose).then_some(view.window_end_column).flatten()
}

/// Delivers one batch's rows: Ok(rows) once every one has its delivery report.
#[async_trait]
pub trait Deliver: Send + Sync {
    async fn deliver(&self, batch: &RecordBatch) -> WsResult<u64>;
}

struct KafkaProducer {
    producer: FutureProducer,
    topic: String,
    key: Option<usize>,
}

#[async_trait]
impl Deliver for KafkaProducer {
    async fn deliver(&self, batch: &RecordBatch) -> WsResult<u64> {
        let payloads = rows_as_json(batch)?;
        let keys = match self.key {
            Some(index) => {
                let text = cast(batch.column(index), &DataType::Utf8)?;
                let text = text.as_any().downcast_ref::<StringArray>().expect("cast to Utf8 gives strings").clone();
                Some(text)
            }
            None => None,
        };
        let sends = payloads.iter().enumerate().map(|(row, payload)| {
            let mut record = FutureRecord::<str, str>::to(&self.topic).payload(payload);
            if let Some(keys) = &keys
                && keys.is_valid(row)
            {
                record = record.key(keys.value(row));
            }
            // Resolves with the message's delivery report.
            self.producer.send(record, Duration::from_millis(QUEUE_TIMEOUT_MS))
        });
        let mut failed = None;
        for delivered in futures::future::join_all(sends).await {
            if let Err((error, _)) = delivered {
                failed.get_or_insert(error);
            }
        }
        match failed {
            Some(error) => Err(WsError::new(sqlstate::IO_ERROR, format!("kafka: {error}"))),
            None => Ok(payloads.len() as u64),
        }
    }
}

/// The position file's contents.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct PositionFile {
    fingerprint: String,
    delivered_until_us: i64,
}

/// Up to which watermark every window's rows are delivered, and where that is kept.
#[derive(Debug)]
pub struct Position {
    path: Option<PathBuf>,
    fingerprint: String,
    delivered_until_us: Option<i64>,
}

impl Position {
    /// The position kept at `path` for `fingerprint`; none when there is no file or it
    /// holds for another topic or query.
    pub fn load(path: Option<PathBuf>, fingerprint: String) -> WsResult<Position> {
        let mut delivered_until_us = None;
        if let Some(path) = &path {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let file: PositionFile = serde_json::from_str(&text).map_err(|e| {
                        WsError::new(sqlstate::DATA_CORRUPTED, format!("kafka sink position {}: {e}", path.display()))
                    })?;
                    if file.fingerprint == fingerprint {
                        delivered_until_us = Some(file.delivered_until_us);
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(WsError::new(
                        sqlstate::IO_ERROR,
                        format!("kafka sink position {}: {error}", path.display()),
                    ));
                }
            }
        }
        Ok(Position { path, fingerprint, delivered_until_us })
    }

    pub fn delivered_until_us(&self) -> Option<i64> {
        self.delivered_until_us
    }

    /// Every window ending at or before `watermark_us` is delivered: keep it durably.
    fn advance(&mut self, watermark_us: i64) -> WsResult<()> {
        if self.delivered_until_us.is_some_and(|w| w >= watermark_us) {
            return Ok(());
        }
        self.delivered_until_us = Some(watermark_us);
        let Some(path) = &self.path else { return Ok(()) };
        let file = PositionFile { fingerprint: self.fingerprint.clone(), delivered_until_us: watermark_us };
        let text = serde_json::to_string(&file).map_err(|e| WsError::internal(e.to_string()))?;
        crate::catalog::write_text_atomic(path, &text, false)
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
    let position = match Position::load(target.position_path.clone(), target.fingerprint.clone()) {
        Ok(position) => position,
        Err(error) => return stats.record_error(&name, &error),
    };
    let follow = Follow {
        name: &name,
        store: &view.store,
        window_end: resume_column(&view),
        retry: Duration::from_millis(RETRY_MS),
        stats: &stats,
        cancel: &cancel,
    };
    follow.run(&producer, position).await;
}

/// The sink's loop over one view's batches (module doc).
pub struct Follow<'a> {
    pub name: &'a str,
    pub store: &'a ViewStore,
    /// `window_end`, for views the position applies to.
    pub window_end: Option<usize>,
    pub retry: Duration,
    pub stats: &'a SinkStats,
    pub cancel: &'a CancellationToken,
}

/// Batches to take, each with the watermark that holds once it is delivered.
type Backlog = VecDeque<(RecordBatch, Option<i64>)>;

/// A subscription's starting rows as a backlog: the watermark holds after the last.
fn backlog(
    rows: Vec<RecordBatch>,
    watermark_us: Option<i64>,
    schema: &datafusion::arrow::datatypes::SchemaRef,
) -> Backlog {
    let mut backlog: Backlog = rows.into_iter().map(|batch| (batch, None)).collect();
    backlog.push_back((RecordBatch::new_empty(schema.clone()), watermark_us));
    backlog
}

/// Whether two batches are the same emission: the view hands out its stored batches,
/// sharing their arrays, so identity (not equal contents) tells where a sink stood.
fn same_batch(a: &RecordBatch, b: &RecordBatch) -> bool {
    a.num_rows() == b.num_rows()
        && a.num_columns() == b.num_columns()
        && a.num_columns() > 0
        && a.columns().iter().zip(b.columns()).all(|(x, y)| Arc::ptr_eq(x, y))
}

impl Follow<'_> {
    /// Until cancelled, the view ends, or rows cannot be delivered any more.
    pub async fn run(&self, producer: &impl Deliver, mut position: Position) {
        let schema = self.store.subscription_schema();
        let (rows, watermark_us, _, mut receiver) = match self.store.subscribe(true) {
            Ok(subscription) => subscription,
            Err(error) => return self.stats.record_error(self.name, &error),
        };
        let mut backlog = backlog(rows, watermark_us, &schema);
        // The last non-empty batch taken from the view: the sink resumes after it.
        let mut anchor: Option<RecordBatch> = None;
        // Rows delivered since the position was last written (the snapshot's rows come
        // without a watermark; the one after the last holds for them all).
        let mut unsaved = false;
        loop {
            let (batch, watermark_us) = match backlog.pop_front() {
                Some(next) => next,
                None => {
                    let received = tokio::select! {
                        _ = self.cancel.cancelled() => return,
                        received = receiver.recv() => received,
                    };
                    match received {
                        Ok(emission) => {
                            let Emission { batch, watermark_us, .. } = emission.as_ref();
                            (batch.clone(), *watermark_us)
                        }
                        Err(RecvError::Closed) => return,
                        Err(RecvError::Lagged(missed)) => match self.resume(anchor.as_ref(), missed) {
                            Ok((rows, watermark_us, resubscribed)) => {
                                tracing::info!(
                                    sink = self.name,
                                    missed,
                                    "kafka sink fell behind; resuming from the view's rows"
                                );
                                backlog = self::backlog(rows, watermark_us, &schema);
                                receiver = resubscribed;
                                continue;
                            }
                            Err(error) => return self.stats.record_error(self.name, &error),
                        },
                    }
                }
            };
            if batch.num_rows() > 0 {
                anchor = Some(batch.clone());
            }
            let batch = match self.window_end {
                // After a restart, windows up to the position are in the topic already.
                Some(window_end) => match super::delta::after(&batch, window_end, position.delivered_until_us()) {
                    Ok(batch) => batch,
                    Err(error) => return self.stats.record_error(self.name, &error),
                },
                None => batch,
            };
            if !self.deliver(producer, &batch, watermark_us).await {
                return;
            }
            unsaved |= batch.num_rows() > 0;
            // Only delivered rows move the position: windows closed without rows need
            // no write, a restart finds none of them either.
            if self.window_end.is_some()
                && unsaved
                && let Some(w) = watermark_us
            {
                unsaved = false;
                if let Err(error) = position.advance(w) {
                    // Delivered all the same; a restart sends again from the older position.
                    self.stats.record_error(self.name, &error);
                }
            }
        }
    }

    /// The view's retained batches after `anchor` and a new queue, or why rows are lost.
    fn resume(&self, anchor: Option<&RecordBatch>, missed: u64) -> WsResult<Resumed> {
        let lost = |why: &str| {
            WsError::new(
                sqlstate::CONFIGURATION_LIMIT_EXCEEDED,
                format!(
                    "rows were not delivered and the sink has stopped: it fell {missed} emissions behind the view \
                     (subscriber_buffer_max) and {why}; drop and create the sink again to send what the view retains now"
                ),
            )
        };
        if self.store.subscription_schema().fields().len() != self.store.schema().fields().len() {
            return Err(lost("an EMIT ON UPDATE view keeps no past changes to send again"));
        }
        let (rows, watermark_us, _, receiver) = self.store.subscribe(true)?;
        let start = match anchor {
            // Nothing taken yet: everything the view retains is still to send.
            None => 0,
            Some(anchor) => match rows.iter().position(|batch| same_batch(batch, anchor)) {
                Some(index) => index + 1,
                None => {
                    return Err(lost(
                        "the view no longer retains the rows after the last batch sent (its retention or rows_max dropped them)",
                    ));
                }
            },
        };
        Ok((rows[start..].to_vec(), watermark_us, receiver))
    }

    /// Sends `batch` until every row has its delivery report; false when cancelled.
    async fn deliver(&self, producer: &impl Deliver, batch: &RecordBatch, watermark_us: Option<i64>) -> bool {
        if batch.num_rows() == 0 {
            self.stats.record_watermark(watermark_us);
            return true;
        }
        loop {
            let delivered = tokio::select! {
                _ = self.cancel.cancelled() => return false,
                delivered = producer.deliver(batch) => delivered,
            };
            match delivered {
                Ok(rows) => {
                    self.stats.record_delivery(rows, watermark_us);
                    return true;
                }
                Err(error) => self.stats.record_error(self.name, &error),
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return false,
                _ = tokio::time::sleep(self.retry) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::continuous::Step;
    use datafusion::arrow::array::{Int64Array, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema, SchemaRef, TimeUnit};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// A producer whose broker is up or down; it keeps the ids it delivered, in order.
    #[derive(Default)]
    struct FakeProducer {
        up: AtomicBool,
        attempts: AtomicU64,
        delivered: Mutex<Vec<i64>>,
    }

    #[async_trait]
    impl Deliver for FakeProducer {
        async fn deliver(&self, batch: &RecordBatch) -> WsResult<u64> {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            if !self.up.load(Ordering::SeqCst) {
                return Err(WsError::new(sqlstate::IO_ERROR, "kafka: broker transport failure"));
            }
            let ids = batch.column_by_name("id").and_then(|c| c.as_any().downcast_ref::<Int64Array>()).expect("ids");
            self.delivered.lock().unwrap().extend(ids.values().iter().copied());
            Ok(batch.num_rows() as u64)
        }
    }

    impl FakeProducer {
        fn delivered(&self) -> Vec<i64> {
            self.delivered.lock().unwrap().clone()
        }
    }

    /// Rows `(id, window_end)`; window_end in seconds.
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("window_end", DataType::Timestamp(TimeUnit::Microsecond, None), false),
        ]))
    }

    fn batch(ids: &[i64], window_end_s: i64) -> RecordBatch {
        let ends = TimestampMicrosecondArray::from(vec![window_end_s * 1_000_000; ids.len()]);
        RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(ids.to_vec())), Arc::new(ends)]).unwrap()
    }

    /// One emission closing windows up to `window_end_s`.
    fn emit(store: &ViewStore, ids: &[i64], window_end_s: i64) {
        let step =
            Step { watermark_us: Some(window_end_s * 1_000_000), source_offset: 0, now_ms: crate::stream::now_ms() };
        store.append(vec![batch(ids, window_end_s)], step).unwrap();
    }

    async fn wait_for(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "waited too long for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Runs the sink's loop on `store` in a task; returns it with its stats and token.
    fn start(
        store: Arc<ViewStore>,
        producer: Arc<FakeProducer>,
        window_end: Option<usize>,
        position: Position,
    ) -> (tokio::task::JoinHandle<()>, Arc<SinkStats>, CancellationToken) {
        let stats = Arc::new(SinkStats::default());
        let cancel = CancellationToken::new();
        let task = {
            let (stats, cancel) = (stats.clone(), cancel.clone());
            tokio::spawn(async move {
                let follow = Follow {
                    name: "out",
                    store: &store,
                    window_end,
                    retry: Duration::from_millis(5),
                    stats: &stats,
                    cancel: &cancel,
                };
                follow.run(producer.as_ref(), position).await;
            })
        };
        (task, stats, cancel)
    }

    fn no_position() -> Position {
        Position::load(None, String::new()).unwrap()
    }

    #[tokio::test]
    async fn after_an_outage_longer_than_its_queue_every_row_arrives_in_order() {
        // A queue of 2 emissions, and 10 emitted while the broker is down.
        let store = Arc::new(ViewStore::new(schema(), None, 3_600_000, 1_000_000, 2));
        emit(&store, &[1, 2], 10);
        let producer = Arc::new(FakeProducer::default());
        let (task, stats, cancel) = start(store.clone(), producer.clone(), None, no_position());
        wait_for("a failed delivery", || producer.attempts.load(Ordering::SeqCst) >= 2).await;
        assert!(stats.last_error().unwrap().contains("broker transport failure"));
        for id in 3..13 {
            emit(&store, &[id], 10 + id);
        }
        producer.up.store(true, Ordering::SeqCst);
        wait_for("every row", || producer.delivered().len() >= 12).await;
        // Resumed at the emission after the last one it had: nothing lost, nothing twice.
        assert_eq!(producer.delivered(), (1..13).collect::<Vec<_>>());
        assert_eq!(stats.rows_written.load(Ordering::Relaxed), 12);
        assert_eq!(stats.last_error(), None);
        assert_eq!(stats.delivered_until_us(), Some(22_000_000));
        emit(&store, &[13], 30);
        wait_for("a row after the outage", || producer.delivered().len() >= 13).await;
        assert_eq!(producer.delivered().last(), Some(&13));
        cancel.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn rows_the_view_dropped_before_delivery_stop_the_sink_with_an_error() {
        // The view keeps 3 rows; the sink falls 10 emissions behind.
        let store = Arc::new(ViewStore::new(schema(), None, 3_600_000, 3, 2));
        emit(&store, &[1], 10);
        let producer = Arc::new(FakeProducer::default());
        let (task, stats, _cancel) = start(store.clone(), producer.clone(), None, no_position());
        wait_for("a failed delivery", || producer.attempts.load(Ordering::SeqCst) >= 1).await;
        for id in 2..12 {
            emit(&store, &[id], 10 + id);
        }
        producer.up.store(true, Ordering::SeqCst);
        wait_for("the sink to stop", || task.is_finished()).await;
        let error = stats.last_error().expect("the loss is reported");
        assert!(error.starts_with("rows were not delivered and the sink has stopped"), "{error}");
        assert!(error.contains("retention or rows_max"), "{error}");
        assert_eq!(producer.delivered(), vec![1], "nothing after the gap is sent as if it followed");
    }

    #[tokio::test]
    async fn an_update_view_that_overflows_stops_the_sink() {
        let keyed = Arc::new(ViewStore::new(schema(), Some(vec![0]), 3_600_000, 1_000, 1));
        let replace = |round: i64| {
            let step = Step { watermark_us: None, source_offset: 0, now_ms: round };
            keyed.replace(vec![batch(&[round], 10)], step).unwrap();
        };
        replace(0);
        let producer = Arc::new(FakeProducer::default());
        let (task, stats, _cancel) = start(keyed.clone(), producer.clone(), None, no_position());
        wait_for("a failed delivery", || producer.attempts.load(Ordering::SeqCst) >= 1).await;
        for round in 1..5 {
            replace(round);
        }
        producer.up.store(true, Ordering::SeqCst);
        wait_for("the sink to stop", || task.is_finished()).await;
        assert!(stats.last_error().unwrap().contains("EMIT ON UPDATE"));
    }

    #[tokio::test]
    async fn a_restart_sends_only_windows_after_the_durable_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = position_path(dir.path(), "out");
        let load = |fingerprint: &str| Position::load(Some(path.clone()), fingerprint.to_string()).unwrap();
        // First run: two windows delivered.
        let store = Arc::new(ViewStore::new(schema(), None, 3_600_000, 1_000, 16));
        emit(&store, &[1, 2], 10);
        emit(&store, &[3], 20);
        let producer = Arc::new(FakeProducer::default());
        producer.up.store(true, Ordering::SeqCst);
        let (task, _, cancel) = start(store.clone(), producer.clone(), Some(1), load("a"));
        wait_for("the position on disk", || load("a").delivered_until_us() == Some(20_000_000)).await;
        cancel.cancel();
        task.await.unwrap();
        assert_eq!(producer.delivered(), vec![1, 2, 3]);
        // After a restart the view rebuilds the same windows and one more.
        let rebuilt = Arc::new(ViewStore::new(schema(), None, 3_600_000, 1_000, 16));
        emit(&rebuilt, &[1, 2], 10);
        emit(&rebuilt, &[3], 20);
        let producer = Arc::new(FakeProducer::default());
        producer.up.store(true, Ordering::SeqCst);
        let (task, _, cancel) = start(rebuilt.clone(), producer.clone(), Some(1), load("a"));
        emit(&rebuilt, &[4], 30);
        wait_for("the new window", || !producer.delivered().is_empty()).await;
        wait_for("the position on disk", || load("a").delivered_until_us() == Some(30_000_000)).await;
        assert_eq!(producer.delivered(), vec![4], "windows up to the position are not sent again");
        cancel.cancel();
        task.await.unwrap();
        // A position kept for another topic or query does not apply.
        assert_eq!(load("b").delivered_until_us(), None);
    }
}

//! The Delta sink: appends a view's closed windows to a Delta table, exactly once.
//!
//! Every commit carries a Delta application transaction `(watershed-sink-<name>, W)`
//! where W is the watermark (µs) the rows are final up to: every window ending at or
//! before W is in the table once that commit is. The commit's metadata also records the
//! view's source and the log offset the rows cover.
//!
//! On (re)start the sink reads W back from the table (`transaction_version`), and from
//! the view's rows (which the view rebuilds by replaying its source after a restart)
//! writes only windows ending after W. A kill -9 before a commit loses nothing (the
//! rows are produced again); after it duplicates nothing (W says they are in).
//!
//! Every `checkpoint_interval` commits a Delta checkpoint is written, so readers do not
//! replay a long log; with `compact_interval` set, small files are compacted
//! (OPTIMIZE) every that many commits.

use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::SinkStats;
use crate::error::{WsError, WsResult, sqlstate};
use crate::lake::LakeTable;
use crate::stream::continuous::MaterializedView;

/// Options of `connector = 'delta'`.
pub const OPTIONS: [&str; 4] = ["table", "location", "checkpoint_interval", "compact_interval"];

/// Delay before retrying after a failed commit (the table or its store went away).
const RETRY_MS: u64 = 1_000;

/// Where and how the sink writes.
pub struct DeltaTarget {
    pub lake: Arc<LakeTable>,
    /// Commits between Delta checkpoints.
    pub checkpoint_interval: u64,
    /// Commits between compactions; 0 never compacts.
    pub compact_interval: u64,
}

pub fn app_id(sink: &str) -> String {
    format!("watershed-sink-{sink}")
}

/// Rows of windows ending after `committed_us`.
pub(super) fn after(batch: &RecordBatch, window_end: usize, committed_us: Option<i64>) -> WsResult<RecordBatch> {
    let Some(committed) = committed_us else {
        return Ok(batch.clone());
    };
    let ends = cast(batch.column(window_end), &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    let ends = ends
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| WsError::internal("window_end is not a timestamp"))?;
    let keep: BooleanArray = ends.iter().map(|end| Some(end.is_some_and(|e| e > committed))).collect();
    Ok(filter_record_batch(batch, &keep)?)
}

pub async fn run(
    name: String,
    view: Arc<MaterializedView>,
    target: DeltaTarget,
    stats: Arc<SinkStats>,
    cancel: CancellationToken,
) {
    loop {
        match deliver(&name, &view, &target, &stats, &cancel).await {
            Ok(()) => break,
            Err(error) => stats.record_error(&name, &error),
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(std::time::Duration::from_millis(RETRY_MS)) => {}
        }
    }
}

struct Writer<'a> {
    name: &'a str,
    app_id: String,
    table: DeltaTable,
    committed_us: Option<i64>,
    commits: u64,
    target: &'a DeltaTarget,
    stats: &'a SinkStats,
    source: String,
}

impl Writer<'_> {
    async fn commit(&mut self, batches: Vec<RecordBatch>, watermark_us: i64, source_offset: u64) -> WsResult<()> {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows == 0 || self.committed_us.is_some_and(|c| watermark_us <= c) {
            return Ok(());
        }
        let properties = CommitProperties::default()
            .with_application_transaction(Transaction::new(&self.app_id, watermark_us))
            .with_metadata([
                ("watershed.sink".to_string(), serde_json::Value::from(self.name)),
                ("watershed.watermark_us".to_string(), serde_json::Value::from(watermark_us)),
                ("watershed.source_offsets".to_string(), serde_json::json!({ self.source.clone(): source_offset })),
            ]);
        let table = self.table.clone();
        self.table = table
            .write(batches)
            .with_save_mode(SaveMode::Append)
            .with_commit_properties(properties)
            .await
            .map_err(|e| WsError::new(sqlstate::IO_ERROR, format!("delta sink {}: {e}", self.name)))?;
        self.committed_us = Some(watermark_us);
        self.commits += 1;
        self.stats.record_delivery(rows as u64, Some(watermark_us));
        if self.commits.is_multiple_of(self.target.checkpoint_interval.max(1)) {
            deltalake::checkpoints::create_checkpoint(&self.table, None)
                .await
                .map_err(|e| WsError::new(sqlstate::IO_ERROR, format!("delta sink {} checkpoint: {e}", self.name)))?;
        }
        if self.target.compact_interval > 0 && self.commits.is_multiple_of(self.target.compact_interval) {
            let (table, _metrics) =
                self.table.clone().optimize().await.map_err(|e| {
                    WsError::new(sqlstate::IO_ERROR, format!("delta sink {} compaction: {e}", self.name))
                })?;
            self.table = table;
        }
        // Readers of the lake table see the rows without waiting for its staleness bound.
        if let Err(error) = self.target.lake.refresh().await {
            tracing::debug!(sink = self.name, error = %error.message, "lake refresh after commit failed");
        }
        Ok(())
    }
}

/// Follows the view until cancelled (Ok) or a failure (Err: the caller retries, and the
/// committed watermark read back makes the retry exactly-once).
async fn deliver(
    name: &str,
    view: &MaterializedView,
    target: &DeltaTarget,
    stats: &SinkStats,
    cancel: &CancellationToken,
) -> WsResult<()> {
    let window_end = view
        .window_end_column
        .ok_or_else(|| WsError::internal("a delta sink's view has a window_end column (checked at CREATE SINK)"))?;
    let table = target.lake.current_table().await?;
    let app_id = app_id(name);
    let committed_us = table
        .snapshot()
        .map_err(|e| WsError::new(sqlstate::IO_ERROR, format!("delta sink {name}: {e}")))?
        .transaction_version(table.log_store().as_ref(), &app_id)
        .await
        .map_err(|e| WsError::new(sqlstate::IO_ERROR, format!("delta sink {name}: {e}")))?;
    let mut writer =
        Writer { name, app_id, table, committed_us, commits: 0, target, stats, source: view.sources.join(",") };
    let (rows, watermark_us, offset, mut receiver) = view.store.subscribe(true)?;
    if let Some(w) = watermark_us {
        let rows = rows.iter().map(|b| after(b, window_end, writer.committed_us)).collect::<WsResult<Vec<_>>>()?;
        writer.commit(rows, w, offset).await?;
    }
    loop {
        let first = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            received = receiver.recv() => received,
        };
        let mut emissions = Vec::new();
        match first {
            Ok(emission) => emissions.push(emission),
            Err(RecvError::Closed) => return Ok(()),
            Err(RecvError::Lagged(missed)) => {
                // The retry resubscribes with the view's stored rows: nothing is lost
                // while they are retained.
                return Err(WsError::new(sqlstate::PROGRAM_LIMIT_EXCEEDED, format!("fell {missed} emissions behind")));
            }
        }
        // Whatever else is queued goes into the same commit.
        while let Ok(emission) = receiver.try_recv() {
            emissions.push(emission);
        }
        let mut batches = Vec::new();
        let mut watermark = None;
        let mut offset = 0;
        for emission in &emissions {
            batches.push(after(&emission.batch, window_end, writer.committed_us)?);
            watermark = emission.watermark_us.or(watermark);
            offset = offset.max(emission.source_offset);
        }
        if let Some(w) = watermark {
            writer.commit(batches, w, offset).await?;
        }
    }
}

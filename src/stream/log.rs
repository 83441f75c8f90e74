//! The events a source retains, in arrival order, as immutable Arrow chunks; the
//! per-partition event-time clocks the watermark comes from; and the counters the
//! `watershed.sources` view shows.
//!
//! Readers take a snapshot (a list of `Arc`s, no copy of data) under a short lock, so a
//! query sees every event retained when it starts and nothing that arrives later.
//! Retention drops whole chunks, oldest first, by arrival time and by bytes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};

use crate::error::{WsError, WsResult};

/// Chunks are merged while they stay under this many rows and this arrival span, so
/// that sources fed by many small batches do not give queries many tiny batches.
pub const CHUNK_ROWS_TARGET: usize = 8_192;
const CHUNK_ARRIVAL_SPAN_MS: i64 = 1_000;
/// ...and while their event times stay within this span, so that a filter on event time
/// can still skip chunks (pruning works on each chunk's min/max).
const CHUNK_EVENT_SPAN_US: i64 = 60_000_000;

/// Upper bound on partitions per source (Kafka topics rarely have more than a few
/// hundred); each has a clock.
pub const PARTITIONS_MAX: usize = 4_096;

/// One retained batch of events from one partition.
#[derive(Debug)]
pub struct Chunk {
    pub batch: RecordBatch,
    pub partition: u32,
    /// Arrival (wall clock, ms since the epoch) of the chunk's newest rows.
    pub arrival_ms: i64,
    /// Min and max event time in the chunk (µs since the epoch); None without event time
    /// or when every event time is NULL.
    pub event_range_us: Option<(i64, i64)>,
    /// Log offset of the chunk's first row; offsets count rows appended, from 0.
    pub first_offset: u64,
    pub bytes: usize,
    /// Which rows were behind the watermark when they arrived, and that watermark (None:
    /// none was). Kept so that continuous queries judge lateness the same way however they
    /// read the log, replays included: a windowed view drops a late row only for windows
    /// that end at or before the watermark it arrived behind (Flink's rule: late means the
    /// window was already emitted). A chunk's late rows all arrived behind one watermark:
    /// a batch with late rows is never merged into an earlier chunk.
    pub late: Option<Late>,
    /// The log's watermark right after this chunk was appended: a reader that stops at
    /// this chunk has seen every row that watermark accounts for.
    pub watermark_after_us: Option<i64>,
}

/// The rows of a chunk (or of a slice of one) that arrived behind the watermark.
#[derive(Debug, Clone)]
pub struct Late {
    /// True for each row whose event time was behind `watermark_us` when it arrived.
    pub rows: BooleanArray,
    /// The watermark those rows arrived behind (µs since the epoch).
    pub watermark_us: i64,
}

impl Late {
    fn slice(&self, offset: usize, length: usize) -> Late {
        Late { rows: self.rows.slice(offset, length), watermark_us: self.watermark_us }
    }
}

/// Event-time progress of one partition.
#[derive(Debug, Clone, Copy, Default)]
struct PartitionClock {
    max_event_us: Option<i64>,
    last_arrival_ms: i64,
}

/// Counters and positions shown by `watershed.sources`.
#[derive(Debug, Clone, Default)]
pub struct LogStats {
    pub partitions: usize,
    pub events_retained: u64,
    pub bytes_retained: u64,
    pub events_total: u64,
    pub retained_from_ms: Option<i64>,
    pub watermark_us: Option<i64>,
    pub late_rows: u64,
}

#[derive(Debug)]
struct LogState {
    chunks: VecDeque<Arc<Chunk>>,
    bytes: u64,
    rows: u64,
    next_offset: u64,
    clocks: Vec<PartitionClock>,
    watermark_us: Option<i64>,
    late_rows: u64,
}

/// The retained events of one source.
#[derive(Debug)]
pub struct RetainedLog {
    schema: SchemaRef,
    /// Index of the event-time column and the watermark delay, when the source has one.
    event_time: Option<(usize, i64)>,
    retention_ms: u64,
    retention_bytes: u64,
    idle_timeout_ms: u64,
    state: Mutex<LogState>,
    /// Woken after every append and watermark move, for continuous queries that follow
    /// the log (stream/continuous/).
    changed: tokio::sync::Notify,
}

/// What a continuous reader gets from [`RetainedLog::read_from`]: the rows from its
/// offset to the end of the log, and the watermark that holds for all of them.
#[derive(Debug, Default)]
pub struct LogRead {
    /// Slices of retained chunks (no copy), in offset order.
    pub batches: Vec<RecordBatch>,
    /// For each batch, which of its rows were late when they arrived (None: none).
    pub late: Vec<Option<Late>>,
    /// Offset of the row after the last one returned: where the next read starts.
    pub next_offset: u64,
    /// Rows between the requested offset and the first retained one: lost to retention
    /// before the reader got to them.
    pub missed_rows: u64,
    pub watermark_us: Option<i64>,
    /// Rows are left after `next_offset` (the read stopped at its row budget).
    pub more: bool,
}

impl RetainedLog {
    pub fn new(
        schema: SchemaRef,
        event_time: Option<(usize, i64)>,
        retention_ms: u64,
        retention_bytes: u64,
        idle_timeout_ms: u64,
    ) -> RetainedLog {
        if let Some((index, _)) = event_time {
            assert!(
                matches!(schema.field(index).data_type(), DataType::Timestamp(_, _)),
                "the event-time column is a timestamp (checked by SourceSpec)"
            );
        }
        RetainedLog {
            schema,
            event_time,
            retention_ms,
            retention_bytes,
            idle_timeout_ms,
            state: Mutex::new(LogState {
                chunks: VecDeque::new(),
                bytes: 0,
                rows: 0,
                next_offset: 0,
                clocks: Vec::new(),
                watermark_us: None,
                late_rows: 0,
            }),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Resolves after the next append or watermark move (register before reading, so
    /// nothing is missed between a read and the wait).
    pub fn changed(&self) -> &tokio::sync::Notify {
        &self.changed
    }

    /// Declares partitions `0..count` known before their first event (Kafka reads the
    /// topic's partitions from the broker): each holds the watermark back until it has
    /// events or has been idle past the timeout, counted from `now_ms`.
    pub fn declare_partitions(&self, count: u32, now_ms: i64) {
        assert!((count as usize) <= PARTITIONS_MAX, "the connector checks the partition count");
        let mut state = self.lock();
        if state.clocks.len() < count as usize {
            state.clocks.resize(count as usize, PartitionClock::default());
        }
        for clock in &mut state.clocks {
            if clock.max_event_us.is_none() {
                clock.last_arrival_ms = clock.last_arrival_ms.max(now_ms);
            }
        }
    }

    /// Retained rows at or after `offset`, whole chunks up to about `rows_max` rows (at
    /// least one chunk), and the watermark as of the last of them: a continuous query
    /// catching up on a long log advances its windows chunk by chunk instead of holding
    /// the whole log at once. One lock: the watermark accounts for exactly the rows
    /// returned and those before. `LogRead::more` says whether rows are left.
    pub fn read_from(&self, offset: u64, rows_max: usize) -> LogRead {
        assert!(rows_max > 0);
        let state = self.lock();
        let mut read = LogRead {
            next_offset: state.next_offset.max(offset),
            watermark_us: state.watermark_us,
            ..LogRead::default()
        };
        if let Some(first) = state.chunks.front() {
            read.missed_rows = first.first_offset.saturating_sub(offset);
        } else {
            read.missed_rows = state.next_offset.saturating_sub(offset);
        }
        let mut rows_read = 0usize;
        for chunk in &state.chunks {
            let rows = chunk.batch.num_rows() as u64;
            let end = chunk.first_offset + rows;
            if end <= offset {
                continue;
            }
            if rows_read >= rows_max {
                // Stop before this chunk: the watermark is the one the rows read account for.
                read.next_offset = chunk.first_offset.max(offset);
                read.more = true;
                break;
            }
            let skip = offset.saturating_sub(chunk.first_offset);
            read.batches.push(chunk.batch.slice(skip as usize, (rows - skip) as usize));
            read.late.push(chunk.late.as_ref().map(|late| late.slice(skip as usize, (rows - skip) as usize)));
            rows_read += (rows - skip) as usize;
            read.watermark_us = chunk.watermark_after_us;
        }
        if !read.more {
            // Read to the end: the watermark may have moved since (idle partitions).
            read.watermark_us = state.watermark_us;
        }
        read
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogState> {
        // A panic while holding this lock leaves plain counters and a list of Arcs, both
        // consistent between statements; carrying on is safe.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends one batch that arrived from `partition` at `arrival_ms`. Returns the log
    /// offset of its first row. Rows older than the watermark are kept (ad-hoc queries
    /// see them) but counted as late.
    pub fn append(&self, partition: u32, batch: RecordBatch, arrival_ms: i64) -> WsResult<u64> {
        if batch.num_rows() <= CHUNK_ROWS_TARGET {
            let bytes = batch.get_array_memory_size();
            return self.append_chunk(partition, batch, bytes, arrival_ms);
        }
        // A big batch (one large INSERT or COPY) becomes several chunks, so that pruning
        // and parallel scans keep their granularity. Slices share the batch's buffers:
        // each is charged its share of the bytes, so that retention_bytes counts once.
        let total_rows = batch.num_rows();
        let total_bytes = batch.get_array_memory_size();
        let mut first_offset = None;
        let mut start = 0;
        while start < total_rows {
            let length = CHUNK_ROWS_TARGET.min(total_rows - start);
            let bytes = total_bytes * length / total_rows;
            let offset = self.append_chunk(partition, batch.slice(start, length), bytes, arrival_ms)?;
            first_offset.get_or_insert(offset);
            start += length;
        }
        Ok(first_offset.expect("a batch over CHUNK_ROWS_TARGET rows has at least one slice"))
    }

    /// What `append` refuses, checked without appending: a writer that must make rows
    /// durable before they are appended (ingest) asks first, so that an append after the
    /// fsync does not fail for rows already on disk.
    pub fn check(&self, partition: u32, batch: &RecordBatch) -> WsResult<()> {
        if batch.schema().fields() != self.schema.fields() {
            return Err(WsError::internal(format!(
                "batch schema {:?} does not match the source schema {:?}",
                batch.schema(),
                self.schema
            )));
        }
        if partition as usize >= PARTITIONS_MAX {
            return Err(WsError::internal(format!("partition {partition} beyond {PARTITIONS_MAX}")));
        }
        Ok(())
    }

    fn append_chunk(&self, partition: u32, batch: RecordBatch, bytes: usize, arrival_ms: i64) -> WsResult<u64> {
        self.check(partition, &batch)?;
        let event_us = match self.event_time {
            Some((index, _)) => Some(event_micros(batch.column(index))?),
            None => None,
        };
        let event_range_us = event_us.as_ref().and_then(|times| {
            let min = datafusion::arrow::compute::min(times)?;
            let max = datafusion::arrow::compute::max(times)?;
            Some((min, max))
        });
        let rows = batch.num_rows() as u64;
        let mut state = self.lock();
        let first_offset = state.next_offset;
        if rows == 0 {
            return Ok(first_offset);
        }
        // Everything fallible comes before the first change to the state, so that a failed
        // append leaves the log exactly as it was (no chunk dropped, no offset skipped).
        // Late rows: behind the watermark as it stood when they arrived.
        let mut late = None;
        if let (Some(times), Some(watermark_us)) = (&event_us, state.watermark_us) {
            let mask: BooleanArray = times.iter().map(|t| Some(t.is_some_and(|t| t < watermark_us))).collect();
            if mask.true_count() > 0 {
                late = Some(Late { rows: mask, watermark_us });
            }
        }
        let merge_with_last = late.is_none()
            && state.chunks.back().is_some_and(|last| {
                last.partition == partition
                    && last.batch.num_rows() + batch.num_rows() <= CHUNK_ROWS_TARGET
                    && arrival_ms - last.arrival_ms <= CHUNK_ARRIVAL_SPAN_MS
                    && last.first_offset + last.batch.num_rows() as u64 == first_offset
                    && match merge_ranges(last.event_range_us, event_range_us) {
                        Some((min, max)) => max - min <= CHUNK_EVENT_SPAN_US,
                        None => true,
                    }
            });
        let merged = match state.chunks.back().filter(|_| merge_with_last) {
            Some(last) => {
                let merged = concat_batches(&self.schema, [&last.batch, &batch])?;
                let late = match &last.late {
                    None => None,
                    Some(last_late) => {
                        let on_time = BooleanArray::from(vec![false; batch.num_rows()]);
                        let joined = datafusion::arrow::compute::concat(&[&last_late.rows, &on_time])?;
                        let rows =
                            joined.as_any().downcast_ref::<BooleanArray>().expect("booleans concatenate to booleans");
                        Some(Late { rows: rows.clone(), watermark_us: last_late.watermark_us })
                    }
                };
                Some((merged, late))
            }
            None => None,
        };
        if let Some(late) = &late {
            state.late_rows += late.rows.true_count() as u64;
        }
        if state.clocks.len() <= partition as usize {
            state.clocks.resize(partition as usize + 1, PartitionClock::default());
        }
        let clock = &mut state.clocks[partition as usize];
        clock.last_arrival_ms = clock.last_arrival_ms.max(arrival_ms);
        if let Some((_, max)) = event_range_us {
            clock.max_event_us = Some(clock.max_event_us.map_or(max, |m| m.max(max)));
        }
        self.advance_watermark(&mut state, arrival_ms);
        state.next_offset += rows;
        state.rows += rows;
        let chunk = match merged {
            Some((merged, merged_late)) => {
                let last = state.chunks.pop_back().expect("merged with it above");
                let merged_bytes = merged.get_array_memory_size();
                state.bytes = state.bytes - last.bytes as u64 + merged_bytes as u64;
                Chunk {
                    batch: merged,
                    partition,
                    arrival_ms: arrival_ms.max(last.arrival_ms),
                    event_range_us: merge_ranges(last.event_range_us, event_range_us),
                    first_offset: last.first_offset,
                    bytes: merged_bytes,
                    late: merged_late,
                    watermark_after_us: state.watermark_us,
                }
            }
            None => {
                state.bytes += bytes as u64;
                let watermark_after_us = state.watermark_us;
                Chunk { batch, partition, arrival_ms, event_range_us, first_offset, bytes, late, watermark_after_us }
            }
        };
        state.chunks.push_back(Arc::new(chunk));
        self.trim_locked(&mut state, arrival_ms);
        drop(state);
        self.changed.notify_waiters();
        Ok(first_offset)
    }

    /// Watermark = min over active partitions of (max event time - delay); a partition
    /// idle past the timeout stops holding it back. It never moves backwards.
    fn advance_watermark(&self, state: &mut LogState, now_ms: i64) {
        let Some((_, delay_us)) = self.event_time else {
            return;
        };
        let idle_ms = self.idle_timeout_ms as i64;
        let active = state.clocks.iter().filter(|c| now_ms - c.last_arrival_ms < idle_ms);
        // An active partition without events yet (declared by its connector) holds the
        // watermark where it is.
        if active.clone().any(|c| c.max_event_us.is_none() && c.last_arrival_ms > 0) {
            return;
        }
        let active = active.filter(|c| c.max_event_us.is_some());
        let candidate = match active.clone().count() {
            0 => state.clocks.iter().filter_map(|c| c.max_event_us).max(),
            _ => active.filter_map(|c| c.max_event_us).min(),
        };
        if let Some(event_us) = candidate {
            let watermark = event_us.saturating_sub(delay_us);
            state.watermark_us = Some(state.watermark_us.map_or(watermark, |w| w.max(watermark)));
        }
    }

    /// Drops chunks past retention (by arrival time, then by bytes). Returns the log
    /// offset below which nothing is retained any more.
    pub fn trim(&self, now_ms: i64) -> u64 {
        let mut state = self.lock();
        let before = state.watermark_us;
        self.advance_watermark(&mut state, now_ms);
        let moved = state.watermark_us != before;
        let first_retained = self.trim_locked(&mut state, now_ms);
        drop(state);
        if moved {
            self.changed.notify_waiters();
        }
        first_retained
    }

    fn trim_locked(&self, state: &mut LogState, now_ms: i64) -> u64 {
        let oldest_kept_ms = now_ms.saturating_sub(self.retention_ms as i64);
        while let Some(front) = state.chunks.front() {
            let expired = front.arrival_ms < oldest_kept_ms;
            let over_bytes = state.bytes > self.retention_bytes && state.chunks.len() > 1;
            if !expired && !over_bytes {
                break;
            }
            let front = state.chunks.pop_front().expect("checked above");
            state.bytes -= front.bytes as u64;
            state.rows -= front.batch.num_rows() as u64;
        }
        state.chunks.front().map_or(state.next_offset, |c| c.first_offset)
    }

    /// Every retained chunk, oldest first: the consistent view one query reads.
    pub fn snapshot(&self) -> Vec<Arc<Chunk>> {
        self.lock().chunks.iter().cloned().collect()
    }

    pub fn watermark_us(&self) -> Option<i64> {
        self.lock().watermark_us
    }

    pub fn stats(&self) -> LogStats {
        let state = self.lock();
        LogStats {
            partitions: state.clocks.len(),
            events_retained: state.rows,
            bytes_retained: state.bytes,
            events_total: state.next_offset,
            retained_from_ms: state.chunks.front().map(|c| {
                // The oldest retained chunk's rows arrived at or before its arrival_ms.
                c.arrival_ms
            }),
            watermark_us: state.watermark_us,
            late_rows: state.late_rows,
        }
    }

    /// Sets the offset of the next row of an empty log: replay starts at the first offset
    /// still on disk, so offsets stay stable across restarts and retention.
    pub fn start_at_offset(&self, offset: u64) {
        let mut state = self.lock();
        assert!(state.chunks.is_empty() && state.next_offset == 0, "only an empty log is positioned");
        state.next_offset = offset;
    }

    /// Next offset to be assigned: the count of rows ever appended (after a restart, the
    /// count replayed plus those appended since).
    pub fn next_offset(&self) -> u64 {
        self.lock().next_offset
    }
}

fn merge_ranges(a: Option<(i64, i64)>, b: Option<(i64, i64)>) -> Option<(i64, i64)> {
    match (a, b) {
        (Some((a0, a1)), Some((b0, b1))) => Some((a0.min(b0), a1.max(b1))),
        (one, None) | (None, one) => one,
    }
}

/// Event times of a timestamp column as microseconds since the epoch.
pub fn event_micros(column: &dyn Array) -> WsResult<TimestampMicrosecondArray> {
    let as_micros = cast(column, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    Ok(as_micros
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .expect("cast to Timestamp(µs) gives a TimestampMicrosecondArray")
        .clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
        ]))
    }

    fn batch(ids: &[i64], ts_s: &[i64]) -> RecordBatch {
        let ts = TimestampMicrosecondArray::from(ts_s.iter().map(|s| s * 1_000_000).collect::<Vec<_>>())
            .with_timezone("UTC");
        RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(ids.to_vec())), Arc::new(ts)]).unwrap()
    }

    fn log(retention_ms: u64, retention_bytes: u64) -> RetainedLog {
        RetainedLog::new(schema(), Some((1, 5_000_000)), retention_ms, retention_bytes, 10_000)
    }

    #[test]
    fn bounded_reads_stop_at_a_chunk_with_the_watermark_of_what_they_read() {
        let log = log(3_600_000, 1 << 30);
        // Three chunks (a minute apart in arrival, so they do not merge): watermark 5 s behind.
        log.append(0, batch(&[1, 2], &[10, 20]), 1_000).unwrap();
        log.append(0, batch(&[3], &[30]), 61_000).unwrap();
        log.append(0, batch(&[4], &[40]), 121_000).unwrap();
        let first = log.read_from(0, 1);
        assert_eq!(first.batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 2, "whole chunks, at least one");
        assert!(first.more);
        assert_eq!(first.next_offset, 2);
        assert_eq!(first.watermark_us, Some(15_000_000), "as of the rows read, not the log's 35 s");
        let second = log.read_from(first.next_offset, 10);
        assert!(!second.more);
        assert_eq!(second.batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 2);
        assert_eq!((second.next_offset, second.watermark_us), (4, Some(35_000_000)));
        let from_inside = log.read_from(1, 1);
        assert_eq!(
            (from_inside.batches[0].num_rows(), from_inside.next_offset, from_inside.watermark_us),
            (1, 2, Some(15_000_000))
        );
    }

    #[test]
    fn declared_partitions_hold_the_watermark_until_they_have_events_or_idle() {
        let log = log(60_000, 1 << 30);
        log.declare_partitions(2, 1_000);
        log.append(0, batch(&[1], &[100]), 1_000).unwrap();
        assert_eq!(log.watermark_us(), None, "partition 1 has no events yet");
        log.append(1, batch(&[2], &[90]), 1_200).unwrap();
        assert_eq!(log.watermark_us(), Some(85_000_000), "the slower partition sets it");
        assert_eq!(log.stats().late_rows, 0, "ts 90 s was not late: nothing had closed");
        let fresh = self::log(60_000, 1 << 30);
        fresh.declare_partitions(2, 1_000);
        fresh.append(0, batch(&[1], &[100]), 1_000).unwrap();
        fresh.trim(1_000 + 10_000);
        assert_eq!(fresh.watermark_us(), Some(95_000_000), "an idle declared partition stops holding it");
    }

    #[test]
    fn watermark_trails_the_slowest_active_partition_and_counts_late_rows() {
        let log = log(60_000, 1 << 30);
        log.append(0, batch(&[1, 2], &[100, 110]), 1_000).unwrap();
        assert_eq!(log.watermark_us(), Some(105_000_000));
        log.append(1, batch(&[3], &[50]), 1_500).unwrap();
        // Partition 1 is behind: the watermark may not go back, it holds at 105 s.
        assert_eq!(log.watermark_us(), Some(105_000_000));
        assert_eq!(log.stats().late_rows, 1, "ts 50 s arrived behind the 105 s watermark");
        log.append(0, batch(&[4], &[200]), 2_000).unwrap();
        // Partition 1 (max 50 s) holds it back while active.
        assert_eq!(log.watermark_us(), Some(105_000_000));
        // Past the idle timeout partition 1 no longer counts.
        log.trim(1_500 + 10_000);
        assert_eq!(log.watermark_us(), Some(195_000_000));
    }

    #[test]
    fn late_rows_keep_the_watermark_they_arrived_behind_and_start_their_own_chunk() {
        let log = log(60_000, 1 << 30);
        log.append(0, batch(&[1, 2], &[100, 110]), 1_000).unwrap();
        // 90 s is behind the 105 s watermark; 120 s is not. Same partition, same second:
        // it would merge, but a batch with late rows starts a chunk.
        log.append(0, batch(&[3, 4], &[90, 120]), 1_100).unwrap();
        log.append(0, batch(&[5], &[130]), 1_200).unwrap();
        let snapshot = log.snapshot();
        assert_eq!(snapshot.len(), 2, "the late batch is not merged into the first chunk");
        assert!(snapshot[0].late.is_none());
        let late = snapshot[1].late.as_ref().expect("late rows recorded");
        assert_eq!(late.watermark_us, 105_000_000);
        assert_eq!(
            late.rows.iter().collect::<Vec<_>>(),
            vec![Some(true), Some(false), Some(false)],
            "on-time rows merge after it"
        );
        let read = log.read_from(3, 10);
        let sliced = read.late[0].as_ref().expect("the slice keeps its late rows");
        assert_eq!((sliced.rows.len(), sliced.watermark_us), (2, 105_000_000));
    }

    #[test]
    fn retention_drops_oldest_chunks_by_time_and_bytes() {
        let log = log(10_000, 1 << 30);
        log.append(0, batch(&[1], &[1]), 0).unwrap();
        log.append(0, batch(&[2], &[2]), 5_000).unwrap();
        assert_eq!(log.snapshot().len(), 2, "5 s apart: not merged");
        let first_kept = log.trim(12_000);
        assert_eq!(first_kept, 1, "the chunk that arrived at 0 ms is past 10 s retention");
        assert_eq!(log.stats().events_retained, 1);

        let small = RetainedLog::new(schema(), None, 60_000, 1, 10_000);
        small.append(0, batch(&[1], &[1]), 0).unwrap();
        small.append(0, batch(&[2], &[2]), 5_000).unwrap();
        assert_eq!(small.snapshot().len(), 1, "over the byte bound: only the newest chunk stays");
    }

    #[test]
    fn big_batches_split_into_chunks_charged_once() {
        let log = log(60_000, 1 << 30);
        let rows = CHUNK_ROWS_TARGET * 2 + 10;
        let ids: Vec<i64> = (0..rows as i64).collect();
        let whole = batch(&ids, &ids);
        let whole_bytes = whole.get_array_memory_size() as u64;
        assert_eq!(log.append(0, whole, 0).unwrap(), 0);
        let snapshot = log.snapshot();
        assert_eq!(snapshot.len(), 3);
        assert_eq!(snapshot[2].first_offset, 2 * CHUNK_ROWS_TARGET as u64);
        assert_eq!(snapshot[1].event_range_us, Some((8_192_000_000, 16_383_000_000)));
        let stats = log.stats();
        assert_eq!(stats.events_retained, rows as u64);
        assert!(stats.bytes_retained <= whole_bytes, "{} > {whole_bytes}", stats.bytes_retained);
    }

    #[test]
    fn small_batches_merge_into_chunks() {
        let log = log(60_000, 1 << 30);
        for i in 0..10 {
            log.append(0, batch(&[i], &[i]), 100 + i).unwrap();
        }
        let snapshot = log.snapshot();
        assert_eq!(snapshot.len(), 1);
        assert_eq!(snapshot[0].batch.num_rows(), 10);
        assert_eq!(snapshot[0].event_range_us, Some((0, 9_000_000)));
        assert_eq!(log.stats().events_total, 10);
    }
}

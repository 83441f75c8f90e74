//! A view's stored result and its subscribers.
//!
//! EMIT ON WINDOW CLOSE views append final rows; EMIT ON UPDATE views replace their rows
//! each step and tell subscribers the difference (insert, update, delete per group key).
//! Readers (`SELECT * FROM v`) take a snapshot: a list of `Arc`ed batches, no copy, no
//! recomputation. Appended rows are retained for `retention_ms` and `rows_max`.
//!
//! Subscribers get a bounded broadcast queue: one that falls `buffer_batches_max`
//! emissions behind is ended with an error (53400), and nobody else waits for it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use tokio::sync::broadcast;

use crate::error::{WsError, WsResult};

/// Name of the column that tells subscribers of EMIT ON UPDATE views what a row is.
pub const OP_COLUMN: &str = "op";

/// Starting rows, their watermark and source offset, and the queue of what follows.
pub type Subscription = (Vec<RecordBatch>, Option<i64>, u64, broadcast::Receiver<Arc<Emission>>);

/// When a step's output was made: the watermark it is final up to, the source offset
/// it covers, and the wall clock.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub watermark_us: Option<i64>,
    pub source_offset: u64,
    pub now_ms: i64,
}

/// One step's output, as subscribers and sinks receive it.
#[derive(Debug, Clone)]
pub struct Emission {
    /// The view's rows (with the `op` column for EMIT ON UPDATE views).
    pub batch: RecordBatch,
    /// Watermark (µs) the step closed windows up to; every window ending at or before it
    /// has been emitted by this or an earlier emission.
    pub watermark_us: Option<i64>,
    /// Source log offset up to which the view had read when it emitted this.
    pub source_offset: u64,
}

struct Retained {
    batch: RecordBatch,
    at_ms: i64,
}

struct Inner {
    /// Appended (final) rows, oldest first.
    appended: VecDeque<Retained>,
    /// EMIT ON UPDATE: the current rows, replaced each step.
    current: Vec<RecordBatch>,
    rows: u64,
    bytes: u64,
    last_emit_ms: Option<i64>,
    watermark_us: Option<i64>,
    source_offset: u64,
}

pub struct ViewStore {
    /// The view's own columns.
    schema: SchemaRef,
    /// What subscribers receive: `schema`, plus `op` for EMIT ON UPDATE.
    subscription_schema: SchemaRef,
    /// Group key columns (indices into `schema`) of EMIT ON UPDATE views.
    keys: Option<Vec<usize>>,
    retention_ms: u64,
    rows_max: u64,
    inner: Mutex<Inner>,
    sender: broadcast::Sender<Arc<Emission>>,
}

impl ViewStore {
    pub fn new(
        schema: SchemaRef,
        keys: Option<Vec<usize>>,
        retention_ms: u64,
        rows_max: u64,
        buffer_batches_max: usize,
    ) -> ViewStore {
        let subscription_schema = match keys {
            Some(_) => {
                let mut fields: Vec<Arc<Field>> = vec![Arc::new(Field::new(OP_COLUMN, DataType::Utf8, false))];
                fields.extend(schema.fields().iter().cloned());
                Arc::new(Schema::new(fields))
            }
            None => schema.clone(),
        };
        let (sender, _) = broadcast::channel(buffer_batches_max.max(1));
        ViewStore {
            schema,
            subscription_schema,
            keys,
            retention_ms,
            rows_max,
            inner: Mutex::new(Inner {
                appended: VecDeque::new(),
                current: Vec::new(),
                rows: 0,
                bytes: 0,
                last_emit_ms: None,
                watermark_us: None,
                source_offset: 0,
            }),
            sender,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Counters and lists of Arcs, consistent between calls: a poisoned lock is safe.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub fn subscription_schema(&self) -> SchemaRef {
        self.subscription_schema.clone()
    }

    pub fn rows(&self) -> u64 {
        self.lock().rows
    }

    pub fn last_emit_ms(&self) -> Option<i64> {
        self.lock().last_emit_ms
    }

    /// The rows a reader sees now.
    pub fn snapshot(&self) -> Vec<RecordBatch> {
        let inner = self.lock();
        inner.appended.iter().map(|r| r.batch.clone()).chain(inner.current.iter().cloned()).collect()
    }

    /// Appends one step's final rows (EMIT ON WINDOW CLOSE and views without aggregate)
    /// and sends them to subscribers as one emission, also when empty but the watermark
    /// moved (sinks learn how far the view is final).
    pub fn append(&self, batches: Vec<RecordBatch>, step: Step) -> WsResult<()> {
        assert!(self.keys.is_none(), "EMIT ON UPDATE views replace, they do not append");
        let Step { watermark_us, source_offset, now_ms } = step;
        let batch = concat_batches(&self.schema, &batches)?;
        let mut inner = self.lock();
        inner.source_offset = source_offset;
        let moved = watermark_us.is_some() && watermark_us != inner.watermark_us;
        inner.watermark_us = watermark_us.or(inner.watermark_us);
        if batch.num_rows() == 0 && !moved {
            return Ok(());
        }
        // Nobody listening is not an error: the rows are in the store.
        let _ = self.sender.send(Arc::new(Emission { batch: batch.clone(), watermark_us, source_offset }));
        if batch.num_rows() > 0 {
            inner.rows += batch.num_rows() as u64;
            inner.bytes += batch.get_array_memory_size() as u64;
            inner.last_emit_ms = Some(now_ms);
            inner.appended.push_back(Retained { batch, at_ms: now_ms });
        }
        let oldest_ms = now_ms.saturating_sub(self.retention_ms as i64);
        while let Some(front) = inner.appended.front() {
            if front.at_ms >= oldest_ms && inner.rows <= self.rows_max {
                break;
            }
            let front = inner.appended.pop_front().expect("checked above");
            inner.rows -= front.batch.num_rows() as u64;
            inner.bytes -= front.batch.get_array_memory_size() as u64;
        }
        Ok(())
    }

    /// Replaces the current rows (EMIT ON UPDATE) and sends subscribers the difference.
    pub fn replace(&self, batches: Vec<RecordBatch>, step: Step) -> WsResult<()> {
        let keys = self.keys.clone().expect("only EMIT ON UPDATE views replace");
        let Step { watermark_us, source_offset, now_ms } = step;
        let mut inner = self.lock();
        inner.source_offset = source_offset;
        let new = concat_batches(&self.schema, &batches)?;
        let old = concat_batches(&self.schema, &inner.current)?;
        let changes = self.difference(&keys, &old, &new)?;
        inner.rows = new.num_rows() as u64;
        inner.bytes = new.get_array_memory_size() as u64;
        inner.current = vec![new];
        inner.watermark_us = watermark_us.or(inner.watermark_us);
        if let Some(changes) = changes {
            inner.last_emit_ms = Some(now_ms);
            let _ = self.sender.send(Arc::new(Emission { batch: changes, watermark_us, source_offset }));
        }
        Ok(())
    }

    /// Rows of `new` not in `old` (insert) or changed (update), and keys of `old` gone
    /// from `new` (delete), with the op column first.
    fn difference(&self, keys: &[usize], old: &RecordBatch, new: &RecordBatch) -> WsResult<Option<RecordBatch>> {
        let key_fields: Vec<SortField> =
            keys.iter().map(|&k| SortField::new(self.schema.field(k).data_type().clone())).collect();
        let all_fields: Vec<SortField> =
            self.schema.fields().iter().map(|f| SortField::new(f.data_type().clone())).collect();
        let key_converter = RowConverter::new(key_fields)?;
        let row_converter = RowConverter::new(all_fields)?;
        let key_columns = |batch: &RecordBatch| keys.iter().map(|&k| batch.column(k).clone()).collect::<Vec<_>>();
        let old_keys = key_converter.convert_columns(&key_columns(old))?;
        let old_rows = row_converter.convert_columns(old.columns())?;
        let new_keys = key_converter.convert_columns(&key_columns(new))?;
        let new_rows = row_converter.convert_columns(new.columns())?;
        let old_index: HashMap<&[u8], usize> = (0..old.num_rows()).map(|i| (old_keys.row(i).data(), i)).collect();
        let mut ops = Vec::new();
        let mut from_new = Vec::new();
        let mut seen = vec![false; old.num_rows()];
        for i in 0..new.num_rows() {
            match old_index.get(new_keys.row(i).data()) {
                None => {
                    ops.push("insert");
                    from_new.push(i as u32);
                }
                Some(&j) => {
                    seen[j] = true;
                    if old_rows.row(j) != new_rows.row(i) {
                        ops.push("update");
                        from_new.push(i as u32);
                    }
                }
            }
        }
        let deleted: Vec<u32> = (0..old.num_rows() as u32).filter(|&j| !seen[j as usize]).collect();
        if from_new.is_empty() && deleted.is_empty() {
            return Ok(None);
        }
        ops.extend(std::iter::repeat_n("delete", deleted.len()));
        let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(ops))];
        for (old_column, new_column) in old.columns().iter().zip(new.columns()) {
            let changed = take(new_column, &UInt32Array::from(from_new.clone()), None)?;
            let gone = take(old_column, &UInt32Array::from(deleted.clone()), None)?;
            columns.push(datafusion::arrow::compute::concat(&[changed.as_ref(), gone.as_ref() as &dyn Array])?);
        }
        Ok(Some(RecordBatch::try_new(self.subscription_schema.clone(), columns)?))
    }

    /// A new subscriber's starting rows (when `snapshot`), the watermark and source
    /// offset they are as of, and its queue, taken together so that no emission falls
    /// between them.
    pub fn subscribe(&self, snapshot: bool) -> WsResult<Subscription> {
        let inner = self.lock();
        let receiver = self.sender.subscribe();
        if !snapshot {
            return Ok((Vec::new(), inner.watermark_us, inner.source_offset, receiver));
        }
        let mut rows: Vec<RecordBatch> = inner.appended.iter().map(|r| r.batch.clone()).collect();
        if self.keys.is_some() {
            rows = inner
                .current
                .iter()
                .map(|batch| {
                    let ops: ArrayRef = Arc::new(StringArray::from(vec!["insert"; batch.num_rows()]));
                    let mut columns = vec![ops];
                    columns.extend(batch.columns().iter().cloned());
                    RecordBatch::try_new(self.subscription_schema.clone(), columns)
                })
                .collect::<Result<_, _>>()
                .map_err(WsError::from)?;
        }
        Ok((rows, inner.watermark_us, inner.source_offset, receiver))
    }

    pub fn watermark_us(&self) -> Option<i64> {
        self.lock().watermark_us
    }
}

impl std::fmt::Debug for ViewStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewStore").field("schema", &self.schema).finish()
    }
}

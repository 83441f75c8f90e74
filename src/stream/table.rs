//! [`SourceTable`]: a source as a DataFusion relation.
//!
//! `scan` snapshots the retained chunks (a list of `Arc`s: no copy) and plans an in-memory
//! scan over them, so one query sees one consistent set of events. Filters are offered
//! to DataFusion's `PruningPredicate` against each chunk's event-time range, so a query
//! over the last five minutes reads only the chunks that can hold them. `insert_into`
//! hands rows to the source's durable writer (ingest sources only): the INSERT returns
//! once they are on disk.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, TimestampMicrosecondArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, SendableRecordBatchStream};
use futures::StreamExt;

use super::{Chunk, Source};
use crate::error::WsError;
use crate::scan_info::ScanInfoExec;

/// Upper bound on rows one INSERT or COPY may hand a source: its rows are held in memory
/// until they are durable. Beyond it: 54000, nothing written.
pub const INSERT_ROWS_MAX: usize = 10_000_000;

/// The snapshot each source gave the statement being planned, so that every scan of one
/// source in one statement (a self-join, a subquery) reads the same events. A session
/// keeps one in its DataFusion config and clears it before planning each statement.
#[derive(Debug, Default)]
pub struct StatementSnapshots {
    taken: std::sync::Mutex<std::collections::HashMap<String, Vec<Arc<Chunk>>>>,
}

impl StatementSnapshots {
    pub fn clear(&self) {
        self.taken.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn get_or_take(&self, source: &Source) -> Vec<Arc<Chunk>> {
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        taken.entry(source.name().to_string()).or_insert_with(|| source.log.snapshot()).clone()
    }
}

#[derive(Debug)]
pub struct SourceTable {
    source: Arc<Source>,
}

impl SourceTable {
    pub fn new(source: Arc<Source>) -> SourceTable {
        SourceTable { source }
    }

    pub fn source(&self) -> &Arc<Source> {
        &self.source
    }

    /// Chunks that may hold rows matching `filters`, judged by event-time ranges alone.
    fn prune(&self, state: &dyn Session, chunks: Vec<Arc<Chunk>>, filters: &[Expr]) -> DfResult<Vec<Arc<Chunk>>> {
        let Some(event_time) = &self.source.spec.event_time else {
            return Ok(chunks);
        };
        let Some(predicate) = conjunction(filters.iter().cloned()) else {
            return Ok(chunks);
        };
        let schema = self.schema();
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let physical = state.create_physical_expr(predicate, &df_schema)?;
        // None: the filters cannot prune on ranges (or cannot be translated); read all.
        let Some(pruning) = PruningPredicateBuilder::new().with_file_schema(schema.clone()).build(physical) else {
            return Ok(chunks);
        };
        let stats = ChunkStats {
            chunks: &chunks,
            column: &event_time.column,
            data_type: schema.field(event_time.index).data_type(),
        };
        let keep = pruning.prune(&stats)?;
        Ok(chunks.into_iter().zip(keep).filter_map(|(chunk, keep)| keep.then_some(chunk)).collect())
    }
}

/// Event-time min/max of each chunk, as `PruningPredicate` asks for them.
struct ChunkStats<'a> {
    chunks: &'a [Arc<Chunk>],
    column: &'a str,
    data_type: &'a DataType,
}

impl ChunkStats<'_> {
    fn bound(&self, column: &Column, pick: impl Fn((i64, i64)) -> i64) -> Option<ArrayRef> {
        if column.name != self.column {
            return None;
        }
        let values: TimestampMicrosecondArray = self.chunks.iter().map(|c| c.event_range_us.map(&pick)).collect();
        let DataType::Timestamp(_, tz) = self.data_type else {
            return None;
        };
        let values = values.with_timezone_opt(tz.clone());
        // The column may be declared in another unit; compare in its own type.
        datafusion::arrow::compute::cast(&values, self.data_type).ok()
    }
}

impl PruningStatistics for ChunkStats<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.bound(column, |(min, _)| min)
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.bound(column, |(_, max)| max)
    }

    fn num_containers(&self) -> usize {
        self.chunks.len()
    }

    fn null_counts(&self, _column: &Column) -> Option<ArrayRef> {
        None
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        let counts: UInt64Array = self.chunks.iter().map(|c| Some(c.batch.num_rows() as u64)).collect();
        Some(Arc::new(counts))
    }

    fn contained(
        &self,
        _column: &Column,
        _values: &std::collections::HashSet<ScalarValue>,
    ) -> Option<datafusion::arrow::array::BooleanArray> {
        None
    }
}

#[async_trait]
impl TableProvider for SourceTable {
    fn schema(&self) -> SchemaRef {
        self.source.spec.schema.clone()
    }

    fn table_type(&self) -> TableType {
        // A source is a relation a client reads like a table; `View` would make BI tools
        // expect a definition to show.
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Inexact: chunks are skipped by range, and DataFusion still filters the rows.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let retained = match state.config().get_extension::<StatementSnapshots>() {
            Some(snapshots) => snapshots.get_or_take(&self.source),
            None => self.source.log.snapshot(),
        };
        let retained_count = retained.len();
        let chunks = self.prune(state, retained, filters)?;
        let scanned_count = chunks.len();
        // Spread chunks over the configured partitions, keeping arrival order within each.
        let partitions_max = state.config().target_partitions().max(1);
        let per_partition = chunks.len().div_ceil(partitions_max).max(1);
        let mut partitions: Vec<Vec<RecordBatch>> =
            chunks.chunks(per_partition).map(|group| group.iter().map(|c| c.batch.clone()).collect()).collect();
        if partitions.is_empty() {
            partitions.push(Vec::new());
        }
        let scan = MemorySourceConfig::try_new_exec(&partitions, self.schema(), projection.cloned())?;
        let detail =
            format!("source={}, chunks_retained={retained_count}, chunks_scanned={scanned_count}", self.source.name());
        Ok(Arc::new(ScanInfoExec::new("SourceScanExec", detail, scan)))
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(DataFusionError::External(Box::new(WsError::unsupported(format!(
                "{insert_op} into a source is not supported: sources are append-only"
            )))));
        }
        let writer = self.source.writer().map_err(|e| DataFusionError::External(Box::new(e)))?;
        let sink = SourceSink { source: self.source.clone(), schema: self.schema(), writer };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// INSERT into an ingest source: collects the statement's rows, then one durable append.
struct SourceSink {
    source: Arc<Source>,
    schema: SchemaRef,
    writer: Arc<dyn super::DurableAppend>,
}

impl std::fmt::Debug for SourceSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceSink").field("source", &self.source.name()).finish()
    }
}

impl DisplayAs for SourceSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SourceSink: source={}", self.source.name())
    }
}

#[async_trait]
impl DataSink for SourceSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(&self, mut data: SendableRecordBatchStream, _context: &Arc<TaskContext>) -> DfResult<u64> {
        let mut batches = Vec::new();
        let mut rows = 0usize;
        while let Some(batch) = data.next().await {
            let batch = batch?;
            rows += batch.num_rows();
            if rows > INSERT_ROWS_MAX {
                return Err(DataFusionError::External(Box::new(WsError::new(
                    crate::error::sqlstate::PROGRAM_LIMIT_EXCEEDED,
                    format!("one statement may add at most {INSERT_ROWS_MAX} rows to a source"),
                ))));
            }
            // The input's schema matches the table's logically; take the table's field
            // names and nullability so the log sees one schema.
            let batch = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())?;
            batches.push(batch);
        }
        self.writer.append(batches).await.map_err(|e| DataFusionError::External(Box::new(e)))
    }
}

//! System views, each one batch computed when scanned ([`SystemView`]):
//! `watershed.materialized_views`, `watershed.sinks`, and `watershed.sources`: one row per source with its connector, retained events and bytes,
//! watermark, late and malformed row counts, rate and last error. Computed when scanned,
//! so every query sees the state at that moment.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::Session;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use std::sync::atomic::Ordering;

use super::Source;
use super::continuous::{MaterializedView, ViewRegistry};
use crate::connectors::sinks::Sink;

/// Every running source by name; shared by the catalog (which adds and removes) and the
/// system view (which reads).
pub type SourceRegistry = Arc<RwLock<BTreeMap<String, Arc<Source>>>>;

/// Every running sink by name (catalog adds and removes, `watershed.sinks` reads).
pub type SinkRegistry = Arc<RwLock<BTreeMap<String, Arc<Sink>>>>;

/// Name of the schema that holds system views, and of the views in it.
pub const SYSTEM_SCHEMA: &str = "watershed";
pub const SOURCES_VIEW: &str = "sources";
pub const VIEWS_VIEW: &str = "materialized_views";
pub const SINKS_VIEW: &str = "sinks";

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn timestamps(values: impl IntoIterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter(values).with_timezone("UTC"))
}

/// A system view whose one batch is computed when scanned.
pub struct SystemView {
    schema: SchemaRef,
    rows: Box<RowsFn>,
}

/// Builds a system view's rows, now, for its schema.
type RowsFn = dyn Fn(&SchemaRef) -> DfResult<RecordBatch> + Send + Sync;

impl SystemView {
    /// A view of `schema` whose rows `rows` computes at each scan (other modules' views:
    /// `watershed.models` in model/).
    pub fn new(schema: SchemaRef, rows: impl Fn(&SchemaRef) -> DfResult<RecordBatch> + Send + Sync + 'static) -> Self {
        SystemView { schema, rows: Box::new(rows) }
    }
}

impl std::fmt::Debug for SystemView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemView").field("schema", &self.schema).finish()
    }
}

#[async_trait]
impl TableProvider for SystemView {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = (self.rows)(&self.schema)?;
        Ok(MemorySourceConfig::try_new_exec(&[vec![batch]], self.schema(), projection.cloned())?)
    }
}

/// `watershed.materialized_views`: per view its source, emit mode, stored rows, window
/// state, watermark and lag, last emission, late rows, last error and state (`running`,
/// or `stopped` after an error it cannot go on from).
pub fn views_view(registry: ViewRegistry) -> SystemView {
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("emit", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("state_bytes", DataType::Int64, false),
        Field::new("windows_open", DataType::Int64, false),
        Field::new("watermark", timestamp_type(), true),
        Field::new("lag_ms", DataType::Int64, true),
        Field::new("last_emit_at", timestamp_type(), true),
        Field::new("events_in", DataType::Int64, false),
        Field::new("late_rows", DataType::Int64, false),
        Field::new("last_error", DataType::Utf8, true),
        Field::new("state", DataType::Utf8, false),
    ]));
    let rows = move |schema: &SchemaRef| -> DfResult<RecordBatch> {
        let views: Vec<Arc<MaterializedView>> =
            registry.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        let now_us = super::now_ms() * 1_000;
        let load = |f: &dyn Fn(&MaterializedView) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(views.iter().map(|v| f(v))))
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(views.iter().map(|v| v.name()))),
            Arc::new(StringArray::from_iter_values(views.iter().map(|v| v.sources.join(", ")))),
            Arc::new(StringArray::from_iter_values(views.iter().map(|v| v.def.emit.sql()))),
            load(&|v| v.store.rows() as i64),
            load(&|v| v.stats.state_bytes.load(Ordering::Relaxed) as i64),
            load(&|v| v.stats.windows_open.load(Ordering::Relaxed) as i64),
            timestamps(views.iter().map(|v| v.stats.watermark_us())),
            Arc::new(Int64Array::from_iter(views.iter().map(|v| v.stats.watermark_us().map(|w| (now_us - w) / 1_000)))),
            timestamps(views.iter().map(|v| v.store.last_emit_ms().map(|ms| ms * 1_000))),
            load(&|v| v.stats.events_in.load(Ordering::Relaxed) as i64),
            load(&|v| v.stats.late_rows.load(Ordering::Relaxed) as i64),
            Arc::new(StringArray::from_iter(views.iter().map(|v| v.stats.last_error()))),
            Arc::new(StringArray::from_iter_values(views.iter().map(|v| v.stats.state()))),
        ];
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    };
    SystemView { schema, rows: Box::new(rows) }
}

/// `watershed.sinks`: per sink its connector and input, rows written, commits, last
/// commit, lag (now minus the watermark delivered up to), last error and messages
/// dropped (notify: notifications a listener's full queue did not take).
pub fn sinks_view(registry: SinkRegistry) -> SystemView {
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("connector", DataType::Utf8, false),
        Field::new("input", DataType::Utf8, false),
        Field::new("rows_written", DataType::Int64, false),
        Field::new("commits", DataType::Int64, false),
        Field::new("last_commit_at", timestamp_type(), true),
        Field::new("delivered_until", timestamp_type(), true),
        Field::new("lag_ms", DataType::Int64, true),
        Field::new("last_error", DataType::Utf8, true),
        Field::new("messages_dropped", DataType::Int64, false),
    ]));
    let rows = move |schema: &SchemaRef| -> DfResult<RecordBatch> {
        let sinks: Vec<Arc<Sink>> = registry.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        let now_us = super::now_ms() * 1_000;
        let input = |sink: &Sink| match &sink.def.input {
            crate::sql::SinkInput::View(view) => view.clone(),
            crate::sql::SinkInput::Query(query) => query.clone(),
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(sinks.iter().map(|s| s.name()))),
            Arc::new(StringArray::from_iter_values(sinks.iter().map(|s| s.def.connector()))),
            Arc::new(StringArray::from_iter_values(sinks.iter().map(|s| input(s)))),
            Arc::new(Int64Array::from_iter_values(
                sinks.iter().map(|s| s.stats.rows_written.load(Ordering::Relaxed) as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                sinks.iter().map(|s| s.stats.commits.load(Ordering::Relaxed) as i64),
            )),
            timestamps(sinks.iter().map(|s| s.stats.last_commit_ms().map(|ms| ms * 1_000))),
            timestamps(sinks.iter().map(|s| s.stats.delivered_until_us())),
            Arc::new(Int64Array::from_iter(
                sinks.iter().map(|s| s.stats.delivered_until_us().map(|w| (now_us - w) / 1_000)),
            )),
            Arc::new(StringArray::from_iter(sinks.iter().map(|s| s.stats.last_error()))),
            Arc::new(Int64Array::from_iter_values(
                sinks.iter().map(|s| s.stats.messages_dropped.load(Ordering::Relaxed) as i64),
            )),
        ];
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    };
    SystemView { schema, rows: Box::new(rows) }
}

/// `watershed.sources`: one row per source (see the module comment).
pub fn sources_view(registry: SourceRegistry) -> SystemView {
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("connector", DataType::Utf8, false),
        Field::new("partitions", DataType::Int64, false),
        Field::new("events", DataType::Int64, false),
        Field::new("bytes", DataType::Int64, false),
        Field::new("retained_from", timestamp_type(), true),
        Field::new("watermark", timestamp_type(), true),
        Field::new("late_rows", DataType::Int64, false),
        Field::new("malformed_rows", DataType::Int64, false),
        Field::new("events_per_s", DataType::Float64, false),
        Field::new("last_error", DataType::Utf8, true),
        Field::new("events_total", DataType::Int64, false),
    ]));
    let rows = move |schema: &SchemaRef| -> DfResult<RecordBatch> {
        let sources: Vec<Arc<Source>> = registry.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        let stats: Vec<_> = sources.iter().map(|s| s.log.stats()).collect();
        let int = |f: &dyn Fn(usize) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values((0..sources.len()).map(f)))
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(sources.iter().map(|s| s.name()))),
            Arc::new(StringArray::from_iter_values(sources.iter().map(|s| s.spec.connector()))),
            int(&|i| stats[i].partitions as i64),
            int(&|i| stats[i].events_retained as i64),
            int(&|i| stats[i].bytes_retained as i64),
            timestamps(stats.iter().map(|s| s.retained_from_ms.map(|ms| ms * 1_000))),
            timestamps(stats.iter().map(|s| s.watermark_us)),
            int(&|i| stats[i].late_rows as i64),
            int(&|i| sources[i].malformed_rows() as i64),
            Arc::new(Float64Array::from_iter_values(sources.iter().map(|s| s.events_per_s()))),
            Arc::new(StringArray::from_iter(sources.iter().map(|s| s.last_error()))),
            int(&|i| stats[i].events_total as i64),
        ];
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    };
    SystemView { schema, rows: Box::new(rows) }
}

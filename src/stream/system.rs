//! `watershed.sources`: one row per source with its connector, retained events and bytes,
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

use super::Source;

/// Every running source by name; shared by the catalog (which adds and removes) and the
/// system view (which reads).
pub type SourceRegistry = Arc<RwLock<BTreeMap<String, Arc<Source>>>>;

/// Name of the schema that holds system views, and of the sources view in it.
pub const SYSTEM_SCHEMA: &str = "watershed";
pub const SOURCES_VIEW: &str = "sources";

#[derive(Debug)]
pub struct SourcesView {
    registry: SourceRegistry,
    schema: SchemaRef,
}

impl SourcesView {
    pub fn new(registry: SourceRegistry) -> SourcesView {
        let timestamp = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("connector", DataType::Utf8, false),
            Field::new("partitions", DataType::Int64, false),
            Field::new("events", DataType::Int64, false),
            Field::new("bytes", DataType::Int64, false),
            Field::new("retained_from", timestamp(), true),
            Field::new("watermark", timestamp(), true),
            Field::new("late_rows", DataType::Int64, false),
            Field::new("malformed_rows", DataType::Int64, false),
            Field::new("events_per_s", DataType::Float64, false),
            Field::new("last_error", DataType::Utf8, true),
            Field::new("events_total", DataType::Int64, false),
        ]));
        SourcesView { registry, schema }
    }

    fn batch(&self) -> DfResult<RecordBatch> {
        let sources: Vec<Arc<Source>> = self
            .registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
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
            Arc::new(
                TimestampMicrosecondArray::from_iter(stats.iter().map(|s| s.retained_from_ms.map(|ms| ms * 1_000)))
                    .with_timezone("UTC"),
            ),
            Arc::new(TimestampMicrosecondArray::from_iter(stats.iter().map(|s| s.watermark_us)).with_timezone("UTC")),
            int(&|i| stats[i].late_rows as i64),
            int(&|i| sources[i].malformed_rows() as i64),
            Arc::new(Float64Array::from_iter_values(sources.iter().map(|s| s.events_per_s()))),
            Arc::new(StringArray::from_iter(sources.iter().map(|s| s.last_error()))),
            int(&|i| stats[i].events_total as i64),
        ];
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

#[async_trait]
impl TableProvider for SourcesView {
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
        let batch = self.batch()?;
        Ok(MemorySourceConfig::try_new_exec(&[vec![batch]], self.schema(), projection.cloned())?)
    }
}

//! session/maintenance.rs: what the Delta maintenance statements (sql/maintenance.rs)
//! return, and the table's history as a relation.
//!
//! - `OPTIMIZE t [ZORDER BY (...)]` returns one row: files_added, files_removed,
//!   partitions_optimized (as Delta Lake's OPTIMIZE reports its metrics).
//! - `VACUUM t [RETAIN n HOURS] [DRY RUN]` returns one row per file deleted (or, dry, to
//!   delete), `path`, as Delta Lake's VACUUM DRY RUN lists them. A retention under the
//!   table's bound is refused (22023) while the setting `watershed.vacuum_retention_check`
//!   is on (its default).
//! - `table_history('t')` is a table function, so the history can be filtered and joined:
//!   one row per commit, newest first (version, timestamp, operation, parameters and
//!   metrics as JSON text, the version it read, blind append), at most
//!   [`HISTORY_ROWS_MAX`] commits.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, StringArray, TimestampMillisecondArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session as DfSession, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::catalog::{Catalog, Holder};
use crate::error::{WsError, WsResult, sqlstate};
use crate::lake::LakeTable;
use crate::sql::LakeStatement;

/// Commits `table_history` returns at most: a table with more has the older ones left
/// out (newest first), so a query over the history never reads an unbounded log.
pub const HISTORY_ROWS_MAX: usize = 10_000;

/// The setting that lets VACUUM retain less than the table's bound.
pub const VACUUM_RETENTION_CHECK: &str = "watershed.vacuum_retention_check";

/// The columns a maintenance statement returns.
pub fn schema(statement: &LakeStatement) -> SchemaRef {
    Arc::new(match statement {
        LakeStatement::Optimize { .. } => Schema::new(vec![
            Field::new("files_added", DataType::UInt64, false),
            Field::new("files_removed", DataType::UInt64, false),
            Field::new("partitions_optimized", DataType::UInt64, false),
        ]),
        LakeStatement::Vacuum { .. } => Schema::new(vec![Field::new("path", DataType::Utf8, false)]),
    })
}

/// Runs a maintenance statement on `lake`; `retention_check` is the session's setting.
pub async fn execute(statement: &LakeStatement, lake: &LakeTable, retention_check: bool) -> WsResult<RecordBatch> {
    let columns: Vec<ArrayRef> = match statement {
        LakeStatement::Optimize { zorder, .. } => {
            let done = lake.optimize(zorder.clone()).await?;
            vec![
                Arc::new(UInt64Array::from(vec![done.files_added])),
                Arc::new(UInt64Array::from(vec![done.files_removed])),
                Arc::new(UInt64Array::from(vec![done.partitions_optimized])),
            ]
        }
        LakeStatement::Vacuum { retain_hours, dry_run, .. } => {
            let paths = lake.vacuum(*retain_hours, *dry_run, retention_check).await?;
            vec![Arc::new(StringArray::from(paths))]
        }
    };
    RecordBatch::try_new(schema(statement), columns).map_err(|error| WsError::internal(error.to_string()))
}

/// Whether a setting's text means on, as PostgreSQL reads booleans.
pub fn setting_is_on(value: &str) -> bool {
    !matches!(value.trim().to_ascii_lowercase().as_str(), "off" | "false" | "0" | "no" | "f" | "n")
}

fn history_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("version", DataType::UInt64, false),
        Field::new("timestamp", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), true),
        Field::new("operation", DataType::Utf8, true),
        Field::new("operation_parameters", DataType::Utf8, true),
        Field::new("operation_metrics", DataType::Utf8, true),
        Field::new("read_version", DataType::UInt64, true),
        Field::new("is_blind_append", DataType::Boolean, true),
    ]))
}

/// `table_history('name')`.
#[derive(Debug)]
pub struct TableHistory {
    catalog: Arc<Catalog>,
}

impl TableHistory {
    pub fn new(catalog: Arc<Catalog>) -> TableHistory {
        TableHistory { catalog }
    }
}

impl TableFunctionImpl for TableHistory {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let refuse = |code, message: String| DataFusionError::External(Box::new(WsError::new(code, message)));
        let name = match args.exprs() {
            [Expr::Literal(value, _)] => match value.try_as_str() {
                Some(Some(name)) => name.to_string(),
                _ => {
                    return Err(refuse(sqlstate::INVALID_PARAMETER_VALUE, "table_history takes a table's name".into()));
                }
            },
            _ => {
                return Err(refuse(
                    sqlstate::UNDEFINED_FUNCTION,
                    "table_history takes one argument: a table's name as a text literal".into(),
                ));
            }
        };
        // The name as a relation name is written: unquoted names are lower case already.
        let name = name.strip_prefix(&format!("{}.", crate::catalog::SCHEMA_NAME)).unwrap_or(&name).to_string();
        match self.catalog.holder(&name) {
            Some(Holder::Table) => {}
            Some(_) => {
                return Err(refuse(
                    sqlstate::WRONG_OBJECT_TYPE,
                    format!("\"{name}\" is not a table: only Delta lake tables have a history"),
                ));
            }
            None => return Err(refuse(sqlstate::UNDEFINED_TABLE, format!("relation \"{name}\" does not exist"))),
        }
        Ok(Arc::new(HistoryTable { catalog: self.catalog.clone(), name }))
    }
}

#[derive(Debug)]
struct HistoryTable {
    catalog: Arc<Catalog>,
    name: String,
}

fn json_text<T: serde::Serialize>(value: &Option<T>) -> Option<String> {
    value.as_ref().and_then(|value| serde_json::to_string(value).ok())
}

#[async_trait::async_trait]
impl TableProvider for HistoryTable {
    fn schema(&self) -> SchemaRef {
        history_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let to_df = |error: WsError| DataFusionError::External(Box::new(error));
        let Some(lake) = self.catalog.lake_table(&self.name).await else {
            return Err(to_df(WsError::new(
                sqlstate::WRONG_OBJECT_TYPE,
                format!("\"{}\" is not a Delta lake table: it has no history", self.name),
            )));
        };
        let commits = lake.history(HISTORY_ROWS_MAX).await.map_err(to_df)?;
        let metrics = |info: &deltalake::kernel::CommitInfo| {
            info.info.get("operationMetrics").and_then(|value| serde_json::to_string(value).ok())
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(commits.iter().map(|(version, _)| *version))),
            Arc::new(
                TimestampMillisecondArray::from(commits.iter().map(|(_, c)| c.timestamp).collect::<Vec<_>>())
                    .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from(commits.iter().map(|(_, c)| c.operation.clone()).collect::<Vec<_>>())),
            Arc::new(StringArray::from(
                commits.iter().map(|(_, c)| json_text(&c.operation_parameters)).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(commits.iter().map(|(_, c)| metrics(c)).collect::<Vec<_>>())),
            Arc::new(UInt64Array::from(commits.iter().map(|(_, c)| c.read_version).collect::<Vec<_>>())),
            Arc::new(BooleanArray::from(commits.iter().map(|(_, c)| c.is_blind_append).collect::<Vec<_>>())),
        ];
        let batch = RecordBatch::try_new(history_schema(), columns)?;
        let source = MemorySourceConfig::try_new(&[vec![batch]], history_schema(), projection.cloned())?;
        Ok(datafusion::datasource::source::DataSourceExec::from_data_source(source))
    }
}

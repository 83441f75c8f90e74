//! lake/writes.rs: DELETE, UPDATE, TRUNCATE and MERGE on Delta tables.
//!
//! DataFusion 55 plans these statements itself (names, types, coercion, MERGE's clauses)
//! and hands a table provider resolved expressions through `TableProvider::delete_from`,
//! `update`, `truncate` and `merge_into`. [`super::LakeTable`] answers each with a
//! [`LakeWriteExec`] that runs deltalake's own operation (`DeleteBuilder`, `UpdateBuilder`,
//! `MergeBuilder`): we never rewrite files ourselves.
//!
//! The protocol of one statement:
//! - planning takes the table's newest snapshot and builds the operation, but runs
//!   nothing (a Rust future does no work until polled), so `EXPLAIN DELETE ...` writes
//!   nothing and `EXPLAIN ANALYZE DELETE ...` writes, as in PostgreSQL;
//! - executing polls the operation once: it writes new files and makes exactly one Delta
//!   commit (all or nothing: files written before a failed commit are never referenced by
//!   the log), then yields one row, `count`, the rows the statement affected;
//! - a concurrent commit is checked by deltalake's conflict checker: a commit that does
//!   not conflict (an append elsewhere) is rebased, one that does (a file this statement
//!   rewrote was removed or rewritten by the other writer) fails with 40001, so no update
//!   is lost and the client may retry (see `crate::error`'s mapping of Delta errors);
//! - the session refreshes the table's snapshot after the statement, so it sees its write.
//!
//! Statements that DataFusion would pass on incompletely are refused before planning
//! reaches here ([`check_target_only`]): a filter that reads another table (UPDATE ...
//! FROM, a subquery in WHERE) would reach the provider without its join, and deleting by
//! the rest of the conjunction would touch more rows than asked.

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::UInt64Array;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchemaRef, TableReference};
use datafusion::datasource::TableProvider;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::dml::{MergeIntoAction, MergeIntoClause, MergeIntoClauseKind};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use futures::future::BoxFuture;

use super::{Installer, Loaded, table_error, to_df};
use crate::error::{WsError, WsResult, sqlstate};

/// The aliases deltalake's merge resolves target and source columns by.
const MERGE_TARGET: &str = "target";
const MERGE_SOURCE: &str = "source";

/// The table a write goes to.
pub(super) struct Target<'a> {
    pub name: &'a str,
    pub installer: Installer,
    /// The snapshot the write starts from (the newest when it was planned).
    pub loaded: &'a Loaded,
}

/// Hands the committed state to the table; a failure there leaves the commit standing
/// (the next statement re-reads the log), so it is logged, never reported as the
/// statement's failure.
async fn install(installer: &Installer, name: &str, table: DeltaTable) {
    if let Err(error) = installer.install(table).await {
        tracing::warn!(table = name, %error, "committed, but the new snapshot was not installed");
    }
}

/// An UPDATE's `column = value` pairs, as DataFusion's provider hook takes them.
pub type Assignments = Vec<(String, Expr)>;

/// Rows a MERGE's source may have: they are held in memory while deltalake merges.
pub const MERGE_SOURCE_ROWS_MAX: usize = 10_000_000;

/// The rows a write affected, computed when the plan executes.
type Work = BoxFuture<'static, WsResult<u64>>;

/// One DML statement's Delta operation, run when executed; yields one row, `count`.
pub struct LakeWriteExec {
    /// `DELETE`, `UPDATE`, `TRUNCATE TABLE` or `MERGE`, for EXPLAIN.
    operation: &'static str,
    table: String,
    /// Taken by the one execution: a commit must not run twice.
    work: Mutex<Option<Work>>,
    properties: Arc<PlanProperties>,
}

impl std::fmt::Debug for LakeWriteExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeWriteExec").field("operation", &self.operation).field("table", &self.table).finish()
    }
}

/// DataFusion's DML count schema: one non-null UInt64 column named `count`.
fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("count", DataType::UInt64, false)]))
}

impl LakeWriteExec {
    fn plan(operation: &'static str, table: &str, work: Work) -> Arc<dyn ExecutionPlan> {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(count_schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Arc::new(LakeWriteExec {
            operation,
            table: table.to_string(),
            work: Mutex::new(Some(work)),
            properties: Arc::new(properties),
        })
    }
}

impl DisplayAs for LakeWriteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LakeWriteExec: operation={}, table={}", self.operation, self.table)
    }
}

impl ExecutionPlan for LakeWriteExec {
    fn name(&self) -> &str {
        "LakeWriteExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        assert!(children.is_empty(), "LakeWriteExec has no children");
        Ok(self)
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        assert_eq!(partition, 0, "LakeWriteExec has one partition");
        let work = self.work.lock().expect("write lock poisoned").take();
        let Some(work) = work else {
            return Err(DataFusionError::Internal(format!(
                "{} on {} was already executed",
                self.operation, self.table
            )));
        };
        let schema = count_schema();
        let batch_schema = schema.clone();
        let batch = futures::stream::once(async move {
            let rows = work.await.map_err(to_df)?;
            Ok(RecordBatch::try_new(batch_schema, vec![Arc::new(UInt64Array::from(vec![rows]))])?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batch)))
    }
}

/// deltalake runs its plans on our session state (our functions, object stores, settings
/// and memory limit) with its own query planner, which knows its plan nodes (ours only
/// plans window nodes, which deltalake's plans never hold). A caller that is not a
/// `SessionState` is a bug.
fn session_state(session: &dyn Session) -> DfResult<Arc<SessionState>> {
    match session.as_any().downcast_ref::<SessionState>() {
        Some(state) => Ok(Arc::new(
            datafusion::execution::SessionStateBuilder::new_from_existing(state.clone())
                .with_query_planner(deltalake::delta_datafusion::planner::DeltaPlanner::new())
                .build(),
        )),
        None => Err(DataFusionError::Internal("a lake write needs DataFusion's SessionState".into())),
    }
}

/// Rows of `provider` (the snapshot the write started from) that `predicate` keeps.
async fn count_matching(
    state: &SessionState,
    provider: Arc<dyn TableProvider>,
    predicate: Option<Expr>,
) -> WsResult<u64> {
    let ctx = SessionContext::new_with_state(state.clone());
    let mut frame = ctx.read_table(provider)?;
    if let Some(predicate) = predicate {
        frame = frame.filter(predicate)?;
    }
    Ok(frame.count().await? as u64)
}

/// `DELETE FROM table [WHERE filters]`; `TRUNCATE` is the same without filters.
pub(super) fn delete(
    operation: &'static str,
    target: Target<'_>,
    session: &dyn Session,
    filters: Vec<Expr>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let state = session_state(session)?;
    let predicate = conjunction(filters);
    // deltalake deletes whole files for a predicate on partition columns only (or on no
    // column), choosing them by file skipping, which keeps a file wherever the predicate
    // is NULL: every file for `WHERE x > NULL`. `IS TRUE` makes a NULL predicate false,
    // and deltalake evaluates it exactly (DataFusion over the partition values, since the
    // kernel has no IS TRUE).
    // deltalake simplifies first (`x > NULL` to NULL, a predicate on no column), so
    // every predicate goes wrapped.
    let predicate = predicate.map(Expr::is_true);
    let mut builder = target.loaded.table.clone().delete().with_session_state(state.clone());
    if let Some(predicate) = &predicate {
        builder = builder.with_predicate(predicate.clone());
    }
    let name = target.name.to_string();
    let provider = target.loaded.provider.clone();
    let installer = target.installer;
    let work = async move {
        let (table, metrics) = builder.await.map_err(|error| table_error(&name, error))?;
        install(&installer, &name, table).await;
        match metrics.num_deleted_rows {
            Some(rows) => Ok(rows as u64),
            // Whole files removed without reading them (their statistics lacked a row
            // count): count what the predicate kept in the snapshot the delete started
            // from, whose files the log still holds until VACUUM.
            None => count_matching(&state, provider, predicate).await,
        }
    };
    Ok(LakeWriteExec::plan(operation, target.name, Box::pin(work)))
}

/// `UPDATE table SET assignments [WHERE filters]`.
pub(super) fn update(
    target: Target<'_>,
    session: &dyn Session,
    assignments: Vec<(String, Expr)>,
    filters: Vec<Expr>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let state = session_state(session)?;
    let predicate = conjunction(filters);
    let name = target.name.to_string();
    if assignments.is_empty() {
        // `SET a = a` only: DataFusion drops identity assignments. PostgreSQL still
        // reports the rows the WHERE clause matched; nothing changes, so nothing commits.
        let provider = target.loaded.provider.clone();
        let work = async move { count_matching(&state, provider, predicate).await };
        return Ok(LakeWriteExec::plan("UPDATE", target.name, Box::pin(work)));
    }
    let mut builder = target.loaded.table.clone().update().with_session_state(state);
    if let Some(predicate) = predicate {
        builder = builder.with_predicate(predicate);
    }
    for (column, value) in assignments {
        builder = builder.with_update(column, value);
    }
    let installer = target.installer;
    let work = async move {
        let (table, metrics) = builder.await.map_err(|error| table_error(&name, error))?;
        install(&installer, &name, table).await;
        Ok(metrics.num_updated_rows as u64)
    };
    Ok(LakeWriteExec::plan("UPDATE", target.name, Box::pin(work)))
}

/// Columns of the target (qualified by the target table) and of the source (any other
/// qualifier) renamed to the aliases deltalake's merge resolves.
/// Aliases go too: DataFusion names MERGE's values and conditions with them, and
/// deltalake, which records each expression as SQL text in its commit, prints no alias.
fn merge_qualified(expr: Expr, target: &TableReference) -> DfResult<Expr> {
    expr.unalias_nested()
        .data
        .transform(|expr| match expr {
            Expr::Column(column) => {
                let alias = match &column.relation {
                    Some(relation) if relation.resolved_eq(target) => MERGE_TARGET,
                    Some(_) => MERGE_SOURCE,
                    None => return Ok(Transformed::no(Expr::Column(column))),
                };
                Ok(Transformed::yes(Expr::Column(Column::new(Some(TableReference::bare(alias)), column.name))))
            }
            other => Ok(Transformed::no(other)),
        })
        .map(|transformed| transformed.data)
}

/// `MERGE INTO table USING source ON on WHEN ...`: deltalake's merge, clause by clause in
/// the statement's order (the first clause whose condition holds acts on a row, as in
/// PostgreSQL). The count is PostgreSQL's: rows inserted, updated or deleted.
pub(super) fn merge(
    target: Target<'_>,
    target_ref: &TableReference,
    session: &dyn Session,
    source: Arc<dyn ExecutionPlan>,
    merge_schema: DFSchemaRef,
    on: Expr,
    clauses: Vec<MergeIntoClause>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let state = session_state(session)?;
    let target_columns: Vec<String> = merge_schema
        .iter()
        .filter(|(qualifier, _)| qualifier.is_some_and(|q| q.resolved_eq(target_ref)))
        .map(|(_, field)| field.name().clone())
        .collect();
    let name = target.name.to_string();
    let table = target.loaded.table.clone();
    let target_ref = target_ref.clone();
    let installer = target.installer;
    let work = async move {
        // The source is read once, before deltalake plans the merge: deltalake takes a
        // DataFrame and plans over it (statistics, then the join), and our source plan,
        // handed over as a scan, came back empty there. Its rows are held in memory, at
        // most MERGE_SOURCE_ROWS_MAX of them.
        let ctx = SessionContext::new_with_state(state.as_ref().clone());
        let mut stream = datafusion::physical_plan::execute_stream(source, ctx.task_ctx())?;
        let mut batches = Vec::new();
        let mut rows = 0usize;
        while let Some(batch) = futures::StreamExt::next(&mut stream).await {
            let batch = batch?;
            if rows + batch.num_rows() > MERGE_SOURCE_ROWS_MAX {
                return Err(WsError::new(
                    sqlstate::PROGRAM_LIMIT_EXCEEDED,
                    format!("MERGE source has more than {MERGE_SOURCE_ROWS_MAX} rows (merge_source_rows_max)"),
                ));
            }
            rows += batch.num_rows();
            batches.push(batch);
        }
        let source = ctx.read_batches(batches)?;
        let builder = merge_builder(&name, table, &target_ref, &target_columns, state, source, on, clauses)
            .map_err(WsError::from)?;
        let (table, metrics) = builder.await.map_err(|error| table_error(&name, error))?;
        install(&installer, &name, table).await;
        let rows = metrics.num_target_rows_inserted + metrics.num_target_rows_updated + metrics.num_target_rows_deleted;
        Ok(rows as u64)
    };
    Ok(LakeWriteExec::plan("MERGE", target.name, Box::pin(work)))
}

#[allow(clippy::too_many_arguments)]
fn merge_builder(
    name: &str,
    table: DeltaTable,
    target_ref: &TableReference,
    target_columns: &[String],
    state: Arc<SessionState>,
    source: datafusion::prelude::DataFrame,
    on: Expr,
    clauses: Vec<MergeIntoClause>,
) -> DfResult<deltalake::operations::merge::MergeBuilder> {
    let mut builder = table
        .merge(source, merge_qualified(on, target_ref)?)
        .with_source_alias(MERGE_SOURCE)
        .with_target_alias(MERGE_TARGET)
        .with_session_state(state);
    let delta = |error: deltalake::DeltaTableError| to_df(table_error(name, error));
    for clause in clauses {
        let MergeIntoClause { kind, predicate, action } = clause;
        let predicate = predicate.map(|p| merge_qualified(p, target_ref)).transpose()?;
        let by_target = kind.is_not_matched_by_target();
        builder = match (kind, action) {
            (MergeIntoClauseKind::Matched | MergeIntoClauseKind::NotMatchedBySource, MergeIntoAction::Update(sets)) => {
                let mut sets_qualified = Vec::with_capacity(sets.len());
                for (column, value) in sets {
                    sets_qualified.push((column, merge_qualified(value, target_ref)?));
                }
                let fill = move |mut update: deltalake::operations::merge::UpdateBuilder| {
                    if let Some(predicate) = predicate {
                        update = update.predicate(predicate);
                    }
                    for (column, value) in sets_qualified {
                        update = update.update(column, value);
                    }
                    update
                };
                if kind == MergeIntoClauseKind::Matched {
                    builder.when_matched_update(fill).map_err(delta)?
                } else {
                    builder.when_not_matched_by_source_update(fill).map_err(delta)?
                }
            }
            (MergeIntoClauseKind::Matched | MergeIntoClauseKind::NotMatchedBySource, MergeIntoAction::Delete) => {
                let fill = move |mut delete: deltalake::operations::merge::DeleteBuilder| {
                    if let Some(predicate) = predicate {
                        delete = delete.predicate(predicate);
                    }
                    delete
                };
                if kind == MergeIntoClauseKind::Matched {
                    builder.when_matched_delete(fill).map_err(delta)?
                } else {
                    builder.when_not_matched_by_source_delete(fill).map_err(delta)?
                }
            }
            (_, MergeIntoAction::Insert { columns, values }) if by_target => {
                let columns = if columns.is_empty() { target_columns.to_vec() } else { columns };
                if columns.len() != values.len() {
                    return Err(to_df(WsError::new(
                        sqlstate::SYNTAX_ERROR,
                        format!(
                            "INSERT has {} expressions for {} target columns in MERGE",
                            values.len(),
                            columns.len()
                        ),
                    )));
                }
                let mut sets = Vec::with_capacity(values.len());
                for (column, value) in columns.into_iter().zip(values) {
                    sets.push((column, merge_qualified(value, target_ref)?));
                }
                builder
                    .when_not_matched_insert(move |mut insert| {
                        if let Some(predicate) = predicate {
                            insert = insert.predicate(predicate);
                        }
                        for (column, value) in sets {
                            insert = insert.set(column, value);
                        }
                        insert
                    })
                    .map_err(delta)?
            }
            (kind, action) => {
                return Err(to_df(WsError::new(
                    sqlstate::SYNTAX_ERROR,
                    format!("MERGE cannot {} in a WHEN {kind:?} clause", merge_action_words(&action)),
                )));
            }
        };
    }
    Ok(builder)
}

fn merge_action_words(action: &MergeIntoAction) -> &'static str {
    match action {
        MergeIntoAction::Update(_) => "UPDATE",
        MergeIntoAction::Insert { .. } => "INSERT",
        MergeIntoAction::Delete => "DELETE",
    }
}

/// The assignments (UPDATE) and the filter conjuncts of a DELETE or UPDATE, read from
/// its analyzed, unoptimized input (`Projection` of the new values over `Filter` over the
/// target's scan), with column qualifiers stripped for the provider. The session hands
/// these to the table itself rather than through DataFusion's physical planner, which
/// reads them back from the *optimized* plan: a filter the optimizer proves never true
/// (`WHERE x > NULL`) is replaced by an empty relation there, and no filter read back
/// means every row.
pub fn dml_parts(input: &LogicalPlan, update: bool) -> WsResult<(Assignments, Vec<Expr>)> {
    let mut assignments = Vec::new();
    let mut filters = Vec::new();
    let mut node = input;
    if update {
        let LogicalPlan::Projection(projection) = node else {
            return Err(WsError::internal("an UPDATE's input is the projection of its new values"));
        };
        for expr in &projection.expr {
            let Expr::Alias(alias) = expr else { continue };
            let identity = matches!(alias.expr.as_ref(), Expr::Column(column) if column.name == alias.name);
            if !identity {
                assignments.push((alias.name.clone(), unqualified(alias.expr.as_ref().clone())?));
            }
        }
        node = projection.input.as_ref();
    }
    loop {
        match node {
            LogicalPlan::Filter(filter) => {
                for conjunct in datafusion::logical_expr::utils::split_conjunction(&filter.predicate) {
                    filters.push(unqualified(conjunct.clone())?);
                }
                node = filter.input.as_ref();
            }
            LogicalPlan::SubqueryAlias(alias) => node = alias.input.as_ref(),
            LogicalPlan::TableScan(scan) => {
                for filter in &scan.filters {
                    filters.push(unqualified(filter.clone())?);
                }
                return Ok((assignments, filters));
            }
            other => {
                return Err(WsError::unsupported(format!(
                    "a write whose input holds {} is not supported",
                    other.display()
                )));
            }
        }
    }
}

fn unqualified(expr: Expr) -> WsResult<Expr> {
    Ok(expr
        .transform(|expr| match expr {
            Expr::Column(column) if column.relation.is_some() => {
                Ok(Transformed::yes(Expr::Column(Column::new_unqualified(column.name))))
            }
            other => Ok(Transformed::no(other)),
        })?
        .data)
}

/// `EXPLAIN ANALYZE` runs its statement through DataFusion's physical planner, whose
/// filters for DELETE and UPDATE come from the optimized plan (see [`dml_parts`]):
/// refused for those two, which run only as statements of their own.
pub fn check_not_analyzed(plan: &LogicalPlan) -> WsResult<()> {
    let LogicalPlan::Analyze(analyze) = plan else {
        return Ok(());
    };
    let mut found = false;
    let _ = analyze.input.apply(|node| {
        if let LogicalPlan::Dml(dml) = node
            && matches!(dml.op, datafusion::logical_expr::WriteOp::Delete | datafusion::logical_expr::WriteOp::Update)
        {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    if found {
        return Err(WsError::unsupported(
            "EXPLAIN ANALYZE of DELETE or UPDATE is not supported; EXPLAIN shows the plan",
        ));
    }
    Ok(())
}

/// Refuses a DELETE or UPDATE whose input reads anything but the target table: DataFusion
/// hands the provider only the filters on the target's own columns, so a join (UPDATE ...
/// FROM) or a subquery (WHERE id IN (SELECT ...)) would be dropped and the write would
/// touch rows it should not. `input` is the statement's unoptimized input plan.
pub fn check_target_only(command: &str, input: &LogicalPlan) -> WsResult<()> {
    let mut scans = 0usize;
    let mut other = None;
    let walked = input.apply(|node| {
        match node {
            LogicalPlan::TableScan(_) => scans += 1,
            LogicalPlan::Projection(_) | LogicalPlan::Filter(_) | LogicalPlan::SubqueryAlias(_) => {}
            other_node => {
                other = Some(other_node.display().to_string());
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        let subquery = node.expressions().iter().any(|expr| {
            expr.exists(|e| {
                Ok(matches!(
                    e,
                    Expr::Exists(_)
                        | Expr::InSubquery(_)
                        | Expr::ScalarSubquery(_)
                        | Expr::SetComparison(_)
                        | Expr::OuterReferenceColumn(..)
                ))
            })
            .unwrap_or(true)
        });
        if subquery {
            other = Some("a subquery".to_string());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    if walked.is_err() || other.is_some() || scans != 1 {
        let what = other.unwrap_or_else(|| format!("{scans} tables"));
        return Err(WsError::unsupported(format!(
            "{command} that reads other relations is not supported yet (found {what}); \
             use MERGE INTO ... USING for a write that reads another relation"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int64Array;

    use crate::error::sqlstate;
    use crate::session::Session;

    async fn value(session: &mut Session, sql: &str) -> i64 {
        let results = session.run_collect(sql).await.unwrap();
        let batch = &results[0].batches[0];
        batch.column(0).as_any().downcast_ref::<Int64Array>().expect("a bigint").value(0)
    }

    /// Increments the counter `attempts` times, retrying on 40001; returns the commits
    /// that succeeded. Any error other than a serialization failure fails the test.
    async fn increments(mut session: Session, attempts: usize) -> usize {
        let mut committed = 0;
        for _ in 0..attempts {
            match session.run_collect("UPDATE counter SET n = n + 1 WHERE id = 1").await {
                Ok(results) => {
                    assert_eq!(results[0].tag.to_string(), "UPDATE 1");
                    committed += 1;
                }
                Err(error) => {
                    assert_eq!(error.code, sqlstate::SERIALIZATION_FAILURE, "{error}");
                    assert!(error.message.contains("retry"), "{}", error.message);
                }
            }
        }
        committed
    }

    /// Two sessions update the same row at once: each update either commits on top of
    /// the other's or fails with 40001; none is lost (the final value counts every commit).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_updates_commit_or_fail_with_40001_and_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let engine = crate::session::Engine::open(crate::config::Config::rooted_at(dir.path())).await.unwrap();
        let mut setup = engine.session();
        setup
            .run_collect("CREATE TABLE counter (id BIGINT, n BIGINT); INSERT INTO counter VALUES (1, 0), (2, 0)")
            .await
            .unwrap();
        const ATTEMPTS: usize = 12;
        let first = tokio::spawn(increments(engine.session(), ATTEMPTS));
        let second = tokio::spawn(increments(engine.session(), ATTEMPTS));
        let committed = first.await.unwrap() + second.await.unwrap();
        assert!(committed >= ATTEMPTS, "at least one session commits each round, got {committed}");
        assert_eq!(value(&mut setup, "SELECT n FROM counter WHERE id = 1").await, committed as i64);
        assert_eq!(value(&mut setup, "SELECT n FROM counter WHERE id = 2").await, 0);
        // Each commit is one Delta version after CREATE (0) and INSERT (1).
        assert_eq!(value(&mut setup, "SELECT count(*) FROM counter VERSION AS OF 1").await, 2);
    }

    /// VACUUM deletes the files OPTIMIZE replaced once told it may go under the table's
    /// retention; the current version still reads, an older one no longer can.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn vacuum_under_the_retention_once_told() {
        let dir = tempfile::tempdir().unwrap();
        let engine = crate::session::Engine::open(crate::config::Config::rooted_at(dir.path())).await.unwrap();
        let mut session = engine.session();
        session
            .run_collect(
                "CREATE TABLE t (a BIGINT); INSERT INTO t VALUES (1); INSERT INTO t VALUES (2);
                 INSERT INTO t VALUES (3); OPTIMIZE t",
            )
            .await
            .unwrap();
        let refused = session.run_collect("VACUUM t RETAIN 0 HOURS").await.unwrap_err();
        assert_eq!(refused.code, sqlstate::INVALID_PARAMETER_VALUE, "{refused}");
        assert!(refused.message.contains("168 hours"), "{}", refused.message);
        let dry = session
            .run_collect("SET watershed.vacuum_retention_check = off; VACUUM t RETAIN 0 HOURS DRY RUN")
            .await
            .unwrap();
        assert_eq!(dry[1].batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3, "the three replaced files");
        assert_eq!(value(&mut session, "SELECT count(*) FROM t VERSION AS OF 3").await, 3, "a dry run deletes nothing");
        let done = session.run_collect("VACUUM t RETAIN 0 HOURS").await.unwrap();
        assert_eq!(done[0].batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
        assert_eq!(value(&mut session, "SELECT sum(a) FROM t").await, 6);
        // (a count would come from the log's statistics; a sum reads the files)
        assert!(session.run_collect("SELECT sum(a) FROM t VERSION AS OF 3").await.is_err(), "its files are gone");
    }

    /// EXPLAIN plans the write and runs nothing; EXPLAIN ANALYZE runs a MERGE and refuses
    /// DELETE and UPDATE.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn explain_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let engine = crate::session::Engine::open(crate::config::Config::rooted_at(dir.path())).await.unwrap();
        let mut session = engine.session();
        session.run_collect("CREATE TABLE t (a BIGINT); INSERT INTO t VALUES (1), (2)").await.unwrap();
        let explained = session.run_collect("EXPLAIN DELETE FROM t WHERE a = 1").await.unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&explained[0].batches).unwrap().to_string();
        assert!(text.contains("LakeWriteExec: operation=DELETE, table=t"), "{text}");
        assert_eq!(value(&mut session, "SELECT count(*) FROM t").await, 2);
        let refused = session.run_collect("EXPLAIN ANALYZE DELETE FROM t WHERE a = 1").await.unwrap_err();
        assert_eq!(refused.code, sqlstate::FEATURE_NOT_SUPPORTED);
        assert_eq!(value(&mut session, "SELECT count(*) FROM t").await, 2);
        // A MERGE runs under EXPLAIN ANALYZE, as in PostgreSQL.
        session
            .run_collect(
                "EXPLAIN ANALYZE MERGE INTO t USING (SELECT 1 AS a) AS s ON t.a = s.a WHEN MATCHED THEN DELETE",
            )
            .await
            .unwrap();
        assert_eq!(value(&mut session, "SELECT count(*) FROM t").await, 1);
    }
}

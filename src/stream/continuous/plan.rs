//! From a view's SQL to something that runs incrementally: the analyzed DataFusion
//! `LogicalPlan` is cut at its aggregate into three parts, each planned once.
//!
//! ```text
//!   upper      stateless: projection, HAVING, joins with lake tables      (a Pipeline)
//!   aggregate  per open window: GroupValues + GroupsAccumulators          (WindowAggregate)
//!   input      stateless: the source, window assignment, filters, lookups (a Pipeline)
//! ```
//!
//! A [`Pipeline`] is an ordinary DataFusion physical plan whose leaves are slots
//! (slot.rs): the source's new rows go into the input's slot, the rows of closed windows
//! into the upper's. Lake tables the query joins are read once, at creation, into memory
//! (the lookup side), so a step never rereads the lake. A view without aggregate is one
//! pipeline from the source's new rows to view rows.
//!
//! What cannot run this way is refused at CREATE with SQLSTATE 0A000 and the reason:
//! joins of two sources, SESSION windows, ordered or grouping-set aggregates, LIMIT,
//! window functions (OVER), and aggregates over windows without EMIT ON UPDATE
//! when they have no `window_end` group key.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, TableReference};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::execution::SessionState;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, Projection, TableScan, TableScanBuilder};
use datafusion::physical_expr::aggregate::{AggregateFunctionExpr, LoweredAggregateBuilder};
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::{ExecutionPlan, collect};

use crate::error::{WsError, WsResult, sqlstate};
use crate::sql::windows::WINDOW_END;
use crate::stream::{Source, SourceTable};

use super::slot::{Slot, SlotTable};

/// Rows a lake table joined by a view may have: it is held in memory as the lookup side.
pub const LOOKUP_ROWS_MAX: usize = 10_000_000;

/// Table name of the slot that stands for the aggregate in the upper plan.
const AGGREGATE_SLOT: &str = "__aggregate";

/// When a view's rows are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Emit {
    /// Once per window, when the watermark passes its end.
    OnWindowClose,
    /// Current values of every group, refreshed each step (at least once a second).
    OnUpdate,
}

impl Emit {
    pub fn sql(self) -> &'static str {
        match self {
            Emit::OnWindowClose => "EMIT ON WINDOW CLOSE",
            Emit::OnUpdate => "EMIT ON UPDATE",
        }
    }
}

fn refuse(reason: impl Into<String>) -> WsError {
    WsError::new(sqlstate::FEATURE_NOT_SUPPORTED, format!("cannot maintain this view incrementally: {}", reason.into()))
}

/// A physical plan planned once and executed on each step over what its slots hold.
pub struct Pipeline {
    plan: Arc<dyn ExecutionPlan>,
    state: SessionState,
}

impl Pipeline {
    async fn new(logical: &LogicalPlan, state: &SessionState) -> WsResult<Pipeline> {
        let plan = state.create_physical_plan(logical).await?;
        Ok(Pipeline { plan, state: state.clone() })
    }

    /// Runs the plan over the slots' current batches.
    pub async fn run(&self) -> WsResult<Vec<RecordBatch>> {
        // Joins cache their build side per plan instance: start each run afresh.
        let plan = reset_plan_states(self.plan.clone())?;
        Ok(collect(plan, self.state.task_ctx()).await?)
    }

    pub fn schema(&self) -> SchemaRef {
        self.plan.schema()
    }
}

/// One aggregate of the view: how to feed it and how to make its accumulators.
pub struct AggregateSpec {
    pub expr: Arc<AggregateFunctionExpr>,
    pub filter: Option<Arc<dyn PhysicalExpr>>,
}

/// The aggregate part of a view.
pub struct AggregatePart {
    pub group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// Schema of the group columns (GroupValues are built on it).
    pub group_schema: SchemaRef,
    /// Which group column is `window_end` (None: one global group set, EMIT ON UPDATE).
    pub window_end: Option<usize>,
    pub aggregates: Vec<AggregateSpec>,
    /// Group columns then aggregate results: the schema of the upper pipeline's slot.
    pub output_schema: SchemaRef,
}

/// How a view joining two sources keeps and evaluates its windows.
#[derive(Debug, Clone, Copy)]
pub struct Buffered {
    /// Rows are kept while their event time is within this of the watermark.
    pub size_max_us: i64,
    /// Windows end on multiples of this: the query is evaluated when the watermark
    /// crosses one.
    pub step_min_us: i64,
    /// The view column whose value says which evaluation emits a row.
    pub window_end: usize,
}

/// A view's query, cut for incremental execution.
pub struct ContinuousPlan {
    /// The sources the view reads and the slots their rows go into. One, except for
    /// window joins (`buffered`).
    pub sources: Vec<(Arc<Source>, Arc<Slot>)>,
    /// Source rows to view rows (no aggregate), or to the aggregate's input.
    pub input: Pipeline,
    pub aggregate: Option<(AggregatePart, Arc<Slot>, Pipeline)>,
    pub schema: SchemaRef,
    pub emit: Emit,
    /// The aggregate groups by window_end (its windows close).
    pub aggregate_windowed: bool,
    /// Columns of the view that identify a row of an aggregate (its group keys as the
    /// view shows them; every column when they are not shown): EMIT ON UPDATE diffs by them.
    pub view_keys: Vec<usize>,
    /// Set for views joining sources: the whole query runs over the sources' rows of
    /// open windows whenever windows close, Flink's window join.
    pub buffered: Option<Buffered>,
    /// Lake tables the view joins, held in memory and refreshed on their commits.
    pub lookups: Vec<Lookup>,
    /// The state the pipelines run with (lookups are re-read with it).
    pub state: SessionState,
}

impl ContinuousPlan {
    /// `plan` is the analyzed (type-coerced) but not yet optimized plan of the query;
    /// `extents` the window size and step its window calls have (sql::windows).
    pub async fn new(
        plan: LogicalPlan,
        state: &SessionState,
        emit: Emit,
        extents: Result<Option<(i64, i64)>, String>,
    ) -> WsResult<ContinuousPlan> {
        check_supported(&plan)?;
        let schema = Arc::new(plan.schema().as_arrow().clone());
        if count_sources(&plan)? > 1 {
            return ContinuousPlan::window_join(plan, state, emit, extents, schema).await;
        }
        let (plan, aggregate_found) = cut_at_aggregate(plan)?;
        match aggregate_found {
            None => {
                let mut lookups = Vec::new();
                let (input, sources) = slot_sources(plan, state, &mut lookups).await?;
                let input = Pipeline::new(&input, state).await?;
                if emit == Emit::OnUpdate {
                    return Err(refuse("EMIT ON UPDATE needs an aggregate; a view without one emits each row once"));
                }
                let view_keys = (0..schema.fields().len()).collect();
                Ok(ContinuousPlan {
                    sources,
                    input,
                    aggregate: None,
                    schema,
                    emit,
                    aggregate_windowed: false,
                    view_keys,
                    buffered: None,
                    lookups,
                    state: state.clone(),
                })
            }
            Some((aggregate, upper_slot)) => {
                let upper = plan;
                let view_keys = view_keys(&upper, &aggregate);
                if contains_source(&upper)? {
                    return Err(refuse(
                        "a source is read above the aggregate (only one aggregation level over a source)",
                    ));
                }
                let mut lookups = Vec::new();
                let upper = lookups_in_memory(upper, state, &mut lookups).await?;
                let upper = Pipeline::new(&upper, state).await?;
                let input_logical = Arc::unwrap_or_clone(aggregate.input.clone());
                let (input_logical, sources) = slot_sources(input_logical, state, &mut lookups).await?;
                let source = &sources[0].0;
                let part = aggregate_part(&aggregate, &input_logical, state, emit)?;
                if part.window_end.is_some() && source.spec.event_time.is_none() {
                    return Err(refuse(format!(
                        "source \"{}\" has no WATERMARK, so its windows never close",
                        source.name()
                    )));
                }
                let input = Pipeline::new(&input_logical, state).await?;
                let aggregate_windowed = part.window_end.is_some();
                Ok(ContinuousPlan {
                    sources,
                    input,
                    aggregate: Some((part, upper_slot, upper)),
                    schema,
                    emit,
                    aggregate_windowed,
                    view_keys,
                    buffered: None,
                    lookups,
                    state: state.clone(),
                })
            }
        }
    }

    /// A view over several sources: only window joins, whose every window is evaluated
    /// once, when the watermark (the least of the sources') passes its end, over the
    /// sources' rows still within the largest window size.
    async fn window_join(
        plan: LogicalPlan,
        state: &SessionState,
        emit: Emit,
        extents: Result<Option<(i64, i64)>, String>,
        schema: SchemaRef,
    ) -> WsResult<ContinuousPlan> {
        let (size_max_us, step_min_us) = match extents {
            Ok(Some(extents)) => extents,
            Ok(None) => {
                return Err(refuse("it joins sources without windows; join them in windows (TUMBLE, HOP, CUMULATE)"));
            }
            Err(reason) => return Err(refuse(format!("it joins sources: {reason}"))),
        };
        if emit == Emit::OnUpdate {
            return Err(refuse("a window join emits each window once, on window close"));
        }
        let window_end = schema
            .index_of(WINDOW_END)
            .map_err(|_| refuse("a view joining sources must output window_end, which says when its rows are final"))?;
        let mut lookups = Vec::new();
        let (plan, sources) = slot_sources(plan, state, &mut lookups).await?;
        for (source, _) in &sources {
            if source.spec.event_time.is_none() {
                return Err(refuse(format!(
                    "source \"{}\" has no WATERMARK, so its windows never close",
                    source.name()
                )));
            }
        }
        let input = Pipeline::new(&plan, state).await?;
        let view_keys = (0..schema.fields().len()).collect();
        Ok(ContinuousPlan {
            sources,
            input,
            aggregate: None,
            schema,
            emit,
            aggregate_windowed: true,
            view_keys,
            buffered: Some(Buffered { size_max_us, step_min_us: step_min_us.max(1), window_end }),
            lookups,
            state: state.clone(),
        })
    }
}

/// The same scan (name, projection, filters, fetch) over another table.
fn rescan(
    scan: &TableScan,
    source: Arc<dyn datafusion::logical_expr::TableSource>,
) -> datafusion::error::Result<TableScan> {
    TableScanBuilder::new(scan.table_name.clone(), source)
        .with_projection(scan.projection.clone())
        .with_filters(scan.filters.clone())
        .with_fetch(scan.fetch)
        .build()
}

fn count_sources(plan: &LogicalPlan) -> WsResult<usize> {
    let mut count = 0;
    plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && source_of(scan).is_some()
        {
            count += 1;
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(count)
}

/// The emit mode of a view that does not say: an aggregate over a source without
/// window_end among its keys has no window to close, so it emits on update; windowed
/// aggregates and plain pipelines emit final rows once.
pub fn default_emit(plan: &LogicalPlan) -> Emit {
    let mut emit = Emit::OnWindowClose;
    let _ = plan.apply(|node| {
        let LogicalPlan::Aggregate(aggregate) = node else {
            return Ok(TreeNodeRecursion::Continue);
        };
        if !contains_source(&aggregate.input).unwrap_or(false) {
            return Ok(TreeNodeRecursion::Jump);
        }
        let windowed =
            aggregate.group_expr.iter().any(|expr| matches!(expr, Expr::Column(column) if column.name == WINDOW_END));
        if !windowed {
            emit = Emit::OnUpdate;
        }
        Ok(TreeNodeRecursion::Stop)
    });
    emit
}

/// Which view columns are the aggregate's group keys: the first projection from the top
/// names them as columns of the aggregate's output.
fn view_keys(upper: &LogicalPlan, aggregate: &Aggregate) -> Vec<usize> {
    let groups = aggregate.group_expr.len();
    let all: Vec<usize> = (0..upper.schema().fields().len()).collect();
    let mut node = upper;
    loop {
        match node {
            LogicalPlan::Projection(projection) => {
                if matches!(projection.input.as_ref(), LogicalPlan::TableScan(scan) if scan.table_name.table() == AGGREGATE_SLOT)
                {
                    return (0..groups.min(all.len())).collect();
                }
                let keys: Vec<usize> = projection
                    .expr
                    .iter()
                    .enumerate()
                    .filter_map(|(i, expr)| {
                        let inner = match expr {
                            Expr::Alias(alias) => alias.expr.as_ref(),
                            other => other,
                        };
                        let Expr::Column(column) = inner else { return None };
                        let index = aggregate.schema.index_of_column(column).ok()?;
                        (index < groups).then_some(i)
                    })
                    .collect();
                return if keys.is_empty() { all } else { keys };
            }
            LogicalPlan::Filter(filter) => node = filter.input.as_ref(),
            LogicalPlan::Sort(sort) => node = sort.input.as_ref(),
            LogicalPlan::SubqueryAlias(alias) => node = alias.input.as_ref(),
            _ => return all,
        }
    }
}

/// Nodes no part can run incrementally, wherever they are.
fn check_supported(plan: &LogicalPlan) -> WsResult<()> {
    let mut refusal = None;
    plan.apply(|node| {
        let reason = match node {
            LogicalPlan::Limit(_) => Some("LIMIT keeps no meaning over an unbounded stream".to_string()),
            LogicalPlan::Window(_) => Some("window functions (OVER) are not maintained incrementally".into()),
            LogicalPlan::RecursiveQuery(_) => Some("recursive queries".into()),
            LogicalPlan::Extension(ext) if ext.node.name() == "SessionWindow" => {
                Some("SESSION windows in views are not supported yet; use them in ad-hoc queries".into())
            }
            _ => None,
        };
        if let Some(reason) = reason {
            refusal = Some(reason);
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    match refusal {
        Some(reason) => Err(refuse(reason)),
        None => Ok(()),
    }
}

fn source_of(scan: &TableScan) -> Option<Arc<Source>> {
    let provider = source_as_provider(&scan.source).ok()?;
    provider.downcast_ref::<SourceTable>().map(|table| table.source().clone())
}

fn contains_source(plan: &LogicalPlan) -> WsResult<bool> {
    let mut found = false;
    plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && source_of(scan).is_some()
        {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(found)
}

/// The aggregate cut out of a view's plan and the slot that stands for it.
type CutAggregate = (Aggregate, Arc<Slot>);

/// Finds the topmost aggregate whose subtree reads a source and replaces it by a slot
/// with its schema. Returns the rewritten plan, and the aggregate with its slot.
fn cut_at_aggregate(plan: LogicalPlan) -> WsResult<(LogicalPlan, Option<CutAggregate>)> {
    let mut cut: Option<(Aggregate, Arc<Slot>)> = None;
    let mut error = None;
    let rewritten = plan
        .transform_down(|node| {
            if cut.is_some() || error.is_some() {
                return Ok(Transformed::new(node, false, TreeNodeRecursion::Jump));
            }
            let LogicalPlan::Aggregate(aggregate) = node else {
                return Ok(Transformed::no(node));
            };
            match contains_source(&aggregate.input) {
                Ok(false) => {
                    return Ok(Transformed::new(LogicalPlan::Aggregate(aggregate), false, TreeNodeRecursion::Jump));
                }
                Ok(true) => {}
                Err(e) => {
                    error = Some(e);
                    return Ok(Transformed::new(LogicalPlan::Aggregate(aggregate), false, TreeNodeRecursion::Stop));
                }
            }
            match slot_standing_for(aggregate.schema.as_ref()) {
                Ok((replacement, slot)) => {
                    cut = Some((aggregate, slot));
                    Ok(Transformed::new(replacement, true, TreeNodeRecursion::Jump))
                }
                Err(e) => {
                    error = Some(e);
                    Ok(Transformed::new(LogicalPlan::Aggregate(aggregate), false, TreeNodeRecursion::Stop))
                }
            }
        })?
        .data;
    if let Some(error) = error {
        return Err(error);
    }
    Ok((rewritten, cut))
}

/// A scan of a new slot, projected to carry exactly `schema`'s (qualified) columns, so
/// that the plan above it resolves its column references unchanged.
fn slot_standing_for(schema: &DFSchema) -> WsResult<(LogicalPlan, Arc<Slot>)> {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| Field::new(format!("c{i}"), field.data_type().clone(), true))
        .collect();
    let slot_schema = Arc::new(Schema::new(fields));
    let (table, slot) = SlotTable::new(slot_schema.clone());
    let scan =
        LogicalPlan::TableScan(TableScanBuilder::new(AGGREGATE_SLOT, provider_as_source(Arc::new(table))).build()?);
    let exprs = schema
        .iter()
        .enumerate()
        .map(|(i, (qualifier, field))| {
            Expr::Column(datafusion::common::Column::new(Some(AGGREGATE_SLOT), format!("c{i}")))
                .alias_qualified(qualifier.cloned(), field.name())
        })
        .collect();
    let projection = LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(scan))?);
    Ok((projection, slot))
}

/// Replaces each source scan with a slot of the source's schema and every other table
/// scan with an in-memory copy. A source scanned twice (a self-join) gets one slot.
async fn slot_sources(
    plan: LogicalPlan,
    state: &SessionState,
    lookups: &mut Vec<Lookup>,
) -> WsResult<(LogicalPlan, Vec<(Arc<Source>, Arc<Slot>)>)> {
    let mut found: Vec<(Arc<Source>, Arc<Slot>, Arc<SlotTable>)> = Vec::new();
    let rewritten = plan
        .transform_up(|node| {
            let LogicalPlan::TableScan(scan) = node else {
                return Ok(Transformed::no(node));
            };
            let Some(source) = source_of(&scan) else {
                return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
            };
            let table = match found.iter().find(|(s, _, _)| Arc::ptr_eq(s, &source)) {
                Some((_, _, table)) => table.clone(),
                None => {
                    let (table, slot) = SlotTable::new(source.spec.schema.clone());
                    let table = Arc::new(table);
                    found.push((source, slot, table.clone()));
                    table
                }
            };
            let replaced = rescan(&scan, provider_as_source(table))?;
            Ok(Transformed::yes(LogicalPlan::TableScan(replaced)))
        })?
        .data;
    if found.is_empty() {
        return Err(refuse("it reads no source (a view over lake tables alone is a plain VIEW or CREATE TABLE AS)"));
    }
    let rewritten = lookups_in_memory(rewritten, state, lookups).await?;
    Ok((rewritten, found.into_iter().map(|(source, slot, _)| (source, slot)).collect()))
}

/// A lake table (or any other non-source relation) a view joins: held in memory in a
/// slot, and read again when the table has a new version (`refresh`).
pub struct Lookup {
    pub name: TableReference,
    provider: Arc<dyn TableProvider>,
    slot: Arc<Slot>,
    /// Delta version the slot holds (None: not a lake table, read once).
    version: Option<u64>,
}

impl Lookup {
    async fn read(
        name: &TableReference,
        provider: &Arc<dyn TableProvider>,
        state: &SessionState,
    ) -> WsResult<Vec<RecordBatch>> {
        let scan = provider.scan(state, None, &[], None).await?;
        let batches = collect(scan, state.task_ctx()).await?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows > LOOKUP_ROWS_MAX {
            return Err(refuse(format!(
                "lake table {name} has {rows} rows; a view joins lake tables of at most {LOOKUP_ROWS_MAX} rows, held in memory"
            )));
        }
        Ok(batches)
    }

    /// Reads the table again if it has committed since it was read (its snapshot is
    /// refreshed within the lake staleness bound). True when the rows changed.
    pub async fn refresh(&mut self, state: &SessionState) -> WsResult<bool> {
        let Some(lake) = self.provider.downcast_ref::<crate::lake::LakeTable>() else {
            return Ok(false);
        };
        let version = lake.version().await?;
        if Some(version) == self.version {
            return Ok(false);
        }
        let batches = Lookup::read(&self.name, &self.provider, state).await?;
        self.slot.set(batches);
        self.version = Some(version);
        Ok(true)
    }
}

/// Puts every non-source table the plan scans into a lookup slot, read now, so that
/// steps do not reread the lake; `refresh` follows the table's commits.
async fn lookups_in_memory(
    plan: LogicalPlan,
    state: &SessionState,
    lookups: &mut Vec<Lookup>,
) -> WsResult<LogicalPlan> {
    let mut scans = Vec::new();
    plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && source_of(scan).is_none()
            && source_as_provider(&scan.source).is_ok_and(|p| !p.is::<SlotTable>())
        {
            scans.push(scan.table_name.clone());
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let mut tables: Vec<(TableReference, Arc<SlotTable>)> = Vec::new();
    for name in scans {
        if tables.iter().any(|(n, _)| n == &name) {
            continue;
        }
        let provider = state
            .schema_for_ref(name.clone())?
            .table(name.table())
            .await?
            .ok_or_else(|| WsError::internal(format!("table {name} vanished while planning")))?;
        let version = match provider.downcast_ref::<crate::lake::LakeTable>() {
            Some(lake) => Some(lake.version().await?),
            None => None,
        };
        let batches = Lookup::read(&name, &provider, state).await?;
        let (table, slot) = SlotTable::new(provider.schema());
        slot.set(batches);
        tables.push((name.clone(), Arc::new(table)));
        lookups.push(Lookup { name, provider, slot, version });
    }
    let rewritten = plan
        .transform_up(|node| {
            let LogicalPlan::TableScan(scan) = node else {
                return Ok(Transformed::no(node));
            };
            let Some((_, table)) = tables.iter().find(|(n, _)| n == &scan.table_name) else {
                return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
            };
            if source_as_provider(&scan.source).is_ok_and(|p| p.is::<SlotTable>()) {
                return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
            }
            let replaced = rescan(&scan, provider_as_source(table.clone()))?;
            Ok(Transformed::yes(LogicalPlan::TableScan(replaced)))
        })?
        .data;
    Ok(rewritten)
}

fn aggregate_part(
    aggregate: &Aggregate,
    input: &LogicalPlan,
    state: &SessionState,
    emit: Emit,
) -> WsResult<AggregatePart> {
    let input_schema = input.schema();
    let physical_input = input_schema.as_arrow();
    let props = state.execution_props();
    let planning = PhysicalPlanningContext::default();
    let mut group_exprs = Vec::new();
    let mut group_fields = Vec::new();
    let mut window_end = None;
    for (i, expr) in aggregate.group_expr.iter().enumerate() {
        if matches!(expr, Expr::GroupingSet(_)) {
            return Err(refuse("GROUPING SETS, CUBE and ROLLUP"));
        }
        if let Expr::Column(column) = expr
            && column.name == WINDOW_END
        {
            window_end.get_or_insert(i);
        }
        let field = aggregate.schema.field(i);
        group_fields.push(Field::new(format!("g{i}"), field.data_type().clone(), true));
        group_exprs.push(create_physical_expr(expr, input_schema, props, &planning)?);
    }
    if window_end.is_none() && emit == Emit::OnWindowClose {
        return Err(refuse(
            "an aggregate without window_end in GROUP BY has no window to close; group by window_start, window_end \
             of a TUMBLE/HOP/CUMULATE, or add EMIT ON UPDATE",
        ));
    }
    let mut aggregates = Vec::new();
    for expr in &aggregate.aggr_expr {
        let inner = match expr {
            Expr::Alias(alias) => alias.expr.as_ref(),
            other => other,
        };
        if let Expr::AggregateFunction(AggregateFunction { params, .. }) = inner
            && !params.order_by.is_empty()
        {
            return Err(refuse("ordered aggregates (ORDER BY inside an aggregate)"));
        }
        let lowered = LoweredAggregateBuilder::new(expr, input_schema, physical_input, props, &planning).build()?;
        aggregates.push(AggregateSpec { expr: lowered.aggregate, filter: lowered.filter });
    }
    let output_fields: Vec<Field> = aggregate
        .schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| Field::new(format!("c{i}"), field.data_type().clone(), true))
        .collect();
    if output_fields.iter().any(|f| matches!(f.data_type(), DataType::Null)) {
        return Err(refuse("an aggregate of NULL type"));
    }
    Ok(AggregatePart {
        group_exprs,
        group_schema: Arc::new(Schema::new(group_fields)),
        window_end,
        aggregates,
        output_schema: Arc::new(Schema::new(output_fields)),
    })
}

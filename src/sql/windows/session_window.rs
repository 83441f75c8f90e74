//! SESSION windows: the logical node, the analyzer rule that gives it its keys, and the
//! streaming operator that runs it.
//!
//! Sessions are per the GROUP BY keys of the query's aggregate over the SESSION call, so
//! the relation planner cannot know them: it plans a [`SessionWindow`] with unknown keys and
//! the [`SessionKeys`] analyzer rule, which sees the whole plan, traces the aggregate's
//! group columns down through projections, aliases, filters and joins to the node. Group
//! columns that reach the node as input columns become its keys; `window_start` and
//! `window_end` are not keys. Without an aggregate above, sessions span the whole relation.
//! Keys given explicitly (`SESSION(t, ts, gap, DESCRIPTOR(k, ...))`) are kept as they are.
//!
//! [`SessionWindowExec`] asks DataFusion for input hash-partitioned by the keys and sorted
//! by (keys, time) (DataFusion's sort spills under memory pressure), then scans gaps in one
//! pass. It holds back only the rows of the session still open, counted against the query's
//! memory pool: a session larger than the pool fails the query with 53200 rather than
//! growing without bound.

use std::cmp::Ordering;
use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::buffer::ScalarBuffer;
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::compute::{filter_record_batch, is_not_null};
use datafusion::arrow::datatypes::{Field, SchemaRef};
use datafusion::arrow::row::{OwnedRow, RowConverter, Rows, SortField};
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, DFSchemaRef, ExprSchema, Result as DfResult, internal_err};
use datafusion::config::ConfigOptions;
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_expr::{EquivalenceProperties, LexRequirement, OrderingRequirements, PhysicalSortRequirement};
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::expressions::Column as PhysicalColumn;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties,
    InputDistributionRequirements, PhysicalExpr, PlanProperties, ReplaceChildrenOptions,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures::StreamExt;

use super::assign::{timestamp_array, timestamp_values};
use super::{WINDOW_END, WINDOW_START, fail};
use crate::error::sqlstate;

/// `SESSION(input, time, gap)`: every input row plus the bounds of its session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionWindow {
    input: LogicalPlan,
    time: Column,
    /// In the time column's unit; positive.
    gap: i64,
    /// `None` until [`SessionKeys`] has looked for a GROUP BY above.
    keys: Option<Vec<Column>>,
    schema: DFSchemaRef,
}

impl SessionWindow {
    pub fn try_new(input: LogicalPlan, time: Column, gap: i64) -> DfResult<SessionWindow> {
        let schema = output_schema(&input, &time)?;
        Ok(SessionWindow { input, time, gap, keys: None, schema })
    }

    /// Sessions per these keys, whatever the query groups by.
    pub fn with_keys(self, keys: Vec<Column>) -> SessionWindow {
        SessionWindow { keys: Some(keys), ..self }
    }
}

fn output_schema(input: &LogicalPlan, time: &Column) -> DfResult<DFSchemaRef> {
    let time_type = input.schema().field_from_column(time)?.data_type().clone();
    let mut fields: Vec<_> =
        input.schema().iter().map(|(qualifier, field)| (qualifier.cloned(), field.clone())).collect();
    fields.push((None, Arc::new(Field::new(WINDOW_START, time_type.clone(), false))));
    fields.push((None, Arc::new(Field::new(WINDOW_END, time_type, false))));
    Ok(Arc::new(DFSchema::new_with_metadata(fields, DFSchema::metadata(input.schema()).clone())?))
}

impl PartialOrd for SessionWindow {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        // The schema follows from the rest.
        match self.input.partial_cmp(&other.input)? {
            Ordering::Equal => {}
            unequal => return Some(unequal),
        }
        Some((&self.time, self.gap, &self.keys).cmp(&(&other.time, other.gap, &other.keys)))
    }
}

impl UserDefinedLogicalNodeCore for SessionWindow {
    fn name(&self) -> &str {
        "SessionWindow"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        let mut exprs = vec![Expr::Column(self.time.clone())];
        exprs.extend(self.keys.iter().flatten().cloned().map(Expr::Column));
        exprs
    }

    /// A filter on a key drops whole keys, which leaves the other keys' sessions as they
    /// are, so it may go below; any other filter would change the sessions.
    fn prevent_predicate_push_down_columns(&self) -> HashSet<String> {
        let keys: HashSet<&str> = self.keys.iter().flatten().map(|key| key.name.as_str()).collect();
        self.schema
            .fields()
            .iter()
            .map(|field| field.name().clone())
            .filter(|name| !keys.contains(name.as_str()))
            .collect()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SessionWindow: time={}, gap={}, keys=", self.time, self.gap)?;
        match &self.keys {
            None => write!(f, "<from GROUP BY>"),
            Some(keys) => {
                let names: Vec<String> = keys.iter().map(ToString::to_string).collect();
                write!(f, "[{}]", names.join(", "))
            }
        }
    }

    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> DfResult<Self> {
        let (Some(input), true) = (inputs.pop(), inputs.is_empty()) else {
            return internal_err!("SessionWindow has one input");
        };
        let mut columns = exprs.into_iter().map(|expr| match expr {
            Expr::Column(column) => Ok(column),
            other => internal_err!("SessionWindow expressions are columns, got {other}"),
        });
        let Some(time) = columns.next().transpose()? else {
            return internal_err!("SessionWindow needs its time column");
        };
        let keys = match self.keys {
            Some(_) => Some(columns.collect::<DfResult<Vec<_>>>()?),
            None => None,
        };
        let schema = output_schema(&input, &time)?;
        Ok(SessionWindow { input, time, gap: self.gap, keys, schema })
    }

    fn necessary_children_exprs(&self, output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        let input_schema = self.input.schema();
        let width = input_schema.fields().len();
        let mut needed: Vec<usize> = output_columns.iter().copied().filter(|&i| i < width).collect();
        for column in std::iter::once(&self.time).chain(self.keys.iter().flatten()) {
            needed.push(input_schema.index_of_column(column).ok()?);
        }
        needed.sort_unstable();
        needed.dedup();
        Some(vec![needed])
    }
}

/// Fills in the keys of every [`SessionWindow`] from the GROUP BY of the aggregate above it.
#[derive(Debug, Default)]
pub struct SessionKeys;

impl AnalyzerRule for SessionKeys {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        let mut found = false;
        plan.apply_with_subqueries(|node| {
            found = is_session(node);
            Ok(if found { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
        })?;
        if !found {
            return Ok(plan);
        }
        resolve(plan, None)
    }

    fn name(&self) -> &str {
        "session_window_keys"
    }
}

fn is_session(plan: &LogicalPlan) -> bool {
    matches!(plan, LogicalPlan::Extension(ext) if ext.node.as_any().is::<SessionWindow>())
}

/// A group column as seen at some node: `plain` when it is the column itself, not a part
/// of a larger expression (only plain columns can be session keys).
#[derive(Debug, Clone)]
struct Demand {
    column: Column,
    plain: bool,
}

fn group_demand(group_exprs: &[Expr]) -> Vec<Demand> {
    let mut demand = Vec::new();
    for expr in group_exprs {
        let exprs = match expr {
            Expr::GroupingSet(set) => set.distinct_expr().into_iter().cloned().collect(),
            other => vec![other.clone()],
        };
        for expr in exprs {
            match expr.unalias_nested().data {
                Expr::Column(column) => demand.push(Demand { column, plain: true }),
                other => {
                    demand.extend(other.column_refs().into_iter().map(|c| Demand { column: c.clone(), plain: false }))
                }
            }
        }
    }
    demand
}

/// Rewrites `plan` top-down; `demand` holds the group columns of the nearest aggregate
/// above, in terms of `plan`'s output.
fn resolve(plan: LogicalPlan, demand: Option<Vec<Demand>>) -> DfResult<LogicalPlan> {
    let plan = plan.map_subqueries(|subquery| Ok(Transformed::yes(resolve(subquery, None)?)))?.data;
    match plan {
        LogicalPlan::Aggregate(aggregate) => {
            let demand = group_demand(&aggregate.group_expr);
            let plan = LogicalPlan::Aggregate(aggregate);
            map_children(plan, |_| Some(demand.clone()))
        }
        LogicalPlan::Extension(extension) if extension.node.as_any().is::<SessionWindow>() => {
            let window = extension.node.as_any().downcast_ref::<SessionWindow>().expect("checked");
            let mut window = window.clone();
            if window.keys.is_none() {
                window.keys = Some(session_keys(&window, demand.as_deref().unwrap_or_default())?);
            }
            window.input = resolve(window.input, None)?;
            Ok(LogicalPlan::Extension(Extension { node: Arc::new(window) }))
        }
        LogicalPlan::Projection(projection) => {
            let below = demand.map(|demand| {
                let mut below = Vec::new();
                for Demand { column, plain } in demand {
                    let Ok(index) = projection.schema.index_of_column(&column) else { continue };
                    match projection.expr[index].clone().unalias_nested().data {
                        Expr::Column(inner) => below.push(Demand { column: inner, plain }),
                        other => below.extend(
                            other.column_refs().into_iter().map(|c| Demand { column: c.clone(), plain: false }),
                        ),
                    }
                }
                below
            });
            map_children(LogicalPlan::Projection(projection), |_| below.clone())
        }
        LogicalPlan::SubqueryAlias(alias) => {
            let below = demand.map(|demand| {
                demand
                    .into_iter()
                    .filter_map(|Demand { column, plain }| {
                        let index = alias.schema.index_of_column(&column).ok()?;
                        let column = Column::from(alias.input.schema().qualified_field(index));
                        Some(Demand { column, plain })
                    })
                    .collect::<Vec<_>>()
            });
            map_children(LogicalPlan::SubqueryAlias(alias), |_| below.clone())
        }
        plan @ (LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::Repartition(_)
        | LogicalPlan::Join(_)) => {
            // Joins pass each side the group columns that are its own; the others keep
            // their columns unchanged.
            map_children(plan, |child| {
                demand
                    .as_ref()
                    .map(|demand| demand.iter().filter(|d| child.schema().has_column(&d.column)).cloned().collect())
            })
        }
        other => map_children(other, |_| None),
    }
}

fn map_children(plan: LogicalPlan, demand_of: impl Fn(&LogicalPlan) -> Option<Vec<Demand>>) -> DfResult<LogicalPlan> {
    Ok(plan
        .map_children(|child| {
            let demand = demand_of(&child);
            Ok(Transformed::yes(resolve(child, demand)?))
        })?
        .data)
}

fn session_keys(window: &SessionWindow, demand: &[Demand]) -> DfResult<Vec<Column>> {
    let width = window.input.schema().fields().len();
    let mut keys: Vec<Column> = Vec::new();
    for Demand { column, plain } in demand {
        let Ok(index) = window.schema.index_of_column(column) else { continue };
        if index >= width {
            continue; // window_start / window_end
        }
        if !plain {
            return Err(fail(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "SESSION keys are the plain columns of the GROUP BY; group by \"{}\" itself, not an expression of it",
                    column.name
                ),
            ));
        }
        let key = Column::from(window.input.schema().qualified_field(index));
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// The session's query planner: DataFusion's, plus [`SessionWindowExec`] for the
/// [`SessionWindow`] node.
#[derive(Debug, Default)]
pub struct WindowQueryPlanner;

#[async_trait]
impl QueryPlanner for WindowQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(SessionWindowPlanner)])
            .create_physical_plan(logical_plan, session)
            .await
    }
}

#[derive(Debug)]
struct SessionWindowPlanner;

#[async_trait]
impl ExtensionPlanner for SessionWindowPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn Session,
        _planning_ctx: &PhysicalPlanningContext,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        let Some(window) = node.as_any().downcast_ref::<SessionWindow>() else {
            return Ok(None);
        };
        let ([logical], [physical]) = (logical_inputs, physical_inputs) else {
            return internal_err!("SessionWindow has one input");
        };
        let schema = logical.schema();
        let time = schema.index_of_column(&window.time)?;
        let keys = window.keys.iter().flatten().map(|key| schema.index_of_column(key)).collect::<DfResult<Vec<_>>>()?;
        let output = Arc::new(window.schema.as_arrow().clone());
        Ok(Some(Arc::new(SessionWindowExec::new(physical.clone(), time, keys, window.gap, output))))
    }
}

/// Streams session bounds over input sorted by (keys, time) within each partition.
#[derive(Debug, Clone)]
pub struct SessionWindowExec {
    input: Arc<dyn ExecutionPlan>,
    time: usize,
    keys: Vec<usize>,
    gap: i64,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl SessionWindowExec {
    fn new(input: Arc<dyn ExecutionPlan>, time: usize, keys: Vec<usize>, gap: i64, schema: SchemaRef) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            input.output_partitioning().clone(),
            EmissionType::Incremental,
            input.boundedness(),
        ));
        SessionWindowExec { input, time, keys, gap, schema, properties, metrics: ExecutionPlanMetricsSet::new() }
    }

    fn column(&self, index: usize) -> Arc<dyn PhysicalExpr> {
        let name = self.input.schema().field(index).name().clone();
        Arc::new(PhysicalColumn::new(&name, index))
    }
}

impl DisplayAs for SessionWindowExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let input = self.input.schema();
        let keys: Vec<&str> = self.keys.iter().map(|&k| input.field(k).name().as_str()).collect();
        write!(
            f,
            "SessionWindowExec: time={}, gap={}, keys=[{}]",
            input.field(self.time).name(),
            self.gap,
            keys.join(", ")
        )
    }
}

impl ExecutionPlan for SessionWindowExec {
    fn name(&self) -> &'static str {
        "SessionWindowExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        self.input_distribution_requirements().into_per_child()
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        // Sessions of different keys are independent, so keys can be spread over partitions.
        let distribution = if self.keys.is_empty() {
            Distribution::SinglePartition
        } else {
            Distribution::KeyPartitioned(self.keys.iter().map(|&k| self.column(k)).collect())
        };
        InputDistributionRequirements::new(vec![distribution])
    }

    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        let ascending = SortOptions { descending: false, nulls_first: true };
        let requirement = self
            .keys
            .iter()
            .chain(std::iter::once(&self.time))
            .map(|&index| PhysicalSortRequirement::new(self.column(index), Some(ascending)));
        vec![LexRequirement::new(requirement).map(OrderingRequirements::new)]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![!self.keys.is_empty()]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        for index in std::iter::once(self.time).chain(self.keys.iter().copied()) {
            if f(&self.column(index))? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let (Some(input), true) = (children.pop(), children.is_empty()) else {
            return internal_err!("SessionWindowExec has one input");
        };
        Ok(Arc::new(SessionWindowExec::new(input, self.time, self.keys.clone(), self.gap, self.schema.clone())))
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context.clone())?;
        let reservation =
            MemoryConsumer::new(format!("SessionWindowExec[{partition}]")).register(context.memory_pool());
        let converter = if self.keys.is_empty() {
            None
        } else {
            let fields = self.keys.iter().map(|&k| SortField::new(self.input.schema().field(k).data_type().clone()));
            Some(RowConverter::new(fields.collect())?)
        };
        let scan = GapScan {
            schema: self.schema.clone(),
            time: self.time,
            keys: self.keys.clone(),
            gap: self.gap,
            converter,
            open: None,
            pending: Vec::new(),
            reservation,
            ready: VecDeque::new(),
        };
        let metrics = BaselineMetrics::new(&self.metrics, partition);
        let stream = futures::stream::try_unfold((input, scan, false), move |(mut input, mut scan, done)| {
            let metrics = metrics.clone();
            async move {
                let mut done = done;
                loop {
                    if let Some(batch) = scan.ready.pop_front() {
                        metrics.record_output(batch.num_rows());
                        return Ok(Some((batch, (input, scan, done))));
                    }
                    if done {
                        metrics.done();
                        return Ok(None);
                    }
                    match input.next().await {
                        Some(batch) => {
                            let _timer = metrics.elapsed_compute().timer();
                            scan.push(batch?)?;
                        }
                        None => {
                            scan.finish()?;
                            done = true;
                        }
                    }
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// The session still open at the end of the rows seen so far.
struct OpenSession {
    start: i64,
    last: i64,
    key: Option<OwnedRow>,
}

/// The gap scan of one partition.
struct GapScan {
    schema: SchemaRef,
    time: usize,
    keys: Vec<usize>,
    gap: i64,
    converter: Option<RowConverter>,
    open: Option<OpenSession>,
    /// Rows of the open session from earlier batches, waiting for its end.
    pending: Vec<RecordBatch>,
    reservation: MemoryReservation,
    ready: VecDeque<RecordBatch>,
}

impl GapScan {
    fn push(&mut self, batch: RecordBatch) -> DfResult<()> {
        let batch = if batch.column(self.time).null_count() > 0 {
            filter_record_batch(&batch, &is_not_null(batch.column(self.time))?)?
        } else {
            batch
        };
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let key_rows = match &self.converter {
            Some(converter) => {
                let columns: Vec<ArrayRef> = self.keys.iter().map(|&k| batch.column(k).clone()).collect();
                Some(converter.convert_columns(&columns)?)
            }
            None => None,
        };
        let (times, _) = timestamp_values(batch.column(self.time).as_ref())?;
        let starts = session_starts(times, key_rows.as_ref(), self.open.as_ref(), self.gap);
        let Some(&last_start) = starts.last() else {
            // The whole batch continues the open session.
            let open = self.open.as_mut().expect("a first row with no open session starts one");
            open.last = times[rows - 1];
            if let Some(key_rows) = &key_rows {
                open.key = Some(key_rows.row(rows - 1).owned());
            }
            self.pending.push(batch);
            return self.reserve();
        };
        // Rows before the first start end the open session.
        if let Some(open) = self.open.take() {
            let last = if starts[0] > 0 { times[starts[0] - 1] } else { open.last };
            let end = last.saturating_add(self.gap);
            for pending in std::mem::take(&mut self.pending) {
                let rows = pending.num_rows();
                let batch = self.with_bounds(&pending, vec![open.start; rows], vec![end; rows])?;
                self.ready.push_back(batch);
            }
            if starts[0] > 0 {
                self.emit_closed(&batch, times, open.start, &starts)?;
            }
        }
        if starts.len() > 1 || starts[0] > 0 {
            self.emit_segments(&batch, times, &starts)?;
        }
        self.open = Some(OpenSession {
            start: times[last_start],
            last: times[rows - 1],
            key: key_rows.as_ref().map(|k| k.row(rows - 1).owned()),
        });
        self.pending = vec![batch.slice(last_start, rows - last_start)];
        self.reserve()
    }

    /// Emits rows `0..starts[0]`, the tail of the session that was open before the batch.
    fn emit_closed(&mut self, batch: &RecordBatch, times: &[i64], start: i64, starts: &[usize]) -> DfResult<()> {
        let rows = starts[0];
        let end = times[rows - 1].saturating_add(self.gap);
        let closed = self.with_bounds(&batch.slice(0, rows), vec![start; rows], vec![end; rows])?;
        self.ready.push_back(closed);
        Ok(())
    }

    /// Emits the sessions that both start and end inside the batch: rows
    /// `starts[0]..starts[last]`.
    fn emit_segments(&mut self, batch: &RecordBatch, times: &[i64], starts: &[usize]) -> DfResult<()> {
        let first = starts[0];
        let last = starts[starts.len() - 1];
        if last == first {
            return Ok(());
        }
        let mut window_starts = Vec::with_capacity(last - first);
        let mut window_ends = Vec::with_capacity(last - first);
        for pair in starts.windows(2) {
            let (from, to) = (pair[0], pair[1]);
            let start = times[from];
            let end = times[to - 1].saturating_add(self.gap);
            window_starts.resize(window_starts.len() + (to - from), start);
            window_ends.resize(window_ends.len() + (to - from), end);
        }
        let closed = self.with_bounds(&batch.slice(first, last - first), window_starts, window_ends)?;
        self.ready.push_back(closed);
        Ok(())
    }

    fn finish(&mut self) -> DfResult<()> {
        if let Some(open) = self.open.take() {
            let end = open.last.saturating_add(self.gap);
            for pending in std::mem::take(&mut self.pending) {
                let rows = pending.num_rows();
                let batch = self.with_bounds(&pending, vec![open.start; rows], vec![end; rows])?;
                self.ready.push_back(batch);
            }
        }
        self.reserve()
    }

    fn with_bounds(&self, batch: &RecordBatch, starts: Vec<i64>, ends: Vec<i64>) -> DfResult<RecordBatch> {
        let time_type = batch.schema().field(self.time).data_type().clone();
        let mut columns = batch.columns().to_vec();
        columns.push(timestamp_array(&time_type, ScalarBuffer::from(starts), None));
        columns.push(timestamp_array(&time_type, ScalarBuffer::from(ends), None));
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// Counts the held-back rows against the memory pool; fails the query beyond it.
    fn reserve(&mut self) -> DfResult<()> {
        let bytes = self.pending.iter().map(RecordBatch::get_array_memory_size).sum();
        self.reservation.try_resize(bytes)
    }
}

/// Indices of the rows of a sorted batch that start a new session: a new key, or more than
/// `gap` since the previous event of the same key. Events exactly `gap` apart stay in one
/// session, as in Flink: each event's window is [t, t + gap) and windows that touch merge.
fn session_starts(times: &[i64], keys: Option<&Rows>, open: Option<&OpenSession>, gap: i64) -> Vec<usize> {
    let mut starts = Vec::new();
    let Some(&first) = times.first() else {
        return starts;
    };
    let first_starts = match open {
        None => true,
        Some(open) => {
            let new_key = match (keys, &open.key) {
                (Some(keys), Some(key)) => keys.row(0) != key.row(),
                _ => false,
            };
            new_key || first.saturating_sub(open.last) > gap
        }
    };
    if first_starts {
        starts.push(0);
    }
    match keys {
        Some(keys) => {
            for i in 1..times.len() {
                if times[i].saturating_sub(times[i - 1]) > gap || keys.row(i) != keys.row(i - 1) {
                    starts.push(i);
                }
            }
        }
        None => {
            for i in 1..times.len() {
                if times[i].saturating_sub(times[i - 1]) > gap {
                    starts.push(i);
                }
            }
        }
    }
    starts
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Int64Array, TimestampSecondArray};
    use datafusion::arrow::datatypes::{DataType, Schema, TimestampSecondType};
    use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool};

    fn scan(keys: bool, gap: i64, pool: Arc<dyn MemoryPool>) -> GapScan {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("ts", DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Second, None), false),
            Field::new(WINDOW_START, DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Second, None), false),
            Field::new(WINDOW_END, DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Second, None), false),
        ]));
        GapScan {
            schema,
            time: 1,
            keys: if keys { vec![0] } else { vec![] },
            gap,
            converter: keys.then(|| RowConverter::new(vec![SortField::new(DataType::Int64)]).unwrap()),
            open: None,
            pending: Vec::new(),
            reservation: MemoryConsumer::new("test").register(&pool),
            ready: VecDeque::new(),
        }
    }

    fn input(keys: &[i64], times: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("ts", DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Second, None), false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from(keys.to_vec())), Arc::new(TimestampSecondArray::from(times.to_vec()))],
        )
        .unwrap()
    }

    /// (key, ts, window_start, window_end) of every row emitted, in order.
    fn drain(scan: &mut GapScan) -> Vec<(i64, i64, i64, i64)> {
        let mut rows = Vec::new();
        for batch in scan.ready.drain(..) {
            let keys = batch.column(0).as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            let ts = batch.column(1).as_primitive::<TimestampSecondType>();
            let start = batch.column(2).as_primitive::<TimestampSecondType>();
            let end = batch.column(3).as_primitive::<TimestampSecondType>();
            for i in 0..batch.num_rows() {
                rows.push((keys.value(i), ts.value(i), start.value(i), end.value(i)));
            }
        }
        rows
    }

    fn pool() -> Arc<dyn MemoryPool> {
        Arc::new(GreedyMemoryPool::new(1 << 20))
    }

    #[test]
    fn more_than_gap_starts_a_new_session_and_touching_windows_merge() {
        let mut scan = scan(false, 10, pool());
        scan.push(input(&[0, 0, 0, 0, 0], &[0, 9, 19, 30, 41])).unwrap();
        // Across batches too: 51 is exactly one gap after 41.
        scan.push(input(&[0], &[51])).unwrap();
        scan.finish().unwrap();
        // 0 and 9 (9 apart), 19 (10 apart: [9, 19) touches [19, 29), Flink merges them),
        // 30 (11 apart: new), 41 (11: new), 51 (10: same session).
        assert_eq!(
            drain(&mut scan),
            vec![(0, 0, 0, 29), (0, 9, 0, 29), (0, 19, 0, 29), (0, 30, 30, 40), (0, 41, 41, 61), (0, 51, 41, 61)]
        );
    }

    #[test]
    fn sessions_span_batches_and_keys_split_them() {
        let mut scan = scan(true, 10, pool());
        scan.push(input(&[1, 1], &[0, 5])).unwrap();
        // Nothing is final yet: key 1's session may go on.
        assert!(scan.ready.is_empty());
        scan.push(input(&[1, 1, 2], &[12, 30, 31])).unwrap();
        scan.push(input(&[2], &[35])).unwrap();
        scan.push(input(&[3], &[36])).unwrap();
        scan.finish().unwrap();
        let mut rows = drain(&mut scan);
        rows.sort();
        assert_eq!(
            rows,
            vec![
                (1, 0, 0, 22),
                (1, 5, 0, 22),
                (1, 12, 0, 22),
                (1, 30, 30, 40),
                (2, 31, 31, 45),
                (2, 35, 31, 45),
                (3, 36, 36, 46),
            ]
        );
        assert_eq!(scan.reservation.size(), 0);
    }

    #[test]
    fn the_open_session_counts_against_the_memory_pool() {
        let tight: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(64));
        let mut scan = scan(false, 1_000, tight);
        let error = scan.push(input(&[0; 100], &(0..100).collect::<Vec<_>>())).unwrap_err();
        assert!(matches!(error.find_root(), datafusion::error::DataFusionError::ResourcesExhausted(_)), "{error}");
    }
}

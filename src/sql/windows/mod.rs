//! Window table functions: `TUMBLE(t, ts, size [, offset])`, `HOP(t, ts, slide, size)`,
//! `CUMULATE(t, ts, step, size)` and `SESSION(t, ts, gap)` in FROM, with Flink's semantics.
//! Each returns every column of `t` plus `window_start` and `window_end`, of the time
//! column's own type (unit and time zone).
//!
//! They are planned by [`WindowPlanner`], a DataFusion `RelationPlanner`: `t` (a table,
//! source, view, CTE or parenthesized subquery) is planned through the whole relation
//! planner chain, so time travel and other planners apply to it; relations that are not
//! window calls are handed on untouched.
//!
//! - TUMBLE is a projection of the window start (`date_bin` that keeps the column's unit).
//! - HOP and CUMULATE project the list of windows an event falls in ([`assign`]) and unnest
//!   it: one row per (event, window).
//! - SESSION is a logical extension node ([`session`]) whose keys are the GROUP BY columns of
//!   the aggregate above it, filled in by the [`SessionKeys`] analyzer rule, or given
//!   explicitly as a fourth argument `DESCRIPTOR(key, ...)`; it runs as a streaming gap scan
//!   over input sorted by (keys, time).
//!
//! Rows whose time is NULL fall in no window and are dropped by all four. Windows are
//! aligned to the Unix epoch in UTC (TUMBLE's offset shifts that), whatever the column's
//! time zone. Sizes are fixed durations: intervals in months or years are refused (0A000).
//! HOP accepts a size that is not a multiple of the slide (each event then falls in
//! floor or ceil of size/slide windows); CUMULATE needs size to be a multiple of step.

mod assign;
mod session_window;

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Column, DFSchema, ExprSchema, ScalarValue};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::planner::{PlannedRelation, RelationPlanner, RelationPlannerContext, RelationPlanning};
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, LogicalPlanBuilder, ScalarUDF, lit};
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName, ObjectNamePart, Query, SetExpr,
    Statement as SqlStatement, TableFactor, Visit, VisitMut, Visitor, VisitorMut,
};

use crate::error::{WsError, sqlstate};

pub use assign::{cumulate_ends, floor_to, hop_starts};
pub use session_window::{SessionKeys, SessionWindow, WindowQueryPlanner};

/// The two columns every window function adds.
pub const WINDOW_START: &str = "window_start";
pub const WINDOW_END: &str = "window_end";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tumble,
    Hop,
    Cumulate,
    Session,
}

impl Kind {
    fn of(name: &ObjectName) -> Option<Kind> {
        let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() else {
            return None;
        };
        match ident.value.to_ascii_uppercase().as_str() {
            "TUMBLE" => Some(Kind::Tumble),
            "HOP" => Some(Kind::Hop),
            "CUMULATE" => Some(Kind::Cumulate),
            "SESSION" => Some(Kind::Session),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Tumble => "TUMBLE",
            Kind::Hop => "HOP",
            Kind::Cumulate => "CUMULATE",
            Kind::Session => "SESSION",
        }
    }

    fn usage(self) -> &'static str {
        match self {
            Kind::Tumble => "TUMBLE(table, time_column, size [, offset])",
            Kind::Hop => "HOP(table, time_column, slide, size)",
            Kind::Cumulate => "CUMULATE(table, time_column, step, size)",
            Kind::Session => "SESSION(table, time_column, gap [, DESCRIPTOR(key, ...)])",
        }
    }

    fn arity(self) -> std::ops::RangeInclusive<usize> {
        match self {
            Kind::Tumble => 3..=4,
            Kind::Hop | Kind::Cumulate => 4..=4,
            Kind::Session => 3..=4,
        }
    }
}

/// How far back and how often the window calls of a statement reach, from their INTERVAL
/// literals: the largest window size and the smallest slide or step (µs), or None when the
/// statement calls no window function. A view joining two sources keeps each source's
/// rows for the largest size, and evaluates when the watermark crosses a step. SESSION
/// windows (no bound on their length) and sizes that are not INTERVAL literals are
/// refused with the reason.
pub fn window_extents(statement: &SqlStatement) -> Result<Option<(i64, i64)>, String> {
    struct Finder {
        extents: Option<(i64, i64)>,
        error: Option<String>,
    }
    fn literal_us(expr: &SqlExpr) -> Result<i64, String> {
        let SqlExpr::Interval(interval) = expr else {
            return Err(format!("window sizes of views joining sources are INTERVAL literals, got {expr}"));
        };
        let SqlExpr::Value(value) = interval.value.as_ref() else {
            return Err(format!("window sizes of views joining sources are INTERVAL literals, got {expr}"));
        };
        let datafusion::sql::sqlparser::ast::Value::SingleQuotedString(text) = &value.value else {
            return Err(format!("window sizes of views joining sources are INTERVAL literals, got {expr}"));
        };
        let text = match &interval.leading_field {
            Some(field) => format!("{text} {field}"),
            None => text.clone(),
        };
        crate::stream::spec::parse_duration_ms(&text).map(|ms| ms as i64 * 1_000).map_err(|e| e.message)
    }
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            let TableFactor::Table { name, args: Some(args), .. } = factor else {
                return ControlFlow::Continue(());
            };
            let Some(kind) = Kind::of(name) else {
                return ControlFlow::Continue(());
            };
            let exprs: Vec<&SqlExpr> = args
                .args
                .iter()
                .filter_map(|arg| match arg {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => Some(expr),
                    _ => None,
                })
                .collect();
            let found = match (kind, exprs.as_slice()) {
                (Kind::Session, _) => Err("SESSION windows have no bounded length".to_string()),
                (Kind::Tumble, [_, _, size, ..]) => literal_us(size).map(|size| (size, size)),
                (Kind::Hop | Kind::Cumulate, [_, _, step, size]) => {
                    literal_us(step).and_then(|step| literal_us(size).map(|size| (size, step)))
                }
                _ => Err(format!("{}: {}", kind.name(), kind.usage())),
            };
            match found {
                Ok((size, step)) => {
                    let (size_max, step_min) = self.extents.unwrap_or((size, step));
                    self.extents = Some((size_max.max(size), step_min.min(step)));
                    ControlFlow::Continue(())
                }
                Err(error) => {
                    self.error = Some(error);
                    ControlFlow::Break(())
                }
            }
        }
    }
    let mut finder = Finder { extents: None, error: None };
    let _ = statement.visit(&mut finder);
    match finder.error {
        Some(error) => Err(error),
        None => Ok(finder.extents),
    }
}

/// DataFusion loads the tables a statement uses before planning it, finding them in its
/// FROM clauses; a table passed to a window function is an expression there, which it would
/// miss. So each such argument `t` becomes the relation it stands for, `(SELECT * FROM t)`,
/// before planning: DataFusion then resolves `t` like any table, view, source or CTE.
pub fn table_arguments_as_subqueries(statement: &mut SqlStatement) {
    struct Rewriter;
    impl VisitorMut for Rewriter {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table { name, args: Some(args), .. } = factor
                && Kind::of(name).is_some()
                && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(first))) = args.args.first_mut()
            {
                let table = match first {
                    SqlExpr::Identifier(ident) => Some(ObjectName::from(vec![ident.clone()])),
                    SqlExpr::CompoundIdentifier(parts) => Some(ObjectName::from(parts.clone())),
                    _ => None,
                };
                if let Some(table) = table {
                    *first = SqlExpr::Subquery(Box::new(select_all_from(table)));
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Rewriter);
}

/// `SELECT * FROM <table>` as an AST: a parsed template whose relation is replaced (the
/// AST is never printed and re-parsed).
fn select_all_from(table: ObjectName) -> Query {
    static TEMPLATE: std::sync::LazyLock<Query> = std::sync::LazyLock::new(|| {
        let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
        *datafusion::sql::sqlparser::parser::Parser::new(&dialect)
            .try_with_sql("SELECT * FROM t")
            .and_then(|mut parser| parser.parse_query())
            .expect("a constant query parses")
    });
    let mut query = TEMPLATE.clone();
    if let SetExpr::Select(select) = query.body.as_mut()
        && let Some(from) = select.from.first_mut()
        && let TableFactor::Table { name, .. } = &mut from.relation
    {
        *name = table;
    }
    query
}

/// A client-facing planning error: DataFusion carries it as `External`, and
/// `crate::error` gives the client its SQLSTATE and message unchanged.
fn fail(code: crate::error::SqlState, message: impl Into<String>) -> DataFusionError {
    DataFusionError::External(Box::new(WsError::new(code, message)))
}

/// Plans the window table functions in FROM; every other relation goes to the next planner.
#[derive(Debug)]
pub struct WindowPlanner {
    windows_per_event_max: usize,
}

impl WindowPlanner {
    /// `windows_per_event_max` bounds size/slide (HOP) and size/step (CUMULATE): the rows
    /// one event becomes.
    pub fn new(windows_per_event_max: usize) -> WindowPlanner {
        WindowPlanner { windows_per_event_max }
    }
}

impl RelationPlanner for WindowPlanner {
    fn plan_relation(
        &self,
        relation: TableFactor,
        context: &mut dyn RelationPlannerContext,
    ) -> DfResult<RelationPlanning> {
        let TableFactor::Table { name, alias, args: Some(args), .. } = &relation else {
            return Ok(RelationPlanning::Original(Box::new(relation)));
        };
        let Some(kind) = Kind::of(name) else {
            return Ok(RelationPlanning::Original(Box::new(relation)));
        };
        let plan = self.plan_window(kind, &args.args, context)?;
        Ok(RelationPlanning::Planned(Box::new(PlannedRelation::new(plan, alias.clone()))))
    }
}

/// The validated arguments of one window call, sizes in the time column's unit.
struct Call {
    input: LogicalPlan,
    time: Column,
    unit: TimeUnit,
}

impl WindowPlanner {
    fn plan_window(
        &self,
        kind: Kind,
        args: &[FunctionArg],
        context: &mut dyn RelationPlannerContext,
    ) -> DfResult<LogicalPlan> {
        if !kind.arity().contains(&args.len()) {
            return Err(fail(
                sqlstate::UNDEFINED_FUNCTION,
                format!("{} takes {} arguments, got {}: {}", kind.name(), arity_text(kind), args.len(), kind.usage()),
            ));
        }
        let args = args
            .iter()
            .map(|arg| match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => Ok(expr),
                other => Err(fail(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!("{} takes positional arguments only, got {other}: {}", kind.name(), kind.usage()),
                )),
            })
            .collect::<DfResult<Vec<&SqlExpr>>>()?;
        let call = plan_input(kind, args[0], args[1], context)?;
        // SESSION's optional fourth argument names its keys; all others are intervals.
        let intervals = if kind == Kind::Session { &args[2..3] } else { &args[2..] };
        let durations = intervals
            .iter()
            .map(|arg| duration_argument(kind, arg, call.unit, context))
            .collect::<DfResult<Vec<i64>>>()?;
        let [first, rest @ ..] = durations.as_slice() else {
            unreachable!("arity checked above: at least three arguments")
        };
        let input = not_null_times(&call)?;
        let plan = match kind {
            Kind::Tumble => {
                let size = positive(kind, "size", *first, args[2])?;
                let offset = rest.first().copied().unwrap_or(0);
                tumble(input, &call, size, offset)?
            }
            Kind::Hop => {
                let slide = positive(kind, "slide", *first, args[2])?;
                let size = positive(kind, "size", rest[0], args[3])?;
                if slide > size {
                    return Err(fail(
                        sqlstate::INVALID_PARAMETER_VALUE,
                        format!("HOP slide ({}) must not be larger than its size ({})", args[2], args[3]),
                    ));
                }
                self.check_windows_per_event(kind, (size + slide - 1) / slide)?;
                hop(input, &call, slide, size)?
            }
            Kind::Cumulate => {
                let step = positive(kind, "step", *first, args[2])?;
                let size = positive(kind, "size", rest[0], args[3])?;
                if step > size || size % step != 0 {
                    return Err(fail(
                        sqlstate::INVALID_PARAMETER_VALUE,
                        format!("CUMULATE size ({}) must be a whole multiple of its step ({})", args[3], args[2]),
                    ));
                }
                self.check_windows_per_event(kind, size / step)?;
                cumulate(input, &call, step, size)?
            }
            Kind::Session => {
                let gap = positive(kind, "gap", *first, args[2])?;
                let mut node = SessionWindow::try_new(input, call.time.clone(), gap)?;
                if let Some(keys) = args.get(3) {
                    node = node.with_keys(session_keys_argument(keys, &call, context)?);
                }
                LogicalPlan::Extension(Extension { node: Arc::new(node) })
            }
        };
        // When the input's columns all belong to one table (`TUMBLE(clicks, ...)`), the
        // result is known by that table's name, window columns included, as the table is.
        match single_qualifier(call.input.schema()) {
            Some(qualifier) => LogicalPlanBuilder::from(plan).alias(qualifier)?.build(),
            None => Ok(plan),
        }
    }

    fn check_windows_per_event(&self, kind: Kind, windows: i64) -> DfResult<()> {
        if windows as u64 > self.windows_per_event_max as u64 {
            return Err(fail(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!(
                    "{} would put each event in {windows} windows; the limit is {} (windows_per_event_max)",
                    kind.name(),
                    self.windows_per_event_max
                ),
            ));
        }
        Ok(())
    }
}

fn arity_text(kind: Kind) -> String {
    let arity = kind.arity();
    if arity.start() == arity.end() {
        arity.start().to_string()
    } else {
        format!("{} or {}", arity.start(), arity.end())
    }
}

/// Plans the relation argument and resolves the time column against it.
fn plan_input(
    kind: Kind,
    relation: &SqlExpr,
    time: &SqlExpr,
    context: &mut dyn RelationPlannerContext,
) -> DfResult<Call> {
    let factor = match relation {
        SqlExpr::Identifier(ident) => table_factor(ObjectName::from(vec![ident.clone()])),
        SqlExpr::CompoundIdentifier(parts) => table_factor(ObjectName::from(parts.clone())),
        SqlExpr::Subquery(query) => {
            TableFactor::Derived { lateral: false, subquery: query.clone(), alias: None, sample: None }
        }
        other => {
            return Err(fail(
                sqlstate::SYNTAX_ERROR,
                format!(
                    "the first argument of {} must be a table, source, view or parenthesized subquery, got {other}",
                    kind.name()
                ),
            ));
        }
    };
    let input = context.plan(factor)?;
    let time = descriptor_column(time);
    let Expr::Column(column) = context.sql_to_expr(time.clone(), input.schema())? else {
        return Err(fail(
            sqlstate::SYNTAX_ERROR,
            format!("the second argument of {} must be a column of its table, got {time}", kind.name()),
        ));
    };
    let time_type = input.schema().field_from_column(&column)?.data_type().clone();
    let DataType::Timestamp(unit, _) = &time_type else {
        return Err(fail(
            sqlstate::DATATYPE_MISMATCH,
            format!("{} needs a timestamp time column; \"{}\" is {}", kind.name(), column.name, type_name(&time_type)),
        ));
    };
    for taken in [WINDOW_START, WINDOW_END] {
        if input.schema().fields().iter().any(|field| field.name() == taken) {
            return Err(fail(
                sqlstate::DUPLICATE_COLUMN,
                format!("{} adds a column \"{taken}\"; its input already has one: rename it", kind.name()),
            ));
        }
    }
    let unit = *unit;
    Ok(Call { input, time: column, unit })
}

fn single_qualifier(schema: &DFSchema) -> Option<datafusion::common::TableReference> {
    let mut qualifiers = schema.iter().map(|(qualifier, _)| qualifier);
    let first = qualifiers.next()??;
    qualifiers.all(|q| q == Some(first)).then(|| first.clone())
}

/// PostgreSQL's name for a type, for messages.
fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => "text".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Boolean => "boolean".into(),
        other => other.to_string(),
    }
}

fn table_factor(name: ObjectName) -> TableFactor {
    TableFactor::Table {
        name,
        alias: None,
        args: None,
        with_hints: Vec::new(),
        version: None,
        with_ordinality: false,
        partitions: Vec::new(),
        json_path: None,
        sample: None,
        index_hints: Vec::new(),
    }
}

/// `DESCRIPTOR(k1, k2, ...)`: SESSION's explicit keys, columns of its input.
fn session_keys_argument(
    arg: &SqlExpr,
    call: &Call,
    context: &mut dyn RelationPlannerContext,
) -> DfResult<Vec<Column>> {
    let invalid = || {
        fail(
            sqlstate::SYNTAX_ERROR,
            format!("SESSION's fourth argument names its keys as DESCRIPTOR(column, ...); got {arg}"),
        )
    };
    let SqlExpr::Function(function) = arg else {
        return Err(invalid());
    };
    let FunctionArguments::List(list) = &function.args else {
        return Err(invalid());
    };
    if !function.name.to_string().eq_ignore_ascii_case("descriptor") || list.args.is_empty() {
        return Err(invalid());
    }
    let mut keys = Vec::with_capacity(list.args.len());
    for key in &list.args {
        let FunctionArg::Unnamed(FunctionArgExpr::Expr(key)) = key else {
            return Err(invalid());
        };
        match context.sql_to_expr(key.clone(), call.input.schema())? {
            Expr::Column(column) if !keys.contains(&column) => keys.push(column),
            Expr::Column(_) => {}
            _ => return Err(invalid()),
        }
    }
    Ok(keys)
}

/// Flink spells the time column `DESCRIPTOR(ts)`; a bare `ts` is accepted as well.
fn descriptor_column(expr: &SqlExpr) -> &SqlExpr {
    if let SqlExpr::Function(function) = expr
        && function.name.to_string().eq_ignore_ascii_case("descriptor")
        && let FunctionArguments::List(list) = &function.args
        && let [FunctionArg::Unnamed(FunctionArgExpr::Expr(inner))] = list.args.as_slice()
    {
        return inner;
    }
    expr
}

/// An INTERVAL argument as a count of `unit`s. `INTERVAL '1' HOUR` and `INTERVAL '1 hour'`
/// both plan to an interval literal; days count as 24 hours.
fn duration_argument(
    kind: Kind,
    arg: &SqlExpr,
    unit: TimeUnit,
    context: &mut dyn RelationPlannerContext,
) -> DfResult<i64> {
    let planned = context.sql_to_expr(arg.clone(), &DFSchema::empty())?;
    let not_interval = || {
        fail(
            sqlstate::DATATYPE_MISMATCH,
            format!("{} takes INTERVAL literals for its sizes, e.g. INTERVAL '5' MINUTE; got {arg}", kind.name()),
        )
    };
    let Expr::Literal(value, _) = planned else {
        return Err(not_interval());
    };
    const DAY_NANOS: i128 = 86_400 * 1_000_000_000;
    let nanos: i128 = match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            i128::from(v.days) * DAY_NANOS + i128::from(v.nanoseconds)
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            i128::from(v.days) * DAY_NANOS + i128::from(v.milliseconds) * 1_000_000
        }
        ScalarValue::IntervalYearMonth(Some(0)) => 0,
        ScalarValue::IntervalMonthDayNano(Some(_)) | ScalarValue::IntervalYearMonth(Some(_)) => {
            return Err(fail(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "{} sizes must be fixed durations (days or shorter); months and years vary in length: {arg}",
                    kind.name()
                ),
            ));
        }
        ScalarValue::IntervalMonthDayNano(None)
        | ScalarValue::IntervalDayTime(None)
        | ScalarValue::IntervalYearMonth(None) => {
            return Err(fail(sqlstate::INVALID_PARAMETER_VALUE, format!("{} sizes must not be NULL", kind.name())));
        }
        _ => return Err(not_interval()),
    };
    let per_unit = i128::from(assign::nanos_per(unit));
    if nanos % per_unit != 0 {
        return Err(fail(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("{} size {arg} is finer than the time column's precision ({unit:?})", kind.name()),
        ));
    }
    i64::try_from(nanos / per_unit)
        .map_err(|_| fail(sqlstate::NUMERIC_VALUE_OUT_OF_RANGE, format!("{} size {arg} is out of range", kind.name())))
}

fn positive(kind: Kind, what: &str, value: i64, arg: &SqlExpr) -> DfResult<i64> {
    if value <= 0 {
        return Err(fail(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("{} {what} must be positive, got {arg}", kind.name()),
        ));
    }
    Ok(value)
}

/// The input without rows whose time is NULL: they belong to no window.
fn not_null_times(call: &Call) -> DfResult<LogicalPlan> {
    let (_, field) = call.input.schema().qualified_field_from_column(&call.time)?;
    if !field.is_nullable() {
        return Ok(call.input.clone());
    }
    LogicalPlanBuilder::from(call.input.clone()).filter(Expr::Column(call.time.clone()).is_not_null())?.build()
}

/// Every column of the input, by qualified name.
fn input_columns(schema: &DFSchema) -> Vec<Expr> {
    schema.columns().into_iter().map(Expr::Column).collect()
}

/// A duration literal in the time column's unit: timestamp + duration of one unit is a
/// plain vectorised add.
fn duration_literal(unit: TimeUnit, value: i64) -> Expr {
    lit(match unit {
        TimeUnit::Second => ScalarValue::DurationSecond(Some(value)),
        TimeUnit::Millisecond => ScalarValue::DurationMillisecond(Some(value)),
        TimeUnit::Microsecond => ScalarValue::DurationMicrosecond(Some(value)),
        TimeUnit::Nanosecond => ScalarValue::DurationNanosecond(Some(value)),
    })
}

/// The start of the `size` window (aligned to epoch + offset) holding ts.
fn window_floor(call: &Call, size: i64, offset: i64) -> Expr {
    let offset = offset.rem_euclid(size);
    ScalarUDF::new_from_impl(assign::TumbleStartUdf::default()).call(vec![
        Expr::Column(call.time.clone()),
        lit(size),
        lit(offset),
    ])
}

fn window_end_from_start(call: &Call, size: i64) -> Expr {
    (Expr::Column(Column::from_name(WINDOW_START)) + duration_literal(call.unit, size)).alias(WINDOW_END)
}

fn tumble(input: LogicalPlan, call: &Call, size: i64, offset: i64) -> DfResult<LogicalPlan> {
    let mut with_start = input_columns(input.schema());
    with_start.push(window_floor(call, size, offset).alias(WINDOW_START));
    let builder = LogicalPlanBuilder::from(input).project(with_start)?;
    let mut with_end = input_columns(builder.schema());
    with_end.push(window_end_from_start(call, size));
    builder.project(with_end)?.build()
}

fn hop(input: LogicalPlan, call: &Call, slide: i64, size: i64) -> DfResult<LogicalPlan> {
    let starts = ScalarUDF::new_from_impl(assign::WindowListUdf::new(assign::WindowList::HopStarts));
    let mut with_starts = input_columns(input.schema());
    with_starts.push(starts.call(vec![Expr::Column(call.time.clone()), lit(slide), lit(size)]).alias(WINDOW_START));
    let builder = LogicalPlanBuilder::from(input).project(with_starts)?.unnest_column(WINDOW_START)?;
    let mut with_end = input_columns(builder.schema());
    with_end.push(window_end_from_start(call, size));
    builder.project(with_end)?.build()
}

fn cumulate(input: LogicalPlan, call: &Call, step: i64, size: i64) -> DfResult<LogicalPlan> {
    let ends = ScalarUDF::new_from_impl(assign::WindowListUdf::new(assign::WindowList::CumulateEnds));
    let mut with_bounds = input_columns(input.schema());
    with_bounds.push(window_floor(call, size, 0).alias(WINDOW_START));
    with_bounds.push(ends.call(vec![Expr::Column(call.time.clone()), lit(step), lit(size)]).alias(WINDOW_END));
    LogicalPlanBuilder::from(input).project(with_bounds)?.unnest_column(WINDOW_END)?.build()
}

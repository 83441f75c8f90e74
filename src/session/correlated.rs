//! Correlated subqueries DataFusion cannot decorrelate, evaluated once per outer value.
//!
//! DataFusion runs a correlated subquery only by turning it into a join, which it cannot
//! do for shapes that clients' catalog queries use: `ARRAY(SELECT ...)` correlated through
//! `= ANY(outer array)` (psql's `\d`), outer columns inside the selected expression
//! (SQLAlchemy's identity options), a recursive CTE inside the subquery (asyncpg's type
//! introspection), outer columns as table-function arguments (psql's publications). When
//! a statement's plan still holds a subquery after optimization (or fails to plan), each
//! outermost correlated subquery in an expression is planned on its own, its outer
//! column references turned into parameters `$1..$n`, and replaced by a call to an async
//! function of those outer columns that runs the plan once per distinct tuple of outer
//! values in a batch. The statement's own parameters that the subquery uses come first
//! (renumbered `$1..$k`, the outer columns then `$k+1..`): the function takes them as
//! arguments, typed as the subquery infers them, so binding the statement fills them in
//! like any other parameter (SQLAlchemy's column reflection binds its table OIDs there). That is PostgreSQL's own nested-loop semantics: a scalar subquery
//! gives NULL for no row, its value for one, 21000 for more; `ARRAY(...)` gives every
//! value, `{}` for none.
//!
//! Outer references are told apart by qualifier (`q.c` where no relation of the subquery
//! is named `q`); an unqualified column the subquery alone cannot resolve is taken as
//! outer too. Unlike PostgreSQL, the subquery runs for every row of the batch, also rows
//! where an enclosing CASE would not have evaluated it. Cost grows with the number of
//! distinct outer tuples; `statement_timeout` bounds it.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::compute::concat;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DataFusionError, ParamValues, Result as DfResult, ScalarValue, SchemaError};
use datafusion::execution::SessionState;
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    ColumnarValue, Expr as DfExpr, LogicalPlan, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};
use datafusion::physical_plan::collect;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{
    self as sqlast, Expr, FunctionArguments, Ident, Query, TableFactor, Value, Visit, VisitMut, Visitor, VisitorMut,
};

use crate::error::WsError;

// 21000: a scalar subquery returned more than one row.
use crate::error::sqlstate::CARDINALITY_VIOLATION;
/// Unqualified columns a subquery may turn out to take from outside before giving up.
const UNQUALIFIED_OUTER_MAX: usize = 16;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Whether a plan still needs a subquery evaluated: after optimization, any subquery
/// expression left means DataFusion could not decorrelate it.
pub fn holds_subquery(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        for expr in node.expressions() {
            if expr
                .exists(|e| {
                    Ok(matches!(
                        e,
                        DfExpr::ScalarSubquery(_)
                            | DfExpr::Exists(_)
                            | DfExpr::InSubquery(_)
                            | DfExpr::OuterReferenceColumn(..)
                    ))
                })
                .unwrap_or(false)
            {
                found = true;
            }
        }
        Ok(if found {
            datafusion::common::tree_node::TreeNodeRecursion::Stop
        } else {
            datafusion::common::tree_node::TreeNodeRecursion::Continue
        })
    });
    found
}

/// Whether the statement has a subquery in an expression at all (cheap pre-check).
pub fn has_expression_subquery(statement: &sqlast::Statement) -> bool {
    struct Finder(bool);
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if subquery_of(expr).is_some() {
                self.0 = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut finder = Finder(false);
    let _ = statement.visit(&mut finder);
    finder.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Scalar,
    Array,
}

fn subquery_of(expr: &Expr) -> Option<(&Query, Mode)> {
    match expr {
        Expr::Subquery(query) => Some((query, Mode::Scalar)),
        Expr::Function(function)
            if function.name.0.len() == 1
                && function.name.0[0].as_ident().is_some_and(|i| i.value.eq_ignore_ascii_case("array")) =>
        {
            match &function.args {
                FunctionArguments::Subquery(query) => Some((query, Mode::Array)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Relation names (aliases, else table names) and CTE names anywhere inside a query.
fn inner_names(query: &Query) -> HashSet<String> {
    struct Names(HashSet<String>);
    impl Visitor for Names {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            let name = match factor {
                TableFactor::Table { alias: Some(alias), .. }
                | TableFactor::Derived { alias: Some(alias), .. }
                | TableFactor::Function { alias: Some(alias), .. }
                | TableFactor::UNNEST { alias: Some(alias), .. } => Some(alias.name.value.clone()),
                TableFactor::Table { name, .. } => name.0.last().and_then(|p| p.as_ident()).map(|i| i.value.clone()),
                _ => None,
            };
            if let Some(name) = name {
                self.0.insert(name.to_lowercase());
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            if let Some(with) = &query.with {
                for cte in &with.cte_tables {
                    self.0.insert(cte.alias.name.value.to_lowercase());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut names = Names(HashSet::new());
    let _ = query.visit(&mut names);
    names.0
}

/// A column reference's identity, lower case, for matching occurrences.
fn column_key(expr: &Expr) -> Option<Vec<String>> {
    match expr {
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
            Some(parts.iter().map(|p| p.value.to_lowercase()).collect())
        }
        Expr::Identifier(ident) => Some(vec![ident.value.to_lowercase()]),
        _ => None,
    }
}

/// Qualified references to relations the subquery does not define, in first-seen order.
fn qualified_outer_refs(query: &Query) -> Vec<Expr> {
    let inner = inner_names(query);
    struct Refs<'a> {
        inner: &'a HashSet<String>,
        seen: HashSet<Vec<String>>,
        found: Vec<Expr>,
    }
    impl Visitor for Refs<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Expr::CompoundIdentifier(parts) = expr
                && parts.len() >= 2
                && !self.inner.contains(&parts[parts.len() - 2].value.to_lowercase())
                && let Some(key) = column_key(expr)
                && self.seen.insert(key)
            {
                self.found.push(expr.clone());
            }
            ControlFlow::Continue(())
        }
    }
    let mut refs = Refs { inner: &inner, seen: HashSet::new(), found: Vec::new() };
    let _ = query.visit(&mut refs);
    refs.found
}

fn placeholder(name: String) -> Expr {
    Expr::Value(Value::Placeholder(name).into())
}

/// A parameterized subquery with `$1..$n` replaced by SQL literals of `values`; None if a
/// value has no literal form.
fn with_values(query: &Query, values: &[ScalarValue]) -> Option<Query> {
    let mut literals = Vec::with_capacity(values.len());
    for value in values {
        let literal = match value {
            ScalarValue::Null => Expr::Value(Value::Null.into()),
            other => datafusion::sql::unparser::expr_to_sql(&DfExpr::Literal(other.clone(), None)).ok()?,
        };
        literals.push(Expr::Nested(Box::new(literal)));
    }
    struct Substitute<'a>(&'a [Expr]);
    impl VisitorMut for Substitute<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if let Expr::Value(value) = expr
                && let Value::Placeholder(name) = &value.value
                && let Some(literal) = name
                    .strip_prefix('$')
                    .and_then(|n| n.parse::<usize>().ok())
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|i| self.0.get(i))
            {
                *expr = literal.clone();
            }
            ControlFlow::Continue(())
        }
    }
    let mut copy = query.clone();
    let _ = VisitMut::visit(&mut copy, &mut Substitute(&literals));
    Some(copy)
}

/// The subquery with the statement's parameters `params` renumbered `$1..$k` and every
/// occurrence of the outer references replaced by `$k+1..$k+n`.
fn parameterized(query: &Query, params: &[String], outer: &[Expr]) -> Query {
    let keys: HashMap<Vec<String>, usize> =
        outer.iter().enumerate().filter_map(|(i, e)| column_key(e).map(|k| (k, params.len() + i + 1))).collect();
    struct Substitute<'a> {
        params: &'a [String],
        outer: &'a HashMap<Vec<String>, usize>,
    }
    impl VisitorMut for Substitute<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            let index = match expr {
                Expr::Value(value) => match &value.value {
                    Value::Placeholder(name) => self.params.iter().position(|p| p == name).map(|i| i + 1),
                    _ => None,
                },
                _ => column_key(expr).and_then(|key| self.outer.get(&key).copied()),
            };
            if let Some(index) = index {
                *expr = placeholder(format!("${index}"));
            }
            ControlFlow::Continue(())
        }
    }
    let mut copy = query.clone();
    let _ = VisitMut::visit(&mut copy, &mut Substitute { params, outer: &keys });
    copy
}

/// The statement's parameters a subquery uses, by number; None if one is not `$n`.
fn statement_params(query: &Query) -> Option<Vec<String>> {
    struct Finder(Vec<(usize, String)>, bool);
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_value(&mut self, value: &sqlast::ValueWithSpan) -> ControlFlow<()> {
            if let Value::Placeholder(name) = &value.value {
                match name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
                    Some(number) => self.0.push((number, name.clone())),
                    None => self.1 = true,
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut finder = Finder(Vec::new(), false);
    let _ = query.visit(&mut finder);
    if finder.1 {
        return None;
    }
    finder.0.sort();
    finder.0.dedup();
    Some(finder.0.into_iter().map(|(_, name)| name).collect())
}

/// An unqualified column the planner could not find, if that is why planning failed.
fn missing_unqualified_column(error: &DataFusionError) -> Option<String> {
    match error {
        DataFusionError::SchemaError(error, _) => match error.as_ref() {
            SchemaError::FieldNotFound { field, .. } if field.relation.is_none() => Some(field.name.clone()),
            _ => None,
        },
        DataFusionError::Context(_, inner) => missing_unqualified_column(inner),
        DataFusionError::Diagnostic(_, inner) => missing_unqualified_column(inner),
        _ => None,
    }
}

/// One subquery planned on its own: the plan of `$1..$k+n`, the statement's parameters
/// it takes as `$1..$k` with the types it infers for them, and its outer references.
struct Planned {
    plan: LogicalPlan,
    params: Vec<String>,
    param_types: Vec<Option<DataType>>,
    outer: Vec<Expr>,
    /// The parameterized subquery, when it plans only with values in place (see
    /// [`with_values`]); `plan` is then its plan with NULLs, for the result type.
    replan: Option<Query>,
}

impl Planned {
    /// The arguments of its call: the statement's parameters, then the outer columns.
    fn arguments(&self) -> Vec<Expr> {
        self.params.iter().map(|p| placeholder(p.clone())).chain(self.outer.iter().cloned()).collect()
    }
}

/// Plans a statement; where that fails or leaves a subquery DataFusion cannot run, plans
/// it again with its outermost correlated subqueries evaluated per outer value. Returns
/// None when the fallback does not apply or does not help (the caller keeps its error).
pub async fn plan(ctx: &SessionContext, statement: &Statement) -> Option<LogicalPlan> {
    let Statement::Statement(inner) = statement else { return None };
    let mut rewritten = inner.as_ref().clone();
    let mut found: Vec<(String, Query, Mode)> = Vec::new();
    struct Replace<'a>(&'a mut Vec<(String, Query, Mode)>);
    impl VisitorMut for Replace<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            let Some((query, mode)) = subquery_of(expr) else { return ControlFlow::Continue(()) };
            if qualified_outer_refs(query).is_empty() {
                return ControlFlow::Continue(());
            }
            let name = format!("__correlated_subquery_{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
            self.0.push((name.clone(), query.clone(), mode));
            // Arguments are filled in once the subquery is planned (see below).
            *expr = crate::sql::sql_call(&name, Vec::new());
            ControlFlow::Continue(())
        }
    }
    let _ = VisitMut::visit(&mut rewritten, &mut Replace(&mut found));
    if found.is_empty() {
        return None;
    }
    let mut registered = Vec::new();
    let mut calls: HashMap<String, Vec<Expr>> = HashMap::new();
    let mut param_types: HashMap<String, Vec<Option<DataType>>> = HashMap::new();
    let mut failed = false;
    for (name, query, mode) in found {
        match plan_subquery(ctx, &query).await {
            Some(planned) => {
                let weak = ctx.state_weak_ref();
                let handle: StateHandle = Arc::new(move || weak.upgrade().map(|state| state.read().clone()));
                calls.insert(name.clone(), planned.arguments());
                let arity = planned.params.len() + planned.outer.len();
                param_types.insert(name.clone(), planned.param_types);
                let udf = Correlated::new(&name, planned.plan, planned.replan, mode, handle, arity);
                ctx.register_udf(AsyncScalarUDF::new(Arc::new(udf)).into_scalar_udf());
                registered.push(name.clone());
            }
            None => {
                tracing::debug!(subquery = %query, "a correlated subquery does not plan on its own");
                failed = true;
                break;
            }
        }
    }
    let result = if failed {
        None
    } else {
        struct Fill<'a>(&'a HashMap<String, Vec<Expr>>);
        impl VisitorMut for Fill<'_> {
            type Break = ();
            fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
                if let Expr::Function(function) = expr
                    && let Some(name) = function.name.0.last().and_then(|p| p.as_ident())
                    && let Some(args) = self.0.get(&name.value)
                {
                    *expr = crate::sql::sql_call(&name.value.clone(), args.clone());
                }
                ControlFlow::Continue(())
            }
        }
        let _ = VisitMut::visit(&mut rewritten, &mut Fill(&calls));
        let state = ctx.state();
        match state
            .statement_to_plan(Statement::Statement(Box::new(rewritten)))
            .await
            .and_then(|plan| typed_parameters(plan, &param_types))
        {
            Ok(plan) => Some(plan),
            Err(error) => {
                tracing::debug!(%error, "per-row subquery evaluation did not help");
                None
            }
        }
    };
    // The plan holds the functions it calls; the session's registry need not.
    for name in registered {
        ctx.deregister_udf(&name);
    }
    result
}

/// Gives the statement's parameters passed to a subquery's function the types the
/// subquery infers for them, so the statement reports them (ParameterDescription) and
/// its bound values arrive as the subquery's plan expects.
fn typed_parameters(plan: LogicalPlan, types: &HashMap<String, Vec<Option<DataType>>>) -> DfResult<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| {
        node.map_expressions(|expr| {
            expr.transform_up(|e| {
                let DfExpr::ScalarFunction(mut function) = e else { return Ok(Transformed::no(e)) };
                let Some(types) = types.get(function.name()) else {
                    return Ok(Transformed::no(DfExpr::ScalarFunction(function)));
                };
                for (arg, data_type) in function.args.iter_mut().zip(types) {
                    if let (DfExpr::Placeholder(param), Some(data_type)) = (arg, data_type)
                        && param.field.is_none()
                    {
                        param.field = Some(Arc::new(Field::new(&param.id, data_type.clone(), true)));
                    }
                }
                Ok(Transformed::yes(DfExpr::ScalarFunction(function)))
            })
        })
    })
    .map(|transformed| transformed.data)
}

/// Plans a subquery with its outer references as parameters, finding unqualified outer
/// columns by what the subquery alone cannot resolve.
async fn plan_subquery(ctx: &SessionContext, query: &Query) -> Option<Planned> {
    let params = statement_params(query)?;
    let mut outer = qualified_outer_refs(query);
    for _ in 0..=UNQUALIFIED_OUTER_MAX {
        let statement =
            Statement::Statement(Box::new(sqlast::Statement::Query(Box::new(parameterized(query, &params, &outer)))));
        let error = match ctx.state().statement_to_plan(statement.clone()).await {
            Ok(planned) => {
                let optimized = ctx.state().optimize(&planned);
                let planned = if optimized.as_ref().is_ok_and(|o| !holds_subquery(o)) {
                    planned
                } else {
                    // A correlated subquery inside this one: the same again, one level down.
                    Box::pin(plan(ctx, &statement)).await?
                };
                let mut param_types = super::parameter_types(&planned).ok()?;
                param_types.resize(params.len(), None);
                return Some(Planned { plan: planned, params, param_types, outer, replan: None });
            }
            Err(error) => error,
        };
        // Some relations need their arguments as values at planning (a table function of
        // outer columns: psql's publications footer), so a parameter there never plans.
        // Such a subquery is planned again for each tuple of values; planned with NULLs in
        // their place, it gives its result type now.
        let parameterized_query = parameterized(query, &params, &outer);
        let nulls = vec![ScalarValue::Null; params.len() + outer.len()];
        let error = match with_values(&parameterized_query, &nulls) {
            Some(nulled) => {
                let statement = Statement::Statement(Box::new(sqlast::Statement::Query(Box::new(nulled))));
                match ctx.state().statement_to_plan(statement).await {
                    Ok(planned) if !holds_subquery(&planned) => {
                        let param_types = vec![None; params.len()];
                        return Some(Planned {
                            plan: planned,
                            params,
                            param_types,
                            outer,
                            replan: Some(parameterized_query),
                        });
                    }
                    Ok(_) => return None,
                    Err(nulled_error) if missing_unqualified_column(&nulled_error).is_some() => nulled_error,
                    Err(_) => error,
                }
            }
            None => error,
        };
        let Some(column) = missing_unqualified_column(&error) else {
            tracing::debug!(%error, "correlated subquery");
            return None;
        };
        let ident = Expr::Identifier(Ident::new(column));
        if outer.iter().any(|o| column_key(o) == column_key(&ident)) {
            return None;
        }
        outer.push(ident);
    }
    None
}

/// The session's current state, while the session lives (the function must not keep
/// it alive: the session's registry holds the function while it is planned).
type StateHandle = Arc<dyn Fn() -> Option<SessionState> + Send + Sync>;

/// The async function a correlated subquery becomes.
struct Correlated {
    name: String,
    plan: LogicalPlan,
    /// Planned per tuple of values instead of `plan` (Planned::replan).
    replan: Option<Query>,
    mode: Mode,
    returns: DataType,
    /// Metadata of the result field: the subquery column's (its oid tag makes an oid of
    /// it, see oid_tags.rs); for an array of its values, the oid tag only.
    metadata: HashMap<String, String>,
    signature: Signature,
    state: StateHandle,
}

impl std::fmt::Debug for Correlated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Correlated").field("name", &self.name).finish()
    }
}

impl Correlated {
    fn new(
        name: &str,
        plan: LogicalPlan,
        replan: Option<Query>,
        mode: Mode,
        state: StateHandle,
        arity: usize,
    ) -> Correlated {
        let column = plan.schema().field(0);
        let value = column.data_type().clone();
        let (returns, metadata) = match mode {
            Mode::Scalar => (value, column.metadata().clone()),
            Mode::Array => {
                let tag = datafusion_pg_catalog::pg_catalog::oid_field::OID_ALIAS_KEY;
                let metadata =
                    column.metadata().iter().filter(|(key, _)| *key == tag).map(|(k, v)| (k.clone(), v.clone()));
                (DataType::List(Arc::new(Field::new("item", value, true))), metadata.collect())
            }
        };
        let signature = Signature::new(TypeSignature::Any(arity), Volatility::Volatile);
        Correlated { name: name.to_string(), plan, replan, mode, returns, metadata, signature, state }
    }

    /// The subquery's value for one tuple of outer values.
    async fn evaluate(&self, state: &SessionState, values: Vec<ScalarValue>) -> DfResult<ScalarValue> {
        let plan = match &self.replan {
            None => self.plan.clone().with_param_values(ParamValues::from(values))?,
            Some(query) => {
                let query = with_values(query, &values).ok_or_else(|| {
                    DataFusionError::NotImplemented(format!("{}: an outer value with no SQL literal form", self.name))
                })?;
                state
                    .statement_to_plan(Statement::Statement(Box::new(sqlast::Statement::Query(Box::new(query)))))
                    .await?
            }
        };
        let physical = state.create_physical_plan(&plan).await?;
        let batches: Vec<RecordBatch> = collect(physical, state.task_ctx()).await?;
        let item = match self.mode {
            Mode::Scalar => &self.returns,
            Mode::Array => match &self.returns {
                DataType::List(field) => field.data_type(),
                _ => unreachable!("array mode returns a list"),
            },
        };
        // A plan made with values may type its column more precisely than the NULL plan.
        let columns: Vec<ArrayRef> = batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| datafusion::arrow::compute::cast(b.column(0), item))
            .collect::<Result<_, _>>()?;
        let rows: usize = columns.iter().map(|c| c.len()).sum();
        let values = if columns.is_empty() {
            datafusion::arrow::array::new_empty_array(item)
        } else {
            let refs: Vec<&dyn Array> = columns.iter().map(|c| c.as_ref()).collect();
            concat(&refs)?
        };
        match self.mode {
            Mode::Scalar => match rows {
                0 => ScalarValue::try_from(item),
                1 => ScalarValue::try_from_array(&values, 0),
                _ => Err(DataFusionError::External(Box::new(WsError::new(
                    CARDINALITY_VIOLATION,
                    "more than one row returned by a subquery used as an expression",
                )))),
            },
            Mode::Array => Ok(ScalarValue::List(ScalarValue::new_list_from_iter(
                (0..rows).map(|i| ScalarValue::try_from_array(&values, i)).collect::<DfResult<Vec<_>>>()?.into_iter(),
                item,
                true,
            ))),
        }
    }
}

impl PartialEq for Correlated {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Correlated {}

impl std::hash::Hash for Correlated {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for Correlated {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.returns.clone())
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> DfResult<FieldRef> {
        Ok(Arc::new(Field::new(&self.name, self.returns.clone(), true).with_metadata(self.metadata.clone())))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Err(DataFusionError::Internal(format!("{} runs only asynchronously", self.name)))
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for Correlated {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let arrays: Vec<ArrayRef> = args.args.iter().map(|a| a.to_array(rows)).collect::<DfResult<_>>()?;
        let state =
            (self.state)().ok_or_else(|| DataFusionError::Internal("the session of a subquery is gone".into()))?;
        // Once per distinct tuple of outer values in this batch.
        let mut cache: HashMap<Vec<ScalarValue>, ScalarValue> = HashMap::new();
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            let key: Vec<ScalarValue> =
                arrays.iter().map(|a| ScalarValue::try_from_array(a, row)).collect::<DfResult<_>>()?;
            let value = match cache.get(&key) {
                Some(value) => value.clone(),
                None => {
                    let value = self.evaluate(&state, key.clone()).await?;
                    cache.insert(key, value.clone());
                    value
                }
            };
            out.push(value);
        }
        if out.is_empty() {
            return Ok(ColumnarValue::Array(datafusion::arrow::array::new_empty_array(&self.returns)));
        }
        Ok(ColumnarValue::Array(ScalarValue::iter_to_array(out)?))
    }
}

//! Object identifiers stay object identifiers through the expressions catalog queries
//! build them with: `array_agg` of an oid column is `oid[]`, and a `CASE` whose branches
//! are all oids (or NULL) is an oid, as in PostgreSQL, not `int4[]` and `int4`.
//!
//! An oid is an int4 column tagged with datafusion-pg-catalog's `pg.oid_alias` field
//! metadata (server/encode.rs reports the tag). DataFusion builds a fresh result field
//! for an aggregate and for `CASE`, so the tag would stop there; asyncpg, for one, then
//! meets an `int4[]` in its own type-introspection query (`CASE WHEN t.typtype = 'c'
//! THEN (SELECT array_agg(ia.atttypid) ...) ELSE NULL END`), has no codec for it, and
//! introspects again without end.
//!
//! - `array_agg` is DataFusion's own, delegated call for call, with the argument's tag
//!   copied onto the result field. The tag lives on the outer field only: on a list's
//!   element field it would change the list's data type, which must stay equal to the
//!   arrays the accumulator builds. (`min` and `max` are left alone: physical
//!   optimizations recognize them by their type.)
//! - A projected `CASE` gets the tag of its branches through its alias's metadata
//!   ([`through_case`]), and the schemas above it are computed again.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue, metadata::FieldMetadata};
use datafusion::logical_expr::expr::{AggregateFunction, AggregateFunctionParams, WindowFunctionParams};
use datafusion::logical_expr::function::{AccumulatorArgs, AggregateFunctionSimplification, StateFieldsArgs};
use datafusion::logical_expr::udf_eq::UdfEq;
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, Expr, ExprSchemable, GroupsAccumulator, LogicalPlan,
    Operator, Projection, ReversedUDAF, SetMonotonicity, Signature, StatisticsArgs,
};
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::oid_field::OID_ALIAS_KEY;

/// Replaces `array_agg` on `ctx` with the version that keeps the oid tag.
pub fn register(ctx: &SessionContext) {
    let array_agg = datafusion::functions_aggregate::array_agg::array_agg_udaf();
    ctx.register_udaf(keeping_oid_tag(array_agg.inner().clone()));
}

/// Tags each projected `CASE` whose branches, NULL literals aside, all carry the same oid
/// tag, and computes the schemas above it again so the tag reaches the output. A plan
/// without such a `CASE` is returned as it was.
pub fn through_case(plan: LogicalPlan) -> DfResult<LogicalPlan> {
    let mut found = false;
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::Projection(projection) = node {
            found = projection.expr.iter().any(|e| case_tag(e, projection.input.schema()).is_some());
        }
        Ok(if found { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    })?;
    if !found {
        return Ok(plan);
    }
    plan.transform_up_with_subqueries(|node| {
        let node = match node {
            LogicalPlan::Projection(Projection { expr, input, .. }) => {
                let tagged = expr.into_iter().map(|e| tag_case(e, input.schema())).collect::<DfResult<Vec<_>>>()?;
                LogicalPlan::Projection(Projection::try_new(tagged, input)?)
            }
            other => other.recompute_schema()?,
        };
        Ok(Transformed::yes(node))
    })
    .map(|transformed| transformed.data)
}

/// The tag a projected `CASE` (aliased or not) should carry and does not yet.
fn case_tag(expr: &Expr, schema: &DFSchema) -> Option<String> {
    let Expr::Case(case) = expr.clone().unalias() else { return None };
    let (_, field) = expr.to_field(schema).ok()?;
    if field.metadata().contains_key(OID_ALIAS_KEY) {
        return None;
    }
    let branches = case.when_then_expr.iter().map(|(_, then)| then.as_ref()).chain(case.else_expr.as_deref());
    let mut tag: Option<String> = None;
    for branch in branches {
        if matches!(branch, Expr::Literal(value, _) if value.is_null()) {
            continue;
        }
        let (_, field) = branch.to_field(schema).ok()?;
        let branch_tag = field.metadata().get(OID_ALIAS_KEY)?;
        if tag.as_ref().is_some_and(|t| t != branch_tag) {
            return None;
        }
        tag = Some(branch_tag.clone());
    }
    tag
}

fn tag_case(expr: Expr, schema: &DFSchema) -> DfResult<Expr> {
    let Some(tag) = case_tag(&expr, schema) else { return Ok(expr) };
    let tag = FieldMetadata::from(std::collections::HashMap::from([(OID_ALIAS_KEY.to_string(), tag)]));
    Ok(match expr {
        Expr::Alias(mut alias) => {
            let mut metadata = alias.metadata.take().unwrap_or_default();
            metadata.extend(tag);
            alias.metadata = Some(metadata);
            Expr::Alias(alias)
        }
        other => {
            let name = other.schema_name().to_string();
            other.alias_with_metadata(name, Some(tag))
        }
    })
}

fn keeping_oid_tag(inner: Arc<dyn AggregateUDFImpl>) -> AggregateUDF {
    AggregateUDF::new_from_impl(KeepsOidTag { inner: inner.into() })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct KeepsOidTag {
    inner: UdfEq<Arc<dyn AggregateUDFImpl>>,
}

impl AggregateUDFImpl for KeepsOidTag {
    /// The one method that adds something: the argument's oid tag on the result field.
    fn return_field(&self, arg_fields: &[FieldRef]) -> DfResult<FieldRef> {
        let field = self.inner.return_field(arg_fields)?;
        let tag = arg_fields
            .first()
            .filter(|arg| *arg.data_type() == DataType::Int32)
            .and_then(|arg| arg.metadata().get(OID_ALIAS_KEY));
        let Some(tag) = tag else { return Ok(field) };
        let mut metadata = field.metadata().clone();
        metadata.insert(OID_ALIAS_KEY.to_string(), tag.clone());
        Ok(Arc::new(field.as_ref().clone().with_metadata(metadata)))
    }

    /// A reversed aggregate (`array_agg` read backwards over sorted input) keeps the tag
    /// too, so the physical plan's fields stay those of the logical plan.
    fn reverse_expr(&self) -> ReversedUDAF {
        match self.inner.reverse_expr() {
            ReversedUDAF::Reversed(reversed) => {
                ReversedUDAF::Reversed(Arc::new(keeping_oid_tag(reversed.inner().clone())))
            }
            other => other,
        }
    }

    fn with_beneficial_ordering(
        self: Arc<Self>,
        beneficial_ordering: bool,
    ) -> DfResult<Option<Arc<dyn AggregateUDFImpl>>> {
        let reordered = Arc::clone(&self.inner).with_beneficial_ordering(beneficial_ordering)?;
        Ok(reordered.map(|inner| Arc::new(KeepsOidTag { inner: inner.into() }) as Arc<dyn AggregateUDFImpl>))
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(arg_types)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        self.inner.accumulator(args)
    }

    fn schema_name(&self, params: &AggregateFunctionParams) -> DfResult<String> {
        self.inner.schema_name(params)
    }

    fn human_display(&self, params: &AggregateFunctionParams) -> DfResult<String> {
        self.inner.human_display(params)
    }

    fn window_function_schema_name(&self, params: &WindowFunctionParams) -> DfResult<String> {
        self.inner.window_function_schema_name(params)
    }

    fn display_name(&self, params: &AggregateFunctionParams) -> DfResult<String> {
        self.inner.display_name(params)
    }

    fn window_function_display_name(&self, params: &WindowFunctionParams) -> DfResult<String> {
        self.inner.window_function_display_name(params)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.inner.groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn GroupsAccumulator>> {
        self.inner.create_groups_accumulator(args)
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        self.inner.create_sliding_accumulator(args)
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.inner.order_sensitivity()
    }

    fn simplify(&self) -> Option<AggregateFunctionSimplification> {
        self.inner.simplify()
    }

    fn simplify_expr_op_literal(
        &self,
        function: &AggregateFunction,
        arg: &Expr,
        op: Operator,
        literal: &Expr,
        arg_is_left: bool,
    ) -> DfResult<Option<Expr>> {
        self.inner.simplify_expr_op_literal(function, arg, op, literal, arg_is_left)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn is_nullable(&self) -> bool {
        self.inner.is_nullable()
    }

    fn is_descending(&self) -> Option<bool> {
        self.inner.is_descending()
    }

    fn value_from_stats(&self, args: &StatisticsArgs) -> Option<ScalarValue> {
        self.inner.value_from_stats(args)
    }

    fn default_value(&self, data_type: &DataType) -> DfResult<ScalarValue> {
        self.inner.default_value(data_type)
    }

    fn supports_null_handling_clause(&self) -> bool {
        self.inner.supports_null_handling_clause()
    }

    fn supports_within_group_clause(&self) -> bool {
        self.inner.supports_within_group_clause()
    }

    fn set_monotonicity(&self, data_type: &DataType) -> SetMonotonicity {
        self.inner.set_monotonicity(data_type)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

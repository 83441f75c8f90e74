//! Correlated scalar subqueries in the shape PostgreSQL clients' catalog queries use them,
//! rewritten on the AST into a shape DataFusion can decorrelate, without changing results.
//!
//! psql's `\d`, pgJDBC's `getTypeInfo` and others select a column from a correlated
//! subquery that is not aggregated (`(SELECT c.relkind = 'c' FROM pg_class c WHERE c.oid =
//! t.typrelid)`). PostgreSQL returns the one row's value, NULL for no row, and fails for
//! several; DataFusion refuses such subqueries unless they aggregate. Three rewrites, each
//! exact:
//!
//! 1. the selected expression is wrapped in [`SINGLE_VALUE`], an aggregate with exactly
//!    PostgreSQL's semantics (NULL on no row, the value on one, SQLSTATE 21000 on more);
//! 2. a conjunct of the subquery's WHERE that reads only outer columns (`a.atthasdef`) moves
//!    out: `CASE WHEN <conjunct> THEN (subquery) END`;
//! 3. where the WHERE equates an outer column with an inner one (`c.oid = a.attcollation`),
//!    the outer column is replaced by the inner one in the other conjuncts
//!    (`a.attcollation <> t.typcollation` becomes `c.oid <> t.typcollation`), leaving only
//!    equalities to correlate on, which DataFusion decorrelates into joins.
//!
//! A fourth rewrite handles aggregate subqueries correlated by comparisons other than
//! equality (`(SELECT count(*) FROM t1 AS x WHERE x.b < t1.b)`), which DataFusion cannot
//! decorrelate at all, see [`aggregates_over_domain`].
//!
//! Columns are told apart by their qualifier (the relation part of `q.c` or `s.q.c`): one
//! naming a relation of the subquery's FROM is inner, any other is outer; a subquery with unqualified columns in its WHERE is
//! left as it is.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};
use datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, CaseWhen, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments,
    GroupByExpr, Ident, ObjectName, Query, SelectItem, SetExpr, Statement, TableFactor, visit_expressions_mut,
};

use crate::error::WsError;

/// Name of the aggregate rewrite 1 wraps selected expressions in.
pub const SINGLE_VALUE: &str = "scalar_subquery_value";

/// Aggregates whose presence means a subquery already returns one row.
const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "first_value",
    "last_value",
    "json_agg",
    "jsonb_agg",
    "stddev",
    "variance",
    SINGLE_VALUE,
];

pub fn rewrite(statement: &mut Statement) {
    aggregates_over_domain(statement);
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::Subquery(query) = expr
            && let Some(rewritten) = rewrite_scalar_subquery(query)
        {
            *expr = rewritten;
        }
        ControlFlow::<()>::Continue(())
    });
}

fn rewrite_scalar_subquery(query: &Query) -> Option<Expr> {
    if query.limit_clause.is_some() || query.fetch.is_some() || query.with.is_some() {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else { return None };
    if select.distinct.is_some() || select.having.is_some() || select.from.is_empty() {
        return None;
    }
    if !matches!(&select.group_by, GroupByExpr::Expressions(exprs, _) if exprs.is_empty()) {
        return None;
    }
    let [item] = select.projection.as_slice() else { return None };
    let (selected, alias) = match item {
        SelectItem::UnnamedExpr(e) => (e, None),
        SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias)),
        _ => return None,
    };
    if contains_aggregate(selected) {
        return None;
    }
    let inner = from_names(select);
    let selection = select.selection.as_ref()?;
    let mut conjuncts = Vec::new();
    split_and(selection, &mut conjuncts);
    let mut correlated = false;
    for conjunct in &conjuncts {
        let columns = columns(conjunct)?;
        correlated |= columns.iter().any(|qualifier| !inner.contains(qualifier));
    }
    if !correlated {
        return None;
    }

    // 2: conjuncts over outer columns only leave the subquery.
    let (outer_only, mut kept): (Vec<Expr>, Vec<Expr>) = conjuncts.into_iter().cloned().partition(|conjunct| {
        columns(conjunct).is_some_and(|cols| !cols.is_empty() && cols.iter().all(|q| !inner.contains(q)))
    });
    // 3: outer columns equated with inner ones are replaced by them elsewhere.
    let equalities: Vec<(Expr, Expr)> = kept
        .iter()
        .filter_map(|conjunct| match conjunct {
            Expr::BinaryOp { left, op: BinaryOperator::Eq, right } => match (qualifier(left), qualifier(right)) {
                (Some(l), Some(r)) if inner.contains(&l) && !inner.contains(&r) => {
                    Some((right.as_ref().clone(), left.as_ref().clone()))
                }
                (Some(l), Some(r)) if !inner.contains(&l) && inner.contains(&r) => {
                    Some((left.as_ref().clone(), right.as_ref().clone()))
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    for conjunct in kept.iter_mut() {
        let is_equality = equalities.iter().any(|(outer, inner)| {
            matches!(conjunct, Expr::BinaryOp { left, op: BinaryOperator::Eq, right }
                if (left.as_ref() == outer && right.as_ref() == inner) || (left.as_ref() == inner && right.as_ref() == outer))
        });
        if !is_equality {
            for (outer, inner) in &equalities {
                replace(conjunct, outer, inner);
            }
            // A correlation other than column equality (SQLAlchemy's identity options:
            // `seqrelid = CAST(pg_get_serial_sequence(outer..) AS REGCLASS)`) cannot become
            // a join key; the subquery is left whole to the per-outer-value evaluation of
            // session/correlated.rs, which these rewrites would only get in the way of.
            if columns(conjunct)?.iter().any(|q| !inner.contains(q)) {
                return None;
            }
        }
    }

    // 1: the selected value through the single-row aggregate. DataFusion cannot aggregate
    // an expression that reads outer columns, so such an expression is computed outside:
    // the subquery yields the inner columns it reads as one struct (NULL when no row
    // matched, keeping the whole value NULL then), and the expression reads the fields.
    let selected_columns = columns(selected)?;
    let reads_outer = selected_columns.iter().any(|q| !inner.contains(q));
    let mut inner_refs: Vec<Expr> = Vec::new();
    if reads_outer {
        let mut copy = selected.clone();
        let _ = visit_expressions_mut(&mut copy, |e| {
            if qualifier(e).is_some_and(|q| inner.contains(&q)) && !inner_refs.contains(e) {
                inner_refs.push(e.clone());
            }
            ControlFlow::<()>::Continue(())
        });
    }
    let value = if reads_outer {
        let mut fields = Vec::new();
        for (index, column) in inner_refs.iter().enumerate() {
            fields.push(Expr::Value(
                datafusion::sql::sqlparser::ast::Value::SingleQuotedString(format!("c{index}")).into(),
            ));
            fields.push(column.clone());
        }
        if fields.is_empty() {
            fields.push(Expr::Value(datafusion::sql::sqlparser::ast::Value::SingleQuotedString("c".into()).into()));
            fields.push(Expr::Value(datafusion::sql::sqlparser::ast::Value::Boolean(true).into()));
        }
        call("named_struct", fields)
    } else {
        selected.clone()
    };
    let mut query = query.clone();
    let SetExpr::Select(select) = query.body.as_mut() else { unreachable!("checked above") };
    let wrapped = call(SINGLE_VALUE, vec![value]);
    select.projection = vec![match alias {
        Some(alias) if !reads_outer => SelectItem::ExprWithAlias { expr: wrapped, alias: alias.clone() },
        _ => SelectItem::UnnamedExpr(wrapped),
    }];
    select.selection = and_all(kept);
    let mut subquery = Expr::Subquery(Box::new(query));
    if reads_outer {
        let row = subquery.clone();
        let mut outside = selected.clone();
        for (index, column) in inner_refs.iter().enumerate() {
            let field = Expr::CompoundFieldAccess {
                root: Box::new(Expr::Nested(Box::new(row.clone()))),
                access_chain: vec![datafusion::sql::sqlparser::ast::AccessExpr::Subscript(
                    datafusion::sql::sqlparser::ast::Subscript::Index {
                        index: Expr::Value(
                            datafusion::sql::sqlparser::ast::Value::SingleQuotedString(format!("c{index}")).into(),
                        ),
                    },
                )],
            };
            replace(&mut outside, column, &field);
        }
        subquery = Expr::Case {
            case_token: AttachedToken::empty(),
            end_token: AttachedToken::empty(),
            operand: None,
            conditions: vec![CaseWhen { condition: Expr::IsNotNull(Box::new(row)), result: outside }],
            else_result: None,
        };
    }
    Some(match and_all(outer_only) {
        None => subquery,
        Some(condition) => Expr::Case {
            case_token: AttachedToken::empty(),
            end_token: AttachedToken::empty(),
            operand: None,
            conditions: vec![CaseWhen { condition, result: subquery }],
            else_result: None,
        },
    })
}

/// Rewrite 4. In a query over one table `o` (named once in the whole statement, so every
/// `o.c` means its columns), a subquery `(SELECT agg(..) FROM r WHERE p)` whose `p` compares
/// inner columns with `o`'s columns other than by equality is computed once per distinct
/// value of those outer columns (their domain), then looked up by equality, which
/// DataFusion decorrelates:
///
/// `(SELECT v FROM (SELECT d.k0 AS k0, agg(..) AS v FROM (SELECT DISTINCT c AS k0 FROM o)
/// AS d JOIN r ON p[o.c := d.k0] GROUP BY d.k0) AS g WHERE g.k0 = o.c)`
///
/// Exact because every conjunct of `p` that reads an outer column is a comparison of
/// NULL-propagating operands: an outer NULL matches no inner row, as the failed lookup
/// does; a domain value no inner row matches has no group, so the lookup gives NULL,
/// which is `agg` over no row except for `count`, wrapped in `coalesce(.., 0)`.
fn aggregates_over_domain(statement: &mut Statement) {
    let Statement::Query(query) = statement else { return };
    let SetExpr::Select(select) = query.body.as_ref() else { return };
    let [from] = select.from.as_slice() else { return };
    if !from.joins.is_empty() {
        return;
    }
    let TableFactor::Table { name, alias, args: None, .. } = &from.relation else { return };
    let outer = match alias {
        Some(alias) => alias.name.value.to_lowercase(),
        None => match name.0.last().and_then(|part| part.as_ident()) {
            Some(ident) => ident.value.to_lowercase(),
            None => return,
        },
    };
    let table = name.to_string();
    // Only subqueries directly in this query: deeper ones could sit inside a subquery
    // whose own relation is also called `outer`, shadowing it.
    struct Direct<'a> {
        outer: &'a str,
        table: &'a str,
        depth: usize,
        counter: usize,
    }
    impl datafusion::sql::sqlparser::ast::VisitorMut for Direct<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, _query: &mut Query) -> ControlFlow<()> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _query: &mut Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if self.depth == 1
                && let Expr::Subquery(subquery) = expr
                && let Some(rewritten) = aggregate_over_domain(subquery, self.outer, self.table, self.counter)
            {
                *expr = rewritten;
                self.counter += 1;
            }
            ControlFlow::Continue(())
        }
    }
    let mut visitor = Direct { outer: &outer, table: &table, depth: 0, counter: 0 };
    let _ = datafusion::sql::sqlparser::ast::VisitMut::visit(query.as_mut(), &mut visitor);
}

fn aggregate_over_domain(query: &Query, outer: &str, table: &str, counter: usize) -> Option<Expr> {
    if query.limit_clause.is_some() || query.fetch.is_some() || query.with.is_some() || query.order_by.is_some() {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else { return None };
    if select.distinct.is_some() || select.having.is_some() {
        return None;
    }
    if !matches!(&select.group_by, GroupByExpr::Expressions(exprs, _) if exprs.is_empty()) {
        return None;
    }
    let [from] = select.from.as_slice() else { return None };
    if !from.joins.is_empty() || !matches!(from.relation, TableFactor::Table { args: None, .. }) {
        return None;
    }
    let inner = from_names(select);
    if inner.len() != 1 || inner.contains(outer) {
        return None;
    }
    let [SelectItem::UnnamedExpr(selected)] = select.projection.as_slice() else { return None };
    let Expr::Function(function) = selected else { return None };
    let function_name = function.name.0.last().and_then(|part| part.as_ident())?.value.to_lowercase();
    if !["count", "sum", "min", "max", "avg"].contains(&function_name.as_str())
        || function.over.is_some()
        || function.filter.is_some()
    {
        return None;
    }
    if !columns(selected)?.iter().all(|q| inner.contains(q)) {
        return None;
    }
    let mut conjuncts = Vec::new();
    split_and(select.selection.as_ref()?, &mut conjuncts);
    let mut outer_columns: Vec<Expr> = Vec::new();
    let mut non_equality = false;
    for conjunct in &conjuncts {
        let qualifiers = columns(conjunct)?;
        if qualifiers.iter().any(|q| q != outer && !inner.contains(q)) {
            return None;
        }
        if !qualifiers.iter().any(|q| q == outer) {
            continue;
        }
        let Expr::BinaryOp { left, op, right } = conjunct else { return None };
        use BinaryOperator::*;
        if !matches!(op, Lt | LtEq | Gt | GtEq | Eq | NotEq) || !null_propagating(left) || !null_propagating(right) {
            return None;
        }
        non_equality |= *op != Eq;
        let mut copy = (*conjunct).clone();
        let _ = visit_expressions_mut(&mut copy, |e| {
            if qualifier(e).as_deref() == Some(outer) && !outer_columns.contains(e) {
                outer_columns.push(e.clone());
            }
            ControlFlow::<()>::Continue(())
        });
    }
    if !non_equality || outer_columns.is_empty() {
        return None;
    }
    let domain = format!("__ws_domain{counter}");
    let groups = format!("__ws_groups{counter}");
    let mut condition = select.selection.clone()?;
    let mut keys = Vec::new();
    let mut distinct = Vec::new();
    let mut lookup = Vec::new();
    for (index, column) in outer_columns.iter().enumerate() {
        let Expr::CompoundIdentifier(parts) = column else { return None };
        let last = parts.last()?;
        replace(
            &mut condition,
            column,
            &Expr::CompoundIdentifier(vec![Ident::new(&domain), Ident::new(format!("k{index}"))]),
        );
        keys.push(format!("{domain}.k{index}"));
        distinct.push(format!("{last} AS k{index}"));
        lookup.push(format!("{groups}.k{index} = {column}"));
    }
    let sql = format!(
        "(SELECT {groups}.v FROM (SELECT {key_list}, {selected} AS v FROM (SELECT DISTINCT {distinct} FROM {table}) AS {domain} \
         JOIN {relation} ON {condition} GROUP BY {group_list}) AS {groups} WHERE {lookup})",
        key_list = keys.iter().enumerate().map(|(i, k)| format!("{k} AS k{i}")).collect::<Vec<_>>().join(", "),
        group_list = keys.join(", "),
        distinct = distinct.join(", "),
        relation = from.relation,
        lookup = lookup.join(" AND "),
    );
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    let lookup =
        datafusion::sql::sqlparser::parser::Parser::new(&dialect).try_with_sql(&sql).ok()?.parse_expr().ok()?;
    Some(if function_name == "count" {
        call(
            "coalesce",
            vec![lookup, Expr::Value(datafusion::sql::sqlparser::ast::Value::Number("0".into(), false).into())],
        )
    } else {
        lookup
    })
}

/// Whether an expression is NULL whenever a column it reads is NULL.
fn null_propagating(expr: &Expr) -> bool {
    use BinaryOperator::*;
    match expr {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Value(_) => true,
        Expr::Nested(inner) | Expr::UnaryOp { expr: inner, .. } => null_propagating(inner),
        Expr::BinaryOp { left, op: Plus | Minus | Multiply | Divide | Modulo, right } => {
            null_propagating(left) && null_propagating(right)
        }
        _ => false,
    }
}

/// `name(args...)` as an AST function call.
pub(crate) fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args.into_iter().map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e))).collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

fn split_and<'a>(expr: &'a Expr, out: &mut Vec<&'a Expr>) {
    match expr {
        Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
            split_and(left, out);
            split_and(right, out);
        }
        Expr::Nested(inner) if matches!(inner.as_ref(), Expr::BinaryOp { op: BinaryOperator::And, .. }) => {
            split_and(inner, out)
        }
        other => out.push(other),
    }
}

fn and_all(exprs: Vec<Expr>) -> Option<Expr> {
    exprs.into_iter().reduce(|left, right| Expr::BinaryOp {
        left: Box::new(left),
        op: BinaryOperator::And,
        right: Box::new(right),
    })
}

/// Relation names (aliases, else table names) of a SELECT's FROM, lower case.
fn from_names(select: &datafusion::sql::sqlparser::ast::Select) -> HashSet<String> {
    let mut names = HashSet::new();
    let factors =
        select.from.iter().flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)));
    for factor in factors {
        let name = match factor {
            TableFactor::Table { alias: Some(alias), .. } | TableFactor::Derived { alias: Some(alias), .. } => {
                Some(alias.name.value.clone())
            }
            TableFactor::Table { name, .. } => name.0.last().and_then(|part| part.as_ident()).map(|i| i.value.clone()),
            TableFactor::Function { alias: Some(alias), .. } | TableFactor::UNNEST { alias: Some(alias), .. } => {
                Some(alias.name.value.clone())
            }
            _ => None,
        };
        if let Some(name) = name {
            names.insert(name.to_lowercase());
        }
    }
    names
}

/// The relation a `q.column` or `schema.q.column` reference names.
fn qualifier(expr: &Expr) -> Option<String> {
    match expr {
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => Some(parts[parts.len() - 2].value.to_lowercase()),
        _ => None,
    }
}

/// Qualifiers of every column an expression reads; None if it reads an unqualified
/// column (inner or outer cannot be told) or holds a nested subquery.
fn columns(expr: &Expr) -> Option<Vec<String>> {
    let mut found = Vec::new();
    let mut unknown = false;
    let mut copy = expr.clone();
    let _ = visit_expressions_mut(&mut copy, |e| {
        match e {
            Expr::Identifier(_) | Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => unknown = true,
            Expr::CompoundIdentifier(_) => match qualifier(e) {
                Some(q) => found.push(q),
                None => unknown = true,
            },
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    (!unknown).then_some(found)
}

fn contains_aggregate(expr: &Expr) -> bool {
    let mut found = false;
    let mut copy = expr.clone();
    let _ = visit_expressions_mut(&mut copy, |e| {
        if let Expr::Function(f) = e
            && f.over.is_none()
            && let Some(name) = f.name.0.last().and_then(|p| p.as_ident())
            && AGGREGATES.contains(&name.value.to_lowercase().as_str())
        {
            found = true;
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

fn replace(expr: &mut Expr, from: &Expr, to: &Expr) {
    let _ = visit_expressions_mut(expr, |e| {
        if e == from {
            *e = to.clone();
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `scalar_subquery_value(x)`: NULL over no row, x over one row, SQLSTATE 21000 over more.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SingleValue {
    signature: Signature,
}

pub fn single_value_udaf() -> AggregateUDF {
    AggregateUDF::new_from_impl(SingleValue { signature: Signature::any(1, Volatility::Immutable) })
}

impl AggregateUDFImpl for SingleValue {
    fn name(&self) -> &str {
        SINGLE_VALUE
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types[0].clone())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let null = ScalarValue::try_from(args.return_field.data_type())?;
        Ok(Box::new(SingleValueAccumulator { value: null, rows: 0 }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(format!("{}[value]", args.name), args.return_field.data_type().clone(), true)),
            Arc::new(Field::new(format!("{}[rows]", args.name), DataType::Int64, false)),
        ])
    }
}

#[derive(Debug)]
struct SingleValueAccumulator {
    value: ScalarValue,
    rows: i64,
}

impl SingleValueAccumulator {
    fn add(&mut self, value: ScalarValue, rows: i64) -> DfResult<()> {
        if rows == 0 {
            return Ok(());
        }
        self.rows += rows;
        if self.rows > 1 {
            return Err(DataFusionError::External(Box::new(WsError::new(
                crate::error::sqlstate::CARDINALITY_VIOLATION,
                "more than one row returned by a subquery used as an expression",
            ))));
        }
        self.value = value;
        Ok(())
    }
}

impl Accumulator for SingleValueAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let values = &values[0];
        for row in 0..values.len() {
            self.add(ScalarValue::try_from_array(values, row)?, 1)?;
        }
        Ok(())
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        Ok(self.value.clone())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.value.size()
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![self.value.clone(), ScalarValue::Int64(Some(self.rows))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let rows = states[1].as_any().downcast_ref::<Int64Array>().expect("rows state is Int64");
        for row in 0..rows.len() {
            self.add(ScalarValue::try_from_array(&states[0], row)?, rows.value(row))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut statements = crate::sql::parse(sql).unwrap();
        match statements.remove(0) {
            crate::sql::WsStatement::Sql(datafusion::sql::parser::Statement::Statement(s)) => s.to_string(),
            crate::sql::WsStatement::Sql(other) => other.to_string(),
            other => panic!("not a DataFusion statement: {other:?}"),
        }
    }

    #[test]
    fn correlated_subqueries_get_aggregated_and_outer_conjuncts_move_out() {
        let sql = rewritten("SELECT (SELECT d.x FROM d WHERE d.id = a.id AND a.flag) FROM a");
        assert!(sql.contains("CASE WHEN a.flag THEN (SELECT scalar_subquery_value(d.x)"), "{sql}");
        let sql =
            rewritten("SELECT (SELECT c.n FROM c, t WHERE c.oid = a.coll AND t.oid = a.typ AND a.coll <> t.tc) FROM a");
        assert!(sql.contains("c.oid <> t.tc"), "{sql}");
        let outside = rewritten("SELECT (SELECT f(d.x, a.y) FROM d WHERE d.id = a.id) FROM a");
        assert!(outside.contains("named_struct('c0', d.x)") && outside.contains("['c0'], a.y)"), "{outside}");
        let untouched = rewritten("SELECT (SELECT max(d.x) FROM d WHERE d.id = a.id) FROM a");
        assert!(!untouched.contains(SINGLE_VALUE), "{untouched}");
        let uncorrelated = rewritten("SELECT (SELECT d.x FROM d WHERE d.id = 1) FROM a");
        assert!(!uncorrelated.contains(SINGLE_VALUE), "{uncorrelated}");
        // Correlated other than by column equality: left whole for per-outer-value evaluation.
        let by_expression = rewritten("SELECT (SELECT f(d.x, a.y) FROM d WHERE a.k <> '' AND d.id = g(a.id)) FROM a");
        assert!(!by_expression.contains(SINGLE_VALUE) && !by_expression.contains("CASE"), "{by_expression}");
    }

    #[test]
    fn single_value_semantics() {
        let mut acc = SingleValueAccumulator { value: ScalarValue::Int64(None), rows: 0 };
        acc.update_batch(&[Arc::new(Int64Array::from(Vec::<i64>::new()))]).unwrap();
        assert_eq!(acc.evaluate().unwrap(), ScalarValue::Int64(None));
        acc.update_batch(&[Arc::new(Int64Array::from(vec![7]))]).unwrap();
        assert_eq!(acc.evaluate().unwrap(), ScalarValue::Int64(Some(7)));
        assert!(acc.update_batch(&[Arc::new(Int64Array::from(vec![8]))]).is_err());
    }
}

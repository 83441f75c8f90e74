//! PostgreSQL's `int2vector` and `oidvector` (`pg_index.indkey`, `indoption`...) are
//! subscripted from 0, unlike arrays, which start at 1; pgJDBC's getIndexInfo reads
//! `indoption[position - 1]`. pg_catalog gives such columns Arrow lists marked with
//! [`VECTOR_METADATA_KEY`] (the mark follows the column through aliases and subqueries),
//! and this analyzer rule turns `v[i]` on a marked list into DataFusion's 1-based `v[i + 1]`.

use std::collections::HashMap;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result as DfResult};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, lit};
use datafusion::optimizer::AnalyzerRule;

/// Field metadata key marking a zero-based vector column; the value names the type.
pub const VECTOR_METADATA_KEY: &str = "pg.vector";

/// Metadata of an `int2vector` / `oidvector` column.
pub fn vector_metadata(type_name: &str) -> HashMap<String, String> {
    HashMap::from([(VECTOR_METADATA_KEY.to_string(), type_name.to_string())])
}

#[derive(Debug, Default)]
pub struct ZeroBasedVectors;

fn is_vector(expr: &Expr, schema: &DFSchema) -> bool {
    expr.to_field(schema).is_ok_and(|(_, field)| field.metadata().contains_key(VECTOR_METADATA_KEY))
}

impl AnalyzerRule for ZeroBasedVectors {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let mut schema = DFSchema::empty();
            for input in node.inputs() {
                schema.merge(input.schema());
            }
            // Result columns keep their names (`v[0]`), whatever the index becomes.
            let names = NamePreserver::new(&node);
            node.map_expressions(|expr| {
                let saved = names.save(&expr);
                let rewritten = expr.transform_up(|e| match e {
                    Expr::ScalarFunction(mut call)
                        if call.func.name() == "array_element"
                            && call.args.len() == 2
                            && is_vector(&call.args[0], &schema) =>
                    {
                        let index = call.args.pop().expect("two arguments");
                        call.args.push(index + lit(1i64));
                        Ok(Transformed::yes(Expr::ScalarFunction(call)))
                    }
                    other => Ok(Transformed::no(other)),
                })?;
                Ok(if rewritten.transformed { rewritten.update_data(|e| saved.restore(e)) } else { rewritten })
            })
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "zero_based_vectors"
    }
}

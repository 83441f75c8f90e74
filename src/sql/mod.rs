//! sql/: our SQL dialect on top of DataFusion's parser, and the planning extensions that
//! give it meaning: time travel (`VERSION AS OF`, `TIMESTAMP AS OF`) planned through
//! DataFusion's relation planner extension point.
//!
//! Parsing never prints SQL back to text: the session plans the AST it gets from here.
//! PostgreSQL-isms that clients' metadata queries use (`OPERATOR(pg_catalog.~)`,
//! `'t'::regclass`, unqualified `pg_class`...) are rewritten on the AST by
//! datafusion-pg-catalog's rules; its whole-query token substitutions are not used.
//! Correlated scalar subqueries get our own exact rewrite (subqueries.rs).

mod dialect;
mod regproc;
mod subqueries;
mod time_travel;

use datafusion::sql::parser::{DFParserBuilder, Statement};
use datafusion_pg_catalog::sql::rules::{self, SqlStatementRewriteRule};

pub use dialect::WatershedDialect;
pub use subqueries::single_value_udaf;
pub use time_travel::{PinKey, TimeTravelPlanner, VersionSpec, names_our_schema, normalized_table_name, time_travel_refs};

use crate::error::{WsError, WsResult, sqlstate};

/// Nesting depth the parser accepts before refusing a statement (54001 beyond it).
pub const PARSER_RECURSION_LIMIT: usize = 256;

/// Parses one message's SQL text into statements, in order.
pub fn parse(sql: &str) -> WsResult<Vec<Statement>> {
    let dialect = WatershedDialect::default();
    let mut parser = DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .build()
        .map_err(WsError::from)?;
    let statements = parser.parse_statements().map_err(|error| {
        let mut error = WsError::from(error);
        if error.message.contains("recursion limit") {
            error.code = sqlstate::STATEMENT_TOO_COMPLEX;
        }
        error
    })?;
    Ok(statements.into_iter().map(pg_compat_rewrite).collect())
}

/// AST rewrites from datafusion-pg-catalog that make PostgreSQL clients' catalog
/// queries plannable by DataFusion. Two of its default rules are left out because
/// they change results: `RemoveSubqueryFromProjection` replaces correlated scalar
/// subqueries with NULL, and `AliasDuplicatedProjectionRewrite` renames columns.
static PG_COMPAT_RULES: std::sync::LazyLock<Vec<Box<dyn SqlStatementRewriteRule>>> =
    std::sync::LazyLock::new(|| {
        vec![
            Box::new(rules::ResolveUnqualifiedIdentifier),
            Box::new(rules::RewriteArrayAnyAllOperation),
            Box::new(rules::PrependUnqualifiedPgTableName),
            Box::new(rules::StripCallableQualifier),
            Box::new(rules::FixArrayLiteral),
            Box::new(rules::CurrentUserVariableToSessionUserFunctionCall),
            Box::new(rules::StripCollate),
            Box::new(rules::RewritePgCatalogOperator),
            Box::new(rules::RewriteRegCastToSubquery::new()),
            Box::new(rules::FixVersionColumnName),
        ]
    });

fn pg_compat_rewrite(statement: Statement) -> Statement {
    match statement {
        Statement::Statement(inner) => {
            let mut inner = *inner;
            regproc::rewrite(&mut inner);
            let mut rewritten = PG_COMPAT_RULES.iter().fold(inner, |s, rule| rule.rewrite(s));
            subqueries::rewrite(&mut rewritten);
            Statement::Statement(Box::new(rewritten))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_statements_parse_in_order() {
        let statements = parse("SELECT 1; SELECT 2;").unwrap();
        assert_eq!(statements.len(), 2);
    }

    #[test]
    fn syntax_error_is_42601() {
        let error = parse("SELEC 1").unwrap_err();
        assert_eq!(error.code, sqlstate::SYNTAX_ERROR);
    }

    #[test]
    fn version_as_of_parses() {
        let statements = parse("SELECT * FROM t VERSION AS OF 3 WHERE x = 1").unwrap();
        let refs = time_travel_refs(&statements[0]).unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].1, VersionSpec::Version(3));
    }

    #[test]
    fn timestamp_as_of_parses() {
        let statements = parse("SELECT * FROM t TIMESTAMP AS OF '2026-01-01 00:00:00' x").unwrap();
        let refs = time_travel_refs(&statements[0]).unwrap();
        assert_eq!(refs.len(), 1);
        assert!(matches!(refs[0].1, VersionSpec::Timestamp(_)));
    }
}

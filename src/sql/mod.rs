//! sql/: our SQL dialect on top of DataFusion's parser, and the planning extensions that
//! give it meaning: time travel (`VERSION AS OF`, `TIMESTAMP AS OF`) planned through
//! DataFusion's relation planner extension point; window table functions (`TUMBLE`, `HOP`,
//! `CUMULATE`, `SESSION`) planned the same way (windows/).
//!
//! Parsing never prints SQL back to text: the session plans the AST it gets from here.
//! PostgreSQL-isms that clients' metadata queries use (`OPERATOR(pg_catalog.~)`,
//! `'t'::regclass`, unqualified `pg_class`...) are rewritten on the AST by
//! datafusion-pg-catalog's rules; its whole-query token substitutions are not used.
//! Correlated scalar subqueries get our own exact rewrite (subqueries.rs).

mod array_literals;
mod continuous;
mod cursor_move;
mod dialect;
mod maintenance;
pub mod model;
mod output_names;
mod regproc;
mod source;
mod subqueries;
mod time_travel;
pub mod upsert;
mod vectors;
mod views;
pub mod windows;

use datafusion::sql::parser::{DFParserBuilder, Statement};
use datafusion::sql::sqlparser::tokenizer::Token;
use datafusion_pg_catalog::sql::rules::{self, SqlStatementRewriteRule};

pub use array_literals::ArrayTextLiterals;
pub use continuous::{SinkInput, Subscribe};
pub use dialect::WatershedDialect;
pub use maintenance::LakeStatement;
pub use output_names::display_name;
pub use source::StreamStatement;
pub(crate) use subqueries::call as sql_call;
pub use subqueries::single_value_udaf;
pub use time_travel::{
    PinKey, TimeTravelPlanner, VersionSpec, names_our_schema, normalized_table_name, time_travel_refs,
};
pub use vectors::{ZeroBasedVectors, vector_metadata};
pub use views::CreateView;

use crate::error::{WsError, WsResult, sqlstate};

/// Nesting depth the parser accepts before refusing a statement (54001 beyond it).
pub const PARSER_RECURSION_LIMIT: usize = 256;

/// One parsed statement: DataFusion's, or one of ours about streams.
#[derive(Debug, Clone)]
pub enum WsStatement {
    Sql(Statement),
    Stream(StreamStatement),
    /// `OPTIMIZE t`, `VACUUM t` (maintenance.rs).
    Lake(LakeStatement),
    /// CREATE/ALTER/DROP MODEL (model.rs).
    Model(model::ModelStatement),
    /// `CREATE [OR REPLACE] VIEW` (views.rs).
    CreateView(CreateView),
    /// `MOVE [direction] [FROM | IN] cursor` (cursor_move.rs).
    Move {
        direction: datafusion::sql::sqlparser::ast::FetchDirection,
        cursor: datafusion::sql::sqlparser::ast::Ident,
    },
}

/// Parses one message's SQL text into statements, in order.
pub fn parse(sql: &str) -> WsResult<Vec<WsStatement>> {
    let dialect = WatershedDialect::default();
    let mut parser = DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .build()
        .map_err(WsError::from)?;
    let parse_error = |error: datafusion::error::DataFusionError| {
        let mut error = WsError::from(error);
        if error.message.contains("recursion limit") {
            error.code = sqlstate::STATEMENT_TOO_COMPLEX;
        }
        error
    };
    // DFParser::parse_statements' loop, with our statements tried first.
    let mut statements = Vec::new();
    let mut expecting_delimiter = false;
    loop {
        while parser.parser.consume_token(&Token::SemiColon) {
            expecting_delimiter = false;
        }
        if parser.parser.peek_token().token == Token::EOF {
            break;
        }
        if expecting_delimiter {
            let found = parser.parser.peek_token();
            return Err(WsError::syntax(format!("expected end of statement, found: {found}")));
        }
        let statement = if views::starts(&parser.parser) {
            WsStatement::CreateView(views::parse(&mut parser.parser, sql)?)
        } else if continuous::starts(&parser.parser) {
            let parsed = continuous::parse(&mut parser.parser, sql).map_err(|error| parse_error(error.into()))?;
            WsStatement::Stream(parsed)
        } else if model::starts(&parser.parser) {
            let parsed = model::parse(&mut parser.parser, sql).map_err(|error| parse_error(error.into()))?;
            WsStatement::Model(parsed)
        } else if source::starts_stream_statement(&parser.parser) {
            let parsed =
                source::parse_stream_statement(&mut parser.parser).map_err(|error| parse_error(error.into()))?;
            WsStatement::Stream(parsed)
        } else if maintenance::starts(&parser.parser) {
            WsStatement::Lake(maintenance::parse(&mut parser.parser).map_err(|error| parse_error(error.into()))?)
        } else if cursor_move::starts_move(&parser.parser) {
            let (direction, cursor) =
                cursor_move::parse_move(&mut parser.parser).map_err(|error| parse_error(error.into()))?;
            WsStatement::Move { direction, cursor }
        } else if starts_abort(&parser.parser) {
            WsStatement::Sql(parse_abort(&mut parser.parser).map_err(|error| parse_error(error.into()))?)
        } else if starts_pg_copy(&parser.parser) {
            // sqlparser's PostgreSQL COPY (`TO STDOUT`, `FROM STDIN`, column lists,
            // `WITH (FORMAT csv, ...)`): DFParser's own COPY is DataFusion's
            // `COPY ... TO 'file' STORED AS`, which has neither.
            let mut copy = parser.parser.parse_statement().map_err(|error| parse_error(error.into()))?;
            output_names::make_unique(&mut copy);
            WsStatement::Sql(Statement::Statement(Box::new(copy)))
        } else {
            let mut statement = pg_compat_rewrite(parser.parse_statement().map_err(parse_error)?);
            match &mut statement {
                Statement::Statement(inner) => model::rewrite_predict(inner).map_err(WsError::syntax)?,
                Statement::Explain(explain) => {
                    if let Statement::Statement(inner) = explain.statement.as_mut() {
                        model::rewrite_predict(inner).map_err(WsError::syntax)?;
                    }
                }
                _ => {}
            }
            WsStatement::Sql(statement)
        };
        statements.push(statement);
        expecting_delimiter = true;
    }
    Ok(statements)
}

/// PostgreSQL's `ABORT [WORK | TRANSACTION] [AND [NO] CHAIN]`, which sqlparser does not
/// parse: the same as ROLLBACK (without TO SAVEPOINT).
fn starts_abort(parser: &datafusion::sql::sqlparser::parser::Parser<'_>) -> bool {
    matches!(&parser.peek_token().token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("abort"))
}

fn parse_abort(
    parser: &mut datafusion::sql::sqlparser::parser::Parser<'_>,
) -> Result<Statement, datafusion::sql::sqlparser::parser::ParserError> {
    parser.next_token();
    let chain = parser.parse_commit_rollback_chain()?;
    Ok(Statement::Statement(Box::new(datafusion::sql::sqlparser::ast::Statement::Rollback { chain, savepoint: None })))
}

/// `COPY` other than DataFusion's `COPY INTO`.
fn starts_pg_copy(parser: &datafusion::sql::sqlparser::parser::Parser<'_>) -> bool {
    use datafusion::sql::sqlparser::keywords::Keyword;
    matches!(&parser.peek_token().token, Token::Word(w) if w.keyword == Keyword::COPY)
        && !matches!(&parser.peek_nth_token(1).token, Token::Word(w) if w.keyword == Keyword::INTO)
}

/// AST rewrites from datafusion-pg-catalog that make PostgreSQL clients' catalog
/// queries plannable by DataFusion. Two of its default rules are left out because
/// they change results: `RemoveSubqueryFromProjection` replaces correlated scalar
/// subqueries with NULL, and `AliasDuplicatedProjectionRewrite` renames columns.
static PG_COMPAT_RULES: std::sync::LazyLock<Vec<Box<dyn SqlStatementRewriteRule>>> = std::sync::LazyLock::new(|| {
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

/// pg_catalog relations of ours that datafusion-pg-catalog's `PrependUnqualifiedPgTableName`
/// does not know (catalog/pg_catalog.rs): unqualified, they name pg_catalog's, as in
/// PostgreSQL's search path.
const OUR_PG_RELATIONS: &[&str] = &["pg_indexes"];

fn qualify_our_pg_views(statement: &mut datafusion::sql::sqlparser::ast::Statement) {
    use datafusion::sql::sqlparser::ast::{Ident, ObjectNamePart, visit_relations_mut};
    let _ = visit_relations_mut(statement, |name| {
        if let [ObjectNamePart::Identifier(ident)] = name.0.as_slice()
            && ident.quote_style.is_none()
            && OUR_PG_RELATIONS.contains(&ident.value.to_lowercase().as_str())
        {
            name.0.insert(0, ObjectNamePart::Identifier(Ident::new("pg_catalog")));
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// Set-returning functions whose rows are one scalar: in PostgreSQL, such a function in
/// FROM with an alias and no column list names its one column after the alias
/// (`generate_series(1, 3) s` has column `s`; psql's `\d` reads it so); DataFusion names
/// it `value`. An explicit column list gives DataFusion the same name.
const SCALAR_SET_FUNCTIONS: &[&str] = &["generate_series"];

fn scalar_function_column_aliases(statement: &mut datafusion::sql::sqlparser::ast::Statement) {
    use datafusion::sql::sqlparser::ast::{TableAliasColumnDef, TableFactor, VisitMut, VisitorMut};
    struct Aliases;
    impl VisitorMut for Aliases {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> std::ops::ControlFlow<()> {
            if let TableFactor::Table { name, args: Some(_), alias: Some(alias), .. } = factor
                && alias.columns.is_empty()
                && name
                    .0
                    .last()
                    .and_then(|part| part.as_ident())
                    .is_some_and(|function| SCALAR_SET_FUNCTIONS.contains(&function.value.to_lowercase().as_str()))
            {
                alias.columns.push(TableAliasColumnDef { name: alias.name.clone(), data_type: None });
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Aliases);
}

/// Parameters the statement casts to an object-identifier type (`$1::oid`,
/// `$1::oid[]`, `$2::regclass`): the `pg.oid_alias` tag each should carry, by parameter
/// name. DataFusion plans these casts to int4 and keeps no trace of the type's name,
/// which a client is told in ParameterDescription (asyncpg encodes what it is told, and
/// has codecs for `oid[]` but not `int4[]`).
pub fn parameter_oid_tags(statement: &Statement) -> std::collections::HashMap<String, String> {
    use datafusion::sql::sqlparser::ast::{ArrayElemTypeDef, DataType, Expr, Value, ValueWithSpan, visit_expressions};
    use datafusion_pg_catalog::pg_catalog::oid_field::{OID_ALIAS_TYPE_NAMES, kind};
    fn tag(data_type: &DataType) -> Option<String> {
        match data_type {
            DataType::Regclass => Some(kind::REGCLASS.to_string()),
            DataType::Custom(name, modifiers) if modifiers.is_empty() => name
                .0
                .last()
                .and_then(|part| part.as_ident())
                .map(|ident| ident.value.to_lowercase())
                .filter(|name| OID_ALIAS_TYPE_NAMES.contains(&name.as_str())),
            DataType::Array(
                ArrayElemTypeDef::SquareBracket(element, None) | ArrayElemTypeDef::AngleBracket(element),
            ) => tag(element).filter(|_| !matches!(element.as_ref(), DataType::Array(_))),
            _ => None,
        }
    }
    let mut tags = std::collections::HashMap::new();
    let Statement::Statement(inner) = statement else { return tags };
    let _ = visit_expressions(inner.as_ref(), |expr| {
        if let Expr::Cast { expr: operand, data_type, .. } = expr
            && let Expr::Value(ValueWithSpan { value: Value::Placeholder(name), .. }) = operand.as_ref()
            && let Some(tag) = tag(data_type)
        {
            tags.entry(name.clone()).or_insert(tag);
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    tags
}

fn pg_compat_rewrite(statement: Statement) -> Statement {
    match statement {
        Statement::Statement(inner) => {
            let mut inner = *inner;
            // First, so the names shown are those of the statement as written.
            output_names::make_unique(&mut inner);
            regproc::rewrite(&mut inner);
            let mut rewritten = PG_COMPAT_RULES.iter().fold(inner, |s, rule| rule.rewrite(s));
            qualify_our_pg_views(&mut rewritten);
            scalar_function_column_aliases(&mut rewritten);
            windows::table_arguments_as_subqueries(&mut rewritten);
            subqueries::rewrite(&mut rewritten);
            Statement::Statement(Box::new(rewritten))
        }
        Statement::Explain(mut explain) => {
            if let Statement::Statement(inner) = explain.statement.as_mut() {
                windows::table_arguments_as_subqueries(inner);
            }
            Statement::Explain(explain)
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
    fn stream_statements_mix_with_sql() {
        let statements = parse("SHOW SOURCES; SELECT 1; DROP SOURCE s").unwrap();
        assert!(matches!(statements[0], WsStatement::Stream(StreamStatement::ShowSources)));
        assert!(matches!(statements[1], WsStatement::Sql(_)));
        assert!(matches!(statements[2], WsStatement::Stream(StreamStatement::DropSource { .. })));
        assert_eq!(parse("SHOW SOURCES SELECT 1").unwrap_err().code, sqlstate::SYNTAX_ERROR);
    }

    #[test]
    fn syntax_error_is_42601() {
        let error = parse("SELEC 1").unwrap_err();
        assert_eq!(error.code, sqlstate::SYNTAX_ERROR);
    }

    #[test]
    fn postgres_copy_parses() {
        // sqlparser reads what follows `FROM STDIN;` as inline data; the session refuses it.
        let statements = parse("COPY t (a, b) FROM STDIN WITH (FORMAT csv, HEADER); SELECT 1").unwrap();
        assert_eq!(statements.len(), 1);
        let statements = parse("COPY (SELECT 1) TO STDOUT (FORMAT binary); COPY t TO STDOUT").unwrap();
        assert_eq!(statements.len(), 2);
        let statements = parse("COPY t FROM STDIN").unwrap();
        assert!(matches!(&statements[0], WsStatement::Sql(Statement::Statement(s))
            if matches!(s.as_ref(), datafusion::sql::sqlparser::ast::Statement::Copy { to: false, .. })));
    }

    #[test]
    fn version_as_of_parses() {
        let statements = parse("SELECT * FROM t VERSION AS OF 3 WHERE x = 1").unwrap();
        let WsStatement::Sql(statement) = &statements[0] else { panic!("a DataFusion statement") };
        let refs = time_travel_refs(statement).unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].1, VersionSpec::Version(3));
    }

    #[test]
    fn timestamp_as_of_parses() {
        let statements = parse("SELECT * FROM t TIMESTAMP AS OF '2026-01-01 00:00:00' x").unwrap();
        let WsStatement::Sql(statement) = &statements[0] else { panic!("a DataFusion statement") };
        let refs = time_travel_refs(statement).unwrap();
        assert_eq!(refs.len(), 1);
        assert!(matches!(refs[0].1, VersionSpec::Timestamp(_)));
    }
}

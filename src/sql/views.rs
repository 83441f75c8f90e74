//! `CREATE [OR REPLACE] VIEW v [(column, ...)] AS query`, parsed on DataFusion's token
//! stream so that the view keeps its query as the text the user wrote (cut from the
//! statement by token positions, as materialized views do): the catalog persists exactly
//! that, and every read of the view plans it again. `DROP VIEW` is sqlparser's.
//!
//! What PostgreSQL has and this server does not is refused here with 0A000: temporary and
//! recursive views, `WITH (options)` and `WITH CHECK OPTION` (views are not updatable).

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use super::continuous::{QueryEnd, query_text};
use super::source::{normalize, word_is};
use crate::catalog::PlainViewDef;
use crate::error::{WsError, WsResult};

/// A parsed `CREATE [OR REPLACE] VIEW`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateView {
    pub def: PlainViewDef,
    pub or_replace: bool,
}

/// Whether the next tokens start `CREATE [OR REPLACE] [TEMP | TEMPORARY | RECURSIVE] VIEW`
/// (a materialized view is sql/continuous.rs's).
pub fn starts(parser: &Parser) -> bool {
    if !word_is(&parser.peek_nth_token(0).token, "create") {
        return false;
    }
    let mut n = 1;
    if word_is(&parser.peek_nth_token(n).token, "or") && word_is(&parser.peek_nth_token(n + 1).token, "replace") {
        n += 2;
    }
    let word = parser.peek_nth_token(n).token;
    if ["temp", "temporary", "recursive"].iter().any(|w| word_is(&word, w)) {
        n += 1;
    }
    word_is(&parser.peek_nth_token(n).token, "view")
        || (n > 1 && word_is(&parser.peek_nth_token(n).token, "materialized"))
}

fn unsupported(what: &str) -> WsError {
    WsError::unsupported(format!("{what} is not supported"))
}

fn syntax(error: ParserError) -> WsError {
    WsError::from(datafusion::error::DataFusionError::from(error))
}

/// Parses the statement [`starts`] saw; `sql` is the whole text, to cut the query from.
/// Syntax errors are 42601, what this server does not have 0A000.
pub fn parse(parser: &mut Parser, sql: &str) -> WsResult<CreateView> {
    parser.expect_keyword(Keyword::CREATE).map_err(syntax)?;
    let or_replace = parser.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
    if parser.parse_keyword(Keyword::TEMP) || parser.parse_keyword(Keyword::TEMPORARY) {
        return Err(unsupported(
            "CREATE TEMPORARY VIEW (there are no temporary objects: every view is in the catalog)",
        ));
    }
    if parser.parse_keyword(Keyword::RECURSIVE) {
        return Err(unsupported("CREATE RECURSIVE VIEW (write WITH RECURSIVE inside the view's query)"));
    }
    if parser.parse_keyword(Keyword::MATERIALIZED) {
        return Err(unsupported(
            "CREATE OR REPLACE MATERIALIZED VIEW (drop the materialized view and create it again)",
        ));
    }
    parser.expect_keyword(Keyword::VIEW).map_err(syntax)?;
    let name = parser.parse_object_name(false).map_err(syntax)?;
    let name = super::source::single_name(&name).map_err(|_| {
        WsError::syntax(format!("view name {name} must be unqualified or in schema public (views live in public)"))
    })?;
    let mut columns = Vec::new();
    if parser.consume_token(&Token::LParen) {
        loop {
            columns.push(normalize(&parser.parse_identifier().map_err(syntax)?));
            if !parser.consume_token(&Token::Comma) {
                break;
            }
        }
        parser.expect_token(&Token::RParen).map_err(syntax)?;
    }
    if parser.peek_keyword(Keyword::WITH) {
        return Err(unsupported("CREATE VIEW ... WITH (options)"));
    }
    parser.expect_keyword(Keyword::AS).map_err(syntax)?;
    let query = query_text(parser, sql, QueryEnd::CheckOption).map_err(syntax)?;
    if parser.peek_keyword(Keyword::WITH) {
        return Err(unsupported("WITH CHECK OPTION (views here are read-only: INSERT into a view is refused)"));
    }
    Ok(CreateView { def: PlainViewDef { name, query, columns }, or_replace })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::WatershedDialect;

    fn parse_one(sql: &str) -> WsResult<CreateView> {
        let dialect = WatershedDialect::default();
        let mut parser = Parser::new(&dialect).try_with_sql(sql).map_err(syntax)?;
        assert!(starts(&parser), "{sql}");
        parse(&mut parser, sql)
    }

    #[test]
    fn keeps_the_query_as_written_with_columns_and_or_replace() {
        let view = parse_one("CREATE OR REPLACE VIEW Big (A, \"B\") AS\n  SELECT x, y FROM t WHERE x > 1").unwrap();
        assert!(view.or_replace);
        assert_eq!(view.def.name, "big");
        assert_eq!(view.def.columns, vec!["a".to_string(), "B".to_string()]);
        assert_eq!(view.def.query, "SELECT x, y FROM t WHERE x > 1");
        let plain = parse_one("create view v as with c as (select 1 as a) select a from c").unwrap();
        assert!(!plain.or_replace && plain.def.columns.is_empty());
        assert_eq!(plain.def.query, "with c as (select 1 as a) select a from c");
    }

    #[test]
    fn what_postgres_has_and_we_do_not_is_refused() {
        for sql in [
            "CREATE TEMP VIEW v AS SELECT 1",
            "CREATE TEMPORARY VIEW v AS SELECT 1",
            "CREATE RECURSIVE VIEW v (n) AS SELECT 1",
            "CREATE VIEW v WITH (security_barrier) AS SELECT 1",
            "CREATE VIEW v AS SELECT a FROM t WITH CHECK OPTION",
            "CREATE VIEW v AS SELECT a FROM t WITH LOCAL CHECK OPTION",
            "CREATE OR REPLACE MATERIALIZED VIEW v AS SELECT 1",
        ] {
            let error = parse_one(sql).unwrap_err();
            assert_eq!(error.code, crate::error::sqlstate::FEATURE_NOT_SUPPORTED, "{sql}: {error}");
            assert!(error.message.contains("not supported"), "{sql}: {error}");
        }
        let syntax_error = crate::error::sqlstate::SYNTAX_ERROR;
        assert_eq!(parse_one("CREATE VIEW other.v AS SELECT 1").unwrap_err().code, syntax_error);
        assert_eq!(parse_one("CREATE VIEW v AS SELEC 1").unwrap_err().code, syntax_error);
    }
}

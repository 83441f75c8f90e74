//! sql/maintenance.rs: the Delta maintenance statements, in Delta Lake's own SQL (as
//! Databricks and Spark spell them), since PostgreSQL's VACUUM means something else:
//!
//! ```sql
//! OPTIMIZE t [ZORDER BY (col [, ...])]   -- compact small files, or Z-order them
//! VACUUM t [RETAIN n HOURS] [DRY RUN]     -- delete files no version within n hours reads
//! ```
//!
//! A bare `VACUUM` / `VACUUM ANALYZE ...` as PostgreSQL tools send it is not ours: it
//! falls through to the SQL parser, which refuses it. The table's history is a relation,
//! the `table_history('t')` table function (session/maintenance.rs).

use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use super::source::{expect_word, normalize, word_is};

/// A maintenance statement on one Delta table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakeStatement {
    /// `OPTIMIZE t`: compaction when `zorder` is empty.
    Optimize { table: String, zorder: Vec<String> },
    /// `VACUUM t`: `retain_hours` None is the table's own retention.
    Vacuum { table: String, retain_hours: Option<u64>, dry_run: bool },
}

impl LakeStatement {
    pub fn table(&self) -> &str {
        match self {
            LakeStatement::Optimize { table, .. } | LakeStatement::Vacuum { table, .. } => table,
        }
    }
}

/// `OPTIMIZE <name>` or `VACUUM <name> [RETAIN|DRY|;|end]`: a bare VACUUM, or one with
/// PostgreSQL's options (`VACUUM ANALYZE t`, `VACUUM (VERBOSE) t`), is not ours.
pub fn starts(parser: &Parser) -> bool {
    let first = parser.peek_nth_token(0).token;
    let second = parser.peek_nth_token(1).token;
    let third = parser.peek_nth_token(2).token;
    let is_name = |token: &Token| matches!(token, Token::Word(_));
    let ends = |token: &Token| {
        matches!(token, Token::EOF | Token::SemiColon) || word_is(token, "retain") || word_is(token, "dry")
    };
    let postgres_option = ["full", "freeze", "verbose", "analyze"].iter().any(|word| word_is(&second, word));
    word_is(&first, "optimize") && is_name(&second)
        || word_is(&first, "vacuum") && is_name(&second) && !postgres_option && (ends(&third) || third == Token::Period)
}

fn table_name(parser: &mut Parser) -> Result<String, ParserError> {
    let name = parser.parse_object_name(false)?;
    crate::sql::source::single_name(&name)
        .map_err(|_| ParserError::ParserError(format!("table name {name} must be unqualified or in schema public")))
}

/// Parses one; call only when [`starts`] said so.
pub fn parse(parser: &mut Parser) -> Result<LakeStatement, ParserError> {
    let first = parser.next_token();
    if word_is(&first.token, "optimize") {
        let table = table_name(parser)?;
        let mut zorder = Vec::new();
        if word_is(&parser.peek_token().token, "zorder") {
            parser.next_token();
            expect_word(parser, "by")?;
            parser.expect_token(&Token::LParen)?;
            zorder = parser.parse_comma_separated(|p| p.parse_identifier())?.iter().map(normalize).collect();
            parser.expect_token(&Token::RParen)?;
        }
        return Ok(LakeStatement::Optimize { table, zorder });
    }
    let table = table_name(parser)?;
    let mut retain_hours = None;
    if word_is(&parser.peek_token().token, "retain") {
        parser.next_token();
        let token = parser.next_token();
        let hours = match &token.token {
            Token::Number(text, _) => text.parse::<u64>().ok(),
            _ => None,
        };
        let Some(hours) = hours else {
            return parser.expected("a whole number of hours", token);
        };
        expect_word(parser, "hours")?;
        retain_hours = Some(hours);
    }
    let dry_run = if word_is(&parser.peek_token().token, "dry") {
        parser.next_token();
        expect_word(parser, "run")?;
        true
    } else {
        false
    };
    Ok(LakeStatement::Vacuum { table, retain_hours, dry_run })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> Result<LakeStatement, ParserError> {
        let dialect = crate::sql::WatershedDialect::default();
        let mut parser = Parser::new(&dialect).try_with_sql(sql).unwrap();
        assert!(starts(&parser), "{sql}");
        parse(&mut parser)
    }

    fn not_ours(sql: &str) -> bool {
        let dialect = crate::sql::WatershedDialect::default();
        let parser = Parser::new(&dialect).try_with_sql(sql).unwrap();
        !starts(&parser)
    }

    #[test]
    fn statements_parse() {
        assert_eq!(parsed("OPTIMIZE t").unwrap(), LakeStatement::Optimize { table: "t".into(), zorder: vec![] });
        assert_eq!(
            parsed("optimize Orders ZORDER BY (a, \"B\")").unwrap(),
            LakeStatement::Optimize { table: "orders".into(), zorder: vec!["a".into(), "B".into()] }
        );
        assert_eq!(
            parsed("VACUUM t").unwrap(),
            LakeStatement::Vacuum { table: "t".into(), retain_hours: None, dry_run: false }
        );
        assert_eq!(
            parsed("VACUUM public.t RETAIN 0 HOURS DRY RUN").unwrap(),
            LakeStatement::Vacuum { table: "t".into(), retain_hours: Some(0), dry_run: true }
        );
        assert!(parsed("VACUUM t RETAIN -1 HOURS").is_err());
        assert!(parsed("VACUUM t RETAIN 1.5 HOURS").is_err());
        assert!(parsed("OPTIMIZE t ZORDER (a)").is_err());
        assert!(parsed("VACUUM other.t").is_err());
    }

    #[test]
    fn postgresql_vacuum_is_not_ours() {
        assert!(not_ours("VACUUM"));
        assert!(not_ours("VACUUM ANALYZE t"));
        assert!(not_ours("VACUUM FULL t"));
        assert!(not_ours("VACUUM (VERBOSE) t"));
        assert!(not_ours("SELECT optimize FROM t"));
    }
}

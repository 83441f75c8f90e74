//! Statements about continuous queries, parsed on DataFusion's token stream:
//!
//! ```sql
//! CREATE MATERIALIZED VIEW [IF NOT EXISTS] v AS <query> [EMIT ON WINDOW CLOSE | EMIT ON UPDATE];
//! DROP MATERIALIZED VIEW [IF EXISTS] v [, ...];
//! SUBSCRIBE [TO] v [WITH (snapshot = true|false)];        -- inside COPY (...) TO STDOUT or DECLARE
//! COPY (SUBSCRIBE TO v) TO STDOUT [WITH (FORMAT text|csv|binary, ...)];
//! DECLARE c [NO SCROLL] CURSOR [WITH HOLD | WITHOUT HOLD] FOR SUBSCRIBE TO v;
//! CREATE SINK [IF NOT EXISTS] s FROM v WITH (connector = 'delta', ...);
//! CREATE SINK [IF NOT EXISTS] s AS <query> WITH (connector = 'notify', channel = '...');
//! DROP SINK [IF EXISTS] s [, ...];
//! ```
//!
//! A view's (or sink's) query is kept as the text the user wrote (cut from the statement
//! by token positions), so that the catalog persists exactly that and plans it again at
//! every start.

use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Location, Token};

use super::source::{StreamStatement, expect_word, parse_with_options, single_name, word_is};
use crate::stream::continuous::Emit;

/// What a subscription reads and whether it starts with the view's current rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribe {
    pub view: String,
    pub snapshot: bool,
}

/// Where a sink's rows come from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkInput {
    View(String),
    Query(String),
}

/// Whether the next tokens start one of these statements.
pub fn starts(parser: &Parser) -> bool {
    let token = |n| parser.peek_nth_token(n).token;
    let (first, second, third) = (token(0), token(1), token(2));
    ((word_is(&first, "create") || word_is(&first, "drop"))
        && word_is(&second, "materialized")
        && word_is(&third, "view"))
        || ((word_is(&first, "create") || word_is(&first, "drop")) && word_is(&second, "sink"))
        || word_is(&first, "subscribe")
        || (word_is(&first, "copy") && second == Token::LParen && word_is(&third, "subscribe"))
        || (word_is(&first, "declare") && declares_subscribe(parser))
}

/// `DECLARE name ... CURSOR ... FOR SUBSCRIBE`: looks ahead past the cursor options.
fn declares_subscribe(parser: &Parser) -> bool {
    for n in 2..10 {
        let token = parser.peek_nth_token(n).token;
        if word_is(&token, "for") {
            return word_is(&parser.peek_nth_token(n + 1).token, "subscribe");
        }
        if token == Token::EOF {
            return false;
        }
    }
    false
}

/// Byte offset of a token location (1-based line and column, in characters) in `sql`.
fn byte_offset(sql: &str, location: Location) -> usize {
    if location.line == 0 {
        return sql.len();
    }
    let mut line = 1;
    let mut column = 1;
    for (offset, c) in sql.char_indices() {
        if line == location.line && column == location.column {
            return offset;
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    sql.len()
}

/// What ends the query of a view (`EMIT ON ...`), of a sink (`WITH (...)`), of a plain
/// view (the statement, or `WITH [LOCAL | CASCADED] CHECK OPTION`), or of a model
/// (`CREATE MODEL ... AS query`: the statement).
#[derive(Clone, Copy)]
pub(super) enum QueryEnd {
    Emit,
    With,
    Statement,
    CheckOption,
}

/// Reads a query up to (not including) its end clause, checks that it parses on its
/// own, and returns its text as written. The end is found on the token stream at
/// parenthesis depth 0 first, so that `... FROM t EMIT ON UPDATE` does not read EMIT as
/// an alias of `t`.
pub(super) fn query_text(parser: &mut Parser, sql: &str, end: QueryEnd) -> Result<String, ParserError> {
    let start = byte_offset(sql, parser.peek_token().span.start);
    let mut depth = 0i32;
    let mut n = 0;
    loop {
        let token = parser.peek_nth_token(n).token;
        let next = parser.peek_nth_token(n + 1).token;
        let ends = depth == 0
            && match end {
                QueryEnd::Emit => word_is(&token, "emit") && word_is(&next, "on"),
                QueryEnd::With => word_is(&token, "with") && next == Token::LParen,
                QueryEnd::Statement => false,
                // Not the first token: a query may start with WITH (its CTEs).
                QueryEnd::CheckOption => {
                    n > 0
                        && word_is(&token, "with")
                        && ["check", "local", "cascaded"].iter().any(|word| word_is(&next, word))
                }
            };
        match token {
            Token::EOF => break,
            Token::SemiColon if depth == 0 => break,
            _ if ends => break,
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ => {}
        }
        n += 1;
    }
    let stop = match parser.peek_nth_token(n).token {
        Token::EOF => sql.len(),
        _ => byte_offset(sql, parser.peek_nth_token(n).span.start),
    };
    let text = sql[start..stop.max(start)].trim().to_string();
    let dialect = super::WatershedDialect::default();
    let mut own = Parser::new(&dialect).try_with_sql(&text)?;
    own.parse_query()?;
    if own.peek_token().token != Token::EOF {
        let found = own.peek_token();
        return own.expected("the end of the query", found);
    }
    for _ in 0..n {
        parser.next_token();
    }
    Ok(text)
}

fn parse_subscribe(parser: &mut Parser) -> Result<Subscribe, ParserError> {
    expect_word(parser, "subscribe")?;
    let _ = parser.parse_keyword(Keyword::TO);
    let view = single_name(&parser.parse_object_name(false)?)?;
    let mut snapshot = true;
    for (key, value) in parse_with_options(parser)? {
        match key.as_str() {
            "snapshot" => {
                snapshot = match value.to_ascii_lowercase().as_str() {
                    "true" | "on" | "1" => true,
                    "false" | "off" | "0" => false,
                    other => {
                        return Err(ParserError::ParserError(format!("snapshot must be true or false, not {other}")));
                    }
                }
            }
            other => return Err(ParserError::ParserError(format!("unknown SUBSCRIBE option {other}"))),
        }
    }
    Ok(Subscribe { view, snapshot })
}

/// Parses one statement; call only when [`starts`] said so.
pub fn parse(parser: &mut Parser, sql: &str) -> Result<StreamStatement, ParserError> {
    let first = parser.peek_token().token;
    if word_is(&first, "subscribe") {
        return Ok(StreamStatement::Subscribe(parse_subscribe(parser)?));
    }
    if word_is(&first, "copy") {
        parser.next_token();
        parser.expect_token(&Token::LParen)?;
        let subscribe = parse_subscribe(parser)?;
        parser.expect_token(&Token::RParen)?;
        // The rest (`TO STDOUT [WITH (...)]`) is PostgreSQL's COPY syntax: sqlparser reads
        // it, on a COPY of a placeholder table, and the session takes its options.
        let rest_start = byte_offset(sql, parser.peek_token().span.start);
        let mut depth = 0i32;
        while !matches!(parser.peek_token().token, Token::EOF) {
            match parser.peek_token().token {
                Token::SemiColon if depth == 0 => break,
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                _ => {}
            }
            parser.next_token();
        }
        let rest_end = match parser.peek_token().token {
            Token::EOF => sql.len(),
            _ => byte_offset(sql, parser.peek_token().span.start),
        };
        let copy_sql = format!("COPY subscription {}", &sql[rest_start..rest_end.max(rest_start)]);
        let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
        let copy = Parser::new(&dialect).try_with_sql(&copy_sql)?.parse_statement()?;
        if !matches!(copy, SqlStatement::Copy { to: true, .. }) {
            return Err(ParserError::ParserError("COPY (SUBSCRIBE ...) goes TO STDOUT".into()));
        }
        return Ok(StreamStatement::CopySubscribe { subscribe, copy: Box::new(copy) });
    }
    if word_is(&first, "declare") {
        parser.next_token();
        let name = super::source::normalize(&parser.parse_identifier()?);
        if parser.parse_keyword(Keyword::BINARY) {
            return Err(ParserError::ParserError("BINARY cursors are not supported".into()));
        }
        if parser.parse_keyword(Keyword::SCROLL) {
            return Err(ParserError::ParserError("SCROLL cursors are not supported; cursors read forward only".into()));
        }
        let _ = parser.parse_keywords(&[Keyword::NO, Keyword::SCROLL]);
        parser.expect_keyword(Keyword::CURSOR)?;
        let mut hold = false;
        if parser.parse_keywords(&[Keyword::WITH, Keyword::HOLD]) {
            hold = true;
        } else {
            let _ = parser.parse_keywords(&[Keyword::WITHOUT, Keyword::HOLD]);
        }
        parser.expect_keyword(Keyword::FOR)?;
        let subscribe = parse_subscribe(parser)?;
        return Ok(StreamStatement::DeclareSubscribe { name, hold, subscribe });
    }
    let create = word_is(&parser.next_token().token, "create");
    if word_is(&parser.peek_token().token, "materialized") {
        parser.next_token();
        expect_word(parser, "view")?;
        if !create {
            let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let names = parser.parse_comma_separated(|p| p.parse_object_name(false))?;
            let names = names.iter().map(single_name).collect::<Result<_, _>>()?;
            return Ok(StreamStatement::DropView { names, if_exists });
        }
        let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name = single_name(&parser.parse_object_name(false)?)?;
        parser.expect_keyword(Keyword::AS)?;
        let query = query_text(parser, sql, QueryEnd::Emit)?;
        let emit = if word_is(&parser.peek_token().token, "emit") {
            parser.next_token();
            parser.expect_keyword(Keyword::ON)?;
            if word_is(&parser.peek_token().token, "update") {
                parser.next_token();
                Some(Emit::OnUpdate)
            } else {
                parser.expect_keyword(Keyword::WINDOW)?;
                expect_word(parser, "close")?;
                Some(Emit::OnWindowClose)
            }
        } else {
            None
        };
        return Ok(StreamStatement::CreateView { name, query, emit, if_not_exists });
    }
    expect_word(parser, "sink")?;
    if !create {
        let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let names = parser.parse_comma_separated(|p| p.parse_object_name(false))?;
        let names = names.iter().map(single_name).collect::<Result<_, _>>()?;
        return Ok(StreamStatement::DropSink { names, if_exists });
    }
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = single_name(&parser.parse_object_name(false)?)?;
    let input = if parser.parse_keyword(Keyword::FROM) {
        SinkInput::View(single_name(&parser.parse_object_name(false)?)?)
    } else {
        parser.expect_keyword(Keyword::AS)?;
        SinkInput::Query(query_text(parser, sql, QueryEnd::With)?)
    };
    let options = parse_with_options(parser)?;
    Ok(StreamStatement::CreateSink { name, input, options, if_not_exists })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::WatershedDialect;

    fn parse_one(sql: &str) -> Result<StreamStatement, ParserError> {
        let dialect = WatershedDialect::default();
        let mut parser = Parser::new(&dialect).try_with_sql(sql)?;
        assert!(starts(&parser), "{sql}");
        parse(&mut parser, sql)
    }

    #[test]
    fn create_view_keeps_the_query_text_and_emit() {
        let sql = "CREATE MATERIALIZED VIEW v AS\n  SELECT window_end, count(*) FROM TUMBLE(clicks, ts, INTERVAL '1' MINUTE)\n  GROUP BY window_start, window_end EMIT ON WINDOW CLOSE";
        let StreamStatement::CreateView { name, query, emit, if_not_exists } = parse_one(sql).unwrap() else {
            panic!()
        };
        assert_eq!(name, "v");
        assert!(!if_not_exists);
        assert!(query.starts_with("SELECT window_end"));
        assert!(query.ends_with("GROUP BY window_start, window_end"), "{query}");
        assert_eq!(emit, Some(Emit::OnWindowClose));
        let StreamStatement::CreateView { emit, query, .. } =
            parse_one("CREATE MATERIALIZED VIEW IF NOT EXISTS v AS SELECT k FROM t EMIT ON UPDATE").unwrap()
        else {
            panic!()
        };
        assert_eq!(emit, Some(Emit::OnUpdate), "EMIT is not taken for an alias of t");
        assert_eq!(query, "SELECT k FROM t");
        assert!(parse_one("CREATE MATERIALIZED VIEW v AS SELECT (1 EMIT ON UPDATE").is_err());
    }

    #[test]
    fn subscribe_forms() {
        assert_eq!(
            parse_one("SUBSCRIBE TO v WITH (snapshot = false)").unwrap(),
            StreamStatement::Subscribe(Subscribe { view: "v".into(), snapshot: false })
        );
        let StreamStatement::CopySubscribe { subscribe, copy } =
            parse_one("COPY (SUBSCRIBE TO v) TO STDOUT WITH (FORMAT csv)").unwrap()
        else {
            panic!()
        };
        assert!(subscribe.snapshot);
        assert!(matches!(*copy, SqlStatement::Copy { to: true, .. }));
        let StreamStatement::DeclareSubscribe { name, hold, subscribe } =
            parse_one("DECLARE c CURSOR WITH HOLD FOR SUBSCRIBE v").unwrap()
        else {
            panic!()
        };
        assert_eq!((name.as_str(), hold, subscribe.view.as_str()), ("c", true, "v"));
    }

    #[test]
    fn sinks() {
        let StreamStatement::CreateSink { name, input, options, .. } =
            parse_one("CREATE SINK s FROM v WITH (connector = 'delta', table = 'impact')").unwrap()
        else {
            panic!()
        };
        assert_eq!(name, "s");
        assert_eq!(input, SinkInput::View("v".into()));
        assert_eq!(options["connector"], "delta");
        let StreamStatement::CreateSink { input, .. } = parse_one(
            "CREATE SINK a AS SELECT * FROM orders WHERE amount > 100 WITH (connector = 'notify', channel = 'big')",
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(input, SinkInput::Query("SELECT * FROM orders WHERE amount > 100".into()));
        let StreamStatement::CreateSink { input, .. } =
            parse_one("CREATE SINK b AS SELECT * FROM orders WITH (connector = 'notify', channel = 'x')").unwrap()
        else {
            panic!()
        };
        assert_eq!(input, SinkInput::Query("SELECT * FROM orders".into()), "WITH ends the query, it is no table hint");
        assert_eq!(
            parse_one("DROP SINK IF EXISTS a").unwrap(),
            StreamStatement::DropSink { names: vec!["a".into()], if_exists: true }
        );
    }
}

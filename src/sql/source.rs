//! Our statements that DataFusion's parser does not know, parsed on the same token
//! stream (the way DataFusion's own `DFParser` extends sqlparser):
//!
//! ```sql
//! CREATE SOURCE [IF NOT EXISTS] name (
//!     column type [NOT NULL], ...,
//!     WATERMARK FOR column AS column - INTERVAL '5' SECOND
//! ) WITH (connector = 'ingest', retention = '2 hours', ...) [FORMAT PLAIN ENCODE JSON | CSV];
//! DROP SOURCE [IF EXISTS] name [, ...];
//! SHOW SOURCES;
//! ```

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::{BinaryOperator, ColumnOption, Expr as SqlExpr, Ident, ObjectName, Value};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use super::continuous::{SinkInput, Subscribe};
use crate::stream::continuous::Emit;
use crate::stream::spec::parse_duration_ms;
use crate::stream::{ColumnDef, SourceDef, WatermarkDef};

/// A statement about sources.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamStatement {
    CreateSource {
        def: SourceDef,
        if_not_exists: bool,
    },
    DropSource {
        names: Vec<String>,
        if_exists: bool,
        /// `CASCADE`: views reading the source are dropped too (`RESTRICT`, the default,
        /// refuses).
        cascade: bool,
    },
    ShowSources,
    /// `emit` is None when not written: the plan's shape decides (sql/continuous.rs).
    CreateView {
        name: String,
        query: String,
        emit: Option<Emit>,
        if_not_exists: bool,
    },
    DropView {
        names: Vec<String>,
        if_exists: bool,
    },
    Subscribe(Subscribe),
    /// `copy` is a COPY of a placeholder table carrying the COPY options.
    CopySubscribe {
        subscribe: Subscribe,
        copy: Box<datafusion::sql::sqlparser::ast::Statement>,
    },
    DeclareSubscribe {
        name: String,
        hold: bool,
        subscribe: Subscribe,
    },
    CreateSink {
        name: String,
        input: SinkInput,
        options: BTreeMap<String, String>,
        if_not_exists: bool,
    },
    DropSink {
        names: Vec<String>,
        if_exists: bool,
    },
}

pub(super) fn word_is(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

/// Whether the next tokens start one of our statements.
pub fn starts_stream_statement(parser: &Parser) -> bool {
    let first = parser.peek_nth_token(0).token;
    let second = parser.peek_nth_token(1).token;
    (word_is(&first, "create") || word_is(&first, "drop")) && word_is(&second, "source")
        || word_is(&first, "show") && word_is(&second, "sources")
}

pub(super) fn expect_word(parser: &mut Parser, word: &str) -> Result<(), ParserError> {
    let token = parser.next_token();
    if word_is(&token.token, word) { Ok(()) } else { parser.expected(&word.to_uppercase(), token) }
}

/// An identifier as PostgreSQL folds it: unquoted to lower case, quoted as written.
pub(super) fn normalize(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

pub(super) fn single_name(name: &ObjectName) -> Result<String, ParserError> {
    let parts: Vec<Ident> = name.0.iter().filter_map(|part| part.as_ident().cloned()).collect();
    match parts.as_slice() {
        [one] => Ok(normalize(one)),
        [schema, one] if normalize(schema) == crate::catalog::SCHEMA_NAME => Ok(normalize(one)),
        _ => Err(ParserError::ParserError(format!(
            "source name {name} must be unqualified (sources live in schema public)"
        ))),
    }
}

/// Parses one of our statements; call only when `starts_stream_statement` said so.
pub fn parse_stream_statement(parser: &mut Parser) -> Result<StreamStatement, ParserError> {
    let first = parser.next_token();
    if word_is(&first.token, "show") {
        expect_word(parser, "sources")?;
        return Ok(StreamStatement::ShowSources);
    }
    expect_word(parser, "source")?;
    if word_is(&first.token, "drop") {
        let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let names = parser.parse_comma_separated(|p| p.parse_object_name(false))?;
        let names = names.iter().map(single_name).collect::<Result<_, _>>()?;
        let cascade = parser.parse_keyword(Keyword::CASCADE);
        if !cascade {
            let _ = parser.parse_keyword(Keyword::RESTRICT);
        }
        return Ok(StreamStatement::DropSource { names, if_exists, cascade });
    }
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = single_name(&parser.parse_object_name(false)?)?;
    parser.expect_token(&Token::LParen)?;
    let mut columns = Vec::new();
    let mut watermark = None;
    loop {
        if word_is(&parser.peek_token().token, "watermark") {
            parser.next_token();
            parser.expect_keyword(Keyword::FOR)?;
            let column = normalize(&parser.parse_identifier()?);
            parser.expect_keyword(Keyword::AS)?;
            let expr = parser.parse_expr()?;
            if watermark.is_some() {
                return Err(ParserError::ParserError("a source has at most one WATERMARK".into()));
            }
            watermark = Some(watermark_def(column, &expr)?);
        } else {
            let column = parser.parse_column_def()?;
            let not_null = column.options.iter().any(|o| matches!(o.option, ColumnOption::NotNull));
            columns.push(ColumnDef {
                name: normalize(&column.name),
                sql_type: column.data_type.to_string(),
                nullable: !not_null,
            });
        }
        if parser.consume_token(&Token::RParen) {
            break;
        }
        parser.expect_token(&Token::Comma)?;
    }
    let mut options = parse_with_options(parser)?;
    let mut encode = None;
    if parser.parse_keyword(Keyword::FORMAT) {
        expect_word(parser, "plain")?;
        expect_word(parser, "encode")?;
        encode = Some(normalize(&parser.parse_identifier()?));
    }
    let connector = options
        .remove("connector")
        .ok_or_else(|| ParserError::ParserError("CREATE SOURCE needs WITH (connector = '...')".into()))?;
    let def = SourceDef { name, connector, columns, watermark, encode, options };
    Ok(StreamStatement::CreateSource { def, if_not_exists })
}

/// `[WITH (key = value, ...)]`: keys are words, dotted names or quoted strings.
pub(super) fn parse_with_options(parser: &mut Parser) -> Result<BTreeMap<String, String>, ParserError> {
    let mut options = BTreeMap::new();
    if !parser.parse_keyword(Keyword::WITH) {
        return Ok(options);
    }
    parser.expect_token(&Token::LParen)?;
    loop {
        let key = match parser.peek_token().token {
            Token::SingleQuotedString(text) => {
                parser.next_token();
                text
            }
            _ => {
                let name = parser.parse_object_name(false)?;
                name.0.iter().filter_map(|p| p.as_ident()).map(normalize).collect::<Vec<_>>().join(".")
            }
        };
        parser.expect_token(&Token::Eq)?;
        let value = option_value(parser)?;
        if options.insert(key.clone(), value).is_some() {
            return Err(ParserError::ParserError(format!("option {key} is given twice")));
        }
        if parser.consume_token(&Token::RParen) {
            break;
        }
        parser.expect_token(&Token::Comma)?;
    }
    Ok(options)
}

fn option_value(parser: &mut Parser) -> Result<String, ParserError> {
    let token = parser.next_token();
    match token.token {
        Token::SingleQuotedString(text) | Token::Number(text, _) => Ok(text),
        Token::Word(word) => Ok(word.value),
        _ => parser.expected("an option value (a string, number or word)", token),
    }
}

/// `col` or `col - INTERVAL '...'` with `col` the watermark column.
fn watermark_def(column: String, expr: &SqlExpr) -> Result<WatermarkDef, ParserError> {
    let bad =
        || ParserError::ParserError(format!("WATERMARK FOR {column} AS must be {column} or {column} - INTERVAL '...'"));
    let names_column = |e: &SqlExpr| matches!(e, SqlExpr::Identifier(i) if normalize(i) == column);
    let delay_ms = match expr {
        e if names_column(e) => 0,
        SqlExpr::BinaryOp { left, op: BinaryOperator::Minus, right } if names_column(left) => {
            let SqlExpr::Interval(interval) = right.as_ref() else { return Err(bad()) };
            let SqlExpr::Value(value) = interval.value.as_ref() else { return Err(bad()) };
            let Value::SingleQuotedString(text) = &value.value else { return Err(bad()) };
            let text = match &interval.leading_field {
                Some(field) => format!("{text} {field}"),
                None => text.clone(),
            };
            parse_duration_ms(&text).map_err(|e| ParserError::ParserError(e.message))?
        }
        _ => return Err(bad()),
    };
    Ok(WatermarkDef { column, delay_ms })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::WatershedDialect;

    fn parse(sql: &str) -> Result<StreamStatement, ParserError> {
        let dialect = WatershedDialect::default();
        let mut parser = Parser::new(&dialect).try_with_sql(sql)?;
        assert!(starts_stream_statement(&parser));
        parse_stream_statement(&mut parser)
    }

    #[test]
    fn create_source_with_watermark_options_and_format() {
        let statement = parse(
            "CREATE SOURCE IF NOT EXISTS Clicks (user_id BIGINT NOT NULL, campaign_id BIGINT, ts TIMESTAMPTZ, \
             WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) \
             WITH (connector = 'kafka', topic = 'clicks', properties.bootstrap.server = 'localhost:9092', \
             'retention' = '2 hours') FORMAT PLAIN ENCODE JSON",
        )
        .unwrap();
        let StreamStatement::CreateSource { def, if_not_exists } = statement else { panic!() };
        assert!(if_not_exists);
        assert_eq!(def.name, "clicks");
        assert_eq!(def.connector, "kafka");
        assert_eq!(def.columns.len(), 3);
        assert!(!def.columns[0].nullable);
        assert_eq!(def.columns[2].sql_type, "TIMESTAMPTZ");
        assert_eq!(def.watermark, Some(WatermarkDef { column: "ts".into(), delay_ms: 5_000 }));
        assert_eq!(def.options["properties.bootstrap.server"], "localhost:9092");
        assert_eq!(def.options["retention"], "2 hours");
        assert_eq!(def.encode.as_deref(), Some("json"));
    }

    #[test]
    fn watermark_interval_forms() {
        let statement = parse(
            "CREATE SOURCE s (ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '1 minute') WITH (connector='ingest')",
        )
        .unwrap();
        let StreamStatement::CreateSource { def, .. } = statement else { panic!() };
        assert_eq!(def.watermark.unwrap().delay_ms, 60_000);
        assert!(parse("CREATE SOURCE s (ts TIMESTAMP, WATERMARK FOR ts AS now()) WITH (connector='ingest')").is_err());
        assert!(parse("CREATE SOURCE s (ts TIMESTAMP)").is_err(), "the connector is required");
    }

    #[test]
    fn drop_and_show() {
        assert_eq!(
            parse("DROP SOURCE IF EXISTS a, b").unwrap(),
            StreamStatement::DropSource { names: vec!["a".into(), "b".into()], if_exists: true, cascade: false }
        );
        assert_eq!(
            parse("DROP SOURCE a CASCADE").unwrap(),
            StreamStatement::DropSource { names: vec!["a".into()], if_exists: false, cascade: true }
        );
        assert_eq!(parse("SHOW SOURCES").unwrap(), StreamStatement::ShowSources);
    }
}

//! `MOVE [direction] [FROM | IN] cursor`: PostgreSQL's FETCH without the rows, which
//! sqlparser does not parse. The direction is read into sqlparser's own
//! [`FetchDirection`], so the session maps FETCH and MOVE to one cursor motion; as in
//! PostgreSQL, a missing direction means NEXT, `FORWARD`/`BACKWARD` without a count mean
//! one row, and counts may be negative.

use datafusion::sql::sqlparser::ast::{FetchDirection, Ident, Value, ValueWithSpan};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

/// Whether the next statement is a MOVE.
pub fn starts_move(parser: &Parser<'_>) -> bool {
    matches!(&parser.peek_token().token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("move"))
}

/// An optionally signed integer count, if one comes next.
fn count(parser: &mut Parser<'_>) -> Result<Option<ValueWithSpan>, ParserError> {
    let negative = match &parser.peek_token().token {
        Token::Minus => true,
        Token::Number(_, _) => false,
        _ => return Ok(None),
    };
    if negative {
        parser.next_token();
    }
    let token = parser.next_token();
    let Token::Number(digits, long) = &token.token else {
        return Err(ParserError::ParserError(format!("expected a count after -, found {}", token.token)));
    };
    let text = if negative { format!("-{digits}") } else { digits.clone() };
    Ok(Some(Value::Number(text, *long).with_span(token.span)))
}

fn required_count(parser: &mut Parser<'_>) -> Result<ValueWithSpan, ParserError> {
    count(parser)?.ok_or_else(|| ParserError::ParserError(format!("expected a count, found {}", parser.peek_token())))
}

/// Parses `MOVE ...` up to the cursor name; returns the direction and the name.
pub fn parse_move(parser: &mut Parser<'_>) -> Result<(FetchDirection, Ident), ParserError> {
    parser.next_token(); // MOVE
    let direction = if parser.parse_keyword(Keyword::NEXT) {
        FetchDirection::Next
    } else if parser.parse_keyword(Keyword::PRIOR) {
        FetchDirection::Prior
    } else if parser.parse_keyword(Keyword::FIRST) {
        FetchDirection::First
    } else if parser.parse_keyword(Keyword::LAST) {
        FetchDirection::Last
    } else if parser.parse_keyword(Keyword::ABSOLUTE) {
        FetchDirection::Absolute { limit: required_count(parser)? }
    } else if parser.parse_keyword(Keyword::RELATIVE) {
        FetchDirection::Relative { limit: required_count(parser)? }
    } else if parser.parse_keyword(Keyword::FORWARD) {
        if parser.parse_keyword(Keyword::ALL) {
            FetchDirection::ForwardAll
        } else {
            FetchDirection::Forward { limit: count(parser)? }
        }
    } else if parser.parse_keyword(Keyword::BACKWARD) {
        if parser.parse_keyword(Keyword::ALL) {
            FetchDirection::BackwardAll
        } else {
            FetchDirection::Backward { limit: count(parser)? }
        }
    } else if parser.parse_keyword(Keyword::ALL) {
        FetchDirection::All
    } else if let Some(limit) = count(parser)? {
        FetchDirection::Count { limit }
    } else {
        FetchDirection::Next
    };
    let _ = parser.parse_one_of_keywords(&[Keyword::FROM, Keyword::IN]);
    let name = parser.parse_identifier()?;
    Ok((direction, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::WatershedDialect;

    fn parse(sql: &str) -> (String, String) {
        let dialect = WatershedDialect::default();
        let mut parser = Parser::new(&dialect).try_with_sql(sql).unwrap();
        assert!(starts_move(&parser));
        let (direction, name) = parse_move(&mut parser).unwrap();
        assert_eq!(parser.peek_token().token, Token::EOF, "{sql} parsed to the end");
        (direction.to_string(), name.value)
    }

    #[test]
    fn every_direction_parses() {
        assert_eq!(parse("MOVE c"), ("NEXT".into(), "c".into()));
        assert_eq!(parse("MOVE FROM c"), ("NEXT".into(), "c".into()));
        assert_eq!(parse("move 3 in c"), ("3".into(), "c".into()));
        assert_eq!(parse("MOVE -2 FROM c"), ("-2".into(), "c".into()));
        assert_eq!(parse("MOVE FORWARD FROM c").0, "FORWARD");
        assert_eq!(parse("MOVE FORWARD 5 FROM c").0, "FORWARD 5");
        assert_eq!(parse("MOVE FORWARD ALL FROM c").0, "FORWARD ALL");
        assert_eq!(parse("MOVE BACKWARD c").0, "BACKWARD");
        assert_eq!(parse("MOVE ALL IN c").0, "ALL");
        assert_eq!(parse("MOVE ABSOLUTE 4 FROM c").0, "ABSOLUTE 4");
        assert_eq!(parse("MOVE RELATIVE -1 FROM c").0, "RELATIVE -1");
        assert_eq!(parse("MOVE LAST FROM \"C\""), ("LAST".into(), "C".into()));
    }
}

//! Statements about models (src/model/), parsed on DataFusion's token stream like our
//! other statements, and the rewrite of `predict()` calls into the form DataFusion plans:
//!
//! ```sql
//! CREATE MODEL m WITH (model_type = 'logistic_reg', label = 'is_fraud', ...) AS <query>;
//! ALTER MODEL m SET ACTIVE VERSION 2;
//! DROP MODEL [IF EXISTS] m [, ...];
//! SELECT predict('m', amount => t.amount, t.new_device) FROM t;
//!   -- planned as predict('m', named_struct('amount', t.amount, 'new_device', t.new_device))
//! ```

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, ObjectNamePart, Value, VisitMut,
    VisitorMut,
};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use super::continuous::{QueryEnd, query_text};
use super::source::{expect_word, normalize, parse_with_options, single_name, word_is};

#[derive(Debug, Clone, PartialEq)]
pub enum ModelStatement {
    Create { name: String, options: BTreeMap<String, String>, query: String },
    Drop { names: Vec<String>, if_exists: bool },
    SetActive { name: String, version: u32 },
}

/// Whether the next tokens start a statement about models.
pub fn starts(parser: &Parser) -> bool {
    let first = parser.peek_nth_token(0).token;
    (word_is(&first, "create") || word_is(&first, "drop") || word_is(&first, "alter"))
        && word_is(&parser.peek_nth_token(1).token, "model")
}

/// Parses one; call only when [`starts`] said so.
pub fn parse(parser: &mut Parser, sql: &str) -> Result<ModelStatement, ParserError> {
    let first = parser.next_token();
    expect_word(parser, "model")?;
    if word_is(&first.token, "drop") {
        let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let names = parser.parse_comma_separated(|p| p.parse_object_name(false))?;
        let names = names.iter().map(single_name).collect::<Result<_, _>>()?;
        return Ok(ModelStatement::Drop { names, if_exists });
    }
    let name = single_name(&parser.parse_object_name(false)?)?;
    if word_is(&first.token, "alter") {
        parser.expect_keyword(Keyword::SET)?;
        expect_word(parser, "active")?;
        expect_word(parser, "version")?;
        let token = parser.next_token();
        let version = match &token.token {
            Token::Number(text, _) => text.parse::<u32>().ok().filter(|v| *v >= 1),
            _ => None,
        };
        let Some(version) = version else { return parser.expected("a version number (1, 2, ...)", token) };
        return Ok(ModelStatement::SetActive { name, version });
    }
    if !word_is(&parser.peek_token().token, "with") {
        let found = parser.peek_token();
        return parser.expected("WITH (model_type = '...', label = '...') after CREATE MODEL name", found);
    }
    let options = parse_with_options(parser)?;
    parser.expect_keyword(Keyword::AS)?;
    let query = query_text(parser, sql, QueryEnd::Statement)?;
    Ok(ModelStatement::Create { name, options, query })
}

fn is_predict(name: &ObjectName) -> bool {
    matches!(name.0.as_slice(), [ObjectNamePart::Identifier(ident)]
        if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case(crate::model::predict::NAME))
}

fn feature_name(name: &Expr) -> Option<String> {
    match name {
        Expr::Identifier(ident) => Some(normalize(ident)),
        Expr::CompoundIdentifier(parts) => parts.last().map(normalize),
        _ => None,
    }
}

/// Rewrites `predict('m', name => expr, column, ...)` into `predict('m',
/// named_struct('name', expr, 'column', column, ...))`. A call whose second argument is
/// already one unnamed non-column expression (`named_struct(...)`) is left as written.
/// An unnamed feature that is not a column has no name: 42601.
pub fn rewrite_predict(statement: &mut datafusion::sql::sqlparser::ast::Statement) -> Result<(), String> {
    struct Rewrite;
    impl VisitorMut for Rewrite {
        type Break = String;
        fn post_visit_expr(&mut self, expr: &mut Expr) -> std::ops::ControlFlow<String> {
            let Expr::Function(function) = expr else { return std::ops::ControlFlow::Continue(()) };
            if !is_predict(&function.name) {
                return std::ops::ControlFlow::Continue(());
            }
            let FunctionArguments::List(list) = &mut function.args else { return std::ops::ControlFlow::Continue(()) };
            let rest = list.args.len().saturating_sub(1);
            let already_struct = rest == 1
                && matches!(&list.args[1], FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) if feature_name(e).is_none());
            if rest == 0 || already_struct {
                return std::ops::ControlFlow::Continue(());
            }
            let mut pairs = Vec::with_capacity(rest * 2);
            for (position, arg) in list.args.drain(1..).enumerate() {
                let (name, value) = match arg {
                    FunctionArg::Named { name, arg: FunctionArgExpr::Expr(value), .. } => (normalize(&name), value),
                    FunctionArg::ExprNamed { name, arg: FunctionArgExpr::Expr(value), .. } => {
                        match feature_name(&name) {
                            Some(feature) => (feature, value),
                            None => {
                                return std::ops::ControlFlow::Break(format!("predict: {name} is not a feature name"));
                            }
                        }
                    }
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(value)) => match feature_name(&value) {
                        Some(feature) => (feature, value),
                        None => {
                            return std::ops::ControlFlow::Break(format!(
                                "predict: feature argument {} ({value}) needs a name: write name => {value}",
                                position + 2
                            ));
                        }
                    },
                    other => return std::ops::ControlFlow::Break(format!("predict: {other} is not a feature")),
                };
                pairs.push(Expr::value(Value::SingleQuotedString(name)));
                pairs.push(value);
            }
            let features = datafusion::sql::sqlparser::ast::Function {
                name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new("named_struct"))]),
                uses_odbc_syntax: false,
                parameters: FunctionArguments::None,
                args: FunctionArguments::List(datafusion::sql::sqlparser::ast::FunctionArgumentList {
                    duplicate_treatment: None,
                    args: pairs.into_iter().map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e))).collect(),
                    clauses: Vec::new(),
                }),
                filter: None,
                null_treatment: None,
                over: None,
                within_group: Vec::new(),
            };
            list.args.push(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Function(features))));
            std::ops::ControlFlow::Continue(())
        }
    }
    match statement.visit(&mut Rewrite) {
        std::ops::ControlFlow::Continue(()) => Ok(()),
        std::ops::ControlFlow::Break(message) => Err(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::WsStatement;

    #[test]
    fn model_statements_parse() {
        let statements = crate::sql::parse(
            "CREATE MODEL m WITH (model_type = 'logistic_reg', label = is_fraud, test_fraction = 0.25) \
             AS SELECT a, b FROM t WHERE c > (1); ALTER MODEL m SET ACTIVE VERSION 2; DROP MODEL IF EXISTS m, n",
        )
        .unwrap();
        let [WsStatement::Model(create), WsStatement::Model(alter), WsStatement::Model(drop)] = statements.as_slice()
        else {
            panic!("three model statements: {statements:?}")
        };
        let ModelStatement::Create { name, options, query } = create else { panic!("{create:?}") };
        assert_eq!(name, "m");
        assert_eq!(options.get("label").map(String::as_str), Some("is_fraud"));
        assert_eq!(options.get("test_fraction").map(String::as_str), Some("0.25"));
        assert_eq!(query, "SELECT a, b FROM t WHERE c > (1)");
        assert_eq!(alter, &ModelStatement::SetActive { name: "m".into(), version: 2 });
        assert_eq!(drop, &ModelStatement::Drop { names: vec!["m".into(), "n".into()], if_exists: true });
        assert!(crate::sql::parse("ALTER MODEL m SET ACTIVE VERSION 0").is_err());
        assert!(crate::sql::parse("CREATE MODEL m AS SELECT 1").is_err());
    }

    #[test]
    fn predict_arguments_become_a_named_struct() {
        let statements =
            crate::sql::parse("SELECT predict('m', amount => t.amount * 2, t.new_device, Hour => 3) FROM t").unwrap();
        let WsStatement::Sql(statement) = &statements[0] else { panic!("a query") };
        // (The output name PostgreSQL gives, `predict`, is kept as an alias by output_names.rs.)
        let text = statement.to_string();
        assert!(
            text.starts_with(
                "SELECT predict('m', named_struct('amount', t.amount * 2, 'new_device', t.new_device, 'hour', 3))"
            ),
            "{text}"
        );
        let kept = crate::sql::parse("SELECT predict('m', named_struct('a', 1))").unwrap();
        let WsStatement::Sql(statement) = &kept[0] else { panic!("a query") };
        assert!(statement.to_string().starts_with("SELECT predict('m', named_struct('a', 1))"), "{statement}");
        let error = crate::sql::parse("SELECT predict('m', a => 1, 2 + 3) FROM t").unwrap_err();
        assert_eq!(error.code, crate::error::sqlstate::SYNTAX_ERROR);
        assert!(error.message.contains("needs a name"), "{}", error.message);
    }
}

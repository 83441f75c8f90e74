//! PostgreSQL catalog idioms that datafusion-pg-catalog's rules do not cover:
//! `'name'::regproc` literals, the set-returning `information_schema._pg_expandarray`, and
//! field access on a composite value, `(expr).field`, which DataFusion spells
//! `expr['field']`.
//!
//! `'name'::regproc` literals compared with pg_type's regproc columns:
//! datafusion-pg-catalog stores regproc columns (`typinput`, `typoutput`...) as function
//! names, the way PostgreSQL prints them; pgJDBC asks `typinput = 'pg_catalog.array_in'::regproc`.
//! Its generic rewrite turns the literal into an OID, which a name column cannot equal.
//! This rule runs first and turns such a literal into the function's name, unqualified as
//! the columns hold it.
//!
//! `x::regtype::text`, an oid shown as its type's name (asyncpg's introspection query
//! names each type so): DataFusion plans the regtype cast as int4, so the text would be the
//! number. It becomes `format_type(x, NULL)` (datafusion-pg-catalog's), with PostgreSQL's
//! `-` for oid 0. An oid that names no type shows as `oid(n)` where PostgreSQL shows `n`.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken;
use datafusion::sql::sqlparser::ast::{
    AccessExpr, BinaryOperator, CaseWhen, DataType, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, Ident, ObjectName, Statement, Subscript, Value, ValueWithSpan, visit_expressions_mut,
};

pub fn rewrite(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::Cast { expr: inner, data_type: DataType::Custom(name, modifiers), .. } = expr
            && modifiers.is_empty()
            && name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| i.value.eq_ignore_ascii_case("regproc"))
            && let Expr::Value(ValueWithSpan { value: Value::SingleQuotedString(text), .. }) = inner.as_ref()
        {
            let function = text.rsplit('.').next().unwrap_or(text).trim_matches('"').to_string();
            *expr = Expr::Value(Value::SingleQuotedString(function).into());
        }
        if let Expr::Cast { expr: inner, data_type: DataType::Text, .. } = expr
            && let Expr::Cast { expr: oid, data_type: DataType::Custom(name, modifiers), .. } = inner.as_ref()
            && modifiers.is_empty()
            && name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| i.value.eq_ignore_ascii_case("regtype"))
            // A name literal (`'int4'::regtype`) is datafusion-pg-catalog's to resolve.
            && !matches!(oid.as_ref(), Expr::Value(ValueWithSpan { value: Value::SingleQuotedString(_), .. }))
        {
            *expr = regtype_name(oid.as_ref().clone());
        }
        // A bare column root (`(t.c)[i]`, `t.c.f`) is DataFusion's to resolve as it is.
        if let Expr::CompoundFieldAccess { root, access_chain } = expr
            && !matches!(root.as_ref(), Expr::Identifier(_) | Expr::CompoundIdentifier(_))
        {
            for access in access_chain.iter_mut() {
                if let AccessExpr::Dot(Expr::Identifier(field)) = access {
                    let name = Expr::Value(Value::SingleQuotedString(field.value.clone()).into());
                    *access = AccessExpr::Subscript(Subscript::Index { index: name });
                }
            }
        }
        // `_pg_expandarray(a)` returns a set of (x, n) rows; our function of that name
        // returns them as a list, and unnest makes it a set again (in a select list,
        // several unnests run in lockstep, as several set-returning functions do).
        if let Expr::Function(function) = expr
            && function
                .name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.eq_ignore_ascii_case("_pg_expandarray"))
        {
            let mut inner = function.clone();
            inner.name = ObjectName::from(vec![Ident::new("_pg_expandarray")]);
            *expr = Expr::Function(Function {
                name: ObjectName::from(vec![Ident::new("unnest")]),
                uses_odbc_syntax: false,
                parameters: FunctionArguments::None,
                args: FunctionArguments::List(FunctionArgumentList {
                    duplicate_treatment: None,
                    args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Function(inner)))],
                    clauses: vec![],
                }),
                filter: None,
                null_treatment: None,
                over: None,
                within_group: vec![],
            });
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `CASE WHEN oid = 0 THEN '-' ELSE format_type(oid, NULL) END`
fn regtype_name(oid: Expr) -> Expr {
    let text = |s: &str| Expr::Value(Value::SingleQuotedString(s.to_string()).into());
    let format_type = Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new("format_type")]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![
                FunctionArg::Unnamed(FunctionArgExpr::Expr(oid.clone())),
                FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(Value::Null.into()))),
            ],
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    });
    let zero = Expr::BinaryOp {
        left: Box::new(Expr::Nested(Box::new(oid))),
        op: BinaryOperator::Eq,
        right: Box::new(Expr::Value(Value::Number("0".to_string(), false).into())),
    };
    Expr::Case {
        case_token: AttachedToken::empty(),
        end_token: AttachedToken::empty(),
        operand: None,
        conditions: vec![CaseWhen { condition: zero, result: text("-") }],
        else_result: Some(Box::new(format_type)),
    }
}

#[cfg(test)]
mod tests {
    /// The statement as planned, printed back.
    fn rewritten(sql: &str) -> String {
        let statements = crate::sql::parse(sql).unwrap();
        let crate::sql::WsStatement::Sql(statement) = &statements[0] else { panic!("a DataFusion statement") };
        statement.to_string()
    }

    #[test]
    fn regproc_literal_becomes_its_name() {
        let text = rewritten("SELECT typinput = 'pg_catalog.array_in'::regproc FROM pg_type");
        assert!(text.contains("typinput = 'array_in'"), "{text}");
    }

    #[test]
    fn regtype_text_becomes_format_type() {
        let text = rewritten("SELECT typelem::regtype::text, 'int4'::regtype::text FROM pg_type");
        assert!(text.contains("CASE WHEN (typelem) = 0 THEN '-' ELSE format_type(typelem, NULL) END"), "{text}");
        assert!(!text.contains("format_type('int4'"), "a name literal is left to datafusion-pg-catalog: {text}");
    }
}

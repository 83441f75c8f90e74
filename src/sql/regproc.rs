//! `'name'::regproc` literals compared with pg_type's regproc columns.
//!
//! datafusion-pg-catalog stores regproc columns (`typinput`, `typoutput`...) as function
//! names, the way PostgreSQL prints them; pgJDBC asks `typinput = 'pg_catalog.array_in'::regproc`.
//! Its generic rewrite turns the literal into an OID, which a name column cannot equal.
//! This rule runs first and turns such a literal into the function's name, unqualified as
//! the columns hold it.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{DataType, Expr, Statement, Value, ValueWithSpan, visit_expressions_mut};

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
        ControlFlow::<()>::Continue(())
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn regproc_literal_becomes_its_name() {
        let statements = crate::sql::parse("SELECT typinput = 'pg_catalog.array_in'::regproc FROM pg_type").unwrap();
        let text = statements[0].to_string();
        assert!(text.contains("typinput = 'array_in'"), "{text}");
    }
}

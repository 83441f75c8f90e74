//! PostgreSQL's array text literals where an array is compared: `polroles = '{0}'` (psql's
//! `\d` footer). PostgreSQL types an untyped literal by what it is compared with; DataFusion
//! has no array type for a string and refuses `List = Utf8`. This expression planner turns a
//! one-dimensional array text literal compared with a list into a list literal of that
//! element type, at planning time (a comparison in a projection is typed while planning).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ListArray, StringArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{Expr, ExprSchemable};
use datafusion::sql::sqlparser::ast::BinaryOperator;

#[derive(Debug, Default)]
pub struct ArrayTextLiterals;

/// Elements of a one-dimensional array literal (`{1,2}`, `{"a b",NULL}`), or None when
/// the text is not one (nested, unbalanced quotes, no braces).
fn parse_array_text(text: &str) -> Option<Vec<Option<String>>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    if inner.trim().is_empty() {
        return Some(Vec::new());
    }
    let mut elements = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut element = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => element.push(chars.next()?),
                    c => element.push(c),
                }
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if matches!(c, '{' | '}' | '"') {
                    return None;
                }
                element.push(c);
                chars.next();
            }
            element = element.trim().to_string();
            if element.is_empty() {
                return None;
            }
        }
        let null = !quoted && element.eq_ignore_ascii_case("null");
        elements.push(if null { None } else { Some(element) });
        match chars.next() {
            None => return Some(elements),
            Some(',') => continue,
            Some(_) => return None,
        }
    }
}

/// The literal as a one-row list of `list_type`, if it is an array text of that type.
fn as_list_literal(text: &str, list_type: &DataType) -> Option<Expr> {
    let DataType::List(item) = list_type else { return None };
    let elements = parse_array_text(text)?;
    let values = StringArray::from(elements);
    let utf8 = Arc::new(Field::new("item", DataType::Utf8, true));
    let nulls = values.null_count();
    let list = ListArray::try_new(utf8, OffsetBuffer::from_lengths([values.len()]), Arc::new(values), None).ok()?;
    // An element not of the element type casts to NULL (or fails): the literal is left
    // alone and the comparison keeps its own error.
    let typed = cast(&list, &DataType::List(item.clone())).ok()?;
    let typed_list = typed.as_any().downcast_ref::<ListArray>()?;
    if typed_list.is_null(0) || typed_list.values().null_count() != nulls {
        return None;
    }
    let scalar = ScalarValue::try_from_array(&typed, 0).ok()?;
    Some(Expr::Literal(scalar, None))
}

fn is_comparison(op: &BinaryOperator) -> bool {
    matches!(
        op,
        BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq
    )
}

fn text_literal(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Literal(ScalarValue::Utf8(Some(text)) | ScalarValue::Utf8View(Some(text)), _) => Some(text),
        _ => None,
    }
}

impl ExprPlanner for ArrayTextLiterals {
    fn plan_binary_op(&self, mut expr: RawBinaryExpr, schema: &DFSchema) -> DfResult<PlannerResult<RawBinaryExpr>> {
        if !is_comparison(&expr.op) {
            return Ok(PlannerResult::Original(expr));
        }
        let list_type = |side: &Expr| side.get_type(schema).ok().filter(|t| matches!(t, DataType::List(_)));
        if let Some(text) = text_literal(&expr.right)
            && let Some(list_type) = list_type(&expr.left)
            && let Some(literal) = as_list_literal(text, &list_type)
        {
            expr.right = literal;
        } else if let Some(text) = text_literal(&expr.left)
            && let Some(list_type) = list_type(&expr.right)
            && let Some(literal) = as_list_literal(text, &list_type)
        {
            expr.left = literal;
        }
        Ok(PlannerResult::Original(expr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_texts_parse_as_postgresql_reads_them() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(parse_array_text("{0}"), Some(vec![s("0")]));
        assert_eq!(parse_array_text("{}"), Some(vec![]));
        assert_eq!(parse_array_text("{1, 2 ,NULL}"), Some(vec![s("1"), s("2"), None]));
        assert_eq!(parse_array_text(r#"{"a b","NULL","x\"y"}"#), Some(vec![s("a b"), s("NULL"), s("x\"y")]));
        assert_eq!(parse_array_text("{{1,2}}"), None);
        assert_eq!(parse_array_text("0"), None);
        assert_eq!(parse_array_text("{1,}"), None);
    }

    #[test]
    fn literal_takes_the_list_type() {
        let oids = DataType::List(Arc::new(Field::new("item", DataType::Int32, true)));
        let Some(Expr::Literal(ScalarValue::List(list), _)) = as_list_literal("{0,7}", &oids) else {
            panic!("a list literal")
        };
        assert_eq!(list.data_type(), &oids);
        assert_eq!(list.value(0).len(), 2);
        assert!(as_list_literal("{x}", &oids).is_none(), "not an int4");
    }
}

//! Output column names: PostgreSQL lets a SELECT list repeat a name (`SELECT NULL, NULL`,
//! `SELECT a, a`, `SELECT *, a`), DataFusion refuses a projection whose expression names
//! are not unique. psql's `\d` footers and ORMs send such lists, so the statement must plan.
//!
//! Colliding items get an internal alias that is unique (the name PostgreSQL would show,
//! then [`INTERNAL_SUFFIX_SEPARATOR`] and the item's position); the wire layer shows only
//! the part before the separator ([`display_name`]). In nested queries only collisions are
//! renamed: every other item keeps DataFusion's own name, so a derived table's columns
//! stay referable. In the statement's own result every unaliased expression is named as
//! PostgreSQL names it (`count`, `?column?`, a cast's type name), since nothing refers to
//! those names but the client.
//!
//! In the statement's own result (the top-level SELECTs, all branches of a set operation),
//! every member of a colliding group is renamed, so `SELECT NULL, NULL` shows PostgreSQL's
//! `?column?` twice. In nested queries the first member keeps its name, because an outer
//! query may refer to it.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    CopySource, DataType, Expr, Ident, Query, SelectItem, SetExpr, Statement, VisitMut, VisitorMut,
};

/// Separates the name a client sees from the suffix that keeps an internal name unique.
/// A control character: no client types it in an identifier.
pub const INTERNAL_SUFFIX_SEPARATOR: char = '\u{1f}';

/// The name a client is shown for an output column.
pub fn display_name(name: &str) -> &str {
    match name.split_once(INTERNAL_SUFFIX_SEPARATOR) {
        Some((shown, _)) => shown,
        None => name,
    }
}

/// Renames colliding SELECT items of a statement whose result goes to the client: a query,
/// or the query of `COPY (query) TO` (module doc).
pub fn make_unique(statement: &mut Statement) {
    let query = match statement {
        Statement::Query(query) => query,
        Statement::Copy { source: CopySource::Query(query), .. } => query,
        _ => return,
    };
    let mut top = Vec::new();
    body_selects(query.body.as_mut(), &mut top);
    for select in top {
        name_as_postgresql(&mut select.projection);
        rename_collisions(&mut select.projection, true);
    }
    struct Nested;
    impl VisitorMut for Nested {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            let mut selects = Vec::new();
            body_selects(query.body.as_mut(), &mut selects);
            for select in selects {
                rename_collisions(&mut select.projection, false);
            }
            ControlFlow::Continue(())
        }
    }
    // The top-level body was renamed first, so its items are aliased now and this pass
    // finds no collision left there; it renames the nested queries' collisions.
    let _ = query.visit(&mut Nested);
}

/// The SELECTs whose items name a query's output columns: every branch of a set operation.
fn body_selects<'a>(body: &'a mut SetExpr, out: &mut Vec<&'a mut datafusion::sql::sqlparser::ast::Select>) {
    match body {
        SetExpr::Select(select) => out.push(select.as_mut()),
        SetExpr::Query(query) => body_selects(query.body.as_mut(), out),
        SetExpr::SetOperation { left, right, .. } => {
            body_selects(left.as_mut(), out);
            body_selects(right.as_mut(), out);
        }
        _ => {}
    }
}

/// The statement's own result shows PostgreSQL's names (`count`, `?column?`, `int8`,
/// `case`...), not DataFusion's (`count(*)`, `Int64(1)`): every unaliased item that is not
/// a plain column gets the name PostgreSQL would give it, as an internal alias unique by
/// position. Plain columns already have their names; a nested query's items keep
/// DataFusion's names, since an outer query may refer to them by those.
fn name_as_postgresql(projection: &mut [SelectItem]) {
    for (position, item) in projection.iter_mut().enumerate() {
        let SelectItem::UnnamedExpr(expr) = item else { continue };
        if matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
            continue;
        }
        let shown = figure_name(expr).0;
        let alias = Ident::with_quote('"', format!("{shown}{INTERNAL_SUFFIX_SEPARATOR}{position}"));
        *item = SelectItem::ExprWithAlias { expr: expr.clone(), alias };
    }
}

fn rename_collisions(projection: &mut [SelectItem], rename_first: bool) {
    let has_wildcard =
        projection.iter().any(|item| matches!(item, SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)));
    // Occurrences of each approximate DataFusion name. Approximate on purpose: two keys
    // that differ never name the same column, and renaming an item that did not need it
    // changes only an internal name.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for item in projection.iter() {
        if let Some(key) = collision_key(item) {
            *counts.entry(key).or_default() += 1;
        }
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (position, item) in projection.iter_mut().enumerate() {
        let Some(key) = collision_key(item) else { continue };
        let occurrence = seen.entry(key.clone()).or_default();
        *occurrence += 1;
        let duplicated = counts[&key] > 1 && (rename_first || *occurrence > 1);
        // A wildcard may expand to a column of the same name as an unnamed item.
        let beside_wildcard = has_wildcard && matches!(item, SelectItem::UnnamedExpr(_));
        if !duplicated && !beside_wildcard {
            continue;
        }
        let (expr, shown) = match item {
            SelectItem::UnnamedExpr(expr) => (expr.clone(), figure_name(expr).0),
            SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), folded(alias)),
            _ => continue,
        };
        let alias = Ident::with_quote('"', format!("{shown}{INTERNAL_SUFFIX_SEPARATOR}{position}"));
        *item = SelectItem::ExprWithAlias { expr, alias };
    }
}

/// A name under which DataFusion would label the item, folded; None for wildcards.
fn collision_key(item: &SelectItem) -> Option<String> {
    match item {
        SelectItem::UnnamedExpr(Expr::Identifier(ident)) => Some(folded(ident)),
        SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => parts.last().map(folded),
        SelectItem::UnnamedExpr(expr) => Some(expr.to_string().to_lowercase()),
        SelectItem::ExprWithAlias { alias, .. } => Some(folded(alias)),
        _ => None,
    }
}

fn folded(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// PostgreSQL's name for an unaliased output expression, with its strength (FigureColname
/// in PostgreSQL's parse_target.c): 2 for a name taken from a column or function, 1 for
/// a keyword-like name (`case`, `array`), 0 for `?column?`.
fn figure_name(expr: &Expr) -> (String, u8) {
    match expr {
        Expr::Identifier(ident) => (folded(ident), 2),
        Expr::CompoundIdentifier(parts) => match parts.last() {
            Some(last) => (folded(last), 2),
            None => unnamed(),
        },
        Expr::CompoundFieldAccess { root, .. } => figure_name(root),
        Expr::Function(function) => match function.name.0.last().and_then(|part| part.as_ident()) {
            Some(ident) => (ident.value.to_lowercase(), 2),
            None => unnamed(),
        },
        Expr::Cast { expr, data_type, .. } => {
            let inner = figure_name(expr);
            if inner.1 > 1 { inner } else { (type_name(data_type), 1) }
        }
        Expr::Collate { expr, .. } | Expr::Nested(expr) => figure_name(expr),
        Expr::Case { .. } => ("case".into(), 1),
        Expr::Exists { .. } => ("exists".into(), 2),
        Expr::Array(_) => ("array".into(), 2),
        Expr::Tuple(_) => ("row".into(), 2),
        Expr::Subquery(query) => match query.body.as_ref() {
            SetExpr::Select(select) => match select.projection.first() {
                Some(SelectItem::ExprWithAlias { alias, .. }) => (folded(alias), 2),
                Some(SelectItem::UnnamedExpr(inner)) => figure_name(inner),
                _ => unnamed(),
            },
            _ => unnamed(),
        },
        Expr::Extract { .. } => ("extract".into(), 2),
        Expr::Position { .. } => ("position".into(), 2),
        Expr::Substring { .. } => ("substring".into(), 2),
        Expr::Trim { .. } => ("btrim".into(), 2),
        Expr::Ceil { .. } => ("ceil".into(), 2),
        Expr::Floor { .. } => ("floor".into(), 2),
        _ => unnamed(),
    }
}

fn unnamed() -> (String, u8) {
    ("?column?".into(), 0)
}

/// PostgreSQL's internal name of a cast's target type, as it labels `'1'::bigint` (`int8`).
fn type_name(data_type: &DataType) -> String {
    let written = data_type.to_string().to_lowercase();
    let base = written.split(['(', '[']).next().unwrap_or_default().trim();
    let name = match base {
        "bigint" | "int8" => "int8",
        "integer" | "int" | "int4" => "int4",
        "smallint" | "int2" => "int2",
        "boolean" | "bool" => "bool",
        "real" | "float4" => "float4",
        "double precision" | "double" | "float8" | "float" => "float8",
        "decimal" | "numeric" => "numeric",
        "character varying" | "varchar" => "varchar",
        "character" | "char" => "bpchar",
        "timestamp with time zone" | "timestamptz" => "timestamptz",
        "timestamp" | "timestamp without time zone" => "timestamp",
        "time" | "time without time zone" => "time",
        other => other,
    };
    name.rsplit('.').next().unwrap_or(name).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn renamed(sql: &str) -> Vec<String> {
        let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0);
        make_unique(&mut statement);
        let Statement::Query(query) = &statement else { panic!("a query") };
        let SetExpr::Select(select) = query.body.as_ref() else { panic!("a select") };
        select.projection.iter().map(|item| item.to_string()).collect()
    }

    #[test]
    fn unique_lists_are_left_alone() {
        assert_eq!(renamed("SELECT a, b AS c, t.d FROM t"), ["a", "b AS c", "t.d"]);
    }

    #[test]
    fn top_level_duplicates_get_postgresql_names() {
        let names = renamed("SELECT NULL, null, a, t.a, x AS y, z AS Y, 1::bigint FROM t");
        let shown: Vec<&str> = names
            .iter()
            .map(|item| item.rsplit_once(" AS ").map_or(item.as_str(), |(_, alias)| alias))
            .map(|alias| display_name(alias.trim_matches('"')))
            .collect();
        assert_eq!(shown, ["?column?", "?column?", "a", "a", "y", "y", "int8"]);
        assert!(names[0].ends_with(&format!("?column?{INTERNAL_SUFFIX_SEPARATOR}0\"")), "{names:?}");
    }

    #[test]
    fn casts_take_the_type_name_of_a_constant() {
        assert_eq!(
            figure_name(&Parser::new(&PostgreSqlDialect {}).try_with_sql("'1'::bigint").unwrap().parse_expr().unwrap())
                .0,
            "int8"
        );
        assert_eq!(
            figure_name(&Parser::new(&PostgreSqlDialect {}).try_with_sql("a::text").unwrap().parse_expr().unwrap()).0,
            "a"
        );
    }

    #[test]
    fn the_result_shows_postgresql_names() {
        let names =
            renamed("SELECT count(*), sum(a), 1, a + 1, CASE WHEN a THEN 1 END, '1'::bigint, max(a) AS m FROM t");
        let shown: Vec<&str> = names
            .iter()
            .map(|item| item.rsplit_once(" AS ").map_or(item.as_str(), |(_, alias)| alias))
            .map(|alias| display_name(alias.trim_matches('"')))
            .collect();
        assert_eq!(shown, ["count", "sum", "?column?", "?column?", "case", "int8", "m"]);
    }

    #[test]
    fn nested_duplicates_keep_the_first_name() {
        let mut statement =
            Parser::parse_sql(&PostgreSqlDialect {}, "SELECT a FROM (SELECT a, a FROM t) s").unwrap().remove(0);
        make_unique(&mut statement);
        let text = statement.to_string();
        assert!(text.contains("(SELECT a, a AS \"a\u{1f}1\" FROM t)"), "{text}");
        assert!(text.starts_with("SELECT a FROM"), "{text}");
    }

    #[test]
    fn items_beside_a_wildcard_are_renamed() {
        let names = renamed("SELECT *, a, 1 AS b FROM t");
        assert_eq!(names[0], "*");
        assert_eq!(names[1], "a AS \"a\u{1f}1\"");
        assert_eq!(names[2], "1 AS b");
    }
}

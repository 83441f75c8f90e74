//! sql/upsert.rs: `INSERT ... ON CONFLICT (cols) DO NOTHING | DO UPDATE SET ...` on Delta
//! tables, as the MERGE it means, rewritten on the AST:
//!
//! ```sql
//! INSERT INTO t [AS a] (c1, c2) <rows> ON CONFLICT (k) DO UPDATE SET c2 = EXCLUDED.c2 [WHERE p]
//! -- is planned as
//! MERGE INTO t [AS a] USING (<rows>) AS excluded (c1, c2) ON t.k = excluded.k
//!   WHEN MATCHED [AND p] THEN UPDATE SET c2 = excluded.c2
//!   WHEN NOT MATCHED THEN INSERT (c1, c2) VALUES (excluded.c1, excluded.c2)
//! ```
//!
//! so that `EXCLUDED.col` and the target's columns mean what they mean in PostgreSQL, and
//! deltalake's merge makes it one commit. Delta tables have no unique indexes: the
//! conflict target's columns are taken as the key to match on (PostgreSQL would require a
//! unique index on them, 42P10, and then could never hold two rows with one key). Rows of
//! one INSERT that share a key with each other, and match no row of the table, are all
//! inserted. `ON CONFLICT DO NOTHING` without a target conflicts with nothing here (no
//! unique index exists), so it is a plain INSERT, as in PostgreSQL on a table without
//! unique indexes. `ON CONFLICT ON CONSTRAINT name` names a constraint that cannot exist:
//! 42704.

use datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken;
use datafusion::sql::sqlparser::ast::{
    self as sqlast, BinaryOperator, ConflictTarget, Expr as SqlExpr, Ident, Insert, Merge, MergeAction, MergeClause,
    MergeClauseKind, MergeInsertExpr, MergeInsertKind, MergeUpdateExpr, ObjectName, OnConflictAction, OnInsert, Parens,
    TableAlias, TableAliasColumnDef, TableFactor, TableObject, Values,
};

use crate::error::{WsError, WsResult, sqlstate};

/// The source's alias: PostgreSQL's name for the row proposed for insertion.
const EXCLUDED: &str = "excluded";

/// Whether the statement is an INSERT with an ON CONFLICT clause.
pub fn is_upsert(statement: &sqlast::Statement) -> bool {
    matches!(statement, sqlast::Statement::Insert(Insert { on: Some(OnInsert::OnConflict(_)), .. }))
}

/// Whether an INSERT, UPDATE or DELETE asks for RETURNING rows, which need the written
/// rows back from deltalake's operations: not there yet.
pub fn returns_rows(statement: &sqlast::Statement) -> bool {
    match statement {
        sqlast::Statement::Insert(insert) => insert.returning.is_some(),
        sqlast::Statement::Update(update) => update.returning.is_some(),
        sqlast::Statement::Delete(delete) => delete.returning.is_some(),
        _ => false,
    }
}

/// The table an upsert writes to.
pub fn upsert_table(statement: &sqlast::Statement) -> Option<&ObjectName> {
    match statement {
        sqlast::Statement::Insert(Insert { table: TableObject::TableName(name), .. }) => Some(name),
        _ => None,
    }
}

fn ident(name: &str) -> Ident {
    Ident::new(name)
}

fn excluded_column(column: &Ident) -> SqlExpr {
    SqlExpr::CompoundIdentifier(vec![ident(EXCLUDED), column.clone()])
}

/// Rewrites an upsert into its MERGE, or into the plain INSERT it is (`DO NOTHING`
/// without a conflict target). `table_columns` are the target's columns in order, for an
/// INSERT without a column list.
pub fn as_merge(insert: Insert, table_columns: &[String]) -> WsResult<sqlast::Statement> {
    let Some(OnInsert::OnConflict(conflict)) = insert.on.clone() else {
        return Ok(sqlast::Statement::Insert(insert));
    };
    let keys = match conflict.conflict_target {
        Some(ConflictTarget::Columns(keys)) if !keys.is_empty() => keys,
        Some(ConflictTarget::OnConstraint(name)) => {
            return Err(WsError::new(
                sqlstate::UNDEFINED_OBJECT,
                format!("constraint \"{name}\" does not exist (Delta tables have no unique constraints)"),
            ));
        }
        _ if matches!(conflict.action, OnConflictAction::DoNothing) => {
            return Ok(sqlast::Statement::Insert(Insert { on: None, ..insert }));
        }
        _ => {
            return Err(WsError::new(
                sqlstate::SYNTAX_ERROR,
                "ON CONFLICT DO UPDATE requires inference specification or constraint name",
            ));
        }
    };
    if insert.returning.is_some() {
        return Err(WsError::unsupported("INSERT ... ON CONFLICT ... RETURNING is not supported yet"));
    }
    let Some(source) = insert.source else {
        return Err(WsError::unsupported("INSERT ... DEFAULT VALUES ON CONFLICT is not supported"));
    };
    let TableObject::TableName(table_name) = insert.table else {
        return Err(WsError::unsupported("INSERT ON CONFLICT into a table function is not supported"));
    };
    let columns: Vec<Ident> = if insert.columns.is_empty() {
        table_columns.iter().map(|name| Ident::with_quote('"', name)).collect()
    } else {
        let mut columns = Vec::with_capacity(insert.columns.len());
        for column in &insert.columns {
            match column.0.as_slice() {
                [part] => match part.as_ident() {
                    Some(one) => columns.push(one.clone()),
                    None => return Err(WsError::syntax(format!("column {column} of INSERT is not a column name"))),
                },
                _ => return Err(WsError::syntax(format!("column {column} of INSERT is not a column name"))),
            }
        }
        columns
    };
    // The target as the statement names it: its alias, or the table's last name part.
    let target_name = match &insert.table_alias {
        Some(alias) => alias.alias.clone(),
        None => table_name
            .0
            .last()
            .and_then(|part| part.as_ident().cloned())
            .ok_or_else(|| WsError::syntax("INSERT needs a table name"))?,
    };
    let on = keys
        .iter()
        .map(|key| SqlExpr::BinaryOp {
            left: Box::new(SqlExpr::CompoundIdentifier(vec![target_name.clone(), key.clone()])),
            op: BinaryOperator::Eq,
            right: Box::new(excluded_column(key)),
        })
        .reduce(|left, right| SqlExpr::BinaryOp {
            left: Box::new(left),
            op: BinaryOperator::And,
            right: Box::new(right),
        })
        .expect("the conflict target has at least one column");
    let mut clauses = Vec::with_capacity(2);
    if let OnConflictAction::DoUpdate(update) = conflict.action {
        clauses.push(MergeClause {
            when_token: AttachedToken::empty(),
            clause_kind: MergeClauseKind::Matched,
            predicate: update.selection,
            action: MergeAction::Update(MergeUpdateExpr {
                update_token: AttachedToken::empty(),
                assignments: update.assignments,
                update_predicate: None,
                delete_predicate: None,
            }),
        });
    }
    clauses.push(MergeClause {
        when_token: AttachedToken::empty(),
        clause_kind: MergeClauseKind::NotMatched,
        predicate: None,
        action: MergeAction::Insert(MergeInsertExpr {
            insert_token: AttachedToken::empty(),
            columns: columns.iter().map(|column| ObjectName::from(vec![column.clone()])).collect(),
            kind_token: AttachedToken::empty(),
            kind: MergeInsertKind::Values(Values {
                explicit_row: false,
                value_keyword: false,
                rows: vec![Parens {
                    opening_token: AttachedToken::empty(),
                    content: columns.iter().map(excluded_column).collect(),
                    closing_token: AttachedToken::empty(),
                }],
            }),
            insert_predicate: None,
        }),
    });
    let target_alias =
        insert.table_alias.map(|alias| TableAlias { explicit: true, name: alias.alias, columns: Vec::new(), at: None });
    let table = TableFactor::Table {
        name: table_name,
        alias: target_alias,
        args: None,
        with_hints: Vec::new(),
        version: None,
        with_ordinality: false,
        partitions: Vec::new(),
        json_path: None,
        sample: None,
        index_hints: Vec::new(),
    };
    let source = TableFactor::Derived {
        lateral: false,
        subquery: source,
        alias: Some(TableAlias {
            explicit: true,
            name: ident(EXCLUDED),
            columns: columns.iter().map(|name| TableAliasColumnDef { name: name.clone(), data_type: None }).collect(),
            at: None,
        }),
        sample: None,
    };
    Ok(sqlast::Statement::Merge(Merge {
        merge_token: AttachedToken::empty(),
        optimizer_hints: Vec::new(),
        into: true,
        table,
        source,
        on: Box::new(on),
        clauses,
        output: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str, columns: &[&str]) -> WsResult<String> {
        let statement = match crate::sql::parse(sql).unwrap().remove(0) {
            crate::sql::WsStatement::Sql(datafusion::sql::parser::Statement::Statement(inner)) => *inner,
            other => panic!("{other:?}"),
        };
        let sqlast::Statement::Insert(insert) = statement else { panic!("an insert") };
        let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        as_merge(insert, &columns).map(|merged| merged.to_string())
    }

    #[test]
    fn upserts_become_merges() {
        assert_eq!(
            rewritten("INSERT INTO t VALUES (1, 'a') ON CONFLICT (k) DO NOTHING", &["k", "v"]).unwrap(),
            "MERGE INTO t USING (VALUES (1, 'a')) AS excluded (\"k\", \"v\") ON t.k = excluded.k \
             WHEN NOT MATCHED THEN INSERT (\"k\", \"v\") VALUES (excluded.\"k\", excluded.\"v\")"
        );
        assert_eq!(
            rewritten(
                "INSERT INTO t AS x (k, v) SELECT k, v FROM s ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v WHERE x.v < EXCLUDED.v",
                &["k", "v", "w"]
            )
            .unwrap(),
            "MERGE INTO t AS x USING (SELECT k, v FROM s) AS excluded (k, v) ON x.k = excluded.k \
             WHEN MATCHED AND x.v < EXCLUDED.v THEN UPDATE SET v = EXCLUDED.v \
             WHEN NOT MATCHED THEN INSERT (k, v) VALUES (excluded.k, excluded.v)"
        );
        // Nothing can conflict without a unique index: a plain INSERT.
        assert_eq!(
            rewritten("INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING", &["k"]).unwrap(),
            "INSERT INTO t VALUES (1)"
        );
        assert_eq!(
            rewritten("INSERT INTO t VALUES (1) ON CONFLICT ON CONSTRAINT t_pkey DO NOTHING", &["k"]).unwrap_err().code,
            sqlstate::UNDEFINED_OBJECT
        );
        assert_eq!(
            rewritten("INSERT INTO t VALUES (1) ON CONFLICT DO UPDATE SET k = 2", &["k"]).unwrap_err().code,
            sqlstate::SYNTAX_ERROR
        );
    }
}

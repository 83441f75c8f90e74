//! Roles and the one privilege check: which role each kind of statement needs.
//!
//! A session runs with the role of the user it authenticated as (admin when the server
//! has no users file), or with no role at all before authentication has finished, in
//! which case nothing runs. The check happens at prepare time, from the statement's
//! [`Kind`], so a refused statement never executes, not even in part.

use std::fmt;
use std::str::FromStr;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::{DmlStatement, LogicalPlan, WriteOp};
use serde::{Deserialize, Serialize};

use super::Kind;
use super::compat::Command;
use crate::error::{WsError, WsResult, sqlstate};

/// What a user may do; each role may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// SELECT (and SUBSCRIBE), SHOW, SET (except of `datafusion.*` options), transaction
    /// statements.
    Read,
    /// read, plus INSERT and COPY into sources and tables.
    Write,
    /// write, plus DDL: CREATE and DROP of anything.
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = WsError;

    fn from_str(text: &str) -> WsResult<Role> {
        match text {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            other => Err(WsError::new(
                sqlstate::INVALID_PARAMETER_VALUE,
                format!("unknown role {other:?}; roles are read, write and admin"),
            )),
        }
    }
}

/// The role a statement needs and the words naming what it does, for the refusal.
/// Every kind is listed (no catch-all) so that a new kind cannot be added without
/// deciding who may run it.
fn required(kind: &Kind) -> (Role, &'static str) {
    match kind {
        Kind::Rows(plan) => plan_requirement(plan),
        Kind::Insert { .. } => (Role::Write, "INSERT"),
        Kind::CreateTable { .. } => (Role::Admin, "CREATE TABLE"),
        Kind::CreateExternal(_) => (Role::Admin, "CREATE EXTERNAL TABLE"),
        Kind::DropTable { .. } => (Role::Admin, "DROP TABLE"),
        Kind::CreateIndex { .. } => (Role::Admin, "CREATE INDEX"),
        Kind::DropIndex { .. } => (Role::Admin, "DROP INDEX"),
        Kind::CreateSource { .. } => (Role::Admin, "CREATE SOURCE"),
        Kind::DropSource { .. } => (Role::Admin, "DROP SOURCE"),
        Kind::CopyTo { plan, .. } => plan_requirement(plan),
        Kind::CopyFrom(_) => (Role::Write, "COPY FROM"),
        Kind::Continuous(command) => (command.role(), command.words()),
        // DataFusion's options can undo server limits (batch size, partitions, spilling).
        Kind::Set { name, .. } if name.starts_with("datafusion.") => (Role::Admin, "SET of datafusion.* options"),
        Kind::Set { .. } | Kind::Show { .. } => (Role::Read, "SET/SHOW"),
        // A cursor's query is checked like the same query run directly.
        Kind::Compat(Command::Declare { plan, .. }) => plan_requirement(plan),
        // Transactions, RESET/DISCARD ALL, SET TRANSACTION, FETCH/MOVE/CLOSE of a cursor
        // already authorized at DECLARE, DEALLOCATE: session state only.
        Kind::Compat(
            Command::ResetAll
            | Command::DiscardAll
            | Command::SetMany(_)
            | Command::Begin(_)
            | Command::Commit
            | Command::Rollback
            | Command::Savepoint
            | Command::Release
            | Command::RollbackTo
            | Command::Fetch { .. }
            | Command::Move { .. }
            | Command::Close(_)
            | Command::Deallocate(_),
        ) => (Role::Read, "session and transaction statements"),
    }
}

/// A row-returning plan may still write: `EXPLAIN ANALYZE INSERT ...` runs the insert.
/// So the whole tree is searched, subqueries included, and the strongest need wins.
fn plan_requirement(plan: &LogicalPlan) -> (Role, &'static str) {
    let mut need = (Role::Read, "SELECT");
    let walked = plan.apply_with_subqueries(|node| {
        let here = match node {
            LogicalPlan::Dml(DmlStatement { op: WriteOp::Insert(_), .. }) => (Role::Write, "INSERT"),
            LogicalPlan::Dml(_) => (Role::Write, "UPDATE/DELETE"),
            // COPY TO writes a file on the server: as in PostgreSQL, an administrator's act.
            LogicalPlan::Copy(_) => (Role::Admin, "COPY TO a server file"),
            LogicalPlan::Ddl(_) => (Role::Admin, "DDL"),
            _ => return Ok(TreeNodeRecursion::Continue),
        };
        if here.0 > need.0 {
            need = here;
        }
        Ok(TreeNodeRecursion::Continue)
    });
    // The closure never fails; should the walk fail anyway, demand the most.
    match walked {
        Ok(_) => need,
        Err(_) => (Role::Admin, "this statement"),
    }
}

/// The session's role, or 28000 for a session that has not authenticated (yet), which
/// may run nothing, not even the planning of a statement.
pub(super) fn authenticated(role: Option<Role>) -> WsResult<Role> {
    role.ok_or_else(|| {
        WsError::new(
            sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            "not authenticated: statements run only after authentication has succeeded",
        )
    })
}

/// Refuses, with 42501, a statement `role` may not run.
pub(super) fn authorize(role: Role, kind: &Kind) -> WsResult<()> {
    let (needed, what) = required(kind);
    if role >= needed {
        return Ok(());
    }
    Err(WsError::new(
        sqlstate::INSUFFICIENT_PRIVILEGE,
        format!("permission denied for {what}: it needs role {needed}, this session has role {role}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parse() {
        assert!(Role::Read < Role::Write && Role::Write < Role::Admin);
        for role in [Role::Read, Role::Write, Role::Admin] {
            assert_eq!(role.name().parse::<Role>().unwrap(), role);
        }
        assert_eq!("root".parse::<Role>().unwrap_err().code, sqlstate::INVALID_PARAMETER_VALUE);
    }

    #[test]
    fn session_statements_need_only_read_and_nothing_runs_unauthenticated() {
        let set = Kind::Set { name: "x.y".into(), value: None };
        assert!(authorize(Role::Read, &set).is_ok());
        let engine_option = Kind::Set { name: "datafusion.execution.batch_size".into(), value: Some("1".into()) };
        assert_eq!(authorize(Role::Write, &engine_option).unwrap_err().code, sqlstate::INSUFFICIENT_PRIVILEGE);
        let drop = Kind::DropTable { names: vec!["t".into()], if_exists: true };
        assert_eq!(authorize(Role::Write, &drop).unwrap_err().code, sqlstate::INSUFFICIENT_PRIVILEGE);
        assert!(authorize(Role::Admin, &drop).is_ok());
        assert_eq!(authenticated(None).unwrap_err().code, sqlstate::INVALID_AUTHORIZATION_SPECIFICATION);
    }
}

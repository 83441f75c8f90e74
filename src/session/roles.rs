//! Roles and the one place that decides, for every kind of statement, which role it needs
//! and whether it writes.
//!
//! A session runs with the role of the user it authenticated as (admin when the server
//! has no users file), or with no role at all before authentication has finished, in
//! which case nothing runs. The role check happens at prepare time, from the statement's
//! [`Kind`], so a refused statement never executes, not even in part; the READ ONLY check
//! happens at execution, against the transaction the statement runs in. `set_config()`
//! changes settings from inside a query and goes through the same decision as `SET`.

use std::fmt;
use std::str::FromStr;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::{DdlStatement, DmlStatement, LogicalPlan};
use serde::{Deserialize, Serialize};

use super::compat::Command;
use super::{Kind, continuous};
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

/// What running a statement takes, decided in one place for every statement kind: the
/// least role that may run it, and whether it writes (changes data or the catalog), which
/// a READ ONLY transaction refuses with 25006, as PostgreSQL does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Requirement {
    pub role: Role,
    /// Whether it writes; EXPLAIN of a write does not (it only plans), EXPLAIN ANALYZE does.
    pub writes: bool,
    /// The words naming it in a refusal, PostgreSQL's where there are ("INSERT",
    /// "CREATE TABLE AS", "COPY FROM").
    pub what: &'static str,
}

impl Requirement {
    const fn reads(role: Role, what: &'static str) -> Requirement {
        Requirement { role, writes: false, what }
    }

    const fn writes(role: Role, what: &'static str) -> Requirement {
        Requirement { role, writes: true, what }
    }

    /// The stronger of two needs (a higher role, or a write over a read), for a statement
    /// made of parts (a plan and its subqueries).
    fn max(self, other: Requirement) -> Requirement {
        if (other.role, other.writes) > (self.role, self.writes) { other } else { self }
    }
}

/// What a statement takes. Every kind is listed (no catch-all) so that a new kind cannot
/// be added without deciding who may run it and whether it writes.
pub(super) fn required(kind: &Kind) -> Requirement {
    use Requirement as R;
    match kind {
        Kind::Rows(plan) => plan_requirement(plan),
        Kind::Write { command, .. } => R::writes(Role::Write, command),
        Kind::CreateTable { plan, .. } if creates_with_rows(plan) => R::writes(Role::Admin, "CREATE TABLE AS"),
        Kind::CreateTable { .. } => R::writes(Role::Admin, "CREATE TABLE"),
        Kind::CreateExternal(_) => R::writes(Role::Admin, "CREATE EXTERNAL TABLE"),
        Kind::DropTable { .. } => R::writes(Role::Admin, "DROP TABLE"),
        Kind::AlterTable { .. } => R::writes(Role::Admin, "ALTER TABLE"),
        Kind::CreatePlainView { .. } => R::writes(Role::Admin, "CREATE VIEW"),
        Kind::DropPlainView { .. } => R::writes(Role::Admin, "DROP VIEW"),
        Kind::CreateIndex { .. } => R::writes(Role::Admin, "CREATE INDEX"),
        Kind::DropIndex { .. } => R::writes(Role::Admin, "DROP INDEX"),
        Kind::CreateSource { .. } => R::writes(Role::Admin, "CREATE SOURCE"),
        Kind::DropSource { .. } => R::writes(Role::Admin, "DROP SOURCE"),
        Kind::CopyTo { plan, .. } => plan_requirement(plan),
        Kind::CopyFrom(_) => R::writes(Role::Write, "COPY FROM"),
        Kind::Continuous(command) => continuous_requirement(command),
        // Rewrites (OPTIMIZE) or deletes (VACUUM) a table's files: PostgreSQL lets the
        // owner VACUUM; here the administrator, who owns the tables.
        Kind::Maintain(crate::sql::LakeStatement::Optimize { .. }) => R::writes(Role::Admin, "OPTIMIZE"),
        Kind::Maintain(crate::sql::LakeStatement::Vacuum { .. }) => R::writes(Role::Admin, "VACUUM"),
        // Models are catalog objects: training, dropping and switching versions are DDL.
        // predict() is a function inside a query: a read like the query.
        Kind::CreateModel { .. } => R::writes(Role::Admin, "CREATE MODEL"),
        Kind::DropModel { .. } => R::writes(Role::Admin, "DROP MODEL"),
        Kind::SetModelVersion { .. } => R::writes(Role::Admin, "ALTER MODEL"),
        Kind::Set { name, .. } => setting_requirement(name),
        Kind::Show { .. } => R::reads(Role::Read, "SHOW"),
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
        ) => R::reads(Role::Read, "session and transaction statements"),
    }
}

/// Views and sinks change the catalog (admin, writes); subscribing and listening read;
/// NOTIFY sends to other sessions (write role) but, as in PostgreSQL, is allowed in a
/// READ ONLY transaction, like LISTEN.
fn continuous_requirement(command: &continuous::Command) -> Requirement {
    use Requirement as R;
    use continuous::Command as C;
    match command {
        C::CreateView { .. } => R::writes(Role::Admin, "CREATE MATERIALIZED VIEW"),
        C::DropView { .. } => R::writes(Role::Admin, "DROP MATERIALIZED VIEW"),
        C::CreateSink { .. } => R::writes(Role::Admin, "CREATE SINK"),
        C::DropSink { .. } => R::writes(Role::Admin, "DROP SINK"),
        C::Subscribe { .. } => R::reads(Role::Read, "SUBSCRIBE"),
        C::Listen(_) => R::reads(Role::Read, "LISTEN"),
        C::Unlisten(_) => R::reads(Role::Read, "UNLISTEN"),
        C::Notify { .. } => R::reads(Role::Write, "NOTIFY"),
    }
}

/// Changing a setting, by `SET`/`RESET` or by `set_config()` inside a query: DataFusion's
/// options can undo server limits (batch size, partitions, spilling), so they are the
/// admin's; PostgreSQL's settings are every session's own. Neither writes (PostgreSQL
/// allows SET in a READ ONLY transaction).
pub(super) fn setting_requirement(name: &str) -> Requirement {
    if name.starts_with("datafusion.") {
        Requirement::reads(Role::Admin, "SET of datafusion.* options")
    } else {
        Requirement::reads(Role::Read, "SET")
    }
}

/// A CREATE TABLE with rows to fill it with (CTAS), as ddl.rs decides.
fn creates_with_rows(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) => {
            !matches!(create.input.as_ref(), LogicalPlan::EmptyRelation(empty) if !empty.produce_one_row)
        }
        _ => false,
    }
}

/// A row-returning plan may still write: `EXPLAIN ANALYZE INSERT ...` runs the insert.
/// So the whole tree is searched, subqueries included, and the strongest need wins. Under
/// a plain EXPLAIN nothing runs: the role is still needed (PostgreSQL checks privileges of
/// an explained statement too), but it does not write.
fn plan_requirement(plan: &LogicalPlan) -> Requirement {
    let mut need = Requirement::reads(Role::Read, "SELECT");
    // The visitor never fails; should the walk fail anyway, demand the most.
    match visit_plan(plan, true, &mut need) {
        Ok(()) => need,
        Err(_) => Requirement::writes(Role::Admin, "this statement"),
    }
}

fn visit_plan(plan: &LogicalPlan, runs: bool, need: &mut Requirement) -> datafusion::error::Result<()> {
    use Requirement as R;
    plan.apply_with_subqueries(|node| {
        let here = match node {
            LogicalPlan::Explain(explain) => {
                visit_plan(&explain.plan, false, need)?;
                return Ok(TreeNodeRecursion::Jump);
            }
            LogicalPlan::Dml(DmlStatement { op, .. }) => R::writes(Role::Write, super::write_command(op)),
            // COPY TO writes a file on the server: as in PostgreSQL, an administrator's act.
            LogicalPlan::Copy(_) => R::writes(Role::Admin, "COPY TO a server file"),
            LogicalPlan::Ddl(_) => R::writes(Role::Admin, "DDL"),
            _ => return Ok(TreeNodeRecursion::Continue),
        };
        *need = need.max(Requirement { writes: here.writes && runs, ..here });
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(())
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
    check_role(role, required(kind))
}

/// Refuses, with 42501, a change of setting `name` the session may not make: the check
/// `set_config()` runs for each row, the same as `SET` gets at prepare time.
pub fn authorize_setting(role: Option<Role>, name: &str) -> WsResult<()> {
    check_role(authenticated(role)?, setting_requirement(name))
}

fn check_role(role: Role, need: Requirement) -> WsResult<()> {
    if role >= need.role {
        return Ok(());
    }
    Err(WsError::new(
        sqlstate::INSUFFICIENT_PRIVILEGE,
        format!("permission denied for {}: it needs role {}, this session has role {role}", need.what, need.role),
    ))
}

/// Refuses, with 25006 and PostgreSQL's words, a statement that writes when the
/// transaction it runs in is READ ONLY. Checked when the statement executes, as a
/// statement prepared earlier may run in a read-only transaction later.
pub(super) fn check_read_only(kind: &Kind, read_only: bool) -> WsResult<()> {
    let need = required(kind);
    if read_only && need.writes {
        return Err(WsError::new(
            sqlstate::READ_ONLY_SQL_TRANSACTION,
            format!("cannot execute {} in a read-only transaction", need.what),
        ));
    }
    Ok(())
}

/// Whether a statement writes (a ROLLBACK of its block cannot undo it).
pub(super) fn writes(kind: &Kind) -> bool {
    required(kind).writes
}

/// The role of a session, shared with the functions registered on its DataFusion context
/// (`set_config` checks it), which run inside a query where the session is not reachable.
#[derive(Debug, Clone, Default)]
pub struct SessionRole(std::sync::Arc<std::sync::RwLock<Option<Role>>>);

impl SessionRole {
    pub fn get(&self) -> Option<Role> {
        *self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn set(&self, role: Option<Role>) {
        *self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = role;
    }
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
        let drop = Kind::DropTable { names: vec!["t".into()], if_exists: true, cascade: false };
        assert_eq!(authorize(Role::Write, &drop).unwrap_err().code, sqlstate::INSUFFICIENT_PRIVILEGE);
        assert!(authorize(Role::Admin, &drop).is_ok());
        assert_eq!(authenticated(None).unwrap_err().code, sqlstate::INVALID_AUTHORIZATION_SPECIFICATION);
        // set_config() goes through the same decision as SET.
        let code = |result: WsResult<()>| result.unwrap_err().code;
        assert_eq!(
            code(authorize_setting(Some(Role::Read), "datafusion.execution.batch_size")),
            sqlstate::INSUFFICIENT_PRIVILEGE
        );
        assert_eq!(
            code(authorize_setting(Some(Role::Write), "datafusion.optimizer.max_passes")),
            sqlstate::INSUFFICIENT_PRIVILEGE
        );
        assert!(authorize_setting(Some(Role::Admin), "datafusion.execution.batch_size").is_ok());
        assert!(authorize_setting(Some(Role::Read), "application_name").is_ok());
        assert_eq!(code(authorize_setting(None, "application_name")), sqlstate::INVALID_AUTHORIZATION_SPECIFICATION);
    }

    #[tokio::test]
    async fn startup_parameters_get_the_checks_of_set() {
        let dir = tempfile::tempdir().unwrap();
        let engine = super::super::Engine::open(crate::config::Config::rooted_at(dir.path())).await.unwrap();
        let option = "datafusion.execution.batch_size";
        let mut reader = engine.session();
        let before = reader.show(option).unwrap();
        reader.set_role(Some(Role::Read));
        reader.apply_startup_parameter(option, "17");
        reader.apply_startup_parameter("application_name", "psql");
        assert_eq!(reader.show(option).unwrap(), before, "refused, hence ignored");
        assert_eq!(reader.show("application_name").unwrap(), "psql");
        let mut admin = engine.session();
        admin.apply_startup_parameter(option, "17");
        assert_eq!(admin.show(option).unwrap(), "17");
    }

    /// The name of a statement kind, down to the continuous and compatibility commands.
    /// Exhaustive (no catch-all): a new kind must be named here, and then be given a row
    /// in [`CASES`] for [`every_statement_kind_against_every_role_and_read_only`] to pass.
    fn variant(kind: &Kind) -> &'static str {
        use continuous::Command as C;
        match kind {
            Kind::Rows(_) => "Rows",
            Kind::Write { .. } => "Write",
            Kind::Maintain(_) => "Maintain",
            Kind::AlterTable { .. } => "AlterTable",
            Kind::CreateTable { .. } => "CreateTable",
            Kind::CreateExternal(_) => "CreateExternal",
            Kind::DropTable { .. } => "DropTable",
            Kind::CreatePlainView { .. } => "CreatePlainView",
            Kind::DropPlainView { .. } => "DropPlainView",
            Kind::CreateIndex { .. } => "CreateIndex",
            Kind::DropIndex { .. } => "DropIndex",
            Kind::CreateSource { .. } => "CreateSource",
            Kind::DropSource { .. } => "DropSource",
            Kind::Set { .. } => "Set",
            Kind::Show { .. } => "Show",
            Kind::CopyTo { .. } => "CopyTo",
            Kind::CopyFrom(_) => "CopyFrom",
            Kind::CreateModel { .. } => "CreateModel",
            Kind::DropModel { .. } => "DropModel",
            Kind::SetModelVersion { .. } => "SetModelVersion",
            Kind::Continuous(command) => match command {
                C::CreateView { .. } => "CreateView",
                C::DropView { .. } => "DropView",
                C::Subscribe { .. } => "Subscribe",
                C::CreateSink { .. } => "CreateSink",
                C::DropSink { .. } => "DropSink",
                C::Listen(_) => "Listen",
                C::Unlisten(_) => "Unlisten",
                C::Notify { .. } => "Notify",
            },
            Kind::Compat(command) => match command {
                Command::ResetAll => "ResetAll",
                Command::DiscardAll => "DiscardAll",
                Command::SetMany(_) => "SetMany",
                Command::Begin(_) => "Begin",
                Command::Commit => "Commit",
                Command::Rollback => "Rollback",
                Command::Savepoint => "Savepoint",
                Command::Release => "Release",
                Command::RollbackTo => "RollbackTo",
                Command::Declare { .. } => "Declare",
                Command::Fetch { .. } => "Fetch",
                Command::Move { .. } => "Move",
                Command::Close(_) => "Close",
                Command::Deallocate(_) => "Deallocate",
            },
        }
    }

    /// Every name [`variant`] gives.
    const VARIANTS: &[&str] = &[
        "Rows",
        "Write",
        "Maintain",
        "AlterTable",
        "CreateTable",
        "CreateExternal",
        "DropTable",
        "CreatePlainView",
        "DropPlainView",
        "CreateIndex",
        "DropIndex",
        "CreateSource",
        "DropSource",
        "Set",
        "Show",
        "CopyTo",
        "CopyFrom",
        "CreateModel",
        "DropModel",
        "SetModelVersion",
        "CreateView",
        "DropView",
        "Subscribe",
        "CreateSink",
        "DropSink",
        "Listen",
        "Unlisten",
        "Notify",
        "ResetAll",
        "DiscardAll",
        "SetMany",
        "Begin",
        "Commit",
        "Rollback",
        "Savepoint",
        "Release",
        "RollbackTo",
        "Declare",
        "Fetch",
        "Move",
        "Close",
        "Deallocate",
    ];

    /// (kind, statement, least role, writes): what PostgreSQL decides where it has the
    /// statement (its privileges and PreventCommandIfReadOnly), ours for the rest.
    const CASES: &[(&str, &str, Role, bool)] = &[
        ("Rows", "SELECT a FROM t", Role::Read, false),
        ("Rows", "EXPLAIN SELECT a FROM t", Role::Read, false),
        // EXPLAIN plans the insert without running it: allowed in a READ ONLY transaction.
        ("Rows", "EXPLAIN INSERT INTO t VALUES (1)", Role::Write, false),
        ("Rows", "EXPLAIN ANALYZE INSERT INTO t VALUES (1)", Role::Write, true),
        ("Rows", "SELECT a FROM t WHERE a IN (SELECT a FROM t)", Role::Read, false),
        ("Write", "INSERT INTO t VALUES (1)", Role::Write, true),
        ("Write", "INSERT INTO s VALUES (1)", Role::Write, true),
        ("Write", "DELETE FROM t WHERE a = 1", Role::Write, true),
        ("Write", "UPDATE t SET a = a + 1 WHERE a > 0", Role::Write, true),
        ("Write", "TRUNCATE t", Role::Write, true),
        ("Maintain", "OPTIMIZE t", Role::Admin, true),
        ("AlterTable", "ALTER TABLE t ADD COLUMN b TEXT", Role::Admin, true),
        ("AlterTable", "ALTER TABLE t RENAME TO u", Role::Admin, true),
        ("Maintain", "VACUUM t DRY RUN", Role::Admin, true),
        ("Write", "MERGE INTO t USING (SELECT 1 AS a) AS s ON t.a = s.a WHEN MATCHED THEN DELETE", Role::Write, true),
        ("CreateTable", "CREATE TABLE u (a BIGINT)", Role::Admin, true),
        ("CreateTable", "CREATE TABLE u AS SELECT 1 AS a", Role::Admin, true),
        ("CreateExternal", "CREATE EXTERNAL TABLE e STORED AS PARQUET LOCATION 'nowhere/'", Role::Admin, true),
        ("DropTable", "DROP TABLE t", Role::Admin, true),
        ("DropTable", "DROP TABLE t CASCADE", Role::Admin, true),
        ("CreatePlainView", "CREATE VIEW pv2 AS SELECT a FROM t", Role::Admin, true),
        ("CreatePlainView", "CREATE OR REPLACE VIEW pv AS SELECT a FROM t", Role::Admin, true),
        ("DropPlainView", "DROP VIEW pv", Role::Admin, true),
        ("DropPlainView", "DROP VIEW IF EXISTS pv, nope CASCADE", Role::Admin, true),
        // A view is read like a table: a read user may SELECT from it.
        ("Rows", "SELECT a FROM pv", Role::Read, false),
        ("CopyTo", "COPY pv TO STDOUT", Role::Read, false),
        ("CreateIndex", "CREATE INDEX t_a ON t (a)", Role::Admin, true),
        ("DropIndex", "DROP INDEX t_a", Role::Admin, true),
        ("CreateSource", "CREATE SOURCE s2 (a BIGINT) WITH (connector = 'ingest')", Role::Admin, true),
        ("DropSource", "DROP SOURCE s", Role::Admin, true),
        ("DropSource", "DROP SOURCE s CASCADE", Role::Admin, true),
        ("Set", "SET application_name = 'x'", Role::Read, false),
        ("Set", "RESET application_name", Role::Read, false),
        ("Set", "SET datafusion.execution.batch_size = 100", Role::Admin, false),
        ("Set", "RESET datafusion.execution.batch_size", Role::Admin, false),
        ("Show", "SHOW application_name", Role::Read, false),
        ("Show", "SHOW ALL", Role::Read, false),
        ("CopyTo", "COPY t TO STDOUT", Role::Read, false),
        ("CopyTo", "COPY (SELECT a FROM t) TO STDOUT (FORMAT csv)", Role::Read, false),
        ("CopyFrom", "COPY t FROM STDIN", Role::Write, true),
        ("CopyFrom", "COPY s FROM STDIN (FORMAT csv)", Role::Write, true),
        (
            "CreateModel",
            "CREATE MODEL m WITH (model_type = 'logistic_reg', label = 'y') AS SELECT a, a > 0 AS y FROM t",
            Role::Admin,
            true,
        ),
        ("DropModel", "DROP MODEL IF EXISTS m", Role::Admin, true),
        ("SetModelVersion", "ALTER MODEL m SET ACTIVE VERSION 1", Role::Admin, true),
        ("CreateView", "CREATE MATERIALIZED VIEW v2 AS SELECT a FROM s", Role::Admin, true),
        ("DropView", "DROP MATERIALIZED VIEW v", Role::Admin, true),
        ("Subscribe", "COPY (SUBSCRIBE TO v) TO STDOUT", Role::Read, false),
        ("Subscribe", "DECLARE live CURSOR WITH HOLD FOR SUBSCRIBE TO v", Role::Read, false),
        ("CreateSink", "CREATE SINK k2 FROM v WITH (connector = 'notify', channel = 'c')", Role::Admin, true),
        ("DropSink", "DROP SINK k", Role::Admin, true),
        ("Listen", "LISTEN c", Role::Read, false),
        ("Unlisten", "UNLISTEN *", Role::Read, false),
        // NOTIFY reaches other sessions (write) and is allowed in READ ONLY (PostgreSQL).
        ("Notify", "NOTIFY c, 'x'", Role::Write, false),
        ("ResetAll", "RESET ALL", Role::Read, false),
        ("DiscardAll", "DISCARD ALL", Role::Read, false),
        ("SetMany", "SET TRANSACTION READ ONLY", Role::Read, false),
        ("SetMany", "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", Role::Read, false),
        ("Begin", "BEGIN READ ONLY", Role::Read, false),
        ("Commit", "COMMIT", Role::Read, false),
        ("Rollback", "ROLLBACK", Role::Read, false),
        ("Rollback", "ABORT", Role::Read, false),
        ("Savepoint", "SAVEPOINT p", Role::Read, false),
        ("Release", "RELEASE SAVEPOINT p", Role::Read, false),
        ("RollbackTo", "ROLLBACK TO SAVEPOINT p", Role::Read, false),
        ("Declare", "DECLARE d CURSOR FOR SELECT a FROM t", Role::Read, false),
        ("Fetch", "FETCH 1 FROM c", Role::Read, false),
        ("Move", "MOVE 1 IN c", Role::Read, false),
        ("Close", "CLOSE c", Role::Read, false),
        ("Close", "CLOSE ALL", Role::Read, false),
        ("Deallocate", "DEALLOCATE ALL", Role::Read, false),
    ];

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_statement_kind_against_every_role_and_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let engine = super::super::Engine::open(crate::config::Config::rooted_at(dir.path())).await.unwrap();
        let mut session = engine.session();
        session
            .run_collect(
                "CREATE TABLE t (a BIGINT); CREATE SOURCE s (a BIGINT) WITH (connector = 'ingest');
                 CREATE VIEW pv AS SELECT a FROM t;
                 CREATE MATERIALIZED VIEW v AS SELECT a FROM s;
                 CREATE SINK k FROM v WITH (connector = 'notify', channel = 'c');
                 BEGIN; DECLARE c CURSOR FOR SELECT a FROM t",
            )
            .await
            .unwrap();
        let mut covered = std::collections::BTreeSet::new();
        for &(name, sql, role, writes) in CASES {
            let mut statements = session.parse(sql).unwrap();
            assert_eq!(statements.len(), 1, "{sql}");
            let prepared = session.prepare(statements.remove(0)).await.unwrap_or_else(|error| panic!("{sql}: {error}"));
            assert_eq!(variant(&prepared.kind), name, "{sql}");
            covered.insert(name);
            let need = required(&prepared.kind);
            assert_eq!((need.role, need.writes), (role, writes), "{sql}");
            for session_role in [Role::Read, Role::Write, Role::Admin] {
                let result = authorize(session_role, &prepared.kind);
                if session_role >= role {
                    assert!(result.is_ok(), "{sql} as {session_role}");
                } else {
                    let error = result.unwrap_err();
                    assert_eq!(error.code, sqlstate::INSUFFICIENT_PRIVILEGE, "{sql} as {session_role}");
                    assert!(error.message.contains(&format!("has role {session_role}")), "{}", error.message);
                }
            }
            assert!(check_read_only(&prepared.kind, false).is_ok(), "{sql}");
            match check_read_only(&prepared.kind, true) {
                Ok(()) => assert!(!writes, "{sql} must be refused in a read-only transaction"),
                Err(error) => {
                    assert!(writes, "{sql} must run in a read-only transaction");
                    assert_eq!(error.code, sqlstate::READ_ONLY_SQL_TRANSACTION, "{sql}");
                    assert!(error.message.ends_with("in a read-only transaction"), "{}", error.message);
                }
            }
            assert_eq!(super::writes(&prepared.kind), writes, "{sql}");
        }
        let all: std::collections::BTreeSet<&str> = VARIANTS.iter().copied().collect();
        assert_eq!(covered, all, "every statement kind has a case");
        // PostgreSQL's words for the writes it has.
        for (sql, words) in [
            ("EXPLAIN ANALYZE INSERT INTO t VALUES (1)", "INSERT"),
            ("CREATE TABLE u AS SELECT 1 AS a", "CREATE TABLE AS"),
            ("CREATE TABLE u (a BIGINT)", "CREATE TABLE"),
            ("COPY t FROM STDIN", "COPY FROM"),
            ("DROP TABLE t", "DROP TABLE"),
            ("DELETE FROM t", "DELETE"),
            ("UPDATE t SET a = 1", "UPDATE"),
            ("MERGE INTO t USING t AS s ON t.a = s.a WHEN MATCHED THEN DELETE", "MERGE"),
            ("TRUNCATE t", "TRUNCATE TABLE"),
            ("CREATE VIEW pv2 AS SELECT a FROM t", "CREATE VIEW"),
            ("DROP VIEW pv", "DROP VIEW"),
        ] {
            let statement = session.parse(sql).unwrap().remove(0);
            let prepared = session.prepare(statement).await.unwrap();
            let error = check_read_only(&prepared.kind, true).unwrap_err();
            assert_eq!(error.message, format!("cannot execute {words} in a read-only transaction"));
        }
    }
}

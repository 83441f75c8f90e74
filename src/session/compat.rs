//! Statements clients send that change session state rather than data: transaction
//! blocks (`BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, `RELEASE`, `ROLLBACK TO`),
//! `SET [SESSION CHARACTERISTICS AS] TRANSACTION`, `RESET ALL`, `DISCARD ALL`, and
//! cursors (`DECLARE`, `FETCH`, `CLOSE`).
//!
//! Transactions are accepted with statement-level semantics: every statement commits on
//! its own (a Delta commit), ROLLBACK undoes nothing, and says so with a WARNING when
//! statements of the block wrote. What is kept faithful is what drivers observe: the transaction status in ReadyForQuery, a block that fails stays
//! failed (25P02) until ROLLBACK, cursors declared WITHOUT HOLD need a block and end with
//! it, and `SET TRANSACTION` values last until the block ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{
    self as sqlast, CloseCursor, DeclareType, DiscardObject, FetchDirection, Ident, Set, TransactionAccessMode,
    TransactionMode,
};

use super::cursors::Direction;
use super::{CommandTag, Kind, Outcome, Session};
use crate::error::{WsError, WsResult};

// 25P01: the statement needs a transaction block; 25P02: the block failed, only its end
// is accepted; 25001: the statement cannot run inside a block.
pub(super) use crate::error::sqlstate::{ACTIVE_SQL_TRANSACTION, IN_FAILED_SQL_TRANSACTION, NO_ACTIVE_SQL_TRANSACTION};
// 01000: a warning, sent as a notice.
use crate::error::sqlstate::WARNING;

/// The warning of a ROLLBACK (or ROLLBACK TO, or COMMIT of a failed block) after
/// statements of the block wrote: transactions here are statement-level, so those writes
/// were committed as each statement ran.
const ROLLBACK_KEEPS_WRITES: &str = "statements of this transaction block that wrote were already committed, each on its own \
     (watershed runs every statement as its own transaction): ROLLBACK cannot undo their writes";

/// Whether a session is inside a transaction block and whether that block failed.
/// Shared with server/, which reports it in ReadyForQuery and marks the block failed on
/// any error, including one raised while rows stream out.
#[derive(Debug, Default)]
pub struct TransactionState {
    in_block: AtomicBool,
    failed: AtomicBool,
    /// A statement of the block wrote (and, statements being their own transactions,
    /// committed): its ROLLBACK cannot undo that, and says so.
    wrote: AtomicBool,
}

/// What ReadyForQuery reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatus {
    Idle,
    InBlock,
    Failed,
}

impl TransactionState {
    pub fn status(&self) -> TransactionStatus {
        match (self.in_block.load(Ordering::Acquire), self.failed.load(Ordering::Acquire)) {
            (false, _) => TransactionStatus::Idle,
            (true, false) => TransactionStatus::InBlock,
            (true, true) => TransactionStatus::Failed,
        }
    }

    /// A statement failed: a block it ran in is now failed (outside a block, nothing).
    pub fn fail(&self) {
        if self.in_block.load(Ordering::Acquire) {
            self.failed.store(true, Ordering::Release);
        }
    }

    fn begin(&self) {
        self.in_block.store(true, Ordering::Release);
    }

    fn end(&self) {
        self.in_block.store(false, Ordering::Release);
        self.failed.store(false, Ordering::Release);
        self.wrote.store(false, Ordering::Release);
    }

    /// A statement that writes succeeded (roles.rs decides which do); inside a block it
    /// is remembered until the block ends.
    pub fn wrote(&self) {
        if self.in_block.load(Ordering::Acquire) {
            self.wrote.store(true, Ordering::Release);
        }
    }

    fn block_wrote(&self) -> bool {
        self.in_block.load(Ordering::Acquire) && self.wrote.load(Ordering::Acquire)
    }

    fn recover(&self) {
        self.failed.store(false, Ordering::Release);
    }

    pub fn in_block(&self) -> bool {
        self.in_block.load(Ordering::Acquire)
    }
}

/// A classified compatibility statement.
#[derive(Debug, Clone)]
pub enum Command {
    ResetAll,
    DiscardAll,
    /// `SET [SESSION CHARACTERISTICS AS] TRANSACTION ...`: settings to change.
    SetMany(Vec<(String, String)>),
    /// BEGIN with the transaction modes it sets.
    Begin(Vec<(String, String)>),
    Commit,
    Rollback,
    Savepoint,
    Release,
    RollbackTo,
    Declare {
        name: String,
        plan: LogicalPlan,
        hold: bool,
    },
    Fetch {
        name: String,
        direction: Direction,
    },
    /// MOVE: FETCH without the rows; the tag counts them.
    Move {
        name: String,
        direction: Direction,
    },
    Close(Option<String>),
    /// `DEALLOCATE name` / `DEALLOCATE ALL` (None); server/ drops the protocol-level
    /// statement, which lives in pgwire's store, not in the session.
    Deallocate(Option<String>),
}

/// Cursor and savepoint names fold to lower case unless quoted, like any identifier.
fn ident_name(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

fn mode_settings(modes: &[TransactionMode], prefix: &str) -> Vec<(String, String)> {
    modes
        .iter()
        .map(|mode| match mode {
            TransactionMode::IsolationLevel(level) => {
                (format!("{prefix}transaction_isolation"), level.to_string().to_lowercase())
            }
            TransactionMode::AccessMode(TransactionAccessMode::ReadOnly) => {
                (format!("{prefix}transaction_read_only"), "on".to_string())
            }
            TransactionMode::AccessMode(TransactionAccessMode::ReadWrite) => {
                (format!("{prefix}transaction_read_only"), "off".to_string())
            }
        })
        .collect()
}

/// A FETCH or MOVE direction in PostgreSQL's terms (see cursors.rs).
fn cursor_direction(direction: &FetchDirection) -> WsResult<Direction> {
    let number = |value: &sqlast::ValueWithSpan| -> WsResult<i64> {
        match &value.value {
            sqlast::Value::Number(text, _) => {
                text.parse::<i64>().map_err(|_| WsError::syntax(format!("invalid cursor count {text}")))
            }
            other => Err(WsError::syntax(format!("invalid cursor count {other}"))),
        }
    };
    Ok(match direction {
        FetchDirection::Count { limit } | FetchDirection::Forward { limit: Some(limit) } => {
            Direction::Forward(number(limit)?)
        }
        FetchDirection::Next | FetchDirection::Forward { limit: None } => Direction::Forward(1),
        FetchDirection::Prior | FetchDirection::Backward { limit: None } => Direction::Forward(-1),
        FetchDirection::Backward { limit: Some(limit) } => Direction::Forward(-number(limit)?),
        FetchDirection::All | FetchDirection::ForwardAll => Direction::All,
        FetchDirection::BackwardAll => Direction::Forward(i64::MIN + 1),
        FetchDirection::First => Direction::Absolute(1),
        FetchDirection::Last => Direction::Absolute(-1),
        FetchDirection::Absolute { limit } => Direction::Absolute(number(limit)?),
        FetchDirection::Relative { limit } => Direction::Relative(number(limit)?),
    })
}

/// `MOVE direction cursor` as a command.
pub(super) fn move_command(direction: &FetchDirection, cursor: &Ident) -> WsResult<Command> {
    Ok(Command::Move { name: ident_name(cursor), direction: cursor_direction(direction)? })
}

/// True for the statements a failed block still accepts.
fn ends_block(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::Statement(inner)
            if matches!(inner.as_ref(), sqlast::Statement::Commit { .. } | sqlast::Statement::Rollback { .. })
    )
}

impl Session {
    /// In a failed block, everything but its end is refused, as in PostgreSQL.
    pub(super) fn check_failed_block(&self, statement: Option<&Statement>) -> WsResult<()> {
        if self.transaction.status() == TransactionStatus::Failed && !statement.is_some_and(ends_block) {
            return Err(WsError::new(
                IN_FAILED_SQL_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        Ok(())
    }

    /// Classifies the statements this module owns; `Ok(None)` for any other. DECLARE
    /// plans its query here, so it is async.
    pub(super) async fn classify_compat(&mut self, statement: &Statement) -> WsResult<Option<Kind>> {
        let inner = match statement {
            Statement::Reset(datafusion::sql::parser::ResetStatement::Variable(name))
                if name.to_string().eq_ignore_ascii_case("all") =>
            {
                return Ok(Some(Kind::Compat(Command::ResetAll)));
            }
            Statement::Statement(inner) => inner.as_ref(),
            _ => return Ok(None),
        };
        let command = match inner {
            sqlast::Statement::Set(Set::SetTransaction { modes, snapshot, session }) => {
                if snapshot.is_some() {
                    return Err(WsError::unsupported("SET TRANSACTION SNAPSHOT is not supported"));
                }
                let prefix = if *session { "default_" } else { "" };
                Command::SetMany(mode_settings(modes, prefix))
            }
            sqlast::Statement::Discard { object_type: DiscardObject::ALL } => Command::DiscardAll,
            sqlast::Statement::Discard { object_type } => {
                return Err(WsError::unsupported(format!("DISCARD {object_type} is not supported (DISCARD ALL is)")));
            }
            sqlast::Statement::StartTransaction { modes, statements, exception, .. } => {
                if !statements.is_empty() || exception.is_some() {
                    return Err(WsError::unsupported("procedural BEGIN ... END blocks are not supported"));
                }
                Command::Begin(mode_settings(modes, ""))
            }
            sqlast::Statement::Commit { .. } => Command::Commit,
            sqlast::Statement::Rollback { savepoint: None, .. } => Command::Rollback,
            sqlast::Statement::Rollback { savepoint: Some(_), .. } => Command::RollbackTo,
            sqlast::Statement::Savepoint { .. } => Command::Savepoint,
            sqlast::Statement::ReleaseSavepoint { .. } => Command::Release,
            sqlast::Statement::Close { cursor: CloseCursor::All } => Command::Close(None),
            sqlast::Statement::Close { cursor: CloseCursor::Specific { name } } => {
                Command::Close(Some(ident_name(name)))
            }
            sqlast::Statement::Fetch { name, direction, into, .. } => {
                if into.is_some() {
                    return Err(WsError::unsupported("FETCH ... INTO is PL/pgSQL; it is not supported"));
                }
                Command::Fetch { name: ident_name(name), direction: cursor_direction(direction)? }
            }
            sqlast::Statement::Declare { stmts } => return self.classify_declare(stmts).await.map(Some),
            sqlast::Statement::Deallocate { name, .. } => {
                let all = name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all");
                // Statement names are case-sensitive on the wire; drivers send them as made.
                Command::Deallocate((!all).then(|| name.value.clone()))
            }
            _ => return Ok(None),
        };
        Ok(Some(Kind::Compat(command)))
    }

    async fn classify_declare(&mut self, stmts: &[sqlast::Declare]) -> WsResult<Kind> {
        let [declare] = stmts else {
            return Err(WsError::unsupported("DECLARE of several cursors at once is not supported"));
        };
        let (Some(DeclareType::Cursor), [name], Some(query)) =
            (&declare.declare_type, declare.names.as_slice(), &declare.for_query)
        else {
            return Err(WsError::unsupported("only DECLARE name CURSOR FOR query is supported"));
        };
        if declare.scroll == Some(true) {
            return Err(WsError::unsupported("SCROLL cursors are not supported; cursors read forward only"));
        }
        if declare.binary == Some(true) {
            return Err(WsError::unsupported(
                "BINARY cursors are not supported; FETCH over the extended protocol asks for binary results",
            ));
        }
        let query = Statement::Statement(Box::new(sqlast::Statement::Query(query.clone())));
        let plan = self.plan_query(query).await?;
        Ok(Kind::Compat(Command::Declare { name: ident_name(name), plan, hold: declare.hold == Some(true) }))
    }

    /// Result columns of a compatibility statement at prepare time.
    pub(super) fn compat_schema(&self, command: &Command) -> WsResult<datafusion::arrow::datatypes::SchemaRef> {
        match command {
            Command::Fetch { name, .. } => self.cursors.schema(name),
            _ => Ok(super::empty_schema()),
        }
    }

    pub(super) async fn execute_compat(&mut self, command: &Command, params: Option<ParamValues>) -> WsResult<Outcome> {
        let done = |command: &'static str| Ok(Outcome::Done(CommandTag::new(command)));
        match command {
            Command::ResetAll => {
                self.settings.reset_all()?;
                done("RESET")
            }
            Command::DiscardAll => {
                if self.transaction.in_block() {
                    return Err(WsError::new(
                        ACTIVE_SQL_TRANSACTION,
                        "DISCARD ALL cannot run inside a transaction block",
                    ));
                }
                self.settings.reset_all()?;
                self.cursors.close_all();
                done("DISCARD ALL")
            }
            Command::SetMany(changes) => {
                for (name, value) in changes {
                    self.settings.set(name, Some(value))?;
                }
                done("SET")
            }
            Command::Begin(modes) => {
                // BEGIN inside a block is a warning in PostgreSQL, not an error.
                if self.transaction.in_block() {
                    self.notice("WARNING", ACTIVE_SQL_TRANSACTION, "there is already a transaction in progress");
                } else {
                    self.settings.start_transaction_defaults();
                }
                for (name, value) in modes {
                    self.settings.set(name, Some(value))?;
                }
                self.transaction.begin();
                done("BEGIN")
            }
            Command::Commit | Command::Rollback => {
                // COMMIT of a failed block is a rollback, and says so.
                let failed = self.transaction.status() == TransactionStatus::Failed;
                let rolls_back = matches!(command, Command::Rollback) || failed;
                if !self.transaction.in_block() {
                    // PostgreSQL's warning; the statement still succeeds.
                    self.notice("WARNING", NO_ACTIVE_SQL_TRANSACTION, "there is no transaction in progress");
                } else if rolls_back && self.transaction.block_wrote() {
                    self.notice("WARNING", WARNING, ROLLBACK_KEEPS_WRITES);
                }
                self.transaction.end();
                self.cursors.end_transaction();
                self.settings.start_transaction_defaults();
                done(if matches!(command, Command::Commit) && !failed { "COMMIT" } else { "ROLLBACK" })
            }
            Command::Savepoint | Command::Release | Command::RollbackTo => {
                if !self.transaction.in_block() {
                    return Err(WsError::new(
                        NO_ACTIVE_SQL_TRANSACTION,
                        "savepoints can only be used in transaction blocks",
                    ));
                }
                match command {
                    Command::Savepoint => done("SAVEPOINT"),
                    Command::Release => done("RELEASE"),
                    _ => {
                        if self.transaction.block_wrote() {
                            self.notice("WARNING", WARNING, ROLLBACK_KEEPS_WRITES);
                        }
                        self.transaction.recover();
                        done("ROLLBACK")
                    }
                }
            }
            Command::Declare { name, plan, hold } => {
                if !hold && !self.transaction.in_block() {
                    return Err(WsError::new(
                        NO_ACTIVE_SQL_TRANSACTION,
                        "DECLARE CURSOR can only be used in transaction blocks",
                    ));
                }
                let plan = match params {
                    Some(values) => plan.clone().with_param_values(values)?,
                    None => plan.clone(),
                };
                let stream = self.stream(plan).await?;
                self.cursors.declare(name, stream, *hold)?;
                done("DECLARE CURSOR")
            }
            Command::Fetch { name, direction } => {
                let stream = self.cursors.fetch(name, *direction).await?;
                Ok(Outcome::Rows { tag: "FETCH", stream })
            }
            Command::Move { name, direction } => {
                let rows = self.cursors.move_to(name, *direction).await?;
                let rows = usize::try_from(rows).unwrap_or(usize::MAX);
                Ok(Outcome::Done(CommandTag { command: "MOVE", rows: Some(rows), oid: None }))
            }
            Command::Close(Some(name)) => {
                self.cursors.close(name)?;
                done("CLOSE CURSOR")
            }
            Command::Deallocate(Some(_)) => done("DEALLOCATE"),
            Command::Deallocate(None) => done("DEALLOCATE ALL"),
            Command::Close(None) => {
                self.cursors.close_all();
                done("CLOSE CURSOR ALL")
            }
        }
    }

    /// Columns of an open cursor (server/ describes a cursor as a portal).
    pub fn cursor_schema(&self, name: &str) -> WsResult<datafusion::arrow::datatypes::SchemaRef> {
        self.cursors.schema(name)
    }

    /// Shared with server/: the transaction block state of this session.
    pub fn transaction(&self) -> Arc<TransactionState> {
        self.transaction.clone()
    }
}

//! One connection's pgwire handlers: startup, simple and extended query, cancel.
//!
//! A connection owns one [`Session`]; statements of a simple-query message run one after
//! the other, each streamed to the socket before the next starts, and the first error
//! ends the message (as in PostgreSQL). Cancel requests reach the running statement
//! through a per-connection [`CancelSlot`] looked up by backend pid and secret.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    ServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{
    ExtendedQueryHandler, SimpleQueryHandler, send_describe_response, send_execution_response, send_query_response,
    send_ready_for_query,
};
use pgwire::api::results::{CopyResponse, DescribePortalResponse, FieldInfo, Response};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, ErrorHandler, PgWireConnectionState, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::extendedquery::{Describe, Execute, Sync as PgSync, TARGET_TYPE_BYTE_PORTAL};
use pgwire::messages::response::EmptyQueryResponse;
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::SecretKey;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::auth::{Authenticator, Step};
use super::encode::{query_response, tag, user_error};
use crate::error::{WsError, sqlstate};
use crate::session::copy::{CopyFormat, CopyIn};
use crate::session::{
    CommandTag, Engine, Notice, Outcome, Prepared, Role, Session, TransactionState, TransactionStatus, settings,
};
use pgwire::messages::response::TransactionStatus as WireStatus;

/// ReadyForQuery's status byte, from the session's own view of its transaction block.
fn wire_status(transaction: &TransactionState) -> WireStatus {
    match transaction.status() {
        TransactionStatus::Idle => WireStatus::Idle,
        TransactionStatus::InBlock => WireStatus::Transaction,
        TransactionStatus::Failed => WireStatus::Error,
    }
}

/// The token of the statement a connection is running; replaced per statement.
#[derive(Debug, Default)]
pub struct CancelSlot {
    current: StdMutex<CancellationToken>,
}

impl CancelSlot {
    fn begin(&self) -> CancellationToken {
        let token = CancellationToken::new();
        *self.current.lock().expect("cancel slot poisoned") = token.clone();
        token
    }

    fn cancel(&self) {
        self.current.lock().expect("cancel slot poisoned").cancel();
    }
}

/// Backend pid -> (secret, slot), for CancelRequest messages that arrive on their own
/// connection.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    slots: StdMutex<HashMap<i32, (i32, Arc<CancelSlot>)>>,
}

impl CancelRegistry {
    fn insert(&self, pid: i32, secret: i32, slot: Arc<CancelSlot>) {
        let previous = self.slots.lock().expect("registry poisoned").insert(pid, (secret, slot));
        assert!(previous.is_none(), "backend pids are unique");
    }

    fn remove(&self, pid: i32) {
        self.slots.lock().expect("registry poisoned").remove(&pid);
    }

    fn cancel(&self, pid: i32, secret: &SecretKey) {
        let slot = self.slots.lock().expect("registry poisoned").get(&pid).cloned();
        if let Some((expected, slot)) = slot
            && SecretKey::I32(expected).to_bytes() == secret.to_bytes()
        {
            slot.cancel();
        }
    }
}

/// A statement prepared through Parse, with the parameter types the client declared.
#[derive(Debug)]
pub struct PreparedStatement {
    prepared: Prepared,
}

/// Types used to decode `$n` values: what the statement determines, else text (what
/// PostgreSQL infers for an otherwise untyped parameter).
fn decode_types(prepared: &Prepared) -> Vec<DataType> {
    prepared.param_types.iter().map(|field| field.as_ref().map_or(DataType::Utf8, |f| f.data_type().clone())).collect()
}

pub struct StatementParser {
    session: Arc<Mutex<Session>>,
}

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = Arc<PreparedStatement>;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut session = self.session.lock().await;
        let mut statements = session.parse(sql).map_err(user_error)?;
        if statements.len() > 1 {
            return Err(user_error(WsError::syntax("cannot insert multiple commands into a prepared statement")));
        }
        let Some(statement) = statements.pop() else {
            return Ok(None);
        };
        let prepared = session.prepare(statement).await.map_err(user_error)?;
        Ok(Some(Arc::new(PreparedStatement { prepared })))
    }

    /// What ParameterDescription announces: the parameter's PostgreSQL type (an oid
    /// cast's own type, see encode::pg_type), else text.
    fn get_parameter_types(&self, statement: &Self::Statement) -> PgWireResult<Vec<Type>> {
        statement
            .prepared
            .param_types
            .iter()
            .map(|field| field.as_ref().map_or(Ok(Type::TEXT), super::encode::pg_type))
            .collect()
    }

    fn get_result_schema(&self, statement: &Self::Statement, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        super::encode::fields(&statement.prepared.schema, format.unwrap_or(&Format::UnifiedText))
    }
}

/// State shared by all connections of one server.
pub struct Shared {
    pub engine: Engine,
    pub cancels: CancelRegistry,
    pub security: super::Security,
}

/// Whether a connection is between receiving a statement and finishing its reply; an
/// idle connection can be closed at once on shutdown, a busy one gets the grace period.
#[derive(Debug, Default)]
pub struct Busy(AtomicBool);

impl Busy {
    pub fn is_busy(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self, busy: bool) {
        self.0.store(busy, Ordering::Release);
    }
}

/// The handlers of one connection.
pub struct Connection {
    shared: Arc<Shared>,
    busy: Arc<Busy>,
    session: Arc<Mutex<Session>>,
    transaction: Arc<TransactionState>,
    cancel: Arc<CancelSlot>,
    parser: Arc<StatementParser>,
    pid: i32,
    secret: i32,
    auth: Authenticator,
    /// The COPY FROM STDIN in progress, fed by CopyData until CopyDone or CopyFail.
    copy_in: Mutex<Option<CopyIn>>,
}

impl Connection {
    pub fn new(shared: Arc<Shared>, busy: Arc<Busy>) -> Arc<Connection> {
        let mut session = shared.engine.session();
        // Nothing runs until authentication has succeeded and set the user's role.
        session.set_role(None);
        let pid = i32::try_from(session.id()).expect("fewer than 2^31 sessions per process");
        let secret: i32 = rand::random();
        let cancel = Arc::new(CancelSlot::default());
        shared.cancels.insert(pid, secret, cancel.clone());
        let transaction = session.transaction();
        let session = Arc::new(Mutex::new(session));
        Arc::new(Connection {
            parser: Arc::new(StatementParser { session: session.clone() }),
            shared,
            busy,
            session,
            transaction,
            cancel,
            pid,
            secret,
            auth: Authenticator::default(),
            copy_in: Mutex::new(None),
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    async fn run(
        &self,
        prepared: &Prepared,
        params: Option<datafusion::common::ParamValues>,
    ) -> Result<Outcome, WsError> {
        let token = self.cancel.begin();
        let mut session = self.session.lock().await;
        session.execute(prepared, params, token).await
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.cancels.remove(self.pid);
    }
}

/// `DEALLOCATE name` drops the named protocol-level statement. `DEALLOCATE ALL` drops
/// none: pgwire's store cannot list them, and a driver sending it (psycopg after a
/// ROLLBACK) forgets its statements and prepares them anew under names it reuses, which
/// replaces the old ones.
fn deallocate<C>(client: &mut C, prepared: &Prepared)
where
    C: ClientPortalStore,
    C::PortalStore: PortalStore,
{
    if let Some(Some(name)) = prepared.deallocates() {
        client.portal_store().rm_statement(name);
    }
}

/// Sends a statement's notices (WARNING ...) before its rows or tag, as PostgreSQL does.
async fn send_notices<C>(client: &mut C, notices: Vec<Notice>) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for notice in notices {
        let mut info = ErrorInfo::new(notice.severity.to_string(), notice.code.to_string(), notice.message);
        info.detail = notice.detail;
        client.feed(PgWireBackendMessage::NoticeResponse(info.into())).await?;
    }
    Ok(())
}

fn execution_response(done: &CommandTag) -> Response {
    let out = tag(done);
    match done.command {
        "BEGIN" => Response::TransactionStart(out),
        "COMMIT" | "ROLLBACK" => Response::TransactionEnd(out),
        _ => Response::Execution(out),
    }
}

fn outcome_response(outcome: Outcome, format: &Format) -> PgWireResult<Response> {
    match outcome {
        Outcome::Rows { tag, stream } => Ok(Response::Query(query_response(tag, stream, format)?)),
        Outcome::Done(done) => Ok(execution_response(&done)),
        // Both query paths start COPY themselves (Connection::start_copy); only pgwire's
        // collect-then-send default, which this server replaces, could get here.
        Outcome::CopyOut { .. } | Outcome::CopyIn(_) => {
            Err(user_error(WsError::unsupported("COPY is not supported on this query path")))
        }
    }
}

fn copy_tag(rows: usize) -> CommandTag {
    CommandTag { command: "COPY", rows: Some(rows), oid: None }
}

struct Parameters {
    user: String,
    application_name: String,
    role: Role,
}

impl ServerParameterProvider for Parameters {
    fn server_parameters<C>(&self, _client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        let pairs = [
            ("server_version", settings::PG_SERVER_VERSION),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("TimeZone", "UTC"),
            ("IntervalStyle", "postgres"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
            ("is_superuser", if self.role == Role::Admin { "on" } else { "off" }),
            ("default_transaction_read_only", "off"),
            ("in_hot_standby", "off"),
            ("application_name", self.application_name.as_str()),
            ("session_authorization", self.user.as_str()),
        ];
        Some(pairs.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }
}

#[async_trait]
impl StartupHandler for Connection {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let step = match message {
            PgWireFrontendMessage::Startup(startup) => {
                protocol_negotiation(client, &startup).await?;
                save_startup_parameters_to_metadata(client, &startup);
                client.set_pid_and_secret_key(self.pid, SecretKey::I32(self.secret));
                let user = startup.parameters.get("user").map(String::as_str);
                self.auth.start(client, &self.shared.security, user).await?
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => self.auth.respond(client, message).await?,
            _ => {
                return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                    "FATAL".into(),
                    sqlstate::PROTOCOL_VIOLATION.to_string(),
                    "expected a startup or password message".into(),
                ))));
            }
        };
        let Step::Done(role) = step else {
            return Ok(());
        };
        {
            let mut session = self.session.lock().await;
            session.set_role(Some(role));
            // The startup parameters were saved to the metadata; they apply only now, with
            // the user's role, so that they get the checks SET gets (a read user's
            // `datafusion.*` is refused, hence ignored). Clients send what they would
            // otherwise SET; unknown ones are ignored as PostgreSQL ignores none but reports
            // them, which no client relies on.
            for (name, value) in client.metadata() {
                session.apply_startup_parameter(name, value);
            }
        }
        let metadata = |key: &str| client.metadata().get(key).cloned().unwrap_or_default();
        let parameters = Parameters { user: metadata("user"), application_name: metadata("application_name"), role };
        finish_authentication(client, &parameters).await?;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        Ok(())
    }
}

#[async_trait]
impl SimpleQueryHandler for Connection {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.busy.set(true);
        let result = self.run_simple_query(client, query).await;
        // A COPY FROM STDIN keeps the connection busy until its CopyDone or CopyFail.
        let copying = self.copy_in.lock().await.is_some();
        self.busy.set(copying);
        result
    }

    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.collect_simple_query(query).await
    }
}

impl Connection {
    /// The simple query protocol: statements in order, each streamed before the next.
    async fn run_simple_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let statements = {
            let session = self.session.lock().await;
            session.parse(&query.query).map_err(user_error)?
        };
        if statements.is_empty() {
            client.feed(PgWireBackendMessage::EmptyQueryResponse(EmptyQueryResponse::new())).await?;
        }
        for statement in statements {
            let token = self.cancel.begin();
            let (outcome, notices) = {
                let mut session = self.session.lock().await;
                let prepared = session.prepare(statement).await.map_err(user_error)?;
                let outcome = session.execute(&prepared, None, token).await.map_err(user_error)?;
                deallocate(client, &prepared);
                (outcome, session.take_notices())
            };
            send_notices(client, notices).await?;
            // The status is set before the rows stream so that an error while streaming
            // is reported against the block this statement ran in (and, for COPY FROM,
            // the ReadyForQuery pgwire sends after CopyDone carries it).
            client.set_transaction_status(wire_status(&self.transaction));
            let outcome = match self.start_copy(client, outcome).await? {
                Started::NotCopy(outcome) => outcome,
                Started::Out(done) => {
                    send_execution_response(client, done).await?;
                    continue;
                }
                Started::In => {
                    // COPY FROM STDIN is always the last statement (the session refuses
                    // more); ReadyForQuery follows its CopyDone or CopyFail.
                    client.set_state(PgWireConnectionState::CopyInProgress(false));
                    return Ok(());
                }
            };
            match outcome_response(outcome, &Format::UnifiedText)? {
                Response::Query(rows) => send_query_response(client, rows, true).await?,
                Response::TransactionStart(done) | Response::TransactionEnd(done) | Response::Execution(done) => {
                    send_execution_response(client, done).await?
                }
                _ => unreachable!("outcome_response makes rows or tags only"),
            }
        }
        let status = wire_status(&self.transaction);
        client.set_transaction_status(status);
        client.set_state(PgWireConnectionState::ReadyForQuery);
        send_ready_for_query(client, status).await?;
        Ok(())
    }

    /// Starts a COPY outcome on the wire: COPY TO streams its rows now (the tag is left
    /// to the caller), COPY FROM sends CopyInResponse and parks its state for CopyData.
    async fn start_copy<C>(&self, client: &mut C, outcome: Outcome) -> PgWireResult<Started>
    where
        C: Sink<PgWireBackendMessage> + Unpin,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match outcome {
            Outcome::CopyOut { options, stream } => {
                let rows = super::copy::send_copy_out(client, &options, stream).await?;
                Ok(Started::Out(tag(&copy_tag(rows))))
            }
            Outcome::CopyIn(copy) => {
                super::copy::send_copy_in_response(client, &copy).await?;
                *self.copy_in.lock().await = Some(copy);
                Ok(Started::In)
            }
            other => Ok(Started::NotCopy(other)),
        }
    }

    async fn collect_simple_query(&self, query: &str) -> PgWireResult<Vec<Response>> {
        // Only reached through pgwire's default `on_query`, which this type replaces;
        // kept correct for completeness: runs statements in order, stops at an error.
        let statements = self.session.lock().await.parse(query).map_err(user_error)?;
        let mut responses = Vec::with_capacity(statements.len());
        for statement in statements {
            let prepared = self.session.lock().await.prepare(statement).await;
            let outcome = match prepared {
                Ok(prepared) => self.run(&prepared, None).await,
                Err(error) => Err(error),
            };
            match outcome {
                Ok(outcome) => responses.push(outcome_response(outcome, &Format::UnifiedText)?),
                Err(error) => {
                    responses.push(Response::Error(Box::new(super::encode::error_info(&error))));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Connection {
    type Statement = Arc<PreparedStatement>;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Busy from Execute until the Sync that ends the exchange with ReadyForQuery.
        self.busy.set(true);
        self._on_execute(client, message).await
    }

    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // A cursor made by DECLARE is a portal too, and clients (psycopg's named cursors)
        // describe it by name to learn its columns.
        if message.target_type == TARGET_TYPE_BYTE_PORTAL
            && let Some(name) = message.name.as_deref()
            && client.portal_store().get_portal(name).is_none()
        {
            let schema = self.session.lock().await.cursor_schema(name);
            if let Ok(schema) = schema {
                let fields = super::encode::fields(&schema, &Format::UnifiedText)?;
                send_describe_response(client, &DescribePortalResponse::new(fields)).await?;
                return Ok(());
            }
        }
        self._on_describe(client, message).await
    }

    async fn on_sync<C>(&self, client: &mut C, _message: PgSync) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // As pgwire's default: the unnamed portal ends with the exchange.
        client.portal_store().rm_portal(pgwire::api::DEFAULT_NAME);
        let status = wire_status(&self.transaction);
        client.set_transaction_status(status);
        send_ready_for_query(client, status).await?;
        client.flush().await?;
        self.busy.set(false);
        Ok(())
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement: &StoredStatement<Arc<PreparedStatement>> = &portal.statement;
        let prepared = &statement.statement.prepared;
        // A value is decoded with the type the client declared for it if any, else with the
        // type ParameterDescription announced; it is coerced only to a type the statement
        // itself determines (`LIMIT $1` determines none: an int8 stays an int8).
        // Decoding goes by the data type: an `oid[]` parameter arrives as int4 values.
        let inferred: Vec<Option<&DataType>> =
            prepared.param_types.iter().map(|field| field.as_ref().map(|f| f.data_type())).collect();
        let announced: Vec<Type> =
            decode_types(prepared).iter().map(arrow_pg::datatypes::into_pg_type).collect::<PgWireResult<_>>()?;
        let announced: Vec<Option<&Type>> = announced.iter().map(Some).collect();
        let params = if portal.parameter_len() == 0 {
            None
        } else {
            let values =
                arrow_pg::datatypes::df::deserialize_parameters_with_server_types(portal, &inferred, &announced)
                    .map_err(|error| match error {
                        PgWireError::UserError(_) => error,
                        other => user_error(WsError::new(
                            sqlstate::INVALID_TEXT_REPRESENTATION,
                            format!("invalid parameter value: {other}"),
                        )),
                    })?;
            Some(values)
        };
        let outcome = self.run(prepared, params).await.map_err(user_error)?;
        deallocate(client, prepared);
        let notices = self.session.lock().await.take_notices();
        send_notices(client, notices).await?;
        match outcome {
            Outcome::CopyOut { options, stream } => {
                let rows = super::copy::send_copy_out(client, &options, stream).await?;
                Ok(Response::Execution(tag(&copy_tag(rows))))
            }
            Outcome::CopyIn(copy) => {
                // pgwire sends the CopyInResponse and enters copy-in mode.
                let format = if copy.format() == CopyFormat::Binary { 1 } else { 0 };
                let response = CopyResponse::new(format, copy.columns(), futures::stream::empty());
                *self.copy_in.lock().await = Some(copy);
                Ok(Response::CopyIn(response))
            }
            other => outcome_response(other, &portal.result_column_format),
        }
    }
}

/// What [`Connection::start_copy`] did with an outcome.
// One per statement, moved once and matched at once: boxing the big variant would add an
// allocation per statement and save no memory that is held.
#[allow(clippy::large_enum_variant)]
enum Started {
    NotCopy(Outcome),
    /// COPY TO STDOUT has been sent; this is its tag.
    Out(pgwire::api::results::Tag),
    /// COPY FROM STDIN is waiting for the client's data.
    In,
}

/// COPY FROM STDIN's data. An error ends the copy at once: its insert is dropped (nothing
/// commits) and pgwire sends the ErrorResponse; like PostgreSQL, the connection then
/// ignores the rest of the client's CopyData (until Sync in the extended protocol).
#[async_trait]
impl CopyHandler for Connection {
    async fn on_copy_data<C>(&self, _client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut slot = self.copy_in.lock().await;
        let Some(copy) = slot.as_mut() else {
            return Err(user_error(WsError::new(sqlstate::PROTOCOL_VIOLATION, "CopyData outside COPY FROM STDIN")));
        };
        if let Err(error) = copy.data(&copy_data.data).await {
            *slot = None;
            self.busy.set(false);
            return Err(user_error(error));
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let copy = self.copy_in.lock().await.take();
        let result = match copy {
            Some(copy) => copy.finish().await,
            None => Err(WsError::new(sqlstate::PROTOCOL_VIOLATION, "CopyDone outside COPY FROM STDIN")),
        };
        self.busy.set(false);
        let done = result.map_err(user_error)?;
        // Its rows are committed now: a ROLLBACK of the block cannot undo them.
        self.transaction.wrote();
        client.send(PgWireBackendMessage::CommandComplete(tag(&done).into())).await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, _client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Dropping the CopyIn abandons its insert: nothing is written.
        self.copy_in.lock().await.take();
        self.busy.set(false);
        user_error(WsError::new(sqlstate::QUERY_CANCELED, format!("COPY from stdin failed: {}", fail.message)))
    }
}

#[async_trait]
impl CancelHandler for Connection {
    async fn on_cancel_request(&self, request: CancelRequest) {
        self.shared.cancels.cancel(request.pid, &request.secret_key);
    }
}

impl ErrorHandler for Connection {
    fn on_error<C>(&self, _client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        tracing::debug!(pid = self.pid, %error, "statement failed");
        // Any error inside a transaction block fails the block, as in PostgreSQL.
        self.transaction.fail();
    }
}

/// Hands pgwire the handlers of one connection.
pub struct ConnectionHandlers(pub Arc<Connection>);

impl PgWireServerHandlers for ConnectionHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.0.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.0.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.0.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.0.clone()
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.0.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        self.0.clone()
    }
}

//! session/: the engine shared by all connections and the state of one session.
//!
//! [`Engine`] owns the catalog and everything shared; [`Session`] owns what one
//! connection may change (settings, DataFusion config, the time-travel pins of the
//! statement being planned). A statement is prepared (parsed, classified, planned) and
//! then executed; results come back as a stream of Arrow batches so that server/ can
//! send them batch by batch. Nothing here knows pgwire: `watershed sql` and the
//! in-process test runner drive the same code.

mod compat;
mod continuous;
pub mod copy;
mod correlated;
mod cursors;
mod ddl;
mod maintenance;
mod models;
mod oid_tags;
mod pg_functions;
mod roles;
pub mod settings;
pub mod users;
mod views;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{DdlStatement, DmlStatement, LogicalPlan, WriteOp};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{SendableRecordBatchStream, execute_stream};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{self as sqlast, Expr as SqlExpr, Set, Value};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;

use crate::catalog::{CATALOG_NAME, Catalog, SCHEMA_NAME};
use crate::config::Config;
use crate::error::{WsError, WsResult, sqlstate};
use crate::sql::{PinKey, StreamStatement, TimeTravelPlanner, VersionSpec, WsStatement, time_travel_refs};

pub use roles::Role;

pub use compat::{TransactionState, TransactionStatus};
use settings::Settings;

/// The process-wide engine: catalog, shared object stores, configuration.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    config: Config,
    catalog: Arc<Catalog>,
    object_stores: Arc<dyn ObjectStoreRegistry>,
    next_session_id: AtomicU32,
    /// LISTEN/NOTIFY routing between sessions (and from notify sinks).
    notify: crate::connectors::sinks::notify::NotifyHub,
    /// DataFusion's defaults plus datafusion-pg-catalog's functions and type planner;
    /// every session starts from it (see [`pg_template`]).
    pg_template: datafusion::execution::SessionState,
}

/// A session state with pg_catalog set up once for the whole engine. The pg_catalog
/// schema hands out OIDs from its own cache; one shared instance keeps a relation's OID
/// the same for every connection (psql asks for an OID, then queries by it; a
/// per-session instance registered into the shared catalog would replace it under other
/// sessions' feet).
fn pg_template(catalog: &Catalog) -> datafusion::execution::SessionState {
    let config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG_NAME, SCHEMA_NAME)
        .with_create_default_catalog_and_schema(false);
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_catalog_list(catalog.provider_list())
        .build();
    let ctx = SessionContext::new_with_state(state);
    // pg_catalog tables and the functions clients call (pg_table_is_visible,
    // format_type, current_schema...): what psql's \dt and drivers' metadata need.
    datafusion_pg_catalog::setup_pg_catalog(&ctx, CATALOG_NAME, EmptyContextProvider)
        .expect("pg_catalog registers into the watershed catalog, which always exists");
    // ...and lists our indexes (pg_class, pg_index, pg_indexes).
    catalog.overlay_pg_catalog().expect("pg_catalog was just registered");
    ctx.state()
}

impl Engine {
    /// Opens the data and catalog directories, generates the demo lake when the catalog
    /// declares it and it is missing, and registers every declared table.
    pub async fn open(config: Config) -> WsResult<Engine> {
        std::fs::create_dir_all(&config.data_dir).map_err(|error| {
            WsError::new(sqlstate::IO_ERROR, format!("data dir {}: {error}", config.data_dir.display()))
        })?;
        // The declared catalog, then what DDL persisted; one namespace across both.
        let read_only_dir = (!same_dir(&config.catalog_dir, &config.ddl_dir)).then(|| config.catalog_dir.clone());
        let dirs: Vec<&std::path::Path> = match &read_only_dir {
            Some(declared) => vec![declared, &config.ddl_dir],
            None => vec![&config.ddl_dir],
        };
        let files = crate::catalog::load_dirs(&dirs)?;
        for file in &files {
            if let Some(demo) = &file.demo {
                let lake_dir = config.data_dir.join(&demo.location);
                if !crate::demo::is_present(&lake_dir) {
                    if !config.demo_autogenerate {
                        return Err(WsError::new(
                            sqlstate::CONFIG_FILE_ERROR,
                            format!(
                                "{} declares the demo lake but {} holds none; run `watershed demo`",
                                file.path.display(),
                                lake_dir.display()
                            ),
                        ));
                    }
                    tracing::info!(dir = %lake_dir.display(), "generating the demo lake");
                    let spec = crate::demo::DemoSpec { seed: demo.seed, scale: demo.scale };
                    let report = crate::demo::generate(&lake_dir, &spec, config.progress)
                        .await
                        .map_err(|error| WsError::internal(format!("demo generation: {error}")))?;
                    tracing::info!(orders = report.orders, elapsed_ms = report.elapsed_ms, "demo lake ready");
                }
            }
        }
        // The live generator follows the lake on disk (`watershed demo --scale` may have
        // regenerated it at another scale than the catalog declares).
        let demo = files.iter().find_map(|file| file.demo.as_ref()).map(|demo| {
            crate::demo::read_spec(&config.data_dir.join(&demo.location))
                .unwrap_or(crate::demo::DemoSpec { seed: demo.seed, scale: demo.scale })
        });
        let connectors = crate::connectors::ConnectorContext { data_dir: config.data_dir.clone(), demo };
        let catalog = Arc::new(Catalog::new(
            &config.ddl_dir,
            read_only_dir,
            &config.data_dir,
            config.limits.lake_staleness_ms,
            connectors,
        ));
        catalog.models().load()?;
        let pg_template = pg_template(&catalog);
        catalog.start_upkeep();
        let engine = Engine {
            inner: Arc::new(EngineInner {
                config,
                pg_template,
                catalog,
                object_stores: Arc::new(DefaultObjectStoreRegistry::new()),
                next_session_id: AtomicU32::new(1),
                notify: Default::default(),
            }),
        };
        let session = engine.session();
        engine.inner.catalog.register_files(&files, &session.ctx.state()).await?;
        // Views (plain and materialized) and sinks are planned by a session (window
        // functions, time travel...), after every table and source they read is
        // registered; views before sinks. A view may read another view (of either kind)
        // declared later: views that do not plan yet are tried again after the others,
        // until a round makes no progress.
        let mut pending: Vec<(&crate::catalog::CatalogFile, PendingView)> = files
            .iter()
            .flat_map(|file| {
                let plain = file.plain_views.iter().map(move |def| (file, PendingView::Plain(def)));
                plain.chain(file.views.iter().map(move |def| (file, PendingView::Materialized(def))))
            })
            .collect();
        while !pending.is_empty() {
            let mut failed = Vec::new();
            let mut first_error = None;
            for (file, pending_view) in pending.iter().copied() {
                let name = pending_view.name();
                let started = match pending_view {
                    PendingView::Plain(def) => match session.plan_view(def.clone()).await {
                        Ok(view) => {
                            engine.inner.catalog.register_plain_view(view, Some(file.path.clone()), false).await?;
                            Ok(())
                        }
                        Err(error) => Err(error),
                    },
                    PendingView::Materialized(def) => match session.start_view(def.clone()).await {
                        Ok((view, reads)) => {
                            engine.inner.catalog.register_view(view, reads, Some(file.path.clone())).await?;
                            Ok(())
                        }
                        Err(error) => Err(error),
                    },
                };
                if let Err(error) = started {
                    first_error.get_or_insert_with(|| continuous_load_error(file, name, error));
                    failed.push((file, pending_view));
                }
            }
            if failed.len() == pending.len()
                && let Some(error) = first_error
            {
                return Err(error);
            }
            pending = failed;
        }
        for file in &files {
            for def in &file.sinks {
                let started = session.start_sink(def.clone()).await;
                let (sink, reads) = started.map_err(|error| continuous_load_error(file, &def.name, error))?;
                engine.inner.catalog.register_sink(sink, reads, Some(file.path.clone())).await?;
            }
        }
        Ok(engine)
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.inner.catalog
    }

    pub fn notify_hub(&self) -> &crate::connectors::sinks::notify::NotifyHub {
        &self.inner.notify
    }

    /// Settings of a new session and what RESET returns to: PostgreSQL's defaults with
    /// the server's own (`--statement-timeout-ms`).
    fn setting_defaults(&self) -> BTreeMap<String, String> {
        let mut defaults = settings::defaults();
        let timeout_ms = self.inner.config.limits.statement_timeout_ms;
        defaults.insert("statement_timeout".into(), settings::format_duration_ms(timeout_ms));
        defaults
    }

    /// A new session with default settings. Sessions share the catalog and object
    /// stores; each has its own DataFusion config and memory pool.
    pub fn session(&self) -> Session {
        let limits = &self.inner.config.limits;
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG_NAME, SCHEMA_NAME)
            .with_create_default_catalog_and_schema(false)
            // catalog/information_schema.rs registers PostgreSQL's flavour as a schema.
            .with_information_schema(false)
            .with_batch_size(limits.batch_rows_max);
        let options = config.options_mut();
        // Late materialization: filters evaluated while decoding Parquet.
        options.execution.parquet.pushdown_filters = true;
        options.execution.parquet.reorder_filters = true;
        // PostgreSQL folds unquoted identifiers to lower case; so does DataFusion's
        // normalization, which must stay on.
        options.sql_parser.enable_ident_normalization = true;
        // `timestamptz` plans as a timestamp in the session time zone (PostgreSQL's
        // `timezone` setting, UTC by default; settings.rs keeps the two in step).
        options.execution.time_zone = Some("UTC".to_string());
        // One snapshot per source per statement (see StatementSnapshots).
        let snapshots = Arc::new(crate::stream::StatementSnapshots::default());
        let config = config.with_extension(snapshots.clone());
        let runtime = RuntimeEnvBuilder::new()
            .with_object_store_registry(self.inner.object_stores.clone())
            .with_memory_pool(Arc::new(FairSpillPool::new(limits.query_memory_bytes_max)))
            .build_arc()
            .expect("a runtime env with a memory pool and registry always builds");
        let time_travel = Arc::new(TimeTravelPlanner::default());
        let state = SessionStateBuilder::new_from_existing(self.inner.pg_template.clone())
            .with_config(config)
            .with_runtime_env(runtime)
            .with_catalog_list(self.inner.catalog.provider_list())
            .with_relation_planners(vec![
                time_travel.clone(),
                Arc::new(crate::sql::windows::WindowPlanner::new(limits.windows_per_event_max)),
            ])
            .with_query_planner(Arc::new(crate::sql::windows::WindowQueryPlanner))
            .with_analyzer_rule(Arc::new(crate::sql::windows::SessionKeys))
            .with_analyzer_rule(Arc::new(crate::sql::ZeroBasedVectors))
            .build();
        let mut state = state;
        // After DataFusion's own: they do not plan comparisons, this one only those.
        datafusion::execution::FunctionRegistry::register_expr_planner(
            &mut state,
            Arc::new(crate::sql::ArrayTextLiterals),
        )
        .expect("registering an expression planner does not fail");
        let id = self.inner.next_session_id.fetch_add(1, Ordering::Relaxed);
        let ctx = SessionContext::new_with_state(state);
        let state = ctx.state_weak_ref();
        let initial = ctx.state().config().options().as_ref().clone();
        let settings = Arc::new(Settings::new(
            Box::new(move |change| {
                let state = state.upgrade().ok_or_else(|| WsError::internal("session is gone"))?;
                change(state.write().config_mut().options_mut());
                Ok(())
            }),
            initial,
            self.setting_defaults(),
        ));
        let backend_pid = i32::try_from(id).expect("fewer than 2^31 sessions per process");
        let role = roles::SessionRole::default();
        role.set(Some(Role::Admin));
        let catalog = &self.inner.catalog;
        let (indexes, views) = (catalog.indexes().clone(), catalog.plain_views().clone());
        pg_functions::register(&ctx, settings.clone(), role.clone(), backend_pid, indexes, views);
        ctx.register_udtf("table_history", Arc::new(maintenance::TableHistory::new(self.inner.catalog.clone())));
        ctx.register_udf(crate::model::predict::udf(self.inner.catalog.models().clone()));
        Session {
            engine: self.clone(),
            id,
            ctx,
            time_travel,
            snapshots,
            settings,
            transaction: Arc::new(TransactionState::default()),
            cursors: cursors::Cursors::new(limits.cursors_max),
            role,
            deadline: None,
            notices: Vec::new(),
        }
    }
}

/// Whether two configured directories are one (then DDL writes where declarations are
/// read, as before the two were split).
fn same_dir(a: &std::path::Path, b: &std::path::Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
}

/// A view declared in a catalog file, waiting at start for what it reads.
#[derive(Clone, Copy)]
enum PendingView<'a> {
    Plain(&'a crate::catalog::PlainViewDef),
    Materialized(&'a crate::stream::continuous::ViewDef),
}

impl PendingView<'_> {
    fn name(&self) -> &str {
        match self {
            PendingView::Plain(def) => &def.name,
            PendingView::Materialized(def) => &def.name,
        }
    }
}

/// A view or sink of the catalog that no longer plans: the server does not start with a
/// half-restored catalog, and the message says which file and object.
fn continuous_load_error(file: &crate::catalog::CatalogFile, name: &str, error: WsError) -> WsError {
    WsError::new(
        sqlstate::CONFIG_FILE_ERROR,
        format!("{}:{}: {name}: {}", file.path.display(), file.line_of_table(name), error.message),
    )
}

/// What a statement is, decided once at prepare time.
#[derive(Debug, Clone)]
enum Kind {
    /// A plan whose result rows go to the client (SELECT, VALUES, EXPLAIN, SHOW of
    /// DataFusion tables...).
    Rows(LogicalPlan),
    /// INSERT, UPDATE, DELETE, MERGE or TRUNCATE of a table: the count becomes the tag
    /// (PostgreSQL's words, [`write_command`]); the table is refreshed afterwards.
    Write {
        plan: LogicalPlan,
        table: String,
        command: &'static str,
    },
    /// CREATE TABLE [AS]: a managed Delta table.
    CreateTable {
        plan: LogicalPlan,
        partition_by: Vec<String>,
    },
    /// CREATE EXTERNAL TABLE.
    CreateExternal(LogicalPlan),
    DropTable {
        names: Vec<String>,
        if_exists: bool,
        /// Views reading the table are dropped too (else refused, 2BP01).
        cascade: bool,
    },
    /// CREATE [OR REPLACE] VIEW: the query is planned when it executes (views.rs).
    CreatePlainView {
        def: crate::catalog::PlainViewDef,
        or_replace: bool,
    },
    DropPlainView {
        names: Vec<String>,
        if_exists: bool,
        cascade: bool,
    },
    /// CREATE INDEX on a Delta table: Z-orders it and records the index.
    CreateIndex {
        table: String,
        def: crate::catalog::IndexDef,
        if_not_exists: bool,
    },
    DropIndex {
        names: Vec<String>,
        if_exists: bool,
    },
    CreateSource {
        def: crate::stream::SourceDef,
        if_not_exists: bool,
    },
    DropSource {
        names: Vec<String>,
        if_exists: bool,
        cascade: bool,
    },
    Set {
        name: String,
        value: Option<String>,
    },
    Show {
        name: String,
    },
    /// Transactions, RESET ALL, DISCARD ALL, cursors: see compat.rs.
    Compat(compat::Command),
    /// COPY table|(query) TO STDOUT: the rows of `plan`, in a COPY format.
    CopyTo {
        plan: LogicalPlan,
        options: copy::CopyOptions,
    },
    /// COPY table FROM STDIN: the client's data, inserted through the table's provider.
    CopyFrom(copy::CopyInTarget),
    /// Views, subscriptions, sinks, LISTEN/NOTIFY: see continuous.rs.
    Continuous(continuous::Command),
    /// ALTER TABLE: one change (ddl.rs).
    AlterTable {
        table: String,
        change: ddl::AlterChange,
        if_exists: bool,
    },
    /// OPTIMIZE and VACUUM of a Delta table: see maintenance.rs.
    Maintain(crate::sql::LakeStatement),
    /// CREATE MODEL: trains a new version (models.rs).
    CreateModel {
        name: String,
        options: BTreeMap<String, String>,
        query: String,
    },
    DropModel {
        names: Vec<String>,
        if_exists: bool,
    },
    /// ALTER MODEL name SET ACTIVE VERSION n.
    SetModelVersion {
        name: String,
        version: u32,
    },
}

/// A parsed, classified and planned statement, ready to execute (possibly many times).
#[derive(Debug, Clone)]
pub struct Prepared {
    kind: Kind,
    /// Types of `$1..$n` as fields (the data type, and the oid tag of a parameter cast
    /// to an oid type: see server/encode.rs `pg_type`); `None` where nothing in the
    /// statement determines it.
    pub param_types: Vec<Option<FieldRef>>,
    /// Result columns; empty for commands.
    pub schema: SchemaRef,
}

impl Prepared {
    /// For `DEALLOCATE`: the protocol-level statement to drop (None inside for ALL).
    pub fn deallocates(&self) -> Option<Option<&str>> {
        match &self.kind {
            Kind::Compat(compat::Command::Deallocate(name)) => Some(name.as_deref()),
            _ => None,
        }
    }
}

/// The result of executing one statement.
// One per statement, moved once to server/: boxing COPY FROM's state would add an
// allocation per statement and save no memory that is held.
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    /// Rows to stream to the client; `tag` is the command word of the final tag.
    Rows { tag: &'static str, stream: SendableRecordBatchStream },
    /// A command with its completion tag.
    Done(CommandTag),
    /// COPY TO STDOUT: rows for server/ to encode in the COPY format; the tag is `COPY n`.
    CopyOut { options: copy::CopyOptions, stream: SendableRecordBatchStream },
    /// COPY FROM STDIN: the connection feeds the client's data into this until CopyDone.
    CopyIn(copy::CopyIn),
}

/// A notice for the client (PostgreSQL's NoticeResponse): a warning about a statement that
/// ran, sent before its completion tag. Errors are [`WsError`]s; a notice never fails
/// anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// `WARNING` or `NOTICE`, as PostgreSQL's severities.
    pub severity: &'static str,
    pub code: crate::error::SqlState,
    pub message: String,
    /// PostgreSQL's DETAIL field (the list of a `drop cascades to N other objects`).
    pub detail: Option<String>,
}

/// Notices one statement may leave; one statement makes at most a couple today, and a
/// bug that made more must not grow a session's memory.
const NOTICES_PER_STATEMENT_MAX: usize = 16;

/// A completion tag such as `INSERT 0 5` or `CREATE TABLE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTag {
    pub command: &'static str,
    pub rows: Option<usize>,
    /// Only INSERT carries an oid (always 0, as in PostgreSQL since 12).
    pub oid: Option<u32>,
}

impl CommandTag {
    fn new(command: &'static str) -> CommandTag {
        CommandTag { command, rows: None, oid: None }
    }
}

impl std::fmt::Display for CommandTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.command)?;
        if let Some(oid) = self.oid {
            write!(f, " {oid}")?;
        }
        if let Some(rows) = self.rows {
            write!(f, " {rows}")?;
        }
        Ok(())
    }
}

pub struct Session {
    engine: Engine,
    id: u32,
    ctx: SessionContext,
    time_travel: Arc<TimeTravelPlanner>,
    snapshots: Arc<crate::stream::StatementSnapshots>,
    settings: Arc<Settings>,
    transaction: Arc<TransactionState>,
    cursors: cursors::Cursors,
    /// What this session may run; `None` until authentication has succeeded. Shared with
    /// `set_config()`, which checks it.
    role: roles::SessionRole,
    /// When the running statement hits `statement_timeout`.
    deadline: Option<tokio::time::Instant>,
    /// Notices of the statement executed last, for server/ to send before its tag.
    notices: Vec<Notice>,
}

impl Drop for Session {
    fn drop(&mut self) {
        // Its LISTENs end with it.
        self.engine.notify_hub().disconnect(self.id);
    }
}

/// PostgreSQL's command word for a write: its completion tag and its name in refusals.
pub(super) fn write_command(op: &WriteOp) -> &'static str {
    match op {
        WriteOp::Insert(_) => "INSERT",
        WriteOp::Update => "UPDATE",
        WriteOp::Delete => "DELETE",
        WriteOp::MergeInto(_) => "MERGE",
        WriteOp::Truncate => "TRUNCATE TABLE",
        WriteOp::Ctas => "CREATE TABLE AS",
        // WriteOp is non-exhaustive; a kind DataFusion adds reaches no provider hook of ours.
        _ => "a write",
    }
}

fn empty_schema() -> SchemaRef {
    Arc::new(Schema::empty())
}

fn set_value_text(expr: &SqlExpr) -> Option<String> {
    match expr {
        SqlExpr::Value(value) => match &value.value {
            Value::SingleQuotedString(text) | Value::DoubleQuotedString(text) => Some(text.clone()),
            Value::Number(number, _) => Some(number.clone()),
            Value::Boolean(flag) => Some(if *flag { "on".into() } else { "off".into() }),
            other => Some(other.to_string()),
        },
        SqlExpr::Identifier(ident) if ident.value.eq_ignore_ascii_case("default") => None,
        SqlExpr::Identifier(ident) => Some(ident.value.clone()),
        other => Some(other.to_string()),
    }
}

impl Session {
    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn in_transaction(&self) -> bool {
        self.transaction.in_block()
    }

    /// Parses SQL text into statements (several per message in the simple protocol).
    pub fn parse(&self, sql: &str) -> WsResult<Vec<WsStatement>> {
        let limit = self.engine.config().limits.query_text_bytes_max;
        if sql.len() > limit {
            return Err(WsError::new(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!("statement text is {} bytes; the limit is {limit}", sql.len()),
            ));
        }
        crate::sql::parse(sql)
    }

    /// The role statements are checked against; `None` refuses every statement (a
    /// connection that has not authenticated). Sessions start as admin.
    pub fn set_role(&mut self, role: Option<Role>) {
        self.role.set(role);
        let superuser = if role == Some(Role::Admin) { "on" } else { "off" };
        self.settings.set_server("is_superuser", superuser);
    }

    pub fn role(&self) -> Option<Role> {
        self.role.get()
    }

    /// Leaves a notice for the client of the statement executing now.
    fn notice(&mut self, severity: &'static str, code: crate::error::SqlState, message: impl Into<String>) {
        if self.notices.len() < NOTICES_PER_STATEMENT_MAX {
            self.notices.push(Notice { severity, code, message: message.into(), detail: None });
        }
    }

    /// A notice with PostgreSQL's DETAIL field.
    fn notice_with_detail(
        &mut self,
        severity: &'static str,
        code: crate::error::SqlState,
        message: impl Into<String>,
        detail: Option<String>,
    ) {
        if self.notices.len() < NOTICES_PER_STATEMENT_MAX {
            self.notices.push(Notice { severity, code, message: message.into(), detail });
        }
    }

    /// PostgreSQL's NOTICE for a `CREATE ... IF NOT EXISTS` that found the name taken.
    fn already_exists(&mut self, kind: &str, name: &str, code: crate::error::SqlState) {
        self.notice("NOTICE", code, format!("{kind} \"{name}\" already exists, skipping"));
    }

    /// The notices of the statement executed last; server/ sends them before its tag.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Classifies and plans one statement, and refuses it (42501) when the session's
    /// role may not run it.
    pub async fn prepare(&mut self, statement: WsStatement) -> WsResult<Prepared> {
        let prepared = self.prepare_inner(statement).await;
        if prepared.is_err() {
            // An error inside a transaction block fails the block (server/ also marks it
            // for errors raised while rows stream out).
            self.transaction.fail();
        }
        prepared
    }

    async fn prepare_inner(&mut self, statement: WsStatement) -> WsResult<Prepared> {
        let role = roles::authenticated(self.role.get())?;
        let prepared = match statement {
            WsStatement::Sql(statement) => self.plan_statement(statement).await?,
            WsStatement::Stream(statement) => {
                self.check_failed_block(None)?;
                self.prepare_stream(statement).await?
            }
            WsStatement::Lake(statement) => {
                self.check_failed_block(None)?;
                let schema = maintenance::schema(&statement);
                Prepared { kind: Kind::Maintain(statement), param_types: Vec::new(), schema }
            }
            WsStatement::Model(statement) => {
                self.check_failed_block(None)?;
                Prepared { kind: models::classify(statement)?, param_types: Vec::new(), schema: empty_schema() }
            }
            WsStatement::CreateView(create) => {
                self.check_failed_block(None)?;
                let kind = Kind::CreatePlainView { def: create.def, or_replace: create.or_replace };
                Prepared { kind, param_types: Vec::new(), schema: empty_schema() }
            }
            WsStatement::Move { direction, cursor } => {
                self.check_failed_block(None)?;
                let command = compat::move_command(&direction, &cursor)?;
                Prepared { kind: Kind::Compat(command), param_types: Vec::new(), schema: empty_schema() }
            }
        };
        roles::authorize(role, &prepared.kind)?;
        Ok(prepared)
    }

    async fn prepare_stream(&mut self, statement: StreamStatement) -> WsResult<Prepared> {
        if let Some(command) = continuous::classify(&statement)? {
            return Ok(Prepared { kind: Kind::Continuous(command), param_types: Vec::new(), schema: empty_schema() });
        }
        let kind = match statement {
            StreamStatement::CreateSource { def, if_not_exists } => Kind::CreateSource { def, if_not_exists },
            StreamStatement::DropSource { names, if_exists, cascade } => Kind::DropSource { names, if_exists, cascade },
            StreamStatement::ShowSources => {
                let view = datafusion::common::TableReference::partial(
                    crate::stream::system::SYSTEM_SCHEMA,
                    crate::stream::system::SOURCES_VIEW,
                );
                let plan = self
                    .ctx
                    .table(view)
                    .await?
                    .sort(vec![datafusion::prelude::col("name").sort(true, false)])?
                    .into_unoptimized_plan();
                let schema = Arc::new(plan.schema().as_arrow().clone());
                return Ok(Prepared { kind: Kind::Rows(plan), param_types: Vec::new(), schema });
            }
            other => unreachable!("continuous::classify takes the other statements: {other:?}"),
        };
        Ok(Prepared { kind, param_types: Vec::new(), schema: empty_schema() })
    }

    async fn plan_statement(&mut self, mut statement: Statement) -> WsResult<Prepared> {
        self.check_failed_block(Some(&statement))?;
        let oid_tags = crate::sql::parameter_oid_tags(&statement);
        if let Some(command) = continuous::classify_sql(&statement) {
            return Ok(Prepared { kind: Kind::Continuous(command), param_types: Vec::new(), schema: empty_schema() });
        }
        if let Some(kind) = self.classify_compat(&statement).await? {
            let (schema, param_types) = match &kind {
                Kind::Compat(compat::Command::Declare { plan, .. }) => {
                    (empty_schema(), parameter_fields(plan, &oid_tags)?)
                }
                Kind::Compat(command) => (self.compat_schema(command)?, Vec::new()),
                _ => unreachable!("classify_compat makes Compat kinds only"),
            };
            return Ok(Prepared { kind, param_types, schema });
        }
        if let Some(kind) = self.classify_session_statement(&statement)? {
            let schema = match &kind {
                Kind::Show { name } if name == "all" => Arc::new(Schema::new(vec![
                    Field::new("name", DataType::Utf8, false),
                    Field::new("setting", DataType::Utf8, true),
                    Field::new("description", DataType::Utf8, true),
                ])),
                Kind::Show { name } => Arc::new(Schema::new(vec![Field::new(name.clone(), DataType::Utf8, true)])),
                _ => empty_schema(),
            };
            return Ok(Prepared { kind, param_types: Vec::new(), schema });
        }
        if let Some(kind) = copy::classify(self, &statement).await? {
            return Ok(Prepared { kind, param_types: Vec::new(), schema: empty_schema() });
        }
        if let Some(kind) = ddl::classify_alter(&statement)? {
            return Ok(Prepared { kind, param_types: Vec::new(), schema: empty_schema() });
        }
        if let Some(kind) = ddl::classify_index(&statement)? {
            return Ok(Prepared { kind, param_types: Vec::new(), schema: empty_schema() });
        }
        let partition_by = ddl::take_partition_columns(&mut statement)?;
        let upsert = self.rewrite_upsert(&mut statement).await?;
        let plan = self.plan_query(statement).await?;
        let param_types = parameter_fields(&plan, &oid_tags)?;
        let kind = match plan {
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(_)) => Kind::CreateTable { plan, partition_by },
            LogicalPlan::Ddl(DdlStatement::CreateExternalTable(_)) => Kind::CreateExternal(plan),
            LogicalPlan::Ddl(DdlStatement::DropTable(drop)) => Kind::DropTable {
                names: vec![drop.name.table().to_string()],
                if_exists: drop.if_exists,
                cascade: false,
            },
            LogicalPlan::Ddl(other) => {
                return Err(WsError::unsupported(format!("{} is not supported yet", other.name())));
            }
            LogicalPlan::Dml(DmlStatement { ref table_name, ref op, ref input, .. }) => {
                let table = table_name.table().to_string();
                let command = if upsert { "INSERT" } else { write_command(op) };
                if !matches!(op, WriteOp::Insert(_)) {
                    self.check_lake_write(command, &table, op, input).await?;
                }
                Kind::Write { plan, table, command }
            }
            LogicalPlan::Copy(_) => {
                return Err(WsError::unsupported("COPY ... TO a server file is not supported"));
            }
            LogicalPlan::Statement(statement) => {
                return Err(WsError::unsupported(format!("statement {} is not supported", statement.name())));
            }
            plan => {
                crate::lake::writes::check_not_analyzed(&plan)?;
                Kind::Rows(oid_tags::through_case(plan)?)
            }
        };
        let schema = match &kind {
            Kind::Rows(plan) => Arc::new(plan.schema().as_arrow().clone()),
            _ => empty_schema(),
        };
        Ok(Prepared { kind, param_types, schema })
    }

    /// `INSERT ... ON CONFLICT` becomes the MERGE it means (sql/upsert.rs); says whether
    /// the statement was one. RETURNING is refused here with 0A000, before DataFusion's
    /// planner refuses it as a plan error.
    async fn rewrite_upsert(&self, statement: &mut Statement) -> WsResult<bool> {
        let Statement::Statement(inner) = statement else {
            return Ok(false);
        };
        if !crate::sql::upsert::is_upsert(inner) {
            if crate::sql::upsert::returns_rows(inner) {
                return Err(WsError::unsupported("RETURNING is not supported yet"));
            }
            return Ok(false);
        }
        let Some(name) = crate::sql::upsert::upsert_table(inner) else {
            return Err(WsError::unsupported("INSERT ON CONFLICT needs a table"));
        };
        let table = crate::sql::normalized_table_name(name);
        let columns: Vec<String> = match self.ctx.table_provider(table.as_str()).await {
            Ok(provider) => provider.schema().fields().iter().map(|field| field.name().clone()).collect(),
            Err(_) => {
                return Err(WsError::new(sqlstate::UNDEFINED_TABLE, format!("relation \"{table}\" does not exist")));
            }
        };
        let sqlast::Statement::Insert(insert) = inner.as_ref().clone() else {
            unreachable!("is_upsert holds only for an INSERT");
        };
        **inner = crate::sql::upsert::as_merge(insert, &columns)?;
        Ok(true)
    }

    /// UPDATE, DELETE, MERGE and TRUNCATE change a Delta table's files through deltalake
    /// (lake/writes.rs): other relations refuse with 0A000, and DELETE and UPDATE may read
    /// only their target (a join or subquery would not reach the provider).
    async fn check_lake_write(
        &self,
        command: &'static str,
        table: &str,
        op: &WriteOp,
        input: &LogicalPlan,
    ) -> WsResult<()> {
        if self.engine.catalog().lake_table(table).await.is_none() {
            return Err(WsError::unsupported(format!(
                "{command} needs a Delta lake table; \"{table}\" is not one (sources and files only take appends)"
            )));
        }
        if matches!(op, WriteOp::Delete | WriteOp::Update) {
            crate::lake::writes::check_target_only(command, input)?;
        }
        Ok(())
    }

    /// Plans a statement with DataFusion, time-travel relations pinned first, and the
    /// views it reads expanded into fresh plans of their queries (views.rs).
    async fn plan_query(&self, statement: Statement) -> WsResult<LogicalPlan> {
        let plan = self.plan_query_unexpanded(statement).await?;
        self.expand_views(plan).await
    }

    /// [`Session::plan_query`] with views left as scans of their providers.
    async fn plan_query_unexpanded(&self, statement: Statement) -> WsResult<LogicalPlan> {
        self.pin_time_travel(&statement).await?;
        let state = self.ctx.state();
        let subqueries =
            matches!(&statement, Statement::Statement(inner) if correlated::has_expression_subquery(inner));
        if !subqueries {
            return Ok(state.statement_to_plan(statement).await?);
        }
        // Subqueries DataFusion cannot decorrelate run per outer value (correlated.rs).
        match state.statement_to_plan(statement.clone()).await {
            Ok(plan) if !correlated::holds_subquery(&plan) => Ok(plan),
            Ok(plan) => {
                let runnable = state.optimize(&plan).is_ok_and(|optimized| !correlated::holds_subquery(&optimized));
                if runnable {
                    return Ok(plan);
                }
                Ok(correlated::plan(&self.ctx, &statement).await.unwrap_or(plan))
            }
            Err(error) => correlated::plan(&self.ctx, &statement).await.ok_or_else(|| error.into()),
        }
    }

    /// Statements that change or read session state, handled without DataFusion.
    fn classify_session_statement(&self, statement: &Statement) -> WsResult<Option<Kind>> {
        let inner = match statement {
            Statement::Statement(inner) => inner.as_ref(),
            Statement::Reset(reset) => {
                let name = match reset {
                    datafusion::sql::parser::ResetStatement::Variable(name) => name.to_string().to_lowercase(),
                };
                return Ok(Some(Kind::Set { name, value: None }));
            }
            _ => return Ok(None),
        };
        let kind = match inner {
            sqlast::Statement::Set(set) => match set {
                Set::SingleAssignment { variable, values, .. } => {
                    let name = variable.to_string().to_lowercase();
                    let value = match values.as_slice() {
                        [one] => set_value_text(one),
                        many => Some(
                            many.iter().map(|v| set_value_text(v).unwrap_or_default()).collect::<Vec<_>>().join(", "),
                        ),
                    };
                    Kind::Set { name, value }
                }
                Set::SetTimeZone { value, .. } => Kind::Set { name: "timezone".into(), value: set_value_text(value) },
                Set::SetNames { charset_name, .. } => {
                    Kind::Set { name: "client_encoding".into(), value: Some(charset_name.value.clone()) }
                }
                other => return Err(WsError::unsupported(format!("{other} is not supported yet"))),
            },
            sqlast::Statement::ShowVariable { variable } => {
                // The parser splits `SHOW time zone` into words and `SHOW a.b` at the dot.
                let words: Vec<String> =
                    variable.iter().map(|i| i.value.to_lowercase()).filter(|word| word != ".").collect();
                let name = match words.join(" ").as_str() {
                    "time zone" => "timezone".to_string(),
                    "transaction isolation level" => "transaction_isolation".to_string(),
                    "session authorization" => "session_authorization".to_string(),
                    _ => words.join("."),
                };
                Kind::Show { name }
            }
            sqlast::Statement::Drop { object_type: sqlast::ObjectType::Table, if_exists, names, cascade, .. } => {
                let names = names.iter().map(crate::sql::normalized_table_name).collect();
                Kind::DropTable { names, if_exists: *if_exists, cascade: *cascade }
            }
            sqlast::Statement::Drop { object_type: sqlast::ObjectType::View, if_exists, names, cascade, .. } => {
                let names = names.iter().map(crate::sql::normalized_table_name).collect();
                Kind::DropPlainView { names, if_exists: *if_exists, cascade: *cascade }
            }
            _ => return Ok(None),
        };
        Ok(Some(kind))
    }

    /// Loads a pinned provider for every `VERSION AS OF`/`TIMESTAMP AS OF` relation.
    async fn pin_time_travel(&self, statement: &Statement) -> WsResult<()> {
        let refs = time_travel_refs(statement)?;
        let mut pinned = HashMap::with_capacity(refs.len());
        for (name, version) in refs {
            if !crate::sql::names_our_schema(&name) {
                return Err(WsError::unsupported(format!("time travel needs a Delta lake table; {name} is not one")));
            }
            let table = crate::sql::normalized_table_name(&name);
            let key = PinKey { table: table.clone(), version: version.clone() };
            if pinned.contains_key(&key) {
                continue;
            }
            let Some(lake) = self.engine.catalog().lake_table(&table).await else {
                let code = if self.engine.catalog().exists(&table).await {
                    sqlstate::FEATURE_NOT_SUPPORTED
                } else {
                    sqlstate::UNDEFINED_TABLE
                };
                return Err(WsError::new(
                    code,
                    format!("time travel needs a Delta lake table; \"{table}\" is not one"),
                ));
            };
            let provider = match version {
                VersionSpec::Version(v) => lake.at_version(v).await?,
                VersionSpec::Timestamp(at) => lake.at_timestamp(at).await?,
            };
            pinned.insert(key, provider);
        }
        self.time_travel.pin(pinned);
        Ok(())
    }

    /// Executes a prepared statement with parameter values (extended protocol) or none.
    /// `cancel` ends the statement with 57014 wherever it is, including mid-stream.
    pub async fn execute(
        &mut self,
        prepared: &Prepared,
        params: Option<ParamValues>,
        cancel: CancellationToken,
    ) -> WsResult<Outcome> {
        let timeout_ms = self.settings.get("statement_timeout")?.and_then(|v| settings::parse_duration_ms(&v));
        let deadline = timeout_ms
            .filter(|&ms| ms > 0)
            .map(|ms| tokio::time::Instant::now() + std::time::Duration::from_millis(ms));
        self.deadline = deadline;
        self.notices.clear();
        let work = self.execute_inner(prepared, params, cancel.clone());
        let outcome = tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(WsError::canceled()),
            _ = sleep_until(deadline) => Err(WsError::statement_timeout()),
            outcome = work => outcome,
        };
        if outcome.is_err() {
            self.transaction.fail();
        }
        let outcome = outcome?;
        // A write inside a block is committed now; ROLLBACK will say it cannot undo it.
        // COPY FROM writes only when its data ends well (server/ marks it then).
        if roles::writes(&prepared.kind) && !matches!(outcome, Outcome::CopyIn(_)) {
            self.transaction.wrote();
        }
        Ok(match outcome {
            Outcome::Rows { tag, stream } => Outcome::Rows { tag, stream: cancellable(stream, cancel, deadline) },
            Outcome::CopyOut { options, stream } => {
                Outcome::CopyOut { options, stream: cancellable(stream, cancel, deadline) }
            }
            done => done,
        })
    }

    async fn execute_inner(
        &mut self,
        prepared: &Prepared,
        params: Option<ParamValues>,
        cancel: CancellationToken,
    ) -> WsResult<Outcome> {
        let bind = |plan: &LogicalPlan| -> WsResult<LogicalPlan> {
            match &params {
                Some(values) => Ok(plan.clone().with_param_values(values.clone())?),
                None => Ok(plan.clone()),
            }
        };
        roles::check_read_only(&prepared.kind, self.settings.read_only(self.transaction.in_block()))?;
        match &prepared.kind {
            Kind::Rows(plan) => {
                let plan = bind(plan)?;
                let tag = match &plan {
                    LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => "EXPLAIN",
                    _ => "SELECT",
                };
                let stream = self.stream(plan).await?;
                Ok(Outcome::Rows { tag, stream })
            }
            Kind::Write { plan, table, command } => {
                let plan = bind(plan)?;
                let rows = match *command {
                    "DELETE" | "UPDATE" => self.run_lake_dml(plan, table, &cancel).await?,
                    _ => self.run_to_count(plan, &cancel).await?,
                };
                if let Some(lake) = self.engine.catalog().lake_table(table).await {
                    lake.refresh().await?;
                }
                Ok(Outcome::Done(match *command {
                    "INSERT" => CommandTag { command, rows: Some(rows), oid: Some(0) },
                    "TRUNCATE TABLE" => CommandTag::new(command),
                    _ => CommandTag { command, rows: Some(rows), oid: None },
                }))
            }
            Kind::CreateTable { plan, partition_by } => {
                let plan = bind(plan)?;
                let created = ddl::create_managed_table(self, plan, partition_by).await?;
                Ok(Outcome::Done(match created {
                    ddl::Created::Created { rows: Some(rows) } => {
                        CommandTag { command: "SELECT", rows: Some(rows), oid: None }
                    }
                    ddl::Created::Created { rows: None } => CommandTag::new("CREATE TABLE"),
                    ddl::Created::Skipped { name } => {
                        self.already_exists("relation", &name, sqlstate::DUPLICATE_TABLE);
                        CommandTag::new("CREATE TABLE")
                    }
                }))
            }
            Kind::CreateExternal(plan) => {
                if let ddl::Created::Skipped { name } = ddl::create_external_table(self, plan).await? {
                    self.already_exists("relation", &name, sqlstate::DUPLICATE_TABLE);
                }
                Ok(Outcome::Done(CommandTag::new("CREATE EXTERNAL TABLE")))
            }
            Kind::DropTable { names, if_exists, cascade } => {
                for name in names {
                    match self.engine.catalog().drop_table(name, *cascade).await? {
                        Some(cascaded) => self.cascade_notice(&cascaded),
                        None if *if_exists => {}
                        None => {
                            return Err(WsError::new(
                                sqlstate::UNDEFINED_TABLE,
                                format!("table \"{name}\" does not exist"),
                            ));
                        }
                    }
                }
                Ok(Outcome::Done(CommandTag::new("DROP TABLE")))
            }
            Kind::CreatePlainView { def, or_replace } => self.create_plain_view(def, *or_replace).await,
            Kind::DropPlainView { names, if_exists, cascade } => {
                self.drop_plain_views(names, *if_exists, *cascade).await
            }
            Kind::CreateIndex { table, def, if_not_exists } => {
                let created = self.engine.catalog().create_index(table, def.clone(), *if_not_exists).await?;
                if !created {
                    self.already_exists("relation", &def.name, sqlstate::DUPLICATE_TABLE);
                }
                Ok(Outcome::Done(CommandTag::new("CREATE INDEX")))
            }
            Kind::DropIndex { names, if_exists } => {
                for name in names {
                    let dropped = self.engine.catalog().drop_index(name).await?;
                    if !dropped && !if_exists {
                        return Err(WsError::new(
                            sqlstate::UNDEFINED_OBJECT,
                            format!("index \"{name}\" does not exist"),
                        ));
                    }
                }
                Ok(Outcome::Done(CommandTag::new("DROP INDEX")))
            }
            Kind::CreateSource { def, if_not_exists } => {
                let created = self.engine.catalog().create_source(def.clone(), *if_not_exists).await?;
                if !created {
                    self.already_exists("relation", &def.name, sqlstate::DUPLICATE_TABLE);
                }
                Ok(Outcome::Done(CommandTag::new("CREATE SOURCE")))
            }
            Kind::DropSource { names, if_exists, cascade } => {
                for name in names {
                    match self.engine.catalog().drop_source(name, *cascade).await? {
                        Some(cascaded) => self.cascade_notice(&cascaded),
                        None if *if_exists => {}
                        None => {
                            return Err(WsError::new(
                                sqlstate::UNDEFINED_OBJECT,
                                format!("source \"{name}\" does not exist"),
                            ));
                        }
                    }
                }
                Ok(Outcome::Done(CommandTag::new("DROP SOURCE")))
            }
            Kind::Set { name, value } => {
                self.settings.set(name, value.as_deref())?;
                Ok(Outcome::Done(CommandTag::new(if value.is_some() { "SET" } else { "RESET" })))
            }
            Kind::Show { name } => {
                let columns: Vec<ArrayRef> = if name == "all" {
                    let all = self.settings.all();
                    let names: Vec<&str> = all.iter().map(|(name, _)| name.as_str()).collect();
                    let values: Vec<&str> = all.iter().map(|(_, value)| value.as_str()).collect();
                    let descriptions = vec![""; names.len()];
                    vec![
                        Arc::new(StringArray::from(names)),
                        Arc::new(StringArray::from(values)),
                        Arc::new(StringArray::from(descriptions)),
                    ]
                } else {
                    vec![Arc::new(StringArray::from(vec![self.settings.show(name)?]))]
                };
                let batch = RecordBatch::try_new(prepared.schema.clone(), columns)
                    .map_err(|error| WsError::internal(error.to_string()))?;
                let stream = futures::stream::iter([Ok(batch)]);
                Ok(Outcome::Rows {
                    tag: "SHOW",
                    stream: Box::pin(RecordBatchStreamAdapter::new(prepared.schema.clone(), stream)),
                })
            }
            Kind::Compat(command) => self.execute_compat(command, params.clone()).await,
            Kind::CopyTo { plan, options } => {
                let stream = self.stream(plan.clone()).await?;
                Ok(Outcome::CopyOut { options: options.clone(), stream })
            }
            Kind::CopyFrom(target) => Ok(Outcome::CopyIn(copy::CopyIn::start(self, target, cancel).await?)),
            Kind::Continuous(command) => self.execute_continuous(command).await,
            Kind::AlterTable { table, change, if_exists } => {
                let catalog = self.engine.catalog();
                if catalog.holder(table).is_none() {
                    if *if_exists {
                        self.notice(
                            "NOTICE",
                            sqlstate::UNDEFINED_TABLE,
                            format!("relation \"{table}\" does not exist, skipping"),
                        );
                        return Ok(Outcome::Done(CommandTag::new("ALTER TABLE")));
                    }
                    return Err(WsError::new(
                        sqlstate::UNDEFINED_TABLE,
                        format!("relation \"{table}\" does not exist"),
                    ));
                }
                match change {
                    ddl::AlterChange::AddColumn { column, if_not_exists } => {
                        if !ddl::add_column(self, table, column, *if_not_exists).await? {
                            let name = ddl::fold(&column.name);
                            self.notice(
                                "NOTICE",
                                sqlstate::DUPLICATE_COLUMN,
                                format!("column \"{name}\" of relation \"{table}\" already exists, skipping"),
                            );
                        }
                    }
                    ddl::AlterChange::RenameTo(new) => {
                        if !catalog.rename_table(table, new).await? {
                            return Err(WsError::unsupported(format!(
                                "ALTER TABLE ... RENAME TO renames tables; \"{table}\" is not one"
                            )));
                        }
                    }
                }
                Ok(Outcome::Done(CommandTag::new("ALTER TABLE")))
            }
            Kind::Maintain(statement) => {
                let table = statement.table();
                let Some(lake) = self.engine.catalog().lake_table(table).await else {
                    return Err(match self.engine.catalog().holder(table) {
                        None => WsError::new(sqlstate::UNDEFINED_TABLE, format!("relation \"{table}\" does not exist")),
                        Some(_) => {
                            WsError::new(sqlstate::WRONG_OBJECT_TYPE, format!("\"{table}\" is not a Delta lake table"))
                        }
                    });
                };
                let check = maintenance::setting_is_on(&self.settings.show(maintenance::VACUUM_RETENTION_CHECK)?);
                let batch = maintenance::execute(statement, &lake, check).await?;
                let schema = batch.schema();
                let tag = match statement {
                    crate::sql::LakeStatement::Optimize { .. } => "OPTIMIZE",
                    crate::sql::LakeStatement::Vacuum { .. } => "VACUUM",
                };
                let stream = futures::stream::iter([Ok(batch)]);
                Ok(Outcome::Rows { tag, stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)) })
            }
            Kind::CreateModel { name, options, query } => {
                self.create_model(name, options, query, &cancel).await?;
                Ok(Outcome::Done(CommandTag::new("CREATE MODEL")))
            }
            Kind::DropModel { names, if_exists } => {
                for name in names {
                    if !self.engine.catalog().models().drop_model(name).await? && !if_exists {
                        return Err(crate::model::undefined_model(name));
                    }
                }
                Ok(Outcome::Done(CommandTag::new("DROP MODEL")))
            }
            Kind::SetModelVersion { name, version } => {
                self.engine.catalog().models().set_active(name, *version).await?;
                Ok(Outcome::Done(CommandTag::new("ALTER MODEL")))
            }
        }
    }

    async fn stream(&self, plan: LogicalPlan) -> WsResult<SendableRecordBatchStream> {
        // A new statement: sources give it fresh snapshots, shared by all its scans.
        self.snapshots.clear();
        let state = self.ctx.state();
        let physical = state.create_physical_plan(&plan).await;
        // The plan holds what it reads; the snapshots need not outlive planning.
        self.snapshots.clear();
        Ok(execute_stream(physical?, self.ctx.task_ctx())?)
    }

    /// Runs a DELETE or UPDATE on a lake table with the filters and assignments of its
    /// analyzed plan (lake/writes.rs `dml_parts` says why not through the optimizer).
    async fn run_lake_dml(&self, plan: LogicalPlan, table: &str, cancel: &CancellationToken) -> WsResult<usize> {
        let state = self.ctx.state();
        let analyzed = state.analyzer().execute_and_check(plan, state.config_options(), |_, _| {})?;
        let LogicalPlan::Dml(DmlStatement { op, input, .. }) = &analyzed else {
            return Err(WsError::internal("a DELETE or UPDATE analyzes to a DML plan"));
        };
        let update = matches!(op, WriteOp::Update);
        let (assignments, filters) = crate::lake::writes::dml_parts(input, update)?;
        let Some(lake) = self.engine.catalog().lake_table(table).await else {
            return Err(WsError::new(sqlstate::UNDEFINED_TABLE, format!("relation \"{table}\" does not exist")));
        };
        let exec = if update {
            datafusion::datasource::TableProvider::update(lake.as_ref(), &state, assignments, filters).await?
        } else {
            datafusion::datasource::TableProvider::delete_from(lake.as_ref(), &state, filters).await?
        };
        let stream = execute_stream(exec, self.ctx.task_ctx())?;
        count_rows(cancellable(stream, cancel.clone(), self.deadline)).await
    }

    /// Runs a DML plan and returns the row count it reports.
    async fn run_to_count(&self, plan: LogicalPlan, cancel: &CancellationToken) -> WsResult<usize> {
        count_rows(cancellable(self.stream(plan).await?, cancel.clone(), self.deadline)).await
    }

    /// Applies a parameter from the startup message (`application_name`, `DateStyle`,
    /// `TimeZone`, `options`...), after authentication and with the checks of SET. Unknown,
    /// read-only or refused names are ignored: a client may send any of them, and failing
    /// its connection for it would help nobody.
    pub fn apply_startup_parameter(&mut self, name: &str, value: &str) {
        let name = name.to_lowercase();
        if matches!(name.as_str(), "user" | "database" | "options" | "replication") {
            return;
        }
        let allowed = roles::authorize_setting(self.role.get(), &name);
        if let Err(error) = allowed.and_then(|()| self.settings.set(&name, Some(value))) {
            tracing::debug!(name, %error, "startup parameter ignored");
        }
    }

    /// Current value of a setting, as SHOW prints it.
    pub fn show(&self, name: &str) -> WsResult<String> {
        self.settings.show(name)
    }

    /// Prepares and executes every statement of `sql` in order and collects the results:
    /// the embedded path (`watershed sql`, tests). Stops at the first error.
    pub async fn run_collect(&mut self, sql: &str) -> WsResult<Vec<Collected>> {
        let mut results = Vec::new();
        for statement in self.parse(sql)? {
            let prepared = self.prepare(statement).await?;
            let schema = prepared.schema.clone();
            match self.execute(&prepared, None, CancellationToken::new()).await? {
                Outcome::Rows { tag, mut stream } => {
                    let mut batches = Vec::new();
                    while let Some(batch) = stream.next().await {
                        match batch {
                            Ok(batch) => batches.push(batch),
                            Err(error) => {
                                // As server/ does for an error while rows stream out.
                                self.transaction.fail();
                                return Err(error.into());
                            }
                        }
                    }
                    let rows = batches.iter().map(RecordBatch::num_rows).sum();
                    results.push(Collected {
                        schema,
                        batches,
                        tag: CommandTag { command: tag, rows: Some(rows), oid: None },
                        notices: self.take_notices(),
                    });
                }
                Outcome::Done(tag) => {
                    results.push(Collected { schema, batches: Vec::new(), tag, notices: self.take_notices() })
                }
                Outcome::CopyOut { mut stream, .. } => {
                    // Embedded: the rows themselves are the output.
                    let schema = stream.schema();
                    let mut batches = Vec::new();
                    while let Some(batch) = stream.next().await {
                        batches.push(batch?);
                    }
                    let rows = batches.iter().map(RecordBatch::num_rows).sum();
                    let tag = CommandTag { command: "COPY", rows: Some(rows), oid: None };
                    results.push(Collected { schema, batches, tag, notices: self.take_notices() });
                }
                Outcome::CopyIn(_) => {
                    return Err(WsError::unsupported("COPY FROM STDIN needs a client connection"));
                }
            }
        }
        Ok(results)
    }

    pub(crate) fn context(&self) -> &SessionContext {
        &self.ctx
    }
}

/// Sums the count column a DML plan reports.
async fn count_rows(mut stream: SendableRecordBatchStream) -> WsResult<usize> {
    let mut rows = 0usize;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        let counts = batch
            .column(0)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .ok_or_else(|| WsError::internal("DML plan did not report a count column"))?;
        rows += counts.iter().flatten().sum::<u64>() as usize;
    }
    Ok(rows)
}

/// A fully read result, for embedded use.
#[derive(Debug)]
pub struct Collected {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub tag: CommandTag,
    /// Warnings the statement left (ROLLBACK of a block that wrote...).
    pub notices: Vec<Notice>,
}

/// Types of placeholders that appear directly under a cast (`$1::BIGINT`): PostgreSQL
/// gives such a parameter the cast's type, DataFusion's inference leaves it open.
fn cast_parameter_types(plan: &LogicalPlan) -> WsResult<HashMap<String, DataType>> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Cast, Expr, TryCast};
    let mut found = HashMap::new();
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                let (inner, data_type) = match e {
                    Expr::Cast(Cast { expr, field }) => (expr.as_ref(), field.data_type()),
                    Expr::TryCast(TryCast { expr, field }) => (expr.as_ref(), field.data_type()),
                    _ => return Ok(TreeNodeRecursion::Continue),
                };
                if let Expr::Placeholder(placeholder) = inner {
                    found.entry(placeholder.id.clone()).or_insert_with(|| data_type.clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    Ok(found)
}

/// `$n` types of a plan in order; DataFusion names them `$1`, `$2`, ...
fn parameter_types(plan: &LogicalPlan) -> WsResult<Vec<Option<DataType>>> {
    let mut types = plan.get_parameter_types()?;
    for (id, data_type) in cast_parameter_types(plan)? {
        let slot = types.entry(id).or_insert(None);
        if slot.is_none() {
            *slot = Some(data_type);
        }
    }
    let mut numbered = Vec::with_capacity(types.len());
    for (name, data_type) in types {
        let index = name
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n >= 1)
            .ok_or_else(|| WsError::syntax(format!("invalid parameter name {name}")))?;
        numbered.push((index, data_type));
    }
    numbered.sort_by_key(|(index, _)| *index);
    let count = numbered.last().map_or(0, |(index, _)| *index);
    let mut ordered = vec![None; count];
    for (index, data_type) in numbered {
        ordered[index - 1] = data_type;
    }
    Ok(ordered)
}

/// `$n` as the client is told of them: [`parameter_types`], each parameter cast to an oid
/// type carrying that type's tag (`tags`, from sql::parameter_oid_tags).
fn parameter_fields(plan: &LogicalPlan, tags: &HashMap<String, String>) -> WsResult<Vec<Option<FieldRef>>> {
    let key = datafusion_pg_catalog::pg_catalog::oid_field::OID_ALIAS_KEY;
    let types = parameter_types(plan)?;
    Ok(types
        .into_iter()
        .enumerate()
        .map(|(index, data_type)| {
            let name = format!("${}", index + 1);
            data_type.map(|data_type| {
                let field = Field::new(name.as_str(), data_type, true);
                let field = match tags.get(&name) {
                    Some(tag) => field.with_metadata(HashMap::from([(key.to_string(), tag.clone())])),
                    None => field,
                };
                Arc::new(field)
            })
        })
        .collect())
}

/// Waits until `deadline`, or forever when there is none.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Ends a stream with 57014 as soon as `cancel` fires or `deadline` (statement_timeout)
/// passes, even while a batch is computed.
fn cancellable(
    stream: SendableRecordBatchStream,
    cancel: CancellationToken,
    deadline: Option<tokio::time::Instant>,
) -> SendableRecordBatchStream {
    let schema = stream.schema();
    let unfolded = futures::stream::unfold((stream, cancel, false), move |(mut inner, cancel, done)| async move {
        if done {
            return None;
        }
        let stop = |error: WsError| datafusion::error::DataFusionError::External(Box::new(error));
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Some((Err(stop(WsError::canceled())), (inner, cancel, true))),
            _ = sleep_until(deadline) => Some((Err(stop(WsError::statement_timeout())), (inner, cancel, true))),
            next = inner.next() => next.map(|item| (item, (inner, cancel, false))),
        }
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, unfolded))
}

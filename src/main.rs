//! The `watershed` command line. Parsing only: every command is a library call.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use watershed::config::{Config, LISTEN_DEFAULT, Limits, SecurityConfig};
use watershed::session::Role;
use watershed::session::users::Method;
use watershed::stream::continuous::ViewLimits;

#[derive(Parser)]
#[command(
    name = "watershed",
    version,
    about = "One SQL server over rivers (streams) and lakes (Delta tables), over the PostgreSQL wire protocol"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args, Clone)]
struct Common {
    /// Address the PostgreSQL wire server listens on.
    #[arg(long, env = "WATERSHED_LISTEN", default_value = LISTEN_DEFAULT, global = true)]
    listen: SocketAddr,
    /// Directory of managed Delta tables and the demo lake.
    #[arg(long, env = "WATERSHED_DATA_DIR", default_value = "./data", global = true)]
    data_dir: PathBuf,
    /// Directory of catalog TOML files, read at start and never written (unless it is --ddl-dir).
    #[arg(long, env = "WATERSHED_CATALOG_DIR", default_value = "./catalog", global = true)]
    catalog_dir: PathBuf,
    /// Directory where DDL over the wire persists catalog files [default: <data-dir>/catalog].
    #[arg(long, env = "WATERSHED_DDL_DIR", global = true)]
    ddl_dir: Option<PathBuf>,
    /// Maximum concurrent client connections (53300 beyond).
    #[arg(long, env = "WATERSHED_CONNECTIONS_MAX", default_value_t = Limits::default().connections_max, global = true)]
    connections_max: usize,
    /// Bound on how stale a lake table's snapshot may be, in milliseconds.
    #[arg(long, env = "WATERSHED_LAKE_STALENESS_MS", default_value_t = Limits::default().lake_staleness_ms, global = true)]
    lake_staleness_ms: u64,
    /// Time running statements get to finish on SIGINT/SIGTERM, in milliseconds.
    #[arg(long, env = "WATERSHED_SHUTDOWN_GRACE_MS", default_value_t = Limits::default().shutdown_grace_ms, global = true)]
    shutdown_grace_ms: u64,
    /// Longest SQL text accepted in one message, in bytes (54000 beyond).
    #[arg(long, env = "WATERSHED_QUERY_TEXT_BYTES_MAX", default_value_t = Limits::default().query_text_bytes_max, global = true)]
    query_text_bytes_max: usize,
    /// Rows per Arrow batch, the unit results are streamed in.
    #[arg(long, env = "WATERSHED_BATCH_ROWS_MAX", default_value_t = Limits::default().batch_rows_max, global = true)]
    batch_rows_max: usize,
    /// Memory one session's query may use, in bytes (53200 beyond, after spilling).
    #[arg(long, env = "WATERSHED_QUERY_MEMORY_BYTES_MAX", default_value_t = Limits::default().query_memory_bytes_max, global = true)]
    query_memory_bytes_max: usize,
    /// Cursors one session may hold open at once (54000 beyond).
    #[arg(long, env = "WATERSHED_CURSORS_MAX", default_value_t = Limits::default().cursors_max, global = true)]
    cursors_max: usize,
    /// Default statement_timeout of sessions in milliseconds (0 = none; 57014 beyond).
    #[arg(long, env = "WATERSHED_STATEMENT_TIMEOUT_MS", default_value_t = Limits::default().statement_timeout_ms, global = true)]
    statement_timeout_ms: u64,
    /// PEM certificate chain for TLS (with --tls-key).
    #[arg(long, env = "WATERSHED_TLS_CERT", global = true)]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "WATERSHED_TLS_KEY", global = true)]
    tls_key: Option<PathBuf>,
    /// Refuse clients that do not use TLS (28000).
    #[arg(long, env = "WATERSHED_TLS_REQUIRED", global = true)]
    tls_required: bool,
    /// TOML file of users and salted password hashes; enables authentication.
    #[arg(long, env = "WATERSHED_USERS_FILE", global = true)]
    users_file: Option<PathBuf>,
    /// Allow --listen on a non-loopback address without a users file (everyone is admin).
    #[arg(long, env = "WATERSHED_INSECURE_NO_AUTH", global = true)]
    insecure_no_auth: bool,
    /// Decoded bytes per COPY FROM batch; also the longest row COPY accepts (54000 beyond).
    #[arg(long, env = "WATERSHED_COPY_BATCH_BYTES_MAX", default_value_t = Limits::default().copy_batch_bytes_max, global = true)]
    copy_batch_bytes_max: usize,
    /// Windows one event may fall in for HOP (size/slide) and CUMULATE (size/step); 54000 beyond.
    #[arg(long, env = "WATERSHED_WINDOWS_PER_EVENT_MAX", default_value_t = Limits::default().windows_per_event_max, global = true)]
    windows_per_event_max: usize,
    /// A materialized view's stored rows older than this (by emission time) are dropped.
    #[arg(long, env = "WATERSHED_VIEW_RETENTION_MS", default_value_t = ViewLimits::default().retention_ms, global = true)]
    view_retention_ms: u64,
    /// Rows a materialized view stores; the oldest go first.
    #[arg(long, env = "WATERSHED_VIEW_ROWS_MAX", default_value_t = ViewLimits::default().rows_max, global = true)]
    view_rows_max: u64,
    /// Emissions a subscriber may fall behind before its subscription ends with 53400.
    #[arg(long, env = "WATERSHED_SUBSCRIBER_BUFFER_MAX", default_value_t = ViewLimits::default().subscriber_buffer_max, global = true)]
    subscriber_buffer_max: usize,
    /// Open windows per materialized view (54000 beyond).
    #[arg(long, env = "WATERSHED_VIEW_WINDOWS_OPEN_MAX", default_value_t = ViewLimits::default().windows_open_max, global = true)]
    view_windows_open_max: usize,
    /// Window state per materialized view, in bytes (53200 beyond).
    #[arg(long, env = "WATERSHED_VIEW_STATE_BYTES_MAX", default_value_t = ViewLimits::default().state_bytes_max, global = true)]
    view_state_bytes_max: usize,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the PostgreSQL wire protocol (what a bare `watershed` does).
    Serve,
    /// Run one or more statements embedded, through the server's session code, and print tables.
    Sql {
        /// SQL text; may start with a `--` comment.
        #[arg(allow_hyphen_values = true)]
        statement: String,
    },
    /// Manage the users file (--users-file).
    User {
        #[command(subcommand)]
        action: UserCommand,
    },
    /// (Re)generate the demo lake declared in the catalog at another size.
    Demo {
        /// 1.0 = 10k products, 100k customers, 5M+ orders over two years.
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Seed of the deterministic generator.
        #[arg(long)]
        seed: Option<u64>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user, or replace one of the same name; the password is one line on stdin.
    Add {
        name: String,
        /// read: SELECT; write: read + INSERT/COPY; admin: write + DDL.
        #[arg(long)]
        role: Role,
        /// scram-sha-256, or md5 for clients too old for SCRAM.
        #[arg(long, default_value = "scram-sha-256")]
        method: Method,
    },
}

impl Common {
    fn config(&self, demo_autogenerate: bool) -> Config {
        Config {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            catalog_dir: self.catalog_dir.clone(),
            ddl_dir: self.ddl_dir.clone().unwrap_or_else(|| watershed::config::default_ddl_dir(&self.data_dir)),
            demo_autogenerate,
            progress: true,
            limits: Limits {
                connections_max: self.connections_max,
                lake_staleness_ms: self.lake_staleness_ms,
                shutdown_grace_ms: self.shutdown_grace_ms,
                query_text_bytes_max: self.query_text_bytes_max,
                batch_rows_max: self.batch_rows_max,
                query_memory_bytes_max: self.query_memory_bytes_max,
                cursors_max: self.cursors_max,
                statement_timeout_ms: self.statement_timeout_ms,
                copy_batch_bytes_max: self.copy_batch_bytes_max,
                windows_per_event_max: self.windows_per_event_max,
                views: ViewLimits {
                    retention_ms: self.view_retention_ms,
                    rows_max: self.view_rows_max,
                    subscriber_buffer_max: self.subscriber_buffer_max,
                    windows_open_max: self.view_windows_open_max,
                    state_bytes_max: self.view_state_bytes_max,
                },
            },
            security: SecurityConfig {
                tls_cert: self.tls_cert.clone(),
                tls_key: self.tls_key.clone(),
                tls_required: self.tls_required,
                users_file: self.users_file.clone(),
                insecure_no_auth: self.insecure_no_auth,
            },
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The Delta kernel logs every error it returns at ERROR (`#[instrument(err)]`),
    // including the expected "No files in log segment" when a table is probed before it
    // is created. Its errors reach us as values and are reported with a SQLSTATE, so its
    // own log is off by default (WATERSHED_LOG=buoyant_kernel=debug brings it back).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WATERSHED_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("info,buoyant_kernel=off,deltalake=warn,deltalake_core=warn")
        }))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("watershed: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => watershed::embedded::serve(cli.common.config(true)).await,
            Command::Sql { statement } => watershed::embedded::sql(cli.common.config(true), &statement).await,
            Command::User { action: UserCommand::Add { name, role, method } } => {
                let Some(users_file) = &cli.common.users_file else {
                    return Err(watershed::error::WsError::new(
                        watershed::error::sqlstate::INVALID_PARAMETER_VALUE,
                        "watershed user add needs --users-file FILE",
                    ));
                };
                if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                    eprint!("password for {name} (shown as typed): ");
                }
                watershed::embedded::user_add(users_file, &name, role, method, &mut std::io::stdin().lock())
            }
            Command::Demo { scale, seed } => watershed::embedded::demo(cli.common.config(false), scale, seed).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("watershed: {error}");
            ExitCode::FAILURE
        }
    }
}

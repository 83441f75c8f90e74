//! The `watershed` command line. Parsing only: every command is a library call.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use watershed::config::{Config, LISTEN_DEFAULT, Limits};

#[derive(Parser)]
#[command(name = "watershed", version, about = "One SQL server over rivers (streams) and lakes (Delta tables), over the PostgreSQL wire protocol")]
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
    /// Directory of catalog TOML files.
    #[arg(long, env = "WATERSHED_CATALOG_DIR", default_value = "./catalog", global = true)]
    catalog_dir: PathBuf,
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

impl Common {
    fn config(&self, demo_autogenerate: bool) -> Config {
        Config {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            catalog_dir: self.catalog_dir.clone(),
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
            },
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WATERSHED_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,buoyant_kernel=warn,deltalake=warn,deltalake_core=warn")),
        )
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
            Command::Sql { statement } => {
                watershed::embedded::sql(cli.common.config(true), &statement).await
            }
            Command::Demo { scale, seed } => {
                watershed::embedded::demo(cli.common.config(false), scale, seed).await
            }
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

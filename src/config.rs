//! Configuration of one watershed process: where it listens, where its data and catalog
//! live, and every limit it enforces. Each limit has a name, a default and a flag, and
//! is documented in the README's configuration reference.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Default address: loopback only, next to (never on) PostgreSQL's 5432.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:5433";

#[derive(Debug, Clone)]
pub struct Config {
    /// Address the PostgreSQL wire server binds.
    pub listen: SocketAddr,
    /// Managed Delta tables and the demo lake live here.
    pub data_dir: PathBuf,
    /// Declarative TOML files registering tables, sources, views and sinks; read at start,
    /// never written (unless it is also `ddl_dir`): a repository's shipped catalog (the
    /// demo's `catalog/`) stays as checked in.
    pub catalog_dir: PathBuf,
    /// Where DDL over the wire persists its catalog files (one per object), read at start
    /// after `catalog_dir`; `<data dir>/catalog` unless configured.
    pub ddl_dir: PathBuf,
    /// Generate the demo lake when the catalog declares it and it is missing.
    pub demo_autogenerate: bool,
    /// Show progress bars (demo generation) on stderr.
    pub progress: bool,
    pub limits: Limits,
    pub security: SecurityConfig,
}

/// TLS and authentication. Without a users file every client is admin (trust), which
/// the server allows only on a loopback address unless `insecure_no_auth` says otherwise.
#[derive(Debug, Clone, Default)]
pub struct SecurityConfig {
    /// PEM certificate chain, server certificate first; TLS is offered when set.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the certificate.
    pub tls_key: Option<PathBuf>,
    /// Refuse (28000) clients that do not use TLS, like PostgreSQL's `hostssl`.
    pub tls_required: bool,
    /// TOML file of users with salted password hashes; enables authentication.
    pub users_file: Option<PathBuf>,
    /// Allow a non-loopback `listen` address without a users file.
    pub insecure_no_auth: bool,
}

/// Every bound the server enforces. Defaults are chosen for one 2-core, 24 GiB machine.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Concurrent client connections; one more gets SQLSTATE 53300 and is closed.
    pub connections_max: usize,
    /// A lake table re-reads its Delta log when its snapshot is older than this, so commits
    /// by other writers show up within this bound. Own writes are visible at once.
    pub lake_staleness_ms: u64,
    /// On SIGINT/SIGTERM, running statements get this long to finish before connections close.
    pub shutdown_grace_ms: u64,
    /// Longest accepted SQL text in one Query/Parse message (SQLSTATE 54000 beyond it).
    pub query_text_bytes_max: usize,
    /// Rows per Arrow batch produced by DataFusion; also the unit in which results are
    /// streamed to the socket, so it bounds the result memory held per connection.
    pub batch_rows_max: usize,
    /// Memory a session's queries may hold (DataFusion memory pool); 53200 beyond it.
    pub query_memory_bytes_max: usize,
    /// Cursors a session may hold open at once (DECLARE beyond it gets 54000).
    pub cursors_max: usize,
    /// Default `statement_timeout` of new sessions (0 = none); 57014 beyond it.
    pub statement_timeout_ms: u64,
    /// COPY FROM STDIN hands a batch to the insert once it holds this much decoded text
    /// (or `batch_rows_max` rows); one row longer than this is refused with 54000. At most
    /// four such batches are held per COPY (decoding, two queued, writing).
    pub copy_batch_bytes_max: usize,
    /// Windows one event may fall in: size/slide for HOP, size/step for CUMULATE (54000
    /// beyond it), as each window is a row.
    pub windows_per_event_max: usize,
    /// Materialized views: stored-row retention, subscriber buffers, open windows and
    /// window state per view (stream/continuous/).
    pub views: crate::stream::continuous::ViewLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections_max: 100,
            lake_staleness_ms: 5_000,
            shutdown_grace_ms: 10_000,
            query_text_bytes_max: 16 * 1024 * 1024,
            batch_rows_max: 8192,
            query_memory_bytes_max: 4 * 1024 * 1024 * 1024,
            cursors_max: 64,
            statement_timeout_ms: 0,
            copy_batch_bytes_max: 32 * 1024 * 1024,
            windows_per_event_max: 10_000,
            views: crate::stream::continuous::ViewLimits::default(),
        }
    }
}

/// The DDL catalog directory when none is configured: under the data dir, next to the
/// managed tables it declares.
pub fn default_ddl_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("catalog")
}

impl Config {
    /// A configuration rooted in one directory, for tests and embedded use: data in
    /// `root/data`, declared catalog in `root/catalog`, DDL in `root/data/catalog` (as the
    /// command line's defaults), an ephemeral loopback port, no demo.
    pub fn rooted_at(root: &std::path::Path) -> Config {
        Config {
            listen: "127.0.0.1:0".parse().expect("literal address parses"),
            data_dir: root.join("data"),
            catalog_dir: root.join("catalog"),
            ddl_dir: default_ddl_dir(&root.join("data")),
            demo_autogenerate: false,
            progress: false,
            limits: Limits::default(),
            security: SecurityConfig::default(),
        }
    }
}

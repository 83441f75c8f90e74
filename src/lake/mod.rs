//! lake/: Delta tables as DataFusion relations.
//!
//! [`LakeTable`] owns one Delta table's current snapshot and hands DataFusion a provider
//! for it. It re-reads the Delta log when the snapshot is older than the configured
//! staleness bound (so commits by other processes show up), and at once after our own
//! writes. Time travel builds a separate, fixed provider for an older version.
//! Writes other than appends (DELETE, UPDATE, TRUNCATE, MERGE) are in [`writes`].
//! A `LakeScanExec` ([`crate::scan_info::ScanInfoExec`]) wraps each scan so EXPLAIN ANALYZE shows files read vs files in the
//! table, which is how partition pruning and statistics-based skipping are made visible.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::DFSchemaRef;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::dml::{InsertOp, MergeIntoClause};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use deltalake::DeltaTable;
use url::Url;

use crate::error::{WsError, WsResult};
use crate::scan_info::ScanInfoExec;

pub mod writes;

/// What `OPTIMIZE` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptimizeOutcome {
    pub files_added: u64,
    pub files_removed: u64,
    pub partitions_optimized: u64,
}

/// One snapshot of a Delta table and the DataFusion provider built on it.
struct Loaded {
    table: DeltaTable,
    provider: Arc<dyn TableProvider>,
    files_total: usize,
    version: u64,
    loaded_at: Instant,
}

/// A Delta table registered in the catalog, shared by every session.
pub struct LakeTable {
    name: String,
    url: Url,
    staleness: Duration,
    /// A time-travel snapshot: never refreshed, refuses writes.
    pinned: bool,
    /// The current snapshot, shared with the writes in flight ([`Installer`]).
    current: Arc<Current>,
}

/// A table's current snapshot.
struct Current {
    /// Async lock: refreshing reads the Delta log. Readers hold it only to clone the Arc.
    loaded: tokio::sync::RwLock<Arc<Loaded>>,
    /// `TableProvider::schema` is synchronous, so the current schema is mirrored here.
    schema: std::sync::RwLock<SchemaRef>,
}

impl Current {
    fn new(loaded: Loaded) -> Arc<Current> {
        let schema = loaded.provider.schema();
        Arc::new(Current { loaded: tokio::sync::RwLock::new(Arc::new(loaded)), schema: std::sync::RwLock::new(schema) })
    }

    /// Makes `next` current, unless a newer snapshot already is.
    async fn install(&self, next: Loaded) {
        let mut guard = self.loaded.write().await;
        if next.version < guard.version {
            return;
        }
        *self.schema.write().expect("schema lock poisoned") = next.provider.schema();
        *guard = Arc::new(next);
    }
}

/// Hands a table state that one of our writes committed back to its [`LakeTable`], so the
/// next statement of every session (an `EXPLAIN ANALYZE DELETE` too) sees the write
/// without re-reading the log.
#[derive(Clone)]
pub(crate) struct Installer(Arc<Current>);

impl Installer {
    pub(crate) async fn install(&self, table: DeltaTable) -> WsResult<()> {
        self.0.install(build_loaded(table).await?).await;
        Ok(())
    }
}

impl std::fmt::Debug for LakeTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeTable").field("name", &self.name).field("url", &self.url).finish()
    }
}

/// Turns a catalog location (absolute path, path relative to `base_dir`, or URL) into the
/// URL deltalake and object_store expect. Directories get a trailing slash.
pub fn location_url(location: &str, base_dir: &std::path::Path) -> WsResult<Url> {
    if location.contains("://") {
        return Url::parse(location).map_err(|error| {
            WsError::new(
                crate::error::sqlstate::INVALID_PARAMETER_VALUE,
                format!("invalid location URL {location:?}: {error}"),
            )
        });
    }
    let path = std::path::Path::new(location);
    let path = if path.is_absolute() { path.to_path_buf() } else { base_dir.join(path) };
    let path = std::path::absolute(&path)?;
    // A single Parquet/CSV/JSON file is a file URL; everything else is a directory.
    let url = if path.is_file() { Url::from_file_path(&path) } else { Url::from_directory_path(&path) };
    url.map_err(|()| {
        WsError::new(
            crate::error::sqlstate::INVALID_PARAMETER_VALUE,
            format!("location {} is not a usable directory path", path.display()),
        )
    })
}

async fn build_loaded(table: DeltaTable) -> WsResult<Loaded> {
    let state = table.snapshot()?;
    let files_total = state.log_data().num_files();
    let version = state.version();
    let provider = table.table_provider().await?;
    Ok(Loaded { table, provider, files_total, version, loaded_at: Instant::now() })
}

impl LakeTable {
    /// Opens an existing Delta table at `url`.
    pub async fn open(
        name: &str,
        url: Url,
        storage_options: HashMap<String, String>,
        staleness_ms: u64,
    ) -> WsResult<LakeTable> {
        let table =
            deltalake::open_table_with_storage_options(url.clone(), storage_options).await.map_err(|error| {
                let base = WsError::from(error);
                WsError::new(base.code, format!("table {name}: {}", base.message))
            })?;
        LakeTable::from_table(name, url, table, staleness_ms).await
    }

    /// Wraps a table that has just been created or loaded.
    pub async fn from_table(name: &str, url: Url, table: DeltaTable, staleness_ms: u64) -> WsResult<LakeTable> {
        let loaded = build_loaded(table).await?;
        Ok(LakeTable {
            name: name.to_string(),
            url,
            staleness: Duration::from_millis(staleness_ms),
            pinned: false,
            current: Current::new(loaded),
        })
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Version of the current snapshot (re-read within the staleness bound).
    pub async fn version(&self) -> WsResult<u64> {
        Ok(self.current().await?.version)
    }

    /// The Delta table as of the latest commit (read from the log now), for writers
    /// that commit on their own (the Delta sink).
    pub async fn current_table(&self) -> WsResult<DeltaTable> {
        Ok(self.reload(true).await?.table.clone())
    }

    /// Current snapshot, refreshed first when it is older than the staleness bound.
    async fn current(&self) -> WsResult<Arc<Loaded>> {
        {
            let loaded = self.current.loaded.read().await;
            if self.pinned || loaded.loaded_at.elapsed() < self.staleness {
                return Ok(loaded.clone());
            }
        }
        self.reload(false).await
    }

    /// Re-reads the Delta log now. Called after our own commits so a session sees its
    /// writes at once.
    pub async fn refresh(&self) -> WsResult<()> {
        self.reload(true).await.map(|_| ())
    }

    async fn reload(&self, force: bool) -> WsResult<Arc<Loaded>> {
        assert!(!self.pinned, "a pinned snapshot is never reloaded");
        let mut guard = self.current.loaded.write().await;
        // Another session may have reloaded while this one waited for the lock.
        if !force && guard.loaded_at.elapsed() < self.staleness {
            return Ok(guard.clone());
        }
        let mut table = guard.table.clone();
        table.update_incremental(None).await?;
        let next = if table.version() == Some(guard.version) {
            // Nothing new: keep the provider, restart the staleness clock.
            Loaded {
                table,
                provider: guard.provider.clone(),
                files_total: guard.files_total,
                version: guard.version,
                loaded_at: Instant::now(),
            }
        } else {
            build_loaded(table).await?
        };
        *self.current.schema.write().expect("schema lock poisoned") = next.provider.schema();
        *guard = Arc::new(next);
        Ok(guard.clone())
    }

    /// Z-orders the table's files by `columns` (CREATE INDEX): deltalake's optimize
    /// rewrites each partition's files so rows close in those columns share files, which
    /// narrows every file's min/max statistics and lets scans skip files. Partition
    /// columns are left out (partitioning already clusters them); a table without files
    /// has nothing to rewrite.
    pub async fn zorder(&self, columns: &[String]) -> WsResult<()> {
        if self.pinned {
            return Err(WsError::new(
                crate::error::sqlstate::READ_ONLY_SQL_TRANSACTION,
                format!("table {} at an older version is read-only", self.name),
            ));
        }
        let loaded = self.reload(true).await?;
        let partitions = loaded.table.snapshot()?.metadata().partition_columns().to_vec();
        let mut columns: Vec<String> = columns.iter().filter(|c| !partitions.contains(c)).cloned().collect();
        columns.dedup();
        if columns.is_empty() || loaded.files_total == 0 {
            return Ok(());
        }
        let (_, metrics) = loaded
            .table
            .clone()
            .optimize()
            .with_type(deltalake::operations::optimize::OptimizeType::ZOrder(columns))
            .await
            .map_err(|error| self.context(error))?;
        tracing::info!(
            table = self.name,
            files_removed = metrics.num_files_removed,
            files_added = metrics.num_files_added,
            "z-ordered for an index"
        );
        self.refresh().await
    }

    /// `OPTIMIZE`: compacts small files (bin-packing), or Z-orders them by `zorder`, in one
    /// commit that changes no row (`dataChange = false`, so streaming readers skip it).
    pub async fn optimize(&self, zorder: Vec<String>) -> WsResult<OptimizeOutcome> {
        let loaded = self.writable("OPTIMIZE").await?;
        let kind = if zorder.is_empty() {
            deltalake::operations::optimize::OptimizeType::Compact
        } else {
            let partitions = loaded.table.snapshot()?.metadata().partition_columns().to_vec();
            if let Some(column) = zorder.iter().find(|c| partitions.contains(c)) {
                return Err(WsError::new(
                    crate::error::sqlstate::INVALID_PARAMETER_VALUE,
                    format!("table {}: {column} is a partition column; Z-order by other columns", self.name),
                ));
            }
            deltalake::operations::optimize::OptimizeType::ZOrder(zorder)
        };
        let (table, metrics) =
            loaded.table.clone().optimize().with_type(kind).await.map_err(|error| self.context(error))?;
        self.current.install(build_loaded(table).await?).await;
        Ok(OptimizeOutcome {
            files_added: metrics.num_files_added,
            files_removed: metrics.num_files_removed,
            partitions_optimized: metrics.partitions_optimized,
        })
    }

    /// `ALTER TABLE ... ADD COLUMN`: a metadata commit; existing rows read NULL there.
    pub async fn add_column(&self, field: deltalake::kernel::StructField) -> WsResult<()> {
        let loaded = self.writable("ALTER").await?;
        let table =
            loaded.table.clone().add_columns().with_fields([field]).await.map_err(|error| self.context(error))?;
        self.current.install(build_loaded(table).await?).await;
        Ok(())
    }

    /// `VACUUM`: deletes the files that no version within `retain_hours` (the table's
    /// `delta.deletedFileRetentionDuration` when None, a week by default) reads, and files
    /// no commit references (left by failed writes). A retention under the table's bound
    /// would break time travel to recent versions and queries reading them now: refused
    /// with 22023 unless `enforce` is false. Returns the paths deleted (or, with
    /// `dry_run`, that would be).
    pub async fn vacuum(&self, retain_hours: Option<u64>, dry_run: bool, enforce: bool) -> WsResult<Vec<String>> {
        use deltalake::table::config::TablePropertiesExt as _;
        let loaded = self.writable("VACUUM").await?;
        let bound = loaded.table.snapshot()?.table_config().deleted_file_retention_duration();
        let bound_hours = bound.as_secs() / 3600;
        let mut builder = loaded
            .table
            .clone()
            .vacuum()
            .with_mode(deltalake::operations::vacuum::VacuumMode::Full)
            .with_dry_run(dry_run)
            .with_enforce_retention_duration(false);
        if let Some(hours) = retain_hours {
            if enforce && Duration::from_secs(hours.saturating_mul(3600)) < bound {
                return Err(WsError::new(
                    crate::error::sqlstate::INVALID_PARAMETER_VALUE,
                    format!(
                        "table {}: RETAIN {hours} HOURS is under the table's retention of {bound_hours} hours \
                         (delta.deletedFileRetentionDuration); versions and running queries within it would \
                         lose their files. SET watershed.vacuum_retention_check = off to vacuum anyway",
                        self.name
                    ),
                ));
            }
            let hours = i64::try_from(hours).unwrap_or(i64::MAX / 3600).min(i64::MAX / 3600);
            builder = builder.with_retention_period(chrono::Duration::hours(hours));
        }
        let (table, metrics) = builder.await.map_err(|error| self.context(error))?;
        if !dry_run {
            self.current.install(build_loaded(table).await?).await;
        }
        Ok(metrics.files_deleted)
    }

    /// The table's commits, newest first, at most `limit_max` of them: (version, commit).
    /// deltalake reads each commit's commitInfo, which every Delta writer records; the
    /// versions count down from the snapshot's.
    pub async fn history(&self, limit_max: usize) -> WsResult<Vec<(u64, deltalake::kernel::CommitInfo)>> {
        use futures::TryStreamExt as _;
        let loaded = self.current().await?;
        let commits: Vec<deltalake::kernel::CommitInfo> =
            loaded.table.history(Some(limit_max)).try_collect().await.map_err(|error| self.context(error))?;
        Ok(commits
            .into_iter()
            .enumerate()
            .map_while(|(back, commit)| Some((loaded.version.checked_sub(back as u64)?, commit)))
            .collect())
    }

    /// A fixed provider for `VERSION AS OF version`.
    pub async fn at_version(&self, version: i64) -> WsResult<Arc<dyn TableProvider>> {
        let Ok(version) = u64::try_from(version) else {
            return Err(WsError::new(
                crate::error::sqlstate::INVALID_PARAMETER_VALUE,
                format!("table {}: version {version} is negative", self.name),
            ));
        };
        let current = self.current().await?;
        if version > current.version {
            // Another writer may have committed it since our snapshot: look once more.
            let latest = if self.pinned { current.version } else { self.reload(true).await?.version };
            if version > latest {
                return Err(WsError::new(
                    crate::error::sqlstate::INVALID_PARAMETER_VALUE,
                    format!("table {} has no version {version}; the latest is {latest}", self.name),
                ));
            }
        }
        let mut table = current.table.clone();
        table.load_version(version).await.map_err(|error| self.context(error))?;
        self.pinned(table).await
    }

    /// A fixed provider for `TIMESTAMP AS OF at`: the last version committed at or before it.
    pub async fn at_timestamp(&self, at: DateTime<Utc>) -> WsResult<Arc<dyn TableProvider>> {
        let mut table = self.current().await?.table.clone();
        table.load_with_datetime(at).await.map_err(|error| self.context(error))?;
        self.pinned(table).await
    }

    /// The same table fixed at one snapshot: never refreshed, read-only.
    async fn pinned(&self, table: DeltaTable) -> WsResult<Arc<dyn TableProvider>> {
        let loaded = build_loaded(table).await?;
        Ok(Arc::new(LakeTable {
            name: self.name.clone(),
            url: self.url.clone(),
            staleness: Duration::MAX,
            pinned: true,
            current: Current::new(loaded),
        }))
    }

    /// What a write needs of this table: its name, the snapshot it starts from and the
    /// way back to install what it commits.
    fn target<'a>(&'a self, loaded: &'a Loaded) -> writes::Target<'a> {
        writes::Target { name: &self.name, installer: Installer(self.current.clone()), loaded }
    }

    /// The newest snapshot, for a statement that writes; a pinned one refuses.
    async fn writable(&self, command: &str) -> WsResult<Arc<Loaded>> {
        if self.pinned {
            return Err(WsError::new(
                crate::error::sqlstate::READ_ONLY_SQL_TRANSACTION,
                format!("cannot {command} table {} at an older version: it is read-only", self.name),
            ));
        }
        self.reload(true).await
    }

    fn context(&self, error: deltalake::DeltaTableError) -> WsError {
        table_error(&self.name, error)
    }
}

/// A Delta error of table `table`, with the table named in the message.
fn table_error(table: &str, error: deltalake::DeltaTableError) -> WsError {
    let base = WsError::from(error);
    WsError::new(base.code, format!("table {table}: {}", base.message)).with_source(base)
}

fn to_df(error: WsError) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

async fn scan_loaded(
    name: &str,
    loaded: &Loaded,
    session: &dyn Session,
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
    limit: Option<usize>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let inner = loaded.provider.scan(session, projection, filters, limit).await?;
    let detail = format!("table={name}, version={}, files_in_table={}", loaded.version, loaded.files_total);
    Ok(Arc::new(ScanInfoExec::new("LakeScanExec", detail, inner)))
}

#[async_trait]
impl TableProvider for LakeTable {
    fn schema(&self) -> SchemaRef {
        self.current.schema.read().expect("schema lock poisoned").clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        session: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let loaded = self.current().await.map_err(to_df)?;
        scan_loaded(&self.name, &loaded, session, projection, filters, limit).await
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // The provider of the snapshot answers; a refresh between planning and scan keeps
        // the same table configuration in every case that matters for pushdown.
        let loaded = self.current.loaded.try_read().map(|guard| guard.clone());
        let answers = match loaded {
            Ok(loaded) => loaded.provider.supports_filters_pushdown(filters)?,
            Err(_) => vec![TableProviderFilterPushDown::Inexact; filters.len()],
        };
        // Never Exact: deltalake 1.1 answers Exact for a filter that names only partition
        // columns, or no column at all, and then applies it by file skipping alone, which
        // keeps a file wherever the filter is NULL (skipping is conservative). So
        // `WHERE x > 0 AND NULL` returned rows, where SQL's NULL conjunction keeps none.
        // Inexact keeps DataFusion's own filter above the scan, which the pushed-down
        // copy still prunes for.
        Ok(answers
            .into_iter()
            .map(|answer| match answer {
                TableProviderFilterPushDown::Exact => TableProviderFilterPushDown::Inexact,
                other => other,
            })
            .collect())
    }

    async fn delete_from(&self, session: &dyn Session, filters: Vec<Expr>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let loaded = self.writable("DELETE").await.map_err(to_df)?;
        writes::delete("DELETE", self.target(&loaded), session, filters)
    }

    async fn truncate(&self, session: &dyn Session) -> DfResult<Arc<dyn ExecutionPlan>> {
        let loaded = self.writable("TRUNCATE").await.map_err(to_df)?;
        writes::delete("TRUNCATE TABLE", self.target(&loaded), session, vec![])
    }

    async fn update(
        &self,
        session: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let loaded = self.writable("UPDATE").await.map_err(to_df)?;
        writes::update(self.target(&loaded), session, assignments, filters)
    }

    async fn merge_into(
        &self,
        session: &dyn Session,
        source: Arc<dyn ExecutionPlan>,
        merge_schema: DFSchemaRef,
        on: Expr,
        clauses: Vec<MergeIntoClause>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let loaded = self.writable("MERGE").await.map_err(to_df)?;
        // The target's columns are the first ones of the merge schema, qualified by the
        // statement's name for the table.
        let Some((Some(target), _)) = merge_schema.iter().next() else {
            return Err(DataFusionError::Internal("MERGE's schema starts with the target's columns".into()));
        };
        let target = target.clone();
        writes::merge(self.target(&loaded), &target, session, source, merge_schema, on, clauses)
    }

    async fn insert_into(
        &self,
        session: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if self.pinned {
            return Err(to_df(WsError::new(
                crate::error::sqlstate::READ_ONLY_SQL_TRANSACTION,
                format!("table {} at an older version is read-only", self.name),
            )));
        }
        // Append onto the newest snapshot; the Delta commit itself resolves conflicts with
        // concurrent writers. The session refreshes this table once the insert completes.
        let loaded = self.reload(true).await.map_err(to_df)?;
        loaded.provider.insert_into(session, input, insert_op).await
    }
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded").field("version", &self.version).finish()
    }
}

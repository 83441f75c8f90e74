//! catalog/: the one catalog of named relations, and its persistence.
//!
//! Tables are declared in TOML files in the catalog directory (see `catalog/demo.toml`
//! in the repository). At start every file is read; a broken file stops start-up with
//! its path and line. DDL sent over the wire writes one file per object, atomically
//! (temporary file, fsync, rename, fsync of the directory), so a restart sees the same
//! tables. All sessions share one DataFusion schema provider (`watershed.public`), which
//! this module fills; lake tables stay reachable by name for time travel and writes.

pub(crate) mod files;
mod indexes;
mod information_schema;
mod pg_catalog;
mod views;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList, MemorySchemaProvider,
    SchemaProvider,
};
use datafusion::datasource::TableProvider;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::SessionState;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

pub use files::{
    CatalogFile, DemoDecl, check_object_name, file_stem, load_dir, load_dirs, toml_error, write_text_atomic,
};
pub use indexes::{IndexColumn, IndexDef, IndexEntry, IndexRegistry};
pub use views::{PlainView, PlainViewDef, PlainViews, VIEW_NESTING_MAX, ViewProvider, conform, single_query};

use crate::connectors::ConnectorContext;
use crate::connectors::sinks::Sink;
use crate::error::{WsError, WsResult, sqlstate};
use crate::lake::{LakeTable, location_url};
use crate::stream::continuous::{MaterializedView, ViewRegistry, ViewTable};
use crate::stream::system::{
    SINKS_VIEW, SOURCES_VIEW, SYSTEM_SCHEMA, SinkRegistry, SourceRegistry, VIEWS_VIEW, sources_view,
};
use crate::stream::{Source, SourceDef, SourceSpec, SourceTable};

/// How often sources are trimmed to their retention and their rates sampled.
pub const UPKEEP_INTERVAL_MS: u64 = 1_000;

/// DataFusion catalog and schema that hold every relation; PostgreSQL clients see them as
/// database `watershed`, schema `public`.
pub const CATALOG_NAME: &str = "watershed";
pub const SCHEMA_NAME: &str = "public";

/// Storage format of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Delta,
    Parquet,
    Csv,
    Json,
}

impl Format {
    pub fn parse(text: &str) -> WsResult<Format> {
        match text.to_ascii_lowercase().as_str() {
            "delta" | "deltatable" => Ok(Format::Delta),
            "parquet" => Ok(Format::Parquet),
            "csv" => Ok(Format::Csv),
            "json" | "ndjson" => Ok(Format::Json),
            other => Err(WsError::unsupported(format!(
                "table format {other:?} is not supported (delta, parquet, csv, json are)"
            ))),
        }
    }
}

/// One table declaration, as written in a catalog file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableDef {
    pub name: String,
    pub format: Format,
    /// Path (absolute, or relative to the data dir) or URL (`s3://`, `az://`, `file://`).
    pub location: String,
    /// Created by `CREATE TABLE` under the data dir: `DROP TABLE` deletes its files.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub managed: bool,
    /// Storage options (credentials, endpoints) or format options (`has_header`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// `CREATE INDEX` on a Delta table (see indexes.rs): declared with the table.
    #[serde(default, rename = "index", skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<IndexDef>,
}

/// A registered table and the file that declares it.
struct Registered {
    def: TableDef,
    file: PathBuf,
    lake: Option<Arc<LakeTable>>,
}

/// A registered source and the file that declares it.
struct RegisteredSource {
    file: PathBuf,
    source: Arc<Source>,
}

/// A running materialized view, the file that declares it and the relations its query
/// reads (which DROP refuses to take from under it).
struct RegisteredView {
    file: PathBuf,
    view: Arc<MaterializedView>,
    reads: Vec<String>,
}

/// A running sink, the file that declares it and the relations it reads.
struct RegisteredSink {
    file: PathBuf,
    sink: Arc<Sink>,
    reads: Vec<String>,
}

fn dependent(kind: &str, name: &str, dependents: &[String]) -> WsError {
    WsError::new(
        sqlstate::DEPENDENT_OBJECTS_STILL_EXIST,
        format!("cannot drop {kind} {name} because {} depend on it; drop them first", dependents.join(", ")),
    )
}

/// What holds a name in the one namespace of the catalog. Tables, sources, views,
/// indexes and sinks share it: catalog files declare them side by side and a start
/// refuses a name declared twice, so CREATE refuses the same, and what the server accepted
/// never stops its next start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    Table,
    Source,
    /// A plain view (CREATE VIEW).
    PlainView,
    /// A materialized view.
    View,
    Index,
    Sink,
}

impl Holder {
    /// A relation in PostgreSQL's sense (a `pg_class` row): all but sinks.
    pub fn is_relation(self) -> bool {
        !matches!(self, Holder::Sink)
    }
}

/// The refusal of a new object named `name` that `holder` has: 42P07 (duplicate_table)
/// when a relation holds it, as PostgreSQL answers for any `pg_class` name, 42710
/// (duplicate_object) when a sink does.
pub fn duplicate(name: &str, holder: Holder) -> WsError {
    match holder {
        Holder::Sink => WsError::new(
            sqlstate::DUPLICATE_OBJECT,
            format!(
                "sink \"{name}\" already exists (sinks share one namespace with tables, sources, views and indexes)"
            ),
        ),
        _ => WsError::new(sqlstate::DUPLICATE_TABLE, format!("relation \"{name}\" already exists")),
    }
}

/// Directories tried for a new managed table whose plain name a renamed table holds.
const MANAGED_LOCATION_ATTEMPTS_MAX: usize = 1_000;

pub struct Catalog {
    /// Where DDL writes its catalog files (`--ddl-dir`).
    dir: PathBuf,
    /// The declared catalog (`--catalog-dir`) when it is another directory: read at
    /// start, never written; what it declares is changed by editing it, not by DDL.
    read_only_dir: Option<PathBuf>,
    data_dir: PathBuf,
    lake_staleness_ms: u64,
    list: Arc<MemoryCatalogProviderList>,
    schema: Arc<MemorySchemaProvider>,
    /// Serializes DDL; readers go through `schema`, which has its own locking.
    tables: Mutex<BTreeMap<String, Registered>>,
    /// Sources by name; changed only under the `tables` lock, which serializes DDL.
    sources: Mutex<BTreeMap<String, RegisteredSource>>,
    /// The same sources, for the system view and upkeep (synchronous readers).
    registry: SourceRegistry,
    /// Materialized views and sinks; changed only under the `tables` lock.
    views: Mutex<BTreeMap<String, RegisteredView>>,
    view_registry: ViewRegistry,
    sinks: Mutex<BTreeMap<String, RegisteredSink>>,
    sink_registry: SinkRegistry,
    /// Indexes of the tables; changed only under the `tables` lock.
    indexes: IndexRegistry,
    /// Models (CREATE MODEL) and their versions, with their own lock and files.
    models: Arc<crate::model::ModelRegistry>,
    /// Plain views, and the file that declares each; changed only under the `tables` lock.
    plain_views: PlainViews,
    plain_view_files: Mutex<BTreeMap<String, PathBuf>>,
    connectors: ConnectorContext,
    /// The one registry of source connectors.
    source_connectors: crate::connectors::SourceConnectors,
    /// The one registry of sink connectors.
    sink_connectors: crate::connectors::sinks::SinkConnectors,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").field("dir", &self.dir).finish()
    }
}

impl Catalog {
    pub fn new(
        dir: &Path,
        read_only_dir: Option<PathBuf>,
        data_dir: &Path,
        lake_staleness_ms: u64,
        connectors: ConnectorContext,
    ) -> Catalog {
        let list = Arc::new(MemoryCatalogProviderList::new());
        let catalog = Arc::new(MemoryCatalogProvider::new());
        let schema = Arc::new(MemorySchemaProvider::new());
        catalog.register_schema(SCHEMA_NAME, schema.clone()).expect("a fresh memory catalog accepts a schema");
        let registry = SourceRegistry::default();
        let view_registry = ViewRegistry::default();
        let sink_registry = SinkRegistry::default();
        let system = Arc::new(MemorySchemaProvider::new());
        // Models live in their own directory and namespace (model/), loaded by Engine::open.
        let models = Arc::new(crate::model::ModelRegistry::new(dir.join("models")));
        let system_views: [(&str, Arc<dyn TableProvider>); 4] = [
            (SOURCES_VIEW, Arc::new(sources_view(registry.clone()))),
            (VIEWS_VIEW, Arc::new(crate::stream::system::views_view(view_registry.clone()))),
            (SINKS_VIEW, Arc::new(crate::stream::system::sinks_view(sink_registry.clone()))),
            ("models", Arc::new(crate::model::models_view(models.clone()))),
        ];
        for (name, provider) in system_views {
            system.register_table(name.to_string(), provider).expect("a fresh schema accepts a table");
        }
        catalog.register_schema(SYSTEM_SCHEMA, system).expect("a fresh memory catalog accepts a second schema");
        list.register_catalog(CATALOG_NAME.to_string(), catalog.clone());
        // Our information_schema (PostgreSQL type names); sessions turn DataFusion's off.
        let plain_views = PlainViews::default();
        let info = information_schema::PgInformationSchema::new(list.clone(), plain_views.clone());
        catalog.register_schema("information_schema", Arc::new(info)).expect("a fresh memory catalog accepts a schema");
        Catalog {
            dir: dir.to_path_buf(),
            read_only_dir,
            data_dir: data_dir.to_path_buf(),
            lake_staleness_ms,
            list,
            schema,
            tables: Mutex::new(BTreeMap::new()),
            sources: Mutex::new(BTreeMap::new()),
            registry,
            views: Mutex::new(BTreeMap::new()),
            view_registry,
            sinks: Mutex::new(BTreeMap::new()),
            sink_registry,
            indexes: IndexRegistry::default(),
            models,
            plain_views,
            plain_view_files: Mutex::new(BTreeMap::new()),
            connectors,
            source_connectors: crate::connectors::SourceConnectors::builtin(),
            sink_connectors: crate::connectors::sinks::SinkConnectors::builtin(),
        }
    }

    /// The models, for CREATE/ALTER/DROP MODEL, `predict()` and `watershed.models`.
    pub fn models(&self) -> &Arc<crate::model::ModelRegistry> {
        &self.models
    }

    /// The indexes, for pg_catalog and `pg_get_indexdef`.
    pub fn indexes(&self) -> &IndexRegistry {
        &self.indexes
    }

    /// Wraps the `pg_catalog` schema datafusion-pg-catalog registered so that it lists
    /// our indexes too (see pg_catalog.rs). Called once, right after that set-up.
    pub fn overlay_pg_catalog(&self) -> WsResult<()> {
        let catalog =
            self.list.catalog(CATALOG_NAME).ok_or_else(|| WsError::internal("the watershed catalog is missing"))?;
        let inner = catalog.schema("pg_catalog").ok_or_else(|| WsError::internal("pg_catalog is not set up"))?;
        catalog.register_schema(
            "pg_catalog",
            Arc::new(pg_catalog::PgCatalogOverlay::new(inner, self.indexes.clone(), self.plain_views.clone())),
        )?;
        Ok(())
    }

    /// Trims every source to its retention once a second, for as long as the catalog
    /// lives (the task holds only a weak reference).
    pub fn start_upkeep(&self) {
        let registry = Arc::downgrade(&self.registry);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(std::time::Duration::from_millis(UPKEEP_INTERVAL_MS));
            loop {
                ticker.tick().await;
                let Some(registry) = registry.upgrade() else { break };
                let sources: Vec<Arc<Source>> =
                    registry.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
                let now_ms = crate::stream::now_ms();
                for source in sources {
                    source.tick(now_ms);
                }
            }
        });
    }

    /// The catalog list every session's DataFusion state is built on.
    pub fn provider_list(&self) -> Arc<dyn CatalogProviderList> {
        self.list.clone()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Registers every table of already-parsed catalog files (start-up).
    pub async fn register_files(&self, files: &[CatalogFile], state: &SessionState) -> WsResult<()> {
        for file in files {
            for def in &file.tables {
                self.register(def.clone(), file.path.clone(), state).await.map_err(|error| {
                    WsError::new(
                        sqlstate::CONFIG_FILE_ERROR,
                        format!(
                            "{}:{}: table {}: {}",
                            file.path.display(),
                            file.line_of_table(&def.name),
                            def.name,
                            error.message
                        ),
                    )
                })?;
            }
            for def in &file.sources {
                self.register_source(def.clone(), file.path.clone()).await.map_err(|error| {
                    WsError::new(
                        sqlstate::CONFIG_FILE_ERROR,
                        format!(
                            "{}:{}: source {}: {}",
                            file.path.display(),
                            file.line_of_table(&def.name),
                            def.name,
                            error.message
                        ),
                    )
                })?;
            }
        }
        Ok(())
    }

    /// Validates, starts and registers a source. The caller persists its declaration.
    async fn register_source(&self, def: SourceDef, file: PathBuf) -> WsResult<Arc<Source>> {
        let spec = SourceSpec::new(def)?;
        let prepared = self.source_connectors.prepare(&spec, &self.connectors)?;
        let _ddl = self.tables.lock().await;
        let mut sources = self.sources.lock().await;
        let name = spec.name().to_string();
        self.check_name_free(&name)?;
        let source = Arc::new(Source::new(spec));
        prepared(source.clone())?;
        if let Err(error) = self.schema.register_table(name.clone(), Arc::new(SourceTable::new(source.clone()))) {
            source.stop();
            return Err(error.into());
        }
        self.registry.write().unwrap_or_else(|p| p.into_inner()).insert(name.clone(), source.clone());
        sources.insert(name, RegisteredSource { file, source: source.clone() });
        Ok(source)
    }

    /// CREATE SOURCE: starts it and persists its declaration. Returns false when it
    /// exists and `if_not_exists` is set.
    pub async fn create_source(&self, def: SourceDef, if_not_exists: bool) -> WsResult<bool> {
        let name = def.name.clone();
        if !self.claim(&name, true, if_not_exists)? {
            return Ok(false);
        }
        let file = self.dir.join(format!("{}.toml", files::file_stem(&name)));
        if file.exists() {
            return Err(WsError::new(
                sqlstate::DUPLICATE_TABLE,
                format!("relation \"{name}\" already exists (catalog file {})", file.display()),
            ));
        }
        self.register_source(def.clone(), file.clone()).await?;
        if let Err(error) = files::write_atomic(&file, &CatalogFile::single_source(def)) {
            // Not persisted means not created: a restart would not see it.
            self.forget_source(&name).await;
            return Err(error);
        }
        Ok(true)
    }

    async fn forget_source(&self, name: &str) -> Option<Arc<Source>> {
        let registered = self.sources.lock().await.remove(name)?;
        self.registry.write().unwrap_or_else(|p| p.into_inner()).remove(name);
        let _ = self.schema.deregister_table(name);
        registered.source.stop();
        Some(registered.source)
    }

    /// DROP SOURCE: stops it, removes its declaration and its stored events. Views reading
    /// it are refused unless `cascade`, as for tables. Returns None when there was no
    /// such source, else the views dropped along.
    pub async fn drop_source(&self, name: &str, cascade: bool) -> WsResult<Option<Vec<String>>> {
        let _ddl = self.tables.lock().await;
        let file = match self.sources.lock().await.get(name) {
            Some(registered) => registered.file.clone(),
            None => {
                if self.schema.table_exist(name) {
                    return Err(WsError::new(
                        sqlstate::WRONG_OBJECT_TYPE,
                        format!("\"{name}\" is not a source; use DROP TABLE"),
                    ));
                }
                return Ok(None);
            }
        };
        self.check_writable(&file, name)?;
        let readers: Vec<String> = self
            .views
            .lock()
            .await
            .values()
            .filter(|r| r.view.sources.iter().any(|s| s == name))
            .map(|r| r.view.name().to_string())
            .collect();
        let sink_readers: Vec<String> = self
            .sinks
            .lock()
            .await
            .values()
            .filter(|r| r.sink.owns_view && r.sink.view.sources.iter().any(|s| s == name))
            .map(|r| r.sink.name().to_string())
            .collect();
        let readers: Vec<String> = readers.into_iter().chain(sink_readers).collect();
        if !readers.is_empty() {
            return Err(dependent("source", name, &readers));
        }
        let cascaded = self.drop_dependent_views("source", name, cascade).await?;
        files::remove_declaration(&file, name)?;
        if let Some(source) = self.forget_source(name).await {
            self.source_connectors.delete_storage(&source.spec, &self.data_dir);
        }
        Ok(Some(cascaded))
    }

    pub fn sink_connectors(&self) -> &crate::connectors::sinks::SinkConnectors {
        &self.sink_connectors
    }

    pub async fn source(&self, name: &str) -> Option<Arc<Source>> {
        self.sources.lock().await.get(name).map(|r| r.source.clone())
    }

    /// Stops every sink, view and source (server shutdown).
    pub async fn stop_sources(&self) {
        for registered in self.sinks.lock().await.values() {
            registered.sink.stop();
        }
        for registered in self.views.lock().await.values() {
            registered.view.stop();
        }
        for registered in self.sources.lock().await.values() {
            registered.source.stop();
        }
    }

    /// Refuses (42501, as PostgreSQL refuses DDL on a system catalog) a change to what a
    /// file of the read-only declared catalog declares: the server never writes there.
    fn check_writable(&self, file: &Path, name: &str) -> WsResult<()> {
        match &self.read_only_dir {
            Some(dir) if file.parent() == Some(dir.as_path()) => Err(WsError::new(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!(
                    "permission denied: \"{name}\" is declared in {}, in the catalog directory the server reads \
                     but never writes (--catalog-dir); DDL persists in {} (--ddl-dir). Edit that file while \
                     the server is stopped to change it",
                    file.display(),
                    self.dir.display()
                ),
            )),
            _ => Ok(()),
        }
    }

    fn object_file(&self, name: &str) -> WsResult<PathBuf> {
        let file = self.dir.join(format!("{}.toml", files::file_stem(name)));
        if file.exists() {
            return Err(WsError::new(
                sqlstate::DUPLICATE_TABLE,
                format!("relation \"{name}\" already exists (catalog file {})", file.display()),
            ));
        }
        Ok(file)
    }

    /// Registers a started view as a relation. With `file` None (CREATE), its declaration
    /// is persisted too, all or nothing: registered, then written, and unregistered again
    /// if the write fails; at start-up it comes from `file`. On error the view is stopped.
    pub async fn register_view(
        &self,
        view: Arc<MaterializedView>,
        reads: Vec<String>,
        file: Option<PathBuf>,
    ) -> WsResult<()> {
        let registered = async {
            let _ddl = self.tables.lock().await;
            let name = view.name().to_string();
            self.check_name_free(&name)?;
            let (file, persist) = match file {
                Some(file) => (file, false),
                None => (self.object_file(&name)?, true),
            };
            self.schema.register_table(name.clone(), Arc::new(ViewTable::new(view.clone())))?;
            self.view_registry.write().unwrap_or_else(|p| p.into_inner()).insert(name.clone(), view.clone());
            self.views
                .lock()
                .await
                .insert(name.clone(), RegisteredView { file: file.clone(), view: view.clone(), reads });
            if persist && let Err(error) = files::write_atomic(&file, &CatalogFile::single_view(view.def.clone())) {
                // Not persisted means not created: a restart would not see it.
                self.views.lock().await.remove(&name);
                self.view_registry.write().unwrap_or_else(|p| p.into_inner()).remove(&name);
                let _ = self.schema.deregister_table(&name);
                return Err(error);
            }
            Ok(())
        }
        .await;
        if registered.is_err() {
            view.stop();
        }
        registered
    }

    pub async fn view(&self, name: &str) -> Option<Arc<MaterializedView>> {
        self.views.lock().await.get(name).map(|r| r.view.clone())
    }

    /// DROP MATERIALIZED VIEW. Returns false when there was no such view.
    pub async fn drop_view(&self, name: &str) -> WsResult<bool> {
        let _ddl = self.tables.lock().await;
        let mut views = self.views.lock().await;
        let Some(registered) = views.get(name) else {
            if self.schema.table_exist(name) {
                return Err(WsError::new(
                    sqlstate::WRONG_OBJECT_TYPE,
                    format!("\"{name}\" is not a materialized view"),
                ));
            }
            return Ok(false);
        };
        self.check_writable(&registered.file, name)?;
        let mut readers: Vec<String> = views
            .values()
            .filter(|r| r.reads.iter().any(|read| read == name))
            .map(|r| r.view.name().to_string())
            .collect();
        readers.extend(
            self.sinks
                .lock()
                .await
                .values()
                .filter(|r| {
                    (!r.sink.owns_view && r.sink.view.name() == name) || r.reads.iter().any(|read| read == name)
                })
                .map(|r| r.sink.name().to_string()),
        );
        readers.extend(self.plain_views.dependents_of(&[name.to_string()]).iter().map(|view| view.def.name.clone()));
        if !readers.is_empty() {
            return Err(dependent("materialized view", name, &readers));
        }
        files::remove_declaration(&registered.file, name)?;
        let registered = views.remove(name).expect("checked above");
        self.view_registry.write().unwrap_or_else(|p| p.into_inner()).remove(name);
        let _ = self.schema.deregister_table(name);
        registered.view.stop();
        Ok(true)
    }

    /// The plain views, for pg_catalog, information_schema and `pg_get_viewdef`.
    pub fn plain_views(&self) -> &PlainViews {
        &self.plain_views
    }

    /// Registers a plain view whose query the session has planned (`view.schema`,
    /// `view.reads`). With `file` None (CREATE) its declaration is persisted too, all or
    /// nothing; at start-up it comes from `file`. `or_replace` replaces a view of that
    /// name as PostgreSQL does: only a view, keeping its columns' names and types (new
    /// ones may follow them), and never so that it would read itself. Returns whether it
    /// replaced one.
    pub async fn register_plain_view(
        &self,
        view: PlainView,
        file: Option<PathBuf>,
        or_replace: bool,
    ) -> WsResult<bool> {
        let _ddl = self.tables.lock().await;
        let name = view.def.name.clone();
        if self.plain_views.reaches(&view.reads, &name) {
            return Err(WsError::new(
                sqlstate::INVALID_OBJECT_DEFINITION,
                format!("infinite recursion detected in rules for relation \"{name}\""),
            )
            .with_detail(format!("view \"{name}\" would read itself through the views it reads")));
        }
        let mut files = self.plain_view_files.lock().await;
        if or_replace && let Some(old) = self.plain_views.get(&name) {
            let path =
                files.get(&name).cloned().ok_or_else(|| WsError::internal(format!("view {name} has no file")))?;
            self.check_writable(&path, &name)?;
            check_replacement(&old, &view)?;
            files::replace_plain_view_declaration(&path, &view.def)?;
            let view = Arc::new(view);
            let _ = self.schema.deregister_table(&name)?;
            self.schema.register_table(name.clone(), Arc::new(ViewProvider::new(view.clone())))?;
            self.plain_views.insert(view);
            return Ok(true);
        }
        if or_replace && let Some(holder) = self.holder(&name) {
            if holder.is_relation() {
                return Err(WsError::new(sqlstate::WRONG_OBJECT_TYPE, format!("\"{name}\" is not a view")));
            }
            return Err(duplicate(&name, holder));
        }
        self.check_name_free(&name)?;
        let (path, persist) = match file {
            Some(file) => (file, false),
            None => (self.object_file(&name)?, true),
        };
        let view = Arc::new(view);
        self.schema.register_table(name.clone(), Arc::new(ViewProvider::new(view.clone())))?;
        if persist && let Err(error) = files::write_atomic(&path, &CatalogFile::single_plain_view(view.def.clone())) {
            // Not persisted means not created: a restart would not see it.
            let _ = self.schema.deregister_table(&name);
            return Err(error);
        }
        self.plain_views.insert(view);
        files.insert(name, path);
        Ok(false)
    }

    /// DROP VIEW of several views at once (views among them may read each other). Each
    /// name must be a plain view (42809 naming the right DROP otherwise); missing ones are
    /// 42P01, or returned in `skipped` with IF EXISTS. Views reading them are refused
    /// (2BP01) unless `cascade`, which drops them too.
    pub async fn drop_plain_views(&self, names: &[String], if_exists: bool, cascade: bool) -> WsResult<Dropped> {
        let _ddl = self.tables.lock().await;
        let mut dropped = Dropped::default();
        let mut present = Vec::new();
        for name in names {
            if self.plain_views.contains(name) {
                if !present.contains(name) {
                    present.push(name.clone());
                }
                continue;
            }
            match self.holder(name) {
                Some(holder) if holder.is_relation() => return Err(not_a_view(name, holder)),
                _ if if_exists => dropped.skipped.push(name.clone()),
                _ => {
                    return Err(WsError::new(sqlstate::UNDEFINED_TABLE, format!("view \"{name}\" does not exist")));
                }
            }
        }
        if present.is_empty() {
            return Ok(dropped);
        }
        let cascaded = self.views_to_cascade("view", &present, cascade).await?;
        let mut files = self.plain_view_files.lock().await;
        for name in present.iter().chain(cascaded.iter()) {
            let path = files.get(name).ok_or_else(|| WsError::internal(format!("view {name} has no file")))?;
            self.check_writable(path, name)?;
        }
        for name in &present {
            let readers = self.readers_of(name).await;
            if !readers.is_empty() {
                return Err(dependent("view", name, &readers));
            }
        }
        for name in cascaded.iter().chain(present.iter()) {
            self.remove_plain_view(&mut files, name)?;
        }
        dropped.cascaded = cascaded;
        Ok(dropped)
    }

    /// Forgets one plain view and removes its declaration (the DDL lock is held).
    fn remove_plain_view(&self, files: &mut BTreeMap<String, PathBuf>, name: &str) -> WsResult<()> {
        let path = files.get(name).cloned().ok_or_else(|| WsError::internal(format!("view {name} has no file")))?;
        files::remove_declaration(&path, name)?;
        files.remove(name);
        self.plain_views.remove(name);
        let _ = self.schema.deregister_table(name);
        Ok(())
    }

    /// The plain views that read `names` (directly or through each other), which a DROP of
    /// `names` must take along: refused with PostgreSQL's 2BP01, its DETAIL naming each
    /// dependency and its HINT, unless `cascade`. A materialized view or sink reading one
    /// of them is never dropped along (2BP01 either way). The DDL lock is held.
    async fn views_to_cascade(&self, kind: &str, names: &[String], cascade: bool) -> WsResult<Vec<String>> {
        let dependents = self.plain_views.dependents_of(names);
        if dependents.is_empty() {
            return Ok(Vec::new());
        }
        if !cascade {
            // PostgreSQL names the first dropped object that has dependents.
            let first =
                names.iter().find(|name| dependents.iter().any(|view| view.reads.contains(name))).unwrap_or(&names[0]);
            let mut seen: Vec<&str> = names.iter().map(String::as_str).collect();
            let mut lines = Vec::new();
            for view in &dependents {
                if let Some(read) = view.reads.iter().find(|read| seen.contains(&read.as_str())) {
                    let read_kind = if names.contains(read) { kind } else { "view" };
                    lines.push(format!("view {} depends on {read_kind} {read}", view.def.name));
                }
                seen.push(&view.def.name);
            }
            return Err(WsError::new(
                sqlstate::DEPENDENT_OBJECTS_STILL_EXIST,
                format!("cannot drop {kind} {first} because other objects depend on it"),
            )
            .with_detail(lines.join("\n"))
            .with_hint("Use DROP ... CASCADE to drop the dependent objects too."));
        }
        for view in &dependents {
            let readers = self.readers_of(&view.def.name).await;
            if !readers.is_empty() {
                return Err(dependent("view", &view.def.name, &readers));
            }
        }
        Ok(dependents.iter().map(|view| view.def.name.clone()).collect())
    }

    /// Registers a started sink, persisting its declaration when `file` is None (CREATE),
    /// all or nothing as for views. On error the sink is stopped.
    pub async fn register_sink(&self, sink: Arc<Sink>, reads: Vec<String>, file: Option<PathBuf>) -> WsResult<()> {
        let registered = async {
            let _ddl = self.tables.lock().await;
            let name = sink.name().to_string();
            self.check_name_free(&name)?;
            let (file, persist) = match file {
                Some(file) => (file, false),
                None => (self.object_file(&name)?, true),
            };
            self.sink_registry.write().unwrap_or_else(|p| p.into_inner()).insert(name.clone(), sink.clone());
            self.sinks
                .lock()
                .await
                .insert(name.clone(), RegisteredSink { file: file.clone(), sink: sink.clone(), reads });
            if persist && let Err(error) = files::write_atomic(&file, &CatalogFile::single_sink(sink.def.clone())) {
                self.sinks.lock().await.remove(&name);
                self.sink_registry.write().unwrap_or_else(|p| p.into_inner()).remove(&name);
                return Err(error);
            }
            Ok(())
        }
        .await;
        if registered.is_err() {
            sink.stop();
        }
        registered
    }

    /// DROP SINK. Returns false when there was no such sink.
    pub async fn drop_sink(&self, name: &str) -> WsResult<bool> {
        let _ddl = self.tables.lock().await;
        let mut sinks = self.sinks.lock().await;
        let Some(registered) = sinks.get(name) else {
            return Ok(false);
        };
        self.check_writable(&registered.file, name)?;
        files::remove_declaration(&registered.file, name)?;
        let registered = sinks.remove(name).expect("checked above");
        self.sink_registry.write().unwrap_or_else(|p| p.into_inner()).remove(name);
        registered.sink.stop();
        Ok(true)
    }

    async fn register(&self, def: TableDef, file: PathBuf, state: &SessionState) -> WsResult<()> {
        let mut tables = self.tables.lock().await;
        self.check_name_free(&def.name)?;
        let (provider, lake) = self.open(&def, state).await?;
        if !def.indexes.is_empty() && lake.is_none() {
            return Err(WsError::unsupported("indexes need a Delta table"));
        }
        let mut indexed = Vec::with_capacity(def.indexes.len());
        for (position, index) in def.indexes.iter().enumerate() {
            self.check_name_free(&index.name)?;
            let repeated = def.indexes[..position].iter().any(|earlier| earlier.name == index.name);
            if repeated || index.name == def.name {
                return Err(duplicate(&index.name, Holder::Index));
            }
            indexed.push((index.clone(), attnums(&provider.schema(), index)?));
        }
        self.schema.register_table(def.name.clone(), provider)?;
        for (index, attnums) in indexed {
            self.indexes.insert(&def.name, index, attnums);
        }
        tables.insert(def.name.clone(), Registered { def, file, lake });
        Ok(())
    }

    /// CREATE INDEX: Z-orders the table's files by the index columns, then records the
    /// index with its table. Returns false when it exists and `if_not_exists` is set.
    pub async fn create_index(&self, table: &str, index: IndexDef, if_not_exists: bool) -> WsResult<bool> {
        let mut tables = self.tables.lock().await;
        if !self.claim(&index.name, true, if_not_exists)? {
            return Ok(false);
        }
        let Some(registered) = tables.get_mut(table) else {
            if self.sources.lock().await.contains_key(table) {
                return Err(WsError::unsupported(format!("\"{table}\" is a source; indexes need a Delta table")));
            }
            return Err(WsError::new(sqlstate::UNDEFINED_TABLE, format!("relation \"{table}\" does not exist")));
        };
        let Some(lake) = registered.lake.clone() else {
            return Err(WsError::unsupported(format!(
                "\"{table}\" is a {:?} table; indexes need a Delta table",
                registered.def.format
            )));
        };
        self.check_writable(&registered.file, table)?;
        let attnums = attnums(&lake.schema(), &index)?;
        let columns: Vec<String> = index.columns.iter().map(|c| c.name.clone()).collect();
        lake.zorder(&columns).await?;
        let mut def = registered.def.clone();
        def.indexes.push(index.clone());
        files::replace_table_declaration(&registered.file, &def)?;
        registered.def = def;
        self.indexes.insert(table, index, attnums);
        Ok(true)
    }

    /// DROP INDEX: forgets the index (the table keeps its file layout). Returns false
    /// when there was no such index.
    pub async fn drop_index(&self, name: &str) -> WsResult<bool> {
        let mut tables = self.tables.lock().await;
        let Some(entry) = self.indexes.get(name) else {
            if tables.contains_key(name) || self.sources.lock().await.contains_key(name) {
                return Err(WsError::new(sqlstate::WRONG_OBJECT_TYPE, format!("\"{name}\" is not an index")));
            }
            return Ok(false);
        };
        let registered = tables
            .get_mut(&entry.table)
            .ok_or_else(|| WsError::internal(format!("index {name} outlived its table {}", entry.table)))?;
        self.check_writable(&registered.file, &entry.table)?;
        let mut def = registered.def.clone();
        def.indexes.retain(|index| index.name != name);
        files::replace_table_declaration(&registered.file, &def)?;
        registered.def = def;
        self.indexes.remove(name);
        Ok(true)
    }

    async fn open(
        &self,
        def: &TableDef,
        state: &SessionState,
    ) -> WsResult<(Arc<dyn TableProvider>, Option<Arc<LakeTable>>)> {
        let url = location_url(&def.location, &self.data_dir)?;
        match def.format {
            Format::Delta => {
                let options: HashMap<String, String> =
                    def.options.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                let lake = Arc::new(LakeTable::open(&def.name, url, options, self.lake_staleness_ms).await?);
                Ok((lake.clone(), Some(lake)))
            }
            format => Ok((listing_table(format, url.as_str(), &def.options, state).await?, None)),
        }
    }

    /// Adds a table created over the wire and persists its declaration.
    pub async fn create(&self, def: TableDef, state: &SessionState) -> WsResult<()> {
        let file = self.dir.join(format!("{}.toml", files::file_stem(&def.name)));
        if file.exists() {
            return Err(WsError::new(
                sqlstate::DUPLICATE_TABLE,
                format!("relation \"{}\" already exists (catalog file {})", def.name, file.display()),
            ));
        }
        self.register(def.clone(), file.clone(), state).await?;
        let written = files::write_atomic(&file, &CatalogFile::single(def.clone()));
        if let Err(error) = written {
            // Not persisted means not created: a restart would not see it.
            self.forget(&def.name).await;
            return Err(error);
        }
        Ok(())
    }

    /// Registers a managed Delta table that the caller has just created on disk.
    pub async fn adopt_lake(&self, def: TableDef, lake: Arc<LakeTable>) -> WsResult<()> {
        assert_eq!(def.format, Format::Delta, "only Delta tables are adopted");
        let mut tables = self.tables.lock().await;
        self.check_name_free(&def.name)?;
        let file = self.object_file(&def.name)?;
        // All or nothing: registered, then written, and unregistered if the write fails.
        self.schema.register_table(def.name.clone(), lake.clone())?;
        if let Err(error) = files::write_atomic(&file, &CatalogFile::single(def.clone())) {
            let _ = self.schema.deregister_table(&def.name);
            return Err(error);
        }
        tables.insert(def.name.clone(), Registered { def, file, lake: Some(lake) });
        Ok(())
    }

    async fn forget(&self, name: &str) {
        let mut tables = self.tables.lock().await;
        tables.remove(name);
        // Deregistering an absent table is not an error worth reporting here.
        let _ = self.schema.deregister_table(name);
    }

    /// Drops a table: unregisters it, removes its declaration and, when managed, its data.
    /// Views reading it are refused (2BP01) unless `cascade`, which drops them first.
    /// Returns None when there was no such table, else the views dropped along.
    pub async fn drop_table(&self, name: &str, cascade: bool) -> WsResult<Option<Vec<String>>> {
        let mut tables = self.tables.lock().await;
        let Some(registered) = tables.get(name) else {
            if self.sources.lock().await.contains_key(name) {
                return Err(WsError::new(
                    sqlstate::WRONG_OBJECT_TYPE,
                    format!("\"{name}\" is a source; use DROP SOURCE"),
                ));
            }
            if self.plain_views.contains(name) {
                return Err(WsError::new(sqlstate::WRONG_OBJECT_TYPE, format!("\"{name}\" is not a table"))
                    .with_hint("Use DROP VIEW to remove a view."));
            }
            return Ok(None);
        };
        self.check_writable(&registered.file, name)?;
        let readers = self.readers_of(name).await;
        if !readers.is_empty() {
            return Err(dependent("table", name, &readers));
        }
        let cascaded = self.drop_dependent_views("table", name, cascade).await?;
        files::remove_declaration(&registered.file, name)?;
        let registered = tables.remove(name).expect("entry checked above");
        self.schema.deregister_table(name)?;
        self.indexes.remove_table(name);
        if registered.def.managed {
            let url = location_url(&registered.def.location, &self.data_dir)?;
            if let Ok(path) = url.to_file_path() {
                // The declaration is gone, so the table is dropped; leftover files only
                // cost disk, and are reported rather than failing the statement.
                if let Err(error) = std::fs::remove_dir_all(&path) {
                    tracing::warn!(table = name, path = %path.display(), %error, "could not delete managed table files");
                }
            }
        }
        Ok(Some(cascaded))
    }

    /// The views reading `name` (a table or source about to be dropped), dropped when
    /// `cascade`, else refused: see [`Catalog::views_to_cascade`]. The DDL lock is held.
    async fn drop_dependent_views(&self, kind: &str, name: &str, cascade: bool) -> WsResult<Vec<String>> {
        let names = [name.to_string()];
        let cascaded = self.views_to_cascade(kind, &names, cascade).await?;
        let mut files = self.plain_view_files.lock().await;
        for view in &cascaded {
            let path = files.get(view).ok_or_else(|| WsError::internal(format!("view {view} has no file")))?;
            self.check_writable(path, view)?;
        }
        for view in &cascaded {
            self.remove_plain_view(&mut files, view)?;
        }
        Ok(cascaded)
    }

    /// Views and sinks whose queries read relation `name`.
    async fn readers_of(&self, name: &str) -> Vec<String> {
        let reads = |list: &[String]| list.iter().any(|read| read == name);
        let mut readers: Vec<String> =
            self.views.lock().await.values().filter(|r| reads(&r.reads)).map(|r| r.view.name().to_string()).collect();
        readers.extend(self.sinks.lock().await.values().filter(|r| reads(&r.reads)).map(|r| r.sink.name().to_string()));
        readers
    }

    pub async fn lake_table(&self, name: &str) -> Option<Arc<LakeTable>> {
        self.tables.lock().await.get(name).and_then(|registered| registered.lake.clone())
    }

    pub async fn exists(&self, name: &str) -> bool {
        self.indexes.get(name).is_some()
            || self.tables.lock().await.contains_key(name)
            || self.sources.lock().await.contains_key(name)
            || self.views.lock().await.contains_key(name)
            || self.schema.table_exist(name)
    }

    /// Who holds `name` now. Synchronous (the registries have their own locks), so the
    /// registering functions call it under the DDL lock, where the check is authoritative.
    pub fn holder(&self, name: &str) -> Option<Holder> {
        if self.indexes.get(name).is_some() {
            Some(Holder::Index)
        } else if self.registry.read().unwrap_or_else(|p| p.into_inner()).contains_key(name) {
            Some(Holder::Source)
        } else if self.plain_views.contains(name) {
            Some(Holder::PlainView)
        } else if self.view_registry.read().unwrap_or_else(|p| p.into_inner()).contains_key(name) {
            Some(Holder::View)
        } else if self.sink_registry.read().unwrap_or_else(|p| p.into_inner()).contains_key(name) {
            Some(Holder::Sink)
        } else if self.schema.table_exist(name) {
            Some(Holder::Table)
        } else {
            None
        }
    }

    /// Refuses a name for a new object: held by anything (42P07/42710), or one a catalog
    /// file could not hold, which the next start would refuse (0A000).
    pub fn check_name_free(&self, name: &str) -> WsResult<()> {
        files::check_object_name(name).map_err(WsError::unsupported)?;
        match self.holder(name) {
            Some(holder) => Err(duplicate(name, holder)),
            None => Ok(()),
        }
    }

    /// The check of a CREATE before its work starts: Ok(true) to go on, Ok(false) to skip
    /// (`IF NOT EXISTS` and the name is held in the same class, relation or sink, as in
    /// PostgreSQL, where IF NOT EXISTS skips only for a name of the namespace it creates
    /// in). The registering function checks again under the DDL lock.
    pub fn claim(&self, name: &str, relation: bool, if_not_exists: bool) -> WsResult<bool> {
        match self.holder(name) {
            Some(holder) if if_not_exists && holder.is_relation() == relation => Ok(false),
            Some(holder) => Err(duplicate(name, holder)),
            None => self.check_name_free(name).map(|()| true),
        }
    }

    /// Location for a new managed table: `<data dir>/tables/<name>`, or `<name>-<n>` when a
    /// table renamed since holds that directory (a rename keeps the data where it is).
    pub async fn managed_location(&self, name: &str) -> WsResult<String> {
        let tables = self.tables.lock().await;
        let held = |location: &str| tables.values().any(|registered| registered.def.location == location);
        let stem = files::file_stem(name);
        for attempt in 0..MANAGED_LOCATION_ATTEMPTS_MAX {
            let location = if attempt == 0 { format!("tables/{stem}") } else { format!("tables/{stem}-{attempt}") };
            if !held(&location) {
                return Ok(location);
            }
        }
        Err(WsError::new(
            sqlstate::PROGRAM_LIMIT_EXCEEDED,
            format!("no free directory for table {name} under tables/ after {MANAGED_LOCATION_ATTEMPTS_MAX} tries"),
        ))
    }

    /// `ALTER TABLE old RENAME TO new`. The declaration moves to the new name's catalog
    /// file (written first, then the old one's removed: a crash between leaves both, which
    /// the next start refuses by path and line rather than losing the table); the data
    /// stays at its location, which the declaration records. Refused (2BP01) while
    /// materialized views or sinks read the table, as they hold it by name. Returns false
    /// when there is no such table.
    pub async fn rename_table(&self, old: &str, new: &str) -> WsResult<bool> {
        let mut tables = self.tables.lock().await;
        let Some(registered) = tables.get(old) else {
            return Ok(false);
        };
        self.check_writable(&registered.file, old)?;
        let readers = self.readers_of(old).await;
        if !readers.is_empty() {
            return Err(WsError::new(
                sqlstate::DEPENDENT_OBJECTS_STILL_EXIST,
                format!("cannot rename table {old} because {} read it; drop them first", readers.join(", ")),
            ));
        }
        self.check_name_free(new)?;
        let file = self.object_file(new)?;
        let mut def = registered.def.clone();
        def.name = new.to_string();
        files::write_atomic(&file, &CatalogFile::single(def.clone()))?;
        if let Err(error) = files::remove_declaration(&registered.file, old) {
            if let Err(cleanup) = std::fs::remove_file(&file) {
                tracing::warn!(file = %file.display(), %cleanup, "could not remove the new declaration of a failed rename");
            }
            return Err(error);
        }
        let registered = tables.remove(old).expect("entry checked above");
        let provider = self.schema.deregister_table(old)?.expect("a registered table has a provider");
        self.schema.register_table(new.to_string(), provider.clone())?;
        self.indexes.remove_table(old);
        for index in &def.indexes {
            self.indexes.insert(new, index.clone(), attnums(&provider.schema(), index)?);
        }
        tables.insert(new.to_string(), Registered { def, file, lake: registered.lake });
        Ok(true)
    }
}

/// What a DROP removed besides what it named, and what IF EXISTS skipped.
#[derive(Debug, Default)]
pub struct Dropped {
    /// Views dropped along by CASCADE, nearest first.
    pub cascaded: Vec<String>,
    /// Names that did not exist (IF EXISTS).
    pub skipped: Vec<String>,
}

/// 42809 for DROP VIEW of another kind of relation, with PostgreSQL's hint.
fn not_a_view(name: &str, holder: Holder) -> WsError {
    let drop = match holder {
        Holder::Table => "DROP TABLE to remove a table",
        Holder::Source => "DROP SOURCE to remove a source",
        Holder::View => "DROP MATERIALIZED VIEW to remove a materialized view",
        Holder::Index => "DROP INDEX to remove an index",
        Holder::PlainView => "DROP VIEW to remove a view",
        Holder::Sink => "DROP SINK to remove a sink",
    };
    WsError::new(sqlstate::WRONG_OBJECT_TYPE, format!("\"{name}\" is not a view")).with_hint(format!("Use {drop}."))
}

/// PostgreSQL's rule for CREATE OR REPLACE VIEW (checkViewTupleDesc): the new query keeps
/// every column of the old one, in place, with its name and type; it may add columns
/// after them.
fn check_replacement(old: &PlainView, new: &PlainView) -> WsResult<()> {
    let (old_fields, new_fields) = (old.schema.fields(), new.schema.fields());
    if new_fields.len() < old_fields.len() {
        return Err(WsError::new(sqlstate::INVALID_TABLE_DEFINITION, "cannot drop columns from view"));
    }
    for (was, now) in old_fields.iter().zip(new_fields.iter()) {
        if was.name() != now.name() {
            return Err(WsError::new(
                sqlstate::INVALID_TABLE_DEFINITION,
                format!("cannot change name of view column \"{}\" to \"{}\"", was.name(), now.name()),
            )
            .with_hint("Use ALTER VIEW ... RENAME COLUMN ... to change name of view column instead."));
        }
        if was.data_type() != now.data_type() {
            let name =
                |field: &datafusion::arrow::datatypes::Field| information_schema::pg_type_names(field.data_type()).0;
            return Err(WsError::new(
                sqlstate::INVALID_TABLE_DEFINITION,
                format!(
                    "cannot change data type of view column \"{}\" from {} to {}",
                    was.name(),
                    name(was),
                    name(now)
                ),
            ));
        }
    }
    Ok(())
}

/// `pg_attribute.attnum` of each index column; 42703 for a column the table lacks.
fn attnums(schema: &datafusion::arrow::datatypes::Schema, index: &IndexDef) -> WsResult<Vec<i16>> {
    index
        .columns
        .iter()
        .map(|column| {
            let position = schema.index_of(&column.name).map_err(|_| {
                WsError::new(sqlstate::UNDEFINED_COLUMN, format!("column \"{}\" does not exist", column.name))
            })?;
            Ok(i16::try_from(position + 1).expect("tables have fewer than 32767 columns"))
        })
        .collect()
}

/// A Parquet/CSV/JSON table through DataFusion's own listing table.
async fn listing_table(
    format: Format,
    location: &str,
    options: &BTreeMap<String, String>,
    state: &SessionState,
) -> WsResult<Arc<dyn TableProvider>> {
    let option = |key: &str| options.get(key).or_else(|| options.get(&format!("format.{key}"))).map(String::as_str);
    let (file_format, extension): (Arc<dyn FileFormat>, &str) = match format {
        Format::Parquet => (Arc::new(ParquetFormat::default()), ".parquet"),
        Format::Csv => {
            let has_header = option("has_header").is_none_or(|v| v.eq_ignore_ascii_case("true"));
            let mut csv = CsvFormat::default().with_has_header(has_header);
            if let Some(delimiter) = option("delimiter") {
                let &[byte] = delimiter.as_bytes() else {
                    return Err(WsError::new(
                        sqlstate::INVALID_PARAMETER_VALUE,
                        format!("csv delimiter must be one byte, got {delimiter:?}"),
                    ));
                };
                csv = csv.with_delimiter(byte);
            }
            (Arc::new(csv), ".csv")
        }
        Format::Json => (Arc::new(JsonFormat::default()), ".json"),
        Format::Delta => unreachable!("Delta tables are opened by lake/"),
    };
    let extension = option("file_extension").unwrap_or(extension);
    let table_url = ListingTableUrl::parse(location)?;
    let listing = ListingOptions::new(file_format).with_file_extension(extension);
    let config = ListingTableConfig::new(table_url).with_listing_options(listing).infer_schema(state).await?;
    Ok(Arc::new(ListingTable::try_new(config)?))
}

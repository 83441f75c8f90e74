//! Plain SQL views (`CREATE [OR REPLACE] VIEW v [(col, ...)] AS query`): their catalog
//! declaration, the relation that stands for one in DataFusion's schema, and the registry
//! pg_catalog, information_schema and `pg_get_viewdef` list them from.
//!
//! A view holds no rows and no plan: its query is kept as the SQL text the user wrote and
//! planned again each time a statement reads it, so a view over a Delta table sees the
//! table's latest commit, and one over a source the events it retains now. The session
//! expands each scan of a view into that fresh plan before the statement runs (see
//! session/views.rs), so the optimizer sees through it (filters reach the lake scan);
//! [`ViewProvider::scan`] plans it the same way for the few paths that reach a view's scan
//! without that expansion (a `TableProvider` asked directly).
//!
//! The view's columns (names and types) are fixed when it is created, as in PostgreSQL:
//! a later plan of the query must give the same types, or reading the view fails with
//! 42P16 and asks for `CREATE OR REPLACE VIEW`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::ExecutionPlan;
use serde::{Deserialize, Serialize};

use crate::error::{WsError, WsResult, sqlstate};

/// Views nested in views, at most: deeper is refused with 54001 (cycles are refused at
/// CREATE, so this bounds only long chains, and the planning work of one statement).
pub const VIEW_NESTING_MAX: usize = 32;

/// `[[view]]` in a catalog file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlainViewDef {
    pub name: String,
    /// The query as the user wrote it; planned again whenever the view is read.
    pub query: String,
    /// `CREATE VIEW v (a, b)`: names for the query's first columns, by position.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
}

/// A registered view: its declaration, its columns as created, and the relations its
/// query reads directly (tables, sources, views, materialized views of our schema).
#[derive(Debug)]
pub struct PlainView {
    pub def: PlainViewDef,
    pub schema: SchemaRef,
    pub reads: Vec<String>,
}

impl PlainView {
    /// The view's definition as `pg_get_viewdef` and `pg_views.definition` show it: the
    /// query as written (PostgreSQL prints its own deparsed form instead).
    pub fn definition(&self) -> &str {
        &self.def.query
    }
}

/// The views by name, shared (synchronously readable) with pg_catalog, information_schema
/// and `pg_get_viewdef`; changed only under the catalog's DDL lock. It also remembers the
/// OID datafusion-pg-catalog gave each view in `pg_class` (learnt whenever pg_class is
/// scanned, see pg_catalog.rs), as `pg_get_viewdef(oid)` is asked by OID.
#[derive(Debug, Clone, Default)]
pub struct PlainViews {
    views: Arc<RwLock<BTreeMap<String, Arc<PlainView>>>>,
    oids: Arc<RwLock<HashMap<i64, String>>>,
}

impl PlainViews {
    pub fn get(&self, name: &str) -> Option<Arc<PlainView>> {
        self.views.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<PlainView>> {
        self.views.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.views.read().unwrap_or_else(|p| p.into_inner()).contains_key(name)
    }

    pub(super) fn insert(&self, view: Arc<PlainView>) {
        self.views.write().unwrap_or_else(|p| p.into_inner()).insert(view.def.name.clone(), view);
    }

    pub(super) fn remove(&self, name: &str) -> Option<Arc<PlainView>> {
        self.views.write().unwrap_or_else(|p| p.into_inner()).remove(name)
    }

    /// Records the pg_class OIDs of the views among `rows` (relation name, OID) of our
    /// schema; the map is replaced, so dropped views are forgotten.
    pub(super) fn learn_oids(&self, rows: impl Iterator<Item = (String, i64)>) {
        let views = self.views.read().unwrap_or_else(|p| p.into_inner());
        let known: HashMap<i64, String> =
            rows.filter(|(name, _)| views.contains_key(name)).map(|(n, o)| (o, n)).collect();
        *self.oids.write().unwrap_or_else(|p| p.into_inner()) = known;
    }

    /// The view with this pg_class OID, if it is one.
    pub fn by_oid(&self, oid: i64) -> Option<Arc<PlainView>> {
        let name = self.oids.read().unwrap_or_else(|p| p.into_inner()).get(&oid).cloned()?;
        self.get(&name)
    }

    /// Every view that reads `name`, directly or through other views, nearest first
    /// (PostgreSQL's order in "drop cascades to ..."), each once.
    pub fn dependents_of(&self, names: &[String]) -> Vec<Arc<PlainView>> {
        let views = self.views.read().unwrap_or_else(|p| p.into_inner());
        let mut found: Vec<Arc<PlainView>> = Vec::new();
        let mut frontier: Vec<String> = names.to_vec();
        while let Some(read) = frontier.first().cloned() {
            frontier.remove(0);
            for view in views.values() {
                let new = !found.iter().any(|f| f.def.name == view.def.name) && !names.contains(&view.def.name);
                if new && view.reads.contains(&read) {
                    found.push(view.clone());
                    frontier.push(view.def.name.clone());
                }
            }
        }
        found
    }

    /// Whether a definition reading `reads` reads `target`, directly or through views.
    pub fn reaches(&self, reads: &[String], target: &str) -> bool {
        let views = self.views.read().unwrap_or_else(|p| p.into_inner());
        let mut seen: Vec<String> = Vec::new();
        let mut frontier: Vec<String> = reads.to_vec();
        while let Some(name) = frontier.pop() {
            if name == target {
                return true;
            }
            if seen.contains(&name) {
                continue;
            }
            if let Some(view) = views.get(&name) {
                frontier.extend(view.reads.iter().cloned());
            }
            seen.push(name);
        }
        false
    }
}

/// 42P16 for a view whose query no longer gives the columns it was created with.
pub fn changed_columns(view: &str, detail: String) -> WsError {
    WsError::new(
        sqlstate::INVALID_TABLE_DEFINITION,
        format!("the query of view \"{view}\" no longer returns the columns the view was created with: {detail}"),
    )
    .with_hint("Recreate the view with CREATE OR REPLACE VIEW, or drop it.")
}

/// Checks a fresh plan of a view's query against the view's columns, and renames its
/// output to them (by position, as the column list of CREATE VIEW does).
pub fn conform(view: &PlainView, plan: LogicalPlan) -> WsResult<LogicalPlan> {
    let fields = plan.schema().fields().clone();
    let expected = view.schema.fields();
    if fields.len() != expected.len() {
        return Err(changed_columns(
            &view.def.name,
            format!("it returns {} columns, the view has {}", fields.len(), expected.len()),
        ));
    }
    let mut exprs = Vec::with_capacity(fields.len());
    for (index, (field, wanted)) in fields.iter().zip(expected.iter()).enumerate() {
        if field.data_type() != wanted.data_type() {
            return Err(changed_columns(
                &view.def.name,
                format!(
                    "column {} (\"{}\") is now of type {}, the view's is {}",
                    index + 1,
                    wanted.name(),
                    field.data_type(),
                    wanted.data_type()
                ),
            ));
        }
        let (qualifier, _) = plan.schema().qualified_field(index);
        let column = datafusion::common::Column::new(qualifier.cloned(), field.name());
        exprs.push(Expr::Column(column).alias(wanted.name()));
    }
    Ok(LogicalPlanBuilder::from(plan).project(exprs)?.build()?)
}

/// The relation a view is in DataFusion's schema.
#[derive(Debug)]
pub struct ViewProvider {
    view: Arc<PlainView>,
}

impl ViewProvider {
    pub fn new(view: Arc<PlainView>) -> ViewProvider {
        ViewProvider { view }
    }

    pub fn view(&self) -> &Arc<PlainView> {
        &self.view
    }
}

#[async_trait]
impl TableProvider for ViewProvider {
    fn schema(&self) -> SchemaRef {
        self.view.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn get_table_definition(&self) -> Option<&str> {
        Some(self.view.definition())
    }

    fn get_logical_plan(&'_ self) -> Option<Cow<'_, LogicalPlan>> {
        // Planned per statement, with the reading session's planners (see the module doc).
        None
    }

    /// Plans the view's query with the reading session's state, for scans that were not
    /// expanded before planning (statements always are).
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let state = state.as_any().downcast_ref::<SessionState>().ok_or_else(|| {
            DataFusionError::Internal(format!("view \"{}\" is read by a session of another kind", self.view.def.name))
        })?;
        let external = |error: WsError| DataFusionError::External(Box::new(error));
        let statement = single_query(&self.view.def.query).map_err(external)?;
        let plan = state.statement_to_plan(statement).await?;
        let plan = conform(&self.view, plan).map_err(external)?;
        let mut builder = LogicalPlanBuilder::from(plan);
        if let Some(filter) = filters.iter().cloned().reduce(|a, b| a.and(b)) {
            builder = builder.filter(filter)?;
        }
        if let Some(projection) = projection {
            let schema = builder.schema().clone();
            let columns: Vec<Expr> = projection
                .iter()
                .map(|&i| Expr::Column(datafusion::common::Column::from(schema.qualified_field(i))))
                .collect();
            builder = builder.project(columns)?;
        }
        if let Some(limit) = limit {
            builder = builder.limit(0, Some(limit))?;
        }
        state.create_physical_plan(&builder.build()?).await
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        _input: Arc<dyn ExecutionPlan>,
        _insert_op: datafusion::logical_expr::dml::InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::External(Box::new(WsError::unsupported(format!(
            "cannot insert into view \"{}\": views are not updatable here; insert into the relations it reads",
            self.view.def.name
        )))))
    }
}

/// Parses a view's stored query: one query, nothing else.
pub fn single_query(query: &str) -> WsResult<datafusion::sql::parser::Statement> {
    use datafusion::sql::parser::Statement;
    use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
    let mut statements = crate::sql::parse(query)?;
    match (statements.pop(), statements.is_empty()) {
        (Some(crate::sql::WsStatement::Sql(statement @ Statement::Statement(_))), true) if matches!(&statement, Statement::Statement(inner) if matches!(inner.as_ref(), SqlStatement::Query(_))) => {
            Ok(statement)
        }
        _ => Err(WsError::syntax("a view's body is one query (SELECT, VALUES, WITH ...)")),
    }
}

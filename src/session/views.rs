//! Plain views in a session: CREATE [OR REPLACE] VIEW and DROP VIEW, and the expansion
//! of every view a statement reads into a fresh plan of its query.
//!
//! A statement is planned with each view as a scan of its [`ViewProvider`]; before it
//! runs, [`Session::expand_views`] replaces each such scan by the view's query planned
//! again now, with this session's planners (time travel, window functions, correlated
//! subqueries), aliased to the view's name so the statement's column references still
//! resolve. The optimizer then sees the whole statement: filters over a view reach the
//! Delta scan beneath it, and a view over a Delta table reads its latest commit. A
//! materialized view reading a view is planned the same way, so its incremental plan sees
//! the sources under the view.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, TableScan};
use futures::future::BoxFuture;

use super::{CommandTag, Outcome, Session};
use crate::catalog::{CATALOG_NAME, PlainView, PlainViewDef, SCHEMA_NAME, VIEW_NESTING_MAX, ViewProvider};
use crate::error::{WsError, WsResult, sqlstate};

/// The view a scan reads, when it is a scan of a plain view.
fn view_of(scan: &TableScan) -> Option<Arc<PlainView>> {
    let provider = source_as_provider(&scan.source).ok()?;
    provider.downcast_ref::<ViewProvider>().map(|provider| provider.view().clone())
}

/// The plain views a plan scans (subqueries included), each once.
fn views_scanned(plan: &LogicalPlan) -> Vec<Arc<PlainView>> {
    let mut views: Vec<Arc<PlainView>> = Vec::new();
    // The closure never fails.
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Some(view) = view_of(scan)
            && !views.iter().any(|known| known.def.name == view.def.name)
        {
            views.push(view);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    views
}

/// The relations of our schema a plan scans by name (tables, sources, views, materialized
/// views): what a view depends on. System views (`watershed.sources`) and pg_catalog are
/// not dropped by anyone, so they are not dependencies.
fn relations_read(plan: &LogicalPlan) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let ours = scan.table_name.schema().is_none_or(|schema| schema == SCHEMA_NAME)
                && scan.table_name.catalog().is_none_or(|catalog| catalog == CATALOG_NAME);
            if ours {
                names.insert(scan.table_name.table().to_string());
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    names.into_iter().collect()
}

impl Session {
    /// Replaces every scan of a plain view in `plan` by a fresh plan of the view's query
    /// (see the module doc). Views inside views are expanded too, at most
    /// [`VIEW_NESTING_MAX`] deep (54001 beyond).
    pub(super) async fn expand_views(&self, plan: LogicalPlan) -> WsResult<LogicalPlan> {
        self.expand_views_at(plan, 0).await
    }

    fn expand_views_at(&self, plan: LogicalPlan, depth: usize) -> BoxFuture<'_, WsResult<LogicalPlan>> {
        Box::pin(async move {
            let views = views_scanned(&plan);
            if views.is_empty() {
                return Ok(plan);
            }
            if depth >= VIEW_NESTING_MAX {
                return Err(WsError::new(
                    sqlstate::STATEMENT_TOO_COMPLEX,
                    format!("views are nested more than {VIEW_NESTING_MAX} deep (view \"{}\")", views[0].def.name),
                ));
            }
            let mut bodies: HashMap<String, LogicalPlan> = HashMap::with_capacity(views.len());
            for view in views {
                let body = self.view_body(&view, depth + 1).await?;
                bodies.insert(view.def.name.clone(), body);
            }
            let expanded = plan.transform_up_with_subqueries(|node| {
                let LogicalPlan::TableScan(scan) = &node else {
                    // Its input may have been replaced: the view's schema says every column
                    // is nullable, the query's plan may know better.
                    return Ok(Transformed::yes(node.recompute_schema()?));
                };
                let Some(view) = view_of(scan) else { return Ok(Transformed::no(node)) };
                let body = bodies.get(&view.def.name).cloned().ok_or_else(|| {
                    datafusion::error::DataFusionError::Internal(format!("view {} was not planned", view.def.name))
                })?;
                let mut builder = LogicalPlanBuilder::from(body);
                if let Some(filter) = scan.filters.iter().cloned().reduce(Expr::and) {
                    builder = builder.filter(filter)?;
                }
                if let Some(projection) = &scan.projection {
                    let schema = builder.schema().clone();
                    let columns: Vec<Expr> = projection
                        .iter()
                        .map(|&i| Expr::Column(datafusion::common::Column::from(schema.qualified_field(i))))
                        .collect();
                    builder = builder.project(columns)?;
                }
                if scan.fetch.is_some() {
                    builder = builder.limit(0, scan.fetch)?;
                }
                Ok(Transformed::yes(builder.alias(scan.table_name.clone())?.build()?))
            })?;
            Ok(expanded.data)
        })
    }

    /// The view's query planned now, its own views expanded, with the view's columns.
    async fn view_body(&self, view: &PlainView, depth: usize) -> WsResult<LogicalPlan> {
        let statement = crate::catalog::single_query(&view.def.query)?;
        let plan = self.plan_query_unexpanded(statement).await?;
        let plan = self.expand_views_at(plan, depth).await?;
        crate::catalog::conform(view, plan)
    }

    /// Plans a view's definition (CREATE, and every start): its columns, named by the
    /// column list and then by the query (PostgreSQL's output names), and the relations
    /// it reads. Everything it reads must plan now, views inside included.
    pub(super) async fn plan_view(&self, def: PlainViewDef) -> WsResult<PlainView> {
        let statement = crate::catalog::single_query(&def.query)?;
        let plan = self.plan_query_unexpanded(statement).await?;
        if let Some(parameter) = plan.get_parameter_types()?.keys().next() {
            return Err(WsError::new(sqlstate::UNDEFINED_PARAMETER, format!("there is no parameter {parameter}")));
        }
        let reads = relations_read(&plan);
        let expanded = self.expand_views(plan.clone()).await?;
        self.ctx.state().optimize(&expanded)?;
        let fields = plan.schema().fields();
        if def.columns.len() > fields.len() {
            return Err(WsError::syntax("CREATE VIEW specifies more column names than columns"));
        }
        let mut columns: Vec<Field> = Vec::with_capacity(fields.len());
        for (index, field) in fields.iter().enumerate() {
            let name =
                def.columns.get(index).cloned().unwrap_or_else(|| crate::sql::display_name(field.name()).to_string());
            if columns.iter().any(|earlier| *earlier.name() == name) {
                return Err(WsError::new(
                    sqlstate::DUPLICATE_COLUMN,
                    format!("column \"{name}\" specified more than once"),
                ));
            }
            // As in PostgreSQL, a view's columns are nullable whatever its query says.
            columns.push(Field::new(name, field.data_type().clone(), true).with_metadata(field.metadata().clone()));
        }
        Ok(PlainView { def, schema: Arc::new(Schema::new(columns)), reads })
    }

    /// CREATE [OR REPLACE] VIEW.
    pub(super) async fn create_plain_view(&mut self, def: &PlainViewDef, or_replace: bool) -> WsResult<Outcome> {
        crate::catalog::check_object_name(&def.name).map_err(WsError::unsupported)?;
        let catalog = self.engine.catalog().clone();
        // A taken name is refused before the query is planned, as PostgreSQL does.
        if let Some(holder) = catalog.holder(&def.name)
            && !(or_replace && holder == crate::catalog::Holder::PlainView)
        {
            return Err(match holder {
                _ if or_replace && holder.is_relation() => {
                    WsError::new(sqlstate::WRONG_OBJECT_TYPE, format!("\"{}\" is not a view", def.name))
                }
                holder => crate::catalog::duplicate(&def.name, holder),
            });
        }
        let view = self.plan_view(def.clone()).await?;
        catalog.register_plain_view(view, None, or_replace).await?;
        Ok(Outcome::Done(CommandTag::new("CREATE VIEW")))
    }

    /// DROP VIEW [IF EXISTS] v [, ...] [CASCADE | RESTRICT].
    pub(super) async fn drop_plain_views(
        &mut self,
        names: &[String],
        if_exists: bool,
        cascade: bool,
    ) -> WsResult<Outcome> {
        let dropped = self.engine.catalog().drop_plain_views(names, if_exists, cascade).await?;
        for name in &dropped.skipped {
            self.notice("NOTICE", sqlstate::SUCCESSFUL_COMPLETION, format!("view \"{name}\" does not exist, skipping"));
        }
        self.cascade_notice(&dropped.cascaded);
        Ok(Outcome::Done(CommandTag::new("DROP VIEW")))
    }

    /// PostgreSQL's NOTICE for the views a DROP ... CASCADE took along.
    pub(super) fn cascade_notice(&mut self, cascaded: &[String]) {
        let lines: Vec<String> = cascaded.iter().map(|name| format!("drop cascades to view {name}")).collect();
        match lines.as_slice() {
            [] => {}
            [one] => self.notice("NOTICE", sqlstate::SUCCESSFUL_COMPLETION, one.clone()),
            many => self.notice_with_detail(
                "NOTICE",
                sqlstate::SUCCESSFUL_COMPLETION,
                format!("drop cascades to {} other objects", many.len()),
                Some(many.join("\n")),
            ),
        }
    }
}

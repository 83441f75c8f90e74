//! Continuous statements of a session: CREATE/DROP MATERIALIZED VIEW, SUBSCRIBE (through
//! COPY TO STDOUT or a cursor), CREATE/DROP SINK, and LISTEN/UNLISTEN/NOTIFY. Planning a
//! view's query needs this session's planners (window functions, time travel, pg
//! functions); running it is stream/continuous/, delivering it connectors/sinks/.

use std::sync::Arc;

use datafusion::execution::SessionStateBuilder;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast as sqlast;
use tokio::sync::broadcast::error::RecvError;

use super::{CommandTag, Outcome, Session, copy};
use crate::connectors::sinks::{self, Sink, SinkDef};
use crate::error::{WsError, WsResult, sqlstate};
use crate::sql::{SinkInput, StreamStatement, Subscribe, WsStatement};
use crate::stream::continuous::{ContinuousPlan, Emit, MaterializedView, ViewDef, ViewLimits};
use datafusion::arrow::datatypes::Schema;

/// A continuous statement, classified at prepare time.
#[derive(Debug, Clone)]
pub enum Command {
    CreateView {
        name: String,
        query: String,
        emit: Option<Emit>,
        if_not_exists: bool,
    },
    DropView {
        names: Vec<String>,
        if_exists: bool,
    },
    /// Rows of a view as they are emitted: COPY TO STDOUT with `copy`, or a cursor.
    Subscribe {
        subscribe: Subscribe,
        copy: Option<Box<sqlast::Statement>>,
        cursor: Option<(String, bool)>,
    },
    CreateSink {
        def: SinkDef,
        if_not_exists: bool,
    },
    DropSink {
        names: Vec<String>,
        if_exists: bool,
    },
    Listen(String),
    /// None: `UNLISTEN *`.
    Unlisten(Option<String>),
    Notify {
        channel: String,
        payload: String,
    },
}

/// LISTEN, UNLISTEN and NOTIFY as sqlparser reads them.
pub fn classify_sql(statement: &Statement) -> Option<Command> {
    let Statement::Statement(inner) = statement else { return None };
    let name = |ident: &sqlast::Ident| match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    };
    match inner.as_ref() {
        sqlast::Statement::LISTEN { channel } => Some(Command::Listen(name(channel))),
        sqlast::Statement::UNLISTEN { channel } if channel.value == "*" => Some(Command::Unlisten(None)),
        sqlast::Statement::UNLISTEN { channel } => Some(Command::Unlisten(Some(name(channel)))),
        sqlast::Statement::NOTIFY { channel, payload } => {
            Some(Command::Notify { channel: name(channel), payload: payload.clone().unwrap_or_default() })
        }
        _ => None,
    }
}

/// The relations a plan reads (its table scans, subqueries included), by name.
pub(super) fn relations_read(plan: &datafusion::logical_expr::LogicalPlan) -> Vec<String> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let mut names = std::collections::BTreeSet::new();
    // The closure never fails.
    let _ = plan.apply_with_subqueries(|node| {
        if let datafusion::logical_expr::LogicalPlan::TableScan(scan) = node {
            names.insert(scan.table_name.table().to_string());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    names.into_iter().collect()
}

/// Classifies the continuous forms of [`StreamStatement`]; None for source statements.
pub fn classify(statement: &StreamStatement) -> WsResult<Option<Command>> {
    Ok(Some(match statement.clone() {
        StreamStatement::CreateView { name, query, emit, if_not_exists } => {
            Command::CreateView { name, query, emit, if_not_exists }
        }
        StreamStatement::DropView { names, if_exists } => Command::DropView { names, if_exists },
        StreamStatement::Subscribe(_) => {
            return Err(WsError::unsupported(
                "SUBSCRIBE runs inside COPY (SUBSCRIBE TO v) TO STDOUT (psql) or DECLARE c CURSOR FOR SUBSCRIBE TO v \
                 and FETCH (drivers): a plain result set would never end",
            ));
        }
        StreamStatement::CopySubscribe { subscribe, copy } => {
            Command::Subscribe { subscribe, copy: Some(copy), cursor: None }
        }
        StreamStatement::DeclareSubscribe { name, hold, subscribe } => {
            Command::Subscribe { subscribe, copy: None, cursor: Some((name, hold)) }
        }
        StreamStatement::CreateSink { name, input, options, if_not_exists } => {
            Command::CreateSink { def: SinkDef { name, input, options }, if_not_exists }
        }
        StreamStatement::DropSink { names, if_exists } => Command::DropSink { names, if_exists },
        StreamStatement::CreateSource { .. } | StreamStatement::DropSource { .. } | StreamStatement::ShowSources => {
            return Ok(None);
        }
    }))
}

impl Session {
    /// Plans `query` (SQL text) for incremental execution. With `emit` None, the shape
    /// decides: windowed aggregates and plain pipelines emit on window close (final rows
    /// once), aggregates without windows on update.
    /// Also returns the relations the query reads, which DROP must not take away while
    /// it runs (the next start would plan it again, and fail).
    async fn continuous_plan(&self, query: &str, emit: Option<Emit>) -> WsResult<(ContinuousPlan, Emit, Vec<String>)> {
        let statements = crate::sql::parse(query)?;
        let [WsStatement::Sql(statement @ Statement::Statement(_))] = statements.as_slice() else {
            return Err(WsError::syntax("a materialized view's body is one query"));
        };
        if !matches!(statement, Statement::Statement(inner) if matches!(inner.as_ref(), sqlast::Statement::Query(_))) {
            return Err(WsError::syntax("a materialized view's body is a query (SELECT ...)"));
        }
        // What it reads by name, plain views included (which DROP VIEW must then refuse),
        // before their scans are expanded into the sources and tables beneath them.
        let plan = self.plan_query_unexpanded(statement.clone()).await?;
        let reads = relations_read(&plan);
        let plan = self.expand_views(plan).await?;
        // Single-partition plans: a step's input is one batch list, and the view's task
        // is one of many running at once.
        let state = SessionStateBuilder::new_from_existing(self.ctx.state())
            .with_config(self.ctx.state().config().clone().with_target_partitions(1))
            .build();
        let plan = state.analyzer().execute_and_check(plan, state.config_options(), |_, _| {})?;
        let extents = match statement {
            Statement::Statement(inner) => crate::sql::windows::window_extents(inner),
            _ => Ok(None),
        };
        let emit = emit.unwrap_or_else(|| crate::stream::continuous::plan::default_emit(&plan));
        Ok((ContinuousPlan::new(plan, &state, emit, extents).await?, emit, reads))
    }

    fn view_limits(&self) -> ViewLimits {
        self.engine.config().limits.views
    }

    /// Plans and starts a view from its definition (at start-up), with the relations it
    /// reads.
    pub(super) async fn start_view(&self, def: ViewDef) -> WsResult<(Arc<MaterializedView>, Vec<String>)> {
        let (plan, emit, reads) = self.continuous_plan(&def.query, Some(def.emit)).await?;
        assert_eq!(emit, def.emit, "an explicit emit mode is kept");
        Ok((MaterializedView::start(def, plan, self.view_limits()), reads))
    }

    /// Plans and starts a sink from its definition (CREATE, and at start-up), with the
    /// relations it reads.
    pub(super) async fn start_sink(&self, def: SinkDef) -> WsResult<(Arc<Sink>, Vec<String>)> {
        let catalog = self.engine.catalog().clone();
        let (view, owns_view, reads) = match &def.input {
            SinkInput::View(name) => {
                let view = catalog.view(name).await.ok_or_else(|| {
                    WsError::new(sqlstate::UNDEFINED_TABLE, format!("materialized view \"{name}\" does not exist"))
                })?;
                (view, false, vec![name.clone()])
            }
            SinkInput::Query(query) => {
                let (plan, emit, reads) = self.continuous_plan(query, None).await?;
                let view_def = ViewDef { name: format!("sink {}", def.name), query: query.clone(), emit };
                (MaterializedView::start(view_def, plan, self.view_limits()), true, reads)
            }
        };
        let connectors = self.engine.catalog().sink_connectors();
        let prepared = match async { connectors.get(def.connector())?.prepare(&def, &view, self).await }.await {
            Ok(prepared) => prepared,
            Err(error) => {
                if owns_view {
                    view.stop();
                }
                return Err(error);
            }
        };
        Ok((Sink::start(def, view, owns_view, prepared), reads))
    }

    /// A subscription as a record-batch stream: the snapshot first (if asked), then
    /// each emission; ends with 53400 if the reader falls too far behind.
    fn subscription(&self, subscribe: &Subscribe, view: &MaterializedView) -> WsResult<SendableRecordBatchStream> {
        let (rows, _, _, receiver) = view.store.subscribe(subscribe.snapshot)?;
        let schema = view.store.subscription_schema();
        let limit = self.view_limits().subscriber_buffer_max;
        let initial = futures::stream::iter(rows.into_iter().map(Ok));
        let following = futures::stream::unfold(Some(receiver), move |receiver| async move {
            let mut receiver = receiver?;
            loop {
                match receiver.recv().await {
                    Ok(emission) if emission.batch.num_rows() == 0 => continue,
                    Ok(emission) => return Some((Ok(emission.batch.clone()), Some(receiver))),
                    Err(RecvError::Closed) => return None,
                    Err(RecvError::Lagged(missed)) => {
                        let error = WsError::new(
                            sqlstate::CONFIGURATION_LIMIT_EXCEEDED,
                            format!(
                                "subscription ended: the reader fell {missed} emissions behind \
                                 (subscriber_buffer_max = {limit})"
                            ),
                        );
                        return Some((Err(datafusion::error::DataFusionError::External(Box::new(error))), None));
                    }
                }
            }
        });
        let stream = futures::StreamExt::chain(initial, following);
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    pub(super) async fn execute_continuous(&mut self, command: &Command) -> WsResult<Outcome> {
        let catalog = self.engine.catalog().clone();
        match command {
            Command::CreateView { name, query, emit, if_not_exists } => {
                // Before the view is planned and started; register_view checks again.
                if !catalog.claim(name, true, *if_not_exists)? {
                    self.already_exists("relation", name, sqlstate::DUPLICATE_TABLE);
                    return Ok(Outcome::Done(CommandTag::new("CREATE MATERIALIZED VIEW")));
                }
                let (plan, emit, reads) = self.continuous_plan(query, *emit).await?;
                let def = ViewDef { name: name.clone(), query: query.clone(), emit };
                let view = MaterializedView::start(def, plan, self.view_limits());
                catalog.register_view(view, reads, None).await?;
                Ok(Outcome::Done(CommandTag::new("CREATE MATERIALIZED VIEW")))
            }
            Command::DropView { names, if_exists } => {
                for name in names {
                    if !catalog.drop_view(name).await? && !if_exists {
                        return Err(WsError::new(
                            sqlstate::UNDEFINED_TABLE,
                            format!("materialized view \"{name}\" does not exist"),
                        ));
                    }
                }
                Ok(Outcome::Done(CommandTag::new("DROP MATERIALIZED VIEW")))
            }
            Command::Subscribe { subscribe, copy, cursor } => {
                let view = catalog.view(&subscribe.view).await.ok_or_else(|| {
                    WsError::new(
                        sqlstate::UNDEFINED_TABLE,
                        format!("materialized view \"{}\" does not exist", subscribe.view),
                    )
                })?;
                let stream = self.subscription(subscribe, &view)?;
                if let Some(copy) = copy {
                    let names: Vec<String> = stream.schema().fields().iter().map(|f| f.name().clone()).collect();
                    let options = copy::copy_to_options(copy, &names)?;
                    return Ok(Outcome::CopyOut { options, stream });
                }
                let (name, hold) = cursor.as_ref().expect("a subscription goes to COPY or a cursor");
                if !hold && !self.transaction.in_block() {
                    return Err(WsError::new(
                        super::compat::NO_ACTIVE_SQL_TRANSACTION,
                        "DECLARE CURSOR can only be used in transaction blocks",
                    ));
                }
                self.cursors.declare_live(name, stream, *hold)?;
                Ok(Outcome::Done(CommandTag::new("DECLARE CURSOR")))
            }
            Command::CreateSink { def, if_not_exists } => {
                // Before the sink starts (and creates its lake table); register_sink checks again.
                if !catalog.claim(&def.name, false, *if_not_exists)? {
                    self.already_exists("sink", &def.name, sqlstate::DUPLICATE_OBJECT);
                    return Ok(Outcome::Done(CommandTag::new("CREATE SINK")));
                }
                let (sink, reads) = self.start_sink(def.clone()).await?;
                catalog.register_sink(sink, reads, None).await?;
                Ok(Outcome::Done(CommandTag::new("CREATE SINK")))
            }
            Command::DropSink { names, if_exists } => {
                for name in names {
                    if !catalog.drop_sink(name).await? && !if_exists {
                        return Err(WsError::new(
                            sqlstate::UNDEFINED_OBJECT,
                            format!("sink \"{name}\" does not exist"),
                        ));
                    }
                }
                Ok(Outcome::Done(CommandTag::new("DROP SINK")))
            }
            Command::Listen(channel) => {
                self.engine.notify_hub().listen(self.id, channel);
                Ok(Outcome::Done(CommandTag::new("LISTEN")))
            }
            Command::Unlisten(channel) => {
                self.engine.notify_hub().unlisten(self.id, channel.as_deref());
                Ok(Outcome::Done(CommandTag::new("UNLISTEN")))
            }
            Command::Notify { channel, payload } => {
                self.engine.notify_hub().notify(channel, payload.clone(), self.id as i32)?;
                Ok(Outcome::Done(CommandTag::new("NOTIFY")))
            }
        }
    }
}

/// What sink connectors may ask of the server, answered by the session that runs CREATE
/// SINK (or starts the catalog's sinks).
#[async_trait::async_trait]
impl sinks::SinkHost for Session {
    fn data_dir(&self) -> &std::path::Path {
        self.engine.catalog().data_dir()
    }

    fn notify_hub(&self) -> &sinks::notify::NotifyHub {
        self.engine.notify_hub()
    }

    async fn lake_table(&self, table: &str, schema: &Schema) -> WsResult<Arc<crate::lake::LakeTable>> {
        super::ddl::lake_table_for_sink(self, table, schema).await
    }

    async fn delta_at_location(
        &self,
        sink: &str,
        location: &str,
        schema: &Schema,
    ) -> WsResult<Arc<crate::lake::LakeTable>> {
        super::ddl::delta_at_location(self, sink, location, schema).await
    }
}

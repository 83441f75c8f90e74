//! COPY without the wire: what a `COPY` statement means and how its rows move.
//!
//! - `COPY table|(query) TO STDOUT`: planned here into an ordinary query plan; server/
//!   encodes its Arrow batches in the text, CSV or binary COPY format as they stream.
//! - `COPY table FROM STDIN`: [`CopyIn`] decodes the client's data (text or CSV, see
//!   [`decode`]) into batches of the table's schema and feeds them through a bounded
//!   channel into an `INSERT` plan over the table's own `TableProvider::insert_into`, the
//!   very path `INSERT INTO t SELECT` takes. Any provider that accepts inserts (Delta
//!   tables, ingest sources) therefore accepts COPY, the whole COPY is one insert (one
//!   Delta commit: all rows or none), and memory stays at a few batches whatever the size
//!   of the input.
//! - Server files and programs (`TO 'file'`, `FROM PROGRAM`) are refused with 0A000:
//!   clients send and receive the data (psql's `\copy`).

pub mod decode;

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::TableReference;
use datafusion::datasource::{TableProvider, TableType, provider_as_source};
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::{SendableRecordBatchStream, execute_stream};
use datafusion::sql::parser::Statement;
use datafusion::sql::planner::object_name_to_table_reference;
use datafusion::sql::sqlparser::ast::{
    self as sqlast, CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Ident,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{CommandTag, Engine, Kind, Session, cancellable, count_rows};
use crate::error::{WsError, WsResult, sqlstate};
use decode::Decoder;

/// Decoded batches queued between the socket and the insert. With the batch being
/// decoded and the one being written, COPY FROM holds at most this plus two batches.
const QUEUE_BATCHES: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Csv,
    Binary,
}

/// COPY's format options, validated as PostgreSQL validates them.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    pub format: CopyFormat,
    pub delimiter: u8,
    pub null: String,
    pub header: bool,
    pub quote: u8,
    pub escape: u8,
    /// CSV `FORCE_QUOTE (cols)` of COPY TO, one flag per output column (empty: none).
    pub force_quote: Vec<bool>,
}

impl CopyOptions {
    pub fn defaults(format: CopyFormat) -> CopyOptions {
        let csv = format == CopyFormat::Csv;
        CopyOptions {
            format,
            delimiter: if csv { b',' } else { b'\t' },
            null: if csv { String::new() } else { "\\N".to_string() },
            header: false,
            quote: b'"',
            escape: b'"',
            force_quote: Vec::new(),
        }
    }
}

/// The options as written, before defaults and checks.
#[derive(Default)]
struct Written {
    format: Option<CopyFormat>,
    delimiter: Option<char>,
    null: Option<String>,
    header: Option<bool>,
    quote: Option<char>,
    escape: Option<char>,
    force_quote: Option<Vec<Ident>>,
}

fn redundant() -> WsError {
    WsError::syntax("conflicting or redundant options")
}

fn set_once<T>(slot: &mut Option<T>, value: T) -> WsResult<()> {
    if slot.is_some() {
        return Err(redundant());
    }
    *slot = Some(value);
    Ok(())
}

fn invalid(message: impl Into<String>) -> WsError {
    WsError::new(sqlstate::INVALID_PARAMETER_VALUE, message)
}

fn one_byte(what: &str, c: char) -> WsResult<u8> {
    if !c.is_ascii() {
        return Err(WsError::unsupported(format!("COPY {what} must be a single one-byte character")));
    }
    Ok(c as u8)
}

fn parse_options(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> WsResult<Written> {
    let mut w = Written::default();
    for option in options {
        match option {
            CopyOption::Format(name) => {
                let format = match name.value.to_lowercase().as_str() {
                    "text" => CopyFormat::Text,
                    "csv" => CopyFormat::Csv,
                    "binary" => CopyFormat::Binary,
                    other => return Err(invalid(format!("COPY format \"{other}\" not recognized"))),
                };
                set_once(&mut w.format, format)?;
            }
            CopyOption::Delimiter(c) => set_once(&mut w.delimiter, *c)?,
            CopyOption::Null(text) => set_once(&mut w.null, text.clone())?,
            CopyOption::Header(on) => set_once(&mut w.header, *on)?,
            CopyOption::Quote(c) => set_once(&mut w.quote, *c)?,
            CopyOption::Escape(c) => set_once(&mut w.escape, *c)?,
            CopyOption::ForceQuote(columns) => set_once(&mut w.force_quote, columns.clone())?,
            CopyOption::Encoding(name) => {
                let name = name.to_lowercase().replace(['-', '_'], "");
                if name != "utf8" {
                    return Err(WsError::unsupported(format!("COPY encoding {name}: only UTF8 is supported")));
                }
            }
            CopyOption::Freeze(false) => {}
            CopyOption::Freeze(true) => return Err(WsError::unsupported("COPY FREEZE is not supported")),
            CopyOption::ForceNotNull(_) | CopyOption::ForceNull(_) => {
                return Err(WsError::unsupported(format!("COPY option {option} is not supported")));
            }
        }
    }
    for option in legacy {
        match option {
            CopyLegacyOption::Binary => set_once(&mut w.format, CopyFormat::Binary)?,
            CopyLegacyOption::Delimiter(c) => set_once(&mut w.delimiter, *c)?,
            CopyLegacyOption::Null(text) => set_once(&mut w.null, text.clone())?,
            CopyLegacyOption::Header => set_once(&mut w.header, true)?,
            CopyLegacyOption::Csv(csv) => {
                set_once(&mut w.format, CopyFormat::Csv)?;
                for option in csv {
                    match option {
                        CopyLegacyCsvOption::Header => set_once(&mut w.header, true)?,
                        CopyLegacyCsvOption::Quote(c) => set_once(&mut w.quote, *c)?,
                        CopyLegacyCsvOption::Escape(c) => set_once(&mut w.escape, *c)?,
                        CopyLegacyCsvOption::ForceQuote(columns) => set_once(&mut w.force_quote, columns.clone())?,
                        CopyLegacyCsvOption::ForceNotNull(_) => {
                            return Err(WsError::unsupported("COPY FORCE NOT NULL is not supported"));
                        }
                    }
                }
            }
            other => return Err(WsError::unsupported(format!("COPY option {other} is not supported"))),
        }
    }
    Ok(w)
}

/// Applies PostgreSQL's defaults and checks (ProcessCopyOptions) to the written options.
/// `columns` are the names of the rows' columns, for FORCE_QUOTE.
/// The options of a `COPY ... TO STDOUT` statement for output columns `columns`.
pub fn copy_to_options(statement: &sqlast::Statement, columns: &[String]) -> WsResult<CopyOptions> {
    let sqlast::Statement::Copy { options, legacy_options, .. } = statement else {
        return Err(WsError::internal("copy_to_options takes a COPY statement"));
    };
    resolve_options(parse_options(options, legacy_options)?, true, columns)
}

fn resolve_options(w: Written, to: bool, columns: &[String]) -> WsResult<CopyOptions> {
    let format = w.format.unwrap_or(CopyFormat::Text);
    let mut options = CopyOptions::defaults(format);
    let csv = format == CopyFormat::Csv;
    if format == CopyFormat::Binary {
        for (given, name) in
            [(w.delimiter.is_some(), "DELIMITER"), (w.null.is_some(), "NULL"), (w.header.is_some(), "HEADER")]
        {
            if given {
                return Err(WsError::syntax(format!("cannot specify {name} in BINARY mode")));
            }
        }
    }
    for (given, name) in
        [(w.quote.is_some(), "QUOTE"), (w.escape.is_some(), "ESCAPE"), (w.force_quote.is_some(), "FORCE_QUOTE")]
    {
        if given && !csv {
            return Err(WsError::unsupported(format!("COPY {name} requires CSV mode")));
        }
    }
    if w.force_quote.is_some() && !to {
        return Err(WsError::unsupported("COPY FORCE_QUOTE only available using COPY TO"));
    }
    if let Some(c) = w.delimiter {
        options.delimiter = one_byte("delimiter", c)?;
    }
    if let Some(null) = w.null {
        options.null = null;
    }
    options.header = w.header.unwrap_or(false);
    if let Some(c) = w.quote {
        options.quote = one_byte("quote", c)?;
    }
    options.escape = match w.escape {
        Some(c) => one_byte("escape", c)?,
        None => options.quote,
    };
    let delimiter = options.delimiter;
    if delimiter == b'\n' || delimiter == b'\r' {
        return Err(invalid("COPY delimiter cannot be newline or carriage return"));
    }
    if options.null.contains(['\n', '\r']) {
        return Err(invalid("COPY null representation cannot use newline or carriage return"));
    }
    if format == CopyFormat::Text && b"\\.abcdefghijklmnopqrstuvwxyz0123456789".contains(&delimiter) {
        return Err(invalid(format!("COPY delimiter cannot be \"{}\"", delimiter as char)));
    }
    if csv && delimiter == options.quote {
        return Err(invalid("COPY delimiter and quote must be different"));
    }
    if format != CopyFormat::Binary && options.null.as_bytes().contains(&delimiter) {
        return Err(invalid("COPY delimiter must not appear in the NULL specification"));
    }
    if csv && options.null.as_bytes().contains(&options.quote) {
        return Err(invalid("CSV quote character must not appear in the NULL specification"));
    }
    if let Some(forced) = w.force_quote {
        options.force_quote = vec![false; columns.len()];
        for ident in forced {
            let name = fold(&ident);
            let index = columns.iter().position(|c| *c == name).ok_or_else(|| {
                WsError::new(
                    sqlstate::UNDEFINED_COLUMN,
                    format!("FORCE_QUOTE column \"{name}\" not referenced by COPY"),
                )
            })?;
            options.force_quote[index] = true;
        }
    }
    Ok(options)
}

fn fold(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// What a COPY FROM writes into, resolved at prepare time.
#[derive(Debug, Clone)]
pub struct CopyInTarget {
    table: TableReference,
    provider: Arc<dyn TableProvider>,
    /// Input column `i` fills table column `positions[i]`; the others get NULL.
    positions: Vec<usize>,
    pub options: CopyOptions,
}

impl CopyInTarget {
    pub fn columns(&self) -> usize {
        self.positions.len()
    }
}

/// True for `COPY ... FROM STDIN`, which takes over the connection until its data ends.
pub fn is_copy_from(statement: &Statement) -> bool {
    matches!(statement, Statement::Statement(inner)
        if matches!(inner.as_ref(), sqlast::Statement::Copy { to: false, .. }))
}

/// Classifies and plans a `COPY` statement; `None` for any other statement.
pub(super) async fn classify(session: &Session, statement: &Statement) -> WsResult<Option<Kind>> {
    let Statement::Statement(inner) = statement else {
        return Ok(None);
    };
    let sqlast::Statement::Copy { source, to, target, options, legacy_options, values } = inner.as_ref() else {
        return Ok(None);
    };
    match target {
        CopyTarget::Stdin | CopyTarget::Stdout => {}
        CopyTarget::File { .. } | CopyTarget::Program { .. } => {
            return Err(WsError::unsupported(format!(
                "COPY {} a server file or program is not supported; use COPY ... {} (psql: \\copy)",
                if *to { "to" } else { "from" },
                if *to { "TO STDOUT" } else { "FROM STDIN" },
            )));
        }
    }
    if matches!((to, target), (true, CopyTarget::Stdin) | (false, CopyTarget::Stdout)) {
        return Err(WsError::syntax(format!("COPY {} {target} is not valid", if *to { "TO" } else { "FROM" })));
    }
    if !values.is_empty() {
        // sqlparser reads whatever follows `FROM STDIN;` as inline data.
        return Err(WsError::unsupported("COPY FROM STDIN must be the last statement of its query string"));
    }
    let written = parse_options(options, legacy_options)?;
    let state = session.ctx.state();
    let normalize = state.config().options().sql_parser.enable_ident_normalization;
    if *to {
        let plan = match source {
            CopySource::Query(query) => {
                let query = Statement::Statement(Box::new(sqlast::Statement::Query(query.clone())));
                session.pin_time_travel(&query).await?;
                state.statement_to_plan(query).await?
            }
            CopySource::Table { table_name, columns } => {
                let table = object_name_to_table_reference(table_name.clone(), normalize)?;
                let frame = session.ctx.table(table.clone()).await.map_err(|error| missing(&table, error))?;
                let frame = if columns.is_empty() {
                    frame
                } else {
                    let names: Vec<String> = columns.iter().map(fold).collect();
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    frame.select_columns(&names)?
                };
                frame.into_unoptimized_plan()
            }
        };
        let plan = session.expand_views(plan).await?;
        if matches!(plan, LogicalPlan::Dml(_) | LogicalPlan::Ddl(_) | LogicalPlan::Copy(_)) {
            return Err(WsError::unsupported("COPY (query) TO STDOUT needs a query that returns rows"));
        }
        let names: Vec<String> = plan.schema().fields().iter().map(|f| f.name().clone()).collect();
        let options = resolve_options(written, true, &names)?;
        return Ok(Some(Kind::CopyTo { plan, options }));
    }
    let CopySource::Table { table_name, columns } = source else {
        unreachable!("sqlparser refuses COPY (query) FROM");
    };
    let table = object_name_to_table_reference(table_name.clone(), normalize)?;
    let provider = session.ctx.table_provider(table.clone()).await.map_err(|error| missing(&table, error))?;
    if provider.table_type() == TableType::View {
        return Err(WsError::new(sqlstate::WRONG_OBJECT_TYPE, format!("cannot copy to view \"{table}\"")));
    }
    let schema = provider.schema();
    let positions: Vec<usize> = if columns.is_empty() {
        (0..schema.fields().len()).collect()
    } else {
        let mut positions = Vec::with_capacity(columns.len());
        for ident in columns {
            let name = fold(ident);
            let position = schema.index_of(&name).map_err(|_| {
                WsError::new(
                    sqlstate::UNDEFINED_COLUMN,
                    format!("column \"{name}\" of relation \"{table}\" does not exist"),
                )
            })?;
            if positions.contains(&position) {
                return Err(WsError::new(
                    sqlstate::DUPLICATE_COLUMN,
                    format!("column \"{name}\" specified more than once"),
                ));
            }
            positions.push(position);
        }
        positions
    };
    for &position in &positions {
        let field = schema.field(position);
        if !decode::decodable(field.data_type()) {
            return Err(WsError::unsupported(format!(
                "COPY FROM into column \"{}\" of type {} is not supported",
                field.name(),
                field.data_type()
            )));
        }
    }
    let names: Vec<String> = positions.iter().map(|&p| schema.field(p).name().clone()).collect();
    let options = resolve_options(written, false, &names)?;
    if options.format == CopyFormat::Binary {
        return Err(WsError::unsupported("COPY FROM STDIN in binary format is not supported; use text or csv"));
    }
    Ok(Some(Kind::CopyFrom(CopyInTarget { table, provider, positions, options })))
}

/// DataFusion reports a missing table as a planning error; PostgreSQL's code is 42P01.
fn missing(table: &TableReference, error: DataFusionError) -> WsError {
    const MISSING: [&str; 3] = ["No table named", "not found", "failed to resolve schema"];
    match error.find_root() {
        DataFusionError::Plan(message) if MISSING.iter().any(|m| message.contains(m)) => {
            WsError::new(sqlstate::UNDEFINED_TABLE, format!("relation \"{table}\" does not exist"))
        }
        _ => WsError::from(error),
    }
}

/// What the insert plan reads: batches from the decoder, then either the end (CopyDone)
/// or nothing (the sender was dropped), which fails the insert so nothing commits.
enum Feed {
    Batch(RecordBatch),
    End,
}

/// The one partition of the insert's input: the receiving end of the feed channel.
struct FeedPartition {
    schema: SchemaRef,
    receiver: Mutex<Option<mpsc::Receiver<Feed>>>,
}

impl std::fmt::Debug for FeedPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedPartition").finish()
    }
}

impl PartitionStream for FeedPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let receiver = self.receiver.lock().expect("feed lock poisoned").take();
        // State `None` ends the stream: after the end marker or after one error.
        let stream = futures::stream::unfold(Some(receiver), |state| async move {
            let Some(mut receiver) = state? else {
                let error = WsError::internal("COPY input was read twice");
                return Some((Err(DataFusionError::External(Box::new(error))), None));
            };
            match receiver.recv().await {
                Some(Feed::Batch(batch)) => Some((Ok(batch), Some(Some(receiver)))),
                Some(Feed::End) => None,
                None => {
                    let error = WsError::new(sqlstate::QUERY_CANCELED, "COPY FROM STDIN ended before its CopyDone");
                    Some((Err(DataFusionError::External(Box::new(error))), None))
                }
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// A COPY FROM STDIN in progress: the decoder on this side, the insert on a task.
pub struct CopyIn {
    table: TableReference,
    engine: Engine,
    decoder: Decoder,
    sender: Option<mpsc::Sender<Feed>>,
    insert: Option<JoinHandle<WsResult<usize>>>,
    cancel: CancellationToken,
    format: CopyFormat,
    columns: usize,
}

impl Drop for CopyIn {
    fn drop(&mut self) {
        // Unfinished (error, CopyFail, lost connection): the insert must not commit.
        if let Some(insert) = self.insert.take() {
            insert.abort();
        }
    }
}

impl CopyIn {
    /// Plans the insert over the feed and starts it, waiting for the first batch.
    pub(super) async fn start(session: &Session, target: &CopyInTarget, cancel: CancellationToken) -> WsResult<CopyIn> {
        let limits = &session.engine.config().limits;
        let schema = target.provider.schema();
        let (sender, receiver) = mpsc::channel(QUEUE_BATCHES);
        let feed = FeedPartition { schema: schema.clone(), receiver: Mutex::new(Some(receiver)) };
        let partition: Arc<dyn PartitionStream> = Arc::new(feed);
        let source = StreamingTable::try_new(schema.clone(), vec![partition])?;
        let input = LogicalPlanBuilder::scan("copy_input", provider_as_source(Arc::new(source)), None)?.build()?;
        let plan = LogicalPlanBuilder::insert_into(
            input,
            target.table.clone(),
            provider_as_source(target.provider.clone()),
            InsertOp::Append,
        )?
        .build()?;
        let state = session.ctx.state();
        let physical = state.create_physical_plan(&plan).await?;
        let stream = cancellable(execute_stream(physical, session.ctx.task_ctx())?, cancel.clone(), session.deadline);
        let insert = tokio::spawn(count_rows(stream));
        let decoder = Decoder::new(
            &target.options,
            target.table.table(),
            schema,
            target.positions.clone(),
            limits.batch_rows_max,
            limits.copy_batch_bytes_max,
        );
        Ok(CopyIn {
            table: target.table.clone(),
            engine: session.engine.clone(),
            decoder,
            sender: Some(sender),
            insert: Some(insert),
            cancel,
            format: target.options.format,
            columns: target.positions.len(),
        })
    }

    pub fn format(&self) -> CopyFormat {
        self.format
    }

    /// Columns of each input row (what CopyInResponse announces).
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// Decodes one chunk of client data and hands complete batches to the insert,
    /// waiting while the insert is behind (this is what bounds memory).
    pub async fn data(&mut self, chunk: &[u8]) -> WsResult<()> {
        if self.cancel.is_cancelled() {
            return Err(WsError::canceled());
        }
        for batch in self.decoder.push(chunk)? {
            self.send(Feed::Batch(batch)).await?;
        }
        Ok(())
    }

    async fn send(&mut self, feed: Feed) -> WsResult<()> {
        let sender = self.sender.as_ref().expect("sender lives until finish");
        let sent = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Err(WsError::canceled()),
            sent = sender.send(feed) => sent,
        };
        if sent.is_err() {
            // The insert stopped reading: it failed; its error is the one to report.
            return Err(self
                .insert_result()
                .await
                .err()
                .unwrap_or_else(|| WsError::internal("COPY insert ended before its input")));
        }
        Ok(())
    }

    async fn insert_result(&mut self) -> WsResult<usize> {
        let mut insert = self.insert.take().expect("insert awaited once");
        let joined = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => {
                insert.abort();
                return Err(WsError::canceled());
            }
            joined = &mut insert => joined,
        };
        joined.map_err(|error| WsError::internal(format!("COPY insert task: {error}")))?
    }

    /// The client's CopyDone: the last rows, then the insert commits; the tag is `COPY n`.
    pub async fn finish(mut self) -> WsResult<CommandTag> {
        if let Some(batch) = self.decoder.finish()? {
            self.send(Feed::Batch(batch)).await?;
        }
        self.send(Feed::End).await?;
        self.sender = None;
        let rows = self.insert_result().await?;
        if let Some(lake) = self.engine.catalog().lake_table(self.table.table()).await {
            lake.refresh().await?;
        }
        Ok(CommandTag { command: "COPY", rows: Some(rows), oid: None })
    }
}

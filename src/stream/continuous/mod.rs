//! stream/continuous/: materialized views kept current as events arrive.
//!
//! A view is planned once ([`plan::ContinuousPlan`]) and run by one tokio task that
//! follows its source's log: each step reads the rows appended since the last step (and
//! the watermark that holds for them), pushes them through the input pipeline into the
//! window aggregate ([`aggregate::WindowAggregate`]), then evaluates and frees every
//! window the watermark has passed and stores its rows ([`store::ViewStore`]), which
//! readers, subscribers and sinks take from. Nothing re-runs the query over past events.
//!
//! A step is applied whole or the view stops: the rows a step read are gone from the
//! view's reading position once read, so a step that fails (a limit refused, an error in
//! the query) leaves the view `stopped` with the error in `last_error`, never emitting a
//! window that would miss rows. Windows are emitted by one store append per step, after
//! everything else in the step succeeded.
//!
//! Lateness follows Flink: a row is late for a window only when the window was already
//! emitted. The log records the watermark each late row arrived behind; before such rows
//! are added, the windows that watermark had closed are closed, so the rows count in every
//! window still open and a replay decides the same as the live run.
//!
//! Recovery is by replay, not checkpoint: the view's state is a function of its source's
//! retained log, so after a restart (or a kill -9) the task starts again at the log's
//! first retained row and rebuilds the same windows. Ingest sources replay their
//! segments and Kafka sources re-read their topic from the start of retention, so a view
//! gives the same rows as before for every window whose events are still retained.
//! Sinks make that exactly-once on their side (connectors/sinks).

pub mod aggregate;
pub mod plan;
pub mod slot;
pub mod store;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::{WsError, WsResult};

use self::aggregate::WindowAggregate;
pub use self::plan::{ContinuousPlan, Emit};
pub use self::store::{Emission, OP_COLUMN, Step, Subscription, ViewStore};

/// A materialized view as declared and persisted in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewDef {
    pub name: String,
    /// The query's SQL text as the user wrote it; planned again at every start.
    pub query: String,
    pub emit: Emit,
}

/// Bounds on what a view keeps (see README, limits).
#[derive(Debug, Clone, Copy)]
pub struct ViewLimits {
    /// Stored rows older than this (by emission time) are dropped.
    pub retention_ms: u64,
    pub rows_max: u64,
    /// Emissions a subscriber may fall behind before its subscription ends.
    pub subscriber_buffer_max: usize,
    pub windows_open_max: usize,
    pub state_bytes_max: usize,
}

impl Default for ViewLimits {
    fn default() -> ViewLimits {
        ViewLimits {
            retention_ms: 2 * 3_600_000,
            rows_max: 10_000_000,
            subscriber_buffer_max: 1_024,
            windows_open_max: 100_000,
            state_bytes_max: 1 << 30,
        }
    }
}

/// How often a view asks its lake lookups for a new version (each answers from its
/// snapshot, itself re-read within the lake staleness bound).
const LOOKUP_CHECK_MS: u64 = 1_000;
/// EMIT ON UPDATE views refresh at least this often.
const UPDATE_INTERVAL_MS: u64 = 1_000;
/// Rows pushed through the input pipeline per run: big enough to amortize a run,
/// small enough to bound the memory one run takes.
const STEP_ROWS_MAX: usize = 65_536;
/// Rows read from one source per step. A view catching up on a long log (a restart
/// replays the sources' retention) closes its windows as it goes, so its state stays
/// that of a few windows instead of the whole backlog's.
const READ_ROWS_MAX: usize = STEP_ROWS_MAX;

/// Counters `watershed.materialized_views` shows.
#[derive(Debug, Default)]
pub struct ViewStats {
    pub events_in: AtomicU64,
    pub late_rows: AtomicU64,
    pub state_bytes: AtomicU64,
    pub windows_open: AtomicU64,
    /// µs since the epoch; i64::MIN until the first watermark.
    watermark_us: AtomicI64,
    last_error: Mutex<Option<String>>,
    /// The view stopped on an error (in `last_error`) and emits nothing more.
    stopped: AtomicBool,
}

impl ViewStats {
    pub fn watermark_us(&self) -> Option<i64> {
        let value = self.watermark_us.load(Ordering::Relaxed);
        (value != i64::MIN).then_some(value)
    }

    /// `running`, or `stopped` after an error the view cannot go on from.
    pub fn state(&self) -> &'static str {
        if self.stopped.load(Ordering::Relaxed) { "stopped" } else { "running" }
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A running view.
pub struct MaterializedView {
    pub def: ViewDef,
    /// Names of the sources it reads.
    pub sources: Vec<String>,
    pub store: Arc<ViewStore>,
    pub stats: ViewStats,
    /// Index of `window_end` in the view's columns, for sinks that resume by window.
    pub window_end_column: Option<usize>,
    cancel: CancellationToken,
}

impl std::fmt::Debug for MaterializedView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaterializedView").field("name", &self.def.name).finish()
    }
}

impl MaterializedView {
    /// Starts the view's task. The plan is consumed by it.
    pub fn start(def: ViewDef, plan: ContinuousPlan, limits: ViewLimits) -> Arc<MaterializedView> {
        let window_end_column = plan.schema.index_of(crate::sql::windows::WINDOW_END).ok();
        let keys = match (&plan.aggregate, plan.emit) {
            (Some(_), Emit::OnUpdate) => Some(plan.view_keys.clone()),
            _ => None,
        };
        let store = Arc::new(ViewStore::new(
            plan.schema.clone(),
            keys,
            limits.retention_ms,
            limits.rows_max,
            limits.subscriber_buffer_max,
        ));
        let view = Arc::new(MaterializedView {
            def,
            sources: plan.sources.iter().map(|(s, _)| s.name().to_string()).collect(),
            store,
            stats: ViewStats { watermark_us: AtomicI64::new(i64::MIN), ..ViewStats::default() },
            window_end_column,
            cancel: CancellationToken::new(),
        });
        let task_view = view.clone();
        tokio::spawn(async move {
            // A panic in a step (ours or a dependency's) stops this view like any failed
            // step, visibly, instead of ending its task in silence.
            let running = std::panic::AssertUnwindSafe(run(task_view.clone(), plan, limits));
            if let Err(panic) = futures::FutureExt::catch_unwind(running).await {
                let what = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("a panic");
                task_view.record_error(&WsError::internal(format!("the view's task failed: {what}")));
                task_view.stats.stopped.store(true, Ordering::Relaxed);
            }
        });
        view
    }

    pub fn name(&self) -> &str {
        &self.def.name
    }

    pub fn stop(&self) {
        self.cancel.cancel();
    }

    fn record_error(&self, error: &WsError) {
        tracing::warn!(view = self.name(), error = %error.message, "materialized view step failed");
        *self.stats.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.message.clone());
    }
}

/// The view's task: follow the logs, step, store; until dropped or the server stops.
async fn run(view: Arc<MaterializedView>, mut plan: ContinuousPlan, limits: ViewLimits) {
    let mut aggregate = plan.aggregate.take().map(|(part, slot, upper)| {
        (WindowAggregate::new(part, limits.windows_open_max, limits.state_bytes_max), slot, upper)
    });
    let sources: Vec<Arc<crate::stream::Source>> = plan.sources.iter().map(|(source, _)| source.clone()).collect();
    let mut offsets = vec![0u64; sources.len()];
    // Per source: the watermark of its last read and whether rows were left.
    let mut last_reads: Vec<(Option<i64>, bool)> = vec![(None, false); sources.len()];
    // Window joins: each source's rows of windows still open.
    let mut buffers: Vec<Vec<RecordBatch>> = vec![Vec::new(); sources.len()];
    let mut emitted_until_us: Option<i64> = None;
    // Final rows of closed windows an EMIT ON UPDATE view keeps showing, by window end.
    let mut closed: Vec<(i64, RecordBatch)> = Vec::new();
    let mut lookups = std::mem::take(&mut plan.lookups);
    let mut lookups_checked = std::time::Instant::now();
    loop {
        if !lookups.is_empty() && lookups_checked.elapsed() >= std::time::Duration::from_millis(LOOKUP_CHECK_MS) {
            lookups_checked = std::time::Instant::now();
            for lookup in &mut lookups {
                match lookup.refresh(&plan.state).await {
                    Ok(true) => tracing::debug!(view = view.name(), table = %lookup.name, "lookup table re-read"),
                    Ok(false) => {}
                    Err(error) => view.record_error(&error),
                }
            }
        }
        // Registered before reading, so that an append between the read and the wait
        // still wakes the task.
        let mut waits: Vec<_> = sources.iter().map(|s| Box::pin(s.log.changed().notified())).collect();
        for wait in &mut waits {
            wait.as_mut().enable();
        }
        // Sources are read in event-time lockstep: one whose last read ran ahead of a
        // source with rows left waits (its watermark stands), so a window join's buffers
        // hold about the same span of each source while it catches up.
        let lagging_us = last_reads.iter().filter(|(_, more)| *more).filter_map(|(watermark, _)| *watermark).min();
        let mut reads: Vec<crate::stream::log::LogRead> = sources
            .iter()
            .zip(offsets.iter_mut())
            .zip(last_reads.iter_mut())
            .map(|((source, offset), last)| {
                let ahead = lagging_us.is_some_and(|lagging| last.0.is_some_and(|w| w > lagging));
                if ahead {
                    return crate::stream::log::LogRead {
                        next_offset: *offset,
                        watermark_us: last.0,
                        ..Default::default()
                    };
                }
                let read = source.log.read_from(*offset, READ_ROWS_MAX);
                *offset = read.next_offset;
                *last = (read.watermark_us, read.more);
                read
            })
            .collect();
        let more = last_reads.iter().any(|(_, more)| *more);
        let stepped = match plan.buffered {
            Some(buffered) => {
                step_window_join(&view, &plan, buffered, reads, &mut buffers, &mut emitted_until_us, limits).await
            }
            None => {
                let read = reads.pop().expect("a view without window join reads one source");
                step(&view, &plan, aggregate.as_mut(), read, &mut closed, limits).await
            }
        };
        if let Err(error) = stepped {
            // The step's rows were read and may be half applied: going on would emit
            // windows that miss them. The view stops, says why, and emits nothing more;
            // its stored rows stay readable. A restart replays its sources afresh.
            view.record_error(&error);
            view.stats.stopped.store(true, Ordering::Relaxed);
            tracing::error!(view = view.name(), error = %error.message, "materialized view stopped");
            break;
        }
        if more {
            // Catching up: read on at once, letting other tasks run between steps.
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            _ = view.cancel.cancelled() => break,
            _ = futures::future::select_all(waits) => {}
            _ = tokio::time::sleep(std::time::Duration::from_millis(UPDATE_INTERVAL_MS)) => {}
        }
    }
    tracing::debug!(view = view.name(), "materialized view stopped");
}

/// Rows of `batch` whose `column` (a timestamp) is in (after, until] (µs); `after` None
/// is unbounded.
fn rows_between(batch: &RecordBatch, column: usize, after: Option<i64>, until: i64) -> WsResult<RecordBatch> {
    let times = crate::stream::log::event_micros(batch.column(column))?;
    let keep: datafusion::arrow::array::BooleanArray =
        times.iter().map(|t| Some(t.is_some_and(|t| t <= until && after.is_none_or(|a| t > a)))).collect();
    Ok(datafusion::arrow::compute::filter_record_batch(batch, &keep)?)
}

/// One step of a window join: buffer the new rows; when the watermark crosses a window
/// end, run the query over the buffered rows, emit the windows that closed, and drop the
/// rows no open window can need.
async fn step_window_join(
    view: &MaterializedView,
    plan: &ContinuousPlan,
    buffered: plan::Buffered,
    reads: Vec<crate::stream::log::LogRead>,
    buffers: &mut [Vec<RecordBatch>],
    emitted_until_us: &mut Option<i64>,
    limits: ViewLimits,
) -> WsResult<()> {
    let now_ms = crate::stream::now_ms();
    let mut watermark_us: Option<i64> = None;
    let mut all_have_watermark = true;
    let source_offset = reads.first().map_or(0, |r| r.next_offset);
    // Rows no window still to be emitted can hold are late (Flink's rule: late means
    // every window of the row was already emitted): counted, not buffered. The others are
    // kept, behind the watermark or not, and count in the windows not yet emitted.
    let mut arrived: Vec<Vec<RecordBatch>> = Vec::with_capacity(reads.len());
    for (read, (source, _)) in reads.into_iter().zip(&plan.sources) {
        let rows: usize = read.batches.iter().map(|b| b.num_rows()).sum();
        view.stats.events_in.fetch_add(rows as u64, Ordering::Relaxed);
        let kept = match *emitted_until_us {
            None => read.batches,
            Some(until) => {
                let event_time = source.spec.event_time.as_ref().expect("checked at CREATE").index;
                let after = until - buffered.size_max_us - 1;
                let kept = read
                    .batches
                    .iter()
                    .map(|batch| rows_between(batch, event_time, Some(after), i64::MAX))
                    .collect::<WsResult<Vec<_>>>()?;
                let kept_rows: usize = kept.iter().map(|b| b.num_rows()).sum();
                view.stats.late_rows.fetch_add((rows - kept_rows) as u64, Ordering::Relaxed);
                kept
            }
        };
        arrived.push(kept);
        match read.watermark_us {
            Some(w) => watermark_us = Some(watermark_us.map_or(w, |m| m.min(w))),
            None => all_have_watermark = false,
        }
    }
    // The limit refuses before the rows are buffered.
    let held: usize = buffers.iter().flatten().map(|b| b.get_array_memory_size()).sum();
    let new: usize = arrived.iter().flatten().map(|b| b.get_array_memory_size()).sum();
    if held + new > limits.state_bytes_max {
        return Err(WsError::new(
            crate::error::sqlstate::OUT_OF_MEMORY,
            format!(
                "the view holds {held} bytes of rows of open windows and {new} more arrived, over state_bytes_max = {}",
                limits.state_bytes_max
            ),
        ));
    }
    for (buffer, batches) in buffers.iter_mut().zip(arrived) {
        buffer.extend(batches);
    }
    view.stats.state_bytes.store((held + new) as u64, Ordering::Relaxed);
    let Some(w) = watermark_us.filter(|_| all_have_watermark) else {
        return Ok(());
    };
    let step = buffered.step_min_us;
    let due = emitted_until_us.is_none_or(|until| w.div_euclid(step) > until.div_euclid(step));
    if !due {
        view.stats.watermark_us.store(w, Ordering::Relaxed);
        return Ok(());
    }
    for (buffer, (_, slot)) in buffers.iter().zip(&plan.sources) {
        slot.set(buffer.clone());
    }
    let out = plan.input.run().await;
    for (_, slot) in &plan.sources {
        slot.set(Vec::new());
    }
    let emitted = out?
        .iter()
        .map(|batch| rows_between(batch, buffered.window_end, *emitted_until_us, w))
        .collect::<WsResult<Vec<_>>>()?;
    view.store.append(emitted, store::Step { watermark_us: Some(w), source_offset, now_ms })?;
    // After the rows are stored: a reader seeing this watermark sees its windows.
    view.stats.watermark_us.store(w, Ordering::Relaxed);
    *emitted_until_us = Some(w);
    for (buffer, (source, _)) in buffers.iter_mut().zip(&plan.sources) {
        let event_time = source.spec.event_time.as_ref().expect("checked at CREATE").index;
        let kept = buffer
            .iter()
            .map(|batch| rows_between(batch, event_time, Some(w - buffered.size_max_us - 1), i64::MAX))
            .collect::<WsResult<Vec<_>>>()?;
        *buffer = kept.into_iter().filter(|b| b.num_rows() > 0).collect();
    }
    Ok(())
}

/// Pushes one run of new rows through the input pipeline, into the aggregate or (a view
/// without one) into `direct`.
async fn run_input(
    view: &MaterializedView,
    plan: &ContinuousPlan,
    rows: Vec<RecordBatch>,
    aggregate: Option<&mut WindowAggregate>,
    direct: &mut Vec<RecordBatch>,
) -> WsResult<()> {
    let count: usize = rows.iter().map(|b| b.num_rows()).sum();
    if count == 0 {
        return Ok(());
    }
    view.stats.events_in.fetch_add(count as u64, Ordering::Relaxed);
    let input_slot = &plan.sources[0].1;
    input_slot.set(rows);
    let out = plan.input.run().await;
    input_slot.set(Vec::new());
    let out = out?;
    match aggregate {
        None => direct.extend(out),
        Some(state) => {
            for batch in &out {
                let counts = state.update(batch)?;
                view.stats.late_rows.fetch_add(counts.late_rows, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

type AggregateState<'a> = (&'a mut WindowAggregate, &'a Arc<slot::Slot>, &'a plan::Pipeline);

async fn step(
    view: &MaterializedView,
    plan: &ContinuousPlan,
    aggregate: Option<&mut (WindowAggregate, Arc<slot::Slot>, plan::Pipeline)>,
    read: crate::stream::log::LogRead,
    closed: &mut Vec<(i64, RecordBatch)>,
    limits: ViewLimits,
) -> WsResult<()> {
    let now_ms = crate::stream::now_ms();
    let watermark_us = read.watermark_us;
    let at = store::Step { watermark_us, source_offset: read.next_offset, now_ms };
    let mut aggregate: Option<AggregateState> = aggregate.map(|(a, s, u)| (a, &*s, &*u));
    let mut direct = Vec::new();
    // Groups of closed windows, for the upper pipeline.
    let mut closing: Vec<RecordBatch> = Vec::new();
    // The new rows go through the input pipeline in runs of at most STEP_ROWS_MAX.
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_rows = 0;
    let windowed = plan.aggregate_windowed;
    assert_eq!(read.batches.len(), read.late.len(), "one late mask per batch");
    for (batch, late) in read.batches.into_iter().zip(read.late) {
        // Rows that arrived behind watermark A are late for the windows ending at or
        // before A, which were due before they came: those windows close first, so that
        // the rows count only in later ones, however the log was read (live or replayed,
        // in small or large reads). This is Flink's rule: late means already emitted.
        if windowed && let (Some(late), Some((state, _, _))) = (&late, aggregate.as_mut()) {
            run_input(view, plan, std::mem::take(&mut pending), Some(&mut **state), &mut direct).await?;
            pending_rows = 0;
            closing.extend(state.close_until(late.watermark_us)?);
        }
        pending_rows += batch.num_rows();
        pending.push(batch);
        if pending_rows >= STEP_ROWS_MAX {
            let state = aggregate.as_mut().map(|(state, _, _)| &mut **state);
            run_input(view, plan, std::mem::take(&mut pending), state, &mut direct).await?;
            pending_rows = 0;
        }
    }
    let state = aggregate.as_mut().map(|(state, _, _)| &mut **state);
    run_input(view, plan, pending, state, &mut direct).await?;
    let Some((state, upper_slot, upper)) = aggregate else {
        view.store.append(direct, at)?;
        if let Some(w) = watermark_us {
            view.stats.watermark_us.store(w, Ordering::Relaxed);
        }
        return Ok(());
    };
    view.stats.state_bytes.store(state.state_bytes() as u64, Ordering::Relaxed);
    if windowed && let Some(w) = watermark_us {
        closing.extend(state.close_until(w)?);
    }
    let mut final_rows = Vec::new();
    if !closing.is_empty() {
        upper_slot.set(closing);
        let out = upper.run().await;
        upper_slot.set(Vec::new());
        final_rows = out?;
    }
    view.stats.windows_open.store(state.windows_open() as u64, Ordering::Relaxed);
    view.stats.state_bytes.store(state.state_bytes() as u64, Ordering::Relaxed);
    match plan.emit {
        Emit::OnWindowClose => view.store.append(final_rows, at)?,
        Emit::OnUpdate => {
            let end = watermark_us.unwrap_or(i64::MIN);
            closed.extend(final_rows.into_iter().map(|b| (end, b)));
            // Closed windows stay visible for the view's retention.
            let oldest_us = (now_ms - limits.retention_ms as i64).saturating_mul(1_000);
            closed.retain(|(at, _)| *at >= oldest_us);
            let current = state.current()?;
            let mut rows: Vec<RecordBatch> = closed.iter().map(|(_, b)| b.clone()).collect();
            if !current.is_empty() {
                upper_slot.set(current);
                let out = upper.run().await;
                upper_slot.set(Vec::new());
                rows.extend(out?);
            }
            view.store.replace(rows, at)?
        }
    }
    if let Some(w) = watermark_us {
        // After the rows are stored: a reader seeing this watermark sees its windows.
        view.stats.watermark_us.store(w, Ordering::Relaxed);
    }
    Ok(())
}

/// Every running view by name: the catalog adds and removes, system views and
/// subscriptions read.
pub type ViewRegistry = Arc<RwLock<BTreeMap<String, Arc<MaterializedView>>>>;

/// `SELECT * FROM v`: the view's stored rows, no recomputation.
#[derive(Debug)]
pub struct ViewTable {
    view: Arc<MaterializedView>,
}

impl ViewTable {
    pub fn new(view: Arc<MaterializedView>) -> ViewTable {
        ViewTable { view }
    }

    pub fn view(&self) -> &Arc<MaterializedView> {
        &self.view
    }
}

#[async_trait]
impl TableProvider for ViewTable {
    fn schema(&self) -> SchemaRef {
        self.view.store.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batches = self.view.store.snapshot();
        Ok(MemorySourceConfig::try_new_exec(&[batches], self.schema(), projection.cloned())?)
    }
}

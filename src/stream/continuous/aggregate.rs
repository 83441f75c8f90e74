//! Windowed aggregation state: per open window, DataFusion's `GroupValues` (the group
//! keys) and one `GroupsAccumulator` per aggregate, fed batch by batch. When the
//! watermark passes a window's end its groups are evaluated once, emitted and freed: the
//! state is bounded by the windows the watermark keeps open, not by the events seen.
//!
//! Any aggregate DataFusion has works: those with a specialized `GroupsAccumulator`
//! (count, sum, avg, min, max...) use it, the others (count(DISTINCT), approx_distinct,
//! approx_percentile_cont...) their row `Accumulator` behind `GroupsAccumulatorAdapter`.
//!
//! Without a `window_end` key (EMIT ON UPDATE) there is one window that never closes,
//! and [`WindowAggregate::current`] evaluates it without consuming it.
//!
//! Limits refuse before they are passed: a batch that would open windows beyond
//! `windows_open_max`, or whose group keys and aggregate inputs (an estimate of what it
//! can add) would take the state past `state_bytes_max`, is refused whole, before any
//! window is touched. A refused or failed update leaves the view unable to go on: its
//! task stops with the error (stream/continuous/mod.rs) and never emits what it holds.

use std::collections::{BTreeMap, HashMap};

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::GroupsAccumulatorAdapter;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use crate::error::{WsError, WsResult, sqlstate};

use super::plan::{AggregatePart, AggregateSpec};

/// Key of the single window of an aggregate without window_end.
const GLOBAL_WINDOW: i64 = i64::MAX;

struct WindowState {
    groups: Box<dyn GroupValues>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
}

/// What one batch did to the state.
#[derive(Debug, Default, Clone, Copy)]
pub struct UpdateCounts {
    pub rows: u64,
    /// Rows for windows already emitted: dropped.
    pub late_rows: u64,
}

pub struct WindowAggregate {
    part: AggregatePart,
    /// Open windows by end (µs since the epoch).
    windows: BTreeMap<i64, WindowState>,
    /// Windows ending at or before this have been emitted (µs).
    emitted_until_us: Option<i64>,
    windows_open_max: usize,
    state_bytes_max: usize,
    /// Bytes held by the open windows, kept current by every update and close.
    state_bytes: usize,
    group_indices: Vec<usize>,
}

fn window_bytes(window: &WindowState) -> usize {
    window.groups.size() + window.accumulators.iter().map(|a| a.size()).sum::<usize>()
}

fn new_accumulator(spec: &AggregateSpec) -> WsResult<Box<dyn GroupsAccumulator>> {
    let expr = spec.expr.clone();
    Ok(if expr.groups_accumulator_supported() {
        expr.create_groups_accumulator()?
    } else {
        Box::new(GroupsAccumulatorAdapter::new(move || expr.create_accumulator()))
    })
}

fn new_accumulators(part: &AggregatePart) -> WsResult<Vec<Box<dyn GroupsAccumulator>>> {
    part.aggregates.iter().map(new_accumulator).collect()
}

/// Window ends of `column` (the window_end group values) in µs.
fn ends_us(column: &ArrayRef) -> WsResult<Vec<Option<i64>>> {
    let as_micros = cast(column, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    let micros = as_micros
        .as_any()
        .downcast_ref::<datafusion::arrow::array::TimestampMicrosecondArray>()
        .ok_or_else(|| WsError::internal("window_end is not a timestamp"))?;
    Ok(micros.iter().collect())
}

impl WindowAggregate {
    pub fn new(part: AggregatePart, windows_open_max: usize, state_bytes_max: usize) -> WindowAggregate {
        WindowAggregate {
            part,
            windows: BTreeMap::new(),
            emitted_until_us: None,
            windows_open_max,
            state_bytes_max,
            state_bytes: 0,
            group_indices: Vec::new(),
        }
    }

    pub fn windows_open(&self) -> usize {
        self.windows.len()
    }

    /// Bytes held by open windows: group keys plus accumulator states.
    pub fn state_bytes(&self) -> usize {
        debug_assert_eq!(self.state_bytes, self.windows.values().map(window_bytes).sum::<usize>());
        self.state_bytes
    }

    /// Adds one batch of the aggregate's input.
    pub fn update(&mut self, batch: &RecordBatch) -> WsResult<UpdateCounts> {
        let rows = batch.num_rows();
        let mut counts = UpdateCounts { rows: rows as u64, late_rows: 0 };
        if rows == 0 {
            return Ok(counts);
        }
        let groups: Vec<ArrayRef> = self
            .part
            .group_exprs
            .iter()
            .map(|e| e.evaluate(batch).and_then(|v| v.into_array(rows)))
            .collect::<Result<_, _>>()?;
        // Rows per window; most batches fall in one or two windows.
        let mut by_window: HashMap<i64, Vec<u32>> = HashMap::new();
        match self.part.window_end {
            None => {
                by_window.insert(GLOBAL_WINDOW, (0..rows as u32).collect());
            }
            Some(index) => {
                for (row, end) in ends_us(&groups[index])?.into_iter().enumerate() {
                    // Rows without a window were dropped by the window function already.
                    let Some(end) = end else { continue };
                    // Rows late by the log's verdict are already gone; a row on time falls
                    // in windows the watermark has not passed. Should one still find its
                    // window emitted, it is dropped and counted, never added.
                    if self.emitted_until_us.is_some_and(|until| end <= until) {
                        counts.late_rows += 1;
                        continue;
                    }
                    by_window.entry(end).or_default().push(row as u32);
                }
            }
        }
        // Each aggregate's arguments and FILTER are evaluated once over the whole batch;
        // a window then takes only these arrays (not every column of the input, which
        // may hold strings no aggregate reads).
        let inputs = AggregateInputs::evaluate(&self.part, batch)?;
        self.check_limits(&by_window, &groups, &inputs)?;
        let single = by_window.len() == 1 && counts.late_rows == 0;
        for (end, rows_of_window) in by_window {
            if single {
                self.update_window(end, &groups, &inputs)?;
                continue;
            }
            let indices = UInt32Array::from(rows_of_window);
            let taken_groups = groups.iter().map(|c| take(c, &indices, None)).collect::<Result<Vec<_>, _>>()?;
            self.update_window(end, &taken_groups, &inputs.take(&indices)?)?;
        }
        Ok(counts)
    }

    fn update_window(&mut self, end: i64, groups: &[ArrayRef], inputs: &AggregateInputs) -> WsResult<()> {
        if !self.windows.contains_key(&end) {
            let state = WindowState {
                groups: new_group_values(self.part.group_schema.clone(), &GroupOrdering::None)?,
                accumulators: new_accumulators(&self.part)?,
            };
            self.state_bytes += window_bytes(&state);
            self.windows.insert(end, state);
        }
        let window = self.windows.get_mut(&end).expect("inserted above");
        let bytes_before = window_bytes(window);
        self.group_indices.clear();
        window.groups.intern(groups, &mut self.group_indices)?;
        let total_groups = window.groups.len();
        assert_eq!(window.accumulators.len(), inputs.values.len(), "one input per aggregate");
        for ((accumulator, values), filter) in window.accumulators.iter_mut().zip(&inputs.values).zip(&inputs.filters) {
            let filter = match filter {
                Some(array) => Some(
                    array
                        .as_any()
                        .downcast_ref::<BooleanArray>()
                        .ok_or_else(|| WsError::internal("aggregate FILTER is not boolean"))?,
                ),
                None => None,
            };
            accumulator.update_batch(values, &self.group_indices, filter, total_groups)?;
        }
        self.state_bytes = self.state_bytes - bytes_before + window_bytes(window);
        Ok(())
    }

    /// Refuses a batch that would pass a limit, before any window is touched: the windows
    /// it would open, and its group keys plus aggregate inputs as an estimate of the bytes
    /// it can add (accumulators and group tables grow by about what they are given).
    fn check_limits(
        &self,
        by_window: &HashMap<i64, Vec<u32>>,
        groups: &[ArrayRef],
        inputs: &AggregateInputs,
    ) -> WsResult<()> {
        let opened = by_window.keys().filter(|end| !self.windows.contains_key(end)).count();
        if self.windows.len() + opened > self.windows_open_max {
            return Err(WsError::new(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!(
                    "the view would have {} open windows, over windows_open_max = {}; the watermark is not advancing \
                     or windows are too small for the allowed delay",
                    self.windows.len() + opened,
                    self.windows_open_max
                ),
            ));
        }
        let added_bytes = groups.iter().map(|a| a.get_array_memory_size()).sum::<usize>() + inputs.bytes();
        if self.state_bytes + added_bytes > self.state_bytes_max {
            return Err(WsError::new(
                sqlstate::OUT_OF_MEMORY,
                format!(
                    "the view's window state is {} bytes and the next rows could add {added_bytes}, over \
                     state_bytes_max = {}",
                    self.state_bytes, self.state_bytes_max
                ),
            ));
        }
        Ok(())
    }

    /// Evaluates every window ending at or before `watermark_us`, oldest first, and frees
    /// them once all are evaluated: a failure frees nothing (and stops the view).
    pub fn close_until(&mut self, watermark_us: i64) -> WsResult<Vec<RecordBatch>> {
        assert!(self.part.window_end.is_some(), "only windowed aggregates close windows");
        let ends: Vec<i64> = self.windows.range(..=watermark_us).map(|(end, _)| *end).collect();
        let mut batches = Vec::with_capacity(ends.len());
        // Sizes as counted, before evaluation empties the windows.
        let mut freed_bytes = 0;
        for end in &ends {
            let window = self.windows.get_mut(end).expect("listed above");
            freed_bytes += window_bytes(window);
            batches.push(evaluate(&self.part, window)?);
        }
        for end in &ends {
            self.windows.remove(end).expect("listed above");
        }
        self.state_bytes -= freed_bytes;
        self.emitted_until_us = Some(self.emitted_until_us.map_or(watermark_us, |u| u.max(watermark_us)));
        Ok(batches)
    }

    fn output_batch(&self, columns: Vec<ArrayRef>) -> WsResult<RecordBatch> {
        output_batch(&self.part, columns)
    }

    /// Current values of every open window's groups, leaving the state as it was
    /// (EMIT ON UPDATE). Costs one state round trip per group, not a pass over events.
    pub fn current(&mut self) -> WsResult<Vec<RecordBatch>> {
        let mut batches = Vec::new();
        let ends: Vec<i64> = self.windows.keys().copied().collect();
        for end in ends {
            let mut window = self.windows.remove(&end).expect("key listed above");
            self.state_bytes -= window_bytes(&window);
            let group_columns = window.groups.emit(EmitTo::All)?;
            let count = group_columns.first().map_or(0, |c| c.len());
            let mut kept_groups = new_group_values(self.part.group_schema.clone(), &GroupOrdering::None)?;
            let mut indices = Vec::new();
            kept_groups.intern(&group_columns, &mut indices)?;
            assert!(indices.iter().enumerate().all(|(i, &g)| i == g), "re-interned groups keep their order");
            let mut columns = group_columns;
            let mut kept_accumulators = Vec::with_capacity(window.accumulators.len());
            for (spec, old) in self.part.aggregates.iter().zip(window.accumulators.iter_mut()) {
                // state() consumes: merge it into two fresh accumulators, one to keep and
                // one to evaluate.
                let state = old.state(EmitTo::All)?;
                let mut kept = new_accumulator(spec)?;
                kept.merge_batch(&state, &indices, count)?;
                let mut evaluator = new_accumulator(spec)?;
                evaluator.merge_batch(&state, &indices, count)?;
                columns.push(evaluator.evaluate(EmitTo::All)?);
                kept_accumulators.push(kept);
            }
            if count > 0 {
                batches.push(self.output_batch(columns)?);
            }
            let kept = WindowState { groups: kept_groups, accumulators: kept_accumulators };
            self.state_bytes += window_bytes(&kept);
            self.windows.insert(end, kept);
        }
        Ok(batches)
    }
}

/// The final rows of one window (its groups and accumulators are emitted and reset).
fn evaluate(part: &AggregatePart, window: &mut WindowState) -> WsResult<RecordBatch> {
    let mut columns = window.groups.emit(EmitTo::All)?;
    for accumulator in window.accumulators.iter_mut() {
        columns.push(accumulator.evaluate(EmitTo::All)?);
    }
    output_batch(part, columns)
}

fn output_batch(part: &AggregatePart, columns: Vec<ArrayRef>) -> WsResult<RecordBatch> {
    let schema = part.output_schema.clone();
    let columns = columns
        .into_iter()
        .zip(schema.fields().iter())
        .map(
            |(column, field)| {
                if column.data_type() == field.data_type() { Ok(column) } else { cast(&column, field.data_type()) }
            },
        )
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// What the aggregates of one batch read: per aggregate, its argument arrays and its
/// FILTER (a boolean array), row for row with the batch or with one window's rows of it.
struct AggregateInputs {
    values: Vec<Vec<ArrayRef>>,
    filters: Vec<Option<ArrayRef>>,
}

impl AggregateInputs {
    fn evaluate(part: &AggregatePart, batch: &RecordBatch) -> WsResult<AggregateInputs> {
        let rows = batch.num_rows();
        let mut values = Vec::with_capacity(part.aggregates.len());
        let mut filters = Vec::with_capacity(part.aggregates.len());
        for spec in &part.aggregates {
            values.push(
                spec.expr
                    .expressions()
                    .iter()
                    .map(|e| e.evaluate(batch).and_then(|v| v.into_array(rows)))
                    .collect::<Result<Vec<_>, _>>()?,
            );
            filters.push(match &spec.filter {
                Some(filter) => Some(filter.evaluate(batch)?.into_array(rows)?),
                None => None,
            });
        }
        Ok(AggregateInputs { values, filters })
    }

    /// Memory of the evaluated arguments and filters.
    fn bytes(&self) -> usize {
        let values: usize = self.values.iter().flatten().map(|a| a.get_array_memory_size()).sum();
        let filters: usize = self.filters.iter().flatten().map(|a| a.get_array_memory_size()).sum();
        values + filters
    }

    /// The rows at `indices`, in that order.
    fn take(&self, indices: &UInt32Array) -> WsResult<AggregateInputs> {
        let values = self
            .values
            .iter()
            .map(|arrays| arrays.iter().map(|a| take(a, indices, None)).collect::<Result<Vec<_>, _>>())
            .collect::<Result<Vec<_>, _>>()?;
        let filters = self
            .filters
            .iter()
            .map(|filter| filter.as_ref().map(|f| take(f, indices, None)).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AggregateInputs { values, filters })
    }
}

impl std::fmt::Debug for WindowAggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowAggregate").field("windows_open", &self.windows.len()).finish()
    }
}

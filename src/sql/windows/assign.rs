//! Window assignment: which windows an event time falls in, computed over whole Arrow
//! arrays (one pass, buffers sized up front, nothing allocated per row).
//!
//! All arithmetic is on the raw `i64` of a timestamp array in its own unit; the planner
//! converts sizes to that unit before they get here. Windows are aligned to the Unix epoch
//! (plus an offset), in UTC whatever the column's time zone, as Flink does.
//!
//! HOP and CUMULATE give each event several windows, so they are planned as a list of
//! window bounds per row ([`WindowListUdf`]) that an `Unnest` turns into one row per window.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListArray, PrimitiveArray};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use datafusion::common::{Result as DfResult, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

/// Start of the window of length `size`, aligned to `offset`, that holds `t`.
/// Floors towards negative infinity, so times before the epoch are binned correctly.
#[inline]
pub fn floor_to(t: i64, size: i64, offset: i64) -> i64 {
    t.wrapping_sub(t.wrapping_sub(offset).rem_euclid(size))
}

/// Nanoseconds in one `unit`.
pub fn nanos_per(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    }
}

/// HOP: the starts of every window of length `size`, sliding by `slide`, that holds each
/// time, ascending. A null time gets no window. `size` need not be a multiple of `slide`:
/// an event then falls in `floor(size/slide)` or `ceil(size/slide)` windows.
pub fn hop_starts(
    times: &[i64],
    nulls: Option<&NullBuffer>,
    slide: i64,
    size: i64,
) -> DfResult<(OffsetBuffer<i32>, ScalarBuffer<i64>)> {
    let per_event_max = (size + slide - 1) / slide;
    let mut offsets = Vec::with_capacity(times.len() + 1);
    let mut values = Vec::with_capacity(times.len().saturating_mul(per_event_max as usize));
    offsets.push(0i32);
    for (row, &t) in times.iter().enumerate() {
        if nulls.is_none_or(|n| n.is_valid(row)) {
            let last = floor_to(t, slide, 0);
            // ts - last < slide <= size, so at least one window (the last) holds t.
            let count = (last.wrapping_sub(t).wrapping_add(size) + slide - 1) / slide;
            let first = last.wrapping_sub((count - 1).wrapping_mul(slide));
            values.extend((0..count).map(|k| first.wrapping_add(k * slide)));
        }
        offsets.push(list_offset(values.len())?);
    }
    Ok((OffsetBuffer::new(offsets.into()), values.into()))
}

/// CUMULATE: the ends of every cumulating window that holds each time. Windows start at
/// the `size`-aligned floor of the time and end at start + k*step for k = 1..=size/step;
/// those ending after the time hold it. `size` must be a multiple of `step`.
pub fn cumulate_ends(
    times: &[i64],
    nulls: Option<&NullBuffer>,
    step: i64,
    size: i64,
) -> DfResult<(OffsetBuffer<i32>, ScalarBuffer<i64>)> {
    let steps = size / step;
    let mut offsets = Vec::with_capacity(times.len() + 1);
    // Events are spread over the window on average, so about half the steps per event.
    let mut values = Vec::with_capacity(times.len().saturating_mul(steps as usize / 2 + 1));
    offsets.push(0i32);
    for (row, &t) in times.iter().enumerate() {
        if nulls.is_none_or(|n| n.is_valid(row)) {
            let start = floor_to(t, size, 0);
            let first_k = (t - start) / step + 1;
            values.extend((first_k..=steps).map(|k| start.wrapping_add(k * step)));
        }
        offsets.push(list_offset(values.len())?);
    }
    Ok((OffsetBuffer::new(offsets.into()), values.into()))
}

fn list_offset(len: usize) -> DfResult<i32> {
    match i32::try_from(len) {
        Ok(offset) => Ok(offset),
        Err(_) => exec_err!("more than {} windows in one batch; use a smaller batch size", i32::MAX),
    }
}

/// The raw values and validity of a timestamp array of any unit.
pub fn timestamp_values(array: &dyn Array) -> DfResult<(&[i64], Option<&NullBuffer>)> {
    let values: &[i64] = match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => array.as_primitive::<TimestampSecondType>().values(),
        DataType::Timestamp(TimeUnit::Millisecond, _) => array.as_primitive::<TimestampMillisecondType>().values(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => array.as_primitive::<TimestampMicrosecondType>().values(),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => array.as_primitive::<TimestampNanosecondType>().values(),
        other => return exec_err!("window functions need a timestamp, got {other}"),
    };
    Ok((values, array.nulls()))
}

/// A timestamp array of `data_type` (which must be a timestamp type) over `values`.
pub fn timestamp_array(data_type: &DataType, values: ScalarBuffer<i64>, nulls: Option<NullBuffer>) -> ArrayRef {
    let DataType::Timestamp(unit, tz) = data_type else { unreachable!("callers pass the type of a timestamp column") };
    match unit {
        TimeUnit::Second => {
            Arc::new(PrimitiveArray::<TimestampSecondType>::new(values, nulls).with_timezone_opt(tz.clone()))
        }
        TimeUnit::Millisecond => {
            Arc::new(PrimitiveArray::<TimestampMillisecondType>::new(values, nulls).with_timezone_opt(tz.clone()))
        }
        TimeUnit::Microsecond => {
            Arc::new(PrimitiveArray::<TimestampMicrosecondType>::new(values, nulls).with_timezone_opt(tz.clone()))
        }
        TimeUnit::Nanosecond => {
            Arc::new(PrimitiveArray::<TimestampNanosecondType>::new(values, nulls).with_timezone_opt(tz.clone()))
        }
    }
}

/// TUMBLE: the start of the window of length `size`, aligned to `offset`, holding each
/// time; NULL for a NULL time.
pub fn tumble_starts(times: &[i64], size: i64, offset: i64) -> ScalarBuffer<i64> {
    times.iter().map(|&t| floor_to(t, size, offset)).collect()
}

/// `tumble_window_start(ts, size, offset)`: the scalar function behind TUMBLE (and the
/// start of CUMULATE's windows). Like `date_bin`, but it keeps the column's unit (date_bin
/// returns nanoseconds) and takes its sizes as `Int64` literals in that unit.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TumbleStartUdf {
    signature: Signature,
}

impl Default for TumbleStartUdf {
    fn default() -> Self {
        TumbleStartUdf { signature: Signature::any(3, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for TumbleStartUdf {
    fn name(&self) -> &str {
        "tumble_window_start"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        match arg_types {
            [time @ DataType::Timestamp(..), DataType::Int64, DataType::Int64] => Ok(time.clone()),
            other => plan_err!("{} takes (timestamp, bigint, bigint), got {other:?}", self.name()),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [time, size, offset] = args.args.as_slice() else {
            return exec_err!("{} takes three arguments", self.name());
        };
        let size = size_argument(size, "size")?;
        let ColumnarValue::Scalar(ScalarValue::Int64(Some(offset))) = offset else {
            return exec_err!("offset must be an Int64 literal, got {offset:?}");
        };
        let times = time.to_array(args.number_rows)?;
        let (values, nulls) = timestamp_values(times.as_ref())?;
        let starts = tumble_starts(values, size, *offset);
        Ok(ColumnarValue::Array(timestamp_array(times.data_type(), starts, nulls.cloned())))
    }
}

/// Which list of window bounds a [`WindowListUdf`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowList {
    /// `hop_window_starts(ts, slide, size)`: starts of the HOP windows holding ts.
    HopStarts,
    /// `cumulate_window_ends(ts, step, size)`: ends of the CUMULATE windows holding ts.
    CumulateEnds,
}

/// The scalar function behind HOP and CUMULATE: a list of window bounds per event time.
/// Its two size arguments are `Int64` literals in the time column's unit.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct WindowListUdf {
    list: WindowList,
    signature: Signature,
}

impl WindowListUdf {
    pub fn new(list: WindowList) -> WindowListUdf {
        WindowListUdf { list, signature: Signature::any(3, Volatility::Immutable) }
    }
}

fn size_argument(value: &ColumnarValue, name: &str) -> DfResult<i64> {
    match value {
        ColumnarValue::Scalar(ScalarValue::Int64(Some(v))) if *v > 0 => Ok(*v),
        other => exec_err!("{name} must be a positive Int64 literal, got {other:?}"),
    }
}

impl ScalarUDFImpl for WindowListUdf {
    fn name(&self) -> &str {
        match self.list {
            WindowList::HopStarts => "hop_window_starts",
            WindowList::CumulateEnds => "cumulate_window_ends",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        match arg_types {
            [time @ DataType::Timestamp(..), DataType::Int64, DataType::Int64] => {
                Ok(DataType::List(FieldRef::new(Field::new_list_field(time.clone(), false))))
            }
            other => plan_err!("{} takes (timestamp, bigint, bigint), got {other:?}", self.name()),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [time, first, size] = args.args.as_slice() else {
            return exec_err!("{} takes three arguments", self.name());
        };
        let first = size_argument(first, "slide or step")?;
        let size = size_argument(size, "size")?;
        let times = time.to_array(args.number_rows)?;
        let (values, nulls) = timestamp_values(times.as_ref())?;
        let (offsets, bounds) = match self.list {
            WindowList::HopStarts => hop_starts(values, nulls, first, size)?,
            WindowList::CumulateEnds => cumulate_ends(values, nulls, first, size)?,
        };
        let field = FieldRef::new(Field::new_list_field(times.data_type().clone(), false));
        let bounds = timestamp_array(times.data_type(), bounds, None);
        Ok(ColumnarValue::Array(Arc::new(ListArray::try_new(field, offsets, bounds, None)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists(offsets: &OffsetBuffer<i32>, values: &ScalarBuffer<i64>) -> Vec<Vec<i64>> {
        offsets.windows(2).map(|w| values[w[0] as usize..w[1] as usize].to_vec()).collect()
    }

    #[test]
    fn floor_to_bins_before_the_epoch_downwards() {
        assert_eq!(floor_to(7, 5, 0), 5);
        assert_eq!(floor_to(5, 5, 0), 5);
        assert_eq!(floor_to(-1, 5, 0), -5);
        assert_eq!(floor_to(-5, 5, 0), -5);
        assert_eq!(floor_to(7, 5, 1), 6);
        assert_eq!(floor_to(0, 5, 1), -4);
        assert_eq!(floor_to(7, 5, -1), 4);
    }

    #[test]
    fn tumble_starts_floor_to_the_aligned_window() {
        assert_eq!(tumble_starts(&[0, 9, 10, -1, 25], 10, 0).as_ref(), &[0, 0, 10, -10, 20]);
        assert_eq!(tumble_starts(&[0, 9, 10, 25], 10, 5).as_ref(), &[-5, 5, 5, 25]);
    }

    #[test]
    fn hop_windows_overlap_and_hold_their_event() {
        let times = [7, 5, 4, -1, 0];
        let (offsets, values) = hop_starts(&times, None, 5, 10).unwrap();
        assert_eq!(lists(&offsets, &values), vec![vec![0, 5], vec![0, 5], vec![-5, 0], vec![-10, -5], vec![-5, 0]]);
    }

    #[test]
    fn hop_with_size_not_a_multiple_of_slide_varies_the_count() {
        // size 10, slide 4: windows [0,10) [4,14) [8,18) hold 9; [-4,6) does not.
        let (offsets, values) = hop_starts(&[9, 4], None, 4, 10).unwrap();
        assert_eq!(lists(&offsets, &values), vec![vec![0, 4, 8], vec![-4, 0, 4]]);
        for (t, starts) in [9i64, 4].iter().zip(lists(&offsets, &values)) {
            assert!(starts.iter().all(|s| s <= t && *t < s + 10));
        }
    }

    #[test]
    fn hop_with_slide_equal_to_size_is_tumble() {
        let (offsets, values) = hop_starts(&[3, 10, 19], None, 10, 10).unwrap();
        assert_eq!(lists(&offsets, &values), vec![vec![0], vec![10], vec![10]]);
    }

    #[test]
    fn null_times_get_no_window() {
        let nulls = NullBuffer::from(vec![true, false, true]);
        let (offsets, values) = hop_starts(&[1, 2, 3], Some(&nulls), 5, 10).unwrap();
        assert_eq!(lists(&offsets, &values), vec![vec![-5, 0], vec![], vec![-5, 0]]);
        let (offsets, values) = cumulate_ends(&[1, 2, 3], Some(&nulls), 5, 10).unwrap();
        assert_eq!(lists(&offsets, &values), vec![vec![5, 10], vec![], vec![5, 10]]);
    }

    #[test]
    fn cumulate_windows_grow_by_step_up_to_size() {
        // size 60, step 20: windows [0,20) [0,40) [0,60), then [60,80)...
        let times = [0, 19, 20, 59, 60, 125, -1];
        let (offsets, values) = cumulate_ends(&times, None, 20, 60).unwrap();
        assert_eq!(
            lists(&offsets, &values),
            vec![
                vec![20, 40, 60],
                vec![20, 40, 60],
                vec![40, 60],
                vec![60],
                vec![80, 100, 120],
                vec![140, 160, 180],
                vec![0],
            ]
        );
    }

    #[test]
    fn udf_keeps_the_time_zone_and_unit() {
        let times: ArrayRef =
            Arc::new(PrimitiveArray::<TimestampMicrosecondType>::from(vec![7_000_000]).with_timezone("+02:00"));
        let udf = WindowListUdf::new(WindowList::HopStarts);
        let return_type = udf.return_type(&[times.data_type().clone(), DataType::Int64, DataType::Int64]).unwrap();
        let args = ScalarFunctionArgs {
            args: vec![
                ColumnarValue::Array(times.clone()),
                ColumnarValue::Scalar(ScalarValue::Int64(Some(5_000_000))),
                ColumnarValue::Scalar(ScalarValue::Int64(Some(10_000_000))),
            ],
            arg_fields: vec![],
            number_rows: 1,
            return_field: FieldRef::new(Field::new("w", return_type.clone(), true)),
            config_options: Default::default(),
        };
        let ColumnarValue::Array(result) = udf.invoke_with_args(args).unwrap() else {
            panic!("an array argument gives an array result")
        };
        assert_eq!(result.data_type(), &return_type);
        let list = result.as_list::<i32>();
        let starts = list.value(0);
        let starts = starts.as_primitive::<TimestampMicrosecondType>();
        assert_eq!(starts.values().as_ref(), &[0, 5_000_000]);
        assert_eq!(starts.timezone(), Some("+02:00"));
    }
}

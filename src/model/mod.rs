//! model/: models learnt from the lake in SQL (`CREATE MODEL`), their versions and files,
//! and scoring with them (`predict()`, predict.rs).
//!
//! ```sql
//! CREATE MODEL fraud WITH (model_type = 'boosted_tree_classifier', label = 'is_fraud',
//!     split_column = 'ts', test_fraction = 0.2, gap = '7 days', class_weight = 'balanced')
//!   AS SELECT amount, new_device, ..., is_fraud, ts FROM transactions_history ...;
//! ALTER MODEL fraud SET ACTIVE VERSION 1;
//! DROP MODEL [IF EXISTS] fraud;
//! SELECT predict('fraud', amount => amount, new_device => new_device, ...) FROM ...;
//! ```
//!
//! **Features** are the query's columns other than the label and the split column, by
//! name: numbers (integers, floats, decimals; as float8) and booleans (as 0/1); NULL is
//! a missing value. Text and other types are refused (0A000): encode categories in the
//! query (`(country <> home_country) AS abroad`). The label is a boolean or a 0/1 number.
//!
//! **Split** (time-based, as labels arrive late): with `split_column` (a timestamp, date
//! or number column), the rows are ordered by it and the cutoff is the value at the
//! `1 - test_fraction` quantile (default 0.2); the test set is every row at or after the
//! cutoff, the training set every row before `cutoff - gap` (`gap` is a duration such as
//! '7 days' for times and dates, a number otherwise; default none), and rows in between
//! are in neither, so no training label comes from after the test period began minus the
//! gap. Without `split_column` every row trains and there are no test metrics. Metrics
//! (ROC AUC, average precision, log loss) are measured on the test set, unweighted.
//!
//! **Versions**: each CREATE MODEL of a name trains a new version (1, 2, ...) and
//! activates it; `ALTER MODEL m SET ACTIVE VERSION n` switches back; `predict()` scores with
//! the active version. Each version records the query as written, its options, the Delta
//! versions of the lake tables it read, and its metrics (`watershed.models`).
//!
//! **Files**, in `<ddl-dir>/models/`: `<name>.toml`, the model's catalog file (its
//! versions, the active one, each version's metadata), and per version `<name>.v<N>.model`,
//! the learnt parameters (TOML: `format = 1` and a `[model.Logistic]` or `[model.Trees]`
//! table; floats are written in Rust's shortest round-trip form and read back exactly, so
//! a model scores identically after a restart). A new version's model file is written
//! first, then the catalog file, each atomically (temporary file, fsync, rename): a crash
//! leaves either the old catalog file or the new one, never one naming a missing model
//! file. DROP removes the catalog file first, then the model files. Both are loaded at
//! start; a model file that no catalog file names is ignored.
//!
//! The learners are our own (logistic.rs, trees.rs) rather than a crate's: forust-ml 0.8,
//! the pure-Rust gradient-boosting crate that builds here, brings rayon, crossbeam, a
//! second thiserror, and turns on serde_json's `float_roundtrip` feature for the whole
//! build, which rebuilds serde_json and everything above it (datafusion, deltalake);
//! linfa-logistic brings ndarray and argmin. Each learner is a few hundred lines, tested
//! against known answers.

pub mod logistic;
pub mod metrics;
pub mod predict;
#[cfg(test)]
mod tests;
pub mod trees;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, Schema};
use serde::{Deserialize, Serialize};

use crate::error::{WsError, WsResult, sqlstate};

/// Values (rows times columns) one training may hold in memory: 250M float8s are 2 GB.
pub const TRAIN_VALUES_MAX: usize = 250_000_000;
/// Features a model may have (a logistic regression solves a square system of this size).
pub const FEATURES_MAX: usize = 1_000;
/// Versions one model keeps; a CREATE MODEL beyond is refused (drop the model first).
pub const VERSIONS_MAX: u32 = 1_000;

/// A learner's failure to produce a model (a singular system, divergence).
#[derive(Debug)]
pub enum ModelError {
    Numeric(String),
}

impl From<ModelError> for WsError {
    fn from(error: ModelError) -> WsError {
        match error {
            ModelError::Numeric(message) => {
                WsError::new(sqlstate::DATA_EXCEPTION, format!("training failed: {message}"))
            }
        }
    }
}

/// Training data, column-major: one Vec per feature (NaN = NULL), labels as 0/1, and the
/// split column's values (empty without one).
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub features: Vec<Vec<f64>>,
    pub labels: Vec<f64>,
    pub split: Vec<f64>,
}

/// What a feature is, for matching a `predict()` call's arguments by name and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureKind {
    Numeric,
    Boolean,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feature {
    pub name: String,
    pub kind: FeatureKind,
    /// The PostgreSQL type name of the query's column (`int8`, `numeric`, `bool`...).
    pub sql_type: String,
}

/// PostgreSQL's name of an Arrow type, and whether it can be a feature.
fn feature_kind(data_type: &DataType) -> Option<(FeatureKind, &'static str)> {
    Some(match data_type {
        DataType::Boolean => (FeatureKind::Boolean, "bool"),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => (FeatureKind::Numeric, "int2"),
        DataType::Int32 | DataType::UInt16 => (FeatureKind::Numeric, "int4"),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => (FeatureKind::Numeric, "int8"),
        DataType::Float16 | DataType::Float32 => (FeatureKind::Numeric, "float4"),
        DataType::Float64 => (FeatureKind::Numeric, "float8"),
        DataType::Decimal32(..) | DataType::Decimal64(..) | DataType::Decimal128(..) | DataType::Decimal256(..) => {
            (FeatureKind::Numeric, "numeric")
        }
        _ => return None,
    })
}

/// The learnt parameters of one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Learned {
    Logistic(logistic::Logistic),
    Trees(trees::Trees),
}

impl Learned {
    pub fn score(&self, features: &[f64]) -> f64 {
        match self {
            Learned::Logistic(model) => model.score(features),
            Learned::Trees(model) => model.score(features),
        }
    }
}

/// `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelType {
    LogisticReg,
    BoostedTreeClassifier,
}

impl ModelType {
    pub fn sql(self) -> &'static str {
        match self {
            ModelType::LogisticReg => "logistic_reg",
            ModelType::BoostedTreeClassifier => "boosted_tree_classifier",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClassWeight {
    None,
    /// Positives weigh negatives / positives of the training set.
    Balanced,
    Positive(f64),
}

/// The options of CREATE MODEL, checked.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub model_type: ModelType,
    pub label: String,
    pub split_column: Option<String>,
    pub test_fraction: f64,
    pub gap: Option<String>,
    pub class_weight: ClassWeight,
    pub l2: f64,
    pub max_iterations: u32,
    pub num_trees: u32,
    pub learning_rate: f64,
    pub max_depth: u32,
    pub min_child_weight: f64,
    pub max_bins: u32,
}

/// Every option CREATE MODEL takes.
pub const OPTIONS: [&str; 13] = [
    "model_type",
    "label",
    "split_column",
    "test_fraction",
    "gap",
    "class_weight",
    "l2",
    "max_iterations",
    "num_trees",
    "learning_rate",
    "max_depth",
    "min_child_weight",
    "max_bins",
];

fn invalid(message: impl Into<String>) -> WsError {
    WsError::new(sqlstate::INVALID_PARAMETER_VALUE, message)
}

impl TrainOptions {
    pub fn parse(options: &BTreeMap<String, String>) -> WsResult<TrainOptions> {
        if let Some(unknown) = options.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
            return Err(invalid(format!("CREATE MODEL has no option {unknown:?}; options are {}", OPTIONS.join(", "))));
        }
        let get = |key: &str| options.get(key).map(|v| v.trim());
        let number = |key: &str, default: f64, valid: &dyn Fn(f64) -> bool, what: &str| -> WsResult<f64> {
            match get(key) {
                None => Ok(default),
                Some(text) => text
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && valid(*v))
                    .ok_or_else(|| invalid(format!("{key} must be {what}, got {text:?}"))),
            }
        };
        let whole = |key: &str, default: u32, max: u32| -> WsResult<u32> {
            match get(key) {
                None => Ok(default),
                Some(text) => text
                    .parse::<u32>()
                    .ok()
                    .filter(|v| (1..=max).contains(v))
                    .ok_or_else(|| invalid(format!("{key} must be a whole number from 1 to {max}, got {text:?}"))),
            }
        };
        let model_type = match get("model_type").map(str::to_ascii_lowercase).as_deref() {
            Some("logistic_reg") => ModelType::LogisticReg,
            Some("boosted_tree_classifier") => ModelType::BoostedTreeClassifier,
            Some(other) => {
                return Err(invalid(format!(
                    "model_type must be 'logistic_reg' or 'boosted_tree_classifier', got {other:?}"
                )));
            }
            None => {
                return Err(invalid(
                    "CREATE MODEL needs WITH (model_type = 'logistic_reg' | 'boosted_tree_classifier')",
                ));
            }
        };
        let label = get("label")
            .map(|l| l.to_lowercase())
            .filter(|l| !l.is_empty())
            .ok_or_else(|| invalid("CREATE MODEL needs WITH (label = 'column')"))?;
        let split_column = get("split_column").map(str::to_lowercase);
        let test_fraction = number("test_fraction", 0.2, &|v| v > 0.0 && v < 1.0, "a fraction between 0 and 1")?;
        if split_column.is_none() && (options.contains_key("test_fraction") || options.contains_key("gap")) {
            return Err(invalid("test_fraction and gap need split_column (the column the test period is cut on)"));
        }
        let class_weight = match get("class_weight").map(str::to_ascii_lowercase).as_deref() {
            None | Some("none") => ClassWeight::None,
            Some("balanced") => ClassWeight::Balanced,
            Some(text) => ClassWeight::Positive(
                text.parse::<f64>().ok().filter(|w| w.is_finite() && *w > 0.0).ok_or_else(|| {
                    invalid(format!("class_weight must be 'none', 'balanced' or the positives' weight, got {text:?}"))
                })?,
            ),
        };
        Ok(TrainOptions {
            model_type,
            label,
            split_column,
            test_fraction,
            gap: get("gap").map(str::to_string),
            class_weight,
            l2: number("l2", 1.0, &|v| v >= 0.0, "a number >= 0")?,
            max_iterations: whole("max_iterations", 25, 1_000)?,
            num_trees: whole("num_trees", 200, 10_000)?,
            learning_rate: number("learning_rate", 0.1, &|v| v > 0.0 && v <= 1.0, "a number in (0, 1]")?,
            max_depth: whole("max_depth", 6, 16)?,
            min_child_weight: number("min_child_weight", 1.0, &|v| v >= 0.0, "a number >= 0")?,
            max_bins: whole("max_bins", 64, 255)?.max(2),
        })
    }
}

/// How the query's columns are used: which are features, and where label and split are.
#[derive(Debug, Clone)]
pub struct Layout {
    pub features: Vec<Feature>,
    feature_columns: Vec<usize>,
    label_column: usize,
    split_column: Option<(usize, SplitUnit)>,
}

/// The split column's type, which says what the gap is in.
#[derive(Debug, Clone, Copy, PartialEq)]
enum SplitUnit {
    /// Microseconds (timestamps of any unit are cast to microseconds).
    Micros,
    Days,
    Number,
}

impl Layout {
    /// Checks the query's columns against the options.
    pub fn new(schema: &Schema, options: &TrainOptions) -> WsResult<Layout> {
        let find = |name: &str, what: &str| {
            schema.index_of(name).map_err(|_| {
                WsError::new(
                    sqlstate::UNDEFINED_COLUMN,
                    format!("the {what} column \"{name}\" is not a column of the model's query"),
                )
            })
        };
        let label_column = find(&options.label, "label")?;
        let label_type = schema.field(label_column).data_type();
        if feature_kind(label_type).is_none() {
            return Err(WsError::new(
                sqlstate::DATATYPE_MISMATCH,
                format!("the label \"{}\" must be a boolean or a 0/1 number, not {label_type}", options.label),
            ));
        }
        let split_column = match &options.split_column {
            None => None,
            Some(name) => {
                let index = find(name, "split")?;
                let unit = match schema.field(index).data_type() {
                    DataType::Timestamp(..) => SplitUnit::Micros,
                    DataType::Date32 | DataType::Date64 => SplitUnit::Days,
                    other if matches!(feature_kind(other), Some((FeatureKind::Numeric, _))) => SplitUnit::Number,
                    other => {
                        return Err(WsError::new(
                            sqlstate::DATATYPE_MISMATCH,
                            format!("the split column \"{name}\" must be a timestamp, date or number, not {other}"),
                        ));
                    }
                };
                Some((index, unit))
            }
        };
        let mut features = Vec::new();
        let mut feature_columns = Vec::new();
        for (index, field) in schema.fields().iter().enumerate() {
            if index == label_column || split_column.is_some_and(|(s, _)| s == index) {
                continue;
            }
            let Some((kind, sql_type)) = feature_kind(field.data_type()) else {
                return Err(WsError::new(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!(
                        "feature \"{}\" has type {}; features are numbers or booleans: encode categories in the \
                         query, e.g. (country <> home_country) AS abroad",
                        field.name(),
                        field.data_type()
                    ),
                ));
            };
            if features.iter().any(|f: &Feature| f.name == *field.name()) {
                return Err(invalid(format!("feature \"{}\" is named twice in the model's query", field.name())));
            }
            features.push(Feature { name: field.name().clone(), kind, sql_type: sql_type.to_string() });
            feature_columns.push(index);
        }
        if features.is_empty() {
            return Err(invalid("the model's query has no feature column besides the label and the split column"));
        }
        if features.len() > FEATURES_MAX {
            return Err(WsError::new(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!("a model has at most {FEATURES_MAX} features; the query has {}", features.len()),
            ));
        }
        Ok(Layout { features, feature_columns, label_column, split_column })
    }

    /// Appends one batch of the query's rows, refusing (54000) before the data would
    /// hold more than TRAIN_VALUES_MAX values.
    pub fn append(&self, data: &mut Dataset, batch: &RecordBatch) -> WsResult<()> {
        let columns = self.features.len() + 2;
        let rows = data.labels.len() + batch.num_rows();
        if rows.saturating_mul(columns) > TRAIN_VALUES_MAX {
            return Err(WsError::new(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!(
                    "the training set would hold more than {TRAIN_VALUES_MAX} values ({rows} rows of {columns} \
                     columns); sample or aggregate it in the query"
                ),
            ));
        }
        if data.features.is_empty() {
            data.features = vec![Vec::new(); self.features.len()];
        }
        for (slot, &index) in self.feature_columns.iter().enumerate() {
            data.features[slot].extend(floats(batch.column(index))?.iter().map(|v| v.unwrap_or(f64::NAN)));
        }
        for (row, label) in floats(batch.column(self.label_column))?.into_iter().enumerate() {
            match label {
                Some(value) if value == 0.0 || value == 1.0 => data.labels.push(value),
                Some(value) => {
                    return Err(WsError::new(
                        sqlstate::DATA_EXCEPTION,
                        format!("the label must be 0 or 1 (or a boolean); a row has {value}"),
                    ));
                }
                None => {
                    return Err(WsError::new(
                        sqlstate::NULL_VALUE_NOT_ALLOWED,
                        format!("the label is NULL in row {} of the model's query", data.labels.len() + row + 1),
                    ));
                }
            }
        }
        if let Some((index, unit)) = self.split_column {
            let column = batch.column(index);
            let values: Vec<Option<f64>> = match unit {
                SplitUnit::Micros => {
                    let micros =
                        cast(column, &DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None))?;
                    let micros = cast(&micros, &DataType::Int64)?;
                    micros.as_primitive::<Int64Type>().iter().map(|v| v.map(|v| v as f64)).collect()
                }
                SplitUnit::Days => {
                    let days = cast(&cast(column, &DataType::Date32)?, &DataType::Int32)?;
                    cast(&days, &DataType::Float64)?.as_primitive::<Float64Type>().iter().collect()
                }
                SplitUnit::Number => floats(column)?,
            };
            for value in values {
                data.split.push(value.ok_or_else(|| {
                    WsError::new(
                        sqlstate::NULL_VALUE_NOT_ALLOWED,
                        "the split column is NULL in a row of the model's query; filter such rows out",
                    )
                })?);
            }
        }
        Ok(())
    }

    /// The gap in the split column's unit.
    fn gap(&self, options: &TrainOptions) -> WsResult<f64> {
        let (Some(text), Some((_, unit))) = (&options.gap, self.split_column) else { return Ok(0.0) };
        let value = match unit {
            SplitUnit::Micros => crate::stream::spec::parse_duration_ms(text)? as f64 * 1_000.0,
            SplitUnit::Days => {
                let ms = crate::stream::spec::parse_duration_ms(text)?;
                if ms % 86_400_000 != 0 {
                    return Err(invalid(format!("the gap over a date column is whole days, got {text:?}")));
                }
                (ms / 86_400_000) as f64
            }
            SplitUnit::Number => text
                .parse::<f64>()
                .ok()
                .filter(|g| g.is_finite() && *g >= 0.0)
                .ok_or_else(|| invalid(format!("the gap over a number column is a number >= 0, got {text:?}")))?,
        };
        Ok(value)
    }

    /// How the cutoff reads to a person: a timestamp, a date, or the number.
    fn render_split_value(&self, value: f64) -> String {
        match self.split_column.map(|(_, unit)| unit) {
            Some(SplitUnit::Micros) => chrono::DateTime::from_timestamp_micros(value as i64)
                .map_or_else(|| value.to_string(), |t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
            Some(SplitUnit::Days) => chrono::DateTime::from_timestamp(value as i64 * 86_400, 0)
                .map_or_else(|| value.to_string(), |t| t.format("%Y-%m-%d").to_string()),
            _ => value.to_string(),
        }
    }
}

/// A column as nullable float8s (booleans as 0/1).
fn floats(column: &ArrayRef) -> WsResult<Vec<Option<f64>>> {
    let column = if column.data_type() == &DataType::Boolean { cast(column, &DataType::Int8)? } else { column.clone() };
    let values = cast(&column, &DataType::Float64)?;
    Ok(values.as_primitive::<Float64Type>().iter().collect())
}

/// What training measured, for `watershed.models`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    pub train_rows: u64,
    pub train_positives: u64,
    pub test_rows: u64,
    pub test_positives: u64,
    /// The first split value of the test period, as text; None without a split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roc_auc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_precision: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_loss: Option<f64>,
}

/// Splits, weighs, fits and evaluates: CPU work, run off the async runtime.
pub fn train(data: &Dataset, layout: &Layout, options: &TrainOptions) -> WsResult<(Learned, Evaluation)> {
    let n = data.labels.len();
    if n == 0 {
        return Err(WsError::new(
            sqlstate::DATA_EXCEPTION,
            "the training set is empty: the model's query returned no rows",
        ));
    }
    let (train_rows, test_rows, test_from) = if layout.split_column.is_some() {
        let mut sorted = data.split.clone();
        sorted.sort_by(f64::total_cmp);
        let at = (((1.0 - options.test_fraction) * n as f64).floor() as usize).min(n - 1);
        let cutoff = sorted[at];
        let gap = layout.gap(options)?;
        let train: Vec<usize> = (0..n).filter(|&i| data.split[i] < cutoff - gap).collect();
        let test: Vec<usize> = (0..n).filter(|&i| data.split[i] >= cutoff).collect();
        (train, test, Some(layout.render_split_value(cutoff)))
    } else {
        ((0..n).collect(), Vec::new(), None)
    };
    if train_rows.is_empty() {
        return Err(WsError::new(
            sqlstate::DATA_EXCEPTION,
            format!(
                "the training set is empty: no row of the {n} is before the test period (from {}) minus the gap",
                test_from.as_deref().unwrap_or("?")
            ),
        ));
    }
    let positives = train_rows.iter().filter(|&&i| data.labels[i] == 1.0).count();
    if positives == 0 || positives == train_rows.len() {
        let class = if positives == 0 { "0 (false)" } else { "1 (true)" };
        return Err(WsError::new(
            sqlstate::DATA_EXCEPTION,
            format!(
                "the label \"{}\" has one class in the training set: all {} rows are {class}",
                options.label,
                train_rows.len()
            ),
        ));
    }
    let positive_weight = match options.class_weight {
        ClassWeight::None => 1.0,
        ClassWeight::Balanced => (train_rows.len() - positives) as f64 / positives as f64,
        ClassWeight::Positive(w) => w,
    };
    let weights: Vec<f64> =
        train_rows.iter().map(|&i| if data.labels[i] == 1.0 { positive_weight } else { 1.0 }).collect();
    let learned = match options.model_type {
        ModelType::LogisticReg => {
            let params = logistic::Params { l2: options.l2, max_iterations: options.max_iterations };
            Learned::Logistic(logistic::Logistic::fit(data, &train_rows, &weights, &params)?)
        }
        ModelType::BoostedTreeClassifier => {
            let params = trees::Params {
                num_trees: options.num_trees,
                learning_rate: options.learning_rate,
                max_depth: options.max_depth,
                min_child_weight: options.min_child_weight,
                l2: options.l2,
                max_bins: options.max_bins,
            };
            Learned::Trees(trees::Trees::fit(data, &train_rows, &weights, &params)?)
        }
    };
    let mut row = vec![0.0; data.features.len()];
    let scores: Vec<f64> = test_rows
        .iter()
        .map(|&i| {
            for (slot, column) in row.iter_mut().zip(&data.features) {
                *slot = column[i];
            }
            learned.score(&row)
        })
        .collect();
    let labels: Vec<bool> = test_rows.iter().map(|&i| data.labels[i] == 1.0).collect();
    let evaluation = Evaluation {
        train_rows: train_rows.len() as u64,
        train_positives: positives as u64,
        test_rows: test_rows.len() as u64,
        test_positives: labels.iter().filter(|l| **l).count() as u64,
        test_from,
        roc_auc: metrics::roc_auc(&scores, &labels),
        average_precision: metrics::average_precision(&scores, &labels),
        log_loss: metrics::log_loss(&scores, &labels),
    };
    Ok((learned, evaluation))
}

/// One version of a model, as its catalog file records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionInfo {
    pub version: u32,
    pub model_type: String,
    /// Microseconds since the epoch.
    pub trained_at_us: i64,
    pub training_ms: u64,
    /// The query as written in CREATE MODEL.
    pub query: String,
    pub label: String,
    /// The model file, relative to the models directory.
    pub file: String,
    // Tables last: TOML writes plain values before tables.
    pub options: BTreeMap<String, String>,
    /// Delta version of each lake table the query read, when training planned it.
    pub lake_versions: BTreeMap<String, u64>,
    pub evaluation: Evaluation,
    pub features: Vec<Feature>,
}

/// A model's catalog file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelToml {
    name: String,
    active: u32,
    #[serde(rename = "version")]
    versions: Vec<VersionInfo>,
}

/// A model file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamsToml {
    format: u32,
    model: Learned,
}

const PARAMS_FORMAT: u32 = 1;

/// A model with its versions loaded.
#[derive(Debug, Clone)]
struct Model {
    def: ModelToml,
    learned: BTreeMap<u32, Arc<Learned>>,
}

/// The active version of a model, for scoring.
#[derive(Debug, Clone)]
pub struct Active {
    pub version: u32,
    pub features: Vec<Feature>,
    pub learned: Arc<Learned>,
}

/// One row of `watershed.models`.
#[derive(Debug, Clone)]
pub struct VersionRow {
    pub name: String,
    pub active: bool,
    pub info: VersionInfo,
}

/// Every model, shared by sessions (CREATE/ALTER/DROP MODEL), `predict()` and the system
/// view. Changes are serialized by `ddl`; readers take the `models` lock briefly.
#[derive(Debug)]
pub struct ModelRegistry {
    dir: PathBuf,
    models: RwLock<BTreeMap<String, Model>>,
    ddl: tokio::sync::Mutex<()>,
}

fn io(action: &str, path: &Path, error: std::io::Error) -> WsError {
    WsError::new(sqlstate::IO_ERROR, format!("{action} {}: {error}", path.display()))
}

pub fn undefined_model(name: &str) -> WsError {
    WsError::new(sqlstate::UNDEFINED_OBJECT, format!("model \"{name}\" does not exist"))
}

impl ModelRegistry {
    /// A registry over `dir` (`<ddl-dir>/models`), empty until [`ModelRegistry::load`].
    pub fn new(dir: PathBuf) -> ModelRegistry {
        ModelRegistry { dir, models: RwLock::new(BTreeMap::new()), ddl: tokio::sync::Mutex::new(()) }
    }

    /// Reads every model's catalog file and model files (F0000 naming a broken one).
    pub fn load(&self) -> WsResult<()> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(io("reading models dir", &self.dir, error)),
        };
        let mut paths: Vec<PathBuf> = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| io("reading models dir", &self.dir, e))?.path();
            if path.extension().is_some_and(|ext| ext == "toml") {
                paths.push(path);
            }
        }
        paths.sort();
        let broken = |path: &Path, message: String| {
            WsError::new(sqlstate::CONFIG_FILE_ERROR, format!("{}: {message}", path.display()))
        };
        let mut models = BTreeMap::new();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|e| io("reading", &path, e))?;
            let def: ModelToml =
                toml::from_str(&text).map_err(|error| crate::catalog::files::toml_error(&path, &text, &error))?;
            if path.file_stem().and_then(|s| s.to_str()) != Some(def.name.as_str()) {
                return Err(broken(&path, format!("the file of model {:?} must be named {}.toml", def.name, def.name)));
            }
            if !def.versions.iter().any(|v| v.version == def.active) {
                return Err(broken(&path, format!("active version {} is not among its versions", def.active)));
            }
            let mut learned = BTreeMap::new();
            for info in &def.versions {
                let file = self.dir.join(&info.file);
                let text = std::fs::read_to_string(&file).map_err(|e| {
                    broken(&path, format!("version {}: model file {}: {e}", info.version, file.display()))
                })?;
                let params: ParamsToml =
                    toml::from_str(&text).map_err(|error| crate::catalog::files::toml_error(&file, &text, &error))?;
                if params.format != PARAMS_FORMAT {
                    return Err(broken(&file, format!("model file format {} is not {PARAMS_FORMAT}", params.format)));
                }
                learned.insert(info.version, Arc::new(params.model));
            }
            models.insert(def.name.clone(), Model { def, learned });
        }
        *self.models.write().unwrap_or_else(|p| p.into_inner()) = models;
        Ok(())
    }

    fn catalog_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.toml"))
    }

    /// The active version of `name`.
    pub fn active(&self, name: &str) -> Option<Active> {
        let models = self.models.read().unwrap_or_else(|p| p.into_inner());
        let model = models.get(name)?;
        let info = model.def.versions.iter().find(|v| v.version == model.def.active)?;
        Some(Active {
            version: info.version,
            features: info.features.clone(),
            learned: model.learned.get(&info.version)?.clone(),
        })
    }

    /// Every version of every model, by name and version.
    pub fn rows(&self) -> Vec<VersionRow> {
        let models = self.models.read().unwrap_or_else(|p| p.into_inner());
        models
            .values()
            .flat_map(|model| {
                model.def.versions.iter().map(|info| VersionRow {
                    name: model.def.name.clone(),
                    active: info.version == model.def.active,
                    info: info.clone(),
                })
            })
            .collect()
    }

    /// Adds a trained version of `name` (creating the model) and activates it; returns
    /// its number. Writes the model file, then the catalog file; on any error neither is
    /// left behind and the registry is unchanged.
    pub async fn add_version(&self, name: &str, mut info: VersionInfo, learned: Learned) -> WsResult<u32> {
        crate::catalog::files::check_object_name(name).map_err(WsError::unsupported)?;
        let _ddl = self.ddl.lock().await;
        let existing = self.models.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned();
        let version = existing.as_ref().and_then(|m| m.def.versions.iter().map(|v| v.version).max()).unwrap_or(0) + 1;
        if version > VERSIONS_MAX {
            return Err(WsError::new(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!("model \"{name}\" has {VERSIONS_MAX} versions, the most it may keep; drop it to train anew"),
            ));
        }
        info.version = version;
        info.file = format!("{name}.v{version}.model");
        let mut def = existing.as_ref().map_or_else(
            || ModelToml { name: name.to_string(), active: version, versions: Vec::new() },
            |m| m.def.clone(),
        );
        def.active = version;
        def.versions.push(info.clone());
        std::fs::create_dir_all(&self.dir).map_err(|e| io("creating models dir", &self.dir, e))?;
        let params = ParamsToml { format: PARAMS_FORMAT, model: learned };
        let params_text =
            toml::to_string(&params).map_err(|e| WsError::internal(format!("model serialization: {e}")))?;
        let model_path = self.dir.join(&info.file);
        crate::catalog::files::write_text_atomic(&model_path, &params_text, false)?;
        let written = toml::to_string_pretty(&def)
            .map_err(|e| WsError::internal(format!("model catalog serialization: {e}")))
            .and_then(|text| {
                let text = format!("# Written by watershed (CREATE MODEL); edit while the server is stopped.\n{text}");
                crate::catalog::files::write_text_atomic(&self.catalog_path(name), &text, false)
            });
        if let Err(error) = written {
            // The catalog file is the old one (or none): the new model file names nothing.
            let _ = std::fs::remove_file(&model_path);
            return Err(error);
        }
        let mut models = self.models.write().unwrap_or_else(|p| p.into_inner());
        let mut loaded = existing.map(|m| m.learned).unwrap_or_default();
        loaded.insert(version, Arc::new(params.model));
        models.insert(name.to_string(), Model { def, learned: loaded });
        Ok(version)
    }

    /// `ALTER MODEL name SET ACTIVE VERSION version`.
    pub async fn set_active(&self, name: &str, version: u32) -> WsResult<()> {
        let _ddl = self.ddl.lock().await;
        let mut def = {
            let models = self.models.read().unwrap_or_else(|p| p.into_inner());
            models.get(name).ok_or_else(|| undefined_model(name))?.def.clone()
        };
        if !def.versions.iter().any(|v| v.version == version) {
            let known: Vec<String> = def.versions.iter().map(|v| v.version.to_string()).collect();
            return Err(WsError::new(
                sqlstate::UNDEFINED_OBJECT,
                format!("model \"{name}\" has no version {version}; its versions are {}", known.join(", ")),
            ));
        }
        def.active = version;
        let text =
            toml::to_string_pretty(&def).map_err(|e| WsError::internal(format!("model catalog serialization: {e}")))?;
        let text = format!("# Written by watershed (CREATE MODEL); edit while the server is stopped.\n{text}");
        crate::catalog::files::write_text_atomic(&self.catalog_path(name), &text, false)?;
        let mut models = self.models.write().unwrap_or_else(|p| p.into_inner());
        if let Some(model) = models.get_mut(name) {
            model.def.active = version;
        }
        Ok(())
    }

    /// `DROP MODEL name`: false when there is none.
    pub async fn drop_model(&self, name: &str) -> WsResult<bool> {
        let _ddl = self.ddl.lock().await;
        let Some(model) = self.models.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned() else {
            return Ok(false);
        };
        let path = self.catalog_path(name);
        std::fs::remove_file(&path).map_err(|e| io("removing", &path, e))?;
        self.models.write().unwrap_or_else(|p| p.into_inner()).remove(name);
        for info in &model.def.versions {
            // Named by no catalog file any more: a file left here is ignored at start.
            let _ = std::fs::remove_file(self.dir.join(&info.file));
        }
        Ok(true)
    }
}

/// `watershed.models`: one row per version of each model.
pub fn models_view(registry: Arc<ModelRegistry>) -> crate::stream::system::SystemView {
    use datafusion::arrow::array::{BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{Field, TimeUnit};
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("version", DataType::Int64, false),
        Field::new("active", DataType::Boolean, false),
        Field::new("model_type", DataType::Utf8, false),
        Field::new("trained_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        Field::new("training_ms", DataType::Int64, false),
        Field::new("query", DataType::Utf8, false),
        Field::new("lake_versions", DataType::Utf8, false),
        Field::new("label", DataType::Utf8, false),
        Field::new("features", DataType::Utf8, false),
        Field::new("train_rows", DataType::Int64, false),
        Field::new("train_positives", DataType::Int64, false),
        Field::new("test_rows", DataType::Int64, false),
        Field::new("test_positives", DataType::Int64, false),
        Field::new("test_from", DataType::Utf8, true),
        Field::new("roc_auc", DataType::Float64, true),
        Field::new("average_precision", DataType::Float64, true),
        Field::new("log_loss", DataType::Float64, true),
    ]));
    crate::stream::system::SystemView::new(schema, move |schema| {
        let rows = registry.rows();
        let ints =
            |f: &dyn Fn(&VersionRow) -> i64| -> ArrayRef { Arc::new(Int64Array::from_iter_values(rows.iter().map(f))) };
        let floats = |f: &dyn Fn(&Evaluation) -> Option<f64>| -> ArrayRef {
            Arc::new(Float64Array::from_iter(rows.iter().map(|r| f(&r.info.evaluation))))
        };
        let texts = |f: &dyn Fn(&VersionRow) -> String| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
        };
        let columns: Vec<ArrayRef> = vec![
            texts(&|r| r.name.clone()),
            ints(&|r| r.info.version as i64),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.active)))),
            texts(&|r| r.info.model_type.clone()),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.info.trained_at_us))
                    .with_timezone("UTC"),
            ),
            ints(&|r| r.info.training_ms as i64),
            texts(&|r| r.info.query.clone()),
            texts(&|r| r.info.lake_versions.iter().map(|(t, v)| format!("{t}@{v}")).collect::<Vec<_>>().join(", ")),
            texts(&|r| r.info.label.clone()),
            texts(&|r| {
                r.info.features.iter().map(|f| format!("{} {}", f.name, f.sql_type)).collect::<Vec<_>>().join(", ")
            }),
            ints(&|r| r.info.evaluation.train_rows as i64),
            ints(&|r| r.info.evaluation.train_positives as i64),
            ints(&|r| r.info.evaluation.test_rows as i64),
            ints(&|r| r.info.evaluation.test_positives as i64),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.info.evaluation.test_from.clone()))),
            floats(&|e| e.roc_auc),
            floats(&|e| e.average_precision),
            floats(&|e| e.log_loss),
        ];
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    })
}

/// The model's name as CREATE/DROP/ALTER MODEL and predict() take it.
pub fn check_name(name: &str) -> WsResult<()> {
    crate::catalog::files::check_object_name(name).map_err(WsError::unsupported)
}

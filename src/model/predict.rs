//! `predict(model, feature => expr, ...)`: the probability (float8) that a row is positive
//! by the model's active version, as a DataFusion scalar function.
//!
//! Features are matched by name and type, never by position. The SQL surface writes them
//! with PostgreSQL's named-argument notation (`amount => t.amount`), or as bare columns
//! (`t.amount` is the feature `amount`), and sql/model.rs rewrites the call into the form
//! DataFusion plans, `predict('m', named_struct('amount', t.amount, ...))`, which can also
//! be written directly: a struct's field names and types reach the function at plan time
//! (`return_field_from_args`), where a missing or extra feature (42703) or one of the
//! wrong type (42804) is refused, naming it, and an unknown model is 42704. DataFusion 55
//! resolves named arguments only against a function's fixed parameter names, and a
//! model's features are not fixed, hence the struct.
//!
//! The active version is looked up again for every batch, so a running query scores with
//! the version active when the batch is evaluated; its features are checked again then.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Float64Array, StructArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::{Active, FeatureKind, ModelRegistry, feature_kind, undefined_model};
use crate::error::{WsError, sqlstate};

pub const NAME: &str = "predict";

#[derive(Debug)]
pub struct Predict {
    registry: Arc<ModelRegistry>,
    signature: Signature,
}

impl PartialEq for Predict {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.registry, &other.registry)
    }
}

impl Eq for Predict {}

impl std::hash::Hash for Predict {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        NAME.hash(state);
    }
}

/// The function, bound to the engine's models.
pub fn udf(registry: Arc<ModelRegistry>) -> ScalarUDF {
    ScalarUDF::new_from_impl(Predict { registry, signature: Signature::variadic_any(Volatility::Volatile) })
}

fn external(error: WsError) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

fn model_name(value: Option<&ScalarValue>) -> Result<String, WsError> {
    match value.and_then(|v| v.try_as_str().flatten()) {
        Some(name) => Ok(name.to_string()),
        None => Err(WsError::new(
            sqlstate::INVALID_PARAMETER_VALUE,
            "predict's first argument is the model's name, a text constant: predict('model', feature => expr, ...)",
        )),
    }
}

/// Checks the call's features against the model's; returns, per model feature, the index
/// of the struct field that gives it.
fn match_features(name: &str, active: &Active, given: &Fields) -> Result<Vec<usize>, WsError> {
    let mut positions = Vec::with_capacity(active.features.len());
    for feature in &active.features {
        let Some((index, field)) = given.find(&feature.name) else {
            return Err(WsError::new(
                sqlstate::UNDEFINED_COLUMN,
                format!(
                    "model \"{name}\" (version {}) needs feature \"{}\" ({}), which the predict() call does not give",
                    active.version, feature.name, feature.sql_type
                ),
            ));
        };
        let kind = feature_kind(field.data_type()).map(|(kind, _)| kind);
        if kind != Some(feature.kind) {
            let wanted = match feature.kind {
                FeatureKind::Numeric => "a number",
                FeatureKind::Boolean => "a boolean",
            };
            return Err(WsError::new(
                sqlstate::DATATYPE_MISMATCH,
                format!(
                    "feature \"{}\" of model \"{name}\" is {wanted} ({}); the predict() call gives {}",
                    feature.name,
                    feature.sql_type,
                    field.data_type()
                ),
            ));
        }
        positions.push(index);
    }
    if let Some(extra) = given.iter().find(|f| !active.features.iter().any(|feature| feature.name == *f.name())) {
        let names: Vec<&str> = active.features.iter().map(|f| f.name.as_str()).collect();
        return Err(WsError::new(
            sqlstate::UNDEFINED_COLUMN,
            format!(
                "\"{}\" is not a feature of model \"{name}\" (version {}); its features are {}",
                extra.name(),
                active.version,
                names.join(", ")
            ),
        ));
    }
    Ok(positions)
}

/// Everything the plan-time and run-time checks share: the model and where its features are.
fn resolve(
    registry: &ModelRegistry,
    fields: &[FieldRef],
    name: Option<&ScalarValue>,
) -> Result<(String, Active, Vec<usize>), WsError> {
    if fields.len() != 2 {
        return Err(WsError::new(
            sqlstate::UNDEFINED_FUNCTION,
            "predict takes the model's name and its features: predict('model', feature => expr, ...)",
        ));
    }
    let name = model_name(name)?;
    let active = registry.active(&name).ok_or_else(|| undefined_model(&name))?;
    let DataType::Struct(given) = fields[1].data_type() else {
        return Err(WsError::new(
            sqlstate::DATATYPE_MISMATCH,
            format!(
                "predict's features are named: predict('{name}', feature => expr, ...) or predict('{name}', \
                 named_struct('feature', expr, ...)), not a {}",
                fields[1].data_type()
            ),
        ));
    };
    let positions = match_features(&name, &active, given)?;
    Ok((name, active, positions))
}

impl ScalarUDFImpl for Predict {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Float64)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let name = args.scalar_arguments.first().copied().flatten();
        resolve(&self.registry, args.arg_fields, name).map_err(external)?;
        Ok(Arc::new(Field::new(NAME, DataType::Float64, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let name = match &args.args[0] {
            ColumnarValue::Scalar(value) => Some(value.clone()),
            ColumnarValue::Array(_) => None,
        };
        let (_, active, positions) = resolve(&self.registry, &args.arg_fields, name.as_ref()).map_err(external)?;
        let rows = args.number_rows;
        let features = args.args[1].to_array(rows)?;
        let features = features
            .as_any()
            .downcast_ref::<StructArray>()
            .ok_or_else(|| DataFusionError::Internal("predict's features are a struct".into()))?;
        let columns: Vec<Vec<Option<f64>>> = positions
            .iter()
            .map(|&index| super::floats(features.column(index)).map_err(external))
            .collect::<DfResult<_>>()?;
        let mut row = vec![0.0; columns.len()];
        let scores: Float64Array = (0..rows)
            .map(|r| {
                if features.is_null(r) {
                    return None;
                }
                for (slot, column) in row.iter_mut().zip(&columns) {
                    *slot = column[r].unwrap_or(f64::NAN);
                }
                Some(active.learned.score(&row))
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(scores) as ArrayRef))
    }
}

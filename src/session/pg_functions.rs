//! PostgreSQL functions registered on each session's DataFusion context, beyond what
//! datafusion-pg-catalog provides: the ones that need the session (`current_setting`,
//! `set_config`, `pg_backend_pid`), `version()` in PostgreSQL's shape, and the catalog
//! helpers psql, JDBC and SQLAlchemy call (`pg_get_indexdef`, `obj_description`,
//! `pg_get_function_result`...).
//!
//! The catalog helpers answer what is true of this server: `pg_get_indexdef` prints our
//! indexes (catalog/indexes.rs), `pg_get_viewdef` our views' queries as written
//! (catalog/views.rs); there are no rules, triggers, comments or user-defined
//! functions, so the definition or description of any such object is NULL, which is also
//! what PostgreSQL returns for an OID it does not know.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int32Array, Int64Array, StringArray, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;

use super::roles::SessionRole;
use super::settings::{Settings, version_string};
use crate::catalog::{IndexRegistry, PlainViews};
use crate::error::{WsError, sqlstate};

type Body = Arc<dyn Fn(&[ArrayRef], usize) -> DfResult<ArrayRef> + Send + Sync>;

/// One function: a name, the argument shapes it accepts, and a row-wise body over arrays.
struct PgFunction {
    name: &'static str,
    signature: Signature,
    returns: DataType,
    body: Body,
}

impl std::fmt::Debug for PgFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgFunction").field("name", &self.name).finish()
    }
}

// DataFusion compares functions to deduplicate expressions; two instances are the same
// function only if they share a body (a session-bound body differs per session).
impl PartialEq for PgFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.body, &other.body)
    }
}

impl Eq for PgFunction {}

impl std::hash::Hash for PgFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for PgFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.returns.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let arrays: Vec<ArrayRef> = args.args.iter().map(|value| value.to_array(rows)).collect::<DfResult<_>>()?;
        Ok(ColumnarValue::Array((self.body)(&arrays, rows)?))
    }
}

fn function(
    name: &'static str,
    arities: &[usize],
    volatility: Volatility,
    returns: DataType,
    body: impl Fn(&[ArrayRef], usize) -> DfResult<ArrayRef> + Send + Sync + 'static,
) -> ScalarUDF {
    let shapes: Vec<TypeSignature> =
        arities.iter().map(|&n| if n == 0 { TypeSignature::Nullary } else { TypeSignature::Any(n) }).collect();
    let signature = match shapes.len() {
        1 => Signature::new(shapes.into_iter().next().expect("one shape"), volatility),
        _ => Signature::one_of(shapes, volatility),
    };
    ScalarUDF::new_from_impl(PgFunction { name, signature, returns, body: Arc::new(body) })
}

fn strings(array: &ArrayRef) -> DfResult<StringArray> {
    let utf8 = cast(array, &DataType::Utf8)?;
    Ok(utf8.as_any().downcast_ref::<StringArray>().expect("cast to Utf8 gives a StringArray").clone())
}

fn booleans(array: &ArrayRef) -> DfResult<BooleanArray> {
    let flags = cast(array, &DataType::Boolean)?;
    Ok(flags.as_any().downcast_ref::<BooleanArray>().expect("cast to Boolean gives a BooleanArray").clone())
}

fn external(error: WsError) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

/// Registers this module's functions on a session's context (replacing same-named ones
/// from DataFusion or datafusion-pg-catalog: `version`, `pg_backend_pid`).
pub fn register(
    ctx: &SessionContext,
    settings: Arc<Settings>,
    role: SessionRole,
    backend_pid: i32,
    indexes: IndexRegistry,
    views: PlainViews,
) {
    ctx.register_udaf(crate::sql::single_value_udaf());
    super::oid_tags::register(ctx);
    let version = version_string();
    ctx.register_udf(function("version", &[0], Volatility::Stable, DataType::Utf8, move |_, rows| {
        Ok(Arc::new(StringArray::from(vec![version.as_str(); rows])))
    }));
    ctx.register_udf(function("pg_backend_pid", &[0], Volatility::Stable, DataType::Int32, move |_, rows| {
        Ok(Arc::new(Int32Array::from(vec![backend_pid; rows])))
    }));

    let reader = settings.clone();
    // Volatile, not Stable: DataFusion folds Stable calls at planning time, and a
    // `set_config` earlier in the same statement must be seen.
    ctx.register_udf(function("current_setting", &[1, 2], Volatility::Volatile, DataType::Utf8, move |args, rows| {
        let names = strings(&args[0])?;
        let missing_ok = args.get(1).map(booleans).transpose()?;
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            if names.is_null(row) {
                out.push(None);
                continue;
            }
            let name = names.value(row).to_lowercase();
            let value = reader.get(&name).map_err(external)?;
            let tolerate = missing_ok.as_ref().is_some_and(|flags| flags.is_valid(row) && flags.value(row));
            match value {
                Some(value) => out.push(Some(value)),
                None if tolerate => out.push(None),
                None => {
                    return Err(external(WsError::new(
                        sqlstate::UNDEFINED_OBJECT,
                        format!("unrecognized configuration parameter \"{name}\""),
                    )));
                }
            }
        }
        Ok(Arc::new(StringArray::from(out)))
    }));

    let writer = settings;
    ctx.register_udf(function("set_config", &[3], Volatility::Volatile, DataType::Utf8, move |args, rows| {
        let names = strings(&args[0])?;
        let values = strings(&args[1])?;
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            if names.is_null(row) {
                return Err(external(WsError::new(sqlstate::INVALID_PARAMETER_VALUE, "SET requires parameter name")));
            }
            let name = names.value(row).to_lowercase();
            // The same decision as SET: a read user may not change datafusion.* options.
            super::roles::authorize_setting(role.get(), &name).map_err(external)?;
            // A NULL value resets the setting, as in PostgreSQL. `is_local` (the third
            // argument) has no transaction to be local to: statements are their own
            // transactions here, so the change lasts for the session.
            let value = (!values.is_null(row)).then(|| values.value(row));
            writer.set(&name, value).map_err(external)?;
            out.push(writer.get(&name).map_err(external)?);
        }
        Ok(Arc::new(StringArray::from(out)))
    }));

    // Catalog helpers about objects this server never has (indexes, rules, triggers,
    // comments, sequences, user functions): NULL, as PostgreSQL answers for such an OID.
    let none: [(&'static str, &[usize]); 10] = [
        ("pg_get_ruledef", &[1, 2]),
        ("pg_get_triggerdef", &[1, 2]),
        ("pg_get_serial_sequence", &[2]),
        ("pg_get_function_result", &[1]),
        ("pg_get_function_arguments", &[1]),
        ("pg_get_function_identity_arguments", &[1]),
        ("pg_get_functiondef", &[1]),
        ("obj_description", &[1, 2]),
        ("col_description", &[2]),
        ("shobj_description", &[2]),
    ];
    for (name, arities) in none {
        ctx.register_udf(function(name, arities, Volatility::Stable, DataType::Utf8, |_, rows| {
            Ok(new_null_array(&DataType::Utf8, rows))
        }));
    }
    // pg_get_indexdef(oid [, column, pretty]): the CREATE INDEX of one of our indexes, or
    // one of its columns' names; NULL for any other OID, as PostgreSQL.
    ctx.register_udf(function("pg_get_indexdef", &[1, 3], Volatility::Stable, DataType::Utf8, move |args, rows| {
        let oids = cast(&args[0], &DataType::Int64)?;
        let oids = oids.as_any().downcast_ref::<Int64Array>().expect("cast to Int64 gives an Int64Array");
        let columns = match args.get(1) {
            Some(column) => Some(cast(column, &DataType::Int64)?),
            None => None,
        };
        let columns = columns.as_ref().map(|c| c.as_any().downcast_ref::<Int64Array>().expect("Int64Array"));
        let out: StringArray = (0..rows)
            .map(|row| {
                let oid = oids.is_valid(row).then(|| oids.value(row))?;
                let column = match columns {
                    Some(columns) => columns.is_valid(row).then(|| columns.value(row))?,
                    None => 0,
                };
                let entry = indexes.by_oid(u32::try_from(oid).ok()?)?;
                entry.definition(column, crate::catalog::SCHEMA_NAME)
            })
            .collect();
        Ok(Arc::new(out))
    }));
    // pg_get_viewdef(oid [, pretty]) and pg_get_viewdef(name text [, pretty]): the query
    // of one of our views as written; NULL for any other relation, as PostgreSQL.
    ctx.register_udf(function("pg_get_viewdef", &[1, 2], Volatility::Stable, DataType::Utf8, move |args, rows| {
        let by_name = matches!(args[0].data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
        let out: StringArray = if by_name {
            let names = strings(&args[0])?;
            (0..rows)
                .map(|row| {
                    let name = names.is_valid(row).then(|| names.value(row))?;
                    let name = name.strip_prefix(&format!("{}.", crate::catalog::SCHEMA_NAME)).unwrap_or(name);
                    let name = name.trim_matches('"');
                    views.get(name).map(|view| view.definition().to_string())
                })
                .collect()
        } else {
            let oids = cast(&args[0], &DataType::Int64)?;
            let oids = oids.as_any().downcast_ref::<Int64Array>().expect("cast to Int64 gives an Int64Array");
            (0..rows)
                .map(|row| {
                    let oid = oids.is_valid(row).then(|| oids.value(row))?;
                    views.by_oid(oid).map(|view| view.definition().to_string())
                })
                .collect()
        };
        Ok(Arc::new(out))
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(PgFunction {
        name: "json_build_object",
        signature: Signature::variadic_any(Volatility::Immutable),
        returns: DataType::Utf8,
        body: Arc::new(json_build_object),
    }));
    ctx.register_udf(function("_pg_expandarray", &[1], Volatility::Immutable, expandarray_type(), expandarray));
    ctx.register_udf(function("to_regtype", &[1], Volatility::Stable, DataType::Int32, |args, _| {
        let names = strings(&args[0])?;
        let oids: Int32Array = names.iter().map(|name| name.and_then(type_oid)).collect();
        Ok(Arc::new(oids))
    }));
    NullBoundSeries::wrap(ctx);
    // Every relation, type and function lives in a schema on the default search path; every
    // relation could be published (there are no publications: psql's `\d` asks anyway,
    // with the OID as a quoted literal, which datafusion-pg-catalog's int4-only signature
    // refuses).
    for name in ["pg_function_is_visible", "pg_type_is_visible", "pg_relation_is_publishable"] {
        ctx.register_udf(function(name, &[1], Volatility::Stable, DataType::Boolean, |args, rows| {
            let flags: BooleanArray = (0..rows).map(|row| args[0].is_valid(row).then_some(true)).collect();
            Ok(Arc::new(flags))
        }));
    }
}

/// `json_build_object(k1, v1, ...)`: a JSON object per row, as text (PostgreSQL's `json`
/// travels as text too).
fn json_build_object(args: &[ArrayRef], rows: usize) -> DfResult<ArrayRef> {
    use datafusion::common::ScalarValue;
    if !args.len().is_multiple_of(2) {
        return Err(external(WsError::new(
            sqlstate::INVALID_PARAMETER_VALUE,
            "argument list must have even number of elements",
        )));
    }
    fn quote(text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 2);
        out.push('"');
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        let mut object = String::from("{");
        for (pair, chunk) in args.chunks(2).enumerate() {
            let key = ScalarValue::try_from_array(&chunk[0], row)?;
            if key.is_null() {
                return Err(external(WsError::new(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    "null value not allowed for object key",
                )));
            }
            let value = ScalarValue::try_from_array(&chunk[1], row)?;
            let value = match &value {
                v if v.is_null() => "null".to_string(),
                ScalarValue::Boolean(Some(b)) => b.to_string(),
                v if v.data_type().is_numeric() => v.to_string(),
                ScalarValue::Utf8(Some(t)) | ScalarValue::LargeUtf8(Some(t)) | ScalarValue::Utf8View(Some(t)) => {
                    quote(t)
                }
                other => quote(&other.to_string()),
            };
            let key = match &key {
                ScalarValue::Utf8(Some(t)) | ScalarValue::LargeUtf8(Some(t)) | ScalarValue::Utf8View(Some(t)) => {
                    t.clone()
                }
                other => other.to_string(),
            };
            if pair > 0 {
                object.push_str(", ");
            }
            object.push_str(&format!("{} : {}", quote(&key), value));
        }
        object.push('}');
        out.push(object);
    }
    Ok(Arc::new(StringArray::from(out)))
}

fn expandarray_fields() -> datafusion::arrow::datatypes::Fields {
    use datafusion::arrow::datatypes::Field;
    vec![Field::new("x", DataType::Int64, true), Field::new("n", DataType::Int32, false)].into()
}

fn expandarray_type() -> DataType {
    use datafusion::arrow::datatypes::Field;
    DataType::List(Arc::new(Field::new("item", DataType::Struct(expandarray_fields()), false)))
}

/// `information_schema._pg_expandarray(a)`: PostgreSQL's set-returning function of
/// (element, 1-based index) pairs, here as a list of `{x, n}` structs; sql/ wraps each
/// call in `unnest`, which makes it set-returning again. pgJDBC's getPrimaryKeys and
/// getIndexInfo expand `pg_index.indkey` with it. Accepts arrays and the text form of
/// int2vector (`"1 2"`).
fn expandarray(args: &[ArrayRef], rows: usize) -> DfResult<ArrayRef> {
    use datafusion::arrow::array::{ListArray, StructArray};
    use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
    use datafusion::arrow::datatypes::Field;
    let input = &args[0];
    let mut elements: Vec<Option<Vec<Option<i64>>>> = Vec::with_capacity(rows);
    match input.data_type() {
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _) => {
            let list = cast(input, &DataType::List(Arc::new(Field::new("item", DataType::Int64, true))))?;
            let list = list.as_any().downcast_ref::<ListArray>().expect("cast to List gives a ListArray");
            for row in 0..rows {
                if list.is_null(row) {
                    elements.push(None);
                    continue;
                }
                let values = list.value(row);
                let values = values.as_any().downcast_ref::<Int64Array>().expect("List of Int64");
                elements.push(Some(values.iter().collect()));
            }
        }
        _ => {
            let texts = strings(input)?;
            for row in 0..rows {
                if texts.is_null(row) {
                    elements.push(None);
                    continue;
                }
                let parsed: Vec<Option<i64>> = texts
                    .value(row)
                    .trim_matches(|c| c == '{' || c == '}')
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|t| !t.is_empty())
                    .map(|t| t.parse::<i64>().ok())
                    .collect();
                elements.push(Some(parsed));
            }
        }
    }
    let mut xs = Vec::new();
    let mut ns = Vec::new();
    let mut lengths = Vec::with_capacity(rows);
    let mut valid = Vec::with_capacity(rows);
    for row in elements {
        let row_values = row.as_deref().unwrap_or_default();
        for (index, value) in row_values.iter().enumerate() {
            xs.push(*value);
            ns.push(i32::try_from(index + 1).unwrap_or(i32::MAX));
        }
        lengths.push(row_values.len());
        valid.push(row.is_some());
    }
    let entries = StructArray::try_new(
        expandarray_fields(),
        vec![Arc::new(Int64Array::from(xs)), Arc::new(Int32Array::from(ns))],
        None,
    )?;
    let DataType::List(field) = expandarray_type() else { unreachable!("expandarray_type is a List") };
    let list = ListArray::try_new(
        field,
        OffsetBuffer::from_lengths(lengths),
        Arc::new(entries),
        Some(NullBuffer::from(valid)),
    )?;
    Ok(Arc::new(list))
}

/// OID of a built-in type by any name PostgreSQL's `to_regtype` accepts for it
/// (`int8`, `bigint`, `pg_catalog.int8`, `bigint[]`, `timestamp with time zone`...);
/// None for a type this server does not have (`hstore`), as `to_regtype` answers NULL.
fn type_oid(name: &str) -> Option<i32> {
    static BY_NAME: std::sync::LazyLock<std::collections::HashMap<String, u32>> = std::sync::LazyLock::new(|| {
        // The built-in types postgres-types knows; their OIDs sit below 10000.
        let mut map: std::collections::HashMap<String, u32> =
            (0..10_000u32).filter_map(pgwire::api::Type::from_oid).map(|t| (t.name().to_string(), t.oid())).collect();
        let aliases = [
            ("smallint", "int2"),
            ("integer", "int4"),
            ("int", "int4"),
            ("bigint", "int8"),
            ("real", "float4"),
            ("double precision", "float8"),
            ("boolean", "bool"),
            ("character varying", "varchar"),
            ("character", "bpchar"),
            ("char", "bpchar"),
            ("decimal", "numeric"),
            ("timestamp without time zone", "timestamp"),
            ("timestamp with time zone", "timestamptz"),
            ("time without time zone", "time"),
            ("time with time zone", "timetz"),
        ];
        for (alias, canonical) in aliases {
            if let Some(oid) = map.get(canonical).copied() {
                map.insert(alias.to_string(), oid);
            }
        }
        map
    });
    let name = name.trim().trim_matches('"').to_lowercase();
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    let oid = match name.strip_suffix("[]") {
        Some(element) => {
            let element = BY_NAME.get(element.trim())?;
            let element = pgwire::api::Type::from_oid(*element)?;
            BY_NAME.get(&format!("_{}", element.name()))
        }
        None => BY_NAME.get(name),
    };
    oid.and_then(|oid| i32::try_from(*oid).ok())
}

#[cfg(test)]
mod tests {
    use super::type_oid;

    #[test]
    fn to_regtype_names() {
        assert_eq!(type_oid("bigint"), Some(20));
        assert_eq!(type_oid("pg_catalog.int8"), Some(20));
        assert_eq!(type_oid("bigint[]"), Some(1016));
        assert_eq!(type_oid("timestamp with time zone"), Some(1184));
        assert_eq!(type_oid("hstore"), None);
    }

    #[test]
    fn json_objects() {
        use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
        use std::sync::Arc;
        let keys: ArrayRef = Arc::new(StringArray::from(vec!["a\"b"]));
        let values: ArrayRef = Arc::new(Int64Array::from(vec![Some(3)]));
        let out = super::json_build_object(&[keys, values], 1).unwrap();
        let out = out.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(out.value(0), r#"{"a\"b" : 3}"#);
    }
}

/// `generate_series` with a NULL bound is empty in PostgreSQL. DataFusion's accepts only
/// an untyped NULL, while a folded `array_upper(NULL::int2[], 1)` (psql's `\d`, over a
/// relation with no published columns) is a typed one: this wrapper passes typed NULL
/// literals on untyped.
#[derive(Debug)]
struct NullBoundSeries {
    inner: Arc<dyn datafusion::catalog::TableFunctionImpl>,
}

impl NullBoundSeries {
    fn wrap(ctx: &SessionContext) {
        let Some(inner) = ctx.state().table_functions().get("generate_series").map(|f| Arc::clone(f.function())) else {
            return;
        };
        ctx.register_udtf("generate_series", Arc::new(NullBoundSeries { inner }));
    }
}

impl datafusion::catalog::TableFunctionImpl for NullBoundSeries {
    fn call_with_args(
        &self,
        args: datafusion::catalog::TableFunctionArgs,
    ) -> DfResult<Arc<dyn datafusion::catalog::TableProvider>> {
        use datafusion::common::ScalarValue;
        use datafusion::logical_expr::Expr;
        let untyped: Vec<Expr> = args
            .exprs()
            .iter()
            .map(|expr| match expr {
                Expr::Literal(value, metadata) if value.is_null() => Expr::Literal(ScalarValue::Null, metadata.clone()),
                other => other.clone(),
            })
            .collect();
        self.inner.call_with_args(datafusion::catalog::TableFunctionArgs::new(&untyped, args.session()))
    }
}

//! A source's declaration turned into what the runtime needs: the Arrow schema, the
//! event-time column and its watermark delay, retention bounds and the connector's
//! settings, all validated once (at CREATE SOURCE or at start-up) with SQLSTATEs.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::sql::sqlparser::ast::{DataType as SqlType, ExactNumberInfo, TimezoneInfo};
use datafusion::sql::sqlparser::parser::Parser;
use serde::{Deserialize, Serialize};

use crate::error::{WsError, WsResult, sqlstate};
use crate::sql::WatershedDialect;

/// Default retention of a source: how long an event stays after it arrives.
pub const RETENTION_MS_DEFAULT: u64 = 2 * 3_600_000;
/// Default byte bound of a source's retained events (in memory and in ingest segments).
pub const RETENTION_BYTES_DEFAULT: u64 = 1 << 30;
/// A partition that has sent nothing for this long stops holding the watermark back.
pub const IDLE_TIMEOUT_MS_DEFAULT: u64 = 30_000;

/// One column as declared: name, SQL type text, nullability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnDef {
    pub name: String,
    #[serde(rename = "type")]
    pub sql_type: String,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub nullable: bool,
}

fn yes() -> bool {
    true
}

fn is_true(flag: &bool) -> bool {
    *flag
}

/// `WATERMARK FOR column AS column - INTERVAL 'delay'`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatermarkDef {
    pub column: String,
    pub delay_ms: u64,
}

/// A source as declared in a catalog file or by CREATE SOURCE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceDef {
    pub name: String,
    pub connector: String,
    pub columns: Vec<ColumnDef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<WatermarkDef>,
    /// `FORMAT PLAIN ENCODE JSON|CSV`: how a connector that reads bytes decodes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encode: Option<String>,
    /// The WITH (...) options: connector settings and `retention`, `retention_bytes`,
    /// `watermark.idle_timeout`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// Event time: which column, and how far behind the latest event the watermark trails.
#[derive(Debug, Clone)]
pub struct EventTime {
    pub column: String,
    pub index: usize,
    pub delay_us: i64,
}

/// How a connector's bytes are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encode {
    Json,
    Csv,
}

/// A validated source declaration.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub def: SourceDef,
    pub schema: SchemaRef,
    pub event_time: Option<EventTime>,
    pub retention_ms: u64,
    pub retention_bytes: u64,
    pub idle_timeout_ms: u64,
    pub encode: Option<Encode>,
}

/// Options every connector understands; the rest belong to the connector.
const COMMON_OPTIONS: [&str; 4] = ["connector", "retention", "retention_bytes", "watermark.idle_timeout"];

impl SourceSpec {
    pub fn new(def: SourceDef) -> WsResult<SourceSpec> {
        if def.name.is_empty() || def.name != def.name.to_lowercase() {
            return Err(invalid(format!("source name {:?} must be non-empty and lower case", def.name)));
        }
        if def.columns.is_empty() {
            return Err(invalid(format!("source \"{}\" declares no columns", def.name)));
        }
        let mut fields = Vec::with_capacity(def.columns.len());
        for column in &def.columns {
            if fields.iter().any(|f: &Field| f.name() == &column.name) {
                return Err(WsError::new(
                    sqlstate::DUPLICATE_COLUMN,
                    format!("column \"{}\" specified more than once", column.name),
                ));
            }
            let data_type = arrow_type(&column.sql_type)?;
            fields.push(Field::new(&column.name, data_type, column.nullable));
        }
        let schema = Arc::new(Schema::new(fields));
        let event_time = match &def.watermark {
            None => None,
            Some(watermark) => {
                let index = schema.index_of(&watermark.column).map_err(|_| {
                    WsError::new(
                        sqlstate::UNDEFINED_COLUMN,
                        format!("watermark column \"{}\" is not a column of the source", watermark.column),
                    )
                })?;
                if !matches!(schema.field(index).data_type(), DataType::Timestamp(_, _)) {
                    return Err(WsError::new(
                        sqlstate::DATATYPE_MISMATCH,
                        format!(
                            "watermark column \"{}\" must be a timestamp, not {}",
                            watermark.column, def.columns[index].sql_type
                        ),
                    ));
                }
                let delay_us = i64::try_from(watermark.delay_ms)
                    .ok()
                    .and_then(|ms| ms.checked_mul(1_000))
                    .ok_or_else(|| invalid("watermark delay is too large"))?;
                Some(EventTime { column: watermark.column.clone(), index, delay_us })
            }
        };
        let option = |key: &str| def.options.get(key).map(String::as_str);
        let retention_ms = match option("retention") {
            Some(text) => parse_duration_ms(text)?,
            None => RETENTION_MS_DEFAULT,
        };
        let retention_bytes = match option("retention_bytes") {
            Some(text) => parse_bytes(text)?,
            None => RETENTION_BYTES_DEFAULT,
        };
        let idle_timeout_ms = match option("watermark.idle_timeout") {
            Some(text) => parse_duration_ms(text)?,
            None => IDLE_TIMEOUT_MS_DEFAULT,
        };
        if retention_ms == 0 || retention_bytes == 0 {
            return Err(invalid("retention and retention_bytes must be positive"));
        }
        let encode = match def.encode.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None => None,
            Some("json") => Some(Encode::Json),
            Some("csv") => Some(Encode::Csv),
            Some(other) => {
                return Err(WsError::unsupported(format!("ENCODE {other} is not supported (JSON, CSV are)")));
            }
        };
        Ok(SourceSpec { def, schema, event_time, retention_ms, retention_bytes, idle_timeout_ms, encode })
    }

    pub fn name(&self) -> &str {
        &self.def.name
    }

    pub fn connector(&self) -> &str {
        &self.def.connector
    }

    /// A connector option, or None.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.def.options.get(key).map(String::as_str)
    }

    /// Refuses options that neither the common set nor the connector knows: a typo in
    /// `WITH (...)` should not silently fall back to a default.
    pub fn check_options(&self, connector_options: &[&str]) -> WsResult<()> {
        for key in self.def.options.keys() {
            let known = COMMON_OPTIONS.contains(&key.as_str())
                || connector_options.contains(&key.as_str())
                || (key.starts_with("properties.") && connector_options.contains(&"properties.*"));
            if !known {
                return Err(invalid(format!(
                    "unknown option \"{key}\" for connector '{}' (known: {}, {})",
                    self.def.connector,
                    COMMON_OPTIONS.join(", "),
                    connector_options.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// For generator connectors, whose rows have fixed columns: refuses a declaration
    /// whose column names or types differ, naming the columns `what` produces.
    pub fn check_columns(&self, expected: &SchemaRef, what: &str) -> WsResult<()> {
        let declared = &self.schema;
        let same = expected.fields().len() == declared.fields().len()
            && expected
                .fields()
                .iter()
                .zip(declared.fields())
                .all(|(e, d)| e.name() == d.name() && e.data_type() == d.data_type());
        if same {
            return Ok(());
        }
        let columns: Vec<String> =
            expected.fields().iter().map(|f| format!("{} {}", f.name(), f.data_type())).collect();
        Err(WsError::new(sqlstate::DATATYPE_MISMATCH, format!("{what} produces the columns ({})", columns.join(", "))))
    }
}

fn invalid(message: impl Into<String>) -> WsError {
    WsError::new(sqlstate::INVALID_PARAMETER_VALUE, message)
}

/// Maps a declared SQL type to the Arrow type events are kept in. Timestamps are kept in
/// microseconds, PostgreSQL's precision and the lake's.
pub fn arrow_type(sql_type: &str) -> WsResult<DataType> {
    let dialect = WatershedDialect::default();
    let parsed = Parser::new(&dialect)
        .try_with_sql(sql_type)
        .and_then(|mut parser| parser.parse_data_type())
        .map_err(|error| WsError::syntax(format!("type {sql_type:?}: {error}")))?;
    let data_type = match &parsed {
        SqlType::BigInt(_) | SqlType::Int8(_) => DataType::Int64,
        SqlType::Int(_) | SqlType::Integer(_) | SqlType::Int4(_) => DataType::Int32,
        SqlType::SmallInt(_) | SqlType::Int2(_) => DataType::Int16,
        SqlType::Double(_) | SqlType::DoublePrecision | SqlType::Float8 => DataType::Float64,
        SqlType::Real | SqlType::Float4 => DataType::Float32,
        SqlType::Boolean | SqlType::Bool => DataType::Boolean,
        SqlType::Text | SqlType::String(_) | SqlType::Varchar(_) | SqlType::CharacterVarying(_) => DataType::Utf8,
        SqlType::Date => DataType::Date32,
        SqlType::Bytea => DataType::Binary,
        SqlType::Decimal(info) | SqlType::Numeric(info) => match info {
            ExactNumberInfo::PrecisionAndScale(p, s) if *p >= 1 && *p <= 38 && *s >= 0 && (*s as u64) <= *p => {
                DataType::Decimal128(*p as u8, *s as i8)
            }
            ExactNumberInfo::Precision(p) if *p >= 1 && *p <= 38 => DataType::Decimal128(*p as u8, 0),
            ExactNumberInfo::None => DataType::Decimal128(38, 10),
            _ => return Err(invalid(format!("{sql_type}: precision must be 1..38 and scale 0..precision"))),
        },
        SqlType::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
            DataType::Timestamp(TimeUnit::Microsecond, None)
        }
        SqlType::Timestamp(_, TimezoneInfo::Tz | TimezoneInfo::WithTimeZone) => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        }
        other => {
            return Err(WsError::unsupported(format!("type {other} is not supported in a source")));
        }
    };
    Ok(data_type)
}

/// Splits `64 MB` into 64 and "mb".
fn number_and_unit(text: &str, what: &str) -> WsResult<(u64, String)> {
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let count = number.parse().map_err(|_| invalid(format!("{what} {text:?} must start with a whole number")))?;
    Ok((count, unit.trim().to_ascii_lowercase()))
}

/// Parses a duration such as `5 seconds`, `2 hours`, `500ms`, `1 day` into milliseconds.
pub fn parse_duration_ms(text: &str) -> WsResult<u64> {
    let (count, unit) = number_and_unit(text, "duration")?;
    let unit_ms: u64 = match unit.as_str() {
        "ms" | "millisecond" | "milliseconds" => 1,
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        other => return Err(invalid(format!("duration {text:?}: unknown unit {other:?}"))),
    };
    count.checked_mul(unit_ms).ok_or_else(|| invalid(format!("duration {text:?} is too large")))
}

/// Parses a byte count such as `1048576`, `64MB`, `1 GiB`.
pub fn parse_bytes(text: &str) -> WsResult<u64> {
    let (count, unit) = number_and_unit(text, "size")?;
    let unit_bytes: u64 = match unit.as_str() {
        "" | "b" => 1,
        "kb" | "kib" => 1 << 10,
        "mb" | "mib" => 1 << 20,
        "gb" | "gib" => 1 << 30,
        other => return Err(invalid(format!("size {text:?}: unknown unit {other:?}"))),
    };
    count.checked_mul(unit_bytes).ok_or_else(|| invalid(format!("size {text:?} is too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(columns: &[(&str, &str)], watermark: Option<(&str, u64)>) -> SourceDef {
        SourceDef {
            name: "s".into(),
            connector: "ingest".into(),
            columns: columns
                .iter()
                .map(|(name, ty)| ColumnDef { name: name.to_string(), sql_type: ty.to_string(), nullable: true })
                .collect(),
            watermark: watermark.map(|(column, delay_ms)| WatermarkDef { column: column.into(), delay_ms }),
            encode: None,
            options: BTreeMap::new(),
        }
    }

    #[test]
    fn types_map_to_arrow() {
        assert_eq!(arrow_type("BIGINT").unwrap(), DataType::Int64);
        assert_eq!(arrow_type("decimal(12,2)").unwrap(), DataType::Decimal128(12, 2));
        assert_eq!(arrow_type("timestamptz").unwrap(), DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
        assert_eq!(arrow_type("TIMESTAMP").unwrap(), DataType::Timestamp(TimeUnit::Microsecond, None));
        assert_eq!(arrow_type("int[]").unwrap_err().code, sqlstate::FEATURE_NOT_SUPPORTED);
    }

    #[test]
    fn watermark_must_name_a_timestamp_column() {
        let spec = SourceSpec::new(def(&[("id", "BIGINT"), ("ts", "TIMESTAMPTZ")], Some(("ts", 5_000)))).unwrap();
        assert_eq!(spec.event_time.unwrap().delay_us, 5_000_000);
        let error = SourceSpec::new(def(&[("id", "BIGINT")], Some(("id", 0)))).unwrap_err();
        assert_eq!(error.code, sqlstate::DATATYPE_MISMATCH);
        let error = SourceSpec::new(def(&[("id", "BIGINT")], Some(("ts", 0)))).unwrap_err();
        assert_eq!(error.code, sqlstate::UNDEFINED_COLUMN);
    }

    #[test]
    fn durations_and_sizes_parse() {
        assert_eq!(parse_duration_ms("2 hours").unwrap(), 7_200_000);
        assert_eq!(parse_duration_ms("500ms").unwrap(), 500);
        assert_eq!(parse_duration_ms("5").unwrap(), 5_000);
        assert!(parse_duration_ms("five seconds").is_err());
        assert_eq!(parse_bytes("64MB").unwrap(), 64 << 20);
        assert!(parse_bytes("12 parsecs").is_err());
    }
}

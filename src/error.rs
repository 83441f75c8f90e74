//! The one error type that crosses module boundaries. Every error a client can see
//! carries a PostgreSQL SQLSTATE, chosen here from the structured DataFusion/Delta error
//! where one exists. server/ turns it into an ErrorResponse; `watershed sql` prints it.

use datafusion::arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;

/// SQLSTATE codes we emit (PostgreSQL Appendix A).
pub mod sqlstate {
    pub const SYNTAX_ERROR: &str = "42601";
    pub const UNDEFINED_TABLE: &str = "42P01";
    pub const UNDEFINED_COLUMN: &str = "42703";
    pub const UNDEFINED_OBJECT: &str = "42704";
    pub const CANT_CHANGE_RUNTIME_PARAM: &str = "55P02";
    pub const UNDEFINED_FUNCTION: &str = "42883";
    pub const DUPLICATE_TABLE: &str = "42P07";
    pub const DUPLICATE_COLUMN: &str = "42701";
    pub const AMBIGUOUS_COLUMN: &str = "42702";
    pub const DATATYPE_MISMATCH: &str = "42804";
    pub const WRONG_OBJECT_TYPE: &str = "42809";
    pub const DUPLICATE_OBJECT: &str = "42710";
    pub const INVALID_PARAMETER_VALUE: &str = "22023";
    pub const DIVISION_BY_ZERO: &str = "22012";
    pub const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";
    pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
    pub const DATA_EXCEPTION: &str = "22000";
    pub const INVALID_DATETIME_FORMAT: &str = "22007";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const QUERY_CANCELED: &str = "57014";
    pub const READ_ONLY_SQL_TRANSACTION: &str = "25006";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const OUT_OF_MEMORY: &str = "53200";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    pub const STATEMENT_TOO_COMPLEX: &str = "54001";
    pub const IO_ERROR: &str = "58030";
    pub const CONFIG_FILE_ERROR: &str = "F0000";
    pub const INVALID_SQL_STATEMENT_NAME: &str = "26000";
    pub const INVALID_CURSOR_NAME: &str = "34000";
    pub const INTERNAL_ERROR: &str = "XX000";
    pub const DATA_CORRUPTED: &str = "XX001";
    /// The statement's outcome is not known (PostgreSQL uses it for a COMMIT whose
    /// connection was lost): a write that failed and could not be undone.
    pub const TRANSACTION_RESOLUTION_UNKNOWN: &str = "08007";
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub const INVALID_AUTHORIZATION_SPECIFICATION: &str = "28000";
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const BAD_COPY_FILE_FORMAT: &str = "22P04";
    pub const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";
    pub const NOT_NULL_VIOLATION: &str = "23502";
    pub const DEPENDENT_OBJECTS_STILL_EXIST: &str = "2BP01";
    pub const CONFIGURATION_LIMIT_EXCEEDED: &str = "53400";
}

/// An error with the SQLSTATE a PostgreSQL client should see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsError {
    pub code: &'static str,
    pub message: String,
}

pub type WsResult<T> = Result<T, WsError>;

impl WsError {
    pub fn new(code: &'static str, message: impl Into<String>) -> WsError {
        debug_assert_eq!(code.len(), 5, "SQLSTATE codes are five characters");
        WsError { code, message: message.into() }
    }

    /// A feature this server does not have: always 0A000, never a half-done answer.
    pub fn unsupported(message: impl Into<String>) -> WsError {
        WsError::new(sqlstate::FEATURE_NOT_SUPPORTED, message)
    }

    pub fn syntax(message: impl Into<String>) -> WsError {
        WsError::new(sqlstate::SYNTAX_ERROR, message)
    }

    pub fn internal(message: impl Into<String>) -> WsError {
        WsError::new(sqlstate::INTERNAL_ERROR, message)
    }

    pub fn canceled() -> WsError {
        WsError::new(sqlstate::QUERY_CANCELED, "canceling statement due to user request")
    }

    /// The session's `statement_timeout` elapsed (PostgreSQL's wording).
    pub fn statement_timeout() -> WsError {
        WsError::new(sqlstate::QUERY_CANCELED, "canceling statement due to statement timeout")
    }
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.code)
    }
}

impl std::error::Error for WsError {}

impl From<ArrowError> for WsError {
    fn from(error: ArrowError) -> WsError {
        WsError::from(DataFusionError::ArrowError(Box::new(error), None))
    }
}

impl From<DataFusionError> for WsError {
    fn from(error: DataFusionError) -> WsError {
        let code = datafusion_sqlstate(&error);
        let message = clean_message(&error);
        WsError::new(code, message)
    }
}

impl From<deltalake::DeltaTableError> for WsError {
    fn from(error: deltalake::DeltaTableError) -> WsError {
        use deltalake::DeltaTableError as E;
        let code = match &error {
            E::NotATable(_) | E::InvalidTableLocation(_) => sqlstate::UNDEFINED_TABLE,
            E::Io { .. } | E::ObjectStore { .. } => sqlstate::IO_ERROR,
            E::InvalidVersion(_) | E::InvalidDateTimeString { .. } => {
                sqlstate::INVALID_PARAMETER_VALUE
            }
            E::Arrow { source } => arrow_sqlstate(source),
            _ => sqlstate::DATA_EXCEPTION,
        };
        WsError::new(code, format!("delta: {error}"))
    }
}

impl From<std::io::Error> for WsError {
    fn from(error: std::io::Error) -> WsError {
        WsError::new(sqlstate::IO_ERROR, format!("i/o: {error}"))
    }
}

fn arrow_sqlstate(error: &ArrowError) -> &'static str {
    match error {
        ArrowError::DivideByZero => sqlstate::DIVISION_BY_ZERO,
        ArrowError::ArithmeticOverflow(_) => sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
        ArrowError::CastError(_) | ArrowError::ParseError(_) => {
            sqlstate::INVALID_TEXT_REPRESENTATION
        }
        ArrowError::MemoryError(_) => sqlstate::OUT_OF_MEMORY,
        // Operators report their own errors (memory pool exhausted, cancel) through
        // Arrow streams wrapped this way.
        ArrowError::ExternalError(inner) => {
            if let Some(ws) = inner.downcast_ref::<WsError>() {
                ws.code
            } else if let Some(df) = inner.downcast_ref::<DataFusionError>() {
                datafusion_sqlstate(df)
            } else {
                sqlstate::DATA_EXCEPTION
            }
        }
        ArrowError::IoError(..) => sqlstate::IO_ERROR,
        _ => sqlstate::DATA_EXCEPTION,
    }
}

/// Chooses the SQLSTATE from the structure of the error; falls back to the message only
/// for planning errors, which DataFusion reports as plain strings.
fn datafusion_sqlstate(error: &DataFusionError) -> &'static str {
    match error {
        DataFusionError::SQL(..) => sqlstate::SYNTAX_ERROR,
        DataFusionError::SchemaError(schema_error, _) => match schema_error.as_ref() {
            SchemaError::FieldNotFound { .. } => sqlstate::UNDEFINED_COLUMN,
            SchemaError::AmbiguousReference { .. } => sqlstate::AMBIGUOUS_COLUMN,
            SchemaError::DuplicateQualifiedField { .. }
            | SchemaError::DuplicateUnqualifiedField { .. } => sqlstate::DUPLICATE_COLUMN,
        },
        DataFusionError::ArrowError(arrow_error, _) => arrow_sqlstate(arrow_error),
        DataFusionError::NotImplemented(_) => sqlstate::FEATURE_NOT_SUPPORTED,
        DataFusionError::ResourcesExhausted(_) => sqlstate::OUT_OF_MEMORY,
        DataFusionError::IoError(_) | DataFusionError::ObjectStore(_) => sqlstate::IO_ERROR,
        DataFusionError::Configuration(_) => sqlstate::UNDEFINED_OBJECT,
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            datafusion_sqlstate(inner)
        }
        DataFusionError::Shared(inner) => datafusion_sqlstate(inner),
        DataFusionError::Collection(errors) => {
            errors.first().map_or(sqlstate::INTERNAL_ERROR, datafusion_sqlstate)
        }
        DataFusionError::External(inner) => {
            if let Some(ws) = inner.downcast_ref::<WsError>() {
                ws.code
            } else if let Some(df) = inner.downcast_ref::<DataFusionError>() {
                datafusion_sqlstate(df)
            } else if let Some(arrow) = inner.downcast_ref::<ArrowError>() {
                arrow_sqlstate(arrow)
            } else if let Some(delta) = inner.downcast_ref::<deltalake::DeltaTableError>() {
                WsError::from(clone_delta_kind(delta)).code
            } else {
                sqlstate::INTERNAL_ERROR
            }
        }
        DataFusionError::Plan(message) => plan_sqlstate(message),
        DataFusionError::Execution(message) => execution_sqlstate(message),
        _ => sqlstate::INTERNAL_ERROR,
    }
}

/// DataFusion's planner reports these as `Plan(String)`; the wording is stable across
/// releases and covered by sql-tests, which fail if it changes.
fn plan_sqlstate(message: &str) -> &'static str {
    if message.contains("table '") && message.contains("not found") {
        sqlstate::UNDEFINED_TABLE
    } else if message.contains("Invalid function") || message.contains("function '") {
        sqlstate::UNDEFINED_FUNCTION
    } else if message.contains("already exists") {
        sqlstate::DUPLICATE_TABLE
    } else if message.contains("Cannot infer common") || message.contains("cannot be cast") {
        sqlstate::DATATYPE_MISMATCH
    } else if message.contains("No field named") {
        sqlstate::UNDEFINED_COLUMN
    } else {
        sqlstate::SYNTAX_ERROR
    }
}

fn execution_sqlstate(message: &str) -> &'static str {
    if message.contains("Divide by zero") || message.contains("division by zero") {
        sqlstate::DIVISION_BY_ZERO
    } else if message.contains("Cast error") || message.contains("Cannot cast") {
        sqlstate::INVALID_TEXT_REPRESENTATION
    } else if message.contains("overflow") {
        sqlstate::NUMERIC_VALUE_OUT_OF_RANGE
    } else {
        sqlstate::INTERNAL_ERROR
    }
}

/// Delta errors inside DataFusion's External are behind a shared reference; only the
/// variant matters for the SQLSTATE, so a generic stand-in of the same kind is enough.
fn clone_delta_kind(error: &deltalake::DeltaTableError) -> deltalake::DeltaTableError {
    use deltalake::DeltaTableError as E;
    match error {
        E::NotATable(message) => E::NotATable(message.clone()),
        E::InvalidTableLocation(message) => E::InvalidTableLocation(message.clone()),
        E::InvalidVersion(version) => E::InvalidVersion(*version),
        other => E::Generic(other.to_string()),
    }
}

/// DataFusion prefixes messages with "Error during planning:" and may append a backtrace;
/// a PostgreSQL client shows the message after "ERROR:", so keep the core sentence.
fn clean_message(error: &DataFusionError) -> String {
    let root = error.find_root();
    let text = match root {
        DataFusionError::SQL(parser_error, _) => parser_error.to_string(),
        DataFusionError::Plan(message)
        | DataFusionError::Execution(message)
        | DataFusionError::NotImplemented(message)
        | DataFusionError::ResourcesExhausted(message)
        | DataFusionError::Configuration(message) => message.clone(),
        DataFusionError::ArrowError(arrow_error, _) => arrow_error.to_string(),
        // Our own errors raised inside a plan or its planning (cancel, statement timeout,
        // relation planners, rules) already carry the client's message.
        DataFusionError::External(inner) if inner.is::<WsError>() => {
            inner.downcast_ref::<WsError>().map(|ws| ws.message.clone()).unwrap_or_default()
        }
        other => other.strip_backtrace(),
    };
    let text = text.split("\n\nbacktrace").next().unwrap_or_default();
    match text.strip_prefix("sql parser error: ") {
        Some(rest) => rest.to_string(),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divide_by_zero_is_22012() {
        let error = DataFusionError::ArrowError(Box::new(ArrowError::DivideByZero), None);
        assert_eq!(WsError::from(error).code, sqlstate::DIVISION_BY_ZERO);
    }

    #[test]
    fn missing_table_is_42p01() {
        let error = DataFusionError::Plan("table 'datafusion.public.nope' not found".into());
        assert_eq!(WsError::from(error).code, sqlstate::UNDEFINED_TABLE);
    }

    #[test]
    fn own_errors_inside_datafusion_keep_code_and_message() {
        let inner = WsError::new(sqlstate::DATATYPE_MISMATCH, "TUMBLE needs a timestamp");
        let error = DataFusionError::Context("planning".into(), Box::new(DataFusionError::External(Box::new(inner))));
        let error = WsError::from(error);
        assert_eq!(error.code, sqlstate::DATATYPE_MISMATCH);
        assert_eq!(error.message, "TUMBLE needs a timestamp");
    }

    #[test]
    fn context_is_seen_through() {
        let inner = DataFusionError::ResourcesExhausted("pool".into());
        let error = DataFusionError::Context("while sorting".into(), Box::new(inner));
        assert_eq!(WsError::from(error).code, sqlstate::OUT_OF_MEMORY);
    }
}

/// Maps a SQLSTATE read back from a wire error to our static constants (unknown codes
/// become XX000: we only ever emit our own).
pub fn sqlstate_static(code: &str) -> &'static str {
    use sqlstate::*;
    const ALL: &[&str] = &[
        SYNTAX_ERROR, UNDEFINED_TABLE, UNDEFINED_COLUMN, UNDEFINED_OBJECT, CANT_CHANGE_RUNTIME_PARAM,
        UNDEFINED_FUNCTION, DUPLICATE_TABLE, DUPLICATE_COLUMN, AMBIGUOUS_COLUMN, DATATYPE_MISMATCH,
        INVALID_PARAMETER_VALUE, DIVISION_BY_ZERO, NUMERIC_VALUE_OUT_OF_RANGE,
        INVALID_TEXT_REPRESENTATION, DATA_EXCEPTION, INVALID_DATETIME_FORMAT, FEATURE_NOT_SUPPORTED,
        QUERY_CANCELED, READ_ONLY_SQL_TRANSACTION, ADMIN_SHUTDOWN, OUT_OF_MEMORY, TOO_MANY_CONNECTIONS, PROGRAM_LIMIT_EXCEEDED,
        STATEMENT_TOO_COMPLEX, IO_ERROR, CONFIG_FILE_ERROR, INVALID_SQL_STATEMENT_NAME,
        INVALID_CURSOR_NAME, PROTOCOL_VIOLATION, INSUFFICIENT_PRIVILEGE,
        INVALID_AUTHORIZATION_SPECIFICATION, INVALID_PASSWORD,
        BAD_COPY_FILE_FORMAT, CHARACTER_NOT_IN_REPERTOIRE, NOT_NULL_VIOLATION, WRONG_OBJECT_TYPE,
        DUPLICATE_OBJECT, DEPENDENT_OBJECTS_STILL_EXIST, CONFIGURATION_LIMIT_EXCEEDED,
    ];
    ALL.iter().copied().find(|known| *known == code).unwrap_or(INTERNAL_ERROR)
}

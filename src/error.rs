//! The one error type that crosses module boundaries. Every error a client can see
//! carries a PostgreSQL SQLSTATE, chosen here from the structured DataFusion/Delta error
//! where one exists. server/ turns it into an ErrorResponse; `watershed sql` prints it.

use datafusion::arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;

/// A PostgreSQL SQLSTATE (Appendix A) this server emits. Values exist only as the
/// constants of [`sqlstate`], so each code is defined once, in one list, and every code
/// the server sends is also one it recognizes when reading an error back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SqlState(&'static str);

impl SqlState {
    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// The constant with this code, if the server has it.
    pub fn parse(code: &str) -> Option<SqlState> {
        sqlstate::ALL.iter().copied().find(|known| known.0 == code)
    }

    /// The two-character class (`42` for syntax errors and access rule violations).
    pub fn class(self) -> &'static str {
        &self.0[..2]
    }
}

impl std::fmt::Display for SqlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl PartialEq<&str> for SqlState {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Defines the constants of [`sqlstate`] and their list; a code that is not five
/// characters does not compile.
macro_rules! sqlstates {
    ($($name:ident = $code:literal,)*) => {
        /// SQLSTATE codes we emit (PostgreSQL Appendix A), each defined once.
        pub mod sqlstate {
            use super::SqlState;
            $(
                pub const $name: SqlState = {
                    assert!($code.len() == 5, "SQLSTATE codes are five characters");
                    SqlState($code)
                };
            )*
            /// Every code above.
            pub const ALL: &[SqlState] = &[$($name),*];
        }
    };
}

sqlstates! {
    // Class 00: the code of a plain NOTICE ("drop cascades to view v").
    SUCCESSFUL_COMPLETION = "00000",
    // Class 01: warnings, sent as notices, never as errors.
    WARNING = "01000",
    // Class 0A, 08: features and the connection.
    FEATURE_NOT_SUPPORTED = "0A000",
    // 08007: the statement's outcome is not known (PostgreSQL uses it for a COMMIT whose
    // connection was lost): a write that failed and could not be undone.
    TRANSACTION_RESOLUTION_UNKNOWN = "08007",
    PROTOCOL_VIOLATION = "08P01",
    // Class 21, 22, 23: cardinality, data and integrity.
    CARDINALITY_VIOLATION = "21000",
    DATA_EXCEPTION = "22000",
    NUMERIC_VALUE_OUT_OF_RANGE = "22003",
    // A NULL where a value is needed (a model's label or split column).
    NULL_VALUE_NOT_ALLOWED = "22004",
    INVALID_DATETIME_FORMAT = "22007",
    DIVISION_BY_ZERO = "22012",
    CHARACTER_NOT_IN_REPERTOIRE = "22021",
    INVALID_PARAMETER_VALUE = "22023",
    INVALID_TEXT_REPRESENTATION = "22P02",
    BAD_COPY_FILE_FORMAT = "22P04",
    NOT_NULL_VIOLATION = "23502",
    // Class 25, 26, 28, 2B: transactions, statements, authorization, dependencies.
    ACTIVE_SQL_TRANSACTION = "25001",
    READ_ONLY_SQL_TRANSACTION = "25006",
    NO_ACTIVE_SQL_TRANSACTION = "25P01",
    IN_FAILED_SQL_TRANSACTION = "25P02",
    INVALID_SQL_STATEMENT_NAME = "26000",
    INVALID_AUTHORIZATION_SPECIFICATION = "28000",
    INVALID_PASSWORD = "28P01",
    DEPENDENT_OBJECTS_STILL_EXIST = "2BP01",
    // Class 40: a transaction that lost a race with another (retry it).
    SERIALIZATION_FAILURE = "40001",
    // Class 34, 42: cursors, syntax and access rules.
    INVALID_CURSOR_NAME = "34000",
    SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION = "42000",
    INSUFFICIENT_PRIVILEGE = "42501",
    SYNTAX_ERROR = "42601",
    DUPLICATE_COLUMN = "42701",
    AMBIGUOUS_COLUMN = "42702",
    UNDEFINED_COLUMN = "42703",
    UNDEFINED_OBJECT = "42704",
    DUPLICATE_OBJECT = "42710",
    GROUPING_ERROR = "42803",
    DATATYPE_MISMATCH = "42804",
    WRONG_OBJECT_TYPE = "42809",
    UNDEFINED_FUNCTION = "42883",
    UNDEFINED_TABLE = "42P01",
    DUPLICATE_CURSOR = "42P03",
    DUPLICATE_TABLE = "42P07",
    UNDEFINED_PARAMETER = "42P02",
    INVALID_TABLE_DEFINITION = "42P16",
    INVALID_OBJECT_DEFINITION = "42P17",
    // Class 53, 54, 55, 57, 58: resources, limits, state, operator intervention, system.
    OUT_OF_MEMORY = "53200",
    TOO_MANY_CONNECTIONS = "53300",
    DISK_FULL = "53100",
    CONFIGURATION_LIMIT_EXCEEDED = "53400",
    PROGRAM_LIMIT_EXCEEDED = "54000",
    STATEMENT_TOO_COMPLEX = "54001",
    OBJECT_NOT_IN_PREREQUISITE_STATE = "55000",
    CANT_CHANGE_RUNTIME_PARAM = "55P02",
    QUERY_CANCELED = "57014",
    ADMIN_SHUTDOWN = "57P01",
    IO_ERROR = "58030",
    // Class F0, XX: configuration files, internal errors.
    CONFIG_FILE_ERROR = "F0000",
    INTERNAL_ERROR = "XX000",
    DATA_CORRUPTED = "XX001",
}

/// An error with the SQLSTATE a PostgreSQL client should see.
///
/// `source` keeps the error it was made from (DataFusion's, Delta's, an i/o error), so
/// logs and `Error::source` walk the whole chain; the client sees code and message.
#[derive(Debug, Clone)]
pub struct WsError {
    pub code: SqlState,
    pub message: String,
    /// PostgreSQL's DETAIL and HINT fields (`cannot drop table t because other objects
    /// depend on it` / `view v depends on table t` / `Use DROP ... CASCADE ...`).
    pub detail: Option<String>,
    pub hint: Option<String>,
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

/// Errors are equal when the client would see the same thing.
impl PartialEq for WsError {
    fn eq(&self, other: &WsError) -> bool {
        self.code == other.code && self.message == other.message
    }
}

impl Eq for WsError {}

pub type WsResult<T> = Result<T, WsError>;

impl WsError {
    pub fn new(code: SqlState, message: impl Into<String>) -> WsError {
        WsError { code, message: message.into(), detail: None, hint: None, source: None }
    }

    /// The same error with PostgreSQL's DETAIL field.
    pub fn with_detail(mut self, detail: impl Into<String>) -> WsError {
        self.detail = Some(detail.into());
        self
    }

    /// The same error with PostgreSQL's HINT field.
    pub fn with_hint(mut self, hint: impl Into<String>) -> WsError {
        self.hint = Some(hint.into());
        self
    }

    /// The same error, remembering what caused it.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> WsError {
        self.source = Some(std::sync::Arc::new(source));
        self
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

impl std::error::Error for WsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|source| source as &(dyn std::error::Error + 'static))
    }
}

impl From<ArrowError> for WsError {
    fn from(error: ArrowError) -> WsError {
        WsError::from(DataFusionError::ArrowError(Box::new(error), None))
    }
}

impl From<DataFusionError> for WsError {
    fn from(error: DataFusionError) -> WsError {
        // Our own error travelling inside DataFusion's comes out as it went in.
        if let DataFusionError::External(inner) = error.find_root()
            && let Some(ws) = inner.downcast_ref::<WsError>()
        {
            return ws.clone();
        }
        let code = datafusion_sqlstate(&error);
        let message = clean_message(&error);
        WsError::new(code, message).with_source(error)
    }
}

impl From<deltalake::DeltaTableError> for WsError {
    fn from(error: deltalake::DeltaTableError) -> WsError {
        let code = delta_sqlstate(&error);
        let message = if code == sqlstate::SERIALIZATION_FAILURE {
            format!("could not serialize access due to a concurrent update: delta: {error}; retry the statement")
        } else {
            format!("delta: {error}")
        };
        WsError::new(code, message).with_source(error)
    }
}

/// The SQLSTATE of a Delta error, from its kind. A commit that lost to another writer's
/// conflicting commit is PostgreSQL's serialization_failure: the client may retry.
fn delta_sqlstate(error: &deltalake::DeltaTableError) -> SqlState {
    use deltalake::DeltaTableError as E;
    use deltalake::kernel::transaction::TransactionError as T;
    match error {
        E::NotATable(_) | E::InvalidTableLocation(_) => sqlstate::UNDEFINED_TABLE,
        E::Io { .. } | E::ObjectStore { .. } => sqlstate::IO_ERROR,
        E::InvalidVersion(_) | E::InvalidDateTimeString { .. } => sqlstate::INVALID_PARAMETER_VALUE,
        E::Arrow { source } => arrow_sqlstate(source),
        E::Transaction { source: T::CommitConflict(_) | T::VersionAlreadyExists(_) | T::MaxCommitAttempts(_) } => {
            sqlstate::SERIALIZATION_FAILURE
        }
        E::Transaction { source: T::ObjectStore { .. } } => sqlstate::IO_ERROR,
        E::Transaction { source: T::DeltaTableAppendOnly } => sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
        E::Transaction { .. } => sqlstate::DATA_EXCEPTION,
        _ => sqlstate::DATA_EXCEPTION,
    }
}

impl From<std::io::Error> for WsError {
    fn from(error: std::io::Error) -> WsError {
        let code = match error.raw_os_error() {
            // ENOSPC, EDQUOT: PostgreSQL's disk_full.
            Some(28) | Some(122) => sqlstate::DISK_FULL,
            _ => sqlstate::IO_ERROR,
        };
        WsError::new(code, format!("i/o: {error}")).with_source(error)
    }
}

fn arrow_sqlstate(error: &ArrowError) -> SqlState {
    match error {
        ArrowError::DivideByZero => sqlstate::DIVISION_BY_ZERO,
        ArrowError::ArithmeticOverflow(_) => sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
        ArrowError::CastError(_) | ArrowError::ParseError(_) => sqlstate::INVALID_TEXT_REPRESENTATION,
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
fn datafusion_sqlstate(error: &DataFusionError) -> SqlState {
    match error {
        DataFusionError::SQL(..) => sqlstate::SYNTAX_ERROR,
        DataFusionError::SchemaError(schema_error, _) => match schema_error.as_ref() {
            SchemaError::FieldNotFound { .. } => sqlstate::UNDEFINED_COLUMN,
            SchemaError::AmbiguousReference { .. } => sqlstate::AMBIGUOUS_COLUMN,
            SchemaError::DuplicateQualifiedField { .. } | SchemaError::DuplicateUnqualifiedField { .. } => {
                sqlstate::DUPLICATE_COLUMN
            }
        },
        DataFusionError::ArrowError(arrow_error, _) => arrow_sqlstate(arrow_error),
        DataFusionError::NotImplemented(_) => sqlstate::FEATURE_NOT_SUPPORTED,
        DataFusionError::ResourcesExhausted(_) => sqlstate::OUT_OF_MEMORY,
        DataFusionError::IoError(_) | DataFusionError::ObjectStore(_) => sqlstate::IO_ERROR,
        DataFusionError::Configuration(_) => sqlstate::UNDEFINED_OBJECT,
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => datafusion_sqlstate(inner),
        DataFusionError::Shared(inner) => datafusion_sqlstate(inner),
        DataFusionError::Collection(errors) => errors.first().map_or(sqlstate::INTERNAL_ERROR, datafusion_sqlstate),
        DataFusionError::External(inner) => {
            if let Some(ws) = inner.downcast_ref::<WsError>() {
                ws.code
            } else if let Some(df) = inner.downcast_ref::<DataFusionError>() {
                datafusion_sqlstate(df)
            } else if let Some(arrow) = inner.downcast_ref::<ArrowError>() {
                arrow_sqlstate(arrow)
            } else if let Some(delta) = inner.downcast_ref::<deltalake::DeltaTableError>() {
                delta_sqlstate(delta)
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
fn plan_sqlstate(message: &str) -> SqlState {
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
    } else if message.contains("GROUP BY clause") {
        sqlstate::GROUPING_ERROR
    } else if message.contains("not supported") || message.contains("Unsupported") {
        sqlstate::FEATURE_NOT_SUPPORTED
    } else if message.contains("different number of columns") {
        // PostgreSQL: "each UNION query must have the same number of columns", 42601.
        sqlstate::SYNTAX_ERROR
    } else {
        // A planning error of a kind not recognized above: the query is at fault, but it
        // is not known to be a syntax error, so the class's generic code.
        sqlstate::SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION
    }
}

fn execution_sqlstate(message: &str) -> SqlState {
    if message.contains("Divide by zero") || message.contains("division by zero") {
        sqlstate::DIVISION_BY_ZERO
    } else if message.contains("Cast error") || message.contains("Cannot cast") {
        sqlstate::INVALID_TEXT_REPRESENTATION
    } else if message.contains("overflow") {
        sqlstate::NUMERIC_VALUE_OUT_OF_RANGE
    } else if message.contains("Scalar subquery returned more than one row") {
        // DataFusion's ScalarSubqueryExec; PostgreSQL's "more than one row returned by a
        // subquery used as an expression".
        sqlstate::CARDINALITY_VIOLATION
    } else {
        sqlstate::INTERNAL_ERROR
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

/// Maps a SQLSTATE read back from a wire error to our constants; a code we do not emit
/// (none should reach us: the list above is every code we send) becomes XX000.
pub fn sqlstate_static(code: &str) -> SqlState {
    SqlState::parse(code).unwrap_or(sqlstate::INTERNAL_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_is_defined_once_and_reads_back() {
        let mut codes: Vec<&str> = sqlstate::ALL.iter().map(|code| code.as_str()).collect();
        codes.sort_unstable();
        let before = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), before, "a SQLSTATE is defined twice");
        for code in sqlstate::ALL {
            assert_eq!(sqlstate_static(code.as_str()), *code);
        }
        assert_eq!(sqlstate_static("99999"), sqlstate::INTERNAL_ERROR);
        assert_eq!(sqlstate::SYNTAX_ERROR.class(), "42");
    }

    #[test]
    fn errors_keep_their_source() {
        use std::error::Error as _;
        let io = std::io::Error::from_raw_os_error(28);
        let error = WsError::from(io);
        assert_eq!(error.code, sqlstate::DISK_FULL);
        assert!(error.source().is_some_and(|source| source.is::<std::io::Error>()));
        let error = WsError::from(DataFusionError::Plan("table 't' not found".into()));
        assert!(error.source().is_some_and(|source| source.is::<DataFusionError>()));
    }

    #[test]
    fn divide_by_zero_is_22012() {
        let error = DataFusionError::ArrowError(Box::new(ArrowError::DivideByZero), None);
        assert_eq!(WsError::from(error).code, sqlstate::DIVISION_BY_ZERO);
    }

    #[test]
    fn unrecognized_planning_errors_are_not_syntax_errors() {
        let error = DataFusionError::Plan("Values list cannot be zero length".into());
        assert_eq!(WsError::from(error).code, sqlstate::SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION);
        let error = DataFusionError::Plan("Using clause not supported".into());
        assert_eq!(WsError::from(error).code, sqlstate::FEATURE_NOT_SUPPORTED);
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
    fn a_scalar_subquery_of_several_rows_is_21000() {
        let error = DataFusionError::Execution("Scalar subquery returned more than one row".into());
        assert_eq!(WsError::from(error).code, sqlstate::CARDINALITY_VIOLATION);
    }

    #[test]
    fn context_is_seen_through() {
        let inner = DataFusionError::ResourcesExhausted("pool".into());
        let error = DataFusionError::Context("while sorting".into(), Box::new(inner));
        assert_eq!(WsError::from(error).code, sqlstate::OUT_OF_MEMORY);
    }
}

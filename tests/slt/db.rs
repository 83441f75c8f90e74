//! The three ways of running a record: [`InProcess`] (an [`Engine`] session, results
//! rendered by the server's own text encoder), [`Wire`] with the simple query protocol, and
//! [`Wire`] with the extended protocol (Parse/Bind/Execute, binary results decoded by
//! [`PgText`]). All three render values identically: SQL NULL as `NULL`, the empty string
//! as `(empty)` (the sqllogictest convention, also used by sqllogictest-engines' postgres
//! drivers), everything else as PostgreSQL's text output.
//!
//! Column types: each result column is mapped to the sqllogictest letters `I` (integers),
//! `R` (floating point and numeric), `T` (text) or `?` (anything else; always `?` in the
//! simple protocol, whose RowDescription tokio-postgres does not expose with types). The
//! runner does not compare them with the letters in the record header (see slt.rs): the
//! values themselves are compared, and the number of letters still matters for hashing.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use tokio::task::JoinHandle;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};
use watershed::error::WsError;
use watershed::session::{Engine, Session};

use crate::pgtext::PgText;

/// An error as a record sees it: `statement error 42P01` style regexes match against
/// `"<SQLSTATE>: <message>"`, and `error(42P01)` matches the SQLSTATE alone.
#[derive(Debug)]
pub struct SqlError {
    /// The SQLSTATE, when the error came from the server (or the in-process engine).
    pub code: Option<String>,
    pub message: String,
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

impl std::error::Error for SqlError {}

impl From<WsError> for SqlError {
    fn from(error: WsError) -> SqlError {
        SqlError { code: Some(error.code.to_string()), message: error.message }
    }
}

impl From<tokio_postgres::Error> for SqlError {
    fn from(error: tokio_postgres::Error) -> SqlError {
        match error.as_db_error() {
            Some(db) => SqlError { code: Some(db.code().code().to_string()), message: db.message().to_string() },
            // Not an ErrorResponse: a broken connection, or a value PgText could not decode.
            None => SqlError { code: None, message: format!("client: {error}") },
        }
    }
}

/// The sqllogictest rendering of one text value.
fn cell(value: Option<&str>) -> String {
    match value {
        None => "NULL".to_string(),
        Some("") => "(empty)".to_string(),
        Some(text) => text.to_string(),
    }
}

fn arrow_column_type(data_type: &DataType) -> DefaultColumnType {
    match data_type {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => DefaultColumnType::Integer,
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => DefaultColumnType::FloatingPoint,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DefaultColumnType::Text,
        _ => DefaultColumnType::Any,
    }
}

fn pg_column_type(ty: &Type) -> DefaultColumnType {
    match *ty {
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => DefaultColumnType::Integer,
        Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC => DefaultColumnType::FloatingPoint,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => DefaultColumnType::Text,
        _ => DefaultColumnType::Any,
    }
}

/// A session of an in-process engine; no sockets involved.
pub struct InProcess {
    session: Session,
}

impl InProcess {
    pub fn new(engine: &Engine) -> InProcess {
        InProcess { session: engine.session() }
    }
}

#[async_trait]
impl AsyncDB for InProcess {
    type Error = SqlError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SqlError> {
        let mut results = self.session.run_collect(sql).await?;
        // A record normally holds one statement; with several, the last one is the answer,
        // as in the wire modes.
        let Some(last) = results.pop() else {
            return Ok(DBOutput::StatementComplete(0));
        };
        if last.schema.fields().is_empty() {
            return Ok(DBOutput::StatementComplete(last.tag.rows.unwrap_or(0) as u64));
        }
        let types = last.schema.fields().iter().map(|f| arrow_column_type(f.data_type())).collect();
        let mut rows = Vec::new();
        for batch in &last.batches {
            for row in watershed::server::text_rows(batch)? {
                rows.push(row.iter().map(|value| cell(value.as_deref())).collect());
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "watershed"
    }

    async fn sleep(duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    fn error_sql_state(error: &SqlError) -> Option<String> {
        error.code.clone()
    }
}

/// Which message flow a [`Wire`] connection uses for every record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// One Query message; results arrive as text.
    Simple,
    /// Parse/Describe, then Bind/Execute of the prepared statement; results arrive binary.
    Extended,
}

/// A tokio-postgres connection to a watershed server.
pub struct Wire {
    client: Option<Client>,
    connection: Option<JoinHandle<()>>,
    protocol: Protocol,
}

impl Wire {
    pub async fn connect(address: SocketAddr, protocol: Protocol) -> Result<Wire, SqlError> {
        // No application_name: every mode starts from the server's defaults, so that
        // `SHOW application_name` reads the same in all three.
        let (client, connection) = tokio_postgres::Config::new()
            .host(address.ip().to_string())
            .port(address.port())
            .user("watershed")
            .dbname("watershed")
            .connect(NoTls)
            .await?;
        // The connection task ends when the client is dropped (see shutdown). Its own error,
        // if any, also reaches the client as a failed request, so it is not reported twice.
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Wire { client: Some(client), connection: Some(connection), protocol })
    }

    fn client(&self) -> Result<&Client, SqlError> {
        self.client.as_ref().ok_or_else(|| SqlError { code: None, message: "connection already shut down".into() })
    }

    async fn run_simple(&self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SqlError> {
        let messages = self.client()?.simple_query(sql).await?;
        // Statement by statement: a RowDescription opens a result set, CommandComplete closes
        // it (or is a command's whole answer). The last statement's result is returned.
        let mut output = DBOutput::StatementComplete(0);
        let mut open: Option<(usize, Vec<Vec<String>>)> = None;
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(columns) => open = Some((columns.len(), Vec::new())),
                SimpleQueryMessage::Row(row) => {
                    let values = (0..row.len()).map(|index| cell(row.get(index))).collect();
                    match open.as_mut() {
                        Some((_, rows)) => rows.push(values),
                        // tokio-postgres always reports the RowDescription first.
                        None => open = Some((row.len(), vec![values])),
                    }
                }
                SimpleQueryMessage::CommandComplete(count) => {
                    output = match open.take() {
                        Some((width, rows)) => DBOutput::Rows { types: vec![DefaultColumnType::Any; width], rows },
                        None => DBOutput::StatementComplete(count),
                    };
                }
                _ => {}
            }
        }
        Ok(output)
    }

    async fn run_extended(&self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SqlError> {
        let client = self.client()?;
        let statement = client.prepare(sql).await?;
        if statement.columns().is_empty() {
            let count = client.execute(&statement, &[]).await?;
            return Ok(DBOutput::StatementComplete(count));
        }
        let types = statement.columns().iter().map(|c| pg_column_type(c.type_())).collect();
        let mut rows = Vec::new();
        for row in client.query(&statement, &[]).await? {
            let mut values = Vec::with_capacity(row.len());
            for index in 0..row.len() {
                let value: Option<PgText> = row.try_get(index)?;
                values.push(cell(value.as_ref().map(|text| text.0.as_str())));
            }
            rows.push(values);
        }
        Ok(DBOutput::Rows { types, rows })
    }
}

#[async_trait]
impl AsyncDB for Wire {
    type Error = SqlError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SqlError> {
        match self.protocol {
            Protocol::Simple => self.run_simple(sql).await,
            Protocol::Extended => self.run_extended(sql).await,
        }
    }

    async fn shutdown(&mut self) {
        // Dropping the client makes the connection send Terminate and finish, so the
        // server sees a clean close before it is told to shut down.
        drop(self.client.take());
        if let Some(connection) = self.connection.take() {
            let _ = connection.await;
        }
    }

    fn engine_name(&self) -> &str {
        "watershed"
    }

    async fn sleep(duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    fn error_sql_state(error: &SqlError) -> Option<String> {
        error.code.clone()
    }
}

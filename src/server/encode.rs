//! Arrow -> PostgreSQL rows, through arrow-pg (never hand-written encoders), batch by
//! batch: a result is never collected in memory. Also the text rendering used by the
//! in-process test runner, so all three ways of running a .slt file see the same text.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, FieldRef, Schema};
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldInfo, QueryResponse, Tag};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;

use crate::error::WsError;
use crate::session::CommandTag;

/// The ErrorResponse fields of a WsError.
pub fn error_info(error: &WsError) -> ErrorInfo {
    let mut info = ErrorInfo::new("ERROR".to_string(), error.code.to_string(), error.message.clone());
    info.detail = error.detail.clone();
    info.hint = error.hint.clone();
    info
}

pub fn user_error(error: WsError) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(&error)))
}

/// RowDescription fields: the PostgreSQL type of each column (see [`pg_type`]), with the
/// name a client is shown (sql::display_name strips the suffix that keeps repeated names
/// unique internally).
pub fn fields(schema: &Schema, format: &Format) -> PgWireResult<Vec<FieldInfo>> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(index, field)| {
            let shown = crate::sql::display_name(field.name()).to_string();
            Ok(FieldInfo::new(shown, None, None, pg_type(field)?, format.format_for(index)))
        })
        .collect()
}

/// The PostgreSQL type of a column or parameter: arrow-pg's, except for object
/// identifiers. An oid is an int4 tagged with the `pg.oid_alias` field metadata that
/// datafusion-pg-catalog puts on catalog columns (and sql:: on `$n::oid[]`), on an int4
/// or on an int4 array (`array_agg` of an oid column). The tag's kind (`regclass`,
/// `regtype`...) says how the column compares with a name; PostgreSQL's catalogs type
/// these columns `oid`, and so they are reported (arrow-pg would say `regtype` for
/// `pg_attribute.atttypid`). On any other shape the tag is stale: DataFusion keeps a
/// field's metadata through casts, so `elemtype::regtype::text` is text still tagged,
/// and is reported by its own type.
pub fn pg_type(field: &FieldRef) -> PgWireResult<Type> {
    use arrow_pg::datatypes::{PG_OID_ALIAS_KEY, field_into_pg_type};
    if !field.metadata().contains_key(PG_OID_ALIAS_KEY) {
        return field_into_pg_type(field);
    }
    match field.data_type() {
        DataType::Int32 => Ok(Type::OID),
        DataType::List(item) | DataType::LargeList(item) if *item.data_type() == DataType::Int32 => Ok(Type::OID_ARRAY),
        _ => {
            let mut metadata = field.metadata().clone();
            metadata.remove(PG_OID_ALIAS_KEY);
            field_into_pg_type(&Arc::new(field.as_ref().clone().with_metadata(metadata)))
        }
    }
}

pub fn tag(tag: &CommandTag) -> Tag {
    let mut out = Tag::new(tag.command);
    if let Some(oid) = tag.oid {
        out = out.with_oid(oid);
    }
    if let Some(rows) = tag.rows {
        out = out.with_rows(rows);
    }
    out
}

/// Streams a result: each Arrow batch is encoded to DataRows only when the socket side
/// asks for more, so memory per connection stays at about one batch.
pub fn query_response(
    command: &str,
    stream: SendableRecordBatchStream,
    format: &Format,
) -> PgWireResult<QueryResponse> {
    let fields = Arc::new(fields(stream.schema().as_ref(), format)?);
    let row_fields = fields.clone();
    let rows = stream
        .map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> = match batch {
                Ok(batch) => arrow_pg::encode_recordbatch(row_fields.clone(), batch),
                Err(error) => Box::new(std::iter::once(Err(user_error(WsError::from(error))))),
            };
            futures::stream::iter(rows)
        })
        .flatten();
    let mut response = QueryResponse::new(fields, rows);
    response.command_tag = command.to_string();
    Ok(response)
}

/// Renders a batch as PostgreSQL's text format would send it, value by value (`None`
/// for NULL). Uses the wire encoder itself, then splits the DataRow back into fields.
pub fn text_rows(batch: &RecordBatch) -> Result<Vec<Vec<Option<String>>>, WsError> {
    let fields = Arc::new(fields(batch.schema().as_ref(), &Format::UnifiedText).map_err(pg_to_ws)?);
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in arrow_pg::encode_recordbatch(fields, batch.clone()) {
        let row = row.map_err(pg_to_ws)?;
        out.push(split_data_row(&row)?);
    }
    Ok(out)
}

fn split_data_row(row: &DataRow) -> Result<Vec<Option<String>>, WsError> {
    let data = &row.data[..];
    let mut offset = 0usize;
    let mut values = Vec::with_capacity(row.field_count.max(0) as usize);
    for _ in 0..row.field_count {
        let header = data.get(offset..offset + 4).ok_or_else(|| WsError::internal("truncated DataRow"))?;
        let length = i32::from_be_bytes(header.try_into().expect("four bytes"));
        offset += 4;
        if length < 0 {
            values.push(None);
            continue;
        }
        let end = offset + length as usize;
        let bytes = data.get(offset..end).ok_or_else(|| WsError::internal("truncated DataRow"))?;
        values.push(Some(String::from_utf8_lossy(bytes).into_owned()));
        offset = end;
    }
    assert_eq!(offset, data.len(), "a DataRow holds exactly its fields");
    Ok(values)
}

pub fn pg_to_ws(error: PgWireError) -> WsError {
    match error {
        PgWireError::UserError(info) => {
            let code = crate::error::sqlstate_static(&info.code);
            WsError::new(code, info.message)
        }
        PgWireError::ApiError(inner) => match inner.downcast::<WsError>() {
            Ok(ws) => *ws,
            Err(other) => WsError::internal(other.to_string()),
        },
        other => WsError::internal(other.to_string()),
    }
}

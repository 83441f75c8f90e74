//! The COPY sub-protocol: COPY TO STDOUT streamed batch by batch in PostgreSQL's text,
//! CSV and binary formats, and the CopyInResponse that starts COPY FROM STDIN (whose
//! CopyData, CopyDone and CopyFail reach the session's `CopyIn` through handler.rs).
//!
//! Values are encoded by arrow-pg, exactly as in query results: text-format DataRows
//! for text and CSV, binary-format DataRows for binary. This module adds only COPY's
//! framing: PostgreSQL's text escapes and CSV quoting (CopyAttributeOutText/-CSV in
//! copyto.c), and the PGCOPY header, tuple field counts and trailer. pgwire's own
//! CopyEncoder is not used because its CSV writes an empty string like a NULL and it
//! ignores ESCAPE, and `send_copy_out_response` counts messages as rows and answers an
//! error with a backend CopyFail, which clients do not expect.

use std::fmt::Debug;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::portal::Format;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyInResponse, CopyOutResponse};
use pgwire::messages::data::DataRow;

use super::encode::{fields, user_error};
use crate::error::WsError;
use crate::session::copy::{CopyFormat, CopyIn, CopyOptions};

const BINARY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

fn format_code(format: CopyFormat) -> i8 {
    match format {
        CopyFormat::Binary => 1,
        CopyFormat::Text | CopyFormat::Csv => 0,
    }
}

/// Streams a COPY TO STDOUT: CopyOutResponse, one CopyData per row (as PostgreSQL sends
/// them), CopyDone. Returns the row count for the `COPY n` tag. An error mid-stream is
/// returned as is; the caller's ErrorResponse ends the copy, as in PostgreSQL.
pub async fn send_copy_out<C>(
    client: &mut C,
    options: &CopyOptions,
    mut stream: SendableRecordBatchStream,
) -> PgWireResult<usize>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let schema = stream.schema();
    let wire_format = match options.format {
        CopyFormat::Binary => Format::UnifiedBinary,
        CopyFormat::Text | CopyFormat::Csv => Format::UnifiedText,
    };
    let fields = Arc::new(fields(&schema, &wire_format)?);
    let columns = fields.len();
    let code = format_code(options.format);
    let response = CopyOutResponse::new(code, columns as i16, vec![i16::from(code); columns]);
    client.send(PgWireBackendMessage::CopyOutResponse(response)).await?;
    let mut out = BytesMut::with_capacity(256);
    match options.format {
        CopyFormat::Binary => {
            out.put_slice(BINARY_SIGNATURE);
            out.put_i32(0); // flags: no OIDs
            out.put_i32(0); // header extension length
            // Like PostgreSQL, the header goes out with the first tuple (or the trailer);
            // tokio-postgres's BinaryCopyOutStream relies on it.
        }
        CopyFormat::Text | CopyFormat::Csv if options.header => {
            for (index, field) in schema.fields().iter().enumerate() {
                if index > 0 {
                    out.put_u8(options.delimiter);
                }
                write_value(&mut out, options, crate::sql::display_name(field.name()).as_bytes(), false, columns == 1);
            }
            out.put_u8(b'\n');
            emit(client, &mut out).await?;
        }
        CopyFormat::Text | CopyFormat::Csv => {}
    }
    let mut rows = 0usize;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|error| user_error(WsError::from(error)))?;
        for row in arrow_pg::encode_recordbatch(fields.clone(), batch) {
            encode_row(&mut out, options, &row?)?;
            emit(client, &mut out).await?;
            rows += 1;
        }
        // A subscription's batches come as windows close: each goes out when it is done.
        client.flush().await?;
    }
    if options.format == CopyFormat::Binary {
        out.put_i16(-1);
        emit(client, &mut out).await?;
    }
    client.send(PgWireBackendMessage::CopyDone(CopyDone::new())).await?;
    Ok(rows)
}

async fn emit<C>(client: &mut C, out: &mut BytesMut) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    // `feed` buffers; the codec flushes when its buffer fills, and CopyDone flushes.
    let data = CopyData::new(out.split().freeze());
    client.feed(PgWireBackendMessage::CopyData(data)).await?;
    Ok(())
}

/// Starts a COPY FROM STDIN: tells the client the format and column count.
pub async fn send_copy_in_response<C>(client: &mut C, copy: &CopyIn) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let code = format_code(copy.format());
    let columns = copy.columns();
    let response = CopyInResponse::new(code, columns as i16, vec![i16::from(code); columns]);
    client.send(PgWireBackendMessage::CopyInResponse(response)).await?;
    Ok(())
}

/// The fields of a DataRow: `None` for NULL, else the encoded bytes.
fn data_row_fields(row: &DataRow) -> impl Iterator<Item = Option<&[u8]>> {
    let data = &row.data[..];
    let mut offset = 0usize;
    (0..row.field_count).map(move |_| {
        let length = i32::from_be_bytes(data[offset..offset + 4].try_into().expect("four bytes"));
        offset += 4;
        if length < 0 {
            return None;
        }
        let end = offset + length as usize;
        let value = &data[offset..end];
        offset = end;
        Some(value)
    })
}

/// One row in COPY format into `out` (binary: field count then the DataRow's
/// length-prefixed fields, which are exactly COPY's tuple layout).
fn encode_row(out: &mut BytesMut, options: &CopyOptions, row: &DataRow) -> PgWireResult<()> {
    if options.format == CopyFormat::Binary {
        out.put_i16(row.field_count);
        out.put_slice(&row.data);
        return Ok(());
    }
    let single = row.field_count == 1;
    for (index, value) in data_row_fields(row).enumerate() {
        if index > 0 {
            out.put_u8(options.delimiter);
        }
        match value {
            None => out.put_slice(options.null.as_bytes()),
            Some(value) => {
                let forced = options.force_quote.get(index).copied().unwrap_or(false);
                write_value(out, options, value, forced, single);
            }
        }
    }
    out.put_u8(b'\n');
    Ok(())
}

fn write_value(out: &mut BytesMut, options: &CopyOptions, value: &[u8], forced: bool, single: bool) {
    match options.format {
        CopyFormat::Csv => write_csv(out, options, value, forced, single),
        CopyFormat::Text | CopyFormat::Binary => write_text(out, options.delimiter, value),
    }
}

/// PostgreSQL's text format: backslash escapes for control characters, backslash and
/// the delimiter.
fn write_text(out: &mut BytesMut, delimiter: u8, value: &[u8]) {
    for &b in value {
        let escaped = match b {
            0x08 => Some(b'b'),
            0x0C => Some(b'f'),
            b'\n' => Some(b'n'),
            b'\r' => Some(b'r'),
            b'\t' => Some(b't'),
            0x0B => Some(b'v'),
            b'\\' => Some(b'\\'),
            _ if b == delimiter => Some(b),
            _ => None,
        };
        match escaped {
            Some(c) => {
                out.put_u8(b'\\');
                out.put_u8(c);
            }
            None => out.put_u8(b),
        }
    }
}

/// PostgreSQL's CSV: a value is quoted when forced, when it equals the NULL string (so
/// it reads back as a value), when it is `\.` alone on its line, or when it holds the
/// delimiter, the quote, CR or LF; inside quotes QUOTE and ESCAPE are preceded by ESCAPE.
fn write_csv(out: &mut BytesMut, options: &CopyOptions, value: &[u8], forced: bool, single: bool) {
    let quote = options.quote;
    let needs_quotes = forced
        || value == options.null.as_bytes()
        || (single && value == b"\\.")
        || value.iter().any(|&b| b == options.delimiter || b == quote || b == b'\n' || b == b'\r');
    if !needs_quotes {
        out.put_slice(value);
        return;
    }
    out.put_u8(quote);
    for &b in value {
        if b == quote || b == options.escape {
            out.put_u8(options.escape);
        }
        out.put_u8(b);
    }
    out.put_u8(quote);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        write_text(&mut out, b'\t', value);
        out.to_vec()
    }

    fn csv(options: &CopyOptions, value: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        write_csv(&mut out, options, value, false, false);
        out.to_vec()
    }

    #[test]
    fn text_escapes_like_postgres() {
        assert_eq!(text(b"a\tb\nc\\d\re\x08\x0b\x0c"), b"a\\tb\\nc\\\\d\\re\\b\\v\\f".to_vec());
        let mut out = BytesMut::new();
        write_text(&mut out, b'|', b"a|b\tc");
        assert_eq!(out.to_vec(), b"a\\|b\\tc".to_vec());
    }

    #[test]
    fn csv_quotes_like_postgres() {
        let options = CopyOptions::defaults(CopyFormat::Csv);
        assert_eq!(csv(&options, b"plain"), b"plain".to_vec());
        // The empty string must not read back as NULL.
        assert_eq!(csv(&options, b""), b"\"\"".to_vec());
        assert_eq!(csv(&options, b"a,\"b\"\nc"), b"\"a,\"\"b\"\"\nc\"".to_vec());
        let mut escaped = options.clone();
        escaped.escape = b'\\';
        assert_eq!(csv(&escaped, b"x\"y\\z"), b"\"x\\\"y\\\\z\"".to_vec());
        let mut out = BytesMut::new();
        write_csv(&mut out, &options, b"\\.", false, true);
        assert_eq!(out.to_vec(), b"\"\\.\"".to_vec());
    }
}

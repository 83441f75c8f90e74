//! COPY FROM STDIN input: PostgreSQL's text and CSV formats decoded into Arrow batches
//! of the target table's schema.
//!
//! Input arrives in CopyData chunks cut anywhere (psql sends a line per message, other
//! clients fixed-size blocks), so bytes wait in `pending` until a whole record is there.
//! A record's fields are split and unescaped into one scratch buffer, then appended as
//! text to one string builder per input column; when a batch is full (`batch_rows_max`
//! rows or `copy_batch_bytes_max` bytes) each column is converted to its table type with
//! Arrow's cast kernels, and a value that does not convert is reported with its line.
//! arrow-csv is not used: it cannot tell a quoted empty string from an unquoted empty
//! field, which PostgreSQL's CSV NULL rule depends on, and it has no text format.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryBuilder, RecordBatch, StringArray, StringBuilder, new_null_array,
};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, SchemaRef};

use super::{CopyFormat, CopyOptions};
use crate::error::{WsError, WsResult, sqlstate};

/// Where one field of the current record landed in the scratch buffer.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    null: bool,
}

/// Incremental decoder of one COPY FROM's data.
pub struct Decoder {
    format: CopyFormat,
    delimiter: u8,
    null: Vec<u8>,
    quote: u8,
    escape: u8,
    skip_header: bool,
    table: String,
    schema: SchemaRef,
    /// Input field `i` fills table column `positions[i]`.
    positions: Vec<usize>,
    builders: Vec<StringBuilder>,
    /// Line number of each row of the batch being built, for error messages.
    row_lines: Vec<u64>,
    batch_bytes: usize,
    rows_max: usize,
    bytes_max: usize,
    /// Bytes received but not yet part of a complete record.
    pending: Vec<u8>,
    /// Lines (records) consumed so far, the header included, as PostgreSQL counts them.
    line: u64,
    /// `\.` was seen: the rest of the data is ignored, as PostgreSQL does.
    ended: bool,
    scratch: Vec<u8>,
    spans: Vec<Span>,
}

fn bad_format(message: String) -> WsError {
    WsError::new(sqlstate::BAD_COPY_FILE_FORMAT, message)
}

impl Decoder {
    pub fn new(
        options: &CopyOptions,
        table: &str,
        schema: SchemaRef,
        positions: Vec<usize>,
        rows_max: usize,
        bytes_max: usize,
    ) -> Decoder {
        assert!(rows_max > 0 && bytes_max > 0, "COPY batch limits are positive");
        assert!(positions.iter().all(|&p| p < schema.fields().len()), "positions index the schema");
        let builders = positions.iter().map(|_| StringBuilder::new()).collect();
        Decoder {
            format: options.format,
            delimiter: options.delimiter,
            null: options.null.as_bytes().to_vec(),
            quote: options.quote,
            escape: options.escape,
            skip_header: options.header,
            table: table.to_string(),
            schema,
            positions,
            builders,
            row_lines: Vec::new(),
            batch_bytes: 0,
            rows_max,
            bytes_max,
            pending: Vec::new(),
            line: 0,
            ended: false,
            scratch: Vec::new(),
            spans: Vec::new(),
        }
    }

    /// Takes one chunk of input; returns the batches it completed.
    pub fn push(&mut self, chunk: &[u8]) -> WsResult<Vec<RecordBatch>> {
        let mut out = Vec::new();
        if self.ended {
            return Ok(out);
        }
        self.pending.extend_from_slice(chunk);
        let pending = std::mem::take(&mut self.pending);
        let mut start = 0;
        let result = (|| {
            while !self.ended {
                let Some(end) = self.record_end(&pending, start) else { break };
                self.take_record(&pending[start..end], &mut out)?;
                start = end + 1;
            }
            Ok::<_, WsError>(())
        })();
        self.pending = pending;
        result?;
        self.pending.drain(..start);
        if self.pending.len() > self.bytes_max {
            return Err(WsError::new(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!(
                    "COPY {}, line {}: row is longer than copy_batch_bytes_max ({} bytes)",
                    self.table,
                    self.line + 1,
                    self.bytes_max
                ),
            ));
        }
        Ok(out)
    }

    /// Ends the input: a last record without its newline counts; returns the last batch.
    pub fn finish(&mut self) -> WsResult<Option<RecordBatch>> {
        let mut out = Vec::new();
        if !self.ended && !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            self.take_record(&pending, &mut out)?;
        }
        assert!(out.len() <= 1, "one record completes at most one batch");
        if let Some(batch) = out.pop() {
            assert!(self.row_lines.is_empty(), "a completed batch leaves nothing behind");
            return Ok(Some(batch));
        }
        self.flush()
    }

    /// Index of the newline that ends the record starting at `start`, if it has arrived.
    fn record_end(&self, buf: &[u8], start: usize) -> Option<usize> {
        let mut i = start;
        match self.format {
            CopyFormat::Text | CopyFormat::Binary => {
                while i < buf.len() {
                    match buf[i] {
                        b'\n' => return Some(i),
                        // An escaped byte, a newline included, is data.
                        b'\\' => i += 2,
                        _ => i += 1,
                    }
                }
                None
            }
            CopyFormat::Csv => {
                let mut quoted = false;
                while i < buf.len() {
                    let b = buf[i];
                    if quoted {
                        if b == self.escape {
                            // The byte after it decides; wait for it.
                            let next = *buf.get(i + 1)?;
                            if next == self.quote || (self.escape != self.quote && next == self.escape) {
                                i += 2;
                                continue;
                            }
                        }
                        if b == self.quote {
                            quoted = false;
                        }
                    } else if b == self.quote {
                        quoted = true;
                    } else if b == b'\n' {
                        return Some(i);
                    }
                    i += 1;
                }
                None
            }
        }
    }

    fn take_record(&mut self, record: &[u8], out: &mut Vec<RecordBatch>) -> WsResult<()> {
        self.line += 1;
        // Lines may end in \r\n; a data carriage return is always escaped or quoted.
        let record = match record.split_last() {
            Some((b'\r', rest)) if !rest.ends_with(b"\\") => rest,
            _ => record,
        };
        if self.skip_header {
            self.skip_header = false;
            return Ok(());
        }
        if record == b"\\." {
            self.ended = true;
            return Ok(());
        }
        match self.format {
            CopyFormat::Csv => self.split_csv(record)?,
            CopyFormat::Text | CopyFormat::Binary => self.split_text(record)?,
        }
        let text = std::str::from_utf8(&self.scratch).map_err(|_| {
            WsError::new(
                sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
                format!("invalid byte sequence for encoding \"UTF8\" (COPY {}, line {})", self.table, self.line),
            )
        })?;
        if self.spans.len() > self.positions.len() {
            return Err(bad_format(format!(
                "extra data after last expected column (COPY {}, line {})",
                self.table, self.line
            )));
        }
        if self.spans.len() < self.positions.len() {
            let missing = self.schema.field(self.positions[self.spans.len()]).name();
            return Err(bad_format(format!(
                "missing data for column \"{missing}\" (COPY {}, line {})",
                self.table, self.line
            )));
        }
        for (builder, span) in self.builders.iter_mut().zip(&self.spans) {
            if span.null {
                builder.append_null();
            } else {
                // Spans end at ASCII delimiters or quotes, so they are char boundaries.
                builder.append_value(&text[span.start..span.end]);
            }
        }
        self.row_lines.push(self.line);
        self.batch_bytes += self.scratch.len();
        if self.row_lines.len() >= self.rows_max || self.batch_bytes >= self.bytes_max {
            out.extend(self.flush()?);
        }
        Ok(())
    }

    /// PostgreSQL's text format: delimiter-separated, backslash escapes, NULL compared
    /// with the field as written (before unescaping).
    fn split_text(&mut self, record: &[u8]) -> WsResult<()> {
        self.scratch.clear();
        self.spans.clear();
        let mut i = 0;
        loop {
            let field_start = i;
            let mut escaped = false;
            while i < record.len() && record[i] != self.delimiter {
                if record[i] == b'\\' {
                    escaped = true;
                    i += 2;
                } else {
                    i += 1;
                }
            }
            let i_end = i.min(record.len());
            let raw = &record[field_start..i_end];
            let start = self.scratch.len();
            let null = raw == self.null.as_slice();
            if !null {
                if escaped {
                    unescape_text(raw, &mut self.scratch).map_err(|message| {
                        bad_format(format!("{message} (COPY {}, line {})", self.table, self.line))
                    })?;
                } else {
                    self.scratch.extend_from_slice(raw);
                }
            }
            self.spans.push(Span { start, end: self.scratch.len(), null });
            if i >= record.len() {
                return Ok(());
            }
            i += 1;
        }
    }

    /// PostgreSQL's CSV format: QUOTE-quoted fields where ESCAPE escapes QUOTE (doubled
    /// by default); NULL is an unquoted field equal to the NULL string, so `""` is an
    /// empty string while an empty unquoted field is NULL by default.
    fn split_csv(&mut self, record: &[u8]) -> WsResult<()> {
        self.scratch.clear();
        self.spans.clear();
        let mut i = 0;
        loop {
            let field_start = i;
            let start = self.scratch.len();
            let mut quoted = false;
            while i < record.len() && record[i] != self.delimiter {
                if record[i] != self.quote {
                    self.scratch.push(record[i]);
                    i += 1;
                    continue;
                }
                quoted = true;
                i += 1;
                loop {
                    let Some(&b) = record.get(i) else {
                        return Err(bad_format(format!(
                            "unterminated CSV quoted field (COPY {}, line {})",
                            self.table, self.line
                        )));
                    };
                    let next = record.get(i + 1).copied();
                    if b == self.escape
                        && (next == Some(self.quote) || (self.escape != self.quote && next == Some(self.escape)))
                    {
                        self.scratch.push(next.expect("checked above"));
                        i += 2;
                    } else if b == self.quote {
                        i += 1;
                        break;
                    } else {
                        self.scratch.push(b);
                        i += 1;
                    }
                }
            }
            let null = !quoted && &record[field_start..i] == self.null.as_slice();
            self.spans.push(Span { start, end: self.scratch.len(), null });
            if i >= record.len() {
                return Ok(());
            }
            i += 1;
        }
    }

    /// Converts the rows collected so far into one batch of the table's schema.
    fn flush(&mut self) -> WsResult<Option<RecordBatch>> {
        let rows = self.row_lines.len();
        if rows == 0 {
            return Ok(None);
        }
        let mut columns: Vec<Option<ArrayRef>> = vec![None; self.schema.fields().len()];
        for (input, builder) in self.builders.iter_mut().enumerate() {
            let strings = builder.finish();
            let position = self.positions[input];
            let field = self.schema.field(position);
            let array = convert(&strings, field.data_type()).map_err(|(row, mut error)| {
                error.message = format!(
                    "{} (COPY {}, line {}, column {})",
                    error.message,
                    self.table,
                    self.row_lines[row],
                    field.name(),
                );
                error
            })?;
            columns[position] = Some(array);
        }
        let columns: Vec<ArrayRef> = columns
            .into_iter()
            .zip(self.schema.fields())
            .map(|(column, field)| column.unwrap_or_else(|| new_null_array(field.data_type(), rows)))
            .collect();
        for (column, field) in columns.iter().zip(self.schema.fields()) {
            if !field.is_nullable() && column.null_count() > 0 {
                let row = (0..rows).find(|&r| column.is_null(r)).expect("a null exists");
                return Err(WsError::new(
                    sqlstate::NOT_NULL_VIOLATION,
                    format!(
                        "null value in column \"{}\" of relation \"{}\" violates not-null constraint (COPY {}, line {})",
                        field.name(),
                        self.table,
                        self.table,
                        self.row_lines[row]
                    ),
                ));
            }
        }
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|error| WsError::internal(format!("COPY batch: {error}")))?;
        self.row_lines.clear();
        self.batch_bytes = 0;
        Ok(Some(batch))
    }
}

/// Undoes the text format's backslash escapes (`\n`, `\t`, octal `\123`, hex `\x4F`,
/// and a backslash before any other byte meaning that byte).
fn unescape_text(raw: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let Some(&c) = raw.get(i) else {
            return Err("unterminated backslash escape at end of line".to_string());
        };
        i += 1;
        let decoded = match c {
            b'b' => 0x08,
            b'f' => 0x0C,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 0x0B,
            b'0'..=b'7' => {
                let mut value = u32::from(c - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                // PostgreSQL keeps the low eight bits of an octal escape.
                (value & 0xFF) as u8
            }
            b'x' if raw.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut value = 0u8;
                for _ in 0..2 {
                    match raw.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            value = value * 16 + d as u8;
                            i += 1;
                        }
                        None => break,
                    }
                }
                value
            }
            other => other,
        };
        out.push(decoded);
    }
    Ok(())
}

/// PostgreSQL's bytea input: `\x` followed by hex digit pairs, or the escape format
/// where `\\` is a backslash and `\ooo` an octal byte.
fn decode_bytea(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if let Some(hex) = bytes.strip_prefix(b"\\x") {
        let digits: Vec<u8> = hex.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
        if !digits.len().is_multiple_of(2) {
            return None;
        }
        return digits
            .chunks(2)
            .map(|pair| {
                let high = (pair[0] as char).to_digit(16)?;
                let low = (pair[1] as char).to_digit(16)?;
                Some((high * 16 + low) as u8)
            })
            .collect();
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
        } else if bytes.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let octal = bytes.get(i + 1..i + 4)?;
            if !octal.iter().all(|d| (b'0'..=b'7').contains(d)) || octal[0] > b'3' {
                return None;
            }
            out.push(octal.iter().fold(0u8, |v, d| v * 8 + (d - b'0')));
            i += 4;
        }
    }
    Some(out)
}

/// PostgreSQL's name of the type a column decodes to, for error messages.
fn pg_type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "integer".into(),
        DataType::Int64 | DataType::UInt32 => "bigint".into(),
        DataType::Float16 | DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..)
        | DataType::UInt64 => "numeric".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone".into(),
        DataType::Time32(_) | DataType::Time64(_) => "time".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "bytea".into(),
        other => other.to_string(),
    }
}

/// True when COPY FROM can fill a column of this type from text.
pub fn decodable(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => true,
        // Casting text to these would not parse PostgreSQL's array/record syntax.
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::ListView(_)
        | DataType::LargeListView(_)
        | DataType::FixedSizeList(..)
        | DataType::Struct(_)
        | DataType::Map(..)
        | DataType::Union(..)
        | DataType::Dictionary(..)
        | DataType::RunEndEncoded(..) => false,
        other => datafusion::arrow::compute::can_cast_types(&DataType::Utf8, other),
    }
}

/// Text values to one column of `target`; on failure, the row and the error.
fn convert(strings: &StringArray, target: &DataType) -> Result<ArrayRef, (usize, WsError)> {
    let invalid = |row: usize| {
        (
            row,
            WsError::new(
                sqlstate::INVALID_TEXT_REPRESENTATION,
                format!("invalid input syntax for type {}: \"{}\"", pg_type_name(target), strings.value(row)),
            ),
        )
    };
    let cast_error =
        |error: datafusion::arrow::error::ArrowError| (0, WsError::internal(format!("COPY conversion: {error}")));
    match target {
        DataType::Utf8 => Ok(Arc::new(strings.clone())),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            let mut builder = BinaryBuilder::with_capacity(strings.len(), strings.value_data().len());
            for (row, value) in strings.iter().enumerate() {
                match value {
                    None => builder.append_null(),
                    Some(text) => builder.append_value(decode_bytea(text).ok_or_else(|| invalid(row))?),
                }
            }
            let binary: ArrayRef = Arc::new(builder.finish());
            if target == &DataType::Binary {
                Ok(binary)
            } else {
                cast_with_options(&binary, target, &CastOptions::default()).map_err(cast_error)
            }
        }
        _ => {
            let strict = CastOptions { safe: false, ..CastOptions::default() };
            match cast_with_options(strings, target, &strict) {
                Ok(array) => Ok(array),
                Err(_) => {
                    // The strict cast does not say which value failed; the lenient one
                    // turns failures into NULLs, and the first new NULL is the culprit.
                    let lenient = cast_with_options(strings, target, &CastOptions::default()).map_err(cast_error)?;
                    let row = (0..strings.len()).find(|&r| strings.is_valid(r) && lenient.is_null(r)).unwrap_or(0);
                    Err(invalid(row))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, BinaryArray};
    use datafusion::arrow::datatypes::{Field, Int64Type, Schema, TimeUnit, TimestampMicrosecondType};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true)]))
    }

    fn options(format: CopyFormat) -> CopyOptions {
        CopyOptions::defaults(format)
    }

    fn decode(options: &CopyOptions, chunks: &[&[u8]]) -> WsResult<Vec<RecordBatch>> {
        let mut decoder = Decoder::new(options, "t", schema(), vec![0, 1], 1000, 1 << 20);
        let mut batches = Vec::new();
        for chunk in chunks {
            batches.extend(decoder.push(chunk)?);
        }
        batches.extend(decoder.finish()?);
        Ok(batches)
    }

    fn names(batches: &[RecordBatch]) -> Vec<Option<String>> {
        batches
            .iter()
            .flat_map(|b| b.column(1).as_string::<i32>().iter().map(|v| v.map(str::to_string)).collect::<Vec<_>>())
            .collect()
    }

    #[test]
    fn text_escapes_and_null() {
        let batches = decode(&options(CopyFormat::Text), &[b"1\ta\\tb\\nc\\\\d\n2\t\\N\n3\t\\101\\x42\n"]).unwrap();
        assert_eq!(names(&batches), vec![Some("a\tb\nc\\d".into()), None, Some("AB".into())]);
        let ids: Vec<i64> = batches[0].column(0).as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(ids, vec![1, 2, 3]);
    }

    #[test]
    fn records_split_across_chunks_and_end_marker() {
        let batches =
            decode(&options(CopyFormat::Text), &[b"1\tab", b"c\n2\t", b"x\\", b"\ny\n\\.\n9\tignored\n"]).unwrap();
        assert_eq!(names(&batches), vec![Some("abc".into()), Some("x\ny".into())]);
    }

    #[test]
    fn csv_quotes_nulls_and_newlines() {
        let batches =
            decode(&options(CopyFormat::Csv), &[b"1,\"a,\"\"b\"\"\nc\"\n2,\n3,\"\"\n", b"4,plain\r\n"]).unwrap();
        assert_eq!(names(&batches), vec![Some("a,\"b\"\nc".into()), None, Some(String::new()), Some("plain".into())]);
    }

    #[test]
    fn csv_header_and_custom_escape() {
        let mut options = options(CopyFormat::Csv);
        options.header = true;
        options.escape = b'\\';
        options.delimiter = b';';
        let batches = decode(&options, &[b"id;name\n1;\"x\\\"y\"\n"]).unwrap();
        assert_eq!(names(&batches), vec![Some("x\"y".into())]);
    }

    #[test]
    fn errors_carry_codes_and_lines() {
        let error = decode(&options(CopyFormat::Csv), &[b"1,a\n2,b,c\n"]).unwrap_err();
        assert_eq!(error.code, sqlstate::BAD_COPY_FILE_FORMAT);
        assert!(error.message.contains("line 2"), "{}", error.message);
        let error = decode(&options(CopyFormat::Text), &[b"1\ta\n2\n"]).unwrap_err();
        assert_eq!(error.code, sqlstate::BAD_COPY_FILE_FORMAT);
        assert!(error.message.contains("missing data for column \"name\""), "{}", error.message);
        let error = decode(&options(CopyFormat::Csv), &[b"1,a\n2,b\nx,c\n"]).unwrap_err();
        assert_eq!(error.code, sqlstate::INVALID_TEXT_REPRESENTATION);
        assert!(error.message.contains("line 3") && error.message.contains("bigint"), "{}", error.message);
        let error = decode(&options(CopyFormat::Csv), &[b"1,\"open\n"]).unwrap_err();
        assert_eq!(error.code, sqlstate::BAD_COPY_FILE_FORMAT);
    }

    #[test]
    fn batches_are_bounded_by_rows() {
        let mut decoder = Decoder::new(&options(CopyFormat::Csv), "t", schema(), vec![0, 1], 2, 1 << 20);
        let batches = decoder.push(b"1,a\n2,b\n3,c\n4,d\n5,e\n").unwrap();
        assert_eq!(batches.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(), vec![2, 2]);
        assert_eq!(decoder.finish().unwrap().map(|b| b.num_rows()), Some(1));
    }

    #[test]
    fn overlong_row_is_54000() {
        let mut decoder = Decoder::new(&options(CopyFormat::Csv), "t", schema(), vec![0, 1], 10, 16);
        let error = decoder.push(b"1,\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").unwrap_err();
        assert_eq!(error.code, sqlstate::PROGRAM_LIMIT_EXCEEDED);
    }

    #[test]
    fn typed_columns_convert() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
            Field::new("b", DataType::Binary, true),
            Field::new("ok", DataType::Boolean, true),
        ]));
        let mut decoder = Decoder::new(&options(CopyFormat::Text), "t", schema, vec![0, 1, 2], 10, 1 << 20);
        decoder.push(b"2026-01-02 03:04:05.5+00\t\\\\x0aff\tt\n").unwrap();
        let batch = decoder.finish().unwrap().unwrap();
        let ts = batch.column(0).as_primitive::<TimestampMicrosecondType>().value(0);
        assert_eq!(ts, 1_767_323_045_500_000);
        let bytes = batch.column(1).as_any().downcast_ref::<BinaryArray>().unwrap().value(0);
        assert_eq!(bytes, &[0x0a, 0xff]);
        assert!(batch.column(2).as_boolean().value(0));
    }

    #[test]
    fn nested_types_are_not_decodable() {
        assert!(!decodable(&DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true)))));
        assert!(decodable(&DataType::Decimal128(10, 2)));
        assert!(decodable(&DataType::Date32));
    }
}

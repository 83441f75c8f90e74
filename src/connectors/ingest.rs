//! `connector = 'ingest'`: rows that arrive over the wire (INSERT, COPY), made durable in
//! append-only segment files before they are acknowledged.
//!
//! Layout: `<data dir>/sources/<name>/<first offset, 20 digits>.seg`. A segment is a
//! sequence of frames:
//!
//! ```text
//! u32 payload length | u32 crc32 of (arrival, flags, payload) | i64 arrival ms | u8 flags | payload
//! ```
//!
//! where the payload is one Arrow IPC stream (schema + one batch) and flag bit 0 marks the
//! last frame of one statement's rows. One writer thread owns the files. It takes every
//! request queued since its last write (group commit), checks that the log will take
//! every batch, writes their frames, fsyncs once, makes the rows visible in the source's
//! log, and only then acknowledges each request.
//!
//! The reply matches durability: Ok means the rows are fsynced (and replayed after any
//! restart); an error means they were never written, or were cut off the file again
//! (and that cut fsynced) before the reply. The one exception is a failed write that
//! cannot be cut back: those statements get 08007 (outcome unknown, the rows may come
//! back after a restart) and the writer refuses every later write, so that nothing is
//! appended after bytes nobody acknowledged.
//!
//! On start the segments are replayed in order. Only the last segment is ever written
//! to, so only it can end in a write torn by a crash: there, a frame cut short by the end
//! of the file, a last frame that fails its checksum, and the frames of a statement
//! whose last frame is missing are cut off (the file is truncated to the last complete
//! statement), so a statement is all there or not at all and every acknowledged one is
//! kept. Anything else that does not read back (a checksum mismatch with frames after
//! it, an undecodable payload, a short or unfinished earlier segment) is corruption of
//! acknowledged rows: the source does not start (XX001, naming the segment and byte),
//! and the file is left as it is for the operator. The length field is not covered by
//! the checksum: a corrupted length that points past the end of the last segment reads
//! as a torn tail.
//! Retention deletes whole segments once every row in them has left the log.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use tokio::sync::{mpsc, oneshot};

use crate::error::{WsError, WsResult, sqlstate};
use crate::stream::{DurableAppend, Source};

pub const OPTIONS: [&str; 1] = ["segment_bytes"];

/// A segment is closed and a new one started beyond this size (default; option
/// `segment_bytes`). Retention deletes whole segments, so this is also its granularity.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;
/// Requests waiting for the writer; senders wait when it is full (back-pressure).
const QUEUE_REQUESTS_MAX: usize = 1_024;
/// Largest frame accepted on replay; a larger length field means a corrupt frame.
const FRAME_BYTES_MAX: u32 = 1 << 30;
const HEADER_BYTES: usize = 4 + 4 + 8 + 1;
const FLAG_COMMIT: u8 = 1;

enum Request {
    Append {
        batches: Vec<RecordBatch>,
        ack: oneshot::Sender<WsResult<u64>>,
    },
    /// Delete segments that hold only rows below this offset.
    RetainFrom(u64),
}

/// The handle sessions write through; the thread behind it owns the files.
#[derive(Debug)]
pub struct IngestWriter {
    queue: mpsc::Sender<Request>,
}

#[async_trait]
impl DurableAppend for IngestWriter {
    async fn append(&self, batches: Vec<RecordBatch>) -> WsResult<u64> {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows == 0 {
            return Ok(0);
        }
        let (ack, acked) = oneshot::channel();
        self.queue
            .send(Request::Append { batches, ack })
            .await
            .map_err(|_| WsError::new(sqlstate::ADMIN_SHUTDOWN, "the source's writer has stopped"))?;
        acked.await.map_err(|_| {
            // The writer thread ended without replying (it panicked): the rows may
            // or may not have reached the file.
            WsError::new(sqlstate::TRANSACTION_RESOLUTION_UNKNOWN, "the source's writer stopped before it replied")
        })??;
        Ok(rows as u64)
    }

    fn retain_from(&self, offset: u64) {
        // Best effort: a full queue only delays deletion to a later tick.
        let _ = self.queue.try_send(Request::RetainFrom(offset));
    }
}

struct Segment {
    first_offset: u64,
    path: PathBuf,
}

struct Writer {
    source: Arc<Source>,
    dir: PathBuf,
    segment_bytes_max: u64,
    segments: Vec<Segment>,
    file: File,
    file_bytes: u64,
    /// Set when a failed write could not be cut back off the file: every later write is
    /// refused with it, so that nothing is appended after bytes nobody acknowledged.
    broken: Option<WsError>,
}

/// Replays the source's segments into its log, then starts the writer thread.
pub fn start(source: Arc<Source>, data_dir: &Path) -> WsResult<()> {
    let segment_bytes_max = match source.spec.option("segment_bytes") {
        Some(text) => crate::stream::spec::parse_bytes(text)?.max(1 << 10),
        None => SEGMENT_BYTES_DEFAULT,
    };
    let dir = segments_dir(data_dir, source.name());
    std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
    let segments = replay(&source, &dir)?;
    let mut writer = Writer::open(source.clone(), dir, segment_bytes_max, segments)?;
    let (queue, mut requests) = mpsc::channel(QUEUE_REQUESTS_MAX);
    source.set_writer(Arc::new(IngestWriter { queue }));
    let name = source.name().to_string();
    std::thread::Builder::new()
        .name(format!("ingest-{name}"))
        .spawn(move || {
            while let Some(first) = requests.blocking_recv() {
                let mut batch = vec![first];
                while let Ok(more) = requests.try_recv() {
                    batch.push(more);
                    if batch.len() >= QUEUE_REQUESTS_MAX {
                        break;
                    }
                }
                writer.handle(batch);
            }
        })
        .map_err(|e| WsError::internal(format!("ingest writer thread: {e}")))?;
    Ok(())
}

/// Where a source's segments live; DROP SOURCE deletes this directory.
pub fn segments_dir(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("sources").join(crate::catalog::file_stem(name))
}

fn io_error(path: &Path, error: std::io::Error) -> WsError {
    WsError::new(sqlstate::IO_ERROR, format!("{}: {error}", path.display()))
}

fn segment_path(dir: &Path, first_offset: u64) -> PathBuf {
    dir.join(format!("{first_offset:020}.seg"))
}

fn list_segments(dir: &Path) -> WsResult<Vec<Segment>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let path = entry.map_err(|e| io_error(dir, e))?.path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else { continue };
        if path.extension().is_some_and(|e| e == "seg")
            && let Ok(first_offset) = stem.parse::<u64>()
        {
            segments.push(Segment { first_offset, path });
        }
    }
    segments.sort_by_key(|s| s.first_offset);
    Ok(segments)
}

/// Why a frame does not read back.
#[derive(Debug)]
enum BadFrame {
    /// Cut short, or the last frame of the file failing its checksum: what a crash
    /// during a write leaves.
    Torn(String),
    /// Unreadable with bytes after it: not what a crash leaves.
    Corrupt(String),
}

/// Reads every committed statement back into the log; cuts a torn tail off the last
/// segment; refuses (XX001) a corrupt one (module doc).
fn replay(source: &Source, dir: &Path) -> WsResult<Vec<Segment>> {
    let segments = list_segments(dir)?;
    if let Some(first) = segments.first() {
        source.log.start_at_offset(first.first_offset);
    }
    for (index, segment) in segments.iter().enumerate() {
        let last_segment = index + 1 == segments.len();
        let corrupt = |at: u64, reason: &str| {
            WsError::new(
                sqlstate::DATA_CORRUPTED,
                format!(
                    "source \"{}\": segment {} is corrupt at byte {at}: {reason}; acknowledged rows from there on \
                     cannot be read back. The file is left as it is: restore it, or move it away to start without \
                     its rows",
                    source.name(),
                    segment.path.display()
                ),
            )
        };
        let file = File::open(&segment.path).map_err(|e| io_error(&segment.path, e))?;
        let length = file.metadata().map_err(|e| io_error(&segment.path, e))?.len();
        let mut reader = BufReader::new(file);
        let mut committed_bytes: u64 = 0;
        let mut read_bytes: u64 = 0;
        let mut pending: Vec<(RecordBatch, i64)> = Vec::new();
        let torn = loop {
            match read_frame(&mut reader, read_bytes, length) {
                Ok(Some((arrival_ms, flags, batch, frame_bytes))) => {
                    // The writer checked every batch before writing it: one the log
                    // refuses now did not come from it.
                    source.log.check(0, &batch).map_err(|e| corrupt(read_bytes, &e.message))?;
                    read_bytes += frame_bytes;
                    pending.push((batch, arrival_ms));
                    if flags & FLAG_COMMIT != 0 {
                        for (batch, arrival_ms) in pending.drain(..) {
                            source
                                .log
                                .append(0, batch, arrival_ms)
                                .map_err(|e| corrupt(committed_bytes, &e.message))?;
                        }
                        committed_bytes = read_bytes;
                    }
                }
                Ok(None) if pending.is_empty() => break None,
                Ok(None) => break Some("the file ends inside a statement".to_string()),
                Err(BadFrame::Torn(reason)) => break Some(reason),
                Err(BadFrame::Corrupt(reason)) => return Err(corrupt(read_bytes, &reason)),
            }
        };
        let Some(reason) = torn else { continue };
        if !last_segment {
            // Segments before the last were complete when the writer moved on.
            return Err(corrupt(read_bytes, &format!("{reason} (in a segment the writer had finished)")));
        }
        source.record_error(format!("{}: {reason}; cut at byte {committed_bytes}", segment.path.display()));
        tracing::warn!(segment = %segment.path.display(), committed_bytes, length, reason, "cutting a torn write off the segment");
        let file = OpenOptions::new().write(true).open(&segment.path).map_err(|e| io_error(&segment.path, e))?;
        file.set_len(committed_bytes).map_err(|e| io_error(&segment.path, e))?;
        file.sync_all().map_err(|e| io_error(&segment.path, e))?;
    }
    // Rows may be past retention already: let the log drop them now.
    source.log.trim(crate::stream::now_ms());
    Ok(segments)
}

/// One frame starting at byte `at` of a file of `length` bytes, or None at a clean end.
fn read_frame(reader: &mut impl Read, at: u64, length: u64) -> Result<Option<(i64, u8, RecordBatch, u64)>, BadFrame> {
    if at == length {
        return Ok(None);
    }
    let io = |what: &str, e: std::io::Error| BadFrame::Corrupt(format!("reading the frame {what}: {e}"));
    let mut header = [0u8; HEADER_BYTES];
    if length - at < HEADER_BYTES as u64 {
        return Err(BadFrame::Torn(format!("a frame header cut short ({} of {HEADER_BYTES} bytes)", length - at)));
    }
    reader.read_exact(&mut header).map_err(|e| io("header", e))?;
    let payload_length = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let arrival_ms = i64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    let flags = header[16];
    let frame_bytes = HEADER_BYTES as u64 + payload_length as u64;
    if frame_bytes > length - at {
        return Err(BadFrame::Torn(format!("a frame of {frame_bytes} bytes cut short at {} bytes", length - at)));
    }
    if payload_length > FRAME_BYTES_MAX {
        return Err(BadFrame::Corrupt(format!("frame length {payload_length} is over the limit {FRAME_BYTES_MAX}")));
    }
    let mut payload = vec![0u8; payload_length as usize];
    reader.read_exact(&mut payload).map_err(|e| io("payload", e))?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[8..]);
    hasher.update(&payload);
    if hasher.finalize() != crc {
        let reason = "frame checksum mismatch".to_string();
        return Err(if at + frame_bytes == length { BadFrame::Torn(reason) } else { BadFrame::Corrupt(reason) });
    }
    let decode = |e: &dyn std::fmt::Display| BadFrame::Corrupt(format!("frame payload does not decode: {e}"));
    let mut batches = StreamReader::try_new(payload.as_slice(), None).map_err(|e| decode(&e))?;
    let batch = batches.next().ok_or_else(|| decode(&"no batch in it"))?.map_err(|e| decode(&e))?;
    Ok(Some((arrival_ms, flags, batch, frame_bytes)))
}

fn encode_frame(batch: &RecordBatch, arrival_ms: i64, flags: u8, out: &mut Vec<u8>) -> WsResult<()> {
    let mut payload = Vec::new();
    {
        let mut writer = StreamWriter::try_new(&mut payload, &batch.schema())?;
        writer.write(batch)?;
        writer.finish()?;
    }
    let length = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= FRAME_BYTES_MAX)
        .ok_or_else(|| WsError::new(sqlstate::PROGRAM_LIMIT_EXCEEDED, "one batch is over 1 GiB encoded"))?;
    let mut tail = Vec::with_capacity(9);
    tail.extend_from_slice(&arrival_ms.to_le_bytes());
    tail.push(flags);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&tail);
    hasher.update(&payload);
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.extend_from_slice(&tail);
    out.extend_from_slice(&payload);
    Ok(())
}

fn sync_dir(dir: &Path) -> WsResult<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error(dir, e))
}

impl Writer {
    fn open(source: Arc<Source>, dir: PathBuf, segment_bytes_max: u64, mut segments: Vec<Segment>) -> WsResult<Writer> {
        if segments.is_empty() {
            let first_offset = source.log.next_offset();
            let path = segment_path(&dir, first_offset);
            File::create(&path).map_err(|e| io_error(&path, e))?;
            sync_dir(&dir)?;
            segments.push(Segment { first_offset, path });
        }
        let path = &segments.last().expect("at least one segment").path;
        let file = OpenOptions::new().append(true).open(path).map_err(|e| io_error(path, e))?;
        let file_bytes = file.metadata().map_err(|e| io_error(path, e))?.len();
        Ok(Writer { source, dir, segment_bytes_max, segments, file, file_bytes, broken: None })
    }

    /// Starts a new segment whose first row will get offset `first_offset`.
    fn roll(&mut self, first_offset: u64) -> WsResult<()> {
        let path = segment_path(&self.dir, first_offset);
        let file = OpenOptions::new().create_new(true).append(true).open(&path).map_err(|e| io_error(&path, e))?;
        sync_dir(&self.dir)?;
        self.segments.push(Segment { first_offset, path });
        self.file = file;
        self.file_bytes = 0;
        Ok(())
    }

    fn handle(&mut self, requests: Vec<Request>) {
        let mut appends = Vec::new();
        for request in requests {
            match request {
                Request::Append { batches, ack } => appends.push((batches, ack)),
                Request::RetainFrom(offset) => self.delete_before(offset),
            }
        }
        if appends.is_empty() {
            return;
        }
        if let Some(broken) = &self.broken {
            for (_, ack) in appends {
                let _ = ack.send(Err(broken.clone()));
            }
            return;
        }
        let arrival_ms = crate::stream::now_ms();
        if self.file_bytes >= self.segment_bytes_max
            && let Err(error) = self.roll(self.source.log.next_offset())
        {
            self.source.record_error(&error);
            for (_, ack) in appends {
                let _ = ack.send(Err(error.clone()));
            }
            return;
        }
        // Encode every statement; one that cannot be encoded, or that the log would
        // refuse, fails alone and is not written: after the fsync nothing may fail.
        let mut bytes = Vec::new();
        let mut accepted = Vec::with_capacity(appends.len());
        for (batches, ack) in appends {
            let start = bytes.len();
            let last = batches.len() - 1;
            let encoded = batches.iter().enumerate().try_for_each(|(i, batch)| {
                self.source.log.check(0, batch)?;
                encode_frame(batch, arrival_ms, if i == last { FLAG_COMMIT } else { 0 }, &mut bytes)
            });
            match encoded {
                Ok(()) => accepted.push((batches, ack)),
                Err(error) => {
                    bytes.truncate(start);
                    let _ = ack.send(Err(error));
                }
            }
        }
        if accepted.is_empty() {
            return;
        }
        let written = self.file.write_all(&bytes).and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            // The file may hold part of this group: cut it back (and make the cut
            // durable) so that a restart does not replay statements that are failed.
            let cut = self.file.set_len(self.file_bytes).and_then(|()| self.file.sync_data());
            let mut error = WsError::new(sqlstate::IO_ERROR, format!("writing source segment: {error}"));
            if let Err(cut_error) = cut {
                error = WsError::new(
                    sqlstate::TRANSACTION_RESOLUTION_UNKNOWN,
                    format!(
                        "{}; cutting the failed write back off the segment failed too ({cut_error}): the rows may be \
                         replayed after a restart, and the source takes no more rows until then",
                        error.message
                    ),
                );
                self.broken = Some(error.clone());
            }
            self.source.record_error(&error);
            for (_, ack) in accepted {
                let _ = ack.send(Err(error.clone()));
            }
            return;
        }
        self.file_bytes += bytes.len() as u64;
        // Durable: acknowledged whatever happens next, as a restart replays them. The
        // batches were checked above, so appending them does not fail; should it, the
        // rows show after a restart and the source says why they do not now.
        for (batches, ack) in accepted {
            let mut rows = 0;
            for batch in batches {
                rows += batch.num_rows() as u64;
                if let Err(error) = self.source.log.append(0, batch, arrival_ms) {
                    self.source
                        .record_error(format!("durable rows not made visible until a restart: {}", error.message));
                }
            }
            let _ = ack.send(Ok(rows));
        }
    }

    /// Deletes segments whose rows all lie below `offset` (never the open one).
    fn delete_before(&mut self, offset: u64) {
        while self.segments.len() > 1 && self.segments[1].first_offset <= offset {
            let segment = self.segments.remove(0);
            if let Err(error) = std::fs::remove_file(&segment.path) {
                self.source.record_error(format!("deleting {}: {error}", segment.path.display()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{ColumnDef, SourceDef, SourceSpec};
    use datafusion::arrow::array::{Array, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn source() -> Arc<Source> {
        let spec = SourceSpec::new(SourceDef {
            name: "events".into(),
            connector: "ingest".into(),
            columns: vec![ColumnDef { name: "id".into(), sql_type: "BIGINT".into(), nullable: false }],
            watermark: None,
            encode: None,
            options: Default::default(),
        })
        .expect("valid spec");
        Arc::new(Source::new(spec))
    }

    fn rows(source: &Source, ids: &[i64]) -> Vec<RecordBatch> {
        vec![RecordBatch::try_new(source.log.schema().clone(), vec![Arc::new(Int64Array::from(ids.to_vec()))]).unwrap()]
    }

    /// Starts a source on `dir` (a restart when segments are there) and returns it with
    /// the ids it replayed, in log order.
    fn restart(dir: &Path) -> WsResult<(Arc<Source>, Vec<i64>)> {
        let source = source();
        start(source.clone(), dir)?;
        let ids = source
            .log
            .snapshot()
            .iter()
            .flat_map(|chunk| {
                let ids = chunk.batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap().clone();
                (0..ids.len()).map(move |i| ids.value(i))
            })
            .collect();
        Ok((source, ids))
    }

    async fn append(source: &Source, ids: &[i64]) -> WsResult<u64> {
        source.writer()?.append(rows(source, ids)).await
    }

    fn segment(dir: &Path) -> PathBuf {
        let segments = list_segments(&segments_dir(dir, "events")).unwrap();
        assert_eq!(segments.len(), 1, "one segment");
        segments[0].path.clone()
    }

    fn file_length(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    /// Two acknowledged statements (ids 1-3, 4-5), then a third (6) after them; returns
    /// the segment and its length after the first, second and third.
    async fn three_statements(dir: &Path) -> (PathBuf, [u64; 3]) {
        let (source, ids) = restart(dir).unwrap();
        assert!(ids.is_empty());
        let path = segment(dir);
        assert_eq!(append(&source, &[1, 2, 3]).await.unwrap(), 3);
        let first = file_length(&path);
        assert_eq!(append(&source, &[4, 5]).await.unwrap(), 2);
        let second = file_length(&path);
        assert_eq!(append(&source, &[6]).await.unwrap(), 1);
        let third = file_length(&path);
        source.stop();
        (path, [first, second, third])
    }

    #[tokio::test]
    async fn a_clean_restart_replays_every_acknowledged_row() {
        let dir = tempfile::tempdir().unwrap();
        let (path, [_, _, third]) = three_statements(dir.path()).await;
        let (source, ids) = restart(dir.path()).unwrap();
        assert_eq!(ids, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(file_length(&path), third);
        assert_eq!(source.last_error(), None);
    }

    #[tokio::test]
    async fn a_frame_torn_mid_payload_is_cut_and_the_rows_before_it_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (path, [_, second, third]) = three_statements(dir.path()).await;
        // A crash while the third statement was written: its frame is cut short.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(second + (third - second) / 2).unwrap();
        drop(file);
        let (source, ids) = restart(dir.path()).unwrap();
        assert_eq!(ids, vec![1, 2, 3, 4, 5], "every statement before the torn one is there");
        assert_eq!(file_length(&path), second, "the torn frame is cut off the file");
        let error = source.last_error().expect("the cut is reported");
        assert!(error.contains("cut short") && error.contains(&format!("cut at byte {second}")), "{error}");
        // The writer goes on after the cut, and a second restart sees its rows too.
        assert_eq!(append(&source, &[7]).await.unwrap(), 1);
        source.stop();
        let (_, ids) = restart(dir.path()).unwrap();
        assert_eq!(ids, vec![1, 2, 3, 4, 5, 7]);
    }

    #[tokio::test]
    async fn a_frame_torn_mid_header_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (path, [first, second, _]) = three_statements(dir.path()).await;
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(first + 5).unwrap();
        drop(file);
        let (source, ids) = restart(dir.path()).unwrap();
        assert_eq!(ids, vec![1, 2, 3]);
        assert_eq!(file_length(&path), first);
        assert!(second > first);
        assert!(source.last_error().expect("reported").contains("header cut short"));
    }

    #[tokio::test]
    async fn a_last_frame_failing_its_checksum_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (path, [_, second, third]) = three_statements(dir.path()).await;
        // The length made it to disk, the payload did not (a page of zeros instead).
        let mut bytes = std::fs::read(&path).unwrap();
        for byte in &mut bytes[second as usize + HEADER_BYTES..third as usize] {
            *byte = 0;
        }
        std::fs::write(&path, &bytes).unwrap();
        let (source, ids) = restart(dir.path()).unwrap();
        assert_eq!(ids, vec![1, 2, 3, 4, 5]);
        assert_eq!(file_length(&path), second);
        assert!(source.last_error().expect("reported").contains("checksum"));
    }

    #[tokio::test]
    async fn a_corrupt_frame_before_acknowledged_ones_refuses_to_start_and_keeps_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (path, [first, second, third]) = three_statements(dir.path()).await;
        // One flipped bit in the second statement's payload, acknowledged rows after it.
        let mut bytes = std::fs::read(&path).unwrap();
        let at = (first + (second - first) / 2) as usize;
        bytes[at] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let error = restart(dir.path()).expect_err("a corrupt segment does not start");
        assert_eq!(error.code, sqlstate::DATA_CORRUPTED);
        assert!(
            error.message.contains("checksum") && error.message.contains(&format!("at byte {first}")),
            "{}",
            error.message
        );
        assert_eq!(file_length(&path), third, "nothing is cut: the acknowledged rows after it are still in the file");
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[tokio::test]
    async fn a_statement_the_log_would_refuse_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let (source, _) = restart(dir.path()).unwrap();
        let path = segment(dir.path());
        // Same type, another column name: the log refuses it. It must fail before the
        // fsync, not after (it would then be replayed, or stop the replay).
        let other = Arc::new(Schema::new(vec![Field::new("other", DataType::Int64, false)]));
        let wrong = RecordBatch::try_new(other, vec![Arc::new(Int64Array::from(vec![99]))]).unwrap();
        let error = source.writer().unwrap().append(vec![wrong]).await.expect_err("refused");
        assert!(error.message.contains("does not match the source schema"), "{}", error.message);
        assert_eq!(file_length(&path), 0, "nothing of it reached the segment");
        assert_eq!(append(&source, &[1, 2]).await.unwrap(), 2);
        source.stop();
        let (source, ids) = restart(dir.path()).expect("the segment replays");
        assert_eq!(ids, vec![1, 2], "the refused rows are not replayed");
        assert_eq!(source.last_error(), None);
    }
}

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
//! request queued since its last write (group commit), writes their frames, fsyncs once,
//! makes the rows visible in the source's log, and only then acknowledges each request.
//! On start the segments are replayed in order; frames after the last complete statement
//! (a torn write from a crash) are cut off, so a statement is all there or not at all.
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
    Append { batches: Vec<RecordBatch>, ack: oneshot::Sender<WsResult<u64>> },
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
        acked
            .await
            .map_err(|_| WsError::new(sqlstate::IO_ERROR, "the source's writer stopped before the rows were durable"))??;
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
        if path.extension().is_some_and(|e| e == "seg") {
            if let Ok(first_offset) = stem.parse::<u64>() {
                segments.push(Segment { first_offset, path });
            }
        }
    }
    segments.sort_by_key(|s| s.first_offset);
    Ok(segments)
}

/// Reads every committed statement back into the log; cuts a torn tail off the file.
fn replay(source: &Source, dir: &Path) -> WsResult<Vec<Segment>> {
    let segments = list_segments(dir)?;
    if let Some(first) = segments.first() {
        source.log.start_at_offset(first.first_offset);
    }
    for segment in &segments {
        let file = File::open(&segment.path).map_err(|e| io_error(&segment.path, e))?;
        let mut reader = BufReader::new(file);
        let mut committed_bytes: u64 = 0;
        let mut read_bytes: u64 = 0;
        let mut pending: Vec<(RecordBatch, i64)> = Vec::new();
        loop {
            match read_frame(&mut reader) {
                Ok(Some((arrival_ms, flags, batch, frame_bytes))) => {
                    read_bytes += frame_bytes;
                    pending.push((batch, arrival_ms));
                    if flags & FLAG_COMMIT != 0 {
                        for (batch, arrival_ms) in pending.drain(..) {
                            source.log.append(0, batch, arrival_ms)?;
                        }
                        committed_bytes = read_bytes;
                    }
                }
                Ok(None) => break,
                Err(reason) => {
                    source.record_error(format!("{}: {reason}; cut at byte {committed_bytes}", segment.path.display()));
                    break;
                }
            }
        }
        let length = std::fs::metadata(&segment.path).map_err(|e| io_error(&segment.path, e))?.len();
        if length != committed_bytes {
            tracing::warn!(segment = %segment.path.display(), committed_bytes, length, "cutting an unfinished statement off the segment");
            let file = OpenOptions::new().write(true).open(&segment.path).map_err(|e| io_error(&segment.path, e))?;
            file.set_len(committed_bytes).map_err(|e| io_error(&segment.path, e))?;
            file.sync_all().map_err(|e| io_error(&segment.path, e))?;
        }
    }
    // Rows may be past retention already: let the log drop them now.
    source.log.trim(crate::stream::now_ms());
    Ok(segments)
}

/// One frame, or None at a clean end of file; Err for a torn or corrupt frame.
fn read_frame(reader: &mut impl Read) -> Result<Option<(i64, u8, RecordBatch, u64)>, String> {
    let mut header = [0u8; HEADER_BYTES];
    match reader.read(&mut header[..1]) {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(e) => return Err(e.to_string()),
    }
    reader.read_exact(&mut header[1..]).map_err(|_| "torn frame header".to_string())?;
    let length = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let arrival_ms = i64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    let flags = header[16];
    if length > FRAME_BYTES_MAX {
        return Err(format!("frame length {length} is corrupt"));
    }
    let mut payload = vec![0u8; length as usize];
    reader.read_exact(&mut payload).map_err(|_| "torn frame payload".to_string())?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[8..]);
    hasher.update(&payload);
    if hasher.finalize() != crc {
        return Err("frame checksum mismatch".to_string());
    }
    let mut batches = StreamReader::try_new(payload.as_slice(), None).map_err(|e| e.to_string())?;
    let batch = batches
        .next()
        .ok_or_else(|| "frame holds no batch".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(Some((arrival_ms, flags, batch, (HEADER_BYTES + payload.len()) as u64)))
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
        Ok(Writer { source, dir, segment_bytes_max, segments, file, file_bytes })
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
        let arrival_ms = crate::stream::now_ms();
        if self.file_bytes >= self.segment_bytes_max {
            if let Err(error) = self.roll(self.source.log.next_offset()) {
                self.source.record_error(&error);
                for (_, ack) in appends {
                    let _ = ack.send(Err(error.clone()));
                }
                return;
            }
        }
        // Encode every statement; one that cannot be encoded fails alone.
        let mut bytes = Vec::new();
        let mut accepted = Vec::with_capacity(appends.len());
        for (batches, ack) in appends {
            let start = bytes.len();
            let last = batches.len() - 1;
            let encoded = batches.iter().enumerate().try_for_each(|(i, batch)| {
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
        let written = self.file.write_all(&bytes).and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            // The file may hold part of this group: cut it back so a restart does not
            // see statements that were never acknowledged, then fail them all.
            let cut = self.file.set_len(self.file_bytes).and_then(|()| self.file.sync_data());
            let error = WsError::new(sqlstate::IO_ERROR, format!("writing source segment: {error}"));
            self.source.record_error(&error);
            if let Err(cut_error) = cut {
                self.source.record_error(format!("could not cut a failed write back: {cut_error}"));
            }
            for (_, ack) in accepted {
                let _ = ack.send(Err(error.clone()));
            }
            return;
        }
        self.file_bytes += bytes.len() as u64;
        // Durable: now visible, then acknowledged.
        for (batches, ack) in accepted {
            let mut result = Ok(0);
            for batch in batches {
                if let Err(error) = self.source.log.append(0, batch, arrival_ms) {
                    result = Err(error);
                    break;
                }
            }
            let _ = ack.send(result);
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

//! Cursors of one session (`DECLARE`, `FETCH`, `MOVE`, `CLOSE`): named, forward-only
//! readers over a record-batch stream.
//!
//! FETCH and MOVE go the same way ([`Direction`]), with PostgreSQL's rules for a NO SCROLL
//! cursor: the cursor keeps its position (rows read) and whether a read ran past the end,
//! and anything that would need to go back (BACKWARD, PRIOR, LAST, ABSOLUTE to a row
//! already passed, re-fetching the current row) fails with 55000 "cursor can only scan
//! forward". MOVE reads and counts rows without returning them.
//!
//! A cursor's source is any [`SendableRecordBatchStream`] (a query today; a subscription
//! later), pulled only as far as FETCH asks, so an open cursor holds at most the unread
//! rest of one batch. The number of open cursors per session is bounded by
//! `cursors_max` (54000 beyond it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

use crate::error::{WsError, WsResult, sqlstate};

// 42P03: a cursor of that name is already open; 55000: a motion a forward-only cursor
// cannot make.
use crate::error::sqlstate::{DUPLICATE_CURSOR, OBJECT_NOT_IN_PREREQUISITE_STATE};

/// Where a FETCH or MOVE goes, in PostgreSQL's terms (BACKWARD n is FORWARD -n, FIRST is
/// ABSOLUTE 1, LAST is ABSOLUTE -1, NEXT is FORWARD 1, PRIOR is FORWARD -1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The next n rows; 0 is the current row; negative goes back.
    Forward(i64),
    /// Every remaining row.
    All,
    /// Row n counted from 1 (from the end when negative; 0 is before the first).
    Absolute(i64),
    /// The n-th row after the current one (before it when negative; 0 is the current).
    Relative(i64),
}

fn backward() -> WsError {
    WsError::new(
        OBJECT_NOT_IN_PREREQUISITE_STATE,
        "cursor can only scan forward (going back needs a SCROLL cursor, which is not supported)",
    )
}

/// The last step of a motion, after rows to skip.
enum Last {
    /// Read forward this many rows (None: to the end).
    Forward(Option<u64>),
    /// The current row (FETCH 0, RELATIVE 0).
    Current,
}

struct Cursor {
    /// In a Mutex only to make the session Sync (the handler shares it across awaits);
    /// every access has `&mut self` and goes through `get_mut`, never locking.
    stream: Mutex<SendableRecordBatchStream>,
    /// Rows of the last batch read but not yet fetched.
    leftover: Option<RecordBatch>,
    done: bool,
    /// WITH HOLD: survives the end of the transaction that declared it.
    hold: bool,
    /// Rows read so far (PostgreSQL's portal position: the current row, from 1).
    position: u64,
    /// Rows read by a stream FETCH ALL handed to the client, counted as they go.
    handed: Option<std::sync::Arc<AtomicU64>>,
    /// A read ran out of rows: the cursor sits after the last row.
    at_end: bool,
    /// A subscription: never ends, so a read waits for its first rows and then takes
    /// only what is already there (up to its count) instead of waiting for the count.
    live: bool,
}

impl Cursor {
    fn stream(&mut self) -> &mut SendableRecordBatchStream {
        self.stream.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn position(&self) -> u64 {
        self.position + self.handed.as_ref().map_or(0, |rows| rows.load(Ordering::Relaxed))
    }

    /// On a row: neither before the first nor after the last.
    fn on_row(&self) -> bool {
        self.position() > 0 && !self.at_end
    }

    /// Back to the start: possible only where the cursor has not moved yet.
    fn rewind(&self) -> WsResult<()> {
        if self.position() == 0 && !self.at_end { Ok(()) } else { Err(backward()) }
    }

    /// Rows to skip and the last step of a motion, as PostgreSQL's DoPortalRunFetch
    /// plans it for a cursor that cannot go back.
    fn plan(&self, direction: Direction) -> WsResult<(u64, Last)> {
        let n = |count: i64| count.unsigned_abs();
        match direction {
            Direction::Forward(0) | Direction::Relative(0) => Ok((0, Last::Current)),
            Direction::Forward(count) if count > 0 => Ok((0, Last::Forward(Some(n(count))))),
            Direction::All => Ok((0, Last::Forward(None))),
            Direction::Relative(count) if count > 0 => Ok((n(count) - 1, Last::Forward(Some(1)))),
            Direction::Absolute(0) => {
                self.rewind()?;
                Ok((0, Last::Forward(Some(0))))
            }
            Direction::Absolute(count) if count > 0 => {
                let target = n(count);
                let position = self.position();
                // PostgreSQL rewinds when the target is nearer the start, else goes from
                // here (one row further when past the end).
                if target - 1 <= position / 2 {
                    self.rewind()?;
                    return Ok((target - 1, Last::Forward(Some(1))));
                }
                let here = position + u64::from(self.at_end);
                if target <= here {
                    return Err(backward());
                }
                Ok((target - here - 1, Last::Forward(Some(1))))
            }
            // Backward, or from the end back (LAST).
            Direction::Forward(_) | Direction::Relative(_) | Direction::Absolute(_) => Err(backward()),
        }
    }

    /// Reads forward up to `limit` rows (None: to the end), keeping them or only
    /// counting them.
    async fn forward(&mut self, limit: Option<u64>, keep: bool) -> WsResult<(u64, Vec<RecordBatch>)> {
        let mut read = 0u64;
        let mut kept = Vec::new();
        let wanted = limit.unwrap_or(u64::MAX);
        while read < wanted {
            let wait = !self.live || read == 0;
            let Some(batch) = self.next(wanted - read, wait).await? else { break };
            read += batch.num_rows() as u64;
            if keep {
                kept.push(batch);
            }
        }
        self.position += read;
        if read < wanted && self.done {
            self.at_end = true;
        }
        Ok((read, kept))
    }

    /// Next batch of at most `limit` rows, or None at the end; with `wait` false, None
    /// also when no batch is ready now.
    async fn next(&mut self, limit: u64, wait: bool) -> WsResult<Option<RecordBatch>> {
        loop {
            let batch = match self.leftover.take() {
                Some(batch) => batch,
                None if self.done => return Ok(None),
                None if !wait => match futures::FutureExt::now_or_never(self.stream().next()) {
                    None => return Ok(None),
                    Some(Some(batch)) => batch?,
                    Some(None) => {
                        self.done = true;
                        return Ok(None);
                    }
                },
                None => match self.stream().next().await {
                    Some(batch) => batch?,
                    None => {
                        self.done = true;
                        return Ok(None);
                    }
                },
            };
            if batch.num_rows() == 0 {
                continue;
            }
            let rows = batch.num_rows() as u64;
            if rows <= limit {
                return Ok(Some(batch));
            }
            let take = limit as usize;
            self.leftover = Some(batch.slice(take, batch.num_rows() - take));
            return Ok(Some(batch.slice(0, take)));
        }
    }
}

/// The open cursors of one session.
pub struct Cursors {
    open: HashMap<String, Cursor>,
    max: usize,
}

impl Cursors {
    pub fn new(max: usize) -> Cursors {
        Cursors { open: HashMap::new(), max }
    }

    pub fn declare(&mut self, name: &str, stream: SendableRecordBatchStream, hold: bool) -> WsResult<()> {
        self.declare_cursor(name, stream, hold, false)
    }

    /// A cursor over a subscription (see `Cursor::live`).
    pub fn declare_live(&mut self, name: &str, stream: SendableRecordBatchStream, hold: bool) -> WsResult<()> {
        self.declare_cursor(name, stream, hold, true)
    }

    fn declare_cursor(
        &mut self,
        name: &str,
        stream: SendableRecordBatchStream,
        hold: bool,
        live: bool,
    ) -> WsResult<()> {
        if self.open.contains_key(name) {
            return Err(WsError::new(DUPLICATE_CURSOR, format!("cursor \"{name}\" already exists")));
        }
        if self.open.len() >= self.max {
            return Err(WsError::new(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!("a session may have {} open cursors (cursors_max); close one first", self.max),
            ));
        }
        let cursor = Cursor {
            stream: Mutex::new(stream),
            leftover: None,
            done: false,
            hold,
            position: 0,
            handed: None,
            at_end: false,
            live,
        };
        self.open.insert(name.to_string(), cursor);
        Ok(())
    }

    fn get(&mut self, name: &str) -> WsResult<&mut Cursor> {
        self.open.get_mut(name).ok_or_else(|| missing(name))
    }

    /// Result columns of FETCH from `name`.
    pub fn schema(&self, name: &str) -> WsResult<SchemaRef> {
        let cursor = self.open.get(name).ok_or_else(|| missing(name))?;
        let stream = cursor.stream.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(stream.schema())
    }

    /// FETCH: the rows `direction` lands on. Reading to the end hands over the rest of
    /// the source as a stream (never collected), leaving the cursor at its end.
    pub async fn fetch(&mut self, name: &str, direction: Direction) -> WsResult<SendableRecordBatchStream> {
        let cursor = self.get(name)?;
        let schema = cursor.stream().schema();
        // FETCH ALL of a subscription: what is there now (it never ends).
        let direction = match direction {
            Direction::All if cursor.live => Direction::Forward(i64::MAX),
            other => other,
        };
        let (skip, last) = cursor.plan(direction)?;
        if skip > 0 {
            cursor.forward(Some(skip), false).await?;
        }
        match last {
            Last::Current if cursor.on_row() => Err(backward()),
            Last::Current => Ok(Box::pin(RecordBatchStreamAdapter::new(schema, futures::stream::empty()))),
            Last::Forward(None) => {
                let leftover = cursor.leftover.take();
                let counter = std::sync::Arc::new(AtomicU64::new(0));
                cursor.position = cursor.position();
                cursor.handed = Some(counter.clone());
                cursor.at_end = true;
                let rest = if cursor.done {
                    None
                } else {
                    cursor.done = true;
                    let empty: SendableRecordBatchStream =
                        Box::pin(RecordBatchStreamAdapter::new(schema.clone(), futures::stream::empty()));
                    Some(std::mem::replace(cursor.stream(), empty))
                };
                let head = futures::stream::iter(leftover.map(Ok));
                let tail = futures::stream::iter(rest).flatten();
                let counted = head.chain(tail).inspect(move |batch| {
                    if let Ok(batch) = batch {
                        counter.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                    }
                });
                Ok(Box::pin(RecordBatchStreamAdapter::new(schema, counted)))
            }
            Last::Forward(Some(rows)) => {
                let (_, batches) = cursor.forward(Some(rows), true).await?;
                let batches: Vec<_> = batches.into_iter().map(Ok).collect();
                Ok(Box::pin(RecordBatchStreamAdapter::new(schema, futures::stream::iter(batches))))
            }
        }
    }

    /// MOVE: goes where FETCH would, reading rows without keeping them; returns the
    /// count PostgreSQL's `MOVE n` tag shows (rows moved over by the last step).
    pub async fn move_to(&mut self, name: &str, direction: Direction) -> WsResult<u64> {
        let cursor = self.get(name)?;
        let (skip, last) = cursor.plan(direction)?;
        if skip > 0 {
            cursor.forward(Some(skip), false).await?;
        }
        match last {
            Last::Current => Ok(u64::from(cursor.on_row())),
            Last::Forward(limit) => Ok(cursor.forward(limit, false).await?.0),
        }
    }

    pub fn close(&mut self, name: &str) -> WsResult<()> {
        self.open.remove(name).map(drop).ok_or_else(|| missing(name))
    }

    pub fn close_all(&mut self) {
        self.open.clear();
    }

    /// The transaction ended: cursors declared WITHOUT HOLD end with it.
    pub fn end_transaction(&mut self) {
        self.open.retain(|_, cursor| cursor.hold);
    }
}

fn missing(name: &str) -> WsError {
    WsError::new(sqlstate::INVALID_CURSOR_NAME, format!("cursor \"{name}\" does not exist"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn source(batches: &[&[i64]]) -> SendableRecordBatchStream {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batches: Vec<_> = batches
            .iter()
            .map(|values| {
                Ok(RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap())
            })
            .collect();
        Box::pin(RecordBatchStreamAdapter::new(schema, futures::stream::iter(batches)))
    }

    async fn values(stream: SendableRecordBatchStream) -> Vec<i64> {
        let batches: Vec<_> = stream.collect().await;
        batches
            .into_iter()
            .flat_map(|b| {
                let b = b.unwrap();
                b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec()
            })
            .collect()
    }

    #[tokio::test]
    async fn fetch_splits_batches_and_keeps_the_rest() {
        let mut cursors = Cursors::new(2);
        cursors.declare("c", source(&[&[1, 2, 3], &[4, 5]]), false).unwrap();
        assert_eq!(values(cursors.fetch("c", Direction::Forward(2)).await.unwrap()).await, vec![1, 2]);
        assert_eq!(values(cursors.fetch("c", Direction::Forward(2)).await.unwrap()).await, vec![3, 4]);
        assert_eq!(values(cursors.fetch("c", Direction::All).await.unwrap()).await, vec![5]);
        assert!(values(cursors.fetch("c", Direction::All).await.unwrap()).await.is_empty());
        cursors.declare("d", source(&[&[1, 2, 3]]), true).unwrap();
        assert_eq!(values(cursors.fetch("d", Direction::Forward(1)).await.unwrap()).await, vec![1]);
        assert_eq!(values(cursors.fetch("d", Direction::All).await.unwrap()).await, vec![2, 3]);
    }

    #[tokio::test]
    async fn move_and_fetch_go_where_postgresql_goes() {
        let mut cursors = Cursors::new(4);
        cursors.declare("c", source(&[&[1, 2, 3], &[4, 5, 6, 7]]), false).unwrap();
        // Before the first row: MOVE 0 is on no row.
        assert_eq!(cursors.move_to("c", Direction::Forward(0)).await.unwrap(), 0);
        assert_eq!(cursors.move_to("c", Direction::Forward(2)).await.unwrap(), 2);
        assert_eq!(cursors.move_to("c", Direction::Relative(0)).await.unwrap(), 1);
        // RELATIVE 2 from row 2 lands on row 4 and returns just it.
        assert_eq!(values(cursors.fetch("c", Direction::Relative(2)).await.unwrap()).await, vec![4]);
        // ABSOLUTE 6 is ahead: skip row 5, return row 6.
        assert_eq!(values(cursors.fetch("c", Direction::Absolute(6)).await.unwrap()).await, vec![6]);
        for back in [Direction::Absolute(6), Direction::Absolute(1), Direction::Forward(-1), Direction::Relative(-1)] {
            let error = cursors.move_to("c", back).await.unwrap_err();
            assert_eq!(error.code, OBJECT_NOT_IN_PREREQUISITE_STATE, "{back:?}");
        }
        // Re-fetching the current row would go back.
        assert_eq!(
            cursors.fetch("c", Direction::Forward(0)).await.err().expect("backward").code,
            OBJECT_NOT_IN_PREREQUISITE_STATE
        );
        // MOVE ALL counts what is left; past the end a MOVE moves nothing.
        assert_eq!(cursors.move_to("c", Direction::All).await.unwrap(), 1);
        assert_eq!(cursors.move_to("c", Direction::Forward(3)).await.unwrap(), 0);
        assert_eq!(cursors.move_to("c", Direction::Forward(0)).await.unwrap(), 0);
        assert_eq!(cursors.move_to("c", Direction::Absolute(9)).await.unwrap(), 0);

        cursors.declare("d", source(&[&[1, 2, 3]]), false).unwrap();
        assert_eq!(cursors.move_to("d", Direction::Absolute(0)).await.unwrap(), 0);
        assert_eq!(cursors.move_to("d", Direction::Absolute(2)).await.unwrap(), 1);
        assert_eq!(values(cursors.fetch("d", Direction::Forward(5)).await.unwrap()).await, vec![3]);
        assert_eq!(
            cursors.move_to("d", Direction::Absolute(-1)).await.unwrap_err().code,
            OBJECT_NOT_IN_PREREQUISITE_STATE
        );

        // The position counts rows a FETCH ALL streamed out.
        cursors.declare("e", source(&[&[1, 2], &[3]]), false).unwrap();
        assert_eq!(values(cursors.fetch("e", Direction::All).await.unwrap()).await, vec![1, 2, 3]);
        assert_eq!(
            cursors.move_to("e", Direction::Absolute(3)).await.unwrap_err().code,
            OBJECT_NOT_IN_PREREQUISITE_STATE
        );
        assert_eq!(cursors.move_to("e", Direction::Absolute(5)).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn limits_and_names() {
        let mut cursors = Cursors::new(1);
        cursors.declare("c", source(&[&[1]]), false).unwrap();
        assert_eq!(cursors.declare("c", source(&[]), false).unwrap_err().code, DUPLICATE_CURSOR);
        assert_eq!(cursors.declare("d", source(&[]), false).unwrap_err().code, sqlstate::PROGRAM_LIMIT_EXCEEDED);
        assert_eq!(cursors.close("nope").unwrap_err().code, sqlstate::INVALID_CURSOR_NAME);
        cursors.declare("keep", source(&[]), true).unwrap_err();
        cursors.end_transaction();
        assert_eq!(cursors.schema("c").unwrap_err().code, sqlstate::INVALID_CURSOR_NAME);
        cursors.declare("keep", source(&[]), true).unwrap();
        cursors.end_transaction();
        assert!(cursors.schema("keep").is_ok());
    }
}

//! Cursors of one session (`DECLARE`, `FETCH`, `CLOSE`): named, forward-only
//! readers over a record-batch stream.
//!
//! A cursor's source is any [`SendableRecordBatchStream`] (a query today; a subscription
//! later), pulled only as far as FETCH asks, so an open cursor holds at most the unread
//! rest of one batch. The number of open cursors per session is bounded by
//! `cursors_max` (54000 beyond it).

use std::collections::HashMap;
use std::sync::Mutex;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

use crate::error::{WsError, WsResult, sqlstate};

/// SQLSTATE 42P03: a cursor of that name is already open.
const DUPLICATE_CURSOR: &str = "42P03";

/// How many rows a FETCH wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Rows(u64),
    All,
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
    /// A subscription: never ends, so FETCH waits for the first rows and then returns
    /// only what is already there (up to its count) instead of waiting for the count.
    live: bool,
}

impl Cursor {
    fn stream(&mut self) -> &mut SendableRecordBatchStream {
        self.stream.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner())
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

    fn declare_cursor(&mut self, name: &str, stream: SendableRecordBatchStream, hold: bool, live: bool) -> WsResult<()> {
        if self.open.contains_key(name) {
            return Err(WsError::new(DUPLICATE_CURSOR, format!("cursor \"{name}\" already exists")));
        }
        if self.open.len() >= self.max {
            return Err(WsError::new(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!("a session may have {} open cursors (cursors_max); close one first", self.max),
            ));
        }
        self.open.insert(name.to_string(), Cursor { stream: Mutex::new(stream), leftover: None, done: false, hold, live });
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

    /// FETCH: the next `count` rows. `Count::All` hands over the rest of the source as a
    /// stream (never collected), leaving the cursor at its end.
    pub async fn fetch(&mut self, name: &str, count: Count) -> WsResult<SendableRecordBatchStream> {
        let cursor = self.get(name)?;
        let schema = cursor.stream().schema();
        let count = match count {
            Count::All if cursor.live => Count::Rows(u64::MAX),
            other => other,
        };
        match count {
            Count::All => {
                let leftover = cursor.leftover.take();
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
                Ok(Box::pin(RecordBatchStreamAdapter::new(schema, head.chain(tail))))
            }
            Count::Rows(mut wanted) => {
                let mut batches = Vec::new();
                while wanted > 0 {
                    let wait = !cursor.live || batches.is_empty();
                    let Some(batch) = cursor.next(wanted, wait).await? else { break };
                    wanted -= batch.num_rows() as u64;
                    batches.push(Ok(batch));
                }
                Ok(Box::pin(RecordBatchStreamAdapter::new(schema, futures::stream::iter(batches))))
            }
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
        assert_eq!(values(cursors.fetch("c", Count::Rows(2)).await.unwrap()).await, vec![1, 2]);
        assert_eq!(values(cursors.fetch("c", Count::Rows(2)).await.unwrap()).await, vec![3, 4]);
        assert_eq!(values(cursors.fetch("c", Count::All).await.unwrap()).await, vec![5]);
        assert!(values(cursors.fetch("c", Count::All).await.unwrap()).await.is_empty());
        cursors.declare("d", source(&[&[1, 2, 3]]), true).unwrap();
        assert_eq!(values(cursors.fetch("d", Count::Rows(1)).await.unwrap()).await, vec![1]);
        assert_eq!(values(cursors.fetch("d", Count::All).await.unwrap()).await, vec![2, 3]);
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

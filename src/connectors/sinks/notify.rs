//! LISTEN/NOTIFY: the hub that routes notifications to listening connections, and the
//! `notify` sink that sends each row of a view as a JSON payload on a channel.
//!
//! As in PostgreSQL, a notification is delivered to every connection listening on its
//! channel when it is sent; nothing is stored for later listeners. Each connection has
//! a bounded queue (`QUEUE_MAX` notifications): a connection that does not read falls
//! behind and loses notifications, it never holds up the sender. What a sink's
//! notifications lost so is counted per sink (`watershed.sinks.messages_dropped`). Payloads are
//! limited to 8000 bytes, PostgreSQL's limit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::SinkStats;
use crate::error::{WsError, WsResult, sqlstate};
use crate::stream::continuous::MaterializedView;

/// Options of `connector = 'notify'`.
pub const OPTIONS: [&str; 1] = ["channel"];

/// PostgreSQL's payload limit.
pub const PAYLOAD_BYTES_MAX: usize = 8_000;
/// Notifications a connection may have waiting.
pub const QUEUE_MAX: usize = 4_096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub channel: String,
    pub payload: String,
    /// Backend pid of the sender (0 for sinks).
    pub sender_pid: i32,
}

#[derive(Default)]
struct Routes {
    /// Connection id -> its queue.
    queues: BTreeMap<u32, mpsc::Sender<Notification>>,
    /// Channel -> listening connections.
    channels: BTreeMap<String, BTreeSet<u32>>,
}

/// Routes notifications from NOTIFY and sinks to listening connections.
#[derive(Clone, Default)]
pub struct NotifyHub {
    routes: Arc<Mutex<Routes>>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for NotifyHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyHub").finish()
    }
}

impl NotifyHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        // Two maps updated together under the lock; a panic elsewhere leaves them usable.
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection's queue; its notifications arrive on the returned receiver.
    pub fn connect(&self, connection: u32) -> mpsc::Receiver<Notification> {
        let (sender, receiver) = mpsc::channel(QUEUE_MAX);
        self.lock().queues.insert(connection, sender);
        receiver
    }

    /// Forgets a closed connection and everything it listened to.
    pub fn disconnect(&self, connection: u32) {
        let mut routes = self.lock();
        routes.queues.remove(&connection);
        routes.channels.retain(|_, listeners| {
            listeners.remove(&connection);
            !listeners.is_empty()
        });
    }

    pub fn listen(&self, connection: u32, channel: &str) {
        self.lock().channels.entry(channel.to_string()).or_default().insert(connection);
    }

    /// UNLISTEN channel, or every channel when `channel` is None (`UNLISTEN *`).
    pub fn unlisten(&self, connection: u32, channel: Option<&str>) {
        let mut routes = self.lock();
        routes.channels.retain(|name, listeners| {
            if channel.is_none_or(|c| c == name) {
                listeners.remove(&connection);
            }
            !listeners.is_empty()
        });
    }

    /// Sends a notification to every connection listening on `channel`. Returns how
    /// many listeners did not get it because their queue was full.
    pub fn notify(&self, channel: &str, payload: String, sender_pid: i32) -> WsResult<u64> {
        if payload.len() >= PAYLOAD_BYTES_MAX {
            return Err(WsError::new(
                sqlstate::INVALID_PARAMETER_VALUE,
                format!("payload string too long ({} bytes, limit {PAYLOAD_BYTES_MAX})", payload.len()),
            ));
        }
        let routes = self.lock();
        let Some(listeners) = routes.channels.get(channel) else {
            return Ok(0);
        };
        let mut dropped = 0;
        for connection in listeners {
            let Some(queue) = routes.queues.get(connection) else { continue };
            let notification = Notification { channel: channel.to_string(), payload: payload.clone(), sender_pid };
            // Full, or closed by a connection on its way out: either way not delivered.
            if queue.try_send(notification).is_err() {
                dropped += 1;
            }
        }
        self.dropped.fetch_add(dropped, Ordering::Relaxed);
        Ok(dropped)
    }

    /// Notifications lost because a listener's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Each row of `batch` as a JSON object.
pub fn rows_as_json(batch: &RecordBatch) -> WsResult<Vec<String>> {
    let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(Vec::new());
    writer.write(batch)?;
    writer.finish()?;
    let text = String::from_utf8(writer.into_inner()).map_err(|e| WsError::internal(e.to_string()))?;
    Ok(text.lines().map(str::to_string).collect())
}

pub async fn run(
    name: String,
    view: Arc<MaterializedView>,
    channel: String,
    hub: NotifyHub,
    stats: Arc<SinkStats>,
    cancel: CancellationToken,
) {
    // Notifications are for what happens from now on: no snapshot.
    let mut receiver = match view.store.subscribe(false) {
        Ok((_, _, _, receiver)) => receiver,
        Err(error) => return stats.record_error(&name, &error),
    };
    loop {
        let received = tokio::select! {
            _ = cancel.cancelled() => return,
            received = receiver.recv() => received,
        };
        let emission = match received {
            Ok(emission) => emission,
            Err(RecvError::Closed) => return,
            Err(RecvError::Lagged(missed)) => {
                let error = WsError::new(
                    sqlstate::PROGRAM_LIMIT_EXCEEDED,
                    format!("{missed} emissions were not notified: the sink fell behind"),
                );
                stats.record_error(&name, &error);
                continue;
            }
        };
        if emission.batch.num_rows() == 0 {
            continue;
        }
        let delivered = rows_as_json(&emission.batch).and_then(|rows| {
            let count = rows.len() as u64;
            for row in rows {
                let dropped = hub.notify(&channel, row, 0)?;
                stats.messages_dropped.fetch_add(dropped, Ordering::Relaxed);
            }
            Ok(count)
        });
        match delivered {
            Ok(rows) => stats.record_delivery(rows, emission.watermark_us),
            Err(error) => stats.record_error(&name, &error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_that_does_not_read_loses_notifications_and_they_are_counted() {
        let hub = NotifyHub::default();
        let mut reader = hub.connect(1);
        let _not_reading = hub.connect(2);
        hub.listen(1, "alerts");
        hub.listen(2, "alerts");
        for i in 0..QUEUE_MAX {
            let payload = format!("{i}");
            assert_eq!(hub.notify("alerts", payload, 0).unwrap(), 0, "both queues have room");
            assert_eq!(reader.try_recv().unwrap().payload, format!("{i}"));
        }
        // Connection 2's queue is full: it loses what follows, connection 1 does not.
        assert_eq!(hub.notify("alerts", "late".into(), 0).unwrap(), 1);
        assert_eq!(hub.notify("alerts", "later".into(), 0).unwrap(), 1);
        assert_eq!(reader.try_recv().unwrap().payload, "late");
        assert_eq!(hub.dropped(), 2);
        assert_eq!(hub.notify("nobody", "x".into(), 0).unwrap(), 0);
    }
}

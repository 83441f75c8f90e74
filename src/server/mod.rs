//! server/: the PostgreSQL wire protocol. The only module that knows pgwire.
//!
//! Accepts connections up to `connections_max` (one more gets SQLSTATE 53300 and is
//! closed), runs each on its own task with its own session, and shuts down gracefully:
//! on the shutdown signal it stops accepting, closes idle connections, gives running
//! statements `shutdown_grace_ms` to finish (closing each connection once its statement
//! is done), then closes what is left. TLS and authentication: auth.rs and tls.rs.

mod auth;
mod coalesce;
mod connection_loop;
mod copy;
pub mod encode;
mod handler;
mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::error::{WsResult, sqlstate};
use crate::session::Engine;

pub use auth::Security;
pub use encode::text_rows;
use handler::{Busy, Connection, ConnectionHandlers, Shared};

/// Longest a refused client may take to send its startup packet before we hang up.
const REFUSE_READ_TIMEOUT_MS: u64 = 2_000;
/// How often shutdown looks for connections that have become idle.
const SHUTDOWN_SWEEP_MS: u64 = 20;
/// Largest startup packet we read from a client we are about to refuse.
const REFUSE_STARTUP_BYTES_MAX: usize = 10_000;

/// Serves connections on `listener` until `shutdown` completes, with the TLS and users
/// the engine's configuration names (an error if they cannot be loaded).
pub async fn serve(engine: Engine, listener: TcpListener, shutdown: impl Future<Output = ()>) -> WsResult<()> {
    let security = Security::load(engine.config())?;
    serve_with(engine, listener, security, shutdown).await
}

/// [`serve`] with TLS and users already loaded (so that start-up can fail on them before
/// anything else is done).
pub async fn serve_with(
    engine: Engine,
    listener: TcpListener,
    security: Security,
    shutdown: impl Future<Output = ()>,
) -> WsResult<()> {
    security.check_listen(listener.local_addr()?)?;
    let limits = engine.config().limits.clone();
    let tls = security.tls.clone();
    let shared = Arc::new(Shared { engine, cancels: Default::default(), security });
    let permits = Arc::new(Semaphore::new(limits.connections_max));
    let mut connections = JoinSet::new();
    // Busy flags of open connections, to close idle ones at once on shutdown.
    let mut open: Vec<(tokio::task::AbortHandle, Arc<Busy>)> = Vec::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            // Reap finished connection tasks so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // Out of file descriptors and the like: keep serving the others.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if let Err(error) = socket.set_nodelay(true) {
                    tracing::debug!(%error, "could not set TCP_NODELAY");
                }
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, limit = limits.connections_max, "connection refused: too many connections");
                    connections.spawn(refuse(socket));
                    continue;
                };
                let shared = shared.clone();
                let tls = tls.clone();
                let busy = Arc::new(Busy::default());
                let task_busy = busy.clone();
                open.retain(|(handle, _)| !handle.is_finished());
                let handle = connections.spawn(async move {
                    let connection = Connection::new(shared.clone(), task_busy);
                    let notifications = shared.engine.notify_hub().connect(connection.pid() as u32);
                    let handlers = Arc::new(ConnectionHandlers(connection));
                    if let Err(error) = connection_loop::serve_socket(socket, tls, handlers, notifications).await {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                    drop(permit);
                });
                open.push((handle, busy));
            }
        }
    }
    drop(listener);
    tracing::info!(open = connections.len(), grace_ms = limits.shutdown_grace_ms, "shutting down");
    let grace = tokio::time::sleep(Duration::from_millis(limits.shutdown_grace_ms));
    tokio::pin!(grace);
    let mut sweep = tokio::time::interval(Duration::from_millis(SHUTDOWN_SWEEP_MS));
    loop {
        tokio::select! {
            _ = &mut grace => break,
            next = connections.join_next() => if next.is_none() { break },
            // Idle connections have nothing to finish: close them now, and a busy one as
            // soon as its statement is done.
            _ = sweep.tick() => {
                for (handle, busy) in &open {
                    if !busy.is_busy() {
                        handle.abort();
                    }
                }
            }
        }
    }
    connections.shutdown().await;
    Ok(())
}

/// Answers a client over the connection limit the way PostgreSQL does: read its startup
/// packet (declining TLS), send a FATAL ErrorResponse with 53300, close.
async fn refuse(mut socket: TcpStream) {
    let read = async {
        for _ in 0..2 {
            let length = socket.read_i32().await? as usize;
            if !(8..=REFUSE_STARTUP_BYTES_MAX).contains(&length) {
                return Ok::<_, std::io::Error>(());
            }
            let mut body = vec![0u8; length - 4];
            socket.read_exact(&mut body).await?;
            let code = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
            const SSL_REQUEST: i32 = 80877103;
            const GSSENC_REQUEST: i32 = 80877104;
            if code == SSL_REQUEST || code == GSSENC_REQUEST {
                socket.write_all(b"N").await?;
                continue;
            }
            break;
        }
        Ok(())
    };
    let timeout = Duration::from_millis(REFUSE_READ_TIMEOUT_MS);
    if tokio::time::timeout(timeout, read).await.is_err() {
        return;
    }
    let mut fields = Vec::new();
    for (kind, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', sqlstate::TOO_MANY_CONNECTIONS.as_str()),
        (b'M', "sorry, too many clients already"),
    ] {
        fields.push(kind);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(&((fields.len() + 4) as i32).to_be_bytes());
    message.extend_from_slice(&fields);
    // The client may already be gone; there is nobody left to tell.
    let _ = socket.write_all(&message).await;
    let _ = socket.shutdown().await;
}

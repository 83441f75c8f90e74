//! The per-connection message loop: pgwire's own loop (TLS negotiation, startup
//! timeout, dispatch to our handlers, error reporting), plus what PostgreSQL does and
//! pgwire's loop cannot: send `NotificationResponse`s (LISTEN/NOTIFY, notify sinks)
//! while the connection is idle, so a client waiting on its socket (psycopg's
//! `notifies()`, psql between commands) gets them as they happen; and send replies in
//! one write per exchange (coalesce.rs).

use std::io;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers};
use pgwire::messages::response::{NotificationResponse, TransactionStatus};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::{Framed, FramedParts};

use super::coalesce::Coalescing;

use crate::connectors::sinks::notify::Notification;

/// A client must finish TLS negotiation and startup within this (as pgwire's loop).
const STARTUP_TIMEOUT_MS: u64 = 60_000;

pub async fn serve_socket<H: PgWireServerHandlers>(
    tcp: TcpStream,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    handlers: H,
    mut notifications: mpsc::Receiver<Notification>,
) -> io::Result<()> {
    let startup_timeout = tokio::time::sleep(Duration::from_millis(STARTUP_TIMEOUT_MS));
    tokio::pin!(startup_timeout);
    let socket = tokio::select! {
        _ = &mut startup_timeout => return Ok(()),
        socket = negotiate_tls(tcp, tls) => socket?,
    };
    let Some(socket) = socket else {
        return Ok(());
    };
    let mut socket = {
        let parts = socket.into_parts();
        let mut coalescing = FramedParts::new(Coalescing::new(parts.io), parts.codec);
        coalescing.read_buf = parts.read_buf;
        coalescing.write_buf = parts.write_buf;
        Framed::from_parts(coalescing)
    };
    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();
    loop {
        let starting = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup | PgWireConnectionState::AuthenticationInProgress
        );
        // Idle between transactions: the moment PostgreSQL delivers notifications.
        let idle = matches!(socket.state(), PgWireConnectionState::ReadyForQuery)
            && matches!(socket.transaction_status(), TransactionStatus::Idle);
        let message = tokio::select! {
            _ = &mut startup_timeout, if starting => None,
            notification = notifications.recv(), if idle => {
                if let Some(n) = notification {
                    let response = NotificationResponse::new(n.sender_pid, n.channel, n.payload);
                    socket.send(PgWireBackendMessage::NotificationResponse(response)).await?;
                }
                continue;
            }
            message = socket.next() => message,
        };
        let Some(Ok(message)) = message else { break };
        // Terminate: close at once (asyncpg waits for the server to hang up).
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        // A client waiting on its Flush gets what is buffered (PostgreSQL's rule).
        if matches!(message, PgWireFrontendMessage::Flush(_)) {
            socket.get_mut().flush_next();
        }
        let extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        let processed = process_message(
            message,
            &mut socket,
            startup.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await;
        if let Err(mut error) = processed {
            errors.on_error(&socket, &mut error);
            process_error(&mut socket, error, extended_query).await?;
        }
    }
    Ok(())
}

//! Output buffering as PostgreSQL does it: the replies to one extended-protocol exchange
//! (BindComplete, DataRows, CommandComplete, ReadyForQuery) leave in one write, not one
//! write per message.
//!
//! pgwire flushes after each of ParseComplete, BindComplete, CommandComplete and
//! ReadyForQuery. With TCP_NODELAY each flush is its own `sendto` and TCP segment, and the
//! client wakes for each: four per `SELECT 1` executed through a prepared statement, most
//! of that exchange's cost. PostgreSQL sends its buffer only when a reply is awaited:
//! at ReadyForQuery, on the client's Flush, when the buffer fills, and on messages the
//! client must act on (authentication, COPY IN, notifications, errors).
//!
//! [`Coalescing`] sits between pgwire's framing and the socket. It keeps what is written,
//! tracks message boundaries (tag byte, then a four-byte length that counts itself), and
//! on a flush holds the bytes back only when the last whole message is one that more
//! replies to the same exchange always follow ([`HELD_TAGS`]) and no flush was asked
//! for ([`Coalescing::flush_next`], the connection loop's answer to a Flush message).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Backend messages after which a flush waits for more: ParseComplete, BindComplete,
/// CloseComplete, ParameterDescription, RowDescription, NoData, CommandComplete. Each is
/// followed by ReadyForQuery, or by more of the same exchange, before the client needs
/// an answer (in PostgreSQL too, it sends them at the next Sync or Flush).
const HELD_TAGS: &[u8] = b"123tTnC";

/// Bytes kept before writing through regardless (a large result streams in pieces of
/// about this size, as PostgreSQL's 8 KiB output buffer does).
const BUFFER_BYTES_MAX: usize = 64 * 1024;

pub struct Coalescing<S> {
    inner: S,
    buffer: BytesMut,
    /// The header of the message being written, as far as it has come (tag, length).
    header: [u8; 5],
    header_len: usize,
    /// Body bytes of the current message still to come.
    body_remaining: u64,
    /// Tag of the last message whose header has been seen.
    last_tag: Option<u8>,
    /// Send on the next flush whatever the last message is.
    flush_requested: bool,
}

impl<S> Coalescing<S> {
    pub fn new(inner: S) -> Coalescing<S> {
        Coalescing {
            inner,
            buffer: BytesMut::new(),
            header: [0; 5],
            header_len: 0,
            body_remaining: 0,
            last_tag: None,
            flush_requested: false,
        }
    }

    /// The client sent Flush (or is otherwise waiting): the next flush sends everything.
    pub fn flush_next(&mut self) {
        self.flush_requested = true;
    }

    /// Follows message boundaries through bytes as the framing writes them.
    fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.body_remaining > 0 {
                let skipped = bytes.len().min(usize::try_from(self.body_remaining).unwrap_or(usize::MAX));
                self.body_remaining -= skipped as u64;
                bytes = &bytes[skipped..];
                continue;
            }
            let taken = bytes.len().min(self.header.len() - self.header_len);
            self.header[self.header_len..self.header_len + taken].copy_from_slice(&bytes[..taken]);
            self.header_len += taken;
            bytes = &bytes[taken..];
            if self.header_len == self.header.len() {
                let length = u32::from_be_bytes([self.header[1], self.header[2], self.header[3], self.header[4]]);
                // The length counts its own four bytes; a shorter one is a framing bug.
                assert!(length >= 4, "backend message {} with length {length}", self.header[0] as char);
                self.last_tag = Some(self.header[0]);
                self.body_remaining = u64::from(length - 4);
                self.header_len = 0;
            }
        }
    }

    fn holds(&self) -> bool {
        !self.flush_requested && self.last_tag.is_some_and(|tag| HELD_TAGS.contains(&tag))
    }
}

impl<S: AsyncWrite + Unpin> Coalescing<S> {
    /// Writes the whole buffer to the socket.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.buffer.is_empty() {
            let written = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buffer))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.buffer.advance(written);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalescing<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        if self.buffer.len() >= BUFFER_BYTES_MAX {
            ready!(self.poll_write_out(cx))?;
        }
        self.buffer.extend_from_slice(bytes);
        self.scan(bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.holds() {
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_write_out(cx))?;
        self.flush_requested = false;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_write_out(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalescing<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![tag];
        bytes.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        bytes.extend_from_slice(body);
        bytes
    }

    /// Bytes the peer can read right now (an in-memory pipe: what was written is there).
    async fn readable(peer: &mut tokio::io::DuplexStream) -> Vec<u8> {
        use futures::FutureExt;
        let mut out = vec![0u8; 1024];
        match peer.read(&mut out).now_or_never() {
            Some(Ok(n)) => out[..n].to_vec(),
            _ => Vec::new(),
        }
    }

    /// Writes `bytes` and flushes, as pgwire's `send` does.
    async fn send(socket: &mut Coalescing<tokio::io::DuplexStream>, bytes: &[u8]) {
        socket.write_all(bytes).await.unwrap();
        socket.flush().await.unwrap();
    }

    #[tokio::test]
    async fn replies_leave_together_at_ready_for_query() {
        let (ours, mut peer) = tokio::io::duplex(4096);
        let mut socket = Coalescing::new(ours);
        let bind = message(b'2', b"");
        send(&mut socket, &bind).await;
        assert!(readable(&mut peer).await.is_empty(), "BindComplete waits for the rest");
        let row = message(b'D', b"\x00\x01\x00\x00\x00\x011");
        let done = message(b'C', b"SELECT 1\x00");
        socket.write_all(&row).await.unwrap();
        send(&mut socket, &done).await;
        assert!(readable(&mut peer).await.is_empty(), "CommandComplete waits for ReadyForQuery");
        let ready = message(b'Z', b"I");
        send(&mut socket, &ready).await;
        assert_eq!(readable(&mut peer).await, [bind, row, done, ready].concat());
    }

    #[tokio::test]
    async fn a_requested_flush_and_awaited_messages_leave_at_once() {
        let (ours, mut peer) = tokio::io::duplex(4096);
        let mut socket = Coalescing::new(ours);
        let parsed = message(b'1', b"");
        socket.flush_next();
        send(&mut socket, &parsed).await;
        assert_eq!(readable(&mut peer).await, parsed, "the client's Flush sends ParseComplete");
        let parsed_again = message(b'1', b"");
        send(&mut socket, &parsed_again).await;
        assert!(readable(&mut peer).await.is_empty(), "a requested flush is spent once");
        let copy_in = message(b'G', b"\x00\x00\x00");
        send(&mut socket, &copy_in).await;
        assert_eq!(readable(&mut peer).await, [parsed_again, copy_in].concat(), "COPY IN is awaited");
    }

    #[tokio::test]
    async fn messages_split_across_writes_are_followed() {
        let (ours, mut peer) = tokio::io::duplex(4096);
        let mut socket = Coalescing::new(ours);
        let done = message(b'C', b"SELECT 1\x00");
        let ready = message(b'Z', b"I");
        let stream = [done.clone(), ready.clone()].concat();
        for piece in stream.chunks(3) {
            socket.write_all(piece).await.unwrap();
        }
        socket.flush().await.unwrap();
        assert_eq!(readable(&mut peer).await, stream);
    }
}

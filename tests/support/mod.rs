//! What the wire-level test files share: a watershed server on an ephemeral loopback
//! port with its own temporary directory, stopped through its shutdown future, and the
//! SQLSTATE of a client error.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_postgres::error::SqlState;
use watershed::config::Config;
use watershed::session::Engine;

pub struct Server {
    pub port: u16,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
    dir: tempfile::TempDir,
}

impl Server {
    /// Serves `Config::rooted_at(dir)`, changed by `adjust`.
    pub async fn start(dir: tempfile::TempDir, adjust: impl FnOnce(&mut Config)) -> Server {
        let mut config = Config::rooted_at(dir.path());
        adjust(&mut config);
        let engine = Engine::open(config).await.expect("engine opens");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            watershed::server::serve(engine, listener, shutdown).await.expect("server runs");
        });
        Server { port, stop: Some(stop), done, dir }
    }

    /// The server's root directory (data, catalog, and whatever a test puts there).
    #[allow(dead_code)] // not every test file needs it
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().expect("stopped once").send(());
        tokio::time::timeout(Duration::from_secs(30), self.done)
            .await
            .expect("server stops within its grace")
            .expect("server task ends cleanly");
    }
}

pub fn code_of(error: &tokio_postgres::Error) -> SqlState {
    error.code().cloned().unwrap_or_else(|| panic!("a database error with a SQLSTATE, got {error}"))
}

/// Sends a simple-protocol Query message on a raw socket.
#[allow(dead_code)] // raw-socket helpers: not every test file needs them
pub async fn send_query(socket: &mut TcpStream, sql: &str) {
    let mut message = vec![b'Q'];
    message.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
    message.extend_from_slice(sql.as_bytes());
    message.push(0);
    socket.write_all(&message).await.expect("query");
}

/// Reads until the server closes the connection; fails if it stays open.
#[allow(dead_code)]
pub async fn read_until_close(socket: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(30), socket.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return all,
            Ok(Ok(n)) => all.extend_from_slice(&buffer[..n]),
            Err(_) => panic!("the server kept the connection open"),
        }
    }
}

//! What the wire-level test files share: a watershed server on an ephemeral loopback
//! port with its own temporary directory, stopped through its shutdown future; a server
//! process to kill -9; ephemeral ports; and the SQLSTATE of a client error.
#![allow(dead_code)] // each test file uses its own part

use std::time::Duration;

use std::process::{Child, Command, Stdio};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};
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
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Stops the server; its directory is returned, to start again on it or to drop.
    pub async fn stop(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().expect("stopped once").send(());
        tokio::time::timeout(Duration::from_secs(30), self.done)
            .await
            .expect("server stops within its grace")
            .expect("server task ends cleanly");
        self.dir
    }

    /// A client of this server (its connection task runs in the background).
    pub async fn client(&self) -> Client {
        let url = format!("host=127.0.0.1 port={} user=watershed dbname=watershed", self.port);
        let (client, connection) = tokio_postgres::connect(&url, NoTls).await.expect("connects");
        tokio::spawn(connection);
        client
    }
}

pub fn code_of(error: &tokio_postgres::Error) -> SqlState {
    error.code().cloned().unwrap_or_else(|| panic!("a database error with a SQLSTATE, got {error}"))
}

/// Sends a simple-protocol Query message on a raw socket.
pub async fn send_query(socket: &mut TcpStream, sql: &str) {
    let mut message = vec![b'Q'];
    message.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
    message.extend_from_slice(sql.as_bytes());
    message.push(0);
    socket.write_all(&message).await.expect("query");
}

/// Reads until the server closes the connection; fails if it stays open.
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

/// The server binary the process tests run: `WATERSHED_BIN` when set (several worktrees
/// sharing one target dir overwrite each other's `target/debug/watershed`, so each runs
/// its own copy), else the one cargo built for this test.
pub fn binary() -> std::path::PathBuf {
    std::env::var_os("WATERSHED_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_watershed").into())
}

/// A watershed server process on its own data and catalog dirs.
pub struct Process {
    pub child: Child,
    pub port: u16,
}

impl Process {
    pub fn start(root: &std::path::Path, port: u16) -> Process {
        let child = Command::new(binary())
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(root.join("data"))
            .arg("--catalog-dir")
            .arg(root.join("catalog"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the watershed binary starts");
        Process { child, port }
    }

    /// Connects, retrying while the server is still starting (bounded by a deadline).
    pub async fn connect(&mut self) -> Client {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("host=127.0.0.1 port={} user=watershed dbname=watershed", self.port);
        loop {
            match tokio_postgres::connect(&url, NoTls).await {
                Ok((client, connection)) => {
                    tokio::spawn(connection);
                    return client;
                }
                Err(error) => {
                    if let Some(status) = self.child.try_wait().expect("child status") {
                        panic!("server exited with {status} before accepting connections");
                    }
                    assert!(Instant::now() < deadline, "server not accepting connections: {error}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    pub fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("addr").port()
}

/// An engine on a fresh temporary root, served on an ephemeral port, and a client of it.
pub async fn start_in_process() -> (Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine =
        watershed::session::Engine::open(watershed::config::Config::rooted_at(dir.path())).await.expect("engine opens");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        watershed::server::serve(engine, listener, std::future::pending()).await.expect("serves");
    });
    let url = format!("host=127.0.0.1 port={port} user=watershed dbname=watershed");
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.expect("connects");
    tokio::spawn(connection);
    (client, dir)
}

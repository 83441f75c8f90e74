//! What each command of the binary does, for main.rs to call: serve with signal
//! handling, run statements embedded and print them, regenerate the demo lake.

use std::time::Instant;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::error::{WsError, WsResult, sqlstate};
use crate::session::Engine;

/// Opens the engine and serves until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> WsResult<()> {
    let started = Instant::now();
    let listener = TcpListener::bind(config.listen).await.map_err(|error| {
        WsError::new(sqlstate::IO_ERROR, format!("cannot listen on {}: {error}", config.listen))
    })?;
    let engine = Engine::open(config).await?;
    let address = listener.local_addr()?;
    tracing::info!(%address, startup_ms = started.elapsed().as_millis() as u64, "watershed is ready: psql -h {} -p {} -U watershed watershed", address.ip(), address.port());
    crate::server::serve(engine, listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// Runs statements through a session, as the server would, and prints each result.
pub async fn sql(config: Config, sql: &str) -> WsResult<()> {
    let engine = Engine::open(config).await?;
    let mut session = engine.session();
    for result in session.run_collect(sql).await? {
        if result.schema.fields().is_empty() {
            println!("{}", result.tag);
            continue;
        }
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(result.schema.fields().iter().map(|f| f.name().clone()));
        for batch in &result.batches {
            for row in crate::server::text_rows(batch)? {
                table.add_row(row.into_iter().map(|v| v.unwrap_or_else(|| "NULL".into())));
            }
        }
        println!("{table}");
        println!("({} rows)", result.tag.rows.unwrap_or(0));
    }
    Ok(())
}

/// Regenerates the demo lake declared in the catalog at `scale`.
pub async fn demo(config: Config, scale: f64, seed: Option<u64>) -> WsResult<()> {
    if !(scale > 0.0 && scale <= 100.0) {
        return Err(WsError::new(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("scale must be in (0, 100], got {scale}"),
        ));
    }
    let files = crate::catalog::load_dir(&config.catalog_dir)?;
    let declared = files.iter().find_map(|file| file.demo.clone()).ok_or_else(|| {
        WsError::new(
            sqlstate::CONFIG_FILE_ERROR,
            format!("no catalog file in {} declares [demo]", config.catalog_dir.display()),
        )
    })?;
    let lake_dir = config.data_dir.join(&declared.location);
    let spec = crate::demo::DemoSpec { seed: seed.unwrap_or(declared.seed), scale };
    let report = crate::demo::generate(&lake_dir, &spec, config.progress)
        .await
        .map_err(|error| WsError::internal(format!("demo generation: {error}")))?;
    println!(
        "demo lake at {}: {} products, {} campaigns, {} customers, {} orders in {} ms",
        lake_dir.display(),
        report.products,
        report.campaigns,
        report.customers,
        report.orders,
        report.elapsed_ms
    );
    Ok(())
}

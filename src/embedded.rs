//! What each command of the binary does, for main.rs to call: serve with signal
//! handling, run statements embedded and print them, regenerate the demo lake.

use std::io::BufRead as _;
use std::time::Instant;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::error::{WsError, WsResult, sqlstate};
use crate::session::Engine;

/// Opens the engine and serves until SIGINT or SIGTERM. TLS files, the users file and
/// the listen address are checked first, so a bad setup fails before any work.
pub async fn serve(config: Config) -> WsResult<()> {
    let started = Instant::now();
    let security = crate::server::Security::load(&config)?;
    security.check_listen(config.listen)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|error| WsError::new(sqlstate::IO_ERROR, format!("cannot listen on {}: {error}", config.listen)))?;
    let engine = Engine::open(config).await?;
    let address = listener.local_addr()?;
    tracing::info!(
        %address,
        startup_ms = started.elapsed().as_millis() as u64,
        tls = security.tls_enabled(),
        authentication = security.authenticates(),
        "watershed is ready: psql -h {} -p {} -U watershed watershed",
        address.ip(),
        address.port()
    );
    crate::server::serve_with(engine, listener, security, shutdown_signal()).await
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
        for notice in &result.notices {
            eprintln!("{}:  {}", notice.severity, notice.message);
        }
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
        return Err(WsError::new(sqlstate::INVALID_PARAMETER_VALUE, format!("scale must be in (0, 100], got {scale}")));
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
        "demo lake at {}: {} products, {} campaigns, {} customers, {} orders, {} cards, {} merchants, {} payments \
         ({} fraudulent) in {} ms",
        lake_dir.display(),
        report.products,
        report.campaigns,
        report.customers,
        report.orders,
        report.cards,
        report.merchants,
        report.transactions,
        report.frauds,
        report.elapsed_ms
    );
    Ok(())
}

/// `watershed user add`: reads the password from one line of `input` (stdin), refuses an
/// empty one, and adds or replaces the user in the users file, written atomically.
pub fn user_add(
    users_file: &std::path::Path,
    name: &str,
    role: crate::session::Role,
    method: crate::session::users::Method,
    input: &mut impl std::io::BufRead,
) -> WsResult<()> {
    let mut line = String::new();
    // One byte more than the limit is enough to tell an over-long password.
    let limit = crate::session::users::PASSWORD_BYTES_MAX as u64 + 3;
    std::io::Read::take(&mut *input, limit).read_line(&mut line)?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    let replaced = crate::session::users::add_user(users_file, name, role, method, password)?;
    eprintln!("{} user {name} (role {role}) in {}", if replaced { "replaced" } else { "added" }, users_file.display());
    Ok(())
}

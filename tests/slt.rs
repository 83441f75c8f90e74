//! The sqllogictest runner: every `sql-tests/**/*.slt` file is run three ways, each
//! against a fresh engine in its own temporary directory:
//!
//! - `inprocess`: an [`Engine`] session, results rendered by `watershed::server::text_rows`
//!   (the wire's own text encoder);
//! - `simple`: over pgwire with tokio-postgres' simple query protocol (text results);
//! - `extended`: over pgwire with the extended protocol (prepared statements, binary
//!   results rendered back to PostgreSQL's text by `slt/pgtext.rs`).
//!
//! Records are run one at a time (not with `Runner::run_file`, which stops at the first
//! failure) so a report counts the passing and failing records of every file.
//!
//! Column type letters in record headers (`query ITR`) are not checked: DataFusion types
//! results differently from other engines (COUNT is BIGINT, AVG of integers is DOUBLE,
//! literals are INT64...), and the rendered values already pin the results down. Only
//! their number matters (valuewise results and hashing depend on the width).
//!
//! Labels for `skipif`/`onlyif`: `watershed` (the engine) and the mode's name, so that a
//! record can be skipped in the one mode where a known bug shows. The SQLite corpus runs
//! with `postgresql` too, as the corpus' records for PostgreSQL are the closest match.
//!
//! Environment:
//! - `SLT_FILE=path[,path...]`: run only these files or directories (default `sql-tests`);
//! - `SLT_MODE=inprocess,simple,extended`: run only these modes;
//! - `SLT_JOBS=n`: file runs at a time (default: available cores, at most 4);
//! - `SLT_FAILURES=n`: failure messages printed per file run (default 10, corpus 3);
//! - `SLT_SQLITE=1` (or the argument `--sqlite`): run the SQLite corpus instead
//!   (`../shared/conformance/sqlite/select1.test` by default; `SLT_SQLITE=a.test,b.test`
//!   names corpus files or directories, `SLT_SQLITE=all` runs every `.test` file of the
//!   corpus), in-process and extended, and print records passed per file and mode; failures
//!   there do not fail the run (full conformance is tracked separately);
//! - `SLT_REPORT=path` (with `SLT_SQLITE`): write the per-file pass-count table into the
//!   Markdown file at `path`, between the lines `<!-- sqlite-conformance:begin -->` and
//!   `<!-- sqlite-conformance:end -->` (appended when they are missing; the rest of the file
//!   is kept). `sql-tests/sqlite-conformance.sh` regenerates `sql-tests/README.md` this way.
//!
//! Command-line arguments that do not start with `-` select files whose name contains one
//! of them (so `cargo test some_unit_test` runs no .slt file); `--list` lists the files.
//!
//! The last line of output is `N passed, N failed` (file runs, i.e. file x mode), and the
//! exit status is non-zero when any file run failed.

#[path = "slt/db.rs"]
mod db;
#[path = "slt/pgtext.rs"]
mod pgtext;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use futures::StreamExt;
use sqllogictest::{AsyncDB, Control, DefaultColumnType, MakeConnection, Record, RecordOutput, ResultMode, Runner};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use watershed::config::Config;
use watershed::error::WsError;
use watershed::session::Engine;

use db::{InProcess, Protocol, SqlError, Wire};

/// How many failure messages of one file run are printed by default (`SLT_FAILURES`
/// overrides); the rest are counted.
const FAILURES_SHOWN_DEFAULT: usize = 10;
/// The same for the SQLite corpus, whose failures are expected for now.
const CORPUS_FAILURES_SHOWN_DEFAULT: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    InProcess,
    Simple,
    Extended,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::InProcess, Mode::Simple, Mode::Extended];

    fn name(self) -> &'static str {
        match self {
            Mode::InProcess => "inprocess",
            Mode::Simple => "simple",
            Mode::Extended => "extended",
        }
    }

    fn parse(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|mode| mode.name() == name.trim())
    }
}

/// Which kind of file: ours, or one of the SQLite corpus (see [`adapt_script`] and
/// [`run_records`] for how the corpus is adapted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Project,
    SqliteCorpus,
}

/// One file run in one mode.
#[derive(Debug, Clone)]
struct Job {
    path: PathBuf,
    /// The path as printed (relative to the package when possible).
    name: String,
    mode: Mode,
    flavor: Flavor,
}

/// The outcome of a [`Job`].
#[derive(Debug, Default)]
struct Report {
    /// Statement and query records that ran and met their expectation.
    passed: usize,
    failed: usize,
    /// Records not run because of `skipif`/`onlyif`.
    skipped: usize,
    failures: Vec<String>,
    /// The file could not be run at all (unreadable, unparsable, engine did not start).
    setup_error: Option<String>,
}

impl Report {
    fn ok(&self) -> bool {
        self.failed == 0 && self.setup_error.is_none()
    }
}

struct Options {
    paths: Vec<PathBuf>,
    modes: Vec<Mode>,
    jobs: usize,
    flavor: Flavor,
    /// Failure messages printed per file run.
    failures_shown: usize,
    /// `SLT_REPORT`: the Markdown file the corpus' pass-count table is written into.
    report: Option<PathBuf>,
    /// Substrings of file names given on the command line (`cargo test --test slt --
    /// time_travel`); a file runs when it matches one, or when there are none.
    filters: Vec<String>,
    /// `--list`: print the files that would run, as libtest does, and run nothing.
    list: bool,
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn env_list(name: &str) -> Option<Vec<String>> {
    let value = std::env::var(name).ok()?;
    let items: Vec<String> =
        value.split(',').map(str::trim).filter(|item| !item.is_empty()).map(String::from).collect();
    Some(items)
}

/// The SQLite corpus files to run, or `None` for the project's own files: `--sqlite` or
/// `SLT_SQLITE=1` selects select1.test, `SLT_SQLITE=a.test,b.test` names files (relative
/// to the corpus directory), and an unset, empty or `0` variable means off.
fn sqlite_selection() -> Option<Vec<String>> {
    let default = || vec!["select1.test".to_string()];
    let names = env_list("SLT_SQLITE").unwrap_or_default();
    let switch = |values: &[&str]| names.len() == 1 && values.contains(&names[0].as_str());
    if switch(&["1", "true", "yes"]) {
        return Some(default());
    }
    if switch(&["all"]) {
        // The corpus directory itself: every `.test` file under it.
        return Some(vec![".".to_string()]);
    }
    if !names.is_empty() && !switch(&["0", "false", "no"]) {
        return Some(names);
    }
    std::env::args().skip(1).any(|arg| arg == "--sqlite").then(default)
}

fn options() -> Result<Options, String> {
    let sqlite = sqlite_selection();
    let flavor = if sqlite.is_some() { Flavor::SqliteCorpus } else { Flavor::Project };
    let modes = match env_list("SLT_MODE") {
        Some(names) => names
            .iter()
            .map(|name| Mode::parse(name).ok_or_else(|| format!("SLT_MODE: unknown mode {name:?}")))
            .collect::<Result<Vec<_>, _>>()?,
        // The corpus is large; in-process and extended cover both ends of the server.
        None if flavor == Flavor::SqliteCorpus => vec![Mode::InProcess, Mode::Extended],
        None => Mode::ALL.to_vec(),
    };
    let jobs = match std::env::var("SLT_JOBS") {
        Ok(value) => value.parse::<usize>().map_err(|_| format!("SLT_JOBS: not a number: {value:?}"))?.max(1),
        // Each job holds an engine and DataFusion runs its own partitions in parallel, so
        // more jobs than cores only adds memory.
        Err(_) => std::thread::available_parallelism().map_or(2, |n| n.get()).min(4),
    };
    let paths = match flavor {
        Flavor::Project => match env_list("SLT_FILE") {
            Some(paths) => paths.into_iter().map(PathBuf::from).collect(),
            None => vec![manifest_dir().join("sql-tests")],
        },
        Flavor::SqliteCorpus => {
            let corpus = manifest_dir().join("../shared/conformance/sqlite");
            sqlite.unwrap_or_default().into_iter().map(|name| corpus.join(name)).collect()
        }
    };
    let failures_shown = match std::env::var("SLT_FAILURES") {
        Ok(value) => value.parse::<usize>().map_err(|_| format!("SLT_FAILURES: not a number: {value:?}"))?,
        Err(_) if flavor == Flavor::SqliteCorpus => CORPUS_FAILURES_SHOWN_DEFAULT,
        Err(_) => FAILURES_SHOWN_DEFAULT,
    };
    // cargo passes its own test filters and libtest flags to every test binary; flags are
    // ignored, positional arguments select files by name.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filters = args.iter().filter(|arg| !arg.starts_with('-')).cloned().collect();
    let list = args.iter().any(|arg| arg == "--list");
    let report = std::env::var("SLT_REPORT").ok().filter(|path| !path.is_empty()).map(|path| {
        let path = PathBuf::from(path);
        if path.is_absolute() { path } else { manifest_dir().join(path) }
    });
    Ok(Options { paths, modes, jobs, flavor, failures_shown, report, filters, list })
}

/// The files under `paths` (files as given, directories searched for `extension`), sorted.
fn collect_files(paths: &[PathBuf], extension: &str) -> Result<Vec<PathBuf>, String> {
    fn walk(dir: &Path, extension: &str, out: &mut Vec<PathBuf>) -> Result<(), String> {
        let entries = std::fs::read_dir(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|error| format!("{}: {error}", dir.display()))?.path();
            if path.is_dir() {
                walk(&path, extension, out)?;
            } else if path.extension().is_some_and(|ext| ext == extension) {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            walk(path, extension, &mut files)?;
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            return Err(format!("{}: no such file or directory", path.display()));
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn display_name(path: &Path) -> String {
    let base = manifest_dir();
    let shown = path.strip_prefix(&base).unwrap_or(path);
    shown.display().to_string()
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("slt: {message}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("slt: cannot start a tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match options.flavor {
        Flavor::Project => runtime.block_on(run_project(options)),
        Flavor::SqliteCorpus => runtime.block_on(run_corpus(options)),
    }
}

fn jobs_for(files: &[PathBuf], modes: &[Mode], flavor: Flavor) -> Vec<Job> {
    files
        .iter()
        .flat_map(|path| {
            modes.iter().map(move |&mode| Job { path: path.clone(), name: display_name(path), mode, flavor })
        })
        .collect()
}

/// Runs the jobs `parallel` at a time, each on its own task (so on its own worker thread
/// when one is free), and hands each finished one to `done` in completion order.
async fn run_jobs(jobs: Vec<Job>, parallel: usize, mut done: impl FnMut(&Job, &Report)) -> Vec<(Job, Report)> {
    let mut results = Vec::with_capacity(jobs.len());
    let mut stream = futures::stream::iter(jobs)
        .map(|job| async move {
            let task = tokio::spawn(run_job(job.clone()));
            let report = task.await.unwrap_or_else(|error| Report {
                setup_error: Some(format!("the runner task panicked or was cancelled: {error}")),
                ..Report::default()
            });
            (job, report)
        })
        .buffer_unordered(parallel);
    while let Some((job, report)) = stream.next().await {
        done(&job, &report);
        results.push((job, report));
    }
    results
}

async fn run_project(options: Options) -> ExitCode {
    let files = match collect_files(&options.paths, "slt") {
        Ok(files) => files,
        Err(message) => {
            eprintln!("slt: {message}");
            return ExitCode::FAILURE;
        }
    };
    if files.is_empty() {
        eprintln!("slt: no .slt files found");
        return ExitCode::FAILURE;
    }
    let files: Vec<PathBuf> = files
        .into_iter()
        .filter(|path| {
            let name = display_name(path);
            options.filters.is_empty() || options.filters.iter().any(|f| name.contains(f.as_str()))
        })
        .collect();
    if options.list {
        for path in &files {
            println!("{}: test", display_name(path));
        }
        return ExitCode::SUCCESS;
    }
    let modes: Vec<&str> = options.modes.iter().map(|mode| mode.name()).collect();
    println!(
        "slt: {} file(s) x {} mode(s) [{}], {} at a time",
        files.len(),
        options.modes.len(),
        modes.join(", "),
        options.jobs
    );
    let jobs = jobs_for(&files, &options.modes, Flavor::Project);
    let shown = options.failures_shown;
    let results = run_jobs(jobs, options.jobs, |job, report| print_report(job, report, shown)).await;

    let failed = results.iter().filter(|(_, report)| !report.ok()).count();
    let passed = results.len() - failed;
    if failed > 0 {
        println!("\nfailed file runs:");
        let mut failures: Vec<_> = results.iter().filter(|(_, report)| !report.ok()).collect();
        failures.sort_by(|(a, _), (b, _)| (&a.name, a.mode).cmp(&(&b.name, b.mode)));
        for (job, report) in failures {
            println!("  {} [{}]: {} record(s) failed", job.name, job.mode.name(), report.failed);
        }
    }
    println!("\n{passed} passed, {failed} failed");
    if failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

fn print_report(job: &Job, report: &Report, failures_shown: usize) {
    let status = if report.ok() { "ok" } else { "FAILED" };
    println!(
        "{status:<6} {:<9} {}  ({} passed, {} failed, {} skipped)",
        job.mode.name(),
        job.name,
        report.passed,
        report.failed,
        report.skipped
    );
    if let Some(error) = &report.setup_error {
        println!("    setup: {error}");
    }
    print_failures(report, failures_shown);
}

fn print_failures(report: &Report, shown: usize) {
    for failure in report.failures.iter().take(shown) {
        for line in failure.trim_end().lines() {
            println!("    {line}");
        }
        println!();
    }
    if report.failures.len() > shown {
        println!("    ... and {} more failure(s)", report.failures.len() - shown);
    }
}

async fn run_corpus(options: Options) -> ExitCode {
    let mut paths = Vec::new();
    for path in &options.paths {
        if path.exists() {
            paths.push(path.clone());
        } else {
            // The corpus lives outside the repository; without it there is nothing to measure.
            println!("slt: SQLite corpus file {} not found; skipped", path.display());
        }
    }
    if paths.is_empty() {
        return ExitCode::SUCCESS;
    }
    let files = match collect_files(&paths, "test") {
        Ok(files) => files,
        Err(message) => {
            eprintln!("slt: {message}");
            return ExitCode::FAILURE;
        }
    };
    let started = std::time::Instant::now();
    let jobs = jobs_for(&files, &options.modes, Flavor::SqliteCorpus);
    let shown = options.failures_shown;
    let mut results = run_jobs(jobs, options.jobs, |job, report| {
        let status = if report.ok() { "ok" } else { "partial" };
        println!(
            "{status:<7} {:<9} {}  {}/{} records passed ({} skipped)",
            job.mode.name(),
            job.name,
            report.passed,
            report.passed + report.failed,
            report.skipped
        );
        if let Some(error) = &report.setup_error {
            println!("    setup: {error}");
        }
        print_failures(report, shown);
    })
    .await;
    let elapsed_s = started.elapsed().as_secs();
    results.sort_by(|(a, _), (b, _)| (&a.name, a.mode).cmp(&(&b.name, b.mode)));
    println!("\nSQLite corpus (records passed / run, per file and mode):");
    for (job, report) in &results {
        println!("  {} [{}]: {}/{}", job.name, job.mode.name(), report.passed, report.passed + report.failed);
    }
    if let Some(path) = &options.report {
        let table = corpus_table(&results, options.jobs, elapsed_s);
        if let Err(message) = write_report(path, &table) {
            eprintln!("slt: SLT_REPORT: {message}");
            return ExitCode::FAILURE;
        }
        println!("slt: table written to {}", path.display());
    }
    ExitCode::SUCCESS
}

const REPORT_BEGIN: &str = "<!-- sqlite-conformance:begin -->";
const REPORT_END: &str = "<!-- sqlite-conformance:end -->";

/// The Markdown pass-count table of a corpus run: one row per file and mode.
fn corpus_table(results: &[(Job, Report)], jobs: usize, elapsed_s: u64) -> String {
    let corpus = manifest_dir().join("../shared/conformance/sqlite");
    let mut out = String::new();
    out.push_str("| file | mode | passed | failed | skipped | passed % |\n");
    out.push_str("|---|---|---:|---:|---:|---:|\n");
    for (job, report) in results {
        // Names relative to the corpus directory, whatever the working directory was.
        let name =
            job.path.strip_prefix(&corpus).map_or_else(|_| job.name.clone(), |relative| relative.display().to_string());
        let run = report.passed + report.failed;
        let percent = if run == 0 { 100.0 } else { report.passed as f64 * 100.0 / run as f64 };
        let setup = if report.setup_error.is_some() { " (setup error)" } else { "" };
        out.push_str(&format!(
            "| {name}{setup} | {} | {} | {} | {} | {percent:.1} |\n",
            job.mode.name(),
            report.passed,
            report.failed,
            report.skipped
        ));
    }
    out.push_str(&format!("\nRun time: {elapsed_s} s with {jobs} file run(s) at a time (`SLT_JOBS`).\n"));
    out
}

/// Replaces the text between [`REPORT_BEGIN`] and [`REPORT_END`] in the file at `path` by
/// `table`, appending the markers when the file has none (or does not exist yet).
fn write_report(path: &Path, table: &str) -> Result<(), String> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(format!("read {}: {error}", path.display())),
    };
    let block = format!("{REPORT_BEGIN}\n{table}{REPORT_END}\n");
    let updated = match (existing.find(REPORT_BEGIN), existing.find(REPORT_END)) {
        (Some(begin), Some(end)) if begin < end => {
            let after = existing[end + REPORT_END.len()..].trim_start_matches('\n');
            format!("{}{block}{after}", &existing[..begin])
        }
        _ if existing.is_empty() => block,
        _ => format!("{}\n{block}", existing.trim_end_matches('\n').to_string() + "\n"),
    };
    std::fs::write(path, updated).map_err(|error| format!("write {}: {error}", path.display()))
}

/// The labels a file run is evaluated with (the engine name `watershed` is added by the
/// sqllogictest crate from `AsyncDB::engine_name`).
fn labels(job: &Job) -> Vec<&'static str> {
    let mut labels = vec![job.mode.name()];
    if job.flavor == Flavor::SqliteCorpus {
        labels.push("postgresql");
    }
    labels
}

/// Adapts a script in memory to the sqllogictest crate's parser (files on disk are never
/// changed), keeping every line where it was so that failures point at the right line:
/// - `skipif`/`onlyif` lines lose their trailing `# comment`, which the parser rejects;
/// - `halt` is resolved here: the crate parses it unconditionally and would attach the
///   conditions before it to the next record, so a `halt` whose conditions hold for
///   `labels` ends the script, and one whose conditions do not is blanked out with them.
///
/// The corpus' other two adaptations (valuewise results, hash threshold 8) are made on the
/// runner and the parsed records, see [`run_records`].
fn adapt_script(script: &str, labels: &[&str]) -> String {
    let mut out = String::with_capacity(script.len());
    // Condition lines seen since the last other line, held back until we know whether a
    // `halt` follows them.
    let mut pending: Vec<(String, String)> = Vec::new();
    for line in script.lines() {
        let mut tokens = line.split_whitespace();
        let first = tokens.next();
        if let Some(keyword @ ("skipif" | "onlyif")) = first {
            let label = tokens.next().unwrap_or_default().to_string();
            pending.push((keyword.to_string(), label));
            continue;
        }
        if first == Some("halt") && tokens.next().is_none() {
            let holds = pending.iter().all(|(keyword, label)| {
                let present = labels.contains(&label.as_str()) || label == "watershed";
                if keyword == "onlyif" { present } else { !present }
            });
            if holds {
                break;
            }
            // Blank lines in place of the conditions and the halt (blank lines only
            // separate records).
            out.push_str(&"\n".repeat(pending.len() + 1));
            pending.clear();
            continue;
        }
        for (keyword, label) in pending.drain(..) {
            out.push_str(&format!("{keyword} {label}\n"));
        }
        out.push_str(line);
        out.push('\n');
    }
    for (keyword, label) in pending.drain(..) {
        out.push_str(&format!("{keyword} {label}\n"));
    }
    out
}

/// Runs one file in one mode against a fresh engine rooted in a temporary directory.
async fn run_job(job: Job) -> Report {
    let mut report = Report::default();
    if let Err(error) = run_job_inner(&job, &mut report).await {
        report.setup_error = Some(error);
    }
    report
}

async fn run_job_inner(job: &Job, report: &mut Report) -> Result<(), String> {
    let script = std::fs::read_to_string(&job.path).map_err(|error| format!("read {}: {error}", job.name))?;
    let labels = labels(job);
    let script = adapt_script(&script, &labels);
    let records = sqllogictest::parse_with_name::<DefaultColumnType>(&script, job.name.as_str())
        .map_err(|error| error.to_string())?;
    let dir = tempfile::Builder::new()
        .prefix("watershed-slt-")
        .tempdir()
        .map_err(|error| format!("temporary directory: {error}"))?;
    let engine = Engine::open(Config::rooted_at(dir.path())).await.map_err(|error| format!("engine: {error}"))?;
    match job.mode {
        Mode::InProcess => {
            let mut runner = Runner::new(move || {
                let engine = engine.clone();
                async move { Ok::<_, SqlError>(InProcess::new(&engine)) }
            });
            run_records(&mut runner, records, job, report).await;
        }
        Mode::Simple | Mode::Extended => {
            let protocol = if job.mode == Mode::Simple { Protocol::Simple } else { Protocol::Extended };
            let server = TestServer::start(engine).await?;
            let address = server.address;
            let mut runner = Runner::new(move || Wire::connect(address, protocol));
            run_records(&mut runner, records, job, report).await;
            server.stop().await?;
        }
    }
    // Delete the directory now and report a failure to do so, instead of on drop silently.
    dir.close().map_err(|error| format!("removing the temporary directory: {error}"))
}

/// Runs every record, counting instead of stopping at the first failure.
async fn run_records<D, M>(
    runner: &mut Runner<D, M>,
    mut records: Vec<Record<DefaultColumnType>>,
    job: &Job,
    report: &mut Report,
) where
    D: AsyncDB<ColumnType = DefaultColumnType>,
    M: MakeConnection<Conn = D>,
{
    for label in labels(job) {
        runner.add_label(label);
    }
    if job.flavor == Flavor::SqliteCorpus {
        // The corpus lists results one value per line (`control resultmode valuewise`) and
        // gives results of more than 8 values as an MD5 hash (`hash-threshold 8`).
        records.insert(0, Record::Control(Control::ResultMode(ResultMode::ValueWise)));
        runner.with_hash_threshold(8);
    }
    for record in records {
        let counted = matches!(record, Record::Statement { .. } | Record::Query { .. });
        match runner.run_async(record).await {
            Ok(RecordOutput::Nothing) if counted => report.skipped += 1,
            Ok(_) if counted => report.passed += 1,
            Ok(_) => {}
            Err(error) => {
                report.failed += 1;
                report.failures.push(error.display(false).to_string());
            }
        }
    }
    runner.shutdown_async().await;
}

/// A watershed server on an ephemeral loopback port, in this runtime.
struct TestServer {
    address: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), WsError>>,
}

impl TestServer {
    async fn start(engine: Engine) -> Result<TestServer, String> {
        // Bound before serve() starts, so the port is known and connections queue up.
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|error| format!("bind: {error}"))?;
        let address = listener.local_addr().map_err(|error| format!("local address: {error}"))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            // Either a stop message or a dropped sender means: shut down.
            let _ = stopped.await;
        };
        let task = tokio::spawn(watershed::server::serve(engine, listener, shutdown));
        Ok(TestServer { address, stop, task })
    }

    async fn stop(self) -> Result<(), String> {
        // The receiver is gone only if the server already ended; its result says why.
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(format!("server: {error}")),
            Err(error) => Err(format!("server task: {error}")),
        }
    }
}

//! CREATE MODEL, predict() and watershed.models through an embedded engine: metrics equal
//! a reference computation on the same predictions, versions survive a restart and can
//! be switched back, and every error has its SQLSTATE and writes nothing.

use std::path::Path;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};

use crate::config::Config;
use crate::error::{SqlState, sqlstate};
use crate::session::{Engine, Session};

async fn rows(session: &mut Session, sql: &str) -> RecordBatch {
    let mut results = session.run_collect(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let result = results.pop().expect("a result");
    concat_batches(&result.schema, &result.batches).expect("concat")
}

fn f64s(batch: &RecordBatch, index: usize) -> Vec<Option<f64>> {
    cast(batch.column(index), &DataType::Float64).expect("as float8").as_primitive::<Float64Type>().iter().collect()
}

fn i64s(batch: &RecordBatch, index: usize) -> Vec<Option<i64>> {
    cast(batch.column(index), &DataType::Int64).expect("as int8").as_primitive::<Int64Type>().iter().collect()
}

async fn error_code(session: &mut Session, sql: &str) -> (SqlState, String) {
    match session.run_collect(sql).await {
        Ok(_) => panic!("{sql} must fail"),
        Err(error) => (error.code, error.message),
    }
}

/// ROC AUC by counting every (positive, negative) pair, ties as a half.
fn reference_auc(scores: &[f64], labels: &[bool]) -> f64 {
    let (mut wins, mut pairs) = (0.0, 0.0);
    for (_, si) in scores.iter().enumerate().filter(|(i, _)| labels[*i]) {
        for (_, sj) in scores.iter().enumerate().filter(|(j, _)| !labels[*j]) {
            pairs += 1.0;
            wins += if si > sj {
                1.0
            } else if si == sj {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / pairs
}

/// Average precision as its definition reads: for each distinct threshold t (descending),
/// precision at score >= t times the recall gained at t.
fn reference_ap(scores: &[f64], labels: &[bool]) -> f64 {
    let positives = labels.iter().filter(|l| **l).count() as f64;
    let mut thresholds: Vec<f64> = scores.to_vec();
    thresholds.sort_by(|a, b| b.total_cmp(a));
    thresholds.dedup();
    let (mut ap, mut recall_before) = (0.0, 0.0);
    for t in thresholds {
        let selected: Vec<usize> = (0..scores.len()).filter(|&i| scores[i] >= t).collect();
        let hits = selected.iter().filter(|&&i| labels[i]).count() as f64;
        let recall = hits / positives;
        ap += (recall - recall_before) * hits / selected.len() as f64;
        recall_before = recall;
    }
    ap
}

/// The demo lake at the test scale, declared (without `[demo]`) in a catalog file.
async fn demo_engine(root: &Path) -> Engine {
    let lake = root.join("data").join("demo");
    crate::demo::generate(&lake, &crate::demo::DemoSpec { seed: 42, scale: 0.01 }, false).await.expect("demo lake");
    std::fs::create_dir_all(root.join("catalog")).unwrap();
    let tables: String = crate::demo::DEMO_TABLES
        .iter()
        .map(|t| format!("[[table]]\nname = \"{t}\"\nformat = \"delta\"\nlocation = \"demo/{t}\"\n\n"))
        .collect();
    std::fs::write(root.join("catalog").join("demo.toml"), tables).unwrap();
    Engine::open(Config::rooted_at(root)).await.expect("engine")
}

/// The README's features: a payment's size against the card's usual one, abroad, online,
/// new device, hour, and how many payments the card made in the 10 minutes before.
const FEATURES: &str = "SELECT CAST(t.amount AS DOUBLE) / CAST(c.usual_amount AS DOUBLE) AS amount_ratio,
       t.amount,
       t.country <> u.country AS abroad,
       t.channel = 'online' AS online,
       t.new_device,
       extract(hour FROM t.ts) AS hour,
       count(*) OVER (PARTITION BY t.card_id ORDER BY t.ts
                      RANGE BETWEEN INTERVAL '10 minutes' PRECEDING AND CURRENT ROW) AS card_payments_10m,
       t.is_fraud, t.ts
FROM transactions_history t JOIN cards c ON c.card_id = t.card_id JOIN customers u ON u.customer_id = c.customer_id";

const PREDICT_ARGS: &str = "amount_ratio => amount_ratio, amount, abroad, online, new_device, hour, card_payments_10m";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_fraud_models_reach_the_targets_and_report_true_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let engine = demo_engine(dir.path()).await;
    let mut session = engine.session();
    for (name, options) in [
        ("fraud_lr", "model_type = 'logistic_reg', class_weight = 'balanced'"),
        ("fraud_gbt", "model_type = 'boosted_tree_classifier', num_trees = 100, max_depth = 5"),
    ] {
        let create = format!(
            "CREATE MODEL {name} WITH ({options}, label = 'is_fraud', split_column = 'ts', test_fraction = 0.2, \
             gap = '30 days') AS {FEATURES}"
        );
        session.run_collect(&create).await.unwrap_or_else(|e| panic!("{create}: {e}"));
        let info = rows(
            &mut session,
            &format!(
                "SELECT roc_auc, average_precision, test_from, test_rows, test_positives, train_rows, log_loss, \
                 lake_versions, features FROM watershed.models WHERE name = '{name}'"
            ),
        )
        .await;
        assert_eq!(info.num_rows(), 1);
        let (auc, ap) = (f64s(&info, 0)[0].unwrap(), f64s(&info, 1)[0].unwrap());
        let test_from = info.column(2).as_string::<i32>().value(0).to_string();
        let (test_rows, test_positives, train_rows) =
            (i64s(&info, 3)[0].unwrap(), i64s(&info, 4)[0].unwrap(), i64s(&info, 5)[0].unwrap());
        eprintln!(
            "{name}: test ROC AUC {auc:.4}, average precision {ap:.4}, log loss {:.4} ({test_rows} test rows, \
             {test_positives} frauds; {train_rows} training rows; test from {test_from})",
            f64s(&info, 6)[0].unwrap()
        );
        // The Delta versions read (each table was written by the generator's commits).
        let lake_versions = info.column(7).as_string::<i32>().value(0).to_string();
        for table in ["cards@", "customers@", "transactions_history@"] {
            assert!(lake_versions.contains(table), "{lake_versions}");
        }
        assert_eq!(
            info.column(8)
                .as_string::<i32>()
                .value(0)
                .split(", ")
                .map(|f| f.split(' ').next().unwrap())
                .collect::<Vec<_>>(),
            ["amount_ratio", "amount", "abroad", "online", "new_device", "hour", "card_payments_10m"]
        );
        // The same predictions through predict(), and the metrics computed from them here.
        let scored = rows(
            &mut session,
            &format!(
                "SELECT predict('{name}', {PREDICT_ARGS}) AS p, is_fraud FROM ({FEATURES}) \
                 WHERE ts >= CAST('{test_from}' AS TIMESTAMP WITH TIME ZONE)"
            ),
        )
        .await;
        assert_eq!(scored.num_rows() as i64, test_rows);
        let scores: Vec<f64> = f64s(&scored, 0).into_iter().map(|p| p.expect("a score")).collect();
        let labels: Vec<bool> = scored.column(1).as_boolean().iter().map(|l| l.expect("a label")).collect();
        assert_eq!(labels.iter().filter(|l| **l).count() as i64, test_positives);
        assert!((reference_auc(&scores, &labels) - auc).abs() < 1e-9, "AUC {auc} vs reference");
        assert!((reference_ap(&scores, &labels) - ap).abs() < 1e-9, "AP {ap} vs reference");
        assert!(auc >= 0.85, "{name}: ROC AUC {auc} below the 0.85 target");
        assert!(ap >= 0.6, "{name}: average precision {ap} below the 0.6 target");
    }
}

async fn scores(session: &mut Session, model: &str) -> Vec<f64> {
    let batch =
        rows(session, &format!("SELECT predict('{model}', x => x, flag => flag) FROM t ORDER BY x, flag")).await;
    f64s(&batch, 0).into_iter().map(|s| s.expect("a score")).collect()
}

const TRAINING_TABLE: &str = "CREATE TABLE t AS SELECT CAST(v AS DOUBLE) / 10 AS x, v % 3 = 0 AS flag,
    (v % 7 < 3 AND v > 20) OR v % 11 = 0 AS y, CAST(v AS BIGINT) AS n FROM generate_series(1, 400) AS s(v)";

fn model_files(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("data").join("catalog").join("models"))
        .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_survive_a_restart_and_switching_back_restores_scores() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = {
        let engine = Engine::open(Config::rooted_at(dir.path())).await.unwrap();
        let mut session = engine.session();
        session.run_collect(TRAINING_TABLE).await.unwrap();
        session
            .run_collect(
                "CREATE MODEL m WITH (model_type = 'boosted_tree_classifier', label = 'y', split_column = 'n', \
                 num_trees = 20, max_depth = 3) AS SELECT x, flag, y, n FROM t",
            )
            .await
            .unwrap();
        let first = scores(&mut session, "m").await;
        session
            .run_collect("CREATE MODEL m WITH (model_type = 'logistic_reg', label = 'y') AS SELECT x, flag, y FROM t")
            .await
            .unwrap();
        let second = scores(&mut session, "m").await;
        assert_ne!(first, second, "version 2 is another model");
        let versions =
            rows(&mut session, "SELECT version, active, model_type FROM watershed.models ORDER BY version").await;
        assert_eq!(i64s(&versions, 0), vec![Some(1), Some(2)]);
        assert_eq!(versions.column(1).as_boolean().iter().collect::<Vec<_>>(), vec![Some(false), Some(true)]);
        assert_eq!(model_files(dir.path()), vec!["m.toml", "m.v1.model", "m.v2.model"]);
        (first, second)
    };
    // A new engine on the same directories: the same models, scoring exactly alike.
    let engine = Engine::open(Config::rooted_at(dir.path())).await.unwrap();
    let mut session = engine.session();
    assert_eq!(scores(&mut session, "m").await, second, "version 2 after a restart");
    session.run_collect("ALTER MODEL m SET ACTIVE VERSION 1").await.unwrap();
    assert_eq!(scores(&mut session, "m").await, first, "switching back restores version 1's scores");
    let (code, message) = error_code(&mut session, "ALTER MODEL m SET ACTIVE VERSION 3").await;
    assert_eq!(code, sqlstate::UNDEFINED_OBJECT, "{message}");
    drop(session);
    drop(engine);
    let engine = Engine::open(Config::rooted_at(dir.path())).await.unwrap();
    let mut session = engine.session();
    assert_eq!(scores(&mut session, "m").await, first, "the active version is kept across a restart");
    session.run_collect("DROP MODEL m").await.unwrap();
    assert!(model_files(dir.path()).is_empty(), "{:?}", model_files(dir.path()));
    assert_eq!(error_code(&mut session, "DROP MODEL m").await.0, sqlstate::UNDEFINED_OBJECT);
    session.run_collect("DROP MODEL IF EXISTS m").await.unwrap();
    assert_eq!(
        error_code(&mut session, "SELECT predict('m', x => x, flag => flag) FROM t").await.0,
        sqlstate::UNDEFINED_OBJECT
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_their_sqlstate_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(Config::rooted_at(dir.path())).await.unwrap();
    let mut session = engine.session();
    session.run_collect(TRAINING_TABLE).await.unwrap();
    let create = |options: &str, query: &str| format!("CREATE MODEL bad WITH ({options}) AS {query}");
    let lr = "model_type = 'logistic_reg', label = 'y'";
    for (sql, code, words) in [
        (create(lr, "SELECT x, y FROM t WHERE x > 1000"), sqlstate::DATA_EXCEPTION, "training set is empty"),
        (create(lr, "SELECT x, x > 1000 AS y FROM t"), sqlstate::DATA_EXCEPTION, "one class"),
        (
            create(&format!("{lr}, split_column = 'n', test_fraction = 0.5, gap = '1000'"), "SELECT x, y, n FROM t"),
            sqlstate::DATA_EXCEPTION,
            "training set is empty",
        ),
        (create(lr, "SELECT x, CAST(n AS TEXT) AS s, y FROM t"), sqlstate::FEATURE_NOT_SUPPORTED, "feature \"s\""),
        (create(lr, "SELECT x FROM t"), sqlstate::UNDEFINED_COLUMN, "label column \"y\""),
        (create(lr, "SELECT x, CAST(n AS DOUBLE) AS y FROM t"), sqlstate::DATA_EXCEPTION, "0 or 1"),
        (
            create("model_type = 'svm', label = 'y'", "SELECT x, y FROM t"),
            sqlstate::INVALID_PARAMETER_VALUE,
            "model_type",
        ),
        (create(&format!("{lr}, depth = 3"), "SELECT x, y FROM t"), sqlstate::INVALID_PARAMETER_VALUE, "no option"),
        (
            create(&format!("{lr}, gap = '1 day'"), "SELECT x, y FROM t"),
            sqlstate::INVALID_PARAMETER_VALUE,
            "split_column",
        ),
        (create(lr, "SELECT x, y FROM nowhere"), sqlstate::UNDEFINED_TABLE, "nowhere"),
    ] {
        let (got, message) = error_code(&mut session, &sql).await;
        assert_eq!(got, code, "{sql}: {message}");
        assert!(message.contains(words), "{sql}: {message}");
    }
    assert!(model_files(dir.path()).is_empty(), "nothing written: {:?}", model_files(dir.path()));
    assert_eq!(i64s(&rows(&mut session, "SELECT count(*) FROM watershed.models").await, 0), vec![Some(0)]);

    session
        .run_collect("CREATE MODEL m WITH (model_type = 'logistic_reg', label = 'y') AS SELECT x, flag, y FROM t")
        .await
        .unwrap();
    for (sql, code, words) in [
        ("SELECT predict('nope', x => x) FROM t", sqlstate::UNDEFINED_OBJECT, "model \"nope\" does not exist"),
        ("SELECT predict('m', x => x) FROM t", sqlstate::UNDEFINED_COLUMN, "needs feature \"flag\""),
        ("SELECT predict('m', x, flag, n) FROM t", sqlstate::UNDEFINED_COLUMN, "\"n\" is not a feature"),
        ("SELECT predict('m', x => x, flag => n) FROM t", sqlstate::DATATYPE_MISMATCH, "feature \"flag\""),
        ("SELECT predict('m', x => 'a', flag) FROM t", sqlstate::DATATYPE_MISMATCH, "feature \"x\""),
        ("SELECT predict('m', x => x * 2 + 1, 3 * x) FROM t", sqlstate::SYNTAX_ERROR, "needs a name"),
        ("SELECT predict(x, x => x) FROM t", sqlstate::INVALID_PARAMETER_VALUE, "text constant"),
    ] {
        let (got, message) = error_code(&mut session, sql).await;
        assert_eq!(got, code, "{sql}: {message}");
        assert!(message.contains(words), "{sql}: {message}");
    }
    // The same scores from both spellings of the features, whatever their order.
    let named = rows(&mut session, "SELECT predict('m', flag => flag, x => x) FROM t ORDER BY n").await;
    let structs = rows(&mut session, "SELECT predict('m', named_struct('x', x, 'flag', flag)) FROM t ORDER BY n").await;
    assert_eq!(f64s(&named, 0), f64s(&structs, 0));
    assert!(f64s(&named, 0).iter().all(|p| p.is_some_and(|p| (0.0..=1.0).contains(&p))));

    // Over a source, with a velocity feature computed by a window function (the README's
    // live query): the same scores as the table's rows with the same values.
    session
        .run_collect(
            "CREATE SOURCE live (x DOUBLE, flag BOOLEAN, ts TIMESTAMPTZ) WITH (connector = 'ingest');
             INSERT INTO live SELECT x, flag, now() FROM t WHERE n <= 50",
        )
        .await
        .unwrap();
    let live = rows(
        &mut session,
        "SELECT predict('m', x, flag) AS p, count(*) OVER (PARTITION BY flag ORDER BY ts
                RANGE BETWEEN INTERVAL '10 minutes' PRECEDING AND CURRENT ROW) AS recent
         FROM live ORDER BY x",
    )
    .await;
    let table = rows(&mut session, "SELECT predict('m', x, flag) FROM t WHERE n <= 50 ORDER BY x").await;
    assert_eq!(f64s(&live, 0), f64s(&table, 0));
    assert!(i64s(&live, 1).iter().all(|c| c.is_some_and(|c| c >= 1)));

    // In a continuous view: each new row of the source is scored as it arrives.
    session
        .run_collect("CREATE MATERIALIZED VIEW scored AS SELECT x, predict('m', x, flag) AS p FROM live")
        .await
        .unwrap();
    session.run_collect("INSERT INTO live SELECT x, flag, now() FROM t WHERE n > 50 AND n <= 80").await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let scored = loop {
        let scored = rows(&mut session, "SELECT p FROM scored ORDER BY x").await;
        if scored.num_rows() >= 80 {
            break scored;
        }
        assert!(std::time::Instant::now() < deadline, "the view scored {} of 80 rows", scored.num_rows());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let expected = rows(&mut session, "SELECT predict('m', x, flag) FROM t WHERE n <= 80 ORDER BY x").await;
    assert_eq!(f64s(&scored, 0), f64s(&expected, 0));
}

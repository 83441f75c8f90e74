//! CREATE MODEL from a session: the model's query is planned with this session's planners
//! (time travel, window functions, pg functions), its rows are collected into a training
//! set within model::TRAIN_VALUES_MAX, training runs on a blocking thread, and only a
//! trained, evaluated model is written (model/ says how). A cancel or statement_timeout
//! drops the statement before anything is written.

use std::collections::BTreeMap;

use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast as sqlast;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{Kind, Session};
use crate::error::{WsError, WsResult};
use crate::model::{Dataset, Layout, TrainOptions, VersionInfo};
use crate::sql::WsStatement;
use crate::sql::model::ModelStatement;

/// The statement's kind; CREATE MODEL's options are checked here, before anything runs.
pub(super) fn classify(statement: ModelStatement) -> WsResult<Kind> {
    Ok(match statement {
        ModelStatement::Create { name, options, query } => {
            crate::model::check_name(&name)?;
            TrainOptions::parse(&options)?;
            Kind::CreateModel { name, options, query }
        }
        ModelStatement::Drop { names, if_exists } => Kind::DropModel { names, if_exists },
        ModelStatement::SetActive { name, version } => Kind::SetModelVersion { name, version },
    })
}

impl Session {
    /// Trains a new version of `name` on `query`'s rows and activates it.
    pub(super) async fn create_model(
        &mut self,
        name: &str,
        options: &BTreeMap<String, String>,
        query: &str,
        cancel: &CancellationToken,
    ) -> WsResult<u32> {
        let started = std::time::Instant::now();
        let trained_at_us = crate::stream::now_ms() * 1_000;
        let train_options = TrainOptions::parse(options)?;
        let (model_type, label) = (train_options.model_type.sql().to_string(), train_options.label.clone());
        let statements = crate::sql::parse(query)?;
        let [WsStatement::Sql(statement @ Statement::Statement(inner))] = statements.as_slice() else {
            return Err(WsError::syntax("a model's body is one query"));
        };
        if !matches!(inner.as_ref(), sqlast::Statement::Query(_)) {
            return Err(WsError::syntax("a model's body is a query (SELECT ...)"));
        }
        let plan = self.plan_query(statement.clone()).await?;
        let layout = Layout::new(plan.schema().as_arrow(), &train_options)?;
        // The Delta versions read: the tables' current versions when the query is planned
        // (a relation pinned with VERSION AS OF reports the pinned one through its name).
        let mut lake_versions = BTreeMap::new();
        for table in super::continuous::relations_read(&plan) {
            if let Some(lake) = self.engine.catalog().lake_table(&table).await {
                lake_versions.insert(table, lake.version().await?);
            }
        }
        let mut stream = super::cancellable(self.stream(plan).await?, cancel.clone(), self.deadline);
        let mut data = Dataset::default();
        while let Some(batch) = stream.next().await {
            layout.append(&mut data, &batch?)?;
        }
        drop(stream);
        let (learned, evaluation, layout) = tokio::task::spawn_blocking(move || {
            crate::model::train(&data, &layout, &train_options)
                .map(|(learned, evaluation)| (learned, evaluation, layout))
        })
        .await
        .map_err(|error| WsError::internal(format!("training task: {error}")))??;
        let info = VersionInfo {
            version: 0,
            model_type,
            trained_at_us,
            training_ms: started.elapsed().as_millis() as u64,
            query: query.to_string(),
            options: options.clone(),
            lake_versions,
            label,
            features: layout.features.clone(),
            evaluation,
            file: String::new(),
        };
        if cancel.is_cancelled() {
            return Err(WsError::canceled());
        }
        let version = self.engine.catalog().models().add_version(name, info, learned).await?;
        tracing::info!(model = name, version, "model trained");
        Ok(version)
    }
}

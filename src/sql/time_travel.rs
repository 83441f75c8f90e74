//! Time travel: `t VERSION AS OF n` and `t TIMESTAMP AS OF '<ts>'` on lake tables.
//!
//! Loading an old Delta snapshot is async and relation planning is not, so the session
//! first collects the versioned references of a statement ([`time_travel_refs`]), loads a
//! pinned provider for each and hands them to this session's [`TimeTravelPlanner`]; the
//! planner then swaps the versioned relation for a scan of the pinned provider.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use datafusion::datasource::{TableProvider, provider_as_source};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::logical_expr::planner::{PlannedRelation, RelationPlanner, RelationPlannerContext, RelationPlanning};
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{
    Expr, ObjectName, TableFactor, TableVersion, Value, ValueWithSpan, Visit, Visitor,
};

use crate::error::{WsError, WsResult, sqlstate};

/// Which snapshot of a table a query asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VersionSpec {
    Version(i64),
    Timestamp(DateTime<Utc>),
}

/// A pinned provider is found by table name (as normalized by the planner) and version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PinKey {
    pub table: String,
    pub version: VersionSpec,
}

/// The table name a relation names, normalized the way PostgreSQL folds identifiers.
pub fn normalized_table_name(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|part| part.as_ident())
        .map(|ident| match ident.quote_style {
            Some(_) => ident.value.clone(),
            None => ident.value.to_lowercase(),
        })
        .unwrap_or_default()
}

/// True when a relation name can only mean a table of our one schema: bare, or
/// qualified with `public` / `watershed.public`.
pub fn names_our_schema(name: &ObjectName) -> bool {
    let parts: Vec<String> =
        name.0.iter().filter_map(|part| part.as_ident()).map(|ident| ident.value.to_lowercase()).collect();
    match parts.as_slice() {
        [_] => true,
        [schema, _] => schema == crate::catalog::SCHEMA_NAME,
        [catalog, schema, _] => catalog == crate::catalog::CATALOG_NAME && schema == crate::catalog::SCHEMA_NAME,
        _ => false,
    }
}

fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%#z"] {
        if let Ok(at) = DateTime::parse_from_str(text, format) {
            return Some(at.with_timezone(&Utc));
        }
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(at) = NaiveDateTime::parse_from_str(text, format) {
            return Some(at.and_utc());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().and_then(|date| date.and_hms_opt(0, 0, 0)).map(|at| at.and_utc())
}

fn string_of(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Value(ValueWithSpan { value: Value::SingleQuotedString(text), .. }) => Some(text),
        Expr::TypedString(typed) => match &typed.value.value {
            Value::SingleQuotedString(text) => Some(text),
            _ => None,
        },
        Expr::Cast { expr, .. } | Expr::Nested(expr) => string_of(expr),
        _ => None,
    }
}

fn version_spec(version: &TableVersion) -> WsResult<VersionSpec> {
    match version {
        TableVersion::VersionAsOf(Expr::Value(ValueWithSpan { value: Value::Number(n, _), .. })) => n
            .parse::<i64>()
            .map(VersionSpec::Version)
            .map_err(|_| WsError::new(sqlstate::INVALID_PARAMETER_VALUE, format!("invalid table version {n}"))),
        TableVersion::TimestampAsOf(expr) | TableVersion::ForSystemTimeAsOf(expr) => {
            let text = string_of(expr).ok_or_else(|| {
                WsError::unsupported("TIMESTAMP AS OF takes a timestamp literal, e.g. '2026-01-01 12:00:00+00'")
            })?;
            parse_timestamp(text).map(VersionSpec::Timestamp).ok_or_else(|| {
                WsError::new(
                    sqlstate::INVALID_DATETIME_FORMAT,
                    format!("invalid timestamp {text:?} in TIMESTAMP AS OF"),
                )
            })
        }
        other => Err(WsError::unsupported(format!("table version clause {other} is not supported"))),
    }
}

struct Collector {
    found: Vec<(ObjectName, VersionSpec)>,
}

impl Visitor for Collector {
    type Break = WsError;

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<WsError> {
        if let TableFactor::Table { name, version: Some(version), .. } = factor {
            match version_spec(version) {
                Ok(spec) => self.found.push((name.clone(), spec)),
                Err(error) => return ControlFlow::Break(error),
            }
        }
        ControlFlow::Continue(())
    }
}

/// The versioned relations of a statement, in order of appearance.
pub fn time_travel_refs(statement: &Statement) -> WsResult<Vec<(ObjectName, VersionSpec)>> {
    let mut collector = Collector { found: Vec::new() };
    let flow = match statement {
        Statement::Statement(inner) => inner.visit(&mut collector),
        Statement::Explain(explain) => return time_travel_refs(&explain.statement),
        _ => ControlFlow::Continue(()),
    };
    match flow {
        ControlFlow::Break(error) => Err(error),
        ControlFlow::Continue(()) => Ok(collector.found),
    }
}

/// Plans versioned relations from the providers pinned for the current statement.
#[derive(Debug, Default)]
pub struct TimeTravelPlanner {
    pinned: Mutex<HashMap<PinKey, Arc<dyn TableProvider>>>,
}

impl TimeTravelPlanner {
    /// Replaces the pinned providers with those of the next statement.
    pub fn pin(&self, providers: HashMap<PinKey, Arc<dyn TableProvider>>) {
        *self.pinned.lock().expect("pin lock poisoned") = providers;
    }
}

impl RelationPlanner for TimeTravelPlanner {
    fn plan_relation(
        &self,
        relation: TableFactor,
        context: &mut dyn RelationPlannerContext,
    ) -> DfResult<RelationPlanning> {
        let TableFactor::Table { name, alias, version: Some(version), .. } = &relation else {
            return Ok(RelationPlanning::Original(Box::new(relation)));
        };
        let spec = version_spec(version).map_err(|error| DataFusionError::External(Box::new(error)))?;
        let key = PinKey { table: normalized_table_name(name), version: spec };
        let provider = self.pinned.lock().expect("pin lock poisoned").get(&key).cloned();
        let Some(provider) = provider else {
            return Err(DataFusionError::External(Box::new(WsError::unsupported(format!(
                "time travel needs a Delta lake table; {name} is not one"
            )))));
        };
        let reference = context.object_name_to_table_reference(name.clone())?;
        // The scan gets a name of its own per version: DataFusion compares table scans by
        // name, and two versions of one table must never be taken for the same relation
        // (common subexpression elimination would merge them). Without an alias, the
        // relation is still known by the table's name.
        let pinned_name = match &key.version {
            VersionSpec::Version(v) => format!("{}@v{v}", key.table),
            VersionSpec::Timestamp(at) => format!("{}@{}", key.table, at.to_rfc3339()),
        };
        let mut builder = LogicalPlanBuilder::scan(pinned_name, provider_as_source(provider), None)?;
        if alias.is_none() {
            builder = builder.alias(reference)?;
        }
        let plan = builder.build()?;
        Ok(RelationPlanning::Planned(Box::new(PlannedRelation::new(plan, alias.clone()))))
    }
}

//! DDL on lake tables: managed Delta tables (`CREATE TABLE`, `CREATE TABLE AS`) and
//! external tables (`CREATE EXTERNAL TABLE`). A managed table is created on disk first,
//! filled (for CTAS), and only then entered in the catalog, so a failed CTAS leaves
//! nothing behind and a catalog entry always points at a complete table.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::datasource::{TableProvider as _, provider_as_source};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{DdlStatement, LogicalPlan, LogicalPlanBuilder, cast, col};
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{self as sqlast, Expr as SqlExpr, HiveDistributionStyle};
use deltalake::DeltaTable;
use deltalake::kernel::StructType;
use deltalake::kernel::engine::arrow_conversion::TryFromArrow;

use super::Session;
use crate::catalog::{Format, IndexColumn, IndexDef, TableDef};
use crate::error::{WsError, WsResult, sqlstate};
use crate::lake::{LakeTable, location_url};

/// Takes the partition columns out of a `CREATE TABLE ... PARTITIONED BY (a, b)` (or
/// PostgreSQL's `PARTITION BY (a, b)`), in order; empty for any other statement. They
/// are removed from the AST because DataFusion's planner refuses them: partitioning is
/// ours to apply when the Delta table is created.
pub fn take_partition_columns(statement: &mut Statement) -> WsResult<Vec<String>> {
    let Statement::Statement(inner) = statement else {
        return Ok(Vec::new());
    };
    let sqlast::Statement::CreateTable(create) = inner.as_mut() else {
        return Ok(Vec::new());
    };
    let mut columns = Vec::new();
    let hive = std::mem::replace(&mut create.hive_distribution, HiveDistributionStyle::NONE);
    if let HiveDistributionStyle::PARTITIONED { columns: defs } = &hive {
        columns.extend(defs.iter().map(|def| fold(&def.name)));
    }
    if let Some(expr) = create.partition_by.take() {
        let exprs: Vec<&SqlExpr> = match expr.as_ref() {
            SqlExpr::Tuple(items) => items.iter().collect(),
            SqlExpr::Nested(item) => vec![item.as_ref()],
            item => vec![item],
        };
        for item in exprs {
            match item {
                SqlExpr::Identifier(ident) => columns.push(fold(ident)),
                other => {
                    return Err(WsError::unsupported(format!(
                        "partitioning by expression {other} is not supported; name columns"
                    )));
                }
            }
        }
    }
    Ok(columns)
}

pub(super) fn fold(ident: &sqlast::Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// The type a column gets in a Delta table: Delta has no unsigned integers, one string
/// type, and microsecond timestamps.
fn delta_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::UInt8 => DataType::Int16,
        DataType::UInt16 => DataType::Int32,
        DataType::UInt32 => DataType::Int64,
        DataType::UInt64 => DataType::Decimal128(20, 0),
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        DataType::Float16 => DataType::Float32,
        DataType::Date64 => DataType::Date32,
        DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Microsecond, tz.as_ref().map(|_| "UTC".into())),
        DataType::Null => DataType::Utf8,
        other => other.clone(),
    }
}

/// What a CREATE did.
pub enum Created {
    /// `IF NOT EXISTS` found the name taken: nothing was done (PostgreSQL's NOTICE says so).
    Skipped { name: String },
    /// Created; a CTAS also says how many rows it wrote.
    Created { rows: Option<usize> },
}

/// Creates a managed Delta table; for CTAS fills it and returns the row count.
pub async fn create_managed_table(session: &Session, plan: LogicalPlan, partition_by: &[String]) -> WsResult<Created> {
    let LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) = plan else {
        unreachable!("classified as CREATE TABLE");
    };
    if create.temporary {
        return Err(WsError::unsupported("temporary tables are not supported"));
    }
    if create.or_replace {
        return Err(WsError::unsupported("CREATE OR REPLACE TABLE is not supported"));
    }
    let name = create.name.table().to_string();
    let catalog = session.engine().catalog();
    // Before the table is filled; adopt_lake checks again under the DDL lock.
    if !catalog.claim(&name, true, create.if_not_exists)? {
        return Ok(Created::Skipped { name });
    }
    let input = create.input.as_ref().clone();
    let has_rows = !matches!(&input, LogicalPlan::EmptyRelation(empty) if !empty.produce_one_row);
    let source_schema = input.schema().as_arrow().clone();
    let fields: Vec<Field> =
        source_schema.fields().iter().map(|f| Field::new(f.name(), delta_type(f.data_type()), true)).collect();
    let schema = Schema::new(fields);
    for column in partition_by {
        if schema.field_with_name(column).is_err() {
            return Err(WsError::new(
                sqlstate::UNDEFINED_COLUMN,
                format!("partition column \"{column}\" is not a column of \"{name}\""),
            ));
        }
    }
    let (_, rows) = new_managed_table(session, &name, &schema, partition_by, has_rows.then_some(input)).await?;
    Ok(Created::Created { rows: has_rows.then_some(rows) })
}

/// Creates, fills (with `input`) and registers a managed Delta table; nothing is left
/// behind on failure.
async fn new_managed_table(
    session: &Session,
    name: &str,
    schema: &Schema,
    partition_by: &[String],
    input: Option<LogicalPlan>,
) -> WsResult<(Arc<LakeTable>, usize)> {
    let catalog = session.engine().catalog();
    let location = catalog.managed_location(name).await?;
    let url = location_url(&location, catalog.data_dir())?;
    let path =
        url.to_file_path().map_err(|()| WsError::internal(format!("managed location {url} is not a local path")))?;
    if path.join("_delta_log").exists() {
        return Err(WsError::new(
            sqlstate::DUPLICATE_TABLE,
            format!(
                "{} already holds a Delta table; remove it or register it with CREATE EXTERNAL TABLE",
                path.display()
            ),
        ));
    }
    std::fs::create_dir_all(&path)?;
    let result = fill_new_table(session, name, url, schema, partition_by, input).await;
    match result {
        Ok((lake, rows)) => {
            let def = TableDef {
                name: name.to_string(),
                format: Format::Delta,
                location,
                managed: true,
                options: BTreeMap::new(),
                indexes: Vec::new(),
            };
            if let Err(error) = catalog.adopt_lake(def, lake.clone()).await {
                remove_quietly(&path);
                return Err(error);
            }
            Ok((lake, rows))
        }
        Err(error) => {
            remove_quietly(&path);
            Err(error)
        }
    }
}

/// A sink's schema as Delta columns (nullable, Delta's types).
fn delta_schema(schema: &Schema) -> Schema {
    Schema::new(
        schema.fields().iter().map(|f| Field::new(f.name(), delta_type(f.data_type()), true)).collect::<Vec<_>>(),
    )
}

/// The lake table a Delta sink writes to by name: an existing one, or a new managed
/// table with the sink's columns.
pub async fn lake_table_for_sink(session: &Session, table: &str, schema: &Schema) -> WsResult<Arc<LakeTable>> {
    let catalog = session.engine().catalog();
    if let Some(lake) = catalog.lake_table(table).await {
        return Ok(lake);
    }
    if catalog.holder(table).is_some() {
        return Err(WsError::new(sqlstate::WRONG_OBJECT_TYPE, format!("\"{table}\" is not a Delta table")));
    }
    Ok(new_managed_table(session, table, &delta_schema(schema), &[], None).await?.0)
}

/// The Delta table at `location` a sink writes to (created with the sink's columns when
/// there is none yet). It is not registered in the catalog.
pub async fn delta_at_location(
    session: &Session,
    sink: &str,
    location: &str,
    schema: &Schema,
) -> WsResult<Arc<LakeTable>> {
    let catalog = session.engine().catalog();
    let url = location_url(location, catalog.data_dir())?;
    let staleness_ms = session.engine().config().limits.lake_staleness_ms;
    if let Ok(lake) = LakeTable::open(sink, url.clone(), HashMap::new(), staleness_ms).await {
        return Ok(Arc::new(lake));
    }
    if let Ok(path) = url.to_file_path() {
        std::fs::create_dir_all(&path)?;
    }
    Ok(fill_new_table(session, sink, url, &delta_schema(schema), &[], None).await?.0)
}

fn remove_quietly(path: &std::path::Path) {
    if let Err(error) = std::fs::remove_dir_all(path) {
        tracing::warn!(path = %path.display(), %error, "could not remove a half-created table");
    }
}

async fn fill_new_table(
    session: &Session,
    name: &str,
    url: url::Url,
    schema: &Schema,
    partition_by: &[String],
    input: Option<LogicalPlan>,
) -> WsResult<(Arc<LakeTable>, usize)> {
    let structure = StructType::try_from_arrow(schema)
        .map_err(|error| WsError::unsupported(format!("column type not storable in Delta: {error}")))?;
    let table = DeltaTable::try_from_url(url.clone()).await?;
    let table = table
        .create()
        .with_table_name(name)
        .with_columns(structure.fields().cloned())
        .with_partition_columns(partition_by.to_vec())
        .await?;
    let staleness_ms = session.engine().config().limits.lake_staleness_ms;
    let lake = Arc::new(LakeTable::from_table(name, url, table, staleness_ms).await?);
    let Some(input) = input else {
        return Ok((lake, 0));
    };
    let casts = schema
        .fields()
        .iter()
        .zip(input.schema().columns())
        .map(|(field, column)| cast(col(column), field.data_type().clone()).alias(field.name()))
        .collect::<Vec<_>>();
    let projected = LogicalPlanBuilder::from(input).project(casts)?.build()?;
    let insert = LogicalPlanBuilder::insert_into(projected, name, provider_as_source(lake.clone()), InsertOp::Append)?
        .build()?;
    let rows = session.run_to_count(insert, &tokio_util::sync::CancellationToken::new()).await?;
    lake.refresh().await?;
    Ok((lake, rows))
}

/// Registers an existing table (Delta, Parquet, CSV, JSON) and persists the declaration.
pub async fn create_external_table(session: &Session, plan: &LogicalPlan) -> WsResult<Created> {
    let LogicalPlan::Ddl(DdlStatement::CreateExternalTable(create)) = plan else {
        unreachable!("classified as CREATE EXTERNAL TABLE");
    };
    let name = create.name.table().to_string();
    let catalog = session.engine().catalog();
    if !catalog.claim(&name, true, create.if_not_exists)? {
        return Ok(Created::Skipped { name });
    }
    if !create.table_partition_cols.is_empty() {
        return Err(WsError::unsupported(
            "PARTITIONED BY on external tables is not supported; the Delta log or the files carry partitioning",
        ));
    }
    let def = TableDef {
        name,
        format: Format::parse(&create.file_type)?,
        location: match create.locations.as_slice() {
            [one] => one.clone(),
            many => {
                return Err(WsError::unsupported(format!("an external table has one location, got {}", many.len())));
            }
        },
        managed: false,
        options: create.options.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        indexes: Vec::new(),
    };
    catalog.create(def, &session.context().state()).await?;
    Ok(Created::Created { rows: None })
}

/// `CREATE INDEX` and `DROP INDEX` on Delta tables (catalog/indexes.rs says what an
/// index is here); None for any other statement. What an index cannot mean here is
/// refused with 0A000: UNIQUE (nothing would check later writes), partial and
/// expression indexes, INCLUDE, operator classes, storage parameters, methods other
/// than btree.
pub(super) fn classify_index(statement: &Statement) -> WsResult<Option<super::Kind>> {
    let Statement::Statement(inner) = statement else {
        return Ok(None);
    };
    match inner.as_ref() {
        sqlast::Statement::CreateIndex(create) => {
            let refuse = |what: &str| Err(WsError::unsupported(format!("{what} is not supported")));
            if create.unique {
                return Err(WsError::unsupported(
                    "UNIQUE indexes are not supported: nothing would check uniqueness on later writes",
                ));
            }
            if create.predicate.is_some() {
                return refuse("a partial index (CREATE INDEX ... WHERE)");
            }
            if !create.include.is_empty() {
                return refuse("CREATE INDEX ... INCLUDE");
            }
            if !create.with.is_empty() || !create.index_options.is_empty() || !create.alter_options.is_empty() {
                return refuse("an index with options");
            }
            if create.nulls_distinct.is_some() {
                return refuse("NULLS [NOT] DISTINCT (it qualifies UNIQUE indexes)");
            }
            match &create.using {
                None | Some(sqlast::IndexType::BTree) => {}
                Some(other) => return refuse(&format!("index method {other}")),
            }
            if !crate::sql::names_our_schema(&create.table_name) {
                return Err(WsError::new(
                    sqlstate::UNDEFINED_TABLE,
                    format!("relation \"{}\" does not exist", create.table_name),
                ));
            }
            let table = crate::sql::normalized_table_name(&create.table_name);
            let mut columns = Vec::with_capacity(create.columns.len());
            for column in &create.columns {
                if column.operator_class.is_some() {
                    return refuse("an index operator class");
                }
                let name = match &column.column.expr {
                    SqlExpr::Identifier(ident) => fold(ident),
                    other => return refuse(&format!("an index on the expression {other}")),
                };
                let descending = column.column.options.asc == Some(false);
                columns.push(IndexColumn { name, descending });
            }
            if columns.is_empty() {
                return Err(WsError::syntax("an index needs at least one column"));
            }
            let name = match &create.name {
                Some(name) => crate::sql::normalized_table_name(name),
                // PostgreSQL's choice of name for an unnamed index.
                None => {
                    let parts: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
                    format!("{table}_{}_idx", parts.join("_"))
                }
            };
            let def = IndexDef { name, columns };
            Ok(Some(super::Kind::CreateIndex { table, def, if_not_exists: create.if_not_exists }))
        }
        sqlast::Statement::Drop { object_type: sqlast::ObjectType::Index, if_exists, names, .. } => {
            let names = names.iter().map(crate::sql::normalized_table_name).collect();
            Ok(Some(super::Kind::DropIndex { names, if_exists: *if_exists }))
        }
        _ => Ok(None),
    }
}

/// One change of `ALTER TABLE`.
#[derive(Debug, Clone)]
pub enum AlterChange {
    /// `ADD [COLUMN] [IF NOT EXISTS] name type`: a nullable column, NULL in existing rows.
    AddColumn { column: sqlast::ColumnDef, if_not_exists: bool },
    /// `RENAME TO new`.
    RenameTo(String),
}

/// `ALTER TABLE [IF EXISTS] t <one change>`. Renaming or dropping a column needs Delta's
/// column mapping, which deltalake 1.1 does not write: refused with 0A000, as are changes
/// of type, defaults and constraints.
pub(super) fn classify_alter(statement: &Statement) -> WsResult<Option<super::Kind>> {
    let Statement::Statement(inner) = statement else {
        return Ok(None);
    };
    let sqlast::Statement::AlterTable(alter) = inner.as_ref() else {
        return Ok(None);
    };
    if !crate::sql::names_our_schema(&alter.name) {
        return Err(WsError::new(sqlstate::UNDEFINED_TABLE, format!("relation \"{}\" does not exist", alter.name)));
    }
    let table = crate::sql::normalized_table_name(&alter.name);
    let [operation] = alter.operations.as_slice() else {
        return Err(WsError::unsupported(
            "ALTER TABLE with more than one change is not supported yet: one per statement",
        ));
    };
    let change = match operation {
        sqlast::AlterTableOperation::AddColumn { if_not_exists, column_def, column_position: None, .. } => {
            AlterChange::AddColumn { column: column_def.clone(), if_not_exists: *if_not_exists }
        }
        sqlast::AlterTableOperation::RenameTable { table_name } => {
            let (sqlast::RenameTableNameKind::As(new) | sqlast::RenameTableNameKind::To(new)) = table_name;
            if !crate::sql::names_our_schema(new) {
                return Err(WsError::unsupported("a table cannot move to another schema"));
            }
            AlterChange::RenameTo(crate::sql::normalized_table_name(new))
        }
        sqlast::AlterTableOperation::RenameColumn { .. } | sqlast::AlterTableOperation::DropColumn { .. } => {
            return Err(WsError::unsupported(
                "renaming or dropping a column needs Delta column mapping, which this server does not write yet",
            ));
        }
        other => return Err(WsError::unsupported(format!("ALTER TABLE ... {other} is not supported yet"))),
    };
    Ok(Some(super::Kind::AlterTable { table, change, if_exists: alter.if_exists }))
}

/// Adds a column to a Delta table; false when it exists and `if_not_exists` is set.
pub async fn add_column(
    session: &Session,
    table: &str,
    column: &sqlast::ColumnDef,
    if_not_exists: bool,
) -> WsResult<bool> {
    let Some(lake) = session.engine().catalog().lake_table(table).await else {
        return Err(WsError::unsupported(format!(
            "ALTER TABLE ... ADD COLUMN needs a Delta lake table; \"{table}\" is not one"
        )));
    };
    let name = fold(&column.name);
    if lake.schema().field_with_name(&name).is_ok() {
        if if_not_exists {
            return Ok(false);
        }
        return Err(WsError::new(
            sqlstate::DUPLICATE_COLUMN,
            format!("column \"{name}\" of relation \"{table}\" already exists"),
        ));
    }
    for option in &column.options {
        match &option.option {
            sqlast::ColumnOption::Null => {}
            other => {
                return Err(WsError::unsupported(format!(
                    "ADD COLUMN ... {other} is not supported: a new Delta column is nullable, NULL in existing rows"
                )));
            }
        }
    }
    // The column's Arrow type is the one CREATE TABLE would give it: plan that.
    let probe = sqlast::Statement::CreateTable(
        sqlast::helpers::stmt_create_table::CreateTableBuilder::new(sqlast::ObjectName::from(vec![
            sqlast::Ident::new("probe"),
        ]))
        .columns(vec![sqlast::ColumnDef {
            name: column.name.clone(),
            data_type: column.data_type.clone(),
            options: vec![],
        }])
        .build(),
    );
    let plan = session.ctx.state().statement_to_plan(Statement::Statement(Box::new(probe))).await?;
    let LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) = plan else {
        return Err(WsError::internal("CREATE TABLE did not plan as one"));
    };
    let arrow = create.input.schema().as_arrow().clone();
    let field = Field::new(name, delta_type(arrow.field(0).data_type()), true);
    let structure = StructType::try_from_arrow(&Schema::new(vec![field]))
        .map_err(|error| WsError::unsupported(format!("column type not storable in Delta: {error}")))?;
    let Some(delta_field) = structure.fields().next().cloned() else {
        return Err(WsError::internal("a one-column schema has its column"));
    };
    lake.add_column(delta_field).await?;
    Ok(true)
}

//! pg_catalog as datafusion-pg-catalog builds it, plus what it cannot know: our indexes.
//!
//! The crate lists every DataFusion table in `pg_class` and ships `pg_index` as a fixed
//! (empty) table. This schema provider wraps the crate's and answers three relations
//! itself, from the catalog's [`IndexRegistry`]:
//! - `pg_class`: the crate's rows, with `relhasindex` set on indexed tables, plus one row
//!   per index (`relkind` 'i', `relam` btree), copied from its table's row so every
//!   column the crate fills keeps a value of its type;
//! - `pg_index`: one row per index, with `indkey`/`indoption` as arrays of int2 (what
//!   pgJDBC's getIndexInfo and psql's `\d` compute on);
//! - `pg_indexes`: PostgreSQL's view (schema, table, index, definition);
//! - `pg_views`: PostgreSQL's view (schema, name, owner, definition) of our plain views
//!   (catalog/views.rs); scanning pg_class also tells the view registry each view's OID,
//!   which `pg_get_viewdef(oid)` looks up;
//! - `pg_policy` and `pg_statistic_ext`: PostgreSQL's columns and types, `polroles` an
//!   array of role OIDs and `stxkind` an array of "char" (the crate keeps both as text,
//!   which psql's `\d` footers compare with `= ANY(...)`). Neither row security nor
//!   extended statistics exist here, so they have no rows.
//!
//! Each is computed when a query scans it, so it always shows the current catalog.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int16Builder, Int32Array, Int32Builder, ListBuilder, RecordBatch, StringArray,
    StringBuilder,
};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion_pg_catalog::pg_catalog::oid_field::{kind, oid_field};

use super::SCHEMA_NAME;
use super::indexes::{IndexEntry, IndexRegistry};
use super::views::PlainViews;
use crate::sql::vector_metadata;

/// OID of the btree access method in every PostgreSQL cluster (`pg_am`).
const BTREE_AM_OID: i32 = 403;
/// `pg_index.indoption` bits: DESC, and NULLS FIRST (DESC's default).
const INDOPTION_DESC: i16 = 1;
const INDOPTION_NULLS_FIRST: i16 = 2;

const PG_CLASS: &str = "pg_class";
const PG_INDEX: &str = "pg_index";
const PG_INDEXES: &str = "pg_indexes";
const PG_POLICY: &str = "pg_policy";
const PG_VIEWS: &str = "pg_views";
const PG_STATISTIC_EXT: &str = "pg_statistic_ext";

#[derive(Debug)]
pub struct PgCatalogOverlay {
    inner: Arc<dyn SchemaProvider>,
    indexes: IndexRegistry,
    views: PlainViews,
}

impl PgCatalogOverlay {
    pub fn new(inner: Arc<dyn SchemaProvider>, indexes: IndexRegistry, views: PlainViews) -> PgCatalogOverlay {
        PgCatalogOverlay { inner, indexes, views }
    }
}

#[async_trait]
impl SchemaProvider for PgCatalogOverlay {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        if !names.iter().any(|n| n == PG_INDEXES) {
            names.push(PG_INDEXES.to_string());
        }
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let relation = match name.to_ascii_lowercase().as_str() {
            PG_CLASS => Relation::Class,
            PG_INDEX => Relation::Index,
            PG_INDEXES => Relation::Indexes,
            PG_VIEWS => Relation::Views,
            PG_POLICY => Relation::Empty(pg_policy_schema()),
            PG_STATISTIC_EXT => Relation::Empty(pg_statistic_ext_schema()),
            _ => return self.inner.table(name).await,
        };
        let (Some(class), Some(namespace)) =
            (self.inner.table(PG_CLASS).await?, self.inner.table("pg_namespace").await?)
        else {
            return Err(DataFusionError::Internal("datafusion-pg-catalog has no pg_class or pg_namespace".into()));
        };
        let schema = match &relation {
            Relation::Class => class.schema(),
            Relation::Index => pg_index_schema(),
            Relation::Indexes => pg_indexes_schema(),
            Relation::Views => pg_views_schema(),
            Relation::Empty(schema) => schema.clone(),
        };
        let (indexes, views) = (self.indexes.clone(), self.views.clone());
        Ok(Some(Arc::new(IndexAware { relation, class, namespace, indexes, views, schema })))
    }

    fn table_exist(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case(PG_INDEXES) || self.inner.table_exist(name)
    }
}

#[derive(Debug, Clone)]
enum Relation {
    Class,
    Index,
    Indexes,
    Views,
    /// A relation of the crate's that needs PostgreSQL's types and has no rows here.
    Empty(SchemaRef),
}

/// One of the relations, computed at scan time.
#[derive(Debug)]
struct IndexAware {
    relation: Relation,
    class: Arc<dyn TableProvider>,
    namespace: Arc<dyn TableProvider>,
    indexes: IndexRegistry,
    views: PlainViews,
    schema: SchemaRef,
}

async fn scan_all(table: &Arc<dyn TableProvider>, state: &dyn Session) -> DfResult<RecordBatch> {
    let plan = table.scan(state, None, &[], None).await?;
    let batches = collect(plan, state.task_ctx()).await?;
    Ok(concat_batches(&table.schema(), &batches)?)
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> DfResult<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| DataFusionError::Internal(format!("pg_catalog column {name} has an unexpected type")))
}

/// Where a table sits in pg_class: its row and OID, for the tables of our schema.
struct Tables {
    classes: RecordBatch,
    /// Table name -> row in `classes`.
    rows: HashMap<String, usize>,
}

impl Tables {
    async fn load(
        class: &Arc<dyn TableProvider>,
        namespace: &Arc<dyn TableProvider>,
        state: &dyn Session,
    ) -> DfResult<Tables> {
        let namespaces = scan_all(namespace, state).await?;
        let nspnames = column::<StringArray>(&namespaces, "nspname")?;
        let nspoids = column::<Int32Array>(&namespaces, "oid")?;
        let public = (0..namespaces.num_rows()).find(|&i| nspnames.value(i) == SCHEMA_NAME).map(|i| nspoids.value(i));
        let classes = scan_all(class, state).await?;
        let mut rows = HashMap::new();
        {
            let names = column::<StringArray>(&classes, "relname")?;
            let spaces = column::<Int32Array>(&classes, "relnamespace")?;
            for row in 0..classes.num_rows() {
                if Some(spaces.value(row)) == public {
                    rows.insert(names.value(row).to_string(), row);
                }
            }
        }
        Ok(Tables { classes, rows })
    }

    fn oid(&self, table: &str) -> DfResult<Option<i32>> {
        let oids = column::<Int32Array>(&self.classes, "oid")?;
        Ok(self.rows.get(table).map(|&row| oids.value(row)))
    }
}

fn oid_i32(oid: u32) -> i32 {
    i32::try_from(oid).expect("index OIDs stay below 2^31")
}

impl IndexAware {
    async fn batch(&self, state: &dyn Session) -> DfResult<RecordBatch> {
        match &self.relation {
            Relation::Empty(_) => return Ok(RecordBatch::new_empty(self.schema.clone())),
            Relation::Views => return views_rows(&self.views, &self.schema),
            _ => {}
        }
        let tables = Tables::load(&self.class, &self.namespace, state).await?;
        let oids = column::<Int32Array>(&tables.classes, "oid")?;
        self.views.learn_oids(tables.rows.iter().map(|(name, &row)| (name.clone(), i64::from(oids.value(row)))));
        // Indexes whose table pg_class lists (a table dropped meanwhile has none).
        let mut indexes: Vec<(IndexEntry, usize)> = Vec::new();
        for entry in self.indexes.all() {
            if let Some(&row) = tables.rows.get(&entry.table) {
                indexes.push((entry, row));
            }
        }
        match &self.relation {
            Relation::Class => class_rows(&tables, &indexes),
            Relation::Index => index_rows(&tables, &indexes, &self.schema),
            Relation::Indexes => indexes_rows(&indexes, &self.schema),
            Relation::Empty(_) | Relation::Views => unreachable!("answered above"),
        }
    }
}

/// The crate's pg_class with `relhasindex` set on indexed tables, plus the indexes.
fn class_rows(tables: &Tables, indexes: &[(IndexEntry, usize)]) -> DfResult<RecordBatch> {
    let classes = &tables.classes;
    let schema = classes.schema();
    let indexed: HashSet<usize> = indexes.iter().map(|(_, row)| *row).collect();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let existing = classes.column(i);
        let head: ArrayRef = if field.name() == "relhasindex" {
            let flags = existing
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| DataFusionError::Internal("pg_class.relhasindex is not boolean".into()))?;
            Arc::new(
                (0..flags.len()).map(|row| Some(flags.value(row) || indexed.contains(&row))).collect::<BooleanArray>(),
            )
        } else {
            existing.clone()
        };
        let mut values = Vec::with_capacity(indexes.len());
        for (entry, row) in indexes {
            let value = match field.name().as_str() {
                "oid" | "relfilenode" => ScalarValue::Int32(Some(oid_i32(entry.oid))),
                "relname" => ScalarValue::Utf8(Some(entry.def.name.clone())),
                "relkind" => ScalarValue::Utf8(Some("i".into())),
                "relam" => ScalarValue::Int32(Some(BTREE_AM_OID)),
                "reltype" => ScalarValue::Int32(Some(0)),
                "relnatts" => {
                    ScalarValue::Int16(Some(i16::try_from(entry.def.columns.len()).expect("an index has few columns")))
                }
                "relhasindex" => ScalarValue::Boolean(Some(false)),
                // Everything else as its table has it (namespace, owner, persistence...).
                _ => ScalarValue::try_from_array(existing, *row)?,
            };
            values.push(value);
        }
        let tail = if values.is_empty() { existing.slice(0, 0) } else { ScalarValue::iter_to_array(values)? };
        columns.push(datafusion::arrow::compute::concat(&[head.as_ref(), tail.as_ref()])?);
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

fn pg_index_schema() -> SchemaRef {
    let int2_vector = || DataType::List(Arc::new(Field::new("item", DataType::Int16, true)));
    let oid_vector = || DataType::List(Arc::new(Field::new("item", DataType::Int32, true)));
    let flag = |name: &str| Field::new(name, DataType::Boolean, false);
    Arc::new(Schema::new(vec![
        oid_field("indexrelid", kind::REGCLASS, false),
        oid_field("indrelid", kind::REGCLASS, false),
        Field::new("indnatts", DataType::Int16, false),
        Field::new("indnkeyatts", DataType::Int16, false),
        flag("indisunique"),
        flag("indnullsnotdistinct"),
        flag("indisprimary"),
        flag("indisexclusion"),
        flag("indimmediate"),
        flag("indisclustered"),
        flag("indisvalid"),
        flag("indcheckxmin"),
        flag("indisready"),
        flag("indislive"),
        flag("indisreplident"),
        // Subscripted from 0, as PostgreSQL's int2vector/oidvector (sql/vectors.rs).
        Field::new("indkey", int2_vector(), false).with_metadata(vector_metadata("int2vector")),
        Field::new("indcollation", oid_vector(), false).with_metadata(vector_metadata("oidvector")),
        Field::new("indclass", oid_vector(), false).with_metadata(vector_metadata("oidvector")),
        Field::new("indoption", int2_vector(), false).with_metadata(vector_metadata("int2vector")),
        Field::new("indexprs", DataType::Utf8, true),
        Field::new("indpred", DataType::Utf8, true),
    ]))
}

fn index_rows(tables: &Tables, indexes: &[(IndexEntry, usize)], schema: &SchemaRef) -> DfResult<RecordBatch> {
    let mut indexrelid = Int32Builder::new();
    let mut indrelid = Int32Builder::new();
    let mut natts = Vec::new();
    let mut keys = ListBuilder::new(Int16Builder::new());
    let mut collations = ListBuilder::new(Int32Builder::new());
    let mut classes = ListBuilder::new(Int32Builder::new());
    let mut options = ListBuilder::new(Int16Builder::new());
    for (entry, _) in indexes {
        let Some(table_oid) = tables.oid(&entry.table)? else { continue };
        indexrelid.append_value(oid_i32(entry.oid));
        indrelid.append_value(table_oid);
        natts.push(i16::try_from(entry.def.columns.len()).expect("an index has few columns"));
        for (column, &attnum) in entry.def.columns.iter().zip(&entry.attnums) {
            keys.values().append_value(attnum);
            collations.values().append_value(0);
            classes.values().append_value(0);
            let option = if column.descending { INDOPTION_DESC | INDOPTION_NULLS_FIRST } else { 0 };
            options.values().append_value(option);
        }
        keys.append(true);
        collations.append(true);
        classes.append(true);
        options.append(true);
    }
    let rows = natts.len();
    let flags = |value: bool| -> ArrayRef { Arc::new(BooleanArray::from(vec![value; rows])) };
    let natts: ArrayRef = Arc::new(datafusion::arrow::array::Int16Array::from(natts));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(indexrelid.finish()),
        Arc::new(indrelid.finish()),
        natts.clone(),
        natts,
        flags(false), // indisunique: UNIQUE is refused (nothing would enforce it)
        flags(false),
        flags(false), // indisprimary
        flags(false),
        flags(true),  // indimmediate
        flags(false), // indisclustered
        flags(true),  // indisvalid
        flags(false),
        flags(true), // indisready
        flags(true), // indislive
        flags(false),
        Arc::new(keys.finish()),
        Arc::new(collations.finish()),
        Arc::new(classes.finish()),
        Arc::new(options.finish()),
        Arc::new(StringArray::new_null(rows)),
        Arc::new(StringArray::new_null(rows)),
    ];
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn pg_indexes_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("schemaname", DataType::Utf8, false),
        Field::new("tablename", DataType::Utf8, false),
        Field::new("indexname", DataType::Utf8, false),
        Field::new("tablespace", DataType::Utf8, true),
        Field::new("indexdef", DataType::Utf8, false),
    ]))
}

fn indexes_rows(indexes: &[(IndexEntry, usize)], schema: &SchemaRef) -> DfResult<RecordBatch> {
    let mut schemas = StringBuilder::new();
    let mut tables = StringBuilder::new();
    let mut names = StringBuilder::new();
    let mut definitions = StringBuilder::new();
    for (entry, _) in indexes {
        schemas.append_value(SCHEMA_NAME);
        tables.append_value(&entry.table);
        names.append_value(&entry.def.name);
        definitions.append_option(entry.definition(0, SCHEMA_NAME));
    }
    let rows = indexes.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(schemas.finish()),
        Arc::new(tables.finish()),
        Arc::new(names.finish()),
        Arc::new(StringArray::new_null(rows)),
        Arc::new(definitions.finish()),
    ];
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// PostgreSQL's pg_views (its columns are `name`, here text).
fn pg_views_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("schemaname", DataType::Utf8, true),
        Field::new("viewname", DataType::Utf8, true),
        Field::new("viewowner", DataType::Utf8, true),
        Field::new("definition", DataType::Utf8, true),
    ]))
}

/// One row per plain view; the owner is the one datafusion-pg-catalog gives every
/// relation (`pg_tables.tableowner`).
fn views_rows(views: &PlainViews, schema: &SchemaRef) -> DfResult<RecordBatch> {
    let all = views.all();
    let names: Vec<&str> = all.iter().map(|view| view.def.name.as_str()).collect();
    let definitions: Vec<&str> = all.iter().map(|view| view.definition()).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![SCHEMA_NAME; all.len()])),
        Arc::new(StringArray::from(names)),
        Arc::new(StringArray::from(vec!["postgres"; all.len()])),
        Arc::new(StringArray::from(definitions)),
    ];
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// PostgreSQL 16's pg_policy; OIDs are int4 as everywhere in the crate's catalog.
fn pg_policy_schema() -> SchemaRef {
    let oid_array = DataType::List(Arc::new(Field::new("item", DataType::Int32, true)));
    Arc::new(Schema::new(vec![
        oid_field("oid", kind::OID, false),
        Field::new("polname", DataType::Utf8, false),
        oid_field("polrelid", kind::REGCLASS, false),
        Field::new("polcmd", DataType::Utf8, false),
        Field::new("polpermissive", DataType::Boolean, false),
        Field::new("polroles", oid_array, false),
        Field::new("polqual", DataType::Utf8, true),
        Field::new("polwithcheck", DataType::Utf8, true),
    ]))
}

/// PostgreSQL 16's pg_statistic_ext.
fn pg_statistic_ext_schema() -> SchemaRef {
    let int2_vector = DataType::List(Arc::new(Field::new("item", DataType::Int16, true)));
    let char_array = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    Arc::new(Schema::new(vec![
        oid_field("oid", kind::OID, false),
        oid_field("stxrelid", kind::REGCLASS, false),
        Field::new("stxname", DataType::Utf8, false),
        oid_field("stxnamespace", kind::REGNAMESPACE, false),
        oid_field("stxowner", kind::OID, false),
        Field::new("stxstattarget", DataType::Int32, false),
        Field::new("stxkeys", int2_vector, false).with_metadata(vector_metadata("int2vector")),
        Field::new("stxkind", char_array, false),
        Field::new("stxexprs", DataType::Utf8, true),
    ]))
}

#[async_trait]
impl TableProvider for IndexAware {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        match &self.relation {
            Relation::Indexes | Relation::Views => TableType::View,
            Relation::Class | Relation::Index | Relation::Empty(_) => TableType::Base,
        }
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = self.batch(state).await?;
        MemTable::try_new(self.schema.clone(), vec![vec![batch]])?.scan(state, projection, filters, limit).await
    }
}

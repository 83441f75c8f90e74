//! `information_schema` as PostgreSQL clients read it.
//!
//! DataFusion's own provider names columns' types in Arrow terms (`Int64`, `Utf8`) and
//! counts `ordinal_position` from 0, which BI tools show or trip over. Sessions therefore
//! run with DataFusion's built-in information_schema off, and this provider is registered
//! as the real schema `information_schema` of our catalog: `columns` is built here with
//! PostgreSQL type names (the same types the wire protocol reports, through arrow-pg) and
//! positions from 1; `views` is built here with PostgreSQL's columns (`view_definition`,
//! `check_option`, `is_updatable`...) from the plain views (catalog/views.rs); the other
//! tables (`tables`, `schemata`, `routines`, `parameters`, `df_settings`) are DataFusion's,
//! unchanged (`tables` says `VIEW` for a view, from its provider's table type).
//!
//! Both read every relation through the catalog's `TableProvider`s, so whatever the
//! catalog holds (tables now, sources and views later) is listed without code here.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int32Builder, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::information_schema::{INFORMATION_SCHEMA, InformationSchemaProvider};
use datafusion::catalog::{CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result as DfResult;
use pgwire::api::Type;

use super::views::PlainViews;
use super::{CATALOG_NAME, SCHEMA_NAME};

const COLUMNS: &str = "columns";
const VIEWS: &str = "views";

#[derive(Debug)]
pub struct PgInformationSchema {
    catalogs: Arc<dyn CatalogProviderList>,
    datafusion: InformationSchemaProvider,
    views: PlainViews,
}

impl PgInformationSchema {
    pub fn new(catalogs: Arc<dyn CatalogProviderList>, views: PlainViews) -> PgInformationSchema {
        PgInformationSchema { datafusion: InformationSchemaProvider::new(catalogs.clone()), catalogs, views }
    }

    /// PostgreSQL's `information_schema.views`: our views are not updatable (INSERT into a
    /// view is refused) and have no check option.
    fn views(&self) -> DfResult<Arc<dyn TableProvider>> {
        let all = self.views.all();
        let rows = all.len();
        let text = |name: &str| Field::new(name, DataType::Utf8, true);
        let names = [
            "table_catalog",
            "table_schema",
            "table_name",
            "view_definition",
            "check_option",
            "is_updatable",
            "is_insertable_into",
            "is_trigger_updatable",
            "is_trigger_deletable",
            "is_trigger_insertable_into",
        ];
        let schema: SchemaRef = Arc::new(Schema::new(names.iter().map(|name| text(name)).collect::<Vec<_>>()));
        let constant =
            |value: &str| -> ArrayRef { Arc::new(datafusion::arrow::array::StringArray::from(vec![value; rows])) };
        let view_names: Vec<&str> = all.iter().map(|view| view.def.name.as_str()).collect();
        let definitions: Vec<&str> = all.iter().map(|view| view.definition()).collect();
        let columns: Vec<ArrayRef> = vec![
            constant(CATALOG_NAME),
            constant(SCHEMA_NAME),
            Arc::new(datafusion::arrow::array::StringArray::from(view_names)),
            Arc::new(datafusion::arrow::array::StringArray::from(definitions)),
            constant("NONE"),
            constant("NO"),
            constant("NO"),
            constant("NO"),
            constant("NO"),
            constant("NO"),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }

    async fn columns(&self) -> DfResult<Arc<dyn TableProvider>> {
        let mut columns = ColumnsBuilder::default();
        for catalog_name in self.catalogs.catalog_names() {
            let Some(catalog) = self.catalogs.catalog(&catalog_name) else { continue };
            for schema_name in catalog.schema_names() {
                if schema_name == INFORMATION_SCHEMA {
                    continue;
                }
                let Some(schema) = catalog.schema(&schema_name) else { continue };
                let mut tables = schema.table_names();
                tables.sort();
                for table_name in tables {
                    if let Some(table) = schema.table(&table_name).await? {
                        // Views (of both kinds) are not updatable here.
                        let updatable = table.table_type() != TableType::View;
                        for (index, field) in table.schema().fields().iter().enumerate() {
                            columns.add(&catalog_name, &schema_name, &table_name, index + 1, field, updatable);
                        }
                    }
                }
            }
        }
        let batch = columns.finish()?;
        Ok(Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]])?))
    }
}

#[async_trait]
impl SchemaProvider for PgInformationSchema {
    fn table_names(&self) -> Vec<String> {
        self.datafusion.table_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if name.eq_ignore_ascii_case(COLUMNS) {
            return Ok(Some(self.columns().await?));
        }
        if name.eq_ignore_ascii_case(VIEWS) {
            return Ok(Some(self.views()?));
        }
        self.datafusion.table(name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        self.datafusion.table_exist(name)
    }
}

/// The SQL-standard spelling PostgreSQL's information_schema uses for a type, and its
/// `udt_name` (the pg_type name).
pub fn pg_type_names(data_type: &DataType) -> (String, String) {
    let Ok(pg) = arrow_pg::datatypes::into_pg_type(data_type) else {
        return ("USER-DEFINED".to_string(), data_type.to_string());
    };
    let udt = pg.name().to_string();
    // pg_type names arrays after their element with a leading underscore.
    let standard = if udt.starts_with('_') { "ARRAY".to_string() } else { standard_name(&pg).to_string() };
    (standard, udt)
}

fn standard_name(pg: &Type) -> &str {
    match pg.name() {
        "int2" => "smallint",
        "int4" => "integer",
        "int8" => "bigint",
        "float4" => "real",
        "float8" => "double precision",
        "bool" => "boolean",
        "varchar" => "character varying",
        "bpchar" => "character",
        "timestamp" => "timestamp without time zone",
        "timestamptz" => "timestamp with time zone",
        "time" => "time without time zone",
        "timetz" => "time with time zone",
        other => other,
    }
}

#[derive(Default)]
struct ColumnsBuilder {
    catalog: StringBuilder,
    schema: StringBuilder,
    table: StringBuilder,
    column: StringBuilder,
    position: Int32Builder,
    default: StringBuilder,
    nullable: StringBuilder,
    data_type: StringBuilder,
    char_length: Int32Builder,
    numeric_precision: Int32Builder,
    numeric_radix: Int32Builder,
    numeric_scale: Int32Builder,
    datetime_precision: Int32Builder,
    udt_catalog: StringBuilder,
    udt_schema: StringBuilder,
    udt_name: StringBuilder,
    is_identity: StringBuilder,
    is_generated: StringBuilder,
    is_updatable: StringBuilder,
}

impl ColumnsBuilder {
    fn add(&mut self, catalog: &str, schema: &str, table: &str, position: usize, field: &Field, updatable: bool) {
        let (standard, udt) = pg_type_names(field.data_type());
        self.catalog.append_value(catalog);
        self.schema.append_value(schema);
        self.table.append_value(table);
        self.column.append_value(field.name());
        self.position.append_value(i32::try_from(position).unwrap_or(i32::MAX));
        self.default.append_null();
        self.nullable.append_value(if field.is_nullable() { "YES" } else { "NO" });
        self.data_type.append_value(standard);
        self.char_length.append_null();
        let (precision, radix, scale) = match field.data_type() {
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => (Some(16), Some(2), Some(0)),
            DataType::Int32 | DataType::UInt16 => (Some(32), Some(2), Some(0)),
            DataType::Int64 | DataType::UInt32 => (Some(64), Some(2), Some(0)),
            DataType::Float16 | DataType::Float32 => (Some(24), Some(2), None),
            DataType::Float64 => (Some(53), Some(2), None),
            DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
                (Some(i32::from(*p)), Some(10), Some(i32::from((*s).max(0))))
            }
            _ => (None, None, None),
        };
        self.numeric_precision.append_option(precision);
        self.numeric_radix.append_option(radix);
        self.numeric_scale.append_option(scale);
        let datetime = match field.data_type() {
            DataType::Timestamp(_, _) | DataType::Time64(_) | DataType::Time32(_) | DataType::Interval(_) => Some(6),
            DataType::Date32 | DataType::Date64 => Some(0),
            _ => None,
        };
        self.datetime_precision.append_option(datetime);
        self.udt_catalog.append_value(catalog);
        self.udt_schema.append_value("pg_catalog");
        self.udt_name.append_value(udt);
        self.is_identity.append_value("NO");
        self.is_generated.append_value("NEVER");
        self.is_updatable.append_value(if updatable { "YES" } else { "NO" });
    }

    fn finish(mut self) -> DfResult<RecordBatch> {
        let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
        // PostgreSQL's cardinal_number is an integer domain: int4 on the wire.
        let number = |name: &str, nullable: bool| Field::new(name, DataType::Int32, nullable);
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            text("table_catalog", false),
            text("table_schema", false),
            text("table_name", false),
            text("column_name", false),
            number("ordinal_position", false),
            text("column_default", true),
            text("is_nullable", false),
            text("data_type", false),
            number("character_maximum_length", true),
            number("numeric_precision", true),
            number("numeric_precision_radix", true),
            number("numeric_scale", true),
            number("datetime_precision", true),
            text("udt_catalog", false),
            text("udt_schema", false),
            text("udt_name", false),
            text("is_identity", false),
            text("is_generated", false),
            text("is_updatable", false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.catalog.finish()),
            Arc::new(self.schema.finish()),
            Arc::new(self.table.finish()),
            Arc::new(self.column.finish()),
            Arc::new(self.position.finish()),
            Arc::new(self.default.finish()),
            Arc::new(self.nullable.finish()),
            Arc::new(self.data_type.finish()),
            Arc::new(self.char_length.finish()),
            Arc::new(self.numeric_precision.finish()),
            Arc::new(self.numeric_radix.finish()),
            Arc::new(self.numeric_scale.finish()),
            Arc::new(self.datetime_precision.finish()),
            Arc::new(self.udt_catalog.finish()),
            Arc::new(self.udt_schema.finish()),
            Arc::new(self.udt_name.finish()),
            Arc::new(self.is_identity.finish()),
            Arc::new(self.is_generated.finish()),
            Arc::new(self.is_updatable.finish()),
        ];
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::TimeUnit;

    #[test]
    fn postgres_type_names() {
        assert_eq!(pg_type_names(&DataType::Int64).0, "bigint");
        assert_eq!(pg_type_names(&DataType::Utf8).0, "text");
        let tz = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        assert_eq!(pg_type_names(&tz).0, "timestamp with time zone");
        let list = DataType::List(Arc::new(Field::new("item", DataType::Int64, true)));
        assert_eq!(pg_type_names(&list), ("ARRAY".to_string(), "_int8".to_string()));
    }
}

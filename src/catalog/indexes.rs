//! Indexes on Delta tables: their declarations, the registry pg_catalog and the
//! `pg_get_indexdef` function read, and the text PostgreSQL prints for them.
//!
//! An index here is a clustering, not a lookup structure: building it Z-orders the
//! table's files by the index columns (deltalake's optimize), so per-file min/max
//! statistics on those columns become narrow and scans skip files. It is declared with
//! its table (in the table's catalog file), so it lives and dies with the table and a
//! restart sees it. Rows written after the index was built are not re-clustered until
//! the index is built again (DROP INDEX + CREATE INDEX). UNIQUE is refused: nothing
//! would check it on later inserts.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

/// First OID handed to an index: far above the ones datafusion-pg-catalog counts up from
/// 16384 for tables and schemas, so the two never meet.
pub const INDEX_OID_BASE: u32 = 1 << 30;

/// One column of an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexColumn {
    pub name: String,
    /// `DESC`: recorded for the catalog (`pg_index.indoption`); Z-order has no direction.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub descending: bool,
}

/// One index declaration, as written in its table's catalog entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexDef {
    pub name: String,
    pub columns: Vec<IndexColumn>,
}

/// A registered index: its table, its declaration and the OID pg_catalog shows.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    pub table: String,
    pub def: IndexDef,
    /// Position (from 1) of each index column in its table, as `pg_attribute.attnum`.
    pub attnums: Vec<i16>,
    pub oid: u32,
}

impl IndexEntry {
    /// `pg_get_indexdef(oid, column, pretty)`: the whole `CREATE INDEX` for column 0,
    /// else that column's name (1-based), NULL past the last one, as PostgreSQL.
    pub fn definition(&self, column: i64, schema: &str) -> Option<String> {
        if column == 0 {
            let columns: Vec<String> = self
                .def
                .columns
                .iter()
                .map(|c| if c.descending { format!("{} DESC", quote_ident(&c.name)) } else { quote_ident(&c.name) })
                .collect();
            return Some(format!(
                "CREATE INDEX {} ON {}.{} USING btree ({})",
                quote_ident(&self.def.name),
                quote_ident(schema),
                quote_ident(&self.table),
                columns.join(", ")
            ));
        }
        let index = usize::try_from(column).ok()?.checked_sub(1)?;
        self.def.columns.get(index).map(|c| quote_ident(&c.name))
    }
}

/// Identifiers print bare when PostgreSQL would (lower case letters, digits, `_`, not
/// starting with a digit), else double-quoted.
fn quote_ident(name: &str) -> String {
    let bare = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if bare { name.to_string() } else { format!("\"{}\"", name.replace('"', "\"\"")) }
}

#[derive(Debug)]
struct Inner {
    by_name: BTreeMap<String, IndexEntry>,
    next_oid: u32,
}

/// Every index of the catalog, shared with pg_catalog's tables and the session
/// functions (synchronous readers). Changed only under the catalog's DDL lock.
#[derive(Debug, Clone)]
pub struct IndexRegistry {
    inner: Arc<RwLock<Inner>>,
}

impl Default for IndexRegistry {
    fn default() -> IndexRegistry {
        IndexRegistry { inner: Arc::new(RwLock::new(Inner { by_name: BTreeMap::new(), next_oid: INDEX_OID_BASE })) }
    }
}

impl IndexRegistry {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an index; its OID stays the same for as long as the process runs.
    pub fn insert(&self, table: &str, def: IndexDef, attnums: Vec<i16>) {
        let mut inner = self.write();
        let oid = inner.next_oid;
        inner.next_oid += 1;
        inner.by_name.insert(def.name.clone(), IndexEntry { table: table.to_string(), def, attnums, oid });
    }

    pub fn remove(&self, name: &str) -> Option<IndexEntry> {
        self.write().by_name.remove(name)
    }

    /// Forgets every index of a dropped table.
    pub fn remove_table(&self, table: &str) {
        self.write().by_name.retain(|_, entry| entry.table != table);
    }

    pub fn get(&self, name: &str) -> Option<IndexEntry> {
        self.read().by_name.get(name).cloned()
    }

    pub fn by_oid(&self, oid: u32) -> Option<IndexEntry> {
        self.read().by_name.values().find(|entry| entry.oid == oid).cloned()
    }

    /// Every index, by name.
    pub fn all(&self) -> Vec<IndexEntry> {
        self.read().by_name.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> IndexEntry {
        IndexEntry {
            table: "t1".into(),
            def: IndexDef {
                name: "t1i0".into(),
                columns: vec![
                    IndexColumn { name: "a1".into(), descending: false },
                    IndexColumn { name: "B".into(), descending: true },
                ],
            },
            attnums: vec![1, 3],
            oid: INDEX_OID_BASE,
        }
    }

    #[test]
    fn definitions_print_as_postgresql_does() {
        let entry = entry();
        assert_eq!(
            entry.definition(0, "public").unwrap(),
            "CREATE INDEX t1i0 ON public.t1 USING btree (a1, \"B\" DESC)"
        );
        assert_eq!(entry.definition(1, "public").unwrap(), "a1");
        assert_eq!(entry.definition(2, "public").unwrap(), "\"B\"");
        assert_eq!(entry.definition(3, "public"), None);
        assert_eq!(entry.definition(-1, "public"), None);
    }

    #[test]
    fn registry_assigns_distinct_oids_and_forgets_a_table() {
        let registry = IndexRegistry::default();
        registry.insert("t1", entry().def, vec![1, 3]);
        let mut other = entry().def;
        other.name = "t2i".into();
        registry.insert("t2", other, vec![1, 3]);
        let first = registry.get("t1i0").unwrap().oid;
        let second = registry.get("t2i").unwrap().oid;
        assert_ne!(first, second);
        assert_eq!(registry.by_oid(second).unwrap().table, "t2");
        registry.remove_table("t1");
        assert!(registry.get("t1i0").is_none());
        assert_eq!(registry.all().len(), 1);
    }
}

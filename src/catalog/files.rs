//! Catalog files: parsing with file:line errors, and atomic writes.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::TableDef;
use super::views::PlainViewDef;
use crate::connectors::sinks::SinkDef;
use crate::error::{WsError, WsResult, sqlstate};
use crate::stream::SourceDef;
use crate::stream::continuous::ViewDef;

/// `[demo]`: this catalog declares the built-in demo lake, generated when missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoDecl {
    pub seed: u64,
    pub scale: f64,
    /// Directory of the demo lake, relative to the data dir.
    pub location: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    demo: Option<DemoDecl>,
    #[serde(default, rename = "table", skip_serializing_if = "Vec::is_empty")]
    tables: Vec<TableDef>,
    #[serde(default, rename = "source", skip_serializing_if = "Vec::is_empty")]
    sources: Vec<SourceDef>,
    #[serde(default, rename = "view", skip_serializing_if = "Vec::is_empty")]
    plain_views: Vec<PlainViewDef>,
    #[serde(default, rename = "materialized_view", skip_serializing_if = "Vec::is_empty")]
    views: Vec<ViewDef>,
    #[serde(default, rename = "sink", skip_serializing_if = "Vec::is_empty")]
    sinks: Vec<SinkDef>,
}

/// One parsed catalog file.
#[derive(Debug, Clone)]
pub struct CatalogFile {
    pub path: PathBuf,
    pub demo: Option<DemoDecl>,
    pub tables: Vec<TableDef>,
    pub sources: Vec<SourceDef>,
    /// Plain views (`[[view]]`).
    pub plain_views: Vec<PlainViewDef>,
    /// Materialized views (`[[materialized_view]]`).
    pub views: Vec<ViewDef>,
    pub sinks: Vec<SinkDef>,
    text: String,
}

impl CatalogFile {
    fn empty() -> CatalogFile {
        CatalogFile {
            path: PathBuf::new(),
            demo: None,
            tables: Vec::new(),
            sources: Vec::new(),
            plain_views: Vec::new(),
            views: Vec::new(),
            sinks: Vec::new(),
            text: String::new(),
        }
    }

    pub fn single(def: TableDef) -> CatalogFile {
        CatalogFile { tables: vec![def], ..CatalogFile::empty() }
    }

    pub fn single_source(def: SourceDef) -> CatalogFile {
        CatalogFile { sources: vec![def], ..CatalogFile::empty() }
    }

    pub fn single_plain_view(def: PlainViewDef) -> CatalogFile {
        CatalogFile { plain_views: vec![def], ..CatalogFile::empty() }
    }

    pub fn single_view(def: ViewDef) -> CatalogFile {
        CatalogFile { views: vec![def], ..CatalogFile::empty() }
    }

    pub fn single_sink(def: SinkDef) -> CatalogFile {
        CatalogFile { sinks: vec![def], ..CatalogFile::empty() }
    }

    /// Names of every object this file declares, indexes included: one namespace.
    fn names(&self) -> impl Iterator<Item = &str> {
        self.tables
            .iter()
            .map(|t| t.name.as_str())
            .chain(self.tables.iter().flat_map(|t| t.indexes.iter().map(|index| index.name.as_str())))
            .chain(self.sources.iter().map(|s| s.name.as_str()))
            .chain(self.plain_views.iter().map(|v| v.name.as_str()))
            .chain(self.views.iter().map(|v| v.name.as_str()))
            .chain(self.sinks.iter().map(|s| s.name.as_str()))
    }

    fn declarations(&self) -> usize {
        self.tables.len() + self.sources.len() + self.plain_views.len() + self.views.len() + self.sinks.len()
    }

    /// 1-based line of the `name = "..."` entry of a table, for error messages.
    pub fn line_of_table(&self, name: &str) -> usize {
        let needle_double = format!("\"{name}\"");
        let needle_single = format!("'{name}'");
        self.text
            .lines()
            .position(|line| {
                line.trim_start().starts_with("name")
                    && (line.contains(&needle_double) || line.contains(&needle_single))
            })
            .map_or(1, |index| index + 1)
    }

    fn render(&self) -> WsResult<String> {
        let body = FileToml {
            demo: self.demo.clone(),
            tables: self.tables.clone(),
            sources: self.sources.clone(),
            plain_views: self.plain_views.clone(),
            views: self.views.clone(),
            sinks: self.sinks.clone(),
        };
        let text = toml::to_string_pretty(&body)
            .map_err(|error| WsError::internal(format!("catalog serialization: {error}")))?;
        Ok(format!("# Written by watershed; edit while the server is stopped.\n{text}"))
    }
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// A TOML parse error of the file at `path` as F0000, naming the file and line.
pub fn toml_error(path: &Path, text: &str, error: &toml::de::Error) -> WsError {
    let line = error.span().map_or(1, |span| line_of_offset(text, span.start));
    WsError::new(sqlstate::CONFIG_FILE_ERROR, format!("{}:{line}: {}", path.display(), error.message()))
}

/// Parses one catalog file; errors name the file and line.
pub fn parse_file(path: &Path, text: &str) -> WsResult<CatalogFile> {
    let parsed: FileToml = toml::from_str(text).map_err(|error| toml_error(path, text, &error))?;
    let file = CatalogFile {
        path: path.to_path_buf(),
        demo: parsed.demo,
        tables: parsed.tables,
        sources: parsed.sources,
        plain_views: parsed.plain_views,
        views: parsed.views,
        sinks: parsed.sinks,
        text: text.to_string(),
    };
    for name in file.names() {
        if let Err(reason) = check_object_name(name) {
            return Err(WsError::new(
                sqlstate::CONFIG_FILE_ERROR,
                format!("{}:{}: {reason}", path.display(), file.line_of_table(name)),
            ));
        }
    }
    Ok(file)
}

/// The names a catalog file may hold: non-empty and lower case (what unquoted SQL
/// identifiers fold to). CREATE refuses others with the same rule, so that a start never
/// refuses what the server wrote.
pub fn check_object_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name != name.to_lowercase() {
        return Err(format!("name {name:?} must be non-empty and lower case (catalog files hold lower-case names)"));
    }
    Ok(())
}

/// Reads every `*.toml` file of the catalog directory, in name order. A missing directory
/// is an empty catalog (it is created on the first DDL).
pub fn load_dir(dir: &Path) -> WsResult<Vec<CatalogFile>> {
    load_dirs(&[dir])
}

/// Reads the catalog files of several directories (the declared catalog, then the one DDL
/// persists in), each in name order; a name is declared once across all of them.
pub fn load_dirs(dirs: &[&Path]) -> WsResult<Vec<CatalogFile>> {
    let mut files = Vec::new();
    let mut seen = std::collections::BTreeMap::new();
    for dir in dirs {
        for path in toml_files(dir)? {
            let text = std::fs::read_to_string(&path)
                .map_err(|error| WsError::new(sqlstate::CONFIG_FILE_ERROR, format!("{}: {error}", path.display())))?;
            let file = parse_file(&path, &text)?;
            for name in file.names() {
                if let Some(first) = seen.insert(name.to_string(), path.clone()) {
                    return Err(WsError::new(
                        sqlstate::CONFIG_FILE_ERROR,
                        format!(
                            "{}:{}: {} is already declared in {}",
                            path.display(),
                            file.line_of_table(name),
                            name,
                            first.display()
                        ),
                    ));
                }
            }
            files.push(file);
        }
    }
    Ok(files)
}

/// The `*.toml` files of `dir`, sorted; none for a missing directory.
fn toml_files(dir: &Path) -> WsResult<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(WsError::new(sqlstate::CONFIG_FILE_ERROR, format!("catalog dir {}: {error}", dir.display())));
        }
    };
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

/// File name for an object's own catalog file; names are SQL identifiers, but quoted
/// identifiers may hold anything, so keep only characters safe in a file name.
pub fn file_stem(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
}

/// Writes `file` to `path` so that a crash leaves either the old or the new contents:
/// temporary file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, file: &CatalogFile) -> WsResult<()> {
    write_text_atomic(path, &file.render()?, false)
}

/// Writes `text` to `path` so that a crash leaves either the old or the new contents:
/// temporary file next to it, fsync, rename, fsync of the directory. A `private` file
/// (secrets such as password hashes) is created readable by its owner only, before any
/// byte is written, so it is never readable by others even for a moment.
pub fn write_text_atomic(path: &Path, text: &str, private: bool) -> WsResult<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        Some(_) => Path::new("."),
        None => return Err(WsError::internal(format!("{} has no directory", path.display()))),
    };
    std::fs::create_dir_all(dir)?;
    let mut temp_name = path.file_name().unwrap_or_default().to_os_string();
    temp_name.push(".tmp");
    let temp = path.with_file_name(temp_name);
    {
        if private {
            // A stale temporary file would keep its old, possibly wider, permissions.
            match std::fs::remove_file(&temp) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error.into()),
                _ => {}
            }
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut handle = options.open(&temp)?;
        handle.write_all(text.as_bytes())?;
        handle.sync_all()?;
    }
    std::fs::rename(&temp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// The file an object was registered from, read again to change it. It may have been
/// edited (or removed) since the server read it at start, though catalog files are to be
/// edited while the server is stopped: then nothing is changed and the error says so.
fn reread(path: &Path, name: &str) -> WsResult<CatalogFile> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| edited(path, name, &format!("it cannot be read ({error})")).with_source(error))?;
    parse_file(path, &text).map_err(|error| edited(path, name, &format!("it no longer parses: {}", error.message)))
}

/// F0000 for a catalog file that no longer says what the server read from it.
fn edited(path: &Path, name: &str, what: &str) -> WsError {
    WsError::new(
        sqlstate::CONFIG_FILE_ERROR,
        format!(
            "catalog file {} declared \"{name}\" when the server started, but {what}; it was changed \
             while the server ran (edit catalog files while it is stopped): the catalog was not changed; \
             restart the server to read the file again",
            path.display()
        ),
    )
}

/// Replaces one table's declaration in its file (its indexes changed).
pub fn replace_table_declaration(path: &Path, def: &TableDef) -> WsResult<()> {
    let mut file = reread(path, &def.name)?;
    let slot = file
        .tables
        .iter_mut()
        .find(|t| t.name == def.name)
        .ok_or_else(|| edited(path, &def.name, "it no longer does"))?;
    *slot = def.clone();
    write_atomic(path, &file)
}

/// Replaces one plain view's declaration in its file (CREATE OR REPLACE VIEW).
pub fn replace_plain_view_declaration(path: &Path, def: &PlainViewDef) -> WsResult<()> {
    let mut file = reread(path, &def.name)?;
    let slot = file
        .plain_views
        .iter_mut()
        .find(|v| v.name == def.name)
        .ok_or_else(|| edited(path, &def.name, "it no longer does"))?;
    *slot = def.clone();
    write_atomic(path, &file)
}

/// Removes one object's declaration from its file: the file goes if nothing else is in it.
pub fn remove_declaration(path: &Path, name: &str) -> WsResult<()> {
    let mut file = reread(path, name)?;
    let before = file.declarations();
    file.tables.retain(|def| def.name != name);
    file.sources.retain(|def| def.name != name);
    file.plain_views.retain(|def| def.name != name);
    file.views.retain(|def| def.name != name);
    file.sinks.retain(|def| def.name != name);
    // A file read at start declares each name once (load_dir checks); more than one
    // removed, or none, means it was edited since.
    if before != file.declarations() + 1 {
        let what =
            if before == file.declarations() { "it no longer does" } else { "it now declares it more than once" };
        return Err(edited(path, name, what));
    }
    if file.declarations() == 0 && file.demo.is_none() {
        std::fs::remove_file(path)?;
        let dir = path.parent().ok_or_else(|| WsError::internal("catalog file has no directory"))?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    } else {
        write_atomic(path, &file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_file_names_file_and_line() {
        let text = "[[table]]\nname = \"a\"\nformat = \"delta\"\nlocation = \n";
        let error = parse_file(Path::new("cat/x.toml"), text).unwrap_err();
        assert_eq!(error.code, sqlstate::CONFIG_FILE_ERROR);
        assert!(error.message.starts_with("cat/x.toml:4:"), "{}", error.message);
    }

    #[test]
    fn unknown_format_is_rejected_with_line() {
        let text = "[[table]]\nname = \"a\"\nformat = \"orc\"\nlocation = \"x\"\n";
        let error = parse_file(Path::new("y.toml"), text).unwrap_err();
        assert!(error.message.starts_with("y.toml:3:"), "{}", error.message);
    }

    /// A managed Delta table `t` at `tables/t`, without indexes.
    fn managed_table_t() -> TableDef {
        TableDef {
            name: "t".into(),
            format: super::super::Format::Delta,
            location: "tables/t".into(),
            managed: true,
            options: Default::default(),
            indexes: Vec::new(),
        }
    }

    #[test]
    fn write_then_parse_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        let def = managed_table_t();
        write_atomic(&path, &CatalogFile::single(def.clone())).unwrap();
        let files = load_dir(dir.path()).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].tables, vec![def.clone()]);
        let mut indexed = def.clone();
        indexed.indexes.push(super::super::IndexDef {
            name: "t_a".into(),
            columns: vec![super::super::IndexColumn { name: "a".into(), descending: true }],
        });
        replace_table_declaration(&path, &indexed).unwrap();
        assert_eq!(load_dir(dir.path()).unwrap()[0].tables, vec![indexed]);
        remove_declaration(&path, "t").unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_view_round_trips_and_is_replaced_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.toml");
        let def = PlainViewDef { name: "v".into(), query: "SELECT a FROM t WHERE a > 'x'".into(), columns: vec![] };
        write_atomic(&path, &CatalogFile::single_plain_view(def.clone())).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("[[view]]") && !text.contains("columns"), "{text}");
        assert_eq!(load_dir(dir.path()).unwrap()[0].plain_views, vec![def.clone()]);
        let replaced = PlainViewDef { query: "SELECT a, b FROM t".into(), columns: vec!["x".into()], ..def };
        replace_plain_view_declaration(&path, &replaced).unwrap();
        assert_eq!(load_dir(dir.path()).unwrap()[0].plain_views, vec![replaced]);
        // A view's name is in the one namespace of catalog files.
        std::fs::write(dir.path().join("w.toml"), "[[table]]\nname = \"v\"\nformat = \"delta\"\nlocation = \"x\"\n")
            .unwrap();
        assert!(load_dir(dir.path()).unwrap_err().message.contains("already declared"));
        std::fs::remove_file(dir.path().join("w.toml")).unwrap();
        remove_declaration(&path, "v").unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_file_edited_since_start_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        let def = managed_table_t();
        let other = TableDef { name: "u".into(), location: "tables/u".into(), ..def.clone() };
        // Edited to declare another table instead, then to declare it twice, then removed.
        write_atomic(&path, &CatalogFile::single(other.clone())).unwrap();
        let before = std::fs::read_to_string(&path).unwrap();
        for result in [remove_declaration(&path, "t"), replace_table_declaration(&path, &def)] {
            let error = result.unwrap_err();
            assert_eq!(error.code, sqlstate::CONFIG_FILE_ERROR);
            assert!(error.message.contains("t.toml") && error.message.contains("no longer does"), "{}", error.message);
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before, "nothing written");
        let twice = CatalogFile { tables: vec![def.clone(), def.clone()], ..CatalogFile::empty() };
        write_atomic(&path, &twice).unwrap();
        let error = remove_declaration(&path, "t").unwrap_err();
        assert!(error.message.contains("more than once"), "{}", error.message);
        std::fs::write(&path, "[[table]]\nname = ").unwrap();
        assert!(remove_declaration(&path, "t").unwrap_err().message.contains("no longer parses"));
        std::fs::remove_file(&path).unwrap();
        let error = remove_declaration(&path, "t").unwrap_err();
        assert_eq!(error.code, sqlstate::CONFIG_FILE_ERROR);
        assert!(error.message.contains("cannot be read"), "{}", error.message);
    }
}

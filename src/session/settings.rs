//! PostgreSQL run-time settings of one session (`SET`, `SHOW`, `RESET`, `current_setting`,
//! `set_config`), with the values clients expect at connect time. DataFusion's own options
//! (`datafusion.*`) live in the session's DataFusion config and are reached through the
//! same statements and functions.
//!
//! [`Settings`] is shared (`Arc`) between the session and the `current_setting`/`set_config`
//! functions registered on that session's DataFusion context: those functions run inside
//! a query, where the session itself is not reachable, and must see and change the very
//! settings `SHOW` and `SET` use.

use std::collections::BTreeMap;
use std::sync::Mutex;

use datafusion::config::ConfigOptions;

use crate::error::{WsError, WsResult, sqlstate};

/// The PostgreSQL major.minor this server reports; SQLAlchemy and others parse it.
pub const PG_SERVER_VERSION: &str = "16.6";
/// `server_version_num` of [`PG_SERVER_VERSION`].
pub const PG_SERVER_VERSION_NUM: &str = "160006";

/// `version()`: PostgreSQL's shape (`PostgreSQL 16.6 ... on <target>, compiled by ...,
/// 64-bit`), which SQLAlchemy and JDBC parse, with this server's name and version.
pub fn version_string() -> String {
    format!(
        "PostgreSQL {PG_SERVER_VERSION} (watershed {}) on {}-{}, compiled by rustc, {}-bit",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS,
        usize::BITS
    )
}

/// Settings a client may read or change, with their defaults. Names are lower case, as
/// PostgreSQL folds them; unknown names are accepted by SET only with a dot (custom
/// placeholders such as `myapp.tenant`), as in PostgreSQL.
pub fn defaults() -> BTreeMap<String, String> {
    let pairs = [
        ("application_name", ""),
        ("bytea_output", "hex"),
        ("client_encoding", "UTF8"),
        ("client_min_messages", "notice"),
        ("datestyle", "ISO, MDY"),
        ("default_transaction_isolation", "read committed"),
        ("default_transaction_read_only", "off"),
        ("extra_float_digits", "1"),
        ("idle_in_transaction_session_timeout", "0"),
        ("integer_datetimes", "on"),
        ("intervalstyle", "postgres"),
        ("is_superuser", "on"),
        ("lock_timeout", "0"),
        ("max_identifier_length", "63"),
        ("search_path", "\"$user\", public"),
        ("server_encoding", "UTF8"),
        ("server_version", PG_SERVER_VERSION),
        ("server_version_num", PG_SERVER_VERSION_NUM),
        ("standard_conforming_strings", "on"),
        ("statement_timeout", "0"),
        ("timezone", "UTC"),
        // VACUUM refuses a retention under the table's bound while on (maintenance.rs).
        ("watershed.vacuum_retention_check", "on"),
        ("transaction_isolation", "read committed"),
        ("transaction_read_only", "off"),
    ];
    pairs.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Settings that only the server sets.
pub fn is_read_only(name: &str) -> bool {
    matches!(
        name,
        "server_version"
            | "server_version_num"
            | "server_encoding"
            | "integer_datetimes"
            | "max_identifier_length"
            | "is_superuser"
    )
}

/// Reads and writes the session's DataFusion options. A closure rather than the context
/// itself: the functions holding [`Settings`] are registered in that context, and a strong
/// reference back would keep every session's state alive forever.
pub type DataFusionOptions = Box<dyn Fn(&mut dyn FnMut(&mut ConfigOptions)) -> WsResult<()> + Send + Sync>;

/// One session's settings.
pub struct Settings {
    values: Mutex<BTreeMap<String, String>>,
    datafusion: DataFusionOptions,
    /// DataFusion options as the session started, for `RESET datafusion.x` and `RESET ALL`.
    datafusion_initial: ConfigOptions,
    /// What RESET returns to: PostgreSQL's defaults with the server's own
    /// (`--statement-timeout-ms`).
    defaults: BTreeMap<String, String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings").field("values", &self.values).finish()
    }
}

impl Settings {
    pub fn new(
        datafusion: DataFusionOptions,
        datafusion_initial: ConfigOptions,
        defaults: BTreeMap<String, String>,
    ) -> Settings {
        Settings { values: Mutex::new(defaults.clone()), datafusion, datafusion_initial, defaults }
    }

    /// Sets a value only the server may change (`is_superuser` after authentication);
    /// it survives `RESET ALL`, which returns client-settable values to their defaults.
    pub fn set_server(&self, name: &str, value: &str) {
        self.values().insert(name.to_string(), value.to_string());
    }

    fn values(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.values.lock().expect("settings lock poisoned")
    }

    /// `SET name = value`, or `RESET name` / `SET name TO DEFAULT` when `value` is None.
    pub fn set(&self, name: &str, value: Option<&str>) -> WsResult<()> {
        if name.starts_with("datafusion.") {
            let value = match value {
                // PostgreSQL spells booleans on/off; DataFusion's options parse true/false.
                Some("on") => "true".to_string(),
                Some("off") => "false".to_string(),
                Some(other) => other.to_string(),
                None => self.datafusion_initial_value(name)?,
            };
            let mut result = Ok(());
            (self.datafusion)(&mut |options| result = options.set(name, &value))?;
            return Ok(result?);
        }
        if is_read_only(name) {
            return Err(WsError::new(
                sqlstate::CANT_CHANGE_RUNTIME_PARAM,
                format!("parameter \"{name}\" cannot be changed"),
            ));
        }
        let defaults = &self.defaults;
        if !defaults.contains_key(name) && !name.contains('.') {
            return Err(unrecognized(name));
        }
        let value = match value {
            Some(value) => Some(normalize(name, value)?),
            None => None,
        };
        let value = value.as_deref();
        if name == "timezone" {
            // DataFusion types `timestamptz` with its own session time zone; keep it the
            // same zone. Arrow accepts IANA names and offsets; a name it does not know
            // is refused here rather than failing every later timestamptz.
            let zone = value.unwrap_or("UTC").to_string();
            let mut result = Ok(());
            (self.datafusion)(&mut |options| result = options.set("datafusion.execution.time_zone", &zone))?;
            result.map_err(|_| {
                WsError::new(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    format!("invalid value for parameter \"TimeZone\": \"{zone}\""),
                )
            })?;
        }
        let mut values = self.values();
        match (value, defaults.get(name)) {
            (Some(value), _) => {
                values.insert(name.to_string(), value.to_string());
            }
            (None, Some(default)) => {
                values.insert(name.to_string(), default.clone());
            }
            (None, None) => {
                values.remove(name);
            }
        }
        Ok(())
    }

    fn datafusion_initial_value(&self, name: &str) -> WsResult<String> {
        let entry = self.datafusion_initial.entries().into_iter().find(|e| e.key == name);
        match entry {
            Some(entry) => Ok(entry.value.unwrap_or_default()),
            None => Err(unrecognized(name)),
        }
    }

    /// `RESET ALL` and `DISCARD ALL`: every setting back to its session-start value.
    pub fn reset_all(&self) -> WsResult<()> {
        let mut values = self.values();
        let server_set: Vec<(String, String)> =
            values.iter().filter(|(name, _)| is_read_only(name)).map(|(k, v)| (k.clone(), v.clone())).collect();
        *values = self.defaults.clone();
        values.extend(server_set);
        drop(values);
        let initial = self.datafusion_initial.clone();
        (self.datafusion)(&mut |options| *options = initial.clone())
    }

    /// Current value of a setting, as SHOW prints it.
    pub fn show(&self, name: &str) -> WsResult<String> {
        self.get(name)?.ok_or_else(|| unrecognized(name))
    }

    /// Current value; `Ok(None)` for an unknown name.
    pub fn get(&self, name: &str) -> WsResult<Option<String>> {
        if let Some(value) = self.values().get(name) {
            return Ok(Some(value.clone()));
        }
        if name.starts_with("datafusion.") {
            let mut found = None;
            (self.datafusion)(&mut |options| {
                found = options.entries().into_iter().find(|e| e.key == name).map(|e| e.value.unwrap_or_default());
            })?;
            return Ok(found);
        }
        Ok(None)
    }

    /// Every PostgreSQL setting with its value, sorted by name (`SHOW ALL`).
    pub fn all(&self) -> Vec<(String, String)> {
        self.values().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Whether writes are refused (`SET TRANSACTION READ ONLY`, or
    /// `default_transaction_read_only`).
    /// Outside a block every statement is its own transaction with the session defaults.
    pub fn read_only(&self, in_block: bool) -> bool {
        let name = if in_block { "transaction_read_only" } else { "default_transaction_read_only" };
        self.values().get(name).is_some_and(|v| v == "on")
    }

    /// A transaction ended (or began without modes): the per-transaction settings take
    /// the session defaults again, as in PostgreSQL.
    pub fn start_transaction_defaults(&self) {
        let mut values = self.values();
        for (transaction, default) in [
            ("transaction_isolation", "default_transaction_isolation"),
            ("transaction_read_only", "default_transaction_read_only"),
        ] {
            let value = values.get(default).cloned().unwrap_or_default();
            values.insert(transaction.to_string(), value);
        }
    }
}

fn unrecognized(name: &str) -> WsError {
    WsError::new(sqlstate::UNDEFINED_OBJECT, format!("unrecognized configuration parameter \"{name}\""))
}

/// Settings holding a duration in milliseconds, which SET checks and SHOW prints the way
/// PostgreSQL does (`1s`, `1500ms`, `0`).
fn is_duration_ms(name: &str) -> bool {
    matches!(name, "statement_timeout" | "lock_timeout")
}

/// Largest duration setting, in milliseconds: PostgreSQL's INT_MAX.
const DURATION_MS_MAX: u64 = i32::MAX as u64;

/// Parses a duration the way PostgreSQL parses a time setting: a bare number is in
/// milliseconds; units `us`, `ms`, `s`, `min`, `h`, `d` may follow, with or without a
/// space. Fractions round to the nearest millisecond.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    let ms = (number * scale).round();
    (ms.is_finite() && ms >= 0.0 && ms <= DURATION_MS_MAX as f64).then_some(ms as u64)
}

/// A duration as SHOW prints it: in the largest unit that divides it exactly.
pub fn format_duration_ms(ms: u64) -> String {
    if ms == 0 {
        return "0".into();
    }
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1_000)] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Checks a value being SET and puts it in the form SHOW prints: 22023 for a value
/// PostgreSQL would refuse too, 0A000 for one it would honour and this server cannot (a
/// setting is never accepted without its effect).
pub fn normalize(name: &str, value: &str) -> WsResult<String> {
    let invalid = |reason: String| WsError::new(sqlstate::INVALID_PARAMETER_VALUE, reason);
    if is_duration_ms(name) {
        return parse_duration_ms(value).map(format_duration_ms).ok_or_else(|| {
            invalid(format!(
                "invalid value for parameter \"{name}\": \"{value}\" (a duration from 0 to {DURATION_MS_MAX} ms; units us, ms, s, min, h, d)"
            ))
        });
    }
    match name {
        "client_encoding" => client_encoding(value),
        "datestyle" => date_style(value),
        "intervalstyle" => one_of(
            "IntervalStyle",
            value,
            &["postgres", "postgres_verbose", "sql_standard", "iso_8601"],
            "postgres",
            "intervals are shown in PostgreSQL's default style",
        ),
        "bytea_output" => one_of("bytea_output", value, &["escape", "hex"], "hex", "bytea values are sent in hex"),
        _ => Ok(value.to_string()),
    }
}

/// PostgreSQL's encoding names (pg_wchar.h, with its aliases), compared as PostgreSQL
/// does: case and punctuation ignored.
const PG_ENCODINGS: &[&str] = &[
    "utf8",
    "unicode",
    "sqlascii",
    "big5",
    "euccn",
    "eucjp",
    "eucjis2004",
    "euckr",
    "euctw",
    "gb18030",
    "gbk",
    "iso88595",
    "iso88596",
    "iso88597",
    "iso88598",
    "johab",
    "koi8",
    "koi8r",
    "koi8u",
    "latin1",
    "latin2",
    "latin3",
    "latin4",
    "latin5",
    "latin6",
    "latin7",
    "latin8",
    "latin9",
    "latin10",
    "iso88591",
    "iso88592",
    "iso88593",
    "iso88594",
    "iso88599",
    "iso885910",
    "iso885913",
    "iso885914",
    "iso885915",
    "iso885916",
    "muleinternal",
    "sjis",
    "shiftjis",
    "shiftjis2004",
    "uhc",
    "win",
    "alt",
    "win866",
    "win874",
    "win1250",
    "win1251",
    "win1252",
    "win1253",
    "win1254",
    "win1255",
    "win1256",
    "win1257",
    "win1258",
    "windows866",
    "windows874",
    "windows1250",
    "windows1251",
    "windows1252",
    "windows1253",
    "windows1254",
    "windows1255",
    "windows1256",
    "windows1257",
    "windows1258",
    "tcvn",
    "tcvn5712",
    "vscii",
    "abc",
    "mskanji",
];

/// `client_encoding`: text goes over the wire as UTF-8 only (Arrow strings are UTF-8), so
/// UTF8 and its aliases are accepted and shown as `UTF8`; PostgreSQL's other encodings,
/// which it would convert to, are refused rather than accepted without conversion.
fn client_encoding(value: &str) -> WsResult<String> {
    let clean: String = value.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_ascii_lowercase();
    match clean.as_str() {
        "utf8" | "unicode" => Ok("UTF8".to_string()),
        known if PG_ENCODINGS.contains(&known) => Err(WsError::unsupported(format!(
            "client_encoding \"{value}\" is not supported: this server sends and reads text as UTF8 only"
        ))),
        _ => Err(WsError::new(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("invalid value for parameter \"client_encoding\": \"{value}\""),
        )),
    }
}

/// `DateStyle`: an output style and a field order, in PostgreSQL's key words. Dates and
/// timestamps are shown in ISO style and read in year-month-day order only, so the
/// accepted values are those that mean `ISO, MDY` (PostgreSQL's default: `ISO`, `MDY`,
/// `US`, `DEFAULT`, ...), shown as `ISO, MDY`; other styles and orders are refused.
fn date_style(value: &str) -> WsResult<String> {
    let invalid = |detail: String| {
        WsError::new(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("invalid value for parameter \"DateStyle\": \"{value}\" ({detail})"),
        )
    };
    let (mut style, mut order): (Option<&str>, Option<&str>) = (None, None);
    for word in value.split([',', ' ']).filter(|word| !word.is_empty()) {
        let (slot, meaning) = match word.to_ascii_lowercase().as_str() {
            "iso" => (&mut style, "ISO"),
            "sql" => (&mut style, "SQL"),
            "postgres" => (&mut style, "Postgres"),
            "german" => (&mut style, "German"),
            "ymd" => (&mut order, "YMD"),
            "dmy" | "euro" | "european" => (&mut order, "DMY"),
            "mdy" | "us" | "noneuro" | "noneuropean" => (&mut order, "MDY"),
            "default" => {
                style = style.or(Some("ISO"));
                order = order.or(Some("MDY"));
                continue;
            }
            _ => return Err(invalid(format!("unrecognized key word: \"{word}\""))),
        };
        if slot.is_some_and(|earlier| earlier != meaning) {
            return Err(invalid("conflicting \"datestyle\" specifications".to_string()));
        }
        *slot = Some(meaning);
    }
    let (style, order) = (style.unwrap_or("ISO"), order.unwrap_or("MDY"));
    if (style, order) != ("ISO", "MDY") {
        return Err(WsError::unsupported(format!(
            "DateStyle \"{style}, {order}\" is not supported: dates are shown in ISO style and read in \
             year-month-day order; DateStyle is ISO, MDY"
        )));
    }
    Ok("ISO, MDY".to_string())
}

/// An enumerated setting of which this server provides one value (`supported`): the
/// others PostgreSQL knows (`known`) are refused with 0A000, anything else with 22023
/// and PostgreSQL's list.
fn one_of(display: &str, value: &str, known: &[&str], supported: &str, what_we_do: &str) -> WsResult<String> {
    let lower = value.to_ascii_lowercase();
    if lower == supported {
        return Ok(lower);
    }
    if known.contains(&lower.as_str()) {
        return Err(WsError::unsupported(format!(
            "{display} \"{lower}\" is not supported: {what_we_do}; {display} is {supported}"
        )));
    }
    Err(WsError::new(
        sqlstate::INVALID_PARAMETER_VALUE,
        format!("invalid value for parameter \"{display}\": \"{value}\" (available values: {})", known.join(", ")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn settings() -> Settings {
        let options = Arc::new(Mutex::new(ConfigOptions::new()));
        let initial = options.lock().unwrap().clone();
        Settings::new(
            Box::new(move |f| {
                f(&mut options.lock().unwrap());
                Ok(())
            }),
            initial,
            server_defaults(),
        )
    }

    /// PostgreSQL's defaults with a server default `statement_timeout` of 2 s.
    fn server_defaults() -> BTreeMap<String, String> {
        let mut defaults = defaults();
        defaults.insert("statement_timeout".into(), format_duration_ms(2000));
        defaults
    }

    #[test]
    fn set_reset_and_unknown_names() {
        let s = settings();
        s.set("application_name", Some("x")).unwrap();
        assert_eq!(s.show("application_name").unwrap(), "x");
        s.set("application_name", None).unwrap();
        assert_eq!(s.show("application_name").unwrap(), "");
        assert_eq!(s.set("no_such", Some("1")).unwrap_err().code, sqlstate::UNDEFINED_OBJECT);
        s.set("myapp.tenant", Some("7")).unwrap();
        assert_eq!(s.show("myapp.tenant").unwrap(), "7");
        assert_eq!(s.set("server_version", Some("1")).unwrap_err().code, sqlstate::CANT_CHANGE_RUNTIME_PARAM);
    }

    #[test]
    fn datafusion_options_reset_to_session_start() {
        let s = settings();
        s.set("datafusion.execution.batch_size", Some("17")).unwrap();
        assert_eq!(s.show("datafusion.execution.batch_size").unwrap(), "17");
        s.set("datafusion.execution.batch_size", None).unwrap();
        assert_eq!(s.show("datafusion.execution.batch_size").unwrap(), "8192");
        s.set("datafusion.execution.batch_size", Some("17")).unwrap();
        s.set("timezone", Some("Europe/Paris")).unwrap();
        s.reset_all().unwrap();
        assert_eq!(s.show("datafusion.execution.batch_size").unwrap(), "8192");
        assert_eq!(s.show("timezone").unwrap(), "UTC");
    }

    #[test]
    fn version_string_is_postgres_shaped() {
        let version = version_string();
        assert!(version.starts_with(&format!("PostgreSQL {PG_SERVER_VERSION} (watershed ")), "{version}");
    }

    #[test]
    fn set_normalizes_durations_and_resets_to_server_defaults() {
        let s = settings();
        s.set("statement_timeout", Some("60s")).unwrap();
        assert_eq!(s.show("statement_timeout").unwrap(), "1min");
        let error = s.set("statement_timeout", Some("soon")).unwrap_err();
        assert_eq!(error.code, sqlstate::INVALID_PARAMETER_VALUE);
        assert_eq!(s.show("statement_timeout").unwrap(), "1min");
        s.set_server("is_superuser", "off");
        s.set("statement_timeout", None).unwrap();
        assert_eq!(s.show("statement_timeout").unwrap(), "2s");
        s.set("statement_timeout", Some("5")).unwrap();
        s.reset_all().unwrap();
        assert_eq!(s.show("statement_timeout").unwrap(), "2s");
        // Server-set values survive RESET ALL: a reader must not become a superuser.
        assert_eq!(s.show("is_superuser").unwrap(), "off");
    }

    #[test]
    fn durations_parse_and_print_like_postgresql() {
        assert_eq!(parse_duration_ms("250"), Some(250));
        assert_eq!(parse_duration_ms("1.5s"), Some(1500));
        assert_eq!(parse_duration_ms("2 min"), Some(120_000));
        assert_eq!(parse_duration_ms("-1"), None);
        assert_eq!(parse_duration_ms("soon"), None);
        assert_eq!(parse_duration_ms("3 weeks"), None);
        assert_eq!(format_duration_ms(0), "0");
        assert_eq!(format_duration_ms(1000), "1s");
        assert_eq!(format_duration_ms(1500), "1500ms");
        assert_eq!(format_duration_ms(3_600_000), "1h");
        assert_eq!(normalize("statement_timeout", "60s").unwrap(), "1min");
        assert!(normalize("statement_timeout", "x").is_err());
        assert_eq!(normalize("application_name", "x").unwrap(), "x");
    }

    #[test]
    fn settings_we_cannot_honour_are_refused_not_ignored() {
        let s = settings();
        // What this server does, in every spelling PostgreSQL accepts.
        for (name, value, shown) in [
            ("client_encoding", "UTF8", "UTF8"),
            ("client_encoding", "utf-8", "UTF8"),
            ("client_encoding", "unicode", "UTF8"),
            ("datestyle", "ISO, MDY", "ISO, MDY"),
            ("datestyle", "ISO", "ISO, MDY"),
            ("datestyle", "iso, us", "ISO, MDY"),
            ("datestyle", "DEFAULT", "ISO, MDY"),
            ("intervalstyle", "Postgres", "postgres"),
            ("bytea_output", "hex", "hex"),
        ] {
            s.set(name, Some(value)).unwrap_or_else(|error| panic!("{name} = {value}: {error}"));
            assert_eq!(s.show(name).unwrap(), shown, "{name} = {value}");
        }
        // What PostgreSQL would honour and this server cannot: 0A000, the value unchanged.
        for (name, value) in [
            ("client_encoding", "LATIN1"),
            ("client_encoding", "win1252"),
            ("datestyle", "German"),
            ("datestyle", "ISO, DMY"),
            ("datestyle", "SQL, MDY"),
            ("datestyle", "euro"),
            ("intervalstyle", "iso_8601"),
            ("intervalstyle", "sql_standard"),
            ("bytea_output", "escape"),
        ] {
            let before = s.show(name).unwrap();
            let error = s.set(name, Some(value)).unwrap_err();
            assert_eq!(error.code, sqlstate::FEATURE_NOT_SUPPORTED, "{name} = {value}: {}", error.message);
            assert_eq!(s.show(name).unwrap(), before);
        }
        // What PostgreSQL refuses too: 22023.
        for (name, value) in [
            ("client_encoding", "foo"),
            ("datestyle", "foo"),
            ("datestyle", "ISO, German"),
            ("datestyle", "DMY, MDY"),
            ("intervalstyle", "x"),
            ("bytea_output", "x"),
        ] {
            let error = s.set(name, Some(value)).unwrap_err();
            assert_eq!(error.code, sqlstate::INVALID_PARAMETER_VALUE, "{name} = {value}: {}", error.message);
        }
        // RESET goes back to the default.
        s.set("datestyle", None).unwrap();
        assert_eq!(s.show("datestyle").unwrap(), "ISO, MDY");
    }
}

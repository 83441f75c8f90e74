//! PostgreSQL run-time settings of one session (`SET`, `SHOW`, `RESET`), with the
//! values clients expect at connect time. DataFusion's own options (`datafusion.*`)
//! live in the session's DataFusion config and are reached through the same statements.

use std::collections::BTreeMap;

/// The PostgreSQL major.minor this server reports; SQLAlchemy and others parse it.
pub const PG_SERVER_VERSION: &str = "16.6";

/// Settings a client may read or change, with their defaults. Names are lower case, as
/// PostgreSQL folds them; unknown names are accepted by SET only with a dot (custom
/// placeholders such as `myapp.tenant`), as in PostgreSQL.
pub fn defaults() -> BTreeMap<String, String> {
    let pairs = [
        ("application_name", ""),
        ("client_encoding", "UTF8"),
        ("client_min_messages", "notice"),
        ("datestyle", "ISO, MDY"),
        ("default_transaction_isolation", "read committed"),
        ("default_transaction_read_only", "off"),
        ("extra_float_digits", "1"),
        ("integer_datetimes", "on"),
        ("intervalstyle", "postgres"),
        ("is_superuser", "on"),
        ("lock_timeout", "0"),
        ("max_identifier_length", "63"),
        ("search_path", "\"$user\", public"),
        ("server_encoding", "UTF8"),
        ("server_version", PG_SERVER_VERSION),
        ("server_version_num", "160006"),
        ("standard_conforming_strings", "on"),
        ("statement_timeout", "0"),
        ("timezone", "UTC"),
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
        if ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Checks a value being SET and puts it in the form SHOW prints; `Err` holds the reason
/// for SQLSTATE 22023.
pub fn normalize(name: &str, value: &str) -> Result<String, String> {
    if is_duration_ms(name) {
        return parse_duration_ms(value).map(format_duration_ms).ok_or_else(|| {
            format!(
                "invalid value for parameter \"{name}\": \"{value}\" (a duration from 0 to {DURATION_MS_MAX} ms; units us, ms, s, min, h, d)"
            )
        });
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(normalize("statement_timeout", "60s").as_deref(), Ok("1min"));
        assert!(normalize("statement_timeout", "x").is_err());
        assert_eq!(normalize("application_name", "x").as_deref(), Ok("x"));
    }
}

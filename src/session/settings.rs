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

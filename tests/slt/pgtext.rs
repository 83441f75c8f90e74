//! PostgreSQL binary values -> PostgreSQL's text rendering, for the extended-protocol mode.
//!
//! tokio-postgres always asks for result columns in binary format (its Bind message sets
//! every result format to 1), so the extended mode cannot read text from the wire. Instead,
//! [`PgText`] accepts any column type and renders the binary value the way PostgreSQL's own
//! output functions do with the default settings (DateStyle ISO, IntervalStyle postgres,
//! extra_float_digits 1, bytea_output hex). A record therefore yields the same strings in
//! all three modes exactly when the server's binary and text encodings agree with
//! PostgreSQL's; a difference between the modes points at one of the server's encoders.
//!
//! Known limit: `timestamptz` is rendered in UTC (`+00`), since a binary value does not
//! carry the session's TimeZone.

use std::error::Error;
use std::fmt::Write;

use chrono::{Datelike, NaiveDate, TimeDelta};
use tokio_postgres::types::{FromSql, Kind, Type};

type BoxError = Box<dyn Error + Sync + Send>;

/// One column value in PostgreSQL's text rendering, decoded from the binary format.
/// Read it as `Option<PgText>` so that NULL stays distinguishable.
pub struct PgText(pub String);

impl<'a> FromSql<'a> for PgText {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<PgText, BoxError> {
        render(ty, raw).map(PgText)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_MINUTE: i64 = 60 * MICROS_PER_SECOND;
const MICROS_PER_HOUR: i64 = 60 * MICROS_PER_MINUTE;
const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

/// Renders one non-NULL binary value of type `ty` as PostgreSQL's text output would.
pub fn render(ty: &Type, raw: &[u8]) -> Result<String, BoxError> {
    if let Kind::Array(element) = ty.kind() {
        return render_array(element, raw);
    }
    let text = match *ty {
        Type::BOOL => match raw {
            [0] => "f".to_string(),
            [_] => "t".to_string(),
            _ => return Err(format!("bool of {} bytes", raw.len()).into()),
        },
        Type::CHAR => match raw {
            [byte] => char::from(*byte).to_string(),
            _ => return Err(format!("\"char\" of {} bytes", raw.len()).into()),
        },
        Type::INT2 => i16::from_be_bytes(exact(raw)?).to_string(),
        Type::INT4 => i32::from_be_bytes(exact(raw)?).to_string(),
        Type::INT8 => i64::from_be_bytes(exact(raw)?).to_string(),
        Type::OID => u32::from_be_bytes(exact(raw)?).to_string(),
        Type::FLOAT4 => {
            let value = f32::from_be_bytes(exact(raw)?);
            special_float(value.into()).unwrap_or_else(|| shortest(&format!("{value:e}"), FLOAT4_FIXED_MAX))
        }
        Type::FLOAT8 => {
            let value = f64::from_be_bytes(exact(raw)?);
            special_float(value).unwrap_or_else(|| shortest(&format!("{value:e}"), FLOAT8_FIXED_MAX))
        }
        Type::NUMERIC => numeric_text(raw)?,
        Type::DATE => date_text(i32::from_be_bytes(exact(raw)?))?,
        Type::TIME => clock_text(i64::from_be_bytes(exact(raw)?)),
        Type::TIMETZ => {
            let micros = i64::from_be_bytes(exact(raw.get(..8).unwrap_or_default())?);
            let zone_west = i32::from_be_bytes(exact(raw.get(8..).unwrap_or_default())?);
            format!("{}{}", clock_text(micros), offset_text(-zone_west))
        }
        Type::TIMESTAMP => timestamp_text(i64::from_be_bytes(exact(raw)?))?,
        Type::TIMESTAMPTZ => {
            let micros = i64::from_be_bytes(exact(raw)?);
            if micros == i64::MAX || micros == i64::MIN {
                timestamp_text(micros)?
            } else {
                // ISO style puts the zone between the time and a BC suffix.
                let text = timestamp_text(micros)?;
                match text.strip_suffix(" BC") {
                    Some(ad) => format!("{ad}+00 BC"),
                    None => format!("{text}+00"),
                }
            }
        }
        Type::INTERVAL => {
            let micros = i64::from_be_bytes(exact(raw.get(..8).unwrap_or_default())?);
            let days = i32::from_be_bytes(exact(raw.get(8..12).unwrap_or_default())?);
            let months = i32::from_be_bytes(exact(raw.get(12..).unwrap_or_default())?);
            interval_text(micros, days, months)
        }
        Type::BYTEA => hex_bytea(raw),
        Type::UUID => uuid_text(&exact::<16>(raw)?),
        Type::JSONB => match raw.split_first() {
            Some((1, json)) => String::from_utf8(json.to_vec())?,
            _ => return Err("jsonb without version byte 1".into()),
        },
        // text, varchar, bpchar, name, json, xml, unknown... are sent as their UTF-8 text;
        // anything else we do not know is shown as text when it is valid UTF-8.
        _ => match std::str::from_utf8(raw) {
            Ok(text) => text.to_string(),
            Err(_) => hex_bytea(raw),
        },
    };
    Ok(text)
}

fn exact<const N: usize>(raw: &[u8]) -> Result<[u8; N], BoxError> {
    raw.try_into().map_err(|_| format!("expected {N} bytes, got {}", raw.len()).into())
}

/// Decimal exponents from which float8out / float4out switch to exponential notation
/// (PostgreSQL's d2s.c and f2s.c: fixed point for -4 <= exponent < DBL_DIG / FLT_DIG).
const FLOAT8_FIXED_MAX: i32 = 15;
const FLOAT4_FIXED_MAX: i32 = 6;

/// The special values of float4out/float8out; `None` for ordinary numbers.
fn special_float(value: f64) -> Option<String> {
    if value.is_nan() {
        Some("NaN".to_string())
    } else if value.is_infinite() {
        Some(if value > 0.0 { "Infinity" } else { "-Infinity" }.to_string())
    } else if value == 0.0 {
        Some(if value.is_sign_negative() { "-0" } else { "0" }.to_string())
    } else {
        None
    }
}

/// Lays out the shortest round-trip digits (Rust's `{:e}` of the value in its own width,
/// e.g. `-1.25e-7`) the way PostgreSQL's shortest-decimal output does: fixed point when
/// -4 <= exponent < `fixed_max`, else `d.ddde±XX` with at least two exponent digits.
fn shortest(scientific: &str, fixed_max: i32) -> String {
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(positive) => ("-", positive),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let body = if !(-4..fixed_max).contains(&exponent) {
        let mut out = digits[..1].to_string();
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        format!("{out}e{exponent_sign}{:02}", exponent.abs())
    } else if exponent < 0 {
        format!("0.{}{digits}", "0".repeat((-exponent - 1) as usize))
    } else {
        let integer_len = (exponent + 1) as usize;
        if digits.len() <= integer_len {
            format!("{digits}{}", "0".repeat(integer_len - digits.len()))
        } else {
            format!("{}.{}", &digits[..integer_len], &digits[integer_len..])
        }
    };
    format!("{sign}{body}")
}

/// numeric_send's layout: ndigits, weight, sign, dscale (i16/u16 each), then base-10000
/// digits; rendered as numeric_out does, with exactly `dscale` fractional digits.
fn numeric_text(raw: &[u8]) -> Result<String, BoxError> {
    let header = |at: usize| -> Result<[u8; 2], BoxError> { exact(raw.get(at..at + 2).unwrap_or_default()) };
    let ndigits = i16::from_be_bytes(header(0)?) as i64;
    let weight = i16::from_be_bytes(header(2)?) as i64;
    let sign = u16::from_be_bytes(header(4)?);
    let dscale = u16::from_be_bytes(header(6)?) as usize;
    let mut digits = Vec::with_capacity(ndigits.max(0) as usize);
    for index in 0..ndigits.max(0) as usize {
        digits.push(i16::from_be_bytes(header(8 + 2 * index)?));
    }
    let negative = match sign {
        0x0000 => false,
        0x4000 => true,
        0xC000 => return Ok("NaN".to_string()),
        0xD000 => return Ok("Infinity".to_string()),
        0xF000 => return Ok("-Infinity".to_string()),
        other => return Err(format!("numeric sign {other:#x}").into()),
    };
    let digit = |index: i64| -> i16 { if index >= 0 && index < ndigits { digits[index as usize] } else { 0 } };
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for index in 0..=weight {
            if index == 0 {
                write!(out, "{}", digit(index))?;
            } else {
                write!(out, "{:04}", digit(index))?;
            }
        }
    }
    if dscale > 0 {
        let mut fraction = String::new();
        let mut index = weight + 1;
        while fraction.len() < dscale {
            write!(fraction, "{:04}", digit(index))?;
            index += 1;
        }
        fraction.truncate(dscale);
        out.push('.');
        out.push_str(&fraction);
    }
    Ok(out)
}

/// PostgreSQL's epoch for date and timestamp values.
fn pg_epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(2000, 1, 1).expect("2000-01-01 is a date")
}

/// `YYYY-MM-DD`, and whether the year is BC (ISO style writes " BC" after everything).
fn ymd(days: i64) -> Result<(String, bool), BoxError> {
    let date = pg_epoch()
        .checked_add_signed(TimeDelta::try_days(days).ok_or("date out of range")?)
        .ok_or("date out of range")?;
    let year = date.year();
    let (shown_year, bc) = if year <= 0 { (1 - year, true) } else { (year, false) };
    Ok((format!("{shown_year:04}-{:02}-{:02}", date.month(), date.day()), bc))
}

fn date_text(days: i32) -> Result<String, BoxError> {
    match days {
        i32::MAX => Ok("infinity".to_string()),
        i32::MIN => Ok("-infinity".to_string()),
        days => {
            let (text, bc) = ymd(days.into())?;
            Ok(if bc { format!("{text} BC") } else { text })
        }
    }
}

/// `.ffffff` without trailing zeros, or nothing for whole seconds.
fn fraction_text(micros: i64) -> String {
    if micros == 0 {
        return String::new();
    }
    let text = format!(".{micros:06}");
    text.trim_end_matches('0').to_string()
}

/// `HH:MM:SS[.ffffff]` of a non-negative count of microseconds (hours may exceed 23).
fn clock_text(micros: i64) -> String {
    format!(
        "{:02}:{:02}:{:02}{}",
        micros / MICROS_PER_HOUR,
        micros % MICROS_PER_HOUR / MICROS_PER_MINUTE,
        micros % MICROS_PER_MINUTE / MICROS_PER_SECOND,
        fraction_text(micros % MICROS_PER_SECOND)
    )
}

fn timestamp_text(micros: i64) -> Result<String, BoxError> {
    match micros {
        i64::MAX => Ok("infinity".to_string()),
        i64::MIN => Ok("-infinity".to_string()),
        micros => {
            let (date, bc) = ymd(micros.div_euclid(MICROS_PER_DAY))?;
            let clock = clock_text(micros.rem_euclid(MICROS_PER_DAY));
            Ok(if bc { format!("{date} {clock} BC") } else { format!("{date} {clock}") })
        }
    }
}

/// A UTC offset as PostgreSQL prints it: `+05:30`, `-08`, `+00`.
fn offset_text(offset_seconds: i32) -> String {
    let sign = if offset_seconds < 0 { '-' } else { '+' };
    let seconds = offset_seconds.unsigned_abs();
    let mut out = format!("{sign}{:02}", seconds / 3600);
    if !seconds.is_multiple_of(3600) {
        write!(out, ":{:02}", seconds % 3600 / 60).expect("writing to a String");
        if !seconds.is_multiple_of(60) {
            write!(out, ":{:02}", seconds % 60).expect("writing to a String");
        }
    }
    out
}

/// interval_out with IntervalStyle `postgres` (EncodeInterval, INTSTYLE_POSTGRES):
/// `1 year 2 mons -3 days +04:05:06.5`.
fn interval_text(micros: i64, days: i32, months: i32) -> String {
    struct Parts {
        out: String,
        is_zero: bool,
        is_before: bool,
    }
    impl Parts {
        fn add(&mut self, value: i64, unit: &str) {
            if value == 0 {
                return;
            }
            let space = if self.is_zero { "" } else { " " };
            let plus = if self.is_before && value > 0 { "+" } else { "" };
            let plural = if value != 1 { "s" } else { "" };
            write!(self.out, "{space}{plus}{value} {unit}{plural}").expect("writing to a String");
            self.is_before = value < 0;
            self.is_zero = false;
        }
    }
    let mut parts = Parts { out: String::new(), is_zero: true, is_before: false };
    parts.add(i64::from(months / 12), "year");
    parts.add(i64::from(months % 12), "mon");
    parts.add(i64::from(days), "day");
    if parts.is_zero || micros != 0 {
        let space = if parts.is_zero { "" } else { " " };
        let sign = if micros < 0 {
            "-"
        } else if parts.is_before {
            "+"
        } else {
            ""
        };
        let clock = clock_text(micros.unsigned_abs().min(i64::MAX as u64) as i64);
        write!(parts.out, "{space}{sign}{clock}").expect("writing to a String");
    }
    parts.out
}

fn hex_bytea(raw: &[u8]) -> String {
    let mut out = String::with_capacity(2 + 2 * raw.len());
    out.push_str("\\x");
    for byte in raw {
        write!(out, "{byte:02x}").expect("writing to a String");
    }
    out
}

fn uuid_text(bytes: &[u8; 16]) -> String {
    let mut out = String::with_capacity(36);
    for (index, byte) in bytes.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        write!(out, "{byte:02x}").expect("writing to a String");
    }
    out
}

/// array_send's layout: ndim, has-null flag, element oid, (length, lower bound) per
/// dimension, then each element as (length, bytes) with -1 for NULL; rendered as
/// array_out does (`{1,2}`, `{{a,b},{c,"d e"}}`, `[0:1]={x,y}`).
fn render_array(element: &Type, raw: &[u8]) -> Result<String, BoxError> {
    let mut reader = Reader { raw };
    let ndim = reader.i32()?;
    let _has_null = reader.i32()?;
    let _element_oid = reader.i32()?;
    if ndim <= 0 {
        return Ok("{}".to_string());
    }
    let mut dims = Vec::with_capacity(ndim as usize);
    for _ in 0..ndim {
        let length = reader.i32()?;
        let lower = reader.i32()?;
        dims.push((length, lower));
    }
    let mut out = String::new();
    if dims.iter().any(|&(_, lower)| lower != 1) {
        for &(length, lower) in &dims {
            write!(out, "[{lower}:{}]", lower + length - 1)?;
        }
        out.push('=');
    }
    write_dimension(element, &dims, &mut reader, &mut out)?;
    Ok(out)
}

fn write_dimension(
    element: &Type,
    dims: &[(i32, i32)],
    reader: &mut Reader<'_>,
    out: &mut String,
) -> Result<(), BoxError> {
    out.push('{');
    let (length, _) = dims[0];
    for index in 0..length {
        if index > 0 {
            out.push(',');
        }
        if dims.len() > 1 {
            write_dimension(element, &dims[1..], reader, out)?;
            continue;
        }
        let size = reader.i32()?;
        if size < 0 {
            out.push_str("NULL");
            continue;
        }
        let value = render(element, reader.take(size as usize)?)?;
        out.push_str(&quote_array_element(&value));
    }
    out.push('}');
    Ok(())
}

/// array_out quotes elements that are empty, spell NULL, or hold a delimiter, brace,
/// quote, backslash or white space.
fn quote_array_element(value: &str) -> String {
    let needs_quotes = value.is_empty()
        || value.eq_ignore_ascii_case("null")
        || value.chars().any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_ascii_whitespace());
    if !needs_quotes {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

struct Reader<'a> {
    raw: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], BoxError> {
        if self.raw.len() < count {
            return Err("truncated array value".into());
        }
        let (head, tail) = self.raw.split_at(count);
        self.raw = tail;
        Ok(head)
    }

    fn i32(&mut self) -> Result<i32, BoxError> {
        Ok(i32::from_be_bytes(exact(self.take(4)?)?))
    }
}

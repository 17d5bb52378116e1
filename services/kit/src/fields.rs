//! Reading request fields (JSON body members, query and path parameters) so
//! that a request with several problems gets one 400 `validation-failed`
//! listing every one of them, in plain words.
//!
//! A request type implements [`FromBody`] or [`FromQuery`]: it names the
//! fields it accepts and reads each one from a [`Fields`] reader, typed
//! ([`FieldValue`]) and then checked by its domain parser. The reader records
//! every missing, unknown, repeated, mistyped or invalid field instead of
//! stopping at the first. Body members arrive as raw JSON text
//! ([`RawValue`]), so numbers are never converted to binary floating point on
//! the way: an amount is parsed as an exact decimal from the digits the
//! client sent.
//!
//! Rules, for every endpoint: a field not in the accepted list is an error
//! (`<name> is not a field this endpoint accepts`); a field given twice is an
//! error; a body member that is `null`, or a query parameter that is empty,
//! counts as absent.

use crate::error::{ApiError, FieldError};
use rust_decimal::Decimal;
use serde_json::value::RawValue;
use std::collections::HashMap;
use uuid::Uuid;

/// A request body read field by field.
pub type BodyFields = Fields<Box<RawValue>>;

/// A query string read parameter by parameter.
pub type QueryFields = Fields<String>;

/// A request body type: the members it accepts and how to read them.
pub trait FromBody: Sized {
    /// Every member the body may have; any other is reported as unknown.
    const FIELDS: &'static [&'static str];

    /// Reads and validates every member. Returns `None` only after recording
    /// at least one error in `body`; reads every field even when an earlier
    /// one failed, so that all problems are reported together.
    fn from_body(body: &mut BodyFields) -> Option<Self>;
}

/// A query string type: the parameters it accepts and how to read them.
pub trait FromQuery: Sized {
    /// Every parameter the query may have; any other is reported as unknown.
    const PARAMETERS: &'static [&'static str];

    /// Reads and validates every parameter, like [`FromBody::from_body`].
    fn from_query(query: &mut QueryFields) -> Option<Self>;
}

/// How a raw field looks: a JSON value's text, or a query or path parameter.
pub trait RawField {
    /// Whether the field is JSON `null` (which counts as absent).
    fn is_null(&self) -> bool;
}

impl RawField for Box<RawValue> {
    fn is_null(&self) -> bool {
        self.get() == "null"
    }
}

/// An empty query parameter (`?cursor=`) counts as absent: clients that fill
/// a URL template send one for every value they do not have.
impl RawField for String {
    fn is_null(&self) -> bool {
        self.is_empty()
    }
}

/// A value a raw field can be read as.
pub trait FieldValue<R>: Sized {
    /// What the value must be, completing "`<field>` must be …" (`a string`).
    const EXPECTED: &'static str;

    /// The value, or `None` when `raw` is not one.
    fn from_raw(raw: &R) -> Option<Self>;
}

/// Where fields come from, for the wording of messages.
#[derive(Debug, Clone, Copy)]
enum Source {
    Body,
    Query,
}

/// A reader of named fields that records every problem it meets.
#[derive(Debug)]
pub struct Fields<R> {
    members: Vec<(String, R)>,
    errors: Vec<FieldError>,
}

impl<R: RawField> Fields<R> {
    fn new(source: Source, members: Vec<(String, R)>, accepted: &[&str]) -> Self {
        let mut errors = Vec::new();
        // Counted in a map: a 64 KiB body can hold thousands of members.
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (name, _) in &members {
            let count = seen.entry(name.as_str()).or_default();
            *count += 1;
            if *count == 2 {
                errors.push(FieldError::new(
                    name.clone(),
                    format!("{name} is given more than once"),
                ));
            } else if *count == 1 && !accepted.contains(&name.as_str()) {
                let what = match source {
                    Source::Body => "a field",
                    Source::Query => "a query parameter",
                };
                errors.push(FieldError::new(
                    name.clone(),
                    format!(
                        "{name} is not {what} this endpoint accepts (it accepts: {})",
                        if accepted.is_empty() {
                            "none".to_string()
                        } else {
                            accepted.join(", ")
                        }
                    ),
                ));
            }
        }
        Self { members, errors }
    }

    /// The raw field `name`, `None` when absent or `null`.
    fn raw(&self, name: &str) -> Option<&R> {
        self.members
            .iter()
            .find(|(member, _)| member == name)
            .map(|(_, raw)| raw)
            .filter(|raw| !raw.is_null())
    }

    /// Field `name` read as `T`; records an error when it is absent or not a `T`.
    pub fn required<T: FieldValue<R>>(&mut self, name: &str) -> Option<T> {
        if self.raw(name).is_none() {
            self.reject(name, format!("{name} is required"));
            return None;
        }
        self.optional(name)
    }

    /// Field `name` read as `T`, `None` when absent; records an error when it is not a `T`.
    pub fn optional<T: FieldValue<R>>(&mut self, name: &str) -> Option<T> {
        let raw = self.raw(name)?;
        let value = T::from_raw(raw);
        if value.is_none() {
            self.reject(name, format!("{name} must be {}", T::EXPECTED));
        }
        value
    }

    /// Field `name` read as `T` and then parsed by `parse` (a domain type's
    /// constructor); records an error when it is absent, not a `T`, or refused.
    pub fn required_with<T: FieldValue<R>, U>(
        &mut self,
        name: &str,
        parse: impl FnOnce(T) -> Result<U, String>,
    ) -> Option<U> {
        let value = self.required(name)?;
        self.check(name, parse(value))
    }

    /// Like [`required_with`](Self::required_with), `None` when absent.
    pub fn optional_with<T: FieldValue<R>, U>(
        &mut self,
        name: &str,
        parse: impl FnOnce(T) -> Result<U, String>,
    ) -> Option<U> {
        let value = self.optional(name)?;
        self.check(name, parse(value))
    }

    /// The outcome of a domain check of field `name`; records the error message.
    pub fn check<T>(&mut self, name: &str, checked: Result<T, String>) -> Option<T> {
        checked.map_err(|message| self.reject(name, message)).ok()
    }

    /// Records that field `name` is invalid.
    pub fn reject(&mut self, name: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(name, message));
    }

    /// `value` when no error was recorded, else a 400 listing every error.
    fn finish<T>(self, value: Option<T>) -> Result<T, ApiError> {
        if !self.errors.is_empty() {
            return Err(ApiError::invalid_fields(self.errors));
        }
        value.ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!(
                "a request reader failed without recording why"
            ))
        })
    }
}

/// Reads the members of a JSON object as a [`FromBody`] type.
pub fn read_body<T: FromBody>(members: Vec<(String, Box<RawValue>)>) -> Result<T, ApiError> {
    let mut body = Fields::new(Source::Body, members, T::FIELDS);
    let value = T::from_body(&mut body);
    body.finish(value)
}

/// Reads decoded query pairs as a [`FromQuery`] type.
pub fn read_query<T: FromQuery>(pairs: Vec<(String, String)>) -> Result<T, ApiError> {
    let mut query = Fields::new(Source::Query, pairs, T::PARAMETERS);
    let value = T::from_query(&mut query);
    query.finish(value)
}

/// The text of a JSON string, `None` for any other JSON value.
fn json_string(raw: &RawValue) -> Option<String> {
    raw.get()
        .starts_with('"')
        .then(|| serde_json::from_str(raw.get()).ok())
        .flatten()
}

/// Whether `text` is an integer of the form `-?[0-9]+`.
fn is_integer_literal(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// An integer literal as an `i64`, saturating beyond its range so that range
/// checks report "between 1 and 100" rather than a type error.
fn saturating_i64(text: &str) -> Option<i64> {
    if !is_integer_literal(text) {
        return None;
    }
    Some(text.parse().unwrap_or(if text.starts_with('-') {
        i64::MIN
    } else {
        i64::MAX
    }))
}

/// A decimal in plain notation (`-?[0-9]+(\.[0-9]+)?`), exactly.
fn plain_decimal(text: &str) -> Option<Decimal> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let fraction_ok =
        fraction.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
    if !is_integer_literal(whole) || !fraction_ok {
        return None;
    }
    Decimal::from_str_exact(text).ok()
}

impl FieldValue<Box<RawValue>> for String {
    const EXPECTED: &'static str = "a string";

    fn from_raw(raw: &Box<RawValue>) -> Option<Self> {
        json_string(raw)
    }
}

impl FieldValue<Box<RawValue>> for i64 {
    const EXPECTED: &'static str = "a whole number";

    fn from_raw(raw: &Box<RawValue>) -> Option<Self> {
        saturating_i64(raw.get())
    }
}

impl FieldValue<Box<RawValue>> for bool {
    const EXPECTED: &'static str = "true or false";

    fn from_raw(raw: &Box<RawValue>) -> Option<Self> {
        match raw.get() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }
}

/// A decimal amount: a JSON number (`12.5`, `1.25e1`) or a string in plain
/// notation (`"12.50"`), both read exactly from their digits.
impl FieldValue<Box<RawValue>> for Decimal {
    const EXPECTED: &'static str =
        "a decimal number such as 12.50, as a JSON number or a string, of at most 28 digits";

    fn from_raw(raw: &Box<RawValue>) -> Option<Self> {
        let text = raw.get();
        if let Some(string) = json_string(raw) {
            return plain_decimal(&string);
        }
        // RawValue has already checked JSON's number grammar for anything
        // that is not a string, object, array, boolean or null.
        if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            return None;
        }
        if text.contains(['e', 'E']) {
            Decimal::from_scientific(text).ok()
        } else {
            Decimal::from_str_exact(text).ok()
        }
    }
}

impl FieldValue<Box<RawValue>> for Uuid {
    const EXPECTED: &'static str = "a UUID";

    fn from_raw(raw: &Box<RawValue>) -> Option<Self> {
        json_string(raw).and_then(|text| Uuid::parse_str(&text).ok())
    }
}

impl FieldValue<String> for String {
    const EXPECTED: &'static str = "text";

    fn from_raw(raw: &String) -> Option<Self> {
        Some(raw.clone())
    }
}

impl FieldValue<String> for u32 {
    const EXPECTED: &'static str = "a whole number";

    fn from_raw(raw: &String) -> Option<Self> {
        saturating_i64(raw).map(|n| u32::try_from(n.max(0)).unwrap_or(u32::MAX))
    }
}

impl FieldValue<String> for Uuid {
    const EXPECTED: &'static str = "a UUID";

    fn from_raw(raw: &String) -> Option<Self> {
        Uuid::parse_str(raw).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_string()).unwrap()
    }

    fn decimal(json: &str) -> Option<Decimal> {
        Decimal::from_raw(&raw(json))
    }

    #[test]
    fn amounts_are_read_exactly_from_numbers_and_strings() {
        let exact = |text| Decimal::from_str(text).unwrap();
        assert_eq!(decimal("12.5"), Some(exact("12.5")));
        assert_eq!(decimal("\"12.50\""), Some(exact("12.50")));
        assert_eq!(decimal("1.25e1"), Some(exact("12.5")));
        assert_eq!(decimal("-3"), Some(exact("-3")));
        // Beyond what a double holds exactly: every digit survives.
        assert_eq!(
            decimal("1234567890123456.78"),
            Some(exact("1234567890123456.78"))
        );
        assert_eq!(
            decimal("\"0.1000000000000000055511151231257827\""),
            None,
            "more digits than a decimal holds is refused, never rounded"
        );
        for not_an_amount in [
            "\"12,50\"",
            "\"1e3\"",
            "\" 12\"",
            "\"\"",
            "\".5\"",
            "true",
            "[1]",
        ] {
            assert_eq!(decimal(not_an_amount), None, "{not_an_amount}");
        }
    }

    #[test]
    fn whole_numbers_saturate_instead_of_failing_on_range() {
        assert_eq!(i64::from_raw(&raw("42")), Some(42));
        assert_eq!(i64::from_raw(&raw("99999999999999999999")), Some(i64::MAX));
        assert_eq!(i64::from_raw(&raw("2.0")), None);
        assert_eq!(i64::from_raw(&raw("\"2\"")), None);
        assert_eq!(u32::from_raw(&"-4".to_string()), Some(0));
        assert_eq!(u32::from_raw(&"ten".to_string()), None);
    }

    struct Greeting {
        name: String,
        times: Option<i64>,
    }

    impl FromBody for Greeting {
        const FIELDS: &'static [&'static str] = &["name", "times"];

        fn from_body(body: &mut BodyFields) -> Option<Self> {
            let name = body.required::<String>("name");
            let times = body.optional::<i64>("times");
            let times = match times {
                Some(n) if n < 1 => body.check("times", Err("times must be at least 1".into())),
                other => other,
            };
            Some(Self { name: name?, times })
        }
    }

    fn read(json: &str) -> Result<Greeting, ApiError> {
        let members: std::collections::BTreeMap<String, Box<RawValue>> =
            serde_json::from_str(json).unwrap();
        read_body(members.into_iter().collect())
    }

    #[test]
    fn every_problem_of_a_body_is_reported_together() {
        let error = read(r#"{"times": 0, "colour": "red"}"#).err().unwrap();
        let fields: Vec<&str> = error.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["colour", "name", "times"]);
        assert_eq!(
            error.errors()[0].message,
            "colour is not a field this endpoint accepts (it accepts: name, times)"
        );
        assert_eq!(error.errors()[1].message, "name is required");
    }

    #[test]
    fn null_counts_as_absent() {
        let greeting = read(r#"{"name": "Ada", "times": null}"#).unwrap();
        assert_eq!((greeting.name.as_str(), greeting.times), ("Ada", None));
        let error = read(r#"{"name": null}"#).err().unwrap();
        assert_eq!(error.errors()[0].message, "name is required");
    }

    #[test]
    fn repeated_fields_are_refused_once_each() {
        let members = vec![
            ("name".to_string(), raw("\"a\"")),
            ("name".to_string(), raw("\"b\"")),
            ("name".to_string(), raw("\"c\"")),
        ];
        let error = read_body::<Greeting>(members).err().unwrap();
        assert_eq!(
            error.errors(),
            [FieldError::new("name", "name is given more than once")]
        );
    }
}

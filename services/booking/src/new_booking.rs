//! The create-booking request, validated at the edge into a [`NewBooking`].

use rust_decimal::Decimal;
use silo_kit::fields::{BodyFields, FromBody};

/// Most tickets one booking may hold.
pub const MAX_TICKETS: i32 = 100;
/// The largest amount the `NUMERIC(12, 2)` column holds.
const MAX_AMOUNT: Decimal = Decimal::from_parts(3_567_587_327, 232, 0, false, 2);
/// Longest event name accepted.
const MAX_EVENT_NAME: usize = 255;

/// The body of `POST /api/bookings`, validated:
/// `{eventName, ticketCount, totalAmount, currency?}`, every field at fault
/// reported at once. `totalAmount` is a JSON number or a decimal string, read
/// exactly (never through binary floating point).
#[derive(Debug, Clone, PartialEq, utoipa::ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct NewBooking {
    /// What to book, 1–255 characters (surrounding whitespace is trimmed).
    #[schema(min_length = 1, max_length = 255)]
    pub event_name: String,
    /// How many tickets, 1–100.
    #[schema(minimum = 1, maximum = 100)]
    pub ticket_count: i32,
    /// The amount: greater than 0, at most 2 decimal places, at most 9999999999.99.
    #[schema(schema_with = silo_kit::openapi::amount)]
    pub total_amount: Decimal,
    /// ISO 4217 code (any case; default `USD`).
    #[schema(value_type = Option<String>, pattern = "^[A-Za-z]{3}$", example = "EUR")]
    pub currency: String,
}

impl FromBody for NewBooking {
    const FIELDS: &'static [&'static str] =
        &["eventName", "ticketCount", "totalAmount", "currency"];

    fn from_body(body: &mut BodyFields) -> Option<Self> {
        let event_name = body.required_with("eventName", |raw: String| event_name(&raw));
        let ticket_count = body.required_with("ticketCount", ticket_count);
        let total_amount = body.required_with("totalAmount", total_amount);
        let currency = match body.optional::<String>("currency") {
            Some(raw) => body.check("currency", currency(&raw)),
            None => Some("USD".to_string()),
        };
        Some(Self {
            event_name: event_name?,
            ticket_count: ticket_count?,
            total_amount: total_amount?,
            currency: currency?,
        })
    }
}

fn event_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > MAX_EVENT_NAME {
        return Err(format!("eventName must be 1-{MAX_EVENT_NAME} characters"));
    }
    Ok(name.to_string())
}

fn ticket_count(raw: i64) -> Result<i32, String> {
    i32::try_from(raw)
        .ok()
        .filter(|n| (1..=MAX_TICKETS).contains(n))
        .ok_or_else(|| format!("ticketCount must be between 1 and {MAX_TICKETS}"))
}

fn total_amount(raw: Decimal) -> Result<Decimal, String> {
    let amount = raw.normalize();
    if amount <= Decimal::ZERO {
        return Err("totalAmount must be greater than 0".to_string());
    }
    if amount.scale() > 2 {
        return Err("totalAmount must have at most 2 decimal places".to_string());
    }
    if amount > MAX_AMOUNT {
        return Err(format!("totalAmount must not exceed {MAX_AMOUNT}"));
    }
    let mut amount = amount;
    amount.rescale(2);
    Ok(amount)
}

fn currency(raw: &str) -> Result<String, String> {
    let code = raw.trim().to_ascii_uppercase();
    if code.len() != 3 || !code.chars().all(|c| c.is_ascii_uppercase()) {
        return Err("currency must be a three-letter ISO 4217 code".to_string());
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use silo_kit::error::ApiError;

    /// `json` read as a create request, as the HTTP extractor reads it.
    fn request(json: serde_json::Value) -> Result<NewBooking, ApiError> {
        let members: Vec<(String, Box<serde_json::value::RawValue>)> = json
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, value)| {
                let raw = serde_json::value::to_raw_value(value).unwrap();
                (name.clone(), raw)
            })
            .collect();
        silo_kit::fields::read_body(members)
    }

    fn fields_of(json: serde_json::Value) -> Vec<String> {
        request(json)
            .unwrap_err()
            .errors()
            .iter()
            .map(|e| e.field.clone())
            .collect()
    }

    #[test]
    fn a_valid_request_defaults_to_usd_and_two_decimals() {
        let booking = request(serde_json::json!({
            "eventName": " Concert ", "ticketCount": 2, "totalAmount": 150
        }))
        .unwrap();
        assert_eq!(booking.event_name, "Concert");
        assert_eq!(booking.currency, "USD");
        assert_eq!(booking.total_amount.to_string(), "150.00");
    }

    #[test]
    fn decimals_beyond_cents_are_refused() {
        let json = serde_json::json!({"eventName": "x", "ticketCount": 1, "totalAmount": "1.001"});
        assert_eq!(fields_of(json), ["totalAmount"]);
        let ok =
            request(serde_json::json!({"eventName": "x", "ticketCount": 1, "totalAmount": "1.10"}));
        assert_eq!(ok.unwrap().total_amount.to_string(), "1.10");
    }

    #[test]
    fn out_of_range_fields_are_named() {
        for (json, field) in [
            (
                serde_json::json!({"eventName": "", "ticketCount": 1, "totalAmount": 1}),
                "eventName",
            ),
            (
                serde_json::json!({"eventName": "x", "ticketCount": 0, "totalAmount": 1}),
                "ticketCount",
            ),
            (
                serde_json::json!({"eventName": "x", "ticketCount": 101, "totalAmount": 1}),
                "ticketCount",
            ),
            (
                serde_json::json!({"eventName": "x", "ticketCount": 1, "totalAmount": 0}),
                "totalAmount",
            ),
            (
                serde_json::json!({"eventName": "x", "ticketCount": 1, "totalAmount": -5}),
                "totalAmount",
            ),
            (
                serde_json::json!({"eventName": "x", "ticketCount": 1, "totalAmount": "100000000000"}),
                "totalAmount",
            ),
            (
                serde_json::json!({"eventName": "x", "ticketCount": 1, "totalAmount": 1, "currency": "US"}),
                "currency",
            ),
        ] {
            assert_eq!(fields_of(json.clone()), [field], "{json}");
        }
    }

    #[test]
    fn every_field_at_fault_is_named_at_once() {
        let json = serde_json::json!({
            "eventName": "", "ticketCount": "2", "totalAmount": "12,50", "currency": "EURO"
        });
        assert_eq!(
            fields_of(json),
            ["eventName", "ticketCount", "totalAmount", "currency"]
        );
    }

    #[test]
    fn the_largest_storable_amount_is_accepted() {
        let ok = request(
            serde_json::json!({"eventName": "x", "ticketCount": 1, "totalAmount": "9999999999.99"}),
        );
        assert!(ok.is_ok());
    }
}

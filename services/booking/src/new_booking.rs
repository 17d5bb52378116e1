//! The create-booking request, validated at the edge into a [`NewBooking`].

use rust_decimal::Decimal;
use serde::Deserialize;
use silo_kit::error::ApiError;

/// Most tickets one booking may hold.
pub const MAX_TICKETS: i32 = 100;
/// The largest amount the `NUMERIC(12, 2)` column holds.
const MAX_AMOUNT: Decimal = Decimal::from_parts(3_567_587_327, 232, 0, false, 2);
/// Longest event name accepted.
const MAX_EVENT_NAME: usize = 255;

/// The body of `POST /api/bookings`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateBookingRequest {
    /// What to book.
    pub event_name: String,
    /// How many tickets (1–100).
    pub ticket_count: i64,
    /// The amount (> 0, at most 2 decimals); a JSON number or a string.
    pub total_amount: Decimal,
    /// ISO 4217 currency, `USD` when absent.
    #[serde(default)]
    pub currency: Option<String>,
}

/// A create request that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBooking {
    /// What to book (trimmed).
    pub event_name: String,
    /// How many tickets.
    pub ticket_count: i32,
    /// The amount, scale 2.
    pub total_amount: Decimal,
    /// Upper-case ISO 4217 code.
    pub currency: String,
}

impl CreateBookingRequest {
    /// Checks every field; the error names the first field at fault.
    pub fn validate(self) -> Result<NewBooking, ApiError> {
        let event_name = self.event_name.trim().to_string();
        if event_name.is_empty() || event_name.chars().count() > MAX_EVENT_NAME {
            return Err(ApiError::validation(
                "eventName",
                format!("eventName must be 1-{MAX_EVENT_NAME} characters"),
            ));
        }
        let ticket_count = i32::try_from(self.ticket_count)
            .ok()
            .filter(|n| (1..=MAX_TICKETS).contains(n))
            .ok_or_else(|| {
                ApiError::validation(
                    "ticketCount",
                    format!("ticketCount must be between 1 and {MAX_TICKETS}"),
                )
            })?;
        let amount = self.total_amount.normalize();
        if amount <= Decimal::ZERO {
            return Err(ApiError::validation(
                "totalAmount",
                "totalAmount must be greater than 0",
            ));
        }
        if amount.scale() > 2 {
            return Err(ApiError::validation(
                "totalAmount",
                "totalAmount must have at most 2 decimal places",
            ));
        }
        if amount > MAX_AMOUNT {
            return Err(ApiError::validation(
                "totalAmount",
                format!("totalAmount must not exceed {MAX_AMOUNT}"),
            ));
        }
        let mut total_amount = amount;
        total_amount.rescale(2);
        let currency = match self.currency {
            None => "USD".to_string(),
            Some(code) => {
                let code = code.trim().to_ascii_uppercase();
                if code.len() != 3 || !code.chars().all(|c| c.is_ascii_uppercase()) {
                    return Err(ApiError::validation(
                        "currency",
                        "currency must be a three-letter ISO 4217 code",
                    ));
                }
                code
            }
        };
        Ok(NewBooking {
            event_name,
            ticket_count,
            total_amount,
            currency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> Result<NewBooking, ApiError> {
        serde_json::from_value::<CreateBookingRequest>(json)
            .unwrap()
            .validate()
    }

    fn field_of(json: serde_json::Value) -> String {
        request(json).unwrap_err().field().unwrap().to_string()
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
        assert_eq!(field_of(json), "totalAmount");
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
            assert_eq!(field_of(json.clone()), field, "{json}");
        }
    }

    #[test]
    fn the_largest_storable_amount_is_accepted() {
        let ok = request(
            serde_json::json!({"eventName": "x", "ticketCount": 1, "totalAmount": "9999999999.99"}),
        );
        assert!(ok.is_ok());
    }
}

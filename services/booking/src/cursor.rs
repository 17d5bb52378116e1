//! Opaque cursors for newest-first pagination: the `(createdAt, id)` of the last item seen.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A position in the newest-first list of bookings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The last item's creation time.
    pub created_at: DateTime<Utc>,
    /// The last item's id (ties on `created_at`).
    pub id: Uuid,
}

/// A cursor string that this service did not produce.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cursor is not one this service returned")]
pub struct InvalidCursor;

impl Cursor {
    /// The opaque string form.
    pub fn encode(&self) -> String {
        let raw = format!("{}_{}", self.created_at.timestamp_micros(), self.id);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Parses the opaque string form.
    pub fn decode(text: &str) -> Result<Self, InvalidCursor> {
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| InvalidCursor)?;
        let raw = String::from_utf8(bytes).map_err(|_| InvalidCursor)?;
        let (micros, id) = raw.split_once('_').ok_or(InvalidCursor)?;
        let micros: i64 = micros.parse().map_err(|_| InvalidCursor)?;
        Ok(Self {
            created_at: DateTime::from_timestamp_micros(micros).ok_or(InvalidCursor)?,
            id: Uuid::parse_str(id).map_err(|_| InvalidCursor)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips() {
        let cursor = Cursor {
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: Uuid::new_v4(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(Cursor::decode("not a cursor"), Err(InvalidCursor));
        assert_eq!(
            Cursor::decode(&URL_SAFE_NO_PAD.encode("12_x")),
            Err(InvalidCursor)
        );
    }
}

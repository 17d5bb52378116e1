//! Correlation ids: carried in the `X-Correlation-ID` HTTP header, in NATS
//! message headers and in every event envelope.

use uuid::Uuid;

/// The HTTP and NATS header carrying the correlation id.
pub const CORRELATION_ID_HEADER: &str = "X-Correlation-ID";

/// A correlation id: taken from the caller when well-formed, else generated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CorrelationId(String);

impl CorrelationId {
    /// A fresh id.
    pub fn generate() -> Self {
        Self(Uuid::now_v7().to_string())
    }

    /// Accepts a caller's id if it is 1–128 characters of `[A-Za-z0-9._:-]`
    /// (anything else could forge log lines or bloat headers).
    pub fn parse(value: &str) -> Option<Self> {
        let valid = !value.is_empty()
            && value.len() <= 128
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
        valid.then(|| Self(value.to_string()))
    }

    /// The caller's id when valid, else a fresh one.
    pub fn from_header_or_generate(value: Option<&str>) -> Self {
        value.and_then(Self::parse).unwrap_or_else(Self::generate)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<CorrelationId> for String {
    fn from(id: CorrelationId) -> Self {
        id.0
    }
}

impl From<&CorrelationId> for String {
    fn from(id: &CorrelationId) -> Self {
        id.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::CorrelationId;

    #[test]
    fn well_formed_caller_id_is_kept() {
        let id = CorrelationId::from_header_or_generate(Some("req-42.a:b_c"));
        assert_eq!(id.as_str(), "req-42.a:b_c");
    }

    #[test]
    fn malformed_or_oversized_caller_id_is_replaced() {
        let forged = CorrelationId::from_header_or_generate(Some("a\nlevel=error"));
        assert_ne!(forged.as_str(), "a\nlevel=error");
        let long = "x".repeat(129);
        assert_ne!(
            CorrelationId::from_header_or_generate(Some(&long)).as_str(),
            long
        );
        assert!(
            !CorrelationId::from_header_or_generate(None)
                .as_str()
                .is_empty()
        );
    }
}

//! The payment gateway boundary and the deterministic simulated gateway.

use crate::payment::{ChargeResult, PaymentMethod};
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// One charge request; `idempotency_key` makes a repeated request return the first result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    /// Identifies the attempt: the same key never charges twice.
    pub idempotency_key: String,
    /// The amount to capture.
    pub amount: Decimal,
    /// ISO currency code.
    pub currency: String,
}

/// Why the gateway could not give an answer (a decline is an answer, not an error).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The gateway could not be reached or timed out; the attempt may be repeated.
    #[error("payment gateway unavailable: {0}")]
    Unavailable(String),
}

/// A payment gateway: captures amounts and refunds transactions.
#[async_trait::async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// Charges once per idempotency key; a repeated key returns the first result.
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeResult, GatewayError>;
    /// Refunds a captured transaction; refunding twice is harmless.
    async fn refund(&self, transaction_id: &str) -> Result<(), GatewayError>;
}

/// Settings of the simulated gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedGatewayConfig {
    /// Amounts strictly above this are declined.
    pub decline_above: Decimal,
    /// Added to every call, to imitate a remote gateway.
    pub latency: Duration,
}

impl Default for SimulatedGatewayConfig {
    fn default() -> Self {
        Self {
            decline_above: Decimal::from(10_000),
            latency: Duration::ZERO,
        }
    }
}

/// A deterministic in-process gateway: declines amounts above a threshold, accepts the rest,
/// and keeps a ledger of the captures it made so tests can count charges.
#[derive(Debug, Default)]
pub struct SimulatedGateway {
    config: SimulatedGatewayConfig,
    ledger: Mutex<Ledger>,
}

#[derive(Debug, Default)]
struct Ledger {
    results: HashMap<String, ChargeResult>,
    captures: u64,
    refunds: HashMap<String, u64>,
}

/// The card the simulated gateway charges.
fn simulated_card() -> PaymentMethod {
    PaymentMethod {
        kind: "CreditCard".to_string(),
        last4: "4242".to_string(),
        brand: "Visa".to_string(),
    }
}

impl SimulatedGateway {
    /// A gateway with these settings.
    pub fn new(config: SimulatedGatewayConfig) -> Self {
        Self {
            config,
            ledger: Mutex::default(),
        }
    }

    /// How many amounts were actually captured (repeated idempotency keys are not counted).
    pub fn captures(&self) -> u64 {
        self.ledger.lock().map(|l| l.captures).unwrap_or_default()
    }

    /// How many times a refund was asked for this transaction.
    pub fn refunds_of(&self, transaction_id: &str) -> u64 {
        self.ledger
            .lock()
            .map(|l| l.refunds.get(transaction_id).copied().unwrap_or(0))
            .unwrap_or_default()
    }

    fn decide(&self, request: &ChargeRequest) -> ChargeResult {
        if request.amount > self.config.decline_above {
            ChargeResult::Declined {
                reason: format!(
                    "amount {} {} exceeds the card limit of {}",
                    request.amount, request.currency, self.config.decline_above
                ),
                method: simulated_card(),
            }
        } else {
            ChargeResult::Succeeded {
                transaction_id: format!("txn_{}", uuid::Uuid::now_v7().simple()),
                method: simulated_card(),
            }
        }
    }
}

#[async_trait::async_trait]
impl PaymentGateway for SimulatedGateway {
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeResult, GatewayError> {
        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }
        let mut ledger = self
            .ledger
            .lock()
            .map_err(|_| GatewayError::Unavailable("simulated ledger poisoned".to_string()))?;
        if let Some(previous) = ledger.results.get(&request.idempotency_key) {
            return Ok(previous.clone());
        }
        let result = self.decide(request);
        if matches!(result, ChargeResult::Succeeded { .. }) {
            ledger.captures += 1;
        }
        ledger
            .results
            .insert(request.idempotency_key.clone(), result.clone());
        Ok(result)
    }

    async fn refund(&self, transaction_id: &str) -> Result<(), GatewayError> {
        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }
        let mut ledger = self
            .ledger
            .lock()
            .map_err(|_| GatewayError::Unavailable("simulated ledger poisoned".to_string()))?;
        *ledger
            .refunds
            .entry(transaction_id.to_string())
            .or_default() += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(key: &str, amount: i64) -> ChargeRequest {
        ChargeRequest {
            idempotency_key: key.to_string(),
            amount: Decimal::from(amount),
            currency: "USD".to_string(),
        }
    }

    #[tokio::test]
    async fn amounts_above_the_threshold_are_declined_with_a_reason() {
        let gateway = SimulatedGateway::new(SimulatedGatewayConfig {
            decline_above: Decimal::from(100),
            latency: Duration::ZERO,
        });
        let declined = gateway.charge(&request("a", 101)).await.unwrap();
        assert!(declined.failure_reason().unwrap().contains("exceeds"));
        let accepted = gateway.charge(&request("b", 100)).await.unwrap();
        assert!(accepted.transaction_id().unwrap().starts_with("txn_"));
        assert_eq!(gateway.captures(), 1);
    }

    #[tokio::test]
    async fn a_repeated_idempotency_key_returns_the_first_result_without_charging_again() {
        let gateway = SimulatedGateway::default();
        let first = gateway.charge(&request("same", 50)).await.unwrap();
        let second = gateway.charge(&request("same", 50)).await.unwrap();
        assert_eq!(first, second);
        assert_eq!(gateway.captures(), 1);
    }

    #[test]
    fn the_default_threshold_is_ten_thousand_and_latency_zero() {
        let config = SimulatedGatewayConfig::default();
        assert_eq!(config.decline_above, Decimal::from(10_000));
        assert!(config.latency.is_zero());
    }
}

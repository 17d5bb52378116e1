//! Settles charge attempts whose claimer died.
//!
//! Every attempt is claimed in the store when it starts (a payment opened for a booking, or a
//! retry moving a `FAILED` payment back to `PENDING`). A crash between the claim and the
//! recorded outcome would leave the payment `PENDING` with nobody to finish it: the
//! consumer's event is redelivered, but a retry came from an HTTP call that is gone. This task
//! re-claims, at start-up and then periodically, the `PENDING` payments whose claim is older
//! than [`RecoveryPolicy::abandoned_after`], repeats the same charge request (same idempotency key, so the
//! gateway does not take the money twice) and records the outcome with its event through the
//! outbox, exactly as the consumer would.

use crate::charging::Charging;
use crate::payment::now_millis;
use chrono::{DateTime, Utc};
use silo_kit::shutdown::Shutdown;
use std::time::Duration;

/// When an attempt counts as abandoned, and how often to look for such attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryPolicy {
    /// How old a claim must be before its attempt counts as abandoned: far longer than a
    /// charge takes, so a live attempt is left alone (and if one is taken over anyway, the
    /// repeated request and the attempt-guarded outcome keep it to one charge and one event).
    pub abandoned_after: Duration,
    /// How often the store is searched for abandoned attempts.
    pub sweep_interval: Duration,
}

impl Default for RecoveryPolicy {
    fn default() -> Self {
        Self {
            abandoned_after: Duration::from_secs(60),
            sweep_interval: Duration::from_secs(15),
        }
    }
}

/// Payments taken over per store round trip.
pub const BATCH: usize = 32;

/// Settles abandoned attempts now and then every `policy.sweep_interval` until `shutdown`
/// fires.
pub async fn run(charging: Charging, policy: RecoveryPolicy, shutdown: Shutdown) {
    let abandoned_after =
        chrono::Duration::from_std(policy.abandoned_after).unwrap_or(chrono::Duration::MAX);
    loop {
        let abandoned_before = now_millis()
            .checked_sub_signed(abandoned_after)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let full = match charging.settle_abandoned(abandoned_before, BATCH).await {
            Ok(recovered) => {
                if recovered.claimed > 0 {
                    tracing::info!(
                        claimed = recovered.claimed,
                        settled = recovered.settled,
                        "settled abandoned charge attempts"
                    );
                }
                recovered.claimed >= BATCH
            }
            Err(error) => {
                tracing::warn!(error = %error, "recovery of abandoned charge attempts failed");
                false
            }
        };
        if shutdown.is_triggered() {
            break;
        }
        if full {
            // More may wait; the ones just taken over are claimed afresh, so they are not
            // picked again.
            continue;
        }
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tokio::time::sleep(policy.sweep_interval) => {}
        }
    }
    tracing::info!("charge recovery stopped");
}

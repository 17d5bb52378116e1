//! Bounded retry of start-up connections.

use crate::config::redact_credentials;
use std::future::Future;
use std::time::{Duration, Instant};

/// How long and how often to retry a start-up connection.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Give up after this long.
    pub deadline: Duration,
    /// First pause between attempts (doubles, capped at 2 s).
    pub initial_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(30),
            initial_delay: Duration::from_millis(200),
        }
    }
}

impl RetryPolicy {
    /// A policy giving up after `deadline`.
    pub fn within(deadline: Duration) -> Self {
        Self {
            deadline,
            ..Self::default()
        }
    }

    /// Runs `attempt` until it succeeds or the deadline passes; returns the last
    /// error and the number of attempts on failure. `what` names the target in logs.
    pub async fn run<T, E, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, (E, u32)>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        let started = Instant::now();
        let mut delay = self.initial_delay;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) => {
                    if started.elapsed() + delay > self.deadline {
                        return Err((error, attempts));
                    }
                    // The error may echo the URL, password included.
                    let error = redact_credentials(&error.to_string());
                    tracing::warn!(target_name = what, attempt = attempts, error = %error, "connection failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

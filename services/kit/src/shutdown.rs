//! A shutdown signal shared by the HTTP server and the background tasks.

use std::sync::Arc;
use tokio::sync::watch;

/// Cloneable shutdown flag: [`trigger`](Self::trigger) once, every clone's
/// [`wait`](Self::wait) returns.
#[derive(Debug, Clone)]
pub struct Shutdown {
    sender: Arc<watch::Sender<bool>>,
    receiver: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A signal that has not fired.
    pub fn new() -> Self {
        let (sender, receiver) = watch::channel(false);
        Self {
            sender: Arc::new(sender),
            receiver,
        }
    }

    /// Fires the signal.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    /// Whether the signal has fired.
    pub fn is_triggered(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Returns once the signal has fired.
    pub async fn wait(&self) {
        let mut receiver = self.receiver.clone();
        // An error means every sender is gone, which cannot happen while `self` holds one.
        let _ = receiver.wait_for(|fired| *fired).await;
    }
}

/// Returns on SIGTERM or Ctrl-C.
pub async fn os_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                tokio::select! {
                    _ = sigterm.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the service");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::Shutdown;

    #[tokio::test]
    async fn every_clone_observes_the_trigger() {
        let shutdown = Shutdown::new();
        let clone = shutdown.clone();
        assert!(!clone.is_triggered());
        let waiter = tokio::spawn(async move { clone.wait().await });
        shutdown.trigger();
        waiter.await.unwrap();
        assert!(shutdown.is_triggered());
    }
}

//! The running parts of a service: its HTTP server and background tasks
//! (relay, consumers), all stopped by one [`Shutdown`].
//!
//! A service's `Application::build` binds with [`bind`], spawns its
//! background tasks, then wraps everything in a [`RunningService`] (usually
//! through [`crate::startup::Launch::serve`]); tests and binaries use its
//! address, shutdown handle and `run_until_stopped`/`stop`, which take `&self`
//! so that an `Application` can hand them out by `Deref`.

use crate::server::{Draining, ServerLimits};
use crate::shutdown::Shutdown;
use axum::Router;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// The listen address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address}: {reason}")]
pub struct BindError {
    /// The requested address.
    pub address: SocketAddr,
    /// The OS error.
    pub reason: String,
}

/// Binds `address` (port 0 picks a free port); returns the listener and the bound address.
pub async fn bind(address: SocketAddr) -> Result<(TcpListener, SocketAddr), BindError> {
    let error = |e: std::io::Error| BindError {
        address,
        reason: e.to_string(),
    };
    let listener = TcpListener::bind(address).await.map_err(error)?;
    let bound = listener.local_addr().map_err(error)?;
    Ok((listener, bound))
}

/// An HTTP server plus background tasks sharing one shutdown signal.
#[derive(Debug)]
pub struct RunningService {
    address: SocketAddr,
    shutdown: Shutdown,
    draining: Draining,
    drain: std::time::Duration,
    /// Emptied by the first `run_until_stopped`; later callers wait on the lock until it is done.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl RunningService {
    /// Serves `router` on `listener` within `limits` and adopts the already spawned
    /// `background` tasks; all of them must stop when `shutdown` fires. `draining` is the flag
    /// the router's `/readyz` reads.
    pub fn start(
        (listener, address): (TcpListener, SocketAddr),
        router: Router,
        shutdown: Shutdown,
        background: Vec<JoinHandle<()>>,
        limits: ServerLimits,
        draining: Draining,
    ) -> Self {
        let mut tasks = background;
        let server_shutdown = shutdown.clone();
        let router = crate::server::limited(router, &limits);
        tasks.push(tokio::spawn(async move {
            if let Err(error) =
                crate::server::serve(listener, router, server_shutdown, limits).await
            {
                tracing::error!(error = %error, "HTTP server failed");
            }
        }));
        Self {
            address,
            shutdown,
            draining,
            drain: limits.drain,
            tasks: Mutex::new(tasks),
        }
    }

    /// The graceful stop of a SIGTERM: `/readyz` fails while requests are still served for
    /// the drain period, then the service stops as [`Self::stop`] does.
    pub async fn drain_and_stop(&self) {
        tracing::info!(drain_ms = self.drain.as_millis() as u64, "draining");
        self.draining.begin();
        tokio::time::sleep(self.drain).await;
        self.stop().await;
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// A handle that stops the service when triggered (binaries wire it to SIGTERM).
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Waits until the server and every task have stopped (after the shutdown signal).
    pub async fn run_until_stopped(&self) {
        let mut tasks = self.tasks.lock().await;
        for task in tasks.drain(..) {
            if let Err(error) = task.await {
                tracing::error!(error = %error, "service task failed");
            }
        }
    }

    /// Stops taking requests, lets in-flight requests and the current outbox
    /// batch finish, and waits for everything to stop.
    pub async fn stop(&self) {
        self.shutdown.trigger();
        self.run_until_stopped().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::sync::{Arc, Mutex};
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn shutdown_lets_the_in_flight_request_finish_and_refuses_new_ones() {
        let (entered_tx, entered_rx) = oneshot::channel::<()>();
        let (release_tx, release_rx) = oneshot::channel::<()>();
        let entered = Arc::new(Mutex::new(Some(entered_tx)));
        let release = Arc::new(Mutex::new(Some(release_rx)));
        let router = Router::new().route(
            "/slow",
            get(move || {
                let entered = entered.lock().unwrap().take();
                let release = release.lock().unwrap().take();
                async move {
                    if let Some(entered) = entered {
                        let _ = entered.send(());
                    }
                    if let Some(release) = release {
                        let _ = release.await;
                    }
                    "done"
                }
            }),
        );
        let (listener, address) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let service = RunningService::start(
            (listener, address),
            router,
            Shutdown::new(),
            vec![],
            ServerLimits::default(),
            Draining::default(),
        );
        let shutdown = service.shutdown_handle();
        let in_flight = tokio::spawn(async move {
            reqwest::get(format!("http://{address}/slow"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        });
        entered_rx.await.unwrap();
        shutdown.trigger();
        let stopped = tokio::spawn(async move { service.run_until_stopped().await });
        // The listener is closed once shutdown begins; new connections fail.
        let mut refused = false;
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(address).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(refused, "new connections are refused during shutdown");
        release_tx.send(()).unwrap();
        assert_eq!(in_flight.await.unwrap(), "done");
        stopped.await.unwrap();
    }
}

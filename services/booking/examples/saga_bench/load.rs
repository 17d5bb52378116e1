//! The offered load: bookings created a number at a time, at a rate (open loop) or as fast as
//! they are answered, by whatever [`Creates`] them (the HTTP API, or the repository alone).

use crate::BenchResult;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Makes bookings for a run.
pub trait Creates: Send + Sync + 'static {
    /// Creates the run's booking number `index`, for the event `event_name`; `true` once it
    /// is stored.
    fn create(&self, index: usize, event_name: &str) -> impl Future<Output = bool> + Send;
}

/// How many bookings, how many in flight at once, and at what offered rate.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Bookings to create.
    pub total: usize,
    /// Creates in flight at once.
    pub concurrency: usize,
    /// Bookings per second (open loop); as fast as possible when `None`.
    pub rate: Option<f64>,
}

/// What a run of creates measured.
#[derive(Debug)]
pub struct Driven {
    /// Latencies of the bookings created, in milliseconds, sorted.
    pub latencies: Vec<f64>,
    /// Creates that failed.
    pub failures: usize,
    /// From the first create sent to the last answered.
    pub elapsed: Duration,
}

impl Driven {
    /// Bookings created per second.
    pub fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// Creates `load.total` bookings for `event_name`, `load.concurrency` at a time; with a rate,
/// booking `i` is sent no earlier than `i / rate` seconds after the start.
pub async fn drive<C: Creates>(
    creates: &Arc<C>,
    event_name: &str,
    load: Load,
) -> BenchResult<Driven> {
    let event_name: Arc<str> = Arc::from(event_name);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..load.concurrency.max(1) {
        let (creates, event_name, next) = (creates.clone(), event_name.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0usize;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= load.total {
                    break;
                }
                if let Some(rate) = load.rate {
                    let due = started + Duration::from_secs_f64(index as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent = Instant::now();
                if creates.create(index, &event_name).await {
                    latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                } else {
                    failures += 1;
                }
            }
            (latencies, failures)
        }));
    }
    let mut driven = Driven {
        latencies: Vec::with_capacity(load.total),
        failures: 0,
        elapsed: Duration::ZERO,
    };
    for worker in workers {
        let (latencies, failures) = worker.await?;
        driven.latencies.extend(latencies);
        driven.failures += failures;
    }
    driven.elapsed = started.elapsed();
    driven.latencies.sort_by(f64::total_cmp);
    Ok(driven)
}

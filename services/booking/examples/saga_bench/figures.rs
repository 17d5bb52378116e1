//! One phase of the bench — a warm-up, then N bookings at one offered rate, waited for until
//! the saga has settled in both databases — and what it measured, read from the timestamps
//! booking-service's and payment-service's databases keep. The same for the services and for
//! the floor, which writes the same rows.

use crate::BenchResult;
use crate::load::{Creates, Driven, Load, drive};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A saga to drive: how bookings are created, and the two databases it writes.
pub struct Saga<C> {
    /// What creates the bookings.
    pub creates: Arc<C>,
    /// booking-service's database.
    pub booking: PgPool,
    /// payment-service's database.
    pub payment: PgPool,
    /// Failures of the saga's own machinery that no database shows (the floor's pipeline).
    pub failures: Arc<AtomicUsize>,
}

/// What one phase measured.
#[derive(Debug)]
pub struct Phase {
    /// The offered rate (`None`: unbounded).
    pub rate: Option<f64>,
    /// The creates.
    pub created: Driven,
    /// Bookings that reached `CONFIRMED`.
    pub confirmed: i64,
    /// Saga latency (create → `CONFIRMED`), milliseconds.
    pub saga_p50: f64,
    /// Saga latency, 99th percentile, milliseconds.
    pub saga_p99: f64,
    /// Sagas per second: confirmed bookings over the time from the first create to the
    /// last confirmation.
    pub saga_throughput: f64,
    /// Outbox lag (written → published), 99th percentile, milliseconds: booking, payment.
    pub lag_p99: (f64, f64),
    /// Where the time goes: each stage's durations, milliseconds, sorted.
    pub stages: Vec<(&'static str, Vec<f64>)>,
}

impl Phase {
    /// Whether the creates kept up with the offered rate (within 5 %): latency at a rate the
    /// machine could not offer is queueing, not the saga's own.
    pub fn sustained(&self) -> bool {
        self.rate
            .is_none_or(|rate| self.created.throughput() >= 0.95 * rate)
    }
}

/// The label of an offered rate.
pub fn rate_label(rate: Option<f64>) -> String {
    rate.map_or("unbounded".to_string(), |r| format!("{r}/s"))
}

/// The value at percentile `p` of `sorted`.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Warms up with `warmup` bookings at the same load (not counted), then creates `load.total`
/// bookings named `event_name` and waits until their saga has settled.
pub async fn run_phase<C: Creates>(
    saga: &Saga<C>,
    event_name: &str,
    load: Load,
    warmup: usize,
) -> BenchResult<Phase> {
    if warmup > 0 {
        drive(
            &saga.creates,
            "Warmup",
            Load {
                total: warmup,
                ..load
            },
        )
        .await?;
        settle(saga, "Warmup").await?;
    }
    let from = (
        outbox_position(&saga.booking).await?,
        outbox_position(&saga.payment).await?,
    );
    let created = drive(&saga.creates, event_name, load).await?;
    settle(saga, event_name).await?;
    let (confirmed, saga_p50, saga_p99, span): (i64, Option<f64>, Option<f64>, Option<f64>) =
        sqlx::query_as(
            "SELECT count(*), \
                 percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at)), \
                 percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at)), \
                 extract(epoch FROM max(updated_at) - min(created_at))::float8 \
             FROM bookings WHERE status = 'CONFIRMED' AND event_name = $1",
        )
        .bind(event_name)
        .fetch_one(&saga.booking)
        .await?;
    Ok(Phase {
        rate: load.rate,
        created,
        confirmed,
        saga_p50: saga_p50.unwrap_or(f64::NAN) * 1000.0,
        saga_p99: saga_p99.unwrap_or(f64::NAN) * 1000.0,
        saga_throughput: confirmed as f64 / span.unwrap_or(f64::NAN),
        lag_p99: (
            outbox_lag_p99(&saga.booking, from.0).await?,
            outbox_lag_p99(&saga.payment, from.1).await?,
        ),
        stages: saga_stages(&saga.booking, &saga.payment, event_name).await?,
    })
}

/// Waits until no booking of `event_name` is `PENDING`, both outboxes are published and
/// payment-service knows every booking's fate: nothing of the phase is left to overlap the next.
async fn settle<C>(saga: &Saga<C>, event_name: &str) -> BenchResult<()> {
    let started = Instant::now();
    loop {
        let pending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM bookings WHERE status = 'PENDING' AND event_name = $1",
        )
        .bind(event_name)
        .fetch_one(&saga.booking)
        .await?;
        let undecided: i64 =
            sqlx::query_scalar("SELECT count(*) FROM payments WHERE booking_status = 'PENDING'")
                .fetch_one(&saga.payment)
                .await?;
        let unpublished =
            outbox_backlog(&saga.booking).await? + outbox_backlog(&saga.payment).await?;
        if pending + undecided + unpublished == 0 {
            return Ok(());
        }
        let failures = saga.failures.load(Ordering::Relaxed);
        if failures > 0 {
            return Err(
                format!("{failures} failures in the saga's pipeline (logged above)").into(),
            );
        }
        if started.elapsed() > Duration::from_secs(300) {
            return Err(format!(
                "not settled after 300 s: {pending} bookings PENDING, {undecided} payments \
                 without their booking's fate, {unpublished} outbox records unpublished"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Outbox records of `pool`'s database not yet published.
pub async fn outbox_backlog(pool: &PgPool) -> BenchResult<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(pool)
            .await?,
    )
}

/// The highest outbox position written so far in `pool`'s database.
async fn outbox_position(pool: &PgPool) -> BenchResult<i64> {
    Ok(
        sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM outbox")
            .fetch_one(pool)
            .await?,
    )
}

/// The 99th percentile of written → published over the records after position `from`, ms.
async fn outbox_lag_p99(pool: &PgPool, from: i64) -> BenchResult<f64> {
    let p99: Option<f64> = sqlx::query_scalar(
        "SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM published_at - created_at)) \
         FROM outbox WHERE published_at IS NOT NULL AND seq > $1",
    )
    .bind(from)
    .fetch_one(pool)
    .await?;
    Ok(p99.unwrap_or(f64::NAN) * 1000.0)
}

type Times = HashMap<String, (f64, f64)>;

/// `(bookingId, t1, t2)` rows as a map, times in epoch seconds.
async fn times(pool: &PgPool, sql: &str, event_name: Option<&str>) -> BenchResult<Times> {
    let mut query = sqlx::query_as::<_, (String, f64, f64)>(sql);
    if let Some(event_name) = event_name {
        query = query.bind(event_name);
    }
    let rows = query.fetch_all(pool).await?;
    Ok(rows.into_iter().map(|(id, a, b)| (id, (a, b))).collect())
}

/// The saga's stages, in order.
const STAGES: [&str; 5] = [
    "booking insert -> BookingCreated published",
    "BookingCreated published -> payment opened",
    "payment opened -> charged, outcome committed",
    "outcome committed -> PaymentSucceeded published",
    "PaymentSucceeded published -> booking CONFIRMED",
];

/// Where the time of each `CONFIRMED` booking of `event_name` went, from the timestamps both
/// databases keep.
async fn saga_stages(
    booking: &PgPool,
    payment: &PgPool,
    event_name: &str,
) -> BenchResult<Vec<(&'static str, Vec<f64>)>> {
    let epoch = |column: &str| format!("extract(epoch FROM {column})::float8");
    let (created, published) = (epoch("created_at"), epoch("published_at"));
    let bookings = times(booking, &format!(
        "SELECT id::text, {created}, {} FROM bookings WHERE status = 'CONFIRMED' AND event_name = $1",
        epoch("updated_at")), Some(event_name)).await?;
    let created_out = times(
        booking,
        &format!(
            "SELECT payload->'data'->>'bookingId', {created}, {published} FROM outbox \
         WHERE event_type = 'BookingCreated' AND published_at IS NOT NULL"
        ),
        None,
    )
    .await?;
    let payments = times(
        payment,
        &format!(
            "SELECT booking_id::text, {created}, {} FROM payments",
            epoch("updated_at")
        ),
        None,
    )
    .await?;
    let paid_out = times(
        payment,
        &format!(
            "SELECT payload->'data'->>'bookingId', {created}, {published} FROM outbox \
         WHERE published_at IS NOT NULL"
        ),
        None,
    )
    .await?;
    let mut stages: Vec<(&'static str, Vec<f64>)> =
        STAGES.iter().map(|name| (*name, Vec::new())).collect();
    for (id, (created, confirmed)) in &bookings {
        let (Some(out), Some(pay), Some(paid)) =
            (created_out.get(id), payments.get(id), paid_out.get(id))
        else {
            continue;
        };
        // payments.updated_at moves again later (booking fate), so the outcome's outbox time is used.
        let points = [*created, out.1, pay.0, paid.0, paid.1, *confirmed];
        for (i, stage) in stages.iter_mut().enumerate() {
            stage.1.push((points[i + 1] - points[i]) * 1000.0);
        }
    }
    for (_, millis) in &mut stages {
        millis.sort_by(f64::total_cmp);
    }
    Ok(stages)
}

/// Prints what a phase measured, under `title`.
pub fn print_phase(title: &str, phase: &Phase) {
    let created = &phase.created;
    if phase.sustained() {
        println!("{title} at {}:", rate_label(phase.rate));
    } else {
        println!(
            "{title} at {} (NOT SUSTAINED: {:.1} creates/s):",
            rate_label(phase.rate),
            created.throughput()
        );
    }
    println!(
        "  create latency   p50 {:8.2} ms   p99 {:8.2} ms   ({:.1} creates/s, {} created, {} failed, {:.2} s)",
        percentile(&created.latencies, 50.0),
        percentile(&created.latencies, 99.0),
        created.throughput(),
        created.latencies.len(),
        created.failures,
        created.elapsed.as_secs_f64()
    );
    println!(
        "  saga latency     p50 {:8.2} ms   p99 {:8.2} ms   ({:.1} sagas/s, {} confirmed)",
        phase.saga_p50, phase.saga_p99, phase.saga_throughput, phase.confirmed
    );
    println!(
        "  outbox lag       p99 {:8.2} ms (booking)   {:8.2} ms (payment)",
        phase.lag_p99.0, phase.lag_p99.1
    );
    let means: Vec<f64> = phase
        .stages
        .iter()
        .map(|(_, millis)| millis.iter().sum::<f64>() / millis.len().max(1) as f64)
        .collect();
    let total: f64 = means.iter().sum();
    for ((stage, millis), mean) in phase.stages.iter().zip(&means) {
        println!(
            "  stage {stage:<48} p50 {:8.2} ms   p99 {:8.2} ms   mean {mean:8.2} ms ({:3.0}%)",
            percentile(millis, 50.0),
            percentile(millis, 99.0),
            100.0 * mean / total
        );
    }
}

/// Prints the main figures of a phase in one line.
pub fn print_phase_brief(title: &str, event_name: &str, phase: &Phase) {
    println!(
        "{title}, {event_name}: {:.1} sagas/s, saga p50 {:.2} ms p99 {:.2} ms, {:.1} creates/s",
        phase.saga_throughput,
        phase.saga_p50,
        phase.saga_p99,
        phase.created.throughput()
    );
}

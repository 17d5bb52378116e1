//! The saga benchmark behind `tests/bench/saga`: user-service, booking-service and
//! payment-service in-process against the local PostgreSQL and NATS; N bookings through the
//! HTTP API, then the floor (the bare booking + outbox insert transaction) on the same database.

use booking_service::new_booking::NewBooking;
use booking_service::repository::BookingRepository;
use clap::Parser;
use payment_service::gateway::SimulatedGatewayConfig;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use silo_kit::config::{BaseConfig, Secret};
use silo_kit::correlation::CorrelationId;
use silo_kit::events::{EventNamespace, StreamKind};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Drive bookings through the three services and compare with the database floor.
#[derive(Debug, Parser)]
struct Args {
    /// Bookings to create.
    #[arg(long, default_value_t = 2000)]
    bookings: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Offered load in bookings per second (open loop); as fast as possible when absent.
    #[arg(long)]
    rate: Option<f64>,
    /// Distinct users making the bookings.
    #[arg(long, default_value_t = 20)]
    users: usize,
    /// Bookings made and settled at the same rate before the measured run, and not counted:
    /// the first of a fresh process meet cold connections, caches and consumers.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
}

/// The event name of the measured bookings; warm-up bookings have another.
const MEASURED: &str = "Bench";

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn base(database_url: &str, broker_url: &str) -> BaseConfig {
    BaseConfig {
        listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        database_url: Secret::new(database_url),
        broker_url: Secret::new(broker_url),
        server: silo_kit::server::ServerLimits::default(),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn sql_percentiles(pool: &PgPool, expression: &str, from: &str) -> BenchResult<(f64, f64)> {
    let sql = format!(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY {expression}), \
                percentile_cont(0.99) WITHIN GROUP (ORDER BY {expression}) FROM {from}"
    );
    let (p50, p99): (Option<f64>, Option<f64>) = sqlx::query_as(&sql).fetch_one(pool).await?;
    Ok((
        p50.unwrap_or(f64::NAN) * 1000.0,
        p99.unwrap_or(f64::NAN) * 1000.0,
    ))
}

async fn sign_up(http: &reqwest::Client, user_url: &str, name: &str) -> BenchResult<String> {
    let registered = http
        .post(format!("{user_url}/api/users/register"))
        .json(&json!({
            "username": name, "email": format!("{name}@bench.example"),
            "password": "bench password 1", "fullName": "Bench User",
        }))
        .send()
        .await?;
    if registered.status().as_u16() != 201 {
        return Err(format!("register {name}: {}", registered.status()).into());
    }
    let login: Value = http
        .post(format!("{user_url}/api/users/login"))
        .json(&json!({ "username": name, "password": "bench password 1" }))
        .send()
        .await?
        .json()
        .await?;
    Ok(login["token"]
        .as_str()
        .ok_or("login without token")?
        .to_string())
}

type Times = std::collections::HashMap<String, (f64, f64)>;

/// `(bookingId, t1, t2)` rows as a map, times in epoch seconds.
async fn times(pool: &PgPool, sql: &str) -> BenchResult<Times> {
    let rows: Vec<(String, f64, f64)> = sqlx::query_as(sql).fetch_all(pool).await?;
    Ok(rows.into_iter().map(|(id, a, b)| (id, (a, b))).collect())
}

/// Where the saga's time goes, per booking, from the timestamps both databases keep.
async fn saga_stages(
    booking: &PgPool,
    payment: &PgPool,
) -> BenchResult<Vec<(&'static str, Vec<f64>)>> {
    let epoch = |column: &str| format!("extract(epoch FROM {column})::float8");
    let bookings = times(booking, &format!(
        "SELECT id::text, {}, {} FROM bookings WHERE status = 'CONFIRMED' AND event_name = '{MEASURED}'",
        epoch("created_at"), epoch("updated_at"))).await?;
    let created_out = times(
        booking,
        &format!(
            "SELECT payload->'data'->>'bookingId', {}, {} FROM outbox \
         WHERE event_type = 'BookingCreated' AND published_at IS NOT NULL",
            epoch("created_at"),
            epoch("published_at")
        ),
    )
    .await?;
    let payments = times(
        payment,
        &format!(
            "SELECT booking_id::text, {}, {} FROM payments",
            epoch("created_at"),
            epoch("updated_at")
        ),
    )
    .await?;
    let paid_out = times(payment, &format!(
        "SELECT payload->'data'->>'bookingId', {}, {} FROM outbox WHERE published_at IS NOT NULL",
        epoch("created_at"), epoch("published_at"))).await?;
    let mut stages: Vec<(&'static str, Vec<f64>)> = vec![
        ("booking insert -> BookingCreated acked", Vec::new()),
        ("BookingCreated acked -> payment opened", Vec::new()),
        ("payment opened -> charged, outcome committed", Vec::new()),
        ("outcome committed -> PaymentSucceeded acked", Vec::new()),
        ("PaymentSucceeded acked -> booking CONFIRMED", Vec::new()),
    ];
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
    Ok(stages)
}

/// Creates `total` bookings named `event_name` through the HTTP API, `concurrency` at a time
/// (at `rate` per second when given); the latencies of the 201s in order, the failures, the
/// time taken.
async fn drive(
    http: &reqwest::Client,
    tokens: &Arc<Vec<String>>,
    create_url: &str,
    event_name: &'static str,
    (total, concurrency, rate): (usize, usize, Option<f64>),
) -> BenchResult<(Vec<f64>, usize, Duration)> {
    let create_url = Arc::new(create_url.to_string());
    let next = Arc::new(AtomicUsize::new(0));
    let run_started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (http, tokens, create_url, next) = (
            http.clone(),
            tokens.clone(),
            create_url.clone(),
            next.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                if let Some(rate) = rate {
                    tokio::time::sleep_until(
                        (run_started + Duration::from_secs_f64(i as f64 / rate)).into(),
                    )
                    .await;
                }
                let sent = Instant::now();
                let response = http
                    .post(create_url.as_str())
                    .bearer_auth(&tokens[i % tokens.len()])
                    .json(
                        &json!({ "eventName": event_name, "ticketCount": 1, "totalAmount": "42.00" }),
                    )
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().as_u16() == 201 => {
                        latencies.push(sent.elapsed().as_secs_f64() * 1000.0)
                    }
                    _ => failures += 1,
                }
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = 0;
    for worker in workers {
        let (l, f) = worker.await?;
        latencies.extend(l);
        failures += f;
    }
    let elapsed = run_started.elapsed();
    latencies.sort_by(f64::total_cmp);
    Ok((latencies, failures, elapsed))
}

/// Waits until no booking is PENDING any more.
async fn settle(pool: &PgPool) -> BenchResult<()> {
    let started = Instant::now();
    loop {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM bookings WHERE status = 'PENDING'")
                .fetch_one(pool)
                .await?;
        if pending == 0 {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(300) {
            return Err(format!("{pending} bookings still PENDING after 300 s").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The highest outbox position written so far in `pool`'s database.
async fn outbox_position(pool: &PgPool) -> BenchResult<i64> {
    Ok(
        sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM outbox")
            .fetch_one(pool)
            .await?,
    )
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let args = Args::parse();
    silo_kit::telemetry::init("saga-bench", false);
    let broker_url = silo_testenv::require("SILO_NATS_URL");
    let namespace = EventNamespace::prefixed(format!("bench{}", silo_testenv::unique_suffix()))?;
    let streams = namespace.clone();
    let user_db = silo_testenv::TestDatabase::create().await;
    let booking_db = silo_testenv::TestDatabase::create().await;
    let payment_db = silo_testenv::TestDatabase::create().await;

    let user = user_service::Application::build(user_service::UserConfig {
        base: base(user_db.url(), &broker_url),
        namespace: namespace.clone(),
        token_lifetime: Duration::from_secs(3600),
        signing_key: None,
        keys_reload: Duration::from_secs(10),
        startup_timeout: Duration::from_secs(30),
        json_logs: false,
    })
    .await?;
    let user_url = format!("http://{}", user.address());
    let booking = booking_service::Application::build(booking_service::BookingConfig {
        base: base(booking_db.url(), &broker_url),
        user_service_url: user_url.clone(),
        namespace: namespace.clone(),
        startup_timeout: std::time::Duration::from_secs(30),
    })
    .await?;
    let payment = payment_service::Application::build(payment_service::PaymentConfig {
        base: base(payment_db.url(), &broker_url),
        user_service_url: user_url.clone(),
        gateway: SimulatedGatewayConfig::default(),
        namespace,
        startup_timeout: std::time::Duration::from_secs(30),
    })
    .await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;

    // Users register, and booking-service learns them from UserRegistered before the run.
    let mut tokens = Vec::new();
    for i in 0..args.users {
        tokens.push(sign_up(&http, &user_url, &format!("bench{i}")).await?);
    }
    let started = Instant::now();
    loop {
        let known: i64 = sqlx::query_scalar("SELECT count(*) FROM known_users")
            .fetch_one(booking.pool())
            .await?;
        if known as usize >= args.users {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err("booking-service did not learn the users from UserRegistered".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    println!(
        "saga benchmark: {} bookings, concurrency {}, offered rate {}",
        args.bookings,
        args.concurrency,
        args.rate
            .map_or("unbounded".to_string(), |r| format!("{r}/s"))
    );
    let tokens = Arc::new(tokens);
    let create_url = format!("http://{}/api/bookings", booking.address());
    let payment_pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(payment_db.url())
        .await?;
    if args.warmup > 0 {
        let load = (args.warmup, args.concurrency, args.rate);
        drive(&http, &tokens, &create_url, "Warmup", load).await?;
        settle(booking.pool()).await?;
        println!(
            "warm-up: {} bookings at the same offered rate, settled, not counted below",
            args.warmup
        );
    }
    let booking_outbox_from = outbox_position(booking.pool()).await?;
    let payment_outbox_from = outbox_position(&payment_pool).await?;
    let load = (args.bookings, args.concurrency, args.rate);
    let (latencies, failures, create_elapsed) =
        drive(&http, &tokens, &create_url, MEASURED, load).await?;
    let throughput = latencies.len() as f64 / create_elapsed.as_secs_f64();

    settle(booking.pool()).await?;
    let confirmed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM bookings WHERE status = 'CONFIRMED' AND event_name = $1",
    )
    .bind(MEASURED)
    .fetch_one(booking.pool())
    .await?;
    let (saga_p50, saga_p99) = sql_percentiles(
        booking.pool(),
        "extract(epoch FROM updated_at - created_at)",
        &format!("bookings WHERE status = 'CONFIRMED' AND event_name = '{MEASURED}'"),
    )
    .await?;
    let lag_expression = "extract(epoch FROM published_at - created_at)";
    let (_, booking_lag_p99) = sql_percentiles(
        booking.pool(),
        lag_expression,
        &format!("outbox WHERE published_at IS NOT NULL AND seq > {booking_outbox_from}"),
    )
    .await?;
    let (_, payment_lag_p99) = sql_percentiles(
        &payment_pool,
        lag_expression,
        &format!("outbox WHERE published_at IS NOT NULL AND seq > {payment_outbox_from}"),
    )
    .await?;
    let stages = saga_stages(booking.pool(), &payment_pool).await?;
    payment_pool.close().await;

    println!(
        "create latency   p50 {:8.2} ms   p99 {:8.2} ms",
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0)
    );
    println!(
        "create throughput    {throughput:8.1} bookings/s ({} created, {failures} failed, {:.2} s)",
        latencies.len(),
        create_elapsed.as_secs_f64()
    );
    println!(
        "saga latency     p50 {saga_p50:8.2} ms   p99 {saga_p99:8.2} ms   (create -> CONFIRMED, {confirmed} confirmed)"
    );
    println!(
        "outbox lag       p99 {booking_lag_p99:8.2} ms (booking)   {payment_lag_p99:8.2} ms (payment)"
    );
    for (stage, mut millis) in stages {
        millis.sort_by(f64::total_cmp);
        println!(
            "  stage {stage:<44} p50 {:8.2} ms   p99 {:8.2} ms",
            percentile(&millis, 50.0),
            percentile(&millis, 99.0)
        );
    }

    // The same creates again with payment-service stopped: what booking-service manages when
    // the rest of the saga does not share its cores (as payment-service and its database would
    // not in a deployment of one database per service).
    payment.stop().await;
    let load = (args.bookings, args.concurrency, None);
    let (alone, _, alone_elapsed) = drive(&http, &tokens, &create_url, MEASURED, load).await?;
    let alone_throughput = alone.len() as f64 / alone_elapsed.as_secs_f64();

    // The floor: the same INSERT booking + INSERT outbox transaction, without HTTP, auth or
    // the user check, on the same database at the same concurrency (services stopped first).
    booking.stop().await;
    user.stop().await;
    let floor_pool = PgPoolOptions::new()
        .max_connections(16)
        .connect(booking_db.url())
        .await?;
    let repository = BookingRepository::new(floor_pool.clone());
    let new = NewBooking {
        event_name: "Floor".into(),
        ticket_count: 1,
        total_amount: Decimal::new(4200, 2),
        currency: "USD".into(),
    };
    let next = Arc::new(AtomicUsize::new(0));
    let floor_started = Instant::now();
    let mut floor_workers = Vec::new();
    for _ in 0..args.concurrency {
        let (repository, new, next) = (repository.clone(), new.clone(), next.clone());
        let total = args.bookings;
        floor_workers.push(tokio::spawn(async move {
            let correlation = CorrelationId::generate();
            let user = Uuid::new_v4();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                if repository
                    .create(user, "floor@bench.example", &new, &correlation)
                    .await
                    .is_err()
                {
                    return Err("floor transaction failed");
                }
            }
            Ok(())
        }));
    }
    for worker in floor_workers {
        worker.await??;
    }
    let floor_rate = args.bookings as f64 / floor_started.elapsed().as_secs_f64();
    floor_pool.close().await;
    println!(
        "floor                {floor_rate:8.1} transactions/s (INSERT booking + INSERT outbox)"
    );
    println!(
        "create throughput / floor = {:.1}%",
        100.0 * throughput / floor_rate
    );
    // The run's streams go with it, as its databases do.
    let jetstream = async_nats::jetstream::new(async_nats::connect(&broker_url).await?);
    for kind in [
        StreamKind::Users,
        StreamKind::Bookings,
        StreamKind::Payments,
    ] {
        let _ = jetstream.delete_stream(streams.stream_name(kind)).await;
    }
    println!(
        "unbounded creates with payment-service stopped {alone_throughput:8.1} bookings/s = {:.1}% of the floor",
        100.0 * alone_throughput / floor_rate
    );
    Ok(())
}

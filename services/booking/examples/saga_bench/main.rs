//! The saga benchmark behind `tests/bench/saga`: user-service, booking-service and
//! payment-service in-process against the local PostgreSQL and NATS; N bookings through the
//! HTTP API at each offered rate (unbounded, 200/s and 500/s by default), each followed by the
//! saga floor at the same rate and concurrency (the saga's own transactions with neither
//! broker nor HTTP, on databases of its own, see `floor.rs`); then the create-only floor on
//! booking-service's database; the targets last, each beside its figure and the floor's.

mod figures;
mod floor;
mod load;
mod system;
mod targets;

use clap::Parser;
use figures::{Phase, Saga, outbox_backlog, print_phase, print_phase_brief, rate_label, run_phase};
use floor::{CreateOnly, SagaFloor, create_only_pool};
use load::{Creates, Driven, Load, drive};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};
use system::{HttpCreates, System};

/// Drive bookings through the three services and compare with the database floors.
#[derive(Debug, Parser)]
struct Args {
    /// Bookings per offered rate.
    #[arg(long, default_value_t = 2000)]
    bookings: usize,
    /// Creates in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Offered rates in bookings per second, `unbounded` for as fast as possible.
    #[arg(long, value_delimiter = ',', default_value = "unbounded,200,500")]
    rates: Vec<OfferedRate>,
    /// Unbounded phases of the services and of the floor, in turns: the throughput ratio is
    /// their median, as one pair on a shared machine can be far off.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Distinct users making the bookings.
    #[arg(long, default_value_t = 20)]
    users: usize,
    /// Bookings made and settled at the same rate before each measured run, and not counted:
    /// the first of a fresh process meet cold connections, caches and consumers.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
}

/// An offered rate: bookings per second, or unbounded (`None`).
#[derive(Debug, Clone, Copy)]
struct OfferedRate(Option<f64>);

impl FromStr for OfferedRate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "unbounded" {
            return Ok(Self(None));
        }
        match text.parse::<f64>() {
            Ok(rate) if rate > 0.0 => Ok(Self(Some(rate))),
            _ => Err(format!(
                "{text:?} is neither `unbounded` nor a positive rate"
            )),
        }
    }
}

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

impl Args {
    fn load(&self, rate: OfferedRate) -> Load {
        Load {
            total: self.bookings,
            concurrency: self.concurrency,
            rate: rate.0,
        }
    }
}

/// The 1, 5 and 15 minute load averages of the machine, as `uptime` prints them.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// What the bench measured, to be summed up.
struct Measured {
    /// The services' phases, in order (unbounded once per round).
    saga: Vec<Phase>,
    /// The saga floor's phases, likewise.
    floor: Vec<Phase>,
    /// Unbounded creates with payment-service stopped.
    alone: Driven,
    /// The create-only floor.
    create_floor: Driven,
}

const SAGA: &str = "saga (three services, HTTP, NATS)";
const FLOOR: &str = "saga floor (the same transactions, no broker, no HTTP)";

/// Runs a phase of `saga` at `rate` for `event_name` and prints it under `title`: in full, or
/// in one line when `brief`.
async fn phase<C: Creates>(
    args: &Args,
    (title, saga): (&str, &Saga<C>),
    event_name: &str,
    rate: OfferedRate,
    brief: bool,
) -> BenchResult<Phase> {
    let phase = run_phase(saga, event_name, args.load(rate), args.warmup).await?;
    if brief {
        print_phase_brief(title, event_name, &phase);
    } else {
        print_phase(title, &phase);
    }
    Ok(phase)
}

/// At each rate, the services' phase and the saga floor's, one right after the other (the
/// floor on its own databases while the services idle); unbounded, `--rounds` times,
/// alternating which goes first, so a load that rises or falls during the rounds weighs on
/// both alike.
async fn phases<C: Creates>(
    args: &Args,
    services: &Saga<C>,
    floor: &SagaFloor,
) -> BenchResult<(Vec<Phase>, Vec<Phase>)> {
    let (mut saga, mut floors) = (Vec::new(), Vec::new());
    for rate in &args.rates {
        let rounds = if rate.0.is_none() {
            args.rounds.max(1)
        } else {
            1
        };
        for round in 0..rounds {
            let label = match round {
                0 => rate_label(rate.0),
                _ => format!("{} round {}", rate_label(rate.0), round + 1),
            };
            let (bench, floor_run) = (format!("Bench {label}"), format!("Floor {label}"));
            let brief = round > 0;
            let on_services = phase(args, (SAGA, services), &bench, *rate, brief);
            let on_floor = phase(args, (FLOOR, floor.saga()), &floor_run, *rate, brief);
            if round % 2 == 0 {
                saga.push(on_services.await?);
                floors.push(on_floor.await?);
            } else {
                floors.push(on_floor.await?);
                saga.push(on_services.await?);
            }
        }
    }
    Ok((saga, floors))
}

/// Waits until booking-service's relay has published everything, so that nothing is left to
/// publish when it stops.
async fn wait_published(pool: &sqlx::PgPool) -> BenchResult<()> {
    let started = Instant::now();
    while outbox_backlog(pool).await? > 0 {
        if started.elapsed() > Duration::from_secs(60) {
            return Err("booking-service's outbox not published after 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The phases of the services and of the saga floor; unbounded creates with payment-service
/// stopped; then, the services stopped, the create-only floor on booking-service's database.
async fn measure(args: &Args, system: &System) -> BenchResult<Measured> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let tokens = system.sign_up(&http, args.users).await?;
    let url = format!("http://{}/api/bookings", system.booking.address());
    let payment = silo_kit::postgres::pool_options(2)
        .connect(system.payment_db.url())
        .await?;
    let services = Saga {
        creates: Arc::new(HttpCreates { http, url, tokens }),
        booking: system.booking.pool().clone(),
        payment,
        failures: Arc::new(AtomicUsize::new(0)),
    };
    let floor = SagaFloor::start(&services.booking).await?;
    let measured = phases(args, &services, &floor).await;
    floor.stop().await;
    let (saga, floor) = measured?;
    // The same creates again with payment-service stopped: what booking-service manages when
    // the rest of the saga does not share its cores (as payment-service and its database would
    // not in a deployment of one database per service).
    system.payment.stop().await;
    let unbounded = args.load(OfferedRate(None));
    let alone = drive(&services.creates, "Alone", unbounded).await?;
    wait_published(&services.booking).await?;
    services.payment.close().await;
    system.booking.stop().await;
    system.user.stop().await;
    let pool = create_only_pool(system.booking_db.url()).await?;
    let create_only = Arc::new(CreateOnly::new(pool.clone()));
    let create_floor = drive(&create_only, "Create-only floor", unbounded).await?;
    pool.close().await;
    Ok(Measured {
        saga,
        floor,
        alone,
        create_floor,
    })
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let args = Args::parse();
    silo_kit::telemetry::init("saga-bench", false);
    let system = System::start(&silo_testenv::require("SILO_NATS_URL")).await?;
    let rates: Vec<String> = args.rates.iter().map(|r| rate_label(r.0)).collect();
    println!(
        "saga benchmark: {} bookings per rate ({}), concurrency {}, warm-up {} per rate; load average {}",
        args.bookings,
        rates.join(", "),
        args.concurrency,
        args.warmup,
        load_average()
    );
    let measured = measure(&args, &system).await?;
    system.delete_streams().await?;

    let Measured {
        saga,
        floor,
        alone,
        create_floor,
    } = measured;
    let create_floor_rate = create_floor.throughput();
    println!(
        "create-only floor    {create_floor_rate:8.1} transactions/s (INSERT booking + INSERT outbox)"
    );
    if let Some(unbounded) = saga.iter().find(|phase| phase.rate.is_none()) {
        println!(
            "create throughput / create-only floor = {:.1}%",
            100.0 * unbounded.created.throughput() / create_floor_rate
        );
    }
    println!(
        "unbounded creates with payment-service stopped {:8.1} bookings/s = {:.1}% of the create-only floor",
        alone.throughput(),
        100.0 * alone.throughput() / create_floor_rate
    );
    targets::print_targets(&saga, &floor);
    println!("load average at the end {}", load_average());
    Ok(())
}

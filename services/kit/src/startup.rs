//! The start-up every service shares, so that each `Application::build` keeps only what is
//! its own (migrations, store, handlers, routes) and each `main.rs` is one call.
//!
//! Order of a build: [`Launch::connect`] (NATS with bounded retry, the stream the service
//! produces), [`Launch::postgres`] (bounded retry, the service's migrations and the kit's, the
//! outbox relay and the readiness check), [`Launch::spawn_consumer`] / [`Launch::spawn`] for
//! other background work, and [`Launch::serve`], which binds and returns the
//! [`RunningService`]. A dependency still missing when the retry period ends is a typed error
//! naming host and port, never the credentials.

use crate::broker::{self, BrokerError};
use crate::config::{BaseConfig, ConfigError, Env};
use crate::consumer::{Consumer, ConsumerConfig, DeadLetterSink, MessageHandler};
use crate::events::{EventNamespace, StreamKind};
use crate::http::{Operations, service_router};
use crate::metrics::Metrics;
use crate::outbox::postgres::PgOutbox;
use crate::outbox::{OutboxStore, Relay, RelayConfig};
use crate::postgres::DatabaseError;
use crate::readiness::{NatsCheck, PostgresCheck, Readiness, ReadinessCheck};
use crate::retry::RetryPolicy;
use crate::service::{BindError, RunningService, bind};
use crate::shutdown::Shutdown;
use async_nats::jetstream;
use axum::Router;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use std::fmt::Display;
use std::future::Future;
use std::ops::Deref;
use std::process::ExitCode;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Connections of a service's PostgreSQL pool.
pub const POOL_SIZE: u32 = 16;

/// Events a consumer handles at once: commits wait on the disk, so overlapping them (group
/// commit) is what lets the saga keep up; the pool bounds the database work.
pub const CONSUMER_CONCURRENCY: usize = 32;

/// What names a service at start-up: its name (NATS client, durable consumers, logs) and
/// the stream it produces (created at start-up if absent).
#[derive(Debug, Clone, Copy)]
pub struct ServiceIdentity {
    /// `user-service`, ...
    pub name: &'static str,
    /// The stream the service owns.
    pub produces: StreamKind,
}

/// A service being started: its broker connection, metrics and shutdown signal, and the
/// background tasks spawned so far.
#[derive(Debug)]
pub struct Launch {
    service: &'static str,
    base: BaseConfig,
    retry: RetryPolicy,
    namespace: EventNamespace,
    jetstream: jetstream::Context,
    metrics: Metrics,
    readiness: Readiness,
    shutdown: Shutdown,
    tasks: Vec<JoinHandle<()>>,
}

impl Launch {
    /// Connects `service` to the NATS server of `base` (retrying for `startup_timeout`) and
    /// creates the stream it produces, under `namespace`, if absent.
    pub async fn connect(
        service: &ServiceIdentity,
        base: &BaseConfig,
        namespace: &EventNamespace,
        startup_timeout: Duration,
    ) -> Result<Self, BrokerError> {
        let retry = RetryPolicy::within(startup_timeout);
        let produces = service.produces;
        let client = broker::connect(&base.broker_url, service.name, retry).await?;
        let jetstream = broker::jetstream(client.clone());
        namespace
            .ensure_stream(&jetstream, produces)
            .await
            .map_err(|e| BrokerError::Stream {
                stream: namespace.stream_name(produces),
                reason: e.to_string(),
            })?;
        Ok(Self {
            service: service.name,
            base: base.clone(),
            retry,
            namespace: namespace.clone(),
            readiness: Readiness::new().with(NatsCheck(client)),
            jetstream,
            metrics: Metrics::new(),
            shutdown: Shutdown::new(),
            tasks: Vec::new(),
        })
    }

    /// Connects to the PostgreSQL database of `DATABASE_URL` (retrying like the broker), runs
    /// `migrations` (the service's, from `sqlx::migrate!` in its own crate: the path is
    /// relative to it) then the kit's, relays its outbox and adds it to `/readyz`.
    pub async fn postgres(&mut self, migrations: Migrator) -> Result<PgPool, DatabaseError> {
        let url = &self.base.database_url;
        let pool = crate::postgres::connect(url, POOL_SIZE, self.retry).await?;
        crate::postgres::migrate(&pool, migrations).await?;
        self.spawn_relay(PgOutbox::new(pool.clone()));
        self.check(PostgresCheck(pool.clone()));
        Ok(pool)
    }

    /// How long start-up retries a dependency (for a database [`Self::postgres`] does not cover).
    pub fn retry(&self) -> RetryPolicy {
        self.retry
    }

    /// Adds a dependency to `/readyz` (the broker is in already).
    pub fn check(&mut self, dependency: impl ReadinessCheck) {
        self.readiness = std::mem::take(&mut self.readiness).with(dependency);
    }

    /// Spawns `task`, which must return once the shutdown signal it is given fires.
    pub fn spawn<F>(&mut self, task: impl FnOnce(Shutdown) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.push(tokio::spawn(task(self.shutdown.clone())));
    }

    /// Spawns the relay publishing `outbox`.
    pub fn spawn_relay<S: OutboxStore>(&mut self, outbox: S) {
        let relay = Relay::new(
            outbox,
            self.jetstream.clone(),
            self.namespace.clone(),
            RelayConfig::default(),
            self.metrics.clone(),
        );
        self.spawn(|shutdown| relay.run(shutdown));
    }

    /// Spawns the service's durable consumer (named after the service) of `stream`.
    pub fn spawn_consumer<H: MessageHandler, D: DeadLetterSink>(
        &mut self,
        stream: StreamKind,
        handler: H,
        dead_letters: D,
    ) {
        let config = ConsumerConfig {
            concurrency: CONSUMER_CONCURRENCY,
            ..ConsumerConfig::new(self.service, stream)
        };
        let consumer = Consumer::new(
            self.jetstream.clone(),
            self.namespace.clone(),
            config,
            handler,
            dead_letters,
            self.metrics.clone(),
        );
        self.spawn(|shutdown| consumer.run(shutdown));
    }

    /// Binds `LISTEN_ADDR` and serves `routes` with the operational endpoints (`/readyz` runs
    /// the broker check and those added since).
    pub async fn serve(self, routes: Router) -> Result<RunningService, BindError> {
        let (listener, address) = bind(self.base.listen_addr).await?;
        let operations = Operations::new(self.metrics, self.readiness);
        let draining = operations.draining.clone();
        let router = service_router(routes, operations);
        let service = RunningService::start(
            (listener, address),
            router,
            self.shutdown,
            self.tasks,
            self.base.server,
            draining,
        );
        tracing::info!(%address, service = self.service, "listening");
        Ok(service)
    }
}

/// The whole `main` of a service binary: logging (`LOG_FORMAT=json` for JSON lines), the
/// configuration from the process environment, `build`, then running until SIGTERM (or
/// Ctrl-C), which drains and stops the service (see [`crate::server`]). A
/// configuration or start-up error is logged and printed to stderr, and the exit code is a
/// failure.
pub async fn run_main<C, A, E, B, Fut>(
    service: &str,
    configure: impl FnOnce(&Env) -> Result<C, ConfigError>,
    build: B,
) -> ExitCode
where
    B: FnOnce(C) -> Fut,
    Fut: Future<Output = Result<A, E>>,
    A: Deref<Target = RunningService>,
    E: Display,
{
    let env = Env::process();
    let json_logs = env.optional("LOG_FORMAT").as_deref() == Some("json");
    crate::telemetry::init(service, json_logs);
    let config = match configure(&env) {
        Ok(config) => config,
        Err(error) => return refuse(service, "invalid configuration", &error),
    };
    let application = match build(config).await {
        Ok(application) => application,
        Err(error) => return refuse(service, "cannot start", &error),
    };
    crate::shutdown::os_signal().await;
    tracing::info!(service, "shutdown requested");
    application.drain_and_stop().await;
    tracing::info!(service, "stopped");
    ExitCode::SUCCESS
}

/// Logs why `service` does not run, says it on stderr too (the log may go elsewhere), and
/// returns the failure exit code.
fn refuse(service: &str, what: &str, error: &dyn Display) -> ExitCode {
    tracing::error!(service, error = %error, "{what}");
    eprintln!("{service}: {what}: {error}");
    ExitCode::FAILURE
}

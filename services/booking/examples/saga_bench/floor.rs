//! The floors: what the saga's database work alone allows at the same concurrency, with
//! neither broker nor HTTP.
//!
//! The saga floor is the saga's transactions, sent by the services' own code: bookings stored
//! by [`BookingRepository::create_for_known_user`] (what `POST /api/bookings` calls); each
//! outbox relayed by [`PgOutbox`] (`claim_batch`, `mark_published_and_claim`, woken by its
//! LISTEN/NOTIFY signal), records handed over in memory instead of published to JetStream;
//! `BookingCreated`/`BookingConfirmed` applied by payment-service's [`BookingEvents`] over
//! [`PgPaymentStore`] and the simulated gateway, payment outcomes by booking-service's
//! [`PgInbox`] over [`PaymentEvents`] — through `MessageHandler::handle`/`handle_batch` as the
//! kit's consumer calls them, runs formed alike (`ready_chunks` of the default `max_batch`,
//! [`CONSUMER_CONCURRENCY`] runs at once). What is left out: HTTP, token checks, JSON request
//! bodies, NATS publishes, acks and deliveries. user-service's database has no part in a
//! booking's saga (tokens are checked against cached keys, users come from booking-service's
//! replica), so the floor has none either.
//!
//! The saga floor has two fresh databases of its own on the same server, migrated by the
//! services' migrations and given the same users, so each of its phases runs right after the
//! services' phase at the same rate, while the services idle: the two figures of a ratio are
//! measured a few seconds apart on a machine whose load moves.
//!
//! The create-only floor is the old one: the bare booking + outbox insert transaction.

use crate::BenchResult;
use crate::figures::Saga;
use crate::load::Creates;
use booking_service::consumers::{CONSUMER_NAME, PaymentEvents};
use booking_service::new_booking::NewBooking;
use booking_service::repository::{BookingRepository, KnownUser};
use chrono::Utc;
use futures::StreamExt;
use futures::channel::mpsc;
use payment_service::charging::Charging;
use payment_service::consumers::BookingEvents;
use payment_service::gateway::{SimulatedGateway, SimulatedGatewayConfig};
use payment_service::store::PgPaymentStore;
use rust_decimal::Decimal;
use silo_kit::consumer::{ConsumerConfig, MessageHandler};
use silo_kit::correlation::CorrelationId;
use silo_kit::events::{Envelope, StreamKind};
use silo_kit::inbox::postgres::PgInbox;
use silo_kit::outbox::postgres::PgOutbox;
use silo_kit::outbox::{OutboxError, OutboxRecord, OutboxStore, RelayConfig, WakeSignal};
use silo_kit::shutdown::Shutdown;
use silo_kit::startup::{CONSUMER_CONCURRENCY, POOL_SIZE};
use silo_testenv::TestDatabase;
use sqlx::PgPool;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// The booking every floor creates, named for its run.
fn new_booking(event_name: &str) -> NewBooking {
    NewBooking {
        event_name: event_name.to_string(),
        ticket_count: 1,
        total_amount: Decimal::new(4200, 2),
        currency: "USD".into(),
    }
}

/// Bookings as `POST /api/bookings` stores them, for the users of booking-service's replica
/// taking turns.
pub struct RepositoryCreates {
    repository: BookingRepository,
    users: Vec<Uuid>,
}

impl Creates for RepositoryCreates {
    async fn create(&self, index: usize, event_name: &str) -> bool {
        let user = self.users[index % self.users.len()];
        let stored = self
            .repository
            .create_for_known_user(user, &new_booking(event_name), &CorrelationId::generate())
            .await;
        matches!(stored, Ok(Some(_)))
    }
}

/// The saga's transactions without broker or HTTP, on databases of its own: the relays and
/// consumers run until [`SagaFloor::stop`].
pub struct SagaFloor {
    saga: Saga<RepositoryCreates>,
    stop: Shutdown,
    tasks: Vec<JoinHandle<()>>,
    databases: [TestDatabase; 2],
}

/// A pool like the services' own.
async fn service_pool(url: &str) -> BenchResult<PgPool> {
    Ok(silo_kit::postgres::pool_options(POOL_SIZE)
        .connect(url)
        .await?)
}

/// A booking-service database, migrated, that knows the users `known` knows.
async fn booking_database(known: &PgPool) -> BenchResult<(TestDatabase, PgPool, Vec<Uuid>)> {
    let database = TestDatabase::create().await;
    let pool = service_pool(database.url()).await?;
    silo_kit::postgres::migrate(&pool, sqlx::migrate!("./migrations")).await?;
    let users: Vec<(Uuid, String)> = sqlx::query_as("SELECT user_id, email FROM known_users")
        .fetch_all(known)
        .await?;
    if users.is_empty() {
        return Err("the saga floor needs the users booking-service knows".into());
    }
    let mut conn = pool.acquire().await?;
    for (user_id, email) in &users {
        let user = KnownUser {
            user_id: *user_id,
            email: email.clone(),
            full_name: None,
        };
        BookingRepository::remember_user(&mut conn, &user, Utc::now()).await?;
    }
    Ok((
        database,
        pool,
        users.into_iter().map(|(id, _)| id).collect(),
    ))
}

impl SagaFloor {
    /// Starts the relays and consumers on two fresh databases, with the users of
    /// booking-service's database `known`.
    pub async fn start(known: &PgPool) -> BenchResult<Self> {
        let (booking_db, booking, users) = booking_database(known).await?;
        let payment_db = TestDatabase::create().await;
        let payment = service_pool(payment_db.url()).await?;
        let store = PgPaymentStore::connect(payment.clone()).await?;
        let failures = Arc::new(AtomicUsize::new(0));
        let stop = Shutdown::new();
        let (to_payment, bookings_stream) = mpsc::unbounded();
        let (to_booking, payments_stream) = mpsc::unbounded();
        let gateway = Arc::new(SimulatedGateway::new(SimulatedGatewayConfig::default()));
        let payment_consumer = BookingEvents::new(Charging::new(Arc::new(store), gateway));
        let booking_consumer = PgInbox::new(booking.clone(), CONSUMER_NAME, PaymentEvents);
        let relay_of = |pool: &PgPool, to| {
            let outbox = PgOutbox::new(pool.clone());
            tokio::spawn(relay(outbox, to, stop.clone(), failures.clone()))
        };
        let tasks = vec![
            relay_of(&booking, to_payment),
            relay_of(&payment, to_booking),
            tokio::spawn(consume(
                payment_consumer,
                StreamKind::Bookings,
                bookings_stream,
                failures.clone(),
            )),
            tokio::spawn(consume(
                booking_consumer,
                StreamKind::Payments,
                payments_stream,
                failures.clone(),
            )),
        ];
        let creates = Arc::new(RepositoryCreates {
            repository: BookingRepository::new(booking.clone()),
            users,
        });
        Ok(Self {
            saga: Saga {
                creates,
                booking,
                payment,
                failures,
            },
            stop,
            tasks,
            databases: [booking_db, payment_db],
        })
    }

    /// The floor as a saga to drive.
    pub fn saga(&self) -> &Saga<RepositoryCreates> {
        &self.saga
    }

    /// Stops the relays (their channels close, so the consumers finish), waits for all, and
    /// drops the floor's databases.
    pub async fn stop(self) {
        self.stop.trigger();
        for task in self.tasks {
            let _ = task.await;
        }
        self.saga.booking.close().await;
        self.saga.payment.close().await;
        drop(self.databases);
    }
}

/// The kit's relay loop with the broker left out: drains the outbox batch after batch while
/// records keep coming, then waits for the outbox's wake-up (or the poll interval).
async fn relay(
    outbox: PgOutbox,
    to: mpsc::UnboundedSender<Envelope>,
    stop: Shutdown,
    failures: Arc<AtomicUsize>,
) {
    let config = RelayConfig::default();
    let mut signal = None;
    while !stop.is_triggered() {
        if signal.is_none() {
            signal = outbox.wake_signal().await.ok();
        }
        if let Err(error) = drain(&outbox, &to, &config).await {
            tracing::warn!(error = %error, "saga floor: relay pass failed");
            failures.fetch_add(1, Ordering::Relaxed);
        }
        let woken = async {
            match signal.as_mut() {
                Some(subscribed) => subscribed.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = stop.wait() => break,
            result = woken => if result.is_err() { signal = None },
            _ = tokio::time::sleep(config.poll_interval) => {}
        }
    }
}

/// Claims, hands over and marks published until the outbox has nothing unclaimed.
async fn drain(
    outbox: &PgOutbox,
    to: &mpsc::UnboundedSender<Envelope>,
    config: &RelayConfig,
) -> Result<(), OutboxError> {
    let (limit, lease) = (config.batch_size, config.effective_lease());
    let mut claimed = outbox.claim_batch(limit, lease).await?;
    while !claimed.is_empty() {
        let published = hand_over(claimed, to)?;
        claimed = outbox
            .mark_published_and_claim(&published, limit, lease)
            .await?;
    }
    Ok(())
}

/// "Publishes" a batch: its envelopes to the consumer's channel; returns their ids.
fn hand_over(
    records: Vec<OutboxRecord>,
    to: &mpsc::UnboundedSender<Envelope>,
) -> Result<Vec<Uuid>, OutboxError> {
    let mut published = Vec::with_capacity(records.len());
    for record in records {
        let envelope = Envelope::from_slice(&record.payload)?;
        // A closed channel means the floor is stopping: the records stay claimed, unread.
        let _ = to.unbounded_send(envelope);
        published.push(record.event_id);
    }
    Ok(published)
}

/// The kit's consumer loop with the broker left out: runs of what has arrived, at most
/// `max_batch`, [`CONSUMER_CONCURRENCY`] at once; a single event goes through `handle`, a run
/// through `handle_batch`, and a run that fails as a whole is handled again event by event.
async fn consume<H: MessageHandler>(
    handler: H,
    stream: StreamKind,
    events: mpsc::UnboundedReceiver<Envelope>,
    failures: Arc<AtomicUsize>,
) {
    let max_batch = ConsumerConfig::new("saga-floor", stream).max_batch;
    let (handler, failures) = (&handler, &failures);
    events
        .ready_chunks(max_batch)
        .for_each_concurrent(CONSUMER_CONCURRENCY, |run| async move {
            if run.len() > 1 && handler.handle_batch(&run).await.is_ok() {
                return;
            }
            for envelope in &run {
                if let Err(error) = handler.handle(envelope).await {
                    tracing::warn!(error = %error, ?stream, "saga floor: event failed");
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .await;
}

/// The bare booking + outbox insert transaction ([`BookingRepository::create`]).
pub struct CreateOnly {
    repository: BookingRepository,
}

impl CreateOnly {
    /// The transaction on `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            repository: BookingRepository::new(pool),
        }
    }
}

impl Creates for CreateOnly {
    async fn create(&self, _index: usize, event_name: &str) -> bool {
        let correlation = CorrelationId::generate();
        self.repository
            .create(
                Uuid::new_v4(),
                "floor@bench.example",
                &new_booking(event_name),
                &correlation,
            )
            .await
            .is_ok()
    }
}

/// A pool for the create-only floor, like the services' own.
pub async fn create_only_pool(url: &str) -> BenchResult<PgPool> {
    service_pool(url).await
}

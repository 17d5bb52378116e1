//! The PostgreSQL outbox and its relay.

use crate::support::*;
use async_nats::jetstream;
use silo_kit::correlation::CorrelationId;
use silo_kit::events::{Envelope, EventNamespace, StreamKind, UserRegistered};
use silo_kit::metrics::Metrics;
use silo_kit::outbox::postgres::{PgOutbox, enqueue};
use silo_kit::outbox::{Relay, RelayConfig};
use silo_kit::shutdown::Shutdown;
use silo_testenv::TestDatabase;
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

const PATIENCE: Duration = Duration::from_secs(20);

/// A migrated database, a USERS stream in a private namespace, and relays on them.
struct OutboxFixture {
    _database: TestDatabase,
    pool: PgPool,
    namespace: EventNamespace,
    jetstream: jetstream::Context,
    shutdown: Shutdown,
    relays: Vec<(Metrics, tokio::task::JoinHandle<()>)>,
}

impl OutboxFixture {
    /// The fixture on the shared NATS, no relay running yet.
    async fn new() -> Self {
        let (database, pool, namespace, jetstream) = users_stream_fixture().await;
        Self::with(database, pool, namespace, jetstream)
    }

    fn with(
        database: TestDatabase,
        pool: PgPool,
        namespace: EventNamespace,
        jetstream: jetstream::Context,
    ) -> Self {
        Self {
            _database: database,
            pool,
            namespace,
            jetstream,
            shutdown: Shutdown::new(),
            relays: Vec::new(),
        }
    }

    /// Starts one more relay with `config`.
    fn start_relay(&mut self, config: RelayConfig) {
        let metrics = Metrics::new();
        let relay = Relay::new(
            PgOutbox::new(self.pool.clone()),
            self.jetstream.clone(),
            self.namespace.clone(),
            config,
            metrics.clone(),
        );
        let task = tokio::spawn(relay.run(self.shutdown.clone()));
        self.relays.push((metrics, task));
    }

    /// Commits `count` events, one transaction each; returns their ids in order.
    async fn enqueue_users(&self, count: usize) -> Vec<Uuid> {
        let correlation = CorrelationId::generate();
        let mut ids = Vec::new();
        for n in 0..count {
            let mut tx = self.pool.begin().await.unwrap();
            let envelope = enqueue(&mut tx, &user(n), &correlation).await.unwrap();
            tx.commit().await.unwrap();
            ids.push(envelope.event_id);
        }
        ids
    }

    async fn unpublished(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn wait_until_all_published(&self, limit: Duration) {
        wait_until("every outbox record published", limit, || async {
            self.unpublished().await == 0
        })
        .await;
    }

    async fn stream_len(&self) -> u64 {
        stream_messages(&self.jetstream, &self.namespace, StreamKind::Users).await
    }

    /// The event ids stored in the stream, in stream order.
    async fn stored_event_ids(&self) -> Vec<Uuid> {
        let stream = self
            .jetstream
            .get_stream(self.namespace.stream_name(StreamKind::Users))
            .await
            .unwrap();
        let mut ids = Vec::new();
        for sequence in 1..=self.stream_len().await {
            let message = stream.get_raw_message(sequence).await.unwrap();
            ids.push(Envelope::from_slice(&message.payload).unwrap().event_id);
        }
        ids
    }

    /// Stops the relays; returns how many records each published.
    async fn stop(self) -> Vec<u64> {
        self.shutdown.trigger();
        let mut published = Vec::new();
        for (metrics, task) in self.relays {
            task.await.unwrap();
            published.push(metrics.outbox_published.get());
        }
        delete_streams(&self.jetstream, &self.namespace).await;
        published
    }
}

fn user(n: usize) -> UserRegistered {
    UserRegistered {
        user_id: Uuid::new_v4(),
        email: format!("user{n}@example.com"),
        full_name: format!("User {n}"),
    }
}

#[tokio::test]
async fn relay_publishes_committed_events_in_order_with_event_id_as_message_id() {
    let mut fixture = OutboxFixture::new().await;
    let ids = fixture.enqueue_users(10).await;
    // Small batches: order must hold across batch boundaries too.
    fixture.start_relay(RelayConfig {
        batch_size: 3,
        ..RelayConfig::default()
    });
    fixture.wait_until_all_published(PATIENCE).await;
    assert_eq!(fixture.stored_event_ids().await, ids);
    let stream = fixture
        .jetstream
        .get_stream(fixture.namespace.stream_name(StreamKind::Users))
        .await
        .unwrap();
    let first = stream.get_raw_message(1).await.unwrap();
    assert_eq!(
        first.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        Some(ids[0].to_string().as_str())
    );
    assert_eq!(
        first.subject.as_str(),
        fixture.namespace.subject_of::<UserRegistered>()
    );
    fixture.stop().await;
}

#[tokio::test]
async fn relay_wakes_on_notify_for_events_written_while_it_waits() {
    let mut fixture = OutboxFixture::new().await;
    // A poll interval far beyond the wait below: only NOTIFY can wake the relay.
    fixture.start_relay(RelayConfig {
        poll_interval: Duration::from_secs(3600),
        ..RelayConfig::default()
    });
    // The first event may be found by the relay's initial pass; once it is
    // published the relay has finished that pass and sleeps on the poll interval.
    fixture.enqueue_users(1).await;
    fixture.wait_until_all_published(PATIENCE).await;
    // Only a wake-up can publish the second one.
    fixture.enqueue_users(1).await;
    fixture.wait_until_all_published(PATIENCE).await;
    assert_eq!(fixture.stream_len().await, 2);
    fixture.stop().await;
}

#[tokio::test]
async fn rolled_back_events_are_never_published() {
    let mut fixture = OutboxFixture::new().await;
    let mut tx = fixture.pool.begin().await.unwrap();
    enqueue(&mut tx, &user(0), &CorrelationId::generate())
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let committed = fixture.enqueue_users(1).await;
    fixture.start_relay(RelayConfig::default());
    fixture.wait_until_all_published(PATIENCE).await;
    assert_eq!(fixture.stored_event_ids().await, committed);
    fixture.stop().await;
}

#[tokio::test]
async fn event_published_twice_is_stored_once_in_the_stream() {
    let mut fixture = OutboxFixture::new().await;
    let ids = fixture.enqueue_users(1).await;
    fixture.start_relay(RelayConfig::default());
    fixture.wait_until_all_published(PATIENCE).await;
    // A relay that crashed after the broker ack but before marking the record
    // publishes it again: JetStream must drop the second copy.
    sqlx::query("UPDATE outbox SET published_at = NULL WHERE event_id = $1")
        .bind(ids[0])
        .execute(&fixture.pool)
        .await
        .unwrap();
    sqlx::query("SELECT pg_notify('silo_outbox', '')")
        .execute(&fixture.pool)
        .await
        .unwrap();
    fixture.wait_until_all_published(PATIENCE).await;
    assert_eq!(fixture.stream_len().await, 1);
    assert_eq!(fixture.stop().await, vec![2], "the relay did publish twice");
}

#[tokio::test]
async fn published_records_past_retention_are_deleted() {
    let mut fixture = OutboxFixture::new().await;
    fixture.enqueue_users(2).await;
    sqlx::query("UPDATE outbox SET published_at = now() - interval '2 days' WHERE seq = 1")
        .execute(&fixture.pool)
        .await
        .unwrap();
    fixture.start_relay(RelayConfig::default());
    wait_until(
        "old record deleted and new one published",
        PATIENCE,
        || async {
            let rows: Vec<(i64, bool)> =
                sqlx::query_as("SELECT seq, published_at IS NOT NULL FROM outbox ORDER BY seq")
                    .fetch_all(&fixture.pool)
                    .await
                    .unwrap();
            rows == vec![(2, true)]
        },
    )
    .await;
    fixture.stop().await;
}

#[tokio::test]
async fn two_relays_on_one_database_publish_each_record_once() {
    let mut fixture = OutboxFixture::new().await;
    fixture.enqueue_users(120).await;
    let config = RelayConfig {
        batch_size: 10,
        ..RelayConfig::default()
    };
    fixture.start_relay(config.clone());
    fixture.start_relay(config);
    fixture.wait_until_all_published(PATIENCE).await;
    assert_eq!(fixture.stream_len().await, 120);
    // The stream would hide a double publication (de-duplication), the relays' counts do not.
    let published: u64 = fixture.stop().await.iter().sum();
    assert_eq!(published, 120);
}

#[tokio::test]
async fn events_written_during_a_broker_outage_are_published_exactly_once_after_it() {
    let mut nats = silo_testenv::PrivateNats::start().await;
    let (database, pool) = migrated_database().await;
    let namespace = private_namespace();
    let jetstream = silo_kit::broker::jetstream(async_nats::connect(nats.url()).await.unwrap());
    namespace
        .ensure_stream(&jetstream, StreamKind::Users)
        .await
        .unwrap();
    let mut fixture = OutboxFixture::with(database, pool, namespace, jetstream);
    fixture.start_relay(RelayConfig {
        ack_timeout: Duration::from_millis(500),
        backoff_max: Duration::from_millis(500),
        poll_interval: Duration::from_millis(500),
        ..RelayConfig::default()
    });

    nats.stop();
    let mut ids = fixture.enqueue_users(20).await;
    wait_until("a failed attempt recorded", PATIENCE, || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM outbox WHERE attempts > 0 AND last_error IS NOT NULL",
        )
        .fetch_one(&fixture.pool)
        .await
        .unwrap()
            > 0
    })
    .await;
    assert_eq!(
        fixture.unpublished().await,
        20,
        "nothing can be published during the outage"
    );
    let metrics = fixture.relays[0].0.clone();
    wait_until("backlog gauge shows the outage", PATIENCE, || async {
        metrics.outbox_backlog.get() == 20 && metrics.outbox_oldest_unpublished_age.get() > 0.0
    })
    .await;

    nats.resume().await;
    fixture
        .wait_until_all_published(Duration::from_secs(60))
        .await;
    wait_until("backlog gauge drained", PATIENCE, || async {
        metrics.outbox_backlog.get() == 0
    })
    .await;
    let mut stored = fixture.stored_event_ids().await;
    ids.sort();
    stored.sort();
    assert_eq!(stored, ids, "each event stored exactly once");
    fixture.stop().await;
}

#[tokio::test]
async fn relay_creates_a_deleted_stream_again_and_publishes_into_it() {
    let mut fixture = OutboxFixture::new().await;
    fixture
        .jetstream
        .delete_stream(fixture.namespace.stream_name(StreamKind::Users))
        .await
        .unwrap();
    let ids = fixture.enqueue_users(3).await;
    fixture.start_relay(RelayConfig::default());
    fixture.wait_until_all_published(PATIENCE).await;
    assert_eq!(fixture.stored_event_ids().await, ids);
    fixture.stop().await;
}

#[tokio::test]
async fn relay_cleanup_deletes_inbox_records_and_dead_letters_past_their_retention() {
    let mut fixture = OutboxFixture::new().await;
    sqlx::query(
        "INSERT INTO inbox (consumer, event_id, event_type, processed_at) VALUES \
         ('c', gen_random_uuid(), 'Old', now() - interval '9 days'), \
         ('c', gen_random_uuid(), 'Recent', now() - interval '6 days')",
    )
    .execute(&fixture.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO dead_letters (consumer, subject, payload, error, deliveries, dead_at) VALUES \
         ('c', 's', '', 'Old', 1, now() - interval '31 days'), \
         ('c', 's', '', 'Recent', 1, now() - interval '29 days')",
    )
    .execute(&fixture.pool)
    .await
    .unwrap();
    fixture.start_relay(RelayConfig::default());
    wait_until(
        "old inbox and dead-letter rows deleted",
        PATIENCE,
        || async {
            let remaining: Vec<String> = sqlx::query_scalar(
                "SELECT event_type FROM inbox UNION ALL SELECT error FROM dead_letters",
            )
            .fetch_all(&fixture.pool)
            .await
            .unwrap();
            remaining == vec!["Recent".to_string(), "Recent".to_string()]
        },
    )
    .await;
    fixture.stop().await;
}

#[tokio::test]
async fn enqueue_all_writes_a_run_in_the_given_order() {
    let (_database, pool) = migrated_database().await;
    let envelopes: Vec<Envelope> = (0..5)
        .map(|i| {
            Envelope::new(
                &UserRegistered {
                    user_id: Uuid::new_v4(),
                    email: format!("u{i}@example.com"),
                    full_name: format!("U {i}"),
                },
                format!("corr-{i}"),
            )
            .unwrap()
        })
        .collect();
    let records: Vec<(&str, &Envelope)> = envelopes.iter().map(|e| ("users", e)).collect();
    let mut tx = pool.begin().await.unwrap();
    silo_kit::outbox::postgres::enqueue_all(&mut tx, &records)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let rows: Vec<(Uuid, String, String, serde_json::Value)> =
        sqlx::query_as("SELECT event_id, stream, correlation_id, payload FROM outbox ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 5);
    for (row, envelope) in rows.iter().zip(&envelopes) {
        assert_eq!(row.0, envelope.event_id);
        assert_eq!(row.1, "users");
        assert_eq!(row.2, envelope.correlation_id);
        let stored: Envelope = serde_json::from_value(row.3.clone()).unwrap();
        assert_eq!(&stored, envelope);
    }
}

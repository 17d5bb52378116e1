//! The PostgreSQL outbox and its relay.

use crate::support::*;
use silo_kit::correlation::CorrelationId;
use silo_kit::events::{Envelope, StreamKind, UserRegistered};
use silo_kit::outbox::RelayConfig;
use silo_kit::outbox::postgres::enqueue;
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

const PATIENCE: Duration = Duration::from_secs(20);

fn user(n: usize) -> UserRegistered {
    UserRegistered {
        user_id: Uuid::new_v4(),
        email: format!("user{n}@example.com"),
        full_name: format!("User {n}"),
    }
}

async fn enqueue_users(pool: &PgPool, count: usize) -> Vec<Uuid> {
    let correlation = CorrelationId::generate();
    let mut ids = Vec::new();
    for n in 0..count {
        let mut tx = pool.begin().await.unwrap();
        let envelope = enqueue(&mut tx, &user(n), &correlation).await.unwrap();
        tx.commit().await.unwrap();
        ids.push(envelope.event_id);
    }
    ids
}

async fn unpublished(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn relay_publishes_committed_events_in_order_with_event_id_as_message_id() {
    let (_db, pool, namespace, jetstream) = users_stream_fixture().await;
    let ids = enqueue_users(&pool, 10).await;
    // Small batches: order must hold across batch boundaries too.
    let config = RelayConfig {
        batch_size: 3,
        ..RelayConfig::default()
    };
    let (shutdown, task) = spawn_relay(&pool, jetstream.clone(), &namespace, config);

    wait_until("all 10 records published", PATIENCE, || async {
        unpublished(&pool).await == 0
    })
    .await;
    let stream = jetstream
        .get_stream(namespace.stream_name(StreamKind::Users))
        .await
        .unwrap();
    for (position, id) in ids.iter().enumerate() {
        let message = stream.get_raw_message(position as u64 + 1).await.unwrap();
        let envelope = Envelope::from_slice(&message.payload).unwrap();
        assert_eq!(envelope.event_id, *id, "message {position} out of order");
        assert_eq!(
            message.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
            Some(id.to_string().as_str())
        );
        assert_eq!(
            message.subject.as_str(),
            namespace.subject_of::<UserRegistered>()
        );
    }
    assert_eq!(
        stream_messages(&jetstream, &namespace, StreamKind::Users).await,
        10
    );
    shutdown.trigger();
    task.await.unwrap();
    delete_streams(&jetstream, &namespace).await;
}

#[tokio::test]
async fn relay_wakes_on_notify_for_events_written_while_it_waits() {
    let (_db, pool, namespace, jetstream) = users_stream_fixture().await;
    // A poll interval far beyond the wait below: only NOTIFY can wake the relay.
    let config = RelayConfig {
        poll_interval: Duration::from_secs(3600),
        ..RelayConfig::default()
    };
    let (shutdown, task) = spawn_relay(&pool, jetstream.clone(), &namespace, config);
    // Let the relay finish its first (empty) pass and wait on LISTEN.
    wait_until("relay listening", PATIENCE, || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
            > 0
    })
    .await;
    enqueue_users(&pool, 1).await;
    wait_until("the record published", PATIENCE, || async {
        unpublished(&pool).await == 0
    })
    .await;
    shutdown.trigger();
    task.await.unwrap();
    delete_streams(&jetstream, &namespace).await;
}

#[tokio::test]
async fn rolled_back_events_are_never_published() {
    let (_db, pool, namespace, jetstream) = users_stream_fixture().await;
    let mut tx = pool.begin().await.unwrap();
    enqueue(&mut tx, &user(0), &CorrelationId::generate())
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let committed = enqueue_users(&pool, 1).await;
    let (shutdown, task) =
        spawn_relay(&pool, jetstream.clone(), &namespace, RelayConfig::default());
    wait_until("the committed record published", PATIENCE, || async {
        unpublished(&pool).await == 0
    })
    .await;
    assert_eq!(
        stream_messages(&jetstream, &namespace, StreamKind::Users).await,
        1
    );
    let stream = jetstream
        .get_stream(namespace.stream_name(StreamKind::Users))
        .await
        .unwrap();
    let message = stream.get_raw_message(1).await.unwrap();
    assert_eq!(
        Envelope::from_slice(&message.payload).unwrap().event_id,
        committed[0]
    );
    shutdown.trigger();
    task.await.unwrap();
    delete_streams(&jetstream, &namespace).await;
}

#[tokio::test]
async fn event_published_twice_is_stored_once_in_the_stream() {
    let (_db, pool, namespace, jetstream) = users_stream_fixture().await;
    let ids = enqueue_users(&pool, 1).await;
    let (shutdown, task) =
        spawn_relay(&pool, jetstream.clone(), &namespace, RelayConfig::default());
    wait_until("first publication", PATIENCE, || async {
        unpublished(&pool).await == 0
    })
    .await;
    // A relay that crashed after the broker ack but before marking the record
    // publishes it again: JetStream must drop the second copy.
    sqlx::query("UPDATE outbox SET published_at = NULL WHERE event_id = $1")
        .bind(ids[0])
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("SELECT pg_notify('silo_outbox', '')")
        .execute(&pool)
        .await
        .unwrap();
    wait_until("second publication", PATIENCE, || async {
        unpublished(&pool).await == 0
    })
    .await;
    assert_eq!(
        stream_messages(&jetstream, &namespace, StreamKind::Users).await,
        1
    );
    shutdown.trigger();
    task.await.unwrap();
    delete_streams(&jetstream, &namespace).await;
}

#[tokio::test]
async fn published_records_past_retention_are_deleted() {
    let (_db, pool, namespace, jetstream) = users_stream_fixture().await;
    enqueue_users(&pool, 2).await;
    sqlx::query("UPDATE outbox SET published_at = now() - interval '2 days' WHERE seq = 1")
        .execute(&pool)
        .await
        .unwrap();
    let (shutdown, task) =
        spawn_relay(&pool, jetstream.clone(), &namespace, RelayConfig::default());
    wait_until(
        "old record deleted and new one published",
        PATIENCE,
        || async {
            let rows: Vec<(i64, bool)> =
                sqlx::query_as("SELECT seq, published_at IS NOT NULL FROM outbox ORDER BY seq")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            rows == vec![(2, true)]
        },
    )
    .await;
    shutdown.trigger();
    task.await.unwrap();
    delete_streams(&jetstream, &namespace).await;
}

#[tokio::test]
async fn events_written_during_a_broker_outage_are_published_exactly_once_after_it() {
    let mut nats = crate::private_nats::PrivateNats::start().await;
    let (_db, pool) = migrated_database().await;
    let namespace = private_namespace();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let jetstream = silo_kit::broker::jetstream(client);
    namespace
        .ensure_stream(&jetstream, StreamKind::Users)
        .await
        .unwrap();
    let config = RelayConfig {
        ack_timeout: Duration::from_millis(500),
        backoff_max: Duration::from_millis(500),
        poll_interval: Duration::from_millis(500),
        ..RelayConfig::default()
    };
    let (shutdown, task) = spawn_relay(&pool, jetstream.clone(), &namespace, config);

    nats.stop();
    let ids = enqueue_users(&pool, 20).await;
    wait_until("a failed attempt recorded", PATIENCE, || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM outbox WHERE attempts > 0 AND last_error IS NOT NULL",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
            > 0
    })
    .await;
    assert_eq!(
        unpublished(&pool).await,
        20,
        "nothing can be published during the outage"
    );

    nats.resume().await;
    wait_until(
        "all records published after recovery",
        Duration::from_secs(60),
        || async { unpublished(&pool).await == 0 },
    )
    .await;
    assert_eq!(
        stream_messages(&jetstream, &namespace, StreamKind::Users).await,
        20
    );
    let stream = jetstream
        .get_stream(namespace.stream_name(StreamKind::Users))
        .await
        .unwrap();
    let mut stored = Vec::new();
    for sequence in 1..=20 {
        let message = stream.get_raw_message(sequence).await.unwrap();
        stored.push(Envelope::from_slice(&message.payload).unwrap().event_id);
    }
    let mut expected = ids.clone();
    expected.sort();
    stored.sort();
    assert_eq!(stored, expected, "each event stored exactly once");
    shutdown.trigger();
    task.await.unwrap();
}

#[tokio::test]
async fn two_relays_on_one_database_publish_each_record_once() {
    let (_db, pool, namespace, jetstream) = users_stream_fixture().await;
    enqueue_users(&pool, 120).await;
    let config = RelayConfig {
        batch_size: 10,
        ..RelayConfig::default()
    };
    let shutdown = silo_kit::shutdown::Shutdown::new();
    let mut relays = Vec::new();
    for _ in 0..2 {
        let metrics = silo_kit::metrics::Metrics::new();
        let relay = silo_kit::outbox::Relay::new(
            silo_kit::outbox::postgres::PgOutbox::new(pool.clone()),
            jetstream.clone(),
            namespace.clone(),
            config.clone(),
            metrics.clone(),
        );
        relays.push((metrics, tokio::spawn(relay.run(shutdown.clone()))));
    }
    wait_until("all 120 records published", PATIENCE, || async {
        unpublished(&pool).await == 0
    })
    .await;
    shutdown.trigger();
    let mut published_by_relays = 0;
    for (metrics, task) in relays {
        task.await.unwrap();
        published_by_relays += metrics.outbox_published.get();
    }
    // The stream would hide a double publication (de-duplication), the relays' counts do not.
    assert_eq!(published_by_relays, 120);
    assert_eq!(
        stream_messages(&jetstream, &namespace, StreamKind::Users).await,
        120
    );
    delete_streams(&jetstream, &namespace).await;
}

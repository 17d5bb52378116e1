//! The durable consumer with the PostgreSQL inbox and dead letters.

use crate::support::*;
use async_nats::HeaderMap;
use async_nats::jetstream;
use silo_kit::consumer::{Consumer, ConsumerConfig, HandlerError, MessageHandler, Processed};
use silo_kit::events::{Envelope, EventNamespace, StreamKind, UserRegistered};
use silo_kit::inbox::postgres::{PgDeadLetters, PgEventHandler, PgInbox};
use silo_kit::metrics::Metrics;
use silo_kit::shutdown::Shutdown;
use sqlx::{PgConnection, PgPool};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use uuid::Uuid;

const PATIENCE: Duration = Duration::from_secs(20);

/// Records each applied event in `effects`, or fails as configured: with
/// `failure` set, always, or only `failures_left` times when that is set.
#[derive(Clone)]
struct RecordingHandler {
    failure: Option<fn() -> HandlerError>,
    failures_left: Option<Arc<AtomicUsize>>,
}

impl RecordingHandler {
    fn succeeding() -> Self {
        Self {
            failure: None,
            failures_left: None,
        }
    }

    fn failing(failure: fn() -> HandlerError) -> Self {
        Self {
            failure: Some(failure),
            failures_left: None,
        }
    }
}

impl PgEventHandler for RecordingHandler {
    fn handles(&self, event_type: &str) -> bool {
        event_type == "UserRegistered"
    }

    async fn apply(&self, tx: &mut PgConnection, envelope: &Envelope) -> Result<(), HandlerError> {
        let event: UserRegistered = envelope.decode()?;
        sqlx::query("INSERT INTO effects (event_id, email) VALUES ($1, $2)")
            .bind(envelope.event_id)
            .bind(&event.email)
            .execute(&mut *tx)
            .await?;
        let fails_now = match &self.failures_left {
            None => true,
            Some(left) => left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok(),
        };
        match self.failure {
            Some(failure) if fails_now => Err(failure()),
            _ => Ok(()),
        }
    }
}

struct Fixture {
    _database: silo_testenv::TestDatabase,
    pool: PgPool,
    namespace: EventNamespace,
    jetstream: jetstream::Context,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

/// Where [`RecordingHandler`] records effects, with the transaction that wrote each.
const EFFECTS_TABLE: &str = "CREATE TABLE effects (event_id uuid NOT NULL, email text NOT NULL, \
     txid bigint NOT NULL DEFAULT txid_current())";

impl Fixture {
    async fn start(handler: RecordingHandler, max_deliveries: i64) -> Self {
        Self::start_after(handler, max_deliveries, &[]).await
    }

    /// Publishes `backlog` (raw payloads) before the consumer starts, so it
    /// finds them waiting and receives them in runs.
    async fn start_after(
        handler: RecordingHandler,
        max_deliveries: i64,
        backlog: &[Vec<u8>],
    ) -> Self {
        let (database, pool, namespace, jetstream) = users_stream_fixture().await;
        sqlx::query(EFFECTS_TABLE).execute(&pool).await.unwrap();
        for payload in backlog {
            publish_raw(&jetstream, &namespace, payload.clone()).await;
        }
        let config = ConsumerConfig {
            max_deliveries,
            nak_delay: Duration::from_millis(10),
            ..ConsumerConfig::new("test-service", StreamKind::Users)
        };
        let consumer = Consumer::new(
            jetstream.clone(),
            namespace.clone(),
            config,
            PgInbox::new(pool.clone(), "test-service", handler),
            PgDeadLetters::new(pool.clone()),
            Metrics::new(),
        );
        let shutdown = Shutdown::new();
        let task = tokio::spawn(consumer.run(shutdown.clone()));
        Self {
            _database: database,
            pool,
            namespace,
            jetstream,
            shutdown,
            task,
        }
    }

    /// Publishes raw bytes on the UserRegistered subject under a fresh message id.
    async fn publish_raw(&self, payload: Vec<u8>) {
        publish_raw(&self.jetstream, &self.namespace, payload).await;
    }

    /// Waits until the durable consumer has nothing pending or unacknowledged
    /// and its ack floor covers the whole stream; returns its info. A message
    /// NAKed instead of terminated stays unacknowledged and fails this wait.
    async fn wait_until_settled(&self, stored: u64) -> jetstream::consumer::Info {
        let durable: jetstream::consumer::PullConsumer = self
            .jetstream
            .get_stream(self.namespace.stream_name(StreamKind::Users))
            .await
            .unwrap()
            .get_consumer("test-service")
            .await
            .unwrap();
        wait_until("every delivery settled", PATIENCE, || {
            let mut durable = durable.clone();
            async move {
                let info = durable.info().await.unwrap();
                info.num_ack_pending == 0
                    && info.num_pending == 0
                    && info.ack_floor.stream_sequence >= stored
            }
        })
        .await;
        let mut durable = durable;
        durable.info().await.unwrap().clone()
    }

    /// The last message republished to the `.dlq` subject (waits for it).
    async fn dead_letter_message(&self) -> jetstream::message::StreamMessage {
        let stream = self
            .jetstream
            .get_stream(self.namespace.stream_name(StreamKind::Users))
            .await
            .unwrap();
        let dlq_subject = format!("{}.dlq", self.namespace.subject_of::<UserRegistered>());
        wait_until("dead letter republished", PATIENCE, || async {
            stream
                .get_last_raw_message_by_subject(&dlq_subject)
                .await
                .is_ok()
        })
        .await;
        stream
            .get_last_raw_message_by_subject(&dlq_subject)
            .await
            .unwrap()
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }

    async fn stop(self) {
        self.shutdown.trigger();
        self.task.await.unwrap();
        delete_streams(&self.jetstream, &self.namespace).await;
    }
}

/// Publishes raw bytes on the UserRegistered subject under a fresh message id.
async fn publish_raw(jetstream: &jetstream::Context, namespace: &EventNamespace, payload: Vec<u8>) {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", Uuid::new_v4().to_string().as_str());
    jetstream
        .publish_with_headers(
            namespace.subject_of::<UserRegistered>(),
            headers,
            payload.into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

fn registered() -> Envelope {
    Envelope::new(
        &UserRegistered {
            user_id: Uuid::new_v4(),
            email: "dup@example.com".into(),
            full_name: "Dup".into(),
        },
        "corr",
    )
    .unwrap()
}

#[tokio::test]
async fn event_delivered_twice_is_applied_once() {
    let fixture = Fixture::start(RecordingHandler::succeeding(), 5).await;
    let envelope = registered();
    // Two copies under different message ids get past broker de-duplication.
    fixture.publish_raw(envelope.to_vec().unwrap()).await;
    fixture.publish_raw(envelope.to_vec().unwrap()).await;
    let marker = registered();
    fixture.publish_raw(marker.to_vec().unwrap()).await;
    wait_until("both events applied", PATIENCE, || async {
        fixture.count("SELECT count(*) FROM effects").await >= 2
    })
    .await;
    // Wait until the consumer settled all three messages, then check nothing more landed.
    fixture.wait_until_settled(3).await;
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM effects WHERE event_id = $1")
        .bind(envelope.event_id)
        .fetch_one(&fixture.pool)
        .await
        .unwrap();
    assert_eq!(applied, 1);
    assert_eq!(fixture.count("SELECT count(*) FROM inbox").await, 2);
    fixture.stop().await;
}

#[tokio::test]
async fn transiently_failing_event_is_dead_lettered_after_max_deliveries() {
    let handler =
        RecordingHandler::failing(|| HandlerError::transient(anyhow::anyhow!("dependency down")));
    let fixture = Fixture::start(handler, 3).await;
    let envelope = registered();
    fixture.publish_raw(envelope.to_vec().unwrap()).await;
    wait_until("dead letter recorded", PATIENCE, || async {
        fixture.count("SELECT count(*) FROM dead_letters").await == 1
    })
    .await;
    let (event_id, deliveries, error): (Option<Uuid>, i64, String) =
        sqlx::query_as("SELECT event_id, deliveries, error FROM dead_letters")
            .fetch_one(&fixture.pool)
            .await
            .unwrap();
    assert_eq!(event_id, Some(envelope.event_id));
    assert_eq!(deliveries, 3);
    assert!(error.contains("dependency down"), "{error}");
    // The failed effect rolled back with its inbox record each time.
    assert_eq!(fixture.count("SELECT count(*) FROM effects").await, 0);
    assert_eq!(fixture.count("SELECT count(*) FROM inbox").await, 0);
    let republished = fixture.dead_letter_message().await;
    assert_eq!(
        Envelope::from_slice(&republished.payload).unwrap().event_id,
        envelope.event_id
    );
    assert!(republished.headers.get("Silo-Dead-Letter-Error").is_some());
    // Terminated: no delivery beyond the third, and no second dead letter.
    let info = fixture.wait_until_settled(1).await;
    assert_eq!(info.delivered.consumer_sequence, 3);
    assert_eq!(fixture.count("SELECT count(*) FROM dead_letters").await, 1);
    fixture.stop().await;
}

#[tokio::test]
async fn permanently_failing_event_is_dead_lettered_on_first_delivery() {
    let handler = RecordingHandler::failing(|| {
        HandlerError::permanent(anyhow::anyhow!("amount is negative"))
    });
    let fixture = Fixture::start(handler, 5).await;
    fixture.publish_raw(registered().to_vec().unwrap()).await;
    wait_until("dead letter recorded", PATIENCE, || async {
        fixture.count("SELECT count(*) FROM dead_letters").await == 1
    })
    .await;
    assert_eq!(
        fixture.count("SELECT deliveries FROM dead_letters").await,
        1
    );
    let republished = fixture.dead_letter_message().await;
    assert_eq!(
        republished
            .headers
            .get("Silo-Dead-Letter-Error")
            .map(|v| v.as_str()),
        Some("permanent: amount is negative")
    );
    // Terminated: delivered once, never again.
    let info = fixture.wait_until_settled(1).await;
    assert_eq!(info.delivered.consumer_sequence, 1);
    assert_eq!(fixture.count("SELECT count(*) FROM dead_letters").await, 1);
    fixture.stop().await;
}

#[tokio::test]
async fn undecodable_message_is_dead_lettered_without_an_event_id() {
    let fixture = Fixture::start(RecordingHandler::succeeding(), 5).await;
    fixture.publish_raw(b"not json".to_vec()).await;
    wait_until("dead letter recorded", PATIENCE, || async {
        fixture
            .count("SELECT count(*) FROM dead_letters WHERE event_id IS NULL AND payload = 'not json'::bytea")
            .await
            == 1
    })
    .await;
    let republished = fixture.dead_letter_message().await;
    assert_eq!(republished.payload.as_ref(), b"not json");
    assert_eq!(
        republished.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        Some(
            format!(
                "{}:1.dlq.test-service",
                fixture.namespace.stream_name(StreamKind::Users)
            )
            .as_str()
        )
    );
    fixture.stop().await;
}

#[tokio::test]
async fn events_the_handler_does_not_handle_are_acknowledged_without_inbox_rows() {
    let fixture = Fixture::start(RecordingHandler::succeeding(), 5).await;
    let other = Envelope::new(
        &silo_kit::events::UserEmailChanged {
            user_id: Uuid::new_v4(),
            old_email: "a@x.io".into(),
            new_email: "b@x.io".into(),
        },
        "corr",
    )
    .unwrap();
    // Published on the UserRegistered subject but typed otherwise; then a real one.
    fixture.publish_raw(other.to_vec().unwrap()).await;
    fixture.publish_raw(registered().to_vec().unwrap()).await;
    wait_until("second event applied", PATIENCE, || async {
        fixture.count("SELECT count(*) FROM effects").await == 1
    })
    .await;
    assert_eq!(fixture.count("SELECT count(*) FROM inbox").await, 1);
    assert_eq!(fixture.count("SELECT count(*) FROM dead_letters").await, 0);
    fixture.stop().await;
}

#[tokio::test]
async fn event_failing_while_the_database_is_unavailable_is_retried_past_max_deliveries() {
    // Five failures against a maximum of three deliveries: a transient failure
    // would be dead-lettered, an unavailable database must not be.
    let handler = RecordingHandler {
        failure: Some(|| HandlerError::unavailable(anyhow::anyhow!("database unreachable"))),
        failures_left: Some(Arc::new(AtomicUsize::new(5))),
    };
    let fixture = Fixture::start(handler, 3).await;
    fixture.publish_raw(registered().to_vec().unwrap()).await;
    wait_until("event applied after the outage", PATIENCE, || async {
        fixture.count("SELECT count(*) FROM effects").await == 1
    })
    .await;
    assert_eq!(fixture.count("SELECT count(*) FROM dead_letters").await, 0);
    fixture.stop().await;
}

#[tokio::test]
async fn recording_the_same_dead_letter_twice_keeps_one_row() {
    use silo_kit::consumer::{DeadLetter, DeadLetterSink, StreamPosition};
    let (_database, pool) = migrated_database().await;
    let sink = PgDeadLetters::new(pool.clone());
    let letter = |event_id| DeadLetter {
        consumer: "test-service".into(),
        event_id,
        subject: "silo.users.events.UserRegistered".into(),
        payload: b"payload".to_vec(),
        error: "boom".into(),
        deliveries: 5,
    };
    let at = |sequence| StreamPosition {
        stream: "USERS".into(),
        sequence,
    };
    let event_id = Uuid::new_v4();
    // The same event, redelivered after its Term was lost: one row.
    sink.record_at(&letter(Some(event_id)), Some(&at(7)))
        .await
        .unwrap();
    sink.record_at(&letter(Some(event_id)), Some(&at(7)))
        .await
        .unwrap();
    sink.record(&letter(Some(event_id))).await.unwrap();
    // Undecodable messages are told apart by their stream position.
    sink.record_at(&letter(None), Some(&at(8))).await.unwrap();
    sink.record_at(&letter(None), Some(&at(8))).await.unwrap();
    sink.record_at(&letter(None), Some(&at(9))).await.unwrap();
    let rows: Vec<(Option<Uuid>, Option<i64>)> = sqlx::query_as(
        "SELECT event_id, stream_sequence FROM dead_letters ORDER BY stream_sequence",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![(Some(event_id), Some(7)), (None, Some(8)), (None, Some(9))]
    );
}

#[tokio::test]
async fn a_waiting_backlog_is_applied_in_runs_each_event_once() {
    let events: Vec<Envelope> = (0..40).map(|_| registered()).collect();
    let mut backlog: Vec<Vec<u8>> = events.iter().map(|e| e.to_vec().unwrap()).collect();
    // A second copy of one event, under another message id, in the same backlog.
    backlog.push(events[7].to_vec().unwrap());
    let fixture = Fixture::start_after(RecordingHandler::succeeding(), 5, &backlog).await;
    wait_until("the backlog applied", PATIENCE, || async {
        fixture.count("SELECT count(*) FROM effects").await >= 40
    })
    .await;
    fixture.wait_until_settled(41).await;
    assert_eq!(fixture.count("SELECT count(*) FROM effects").await, 40);
    assert_eq!(
        fixture
            .count("SELECT count(DISTINCT event_id) FROM effects")
            .await,
        40
    );
    assert_eq!(fixture.count("SELECT count(*) FROM inbox").await, 40);
    // Fewer transactions than events: runs were applied together.
    let transactions = fixture
        .count("SELECT count(DISTINCT txid) FROM effects")
        .await;
    assert!(
        transactions < 40,
        "{transactions} transactions for 40 events"
    );
    fixture.stop().await;
}

#[tokio::test]
async fn a_run_with_a_failing_event_falls_back_to_one_by_one() {
    // The first application fails transiently: its run rolls back and every
    // event of it is handled again on its own; nothing is lost or doubled.
    let handler = RecordingHandler {
        failure: Some(|| HandlerError::transient(anyhow::anyhow!("conflict"))),
        failures_left: Some(Arc::new(AtomicUsize::new(1))),
    };
    let events: Vec<Envelope> = (0..20).map(|_| registered()).collect();
    let backlog: Vec<Vec<u8>> = events.iter().map(|e| e.to_vec().unwrap()).collect();
    let fixture = Fixture::start_after(handler, 5, &backlog).await;
    wait_until("the backlog applied", PATIENCE, || async {
        fixture.count("SELECT count(*) FROM effects").await >= 20
    })
    .await;
    fixture.wait_until_settled(20).await;
    assert_eq!(
        fixture
            .count("SELECT count(DISTINCT event_id) FROM effects")
            .await,
        20
    );
    assert_eq!(fixture.count("SELECT count(*) FROM effects").await, 20);
    assert_eq!(fixture.count("SELECT count(*) FROM inbox").await, 20);
    assert_eq!(fixture.count("SELECT count(*) FROM dead_letters").await, 0);
    fixture.stop().await;
}

#[tokio::test]
async fn handle_batch_applies_new_events_and_reports_duplicates_and_ignored_ones() {
    let (_database, pool) = migrated_database().await;
    sqlx::query(EFFECTS_TABLE).execute(&pool).await.unwrap();
    let inbox = PgInbox::new(pool.clone(), "test-service", RecordingHandler::succeeding());
    let (a, b, seen) = (registered(), registered(), registered());
    assert_eq!(inbox.handle(&seen).await.unwrap(), Processed::Applied);
    let mut other = registered();
    other.event_type = "UserEmailChanged".into();
    let outcomes = inbox
        .handle_batch(&[a.clone(), b.clone(), a.clone(), other, seen.clone()])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            Processed::Applied,
            Processed::Applied,
            Processed::Duplicate,
            Processed::Ignored,
            Processed::Duplicate
        ]
    );
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(count("SELECT count(*) FROM effects").await, 3);
    assert_eq!(count("SELECT count(*) FROM inbox").await, 3);
    // a and b share one transaction; `seen` had its own.
    assert_eq!(count("SELECT count(DISTINCT txid) FROM effects").await, 2);
}

#[tokio::test]
async fn a_failed_run_leaves_nothing_behind() {
    let (_database, pool) = migrated_database().await;
    sqlx::query(EFFECTS_TABLE).execute(&pool).await.unwrap();
    // The first application fails after writing its effect: that effect and
    // the inbox records of the whole run must roll back with it.
    let handler = RecordingHandler {
        failure: Some(|| HandlerError::transient(anyhow::anyhow!("conflict"))),
        failures_left: Some(Arc::new(AtomicUsize::new(1))),
    };
    let inbox = PgInbox::new(pool.clone(), "test-service", handler);
    let run = [registered(), registered()];
    assert!(inbox.handle_batch(&run).await.is_err());
    let effects: i64 = sqlx::query_scalar("SELECT count(*) FROM effects")
        .fetch_one(&pool)
        .await
        .unwrap();
    let marks: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((effects, marks), (0, 0));
    // Handled again, the run goes through.
    assert_eq!(
        inbox.handle_batch(&run).await.unwrap(),
        vec![Processed::Applied, Processed::Applied]
    );
}

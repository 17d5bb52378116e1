//! One contract for every `PaymentStore`: each check runs against PostgreSQL, and against
//! MongoDB when `SILO_MONGODB_URL` is set (skipped visibly otherwise).

use payment_service::charging::{Charging, Recovered, idempotency_key};
use payment_service::consumers::BookingEvents;
use payment_service::gateway::{ChargeRequest, PaymentGateway, SimulatedGateway};
use payment_service::payment::{
    BookingState, ChargeResult, NewPayment, PaymentMethod, PaymentStatus,
};
use payment_service::recovery::{self, RecoveryPolicy};
use payment_service::store::{
    CompleteCharge, DeadLetter, Effect, InboxMark, MongoPaymentStore, OutboxEntry, PaymentStore,
    PgPaymentStore, StoreError,
};
use rust_decimal::Decimal;
use silo_kit::consumer::{MessageHandler, Processed};
use silo_kit::events::{
    BookingCancelled, BookingConfirmed, Envelope, RefundRequested, UserEmailChanged,
};
use std::sync::Arc;
use uuid::Uuid;

/// A store under test plus a look at what it wrote to its outbox and dead letters.
#[async_trait::async_trait]
pub trait Harness: Send + Sync {
    fn store(&self) -> Arc<dyn PaymentStore>;
    async fn outbox_event_ids(&self) -> Vec<Uuid>;
    async fn outbox_event_types(&self) -> Vec<String>;
    async fn dead_letter_count(&self) -> u64;
}

struct PgHarness {
    _database: silo_testenv::TestDatabase,
    store: Arc<PgPaymentStore>,
}

#[async_trait::async_trait]
impl Harness for PgHarness {
    fn store(&self) -> Arc<dyn PaymentStore> {
        self.store.clone()
    }
    async fn outbox_event_ids(&self) -> Vec<Uuid> {
        sqlx::query_scalar("SELECT event_id FROM outbox ORDER BY seq")
            .fetch_all(self.store.pool())
            .await
            .unwrap()
    }
    async fn outbox_event_types(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT event_type FROM outbox ORDER BY seq")
            .fetch_all(self.store.pool())
            .await
            .unwrap()
    }
    async fn dead_letter_count(&self) -> u64 {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
            .fetch_one(self.store.pool())
            .await
            .unwrap();
        n as u64
    }
}

struct MongoHarness {
    store: Arc<MongoPaymentStore>,
}

impl Drop for MongoHarness {
    fn drop(&mut self) {
        let database = self.store.database().clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move { database.drop().await.ok() })
        })
        .join();
    }
}

impl MongoHarness {
    /// The outbox documents in insertion order.
    async fn outbox_documents(&self) -> Vec<mongodb::bson::Document> {
        use futures::TryStreamExt;
        self.store
            .database()
            .collection::<mongodb::bson::Document>("outbox")
            .find(mongodb::bson::doc! {})
            .sort(mongodb::bson::doc! { "_id": 1 })
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    }
}

#[async_trait::async_trait]
impl Harness for MongoHarness {
    fn store(&self) -> Arc<dyn PaymentStore> {
        self.store.clone()
    }
    async fn outbox_event_ids(&self) -> Vec<Uuid> {
        self.outbox_documents()
            .await
            .iter()
            .map(|d| Uuid::parse_str(d.get_str("eventId").unwrap()).unwrap())
            .collect()
    }
    async fn outbox_event_types(&self) -> Vec<String> {
        self.outbox_documents()
            .await
            .iter()
            .map(|d| d.get_str("eventType").unwrap().to_string())
            .collect()
    }
    async fn dead_letter_count(&self) -> u64 {
        self.store
            .database()
            .collection::<mongodb::bson::Document>("dead_letters")
            .count_documents(mongodb::bson::doc! {})
            .await
            .unwrap()
    }
}

pub async fn postgres() -> Box<dyn Harness> {
    let database = silo_testenv::TestDatabase::create().await;
    let store = PgPaymentStore::connect(database.pool().await)
        .await
        .unwrap();
    Box::new(PgHarness {
        _database: database,
        store: Arc::new(store),
    })
}

pub async fn mongo(test_name: &str) -> Option<Box<dyn Harness>> {
    let url = silo_testenv::mongodb_url(test_name)?;
    let name = format!("payment_test_{}", silo_testenv::unique_suffix());
    let store = MongoPaymentStore::connect(&url, &name).await.unwrap();
    Some(Box::new(MongoHarness {
        store: Arc::new(store),
    }))
}

fn new_payment(user_id: Uuid, amount: i64) -> NewPayment {
    NewPayment {
        booking_id: Uuid::new_v4(),
        user_id,
        user_email: Some("ada@example.com".into()),
        user_email_as_of: chrono::Utc::now() - chrono::Duration::minutes(5),
        amount: Decimal::new(amount * 100 + 50, 2),
        currency: "USD".into(),
        metadata: serde_json::json!({ "correlationId": "c-1" }),
    }
}

fn card() -> PaymentMethod {
    PaymentMethod {
        kind: "CreditCard".into(),
        last4: "4242".into(),
        brand: "Visa".into(),
    }
}

fn succeeded() -> ChargeResult {
    ChargeResult::Succeeded {
        transaction_id: "txn_1".into(),
        method: card(),
    }
}

fn declined() -> ChargeResult {
    ChargeResult::Declined {
        reason: "limit".into(),
        method: card(),
    }
}

fn event(kind: &str) -> OutboxEntry {
    OutboxEntry {
        stream: "payments".into(),
        envelope: Envelope {
            event_id: Uuid::now_v7(),
            event_type: kind.into(),
            event_version: 1,
            occurred_at: chrono::Utc::now(),
            correlation_id: "c-1".into(),
            data: serde_json::json!({}),
        },
    }
}

/// Records `result` as the outcome of `attempt`, with its event, as a retry (no inbox mark).
async fn record_outcome(
    store: &dyn PaymentStore,
    payment_id: Uuid,
    attempt: i32,
    result: ChargeResult,
) -> Effect<payment_service::payment::Payment> {
    let kind = match result {
        ChargeResult::Succeeded { .. } => "PaymentSucceeded",
        ChargeResult::Declined { .. } => "PaymentFailed",
    };
    store
        .complete_charge(payment_id, attempt, &result, &event(kind), None)
        .await
        .unwrap()
}

/// The (id, attempt) of each payment `claim_abandoned(claimed_before)` takes over.
async fn take_over(
    store: &dyn PaymentStore,
    claimed_before: chrono::DateTime<chrono::Utc>,
) -> Vec<(Uuid, i32)> {
    let taken = store.claim_abandoned(claimed_before, 10).await.unwrap();
    taken.iter().map(|p| (p.id, p.attempts)).collect()
}

/// `event` in an envelope of its own.
fn envelope<E: silo_kit::events::Event>(event: &E) -> Envelope {
    Envelope::new(event, "run").unwrap()
}

fn inbox() -> InboxMark {
    InboxMark {
        consumer: "payment-bookings".into(),
        event_id: Uuid::new_v4(),
        event_type: "BookingCreated".into(),
    }
}

pub mod checks {
    use super::*;

    pub async fn opening_twice_for_one_booking_keeps_one_payment(h: Box<dyn Harness>) {
        let store = h.store();
        let new = new_payment(Uuid::new_v4(), 10);
        let first = store.open(new.clone()).await.unwrap();
        let second = store.open(new.clone()).await.unwrap();
        assert_eq!(first, second);
        assert_eq!(first.status, PaymentStatus::Pending);
        assert_eq!(first.attempts, 1);
        assert_eq!(first.amount, new.amount);
        assert_eq!(
            store.find_by_booking(new.booking_id).await.unwrap(),
            Some(first.clone())
        );
        assert_eq!(store.get(first.id).await.unwrap(), Some(first));
    }

    pub async fn concurrent_opens_for_one_booking_create_one_payment(h: Box<dyn Harness>) {
        let store = h.store();
        let new = new_payment(Uuid::new_v4(), 10);
        let opens = (0..8).map(|_| {
            let store = store.clone();
            let new = new.clone();
            tokio::spawn(async move { store.open(new).await.unwrap().id })
        });
        let ids: Vec<Uuid> = futures::future::join_all(opens)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    }

    pub async fn a_charge_result_and_its_event_are_written_together(h: Box<dyn Harness>) {
        let store = h.store();
        let payment = store.open(new_payment(Uuid::new_v4(), 10)).await.unwrap();
        let event = event("PaymentSucceeded");
        let mark = inbox();
        let Effect::Applied(done) = store
            .complete_charge(payment.id, 1, &succeeded(), &event, Some(&mark))
            .await
            .unwrap()
        else {
            panic!("first completion must apply");
        };
        assert_eq!(done.status, PaymentStatus::Succeeded);
        assert_eq!(done.transaction_id.as_deref(), Some("txn_1"));
        assert_eq!(done.payment_method, Some(card()));
        assert_eq!(h.outbox_event_ids().await, vec![event.envelope.event_id]);
        assert!(store.was_handled(&mark).await.unwrap());
    }

    pub async fn a_redelivered_event_changes_nothing_and_publishes_nothing(h: Box<dyn Harness>) {
        let store = h.store();
        let payment = store.open(new_payment(Uuid::new_v4(), 10)).await.unwrap();
        let mark = inbox();
        let first = event("PaymentSucceeded");
        store
            .complete_charge(payment.id, 1, &succeeded(), &first, Some(&mark))
            .await
            .unwrap();
        let again = store
            .complete_charge(
                payment.id,
                1,
                &declined(),
                &event("PaymentFailed"),
                Some(&mark),
            )
            .await
            .unwrap();
        assert_eq!(again, Effect::Duplicate);
        assert_eq!(h.outbox_event_ids().await, vec![first.envelope.event_id]);
        let stored = store.get(payment.id).await.unwrap().unwrap();
        assert_eq!(stored.status, PaymentStatus::Succeeded);
    }

    pub async fn a_completed_attempt_is_not_completed_again(h: Box<dyn Harness>) {
        let store = h.store();
        let payment = store.open(new_payment(Uuid::new_v4(), 10)).await.unwrap();
        let first = event("PaymentFailed");
        store
            .complete_charge(payment.id, 1, &declined(), &first, Some(&inbox()))
            .await
            .unwrap();
        let other_delivery = inbox();
        let again = store
            .complete_charge(
                payment.id,
                1,
                &succeeded(),
                &event("PaymentSucceeded"),
                Some(&other_delivery),
            )
            .await
            .unwrap();
        assert_eq!(again, Effect::Duplicate);
        assert_eq!(h.outbox_event_ids().await, vec![first.envelope.event_id]);
        let stored = store.get(payment.id).await.unwrap().unwrap();
        assert_eq!(stored.status, PaymentStatus::Failed);
        assert_eq!(stored.failure_reason.as_deref(), Some("limit"));
    }

    pub async fn a_failed_payment_of_a_pending_booking_can_be_retried(h: Box<dyn Harness>) {
        let store = h.store();
        let payment = store.open(new_payment(Uuid::new_v4(), 10)).await.unwrap();
        store
            .complete_charge(payment.id, 1, &declined(), &event("PaymentFailed"), None)
            .await
            .unwrap();
        let retried = store.start_retry(payment.id).await.unwrap();
        assert_eq!(retried.status, PaymentStatus::Pending);
        assert_eq!(retried.attempts, 2);
        // A second retry while the first is in flight is refused.
        assert!(matches!(
            store.start_retry(payment.id).await,
            Err(StoreError::Conflict(_))
        ));
        let Effect::Applied(done) = store
            .complete_charge(
                payment.id,
                2,
                &succeeded(),
                &event("PaymentSucceeded"),
                None,
            )
            .await
            .unwrap()
        else {
            panic!("the retry's completion must apply");
        };
        assert_eq!(done.status, PaymentStatus::Succeeded);
        assert_eq!(done.failure_reason, None);
    }

    pub async fn retry_is_refused_unless_failed_with_a_pending_booking(h: Box<dyn Harness>) {
        let store = h.store();
        assert!(matches!(
            store.start_retry(Uuid::new_v4()).await,
            Err(StoreError::NotFound(_))
        ));
        let ok = store.open(new_payment(Uuid::new_v4(), 10)).await.unwrap();
        store
            .complete_charge(ok.id, 1, &succeeded(), &event("PaymentSucceeded"), None)
            .await
            .unwrap();
        let Err(StoreError::Conflict(message)) = store.start_retry(ok.id).await else {
            panic!("a succeeded payment cannot be retried");
        };
        assert!(message.contains("SUCCEEDED"), "{message}");

        let failed = store.open(new_payment(Uuid::new_v4(), 10)).await.unwrap();
        store
            .complete_charge(failed.id, 1, &declined(), &event("PaymentFailed"), None)
            .await
            .unwrap();
        store
            .set_booking_state(failed.booking_id, BookingState::Cancelled, &inbox())
            .await
            .unwrap();
        let Err(StoreError::Conflict(message)) = store.start_retry(failed.id).await else {
            panic!("the payment of a cancelled booking cannot be retried");
        };
        assert!(message.contains("CANCELLED"), "{message}");
    }

    pub async fn only_an_abandoned_attempt_is_taken_over_and_it_is_claimed_afresh(
        h: Box<dyn Harness>,
    ) {
        let store = h.store();
        let store = &*store;
        let an_hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
        // A cut-off in the future stands for "this much later": every claim made now is old.
        let later = chrono::Utc::now() + chrono::Duration::minutes(1);
        let payment = store.open(new_payment(Uuid::new_v4(), 10)).await.unwrap();
        let opened = "opening a payment claims its first attempt";
        assert!(take_over(store, an_hour_ago).await.is_empty(), "{opened}");
        assert_eq!(take_over(store, later).await, [(payment.id, 1)]);
        let status = store.get(payment.id).await.unwrap().unwrap().status;
        assert_eq!(status, PaymentStatus::Pending);
        let afresh = "a take-over claims the attempt afresh";
        assert!(take_over(store, an_hour_ago).await.is_empty(), "{afresh}");

        record_outcome(store, payment.id, 1, declined()).await;
        let settled = "a settled payment is never taken over";
        assert!(take_over(store, later).await.is_empty(), "{settled}");
        store.start_retry(payment.id).await.unwrap();
        let retried = "a retry claims its attempt";
        assert!(take_over(store, an_hour_ago).await.is_empty(), "{retried}");
        assert_eq!(take_over(store, later).await, [(payment.id, 2)]);
    }

    pub async fn abandoned_attempts_are_taken_over_at_most_limit_at_a_time(h: Box<dyn Harness>) {
        let store = h.store();
        let later = chrono::Utc::now() + chrono::Duration::minutes(1);
        let mut opened = Vec::new();
        for amount in [10, 20, 30] {
            opened.push(
                store
                    .open(new_payment(Uuid::new_v4(), amount))
                    .await
                    .unwrap()
                    .id,
            );
        }
        assert_eq!(store.claim_abandoned(later, 2).await.unwrap().len(), 2);
        let mut all: Vec<Uuid> = store
            .claim_abandoned(later, 10)
            .await
            .unwrap()
            .iter()
            .map(|p| p.id)
            .collect();
        all.sort();
        opened.sort();
        assert_eq!(all, opened, "each is taken over once per pass");
    }

    pub async fn a_retry_that_crashed_after_charging_is_settled_once_by_recovery(
        h: Box<dyn Harness>,
    ) {
        let store = h.store();
        let gateway = Arc::new(SimulatedGateway::default());
        let charging = Charging::new(store.clone(), gateway.clone());
        let payment = store.open(new_payment(Uuid::new_v4(), 10)).await.unwrap();
        record_outcome(&*store, payment.id, 1, declined()).await;
        // The retry claims attempt 2 and the gateway captures it; then the process dies
        // before the outcome is recorded.
        let claimed = store.start_retry(payment.id).await.unwrap();
        let request = ChargeRequest {
            idempotency_key: idempotency_key(&claimed),
            amount: claimed.amount,
            currency: claimed.currency.clone(),
        };
        gateway.charge(&request).await.unwrap();
        drop(claimed);
        assert_eq!(gateway.captures(), 1);

        let later = chrono::Utc::now() + chrono::Duration::minutes(1);
        let recovered = charging.settle_abandoned(later, 10).await.unwrap();
        assert_eq!(
            recovered,
            Recovered {
                claimed: 1,
                settled: 1
            }
        );
        let settled = store.get(payment.id).await.unwrap().unwrap();
        assert_eq!(settled.status, PaymentStatus::Succeeded);
        assert_eq!(settled.attempts, 2);
        assert!(settled.transaction_id.is_some());
        assert_eq!(
            gateway.captures(),
            1,
            "the same request is not captured twice"
        );
        assert_eq!(
            h.outbox_event_types().await,
            ["PaymentFailed", "PaymentSucceeded"]
        );

        // Another pass, or the crashed claimer turning out to be merely slow, changes nothing.
        let again = charging.settle_abandoned(later, 10).await.unwrap();
        assert_eq!(again, Recovered::default());
        let late = record_outcome(&*store, payment.id, 2, succeeded()).await;
        assert_eq!(late, Effect::Duplicate);
        assert_eq!(
            h.outbox_event_types().await,
            ["PaymentFailed", "PaymentSucceeded"]
        );
        assert_eq!(gateway.captures(), 1);
    }

    pub async fn the_recovery_task_settles_a_crashed_retry_when_it_starts(h: Box<dyn Harness>) {
        let store = h.store();
        let gateway = Arc::new(SimulatedGateway::default());
        let payment = store.open(new_payment(Uuid::new_v4(), 10)).await.unwrap();
        record_outcome(&*store, payment.id, 1, declined()).await;
        // The retry claimed attempt 2, then the process died before charging.
        store.start_retry(payment.id).await.unwrap();

        let shutdown = silo_kit::shutdown::Shutdown::new();
        let policy = RecoveryPolicy {
            abandoned_after: std::time::Duration::ZERO,
            sweep_interval: std::time::Duration::from_millis(10),
        };
        let charging = Charging::new(store.clone(), gateway.clone());
        let task = tokio::spawn(recovery::run(charging, policy, shutdown.clone()));
        let settled = crate::support::eventually("the retry settled", crate::support::WAIT, || {
            let store = store.clone();
            async move {
                let found = store.get(payment.id).await.unwrap();
                found.filter(|p| p.status != PaymentStatus::Pending)
            }
        })
        .await;
        shutdown.trigger();
        task.await.unwrap();
        assert_eq!(
            (settled.status, settled.attempts),
            (PaymentStatus::Succeeded, 2)
        );
        assert_eq!(gateway.captures(), 1);
        assert_eq!(
            h.outbox_event_types().await,
            ["PaymentFailed", "PaymentSucceeded"]
        );
    }

    pub async fn a_refund_marks_only_a_succeeded_payment(h: Box<dyn Harness>) {
        let store = h.store();
        let payment = store.open(new_payment(Uuid::new_v4(), 10)).await.unwrap();
        let early = store.refund(payment.booking_id, &inbox()).await.unwrap();
        assert_eq!(early, Effect::Applied(None));
        store
            .complete_charge(
                payment.id,
                1,
                &succeeded(),
                &event("PaymentSucceeded"),
                None,
            )
            .await
            .unwrap();
        let mark = inbox();
        let Effect::Applied(Some(refunded)) =
            store.refund(payment.booking_id, &mark).await.unwrap()
        else {
            panic!("a succeeded payment is refunded");
        };
        assert_eq!(refunded.status, PaymentStatus::Refunded);
        assert_eq!(
            store.refund(payment.booking_id, &mark).await.unwrap(),
            Effect::Duplicate
        );
    }

    pub async fn an_email_change_updates_only_that_users_payments(h: Box<dyn Harness>) {
        let store = h.store();
        let user = Uuid::new_v4();
        let a = store.open(new_payment(user, 10)).await.unwrap();
        let b = store.open(new_payment(user, 20)).await.unwrap();
        let other = store.open(new_payment(Uuid::new_v4(), 30)).await.unwrap();
        let mark = inbox();
        let now = chrono::Utc::now();
        let changed = store
            .change_user_email(user, "new@example.com", now, &mark)
            .await
            .unwrap();
        assert_eq!(changed, Effect::Applied(2));
        for id in [a.id, b.id] {
            let p = store.get(id).await.unwrap().unwrap();
            assert_eq!(p.user_email.as_deref(), Some("new@example.com"));
        }
        let untouched = store.get(other.id).await.unwrap().unwrap();
        assert_eq!(untouched.user_email.as_deref(), Some("ada@example.com"));
        assert_eq!(
            store
                .change_user_email(user, "x@example.com", now, &mark)
                .await
                .unwrap(),
            Effect::Duplicate
        );
    }

    pub async fn an_older_email_change_never_overwrites_a_newer_copy(h: Box<dyn Harness>) {
        let store = h.store();
        let user = Uuid::new_v4();
        let payment = store.open(new_payment(user, 10)).await.unwrap();
        let newer = chrono::Utc::now();
        let older = newer - chrono::Duration::minutes(1);
        store
            .change_user_email(user, "newest@example.com", newer, &inbox())
            .await
            .unwrap();
        let late = store
            .change_user_email(user, "older@example.com", older, &inbox())
            .await
            .unwrap();
        assert_eq!(late, Effect::Applied(0));
        let stored = store.get(payment.id).await.unwrap().unwrap();
        assert_eq!(stored.user_email.as_deref(), Some("newest@example.com"));
        // A change older than the booking's own copy is ignored as well.
        let early = store
            .change_user_email(
                user,
                "ancient@example.com",
                payment.user_email_as_of - chrono::Duration::minutes(1),
                &inbox(),
            )
            .await
            .unwrap();
        assert_eq!(early, Effect::Applied(0));
    }

    pub async fn the_inbox_remembers_handled_events(h: Box<dyn Harness>) {
        let store = h.store();
        let mark = inbox();
        assert!(!store.was_handled(&mark).await.unwrap());
        assert_eq!(
            store.mark_handled(&mark).await.unwrap(),
            Effect::Applied(())
        );
        assert_eq!(store.mark_handled(&mark).await.unwrap(), Effect::Duplicate);
        assert!(store.was_handled(&mark).await.unwrap());
        let other_consumer = InboxMark {
            consumer: "someone-else".into(),
            event_id: mark.event_id,
            event_type: mark.event_type.clone(),
        };
        assert!(!store.was_handled(&other_consumer).await.unwrap());
    }

    pub async fn a_batch_of_openings_gives_each_booking_one_payment(h: Box<dyn Harness>) {
        let store = h.store();
        let earlier = store.open(new_payment(Uuid::new_v4(), 10)).await.unwrap();
        let mut existing = new_payment(earlier.user_id, 99);
        existing.booking_id = earlier.booking_id;
        let (a, b) = (
            new_payment(Uuid::new_v4(), 20),
            new_payment(Uuid::new_v4(), 30),
        );
        let opened = store
            .open_many(vec![a.clone(), existing, b.clone(), a.clone()])
            .await
            .unwrap();
        assert_eq!(opened.len(), 4);
        assert_eq!(opened[1], earlier, "a booking's payment is kept as it was");
        assert_eq!(
            opened[3], opened[0],
            "a booking named twice gets one payment"
        );
        for (payment, new) in [(&opened[0], &a), (&opened[2], &b)] {
            assert_eq!(payment.booking_id, new.booking_id);
            assert_eq!(payment.amount, new.amount);
            assert_eq!(
                (payment.status, payment.attempts),
                (PaymentStatus::Pending, 1)
            );
            assert_eq!(
                store
                    .find_by_booking(new.booking_id)
                    .await
                    .unwrap()
                    .as_ref(),
                Some(payment)
            );
        }
        assert_ne!(opened[0].id, opened[2].id);
        assert!(store.open_many(Vec::new()).await.unwrap().is_empty());
    }

    pub async fn a_batch_of_charge_results_is_written_with_its_events_and_marks(
        h: Box<dyn Harness>,
    ) {
        let store = h.store();
        let news: Vec<NewPayment> = (1..=5).map(|n| new_payment(Uuid::new_v4(), n)).collect();
        let payments = store.open_many(news).await.unwrap();
        let items: Vec<CompleteCharge> = payments
            .iter()
            .enumerate()
            .map(|(n, p)| CompleteCharge {
                payment_id: p.id,
                attempt: 1,
                result: if n % 2 == 0 { succeeded() } else { declined() },
                event: event(if n % 2 == 0 {
                    "PaymentSucceeded"
                } else {
                    "PaymentFailed"
                }),
                inbox: Some(inbox()),
            })
            .collect();
        let marks: Vec<InboxMark> = items.iter().filter_map(|i| i.inbox.clone()).collect();
        assert!(store.handled_among(&marks).await.unwrap().is_empty());
        let outcomes = store.complete_charges(&items).await.unwrap();
        assert_eq!(outcomes.len(), 5);
        for ((outcome, payment), n) in outcomes.iter().zip(&payments).zip(0..) {
            let Effect::Applied(done) = outcome else {
                panic!("item {n} must apply: {outcome:?}");
            };
            assert_eq!(done.id, payment.id);
            let expected = if n % 2 == 0 {
                PaymentStatus::Succeeded
            } else {
                PaymentStatus::Failed
            };
            assert_eq!(done.status, expected);
            assert_eq!(store.get(payment.id).await.unwrap().as_ref(), Some(done));
        }
        let published: Vec<Uuid> = items.iter().map(|i| i.event.envelope.event_id).collect();
        assert_eq!(h.outbox_event_ids().await, published);
        let handled = store.handled_among(&marks).await.unwrap();
        assert_eq!(handled, marks.iter().map(|m| m.event_id).collect());
        let mut with_unknown = marks[..2].to_vec();
        with_unknown.push(inbox());
        let handled = store.handled_among(&with_unknown).await.unwrap();
        assert_eq!(handled, marks[..2].iter().map(|m| m.event_id).collect());
        assert!(store.complete_charges(&[]).await.unwrap().is_empty());
    }

    pub async fn a_batch_of_charge_results_applies_each_as_it_would_alone(h: Box<dyn Harness>) {
        let store = h.store();
        let opened = store
            .open_many((1..=5).map(|n| new_payment(Uuid::new_v4(), n)).collect())
            .await
            .unwrap();
        let [handled, repeated, settled, twice, retry] = &opened[..] else {
            unreachable!()
        };
        let handled_mark = inbox();
        store.mark_handled(&handled_mark).await.unwrap();
        let settled_event = event("PaymentFailed");
        store
            .complete_charge(settled.id, 1, &declined(), &settled_event, None)
            .await
            .unwrap();
        let charge = |payment_id: Uuid, mark: Option<InboxMark>| CompleteCharge {
            payment_id,
            attempt: 1,
            result: succeeded(),
            event: event("PaymentSucceeded"),
            inbox: mark,
        };
        let repeated_mark = inbox();
        let (settled_mark, second_mark) = (inbox(), inbox());
        let items = [
            charge(handled.id, Some(handled_mark)),
            charge(repeated.id, Some(repeated_mark.clone())),
            charge(settled.id, Some(settled_mark.clone())),
            charge(twice.id, Some(inbox())),
            charge(repeated.id, Some(repeated_mark)),
            charge(twice.id, Some(second_mark.clone())),
            charge(retry.id, None),
        ];
        let outcomes = store.complete_charges(&items).await.unwrap();
        let applied: Vec<bool> = outcomes
            .iter()
            .map(|o| matches!(o, Effect::Applied(_)))
            .collect();
        assert_eq!(applied, [false, true, false, true, false, false, true]);
        let published: Vec<Uuid> = [
            &settled_event,
            &items[1].event,
            &items[3].event,
            &items[6].event,
        ]
        .map(|e| e.envelope.event_id)
        .into();
        assert_eq!(h.outbox_event_ids().await, published);
        let status = |id: Uuid| {
            let store = store.clone();
            async move { store.get(id).await.unwrap().unwrap().status }
        };
        assert_eq!(
            status(handled.id).await,
            PaymentStatus::Pending,
            "an event handled before changes nothing"
        );
        assert_eq!(status(settled.id).await, PaymentStatus::Failed);
        assert_eq!(status(twice.id).await, PaymentStatus::Succeeded);
        // Like complete_charge: an event finding its payment no longer PENDING at that
        // attempt is marked handled.
        let kept = store
            .handled_among(&[settled_mark.clone(), second_mark.clone()])
            .await
            .unwrap();
        assert_eq!(kept, [settled_mark.event_id, second_mark.event_id].into());
    }

    pub async fn a_batch_of_booking_decisions_applies_each_event_once(h: Box<dyn Harness>) {
        let store = h.store();
        let opened = store
            .open_many((1..=3).map(|n| new_payment(Uuid::new_v4(), n)).collect())
            .await
            .unwrap();
        let [confirmed, cancelled, untouched] = &opened[..] else {
            unreachable!()
        };
        let decided_before = inbox();
        store.mark_handled(&decided_before).await.unwrap();
        let (repeated, first, second) = (inbox(), inbox(), inbox());
        let items = [
            (
                confirmed.booking_id,
                BookingState::Confirmed,
                repeated.clone(),
            ),
            (confirmed.booking_id, BookingState::Confirmed, repeated),
            (cancelled.booking_id, BookingState::Cancelled, first),
            (
                cancelled.booking_id,
                BookingState::Confirmed,
                second.clone(),
            ),
            (
                untouched.booking_id,
                BookingState::Cancelled,
                decided_before,
            ),
            (Uuid::new_v4(), BookingState::Confirmed, inbox()),
        ];
        let outcomes = store.set_booking_states(&items).await.unwrap();
        let applied = Effect::Applied(());
        assert_eq!(
            outcomes,
            [
                applied.clone(),
                Effect::Duplicate,
                applied.clone(),
                applied.clone(),
                Effect::Duplicate,
                applied,
            ]
        );
        let state = |id: Uuid| {
            let store = store.clone();
            async move { store.get(id).await.unwrap().unwrap().booking_status }
        };
        assert_eq!(state(confirmed.id).await, BookingState::Confirmed);
        assert_eq!(
            state(cancelled.id).await,
            BookingState::Cancelled,
            "the first decision on a booking stands"
        );
        assert_eq!(state(untouched.id).await, BookingState::Pending);
        assert!(store.was_handled(&second).await.unwrap());
        assert!(store.set_booking_states(&[]).await.unwrap().is_empty());
    }

    pub async fn a_run_of_booking_events_has_the_outcomes_of_handling_them_one_by_one(
        h: Box<dyn Harness>,
    ) {
        let store = h.store();
        let gateway = Arc::new(SimulatedGateway::default());
        let handler = BookingEvents::new(Charging::new(store.clone(), gateway.clone()));
        let user = Uuid::new_v4();
        let (done, b1, b2) = (
            crate::support::booking_created(user, 10),
            crate::support::booking_created(user, 20),
            crate::support::booking_created(user, 30),
        );
        let done_before = envelope(&done);
        assert_eq!(
            handler.handle(&done_before).await.unwrap(),
            Processed::Applied
        );
        let b1_created = envelope(&b1);
        let run = [
            b1_created.clone(),
            done_before,
            envelope(&b2),
            b1_created,
            envelope(&BookingCancelled {
                booking_id: b2.booking_id,
                reason: "seats gone".into(),
            }),
            envelope(&RefundRequested {
                payment_id: Uuid::new_v4(),
                booking_id: b2.booking_id,
            }),
            envelope(&BookingConfirmed {
                booking_id: b1.booking_id,
                payment_id: Uuid::new_v4(),
            }),
            // The same booking announced again under another event id.
            envelope(&b2),
            envelope(&UserEmailChanged {
                user_id: user,
                old_email: "ada@example.com".into(),
                new_email: "new@example.com".into(),
            }),
        ];
        use Processed::{Applied, Duplicate, Ignored};
        let outcomes = handler.handle_batch(&run).await.unwrap();
        assert_eq!(
            outcomes,
            [
                Applied, Duplicate, Applied, Duplicate, Applied, Applied, Applied, Duplicate,
                Ignored
            ]
        );
        assert_eq!(gateway.captures(), 3, "each booking is charged once");
        let first = store.find_by_booking(b1.booking_id).await.unwrap().unwrap();
        assert_eq!(
            (first.status, first.booking_status),
            (PaymentStatus::Succeeded, BookingState::Confirmed)
        );
        let second = store.find_by_booking(b2.booking_id).await.unwrap().unwrap();
        assert_eq!(
            (second.status, second.booking_status),
            (PaymentStatus::Refunded, BookingState::Cancelled)
        );
        assert_eq!(
            second.metadata["bookingCreatedEventId"],
            run[2].event_id.to_string(),
            "the payment belongs to the first announcement"
        );
        assert_eq!(h.outbox_event_types().await, ["PaymentSucceeded"; 3]);

        // The whole run delivered again changes nothing.
        let again = handler.handle_batch(&run).await.unwrap();
        let expected: Vec<Processed> = outcomes
            .iter()
            .map(|o| if *o == Ignored { Ignored } else { Duplicate })
            .collect();
        assert_eq!(again, expected);
        assert_eq!(gateway.captures(), 3);
        assert_eq!(h.outbox_event_types().await.len(), 3);
    }

    pub async fn a_run_with_a_malformed_booking_is_refused_as_a_whole(h: Box<dyn Harness>) {
        let store = h.store();
        let gateway = Arc::new(SimulatedGateway::default());
        let handler = BookingEvents::new(Charging::new(store.clone(), gateway.clone()));
        let good = crate::support::booking_created(Uuid::new_v4(), 10);
        let mut malformed = Envelope::new(&good, "run").unwrap();
        malformed.data = serde_json::json!({ "bookingId": "not a uuid" });
        let run = [Envelope::new(&good, "run").unwrap(), malformed];
        assert!(handler.handle_batch(&run).await.is_err());
        assert_eq!(gateway.captures(), 0, "nothing of the run is charged");
        assert_eq!(store.find_by_booking(good.booking_id).await.unwrap(), None);
        // On its own, the well-formed event is handled.
        assert_eq!(handler.handle(&run[0]).await.unwrap(), Processed::Applied);
    }

    pub async fn dead_letters_are_kept(h: Box<dyn Harness>) {
        let store = h.store();
        store
            .record_dead_letter(&DeadLetter {
                consumer: "payment-bookings".into(),
                subject: "bookings.BookingCreated".into(),
                event_id: None,
                payload: b"not json".to_vec(),
                error: "malformed".into(),
                deliveries: 5,
            })
            .await
            .unwrap();
        assert_eq!(h.dead_letter_count().await, 1);
        store.ping().await.unwrap();
    }
}

macro_rules! contract {
    ($($check:ident),* $(,)?) => {
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $check() {
                    super::checks::$check(super::postgres().await).await;
                }
            )*
        }
        mod on_mongodb {
            $(
                #[tokio::test]
                async fn $check() {
                    let name = concat!("store_contract::on_mongodb::", stringify!($check));
                    let Some(harness) = super::mongo(name).await else { return; };
                    super::checks::$check(harness).await;
                }
            )*
        }
    };
}

contract!(
    opening_twice_for_one_booking_keeps_one_payment,
    concurrent_opens_for_one_booking_create_one_payment,
    a_charge_result_and_its_event_are_written_together,
    a_redelivered_event_changes_nothing_and_publishes_nothing,
    a_completed_attempt_is_not_completed_again,
    a_failed_payment_of_a_pending_booking_can_be_retried,
    retry_is_refused_unless_failed_with_a_pending_booking,
    only_an_abandoned_attempt_is_taken_over_and_it_is_claimed_afresh,
    abandoned_attempts_are_taken_over_at_most_limit_at_a_time,
    a_retry_that_crashed_after_charging_is_settled_once_by_recovery,
    the_recovery_task_settles_a_crashed_retry_when_it_starts,
    a_refund_marks_only_a_succeeded_payment,
    an_email_change_updates_only_that_users_payments,
    an_older_email_change_never_overwrites_a_newer_copy,
    the_inbox_remembers_handled_events,
    dead_letters_are_kept,
    a_batch_of_openings_gives_each_booking_one_payment,
    a_batch_of_charge_results_is_written_with_its_events_and_marks,
    a_batch_of_charge_results_applies_each_as_it_would_alone,
    a_batch_of_booking_decisions_applies_each_event_once,
    a_run_of_booking_events_has_the_outcomes_of_handling_them_one_by_one,
    a_run_with_a_malformed_booking_is_refused_as_a_whole,
);

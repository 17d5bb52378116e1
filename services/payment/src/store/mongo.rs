//! The MongoDB payment store: payments, outbox, inbox and dead_letters collections, with the
//! payment and its outbox document written in one multi-document transaction.

use super::{DeadLetter, Effect, InboxMark, OutboxEntry, PaymentStore, StoreError};
use crate::payment::{
    BookingState, ChargeResult, NewPayment, Payment, PaymentMethod, PaymentStatus, now_millis,
};
use chrono::{DateTime, Utc};
use mongodb::bson::{self, Bson, DateTime as BsonDateTime, Decimal128, Document, doc};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Client, ClientSession, Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};
use silo_kit::consumer::DeadLetterSink;
use silo_kit::inbox::mongo::{MongoDeadLetters, is_duplicate_key};
use std::str::FromStr;
use std::time::Duration;
use uuid::Uuid;

/// How long inbox marks are kept (TTL index).
const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Payments in MongoDB (a replica set: transactions need one).
#[derive(Debug, Clone)]
pub struct MongoPaymentStore {
    client: Client,
    database: Database,
    payments: Collection<PaymentDocument>,
    inbox: Collection<Document>,
}

/// A payment as stored: the seed's document shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PaymentDocument {
    #[serde(rename = "_id")]
    id: String,
    booking_id: String,
    user_id: String,
    user_email: Option<String>,
    user_email_as_of: BsonDateTime,
    amount: Decimal128,
    currency: String,
    status: PaymentStatus,
    payment_method: Option<PaymentMethod>,
    transaction_id: Option<String>,
    failure_reason: Option<String>,
    attempts: i32,
    booking_status: BookingState,
    created_at: BsonDateTime,
    updated_at: BsonDateTime,
    /// When the current attempt of a `PENDING` payment was claimed (see `claim_abandoned`).
    #[serde(default)]
    claimed_at: Option<BsonDateTime>,
    metadata: Document,
}

fn to_bson_time(time: DateTime<Utc>) -> BsonDateTime {
    BsonDateTime::from_millis(time.timestamp_millis())
}

fn from_bson_time(time: BsonDateTime) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(time.timestamp_millis())
        .ok_or_else(|| StoreError::Corrupt("timestamp out of range".into()))
}

fn parse_uuid(text: &str, field: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| StoreError::Corrupt(format!("{field}: {e}")))
}

impl PaymentDocument {
    fn from_payment(payment: &Payment) -> Result<Self, StoreError> {
        let metadata = match bson::to_bson(&payment.metadata) {
            Ok(Bson::Document(document)) => document,
            Ok(_) => Document::new(),
            Err(e) => return Err(StoreError::Corrupt(format!("metadata: {e}"))),
        };
        Ok(Self {
            id: payment.id.to_string(),
            booking_id: payment.booking_id.to_string(),
            user_id: payment.user_id.to_string(),
            user_email: payment.user_email.clone(),
            user_email_as_of: to_bson_time(payment.user_email_as_of),
            amount: Decimal128::from_str(&payment.amount.to_string())
                .map_err(|e| StoreError::Corrupt(format!("amount: {e}")))?,
            currency: payment.currency.clone(),
            status: payment.status,
            payment_method: payment.payment_method.clone(),
            transaction_id: payment.transaction_id.clone(),
            failure_reason: payment.failure_reason.clone(),
            attempts: payment.attempts,
            booking_status: payment.booking_status,
            created_at: to_bson_time(payment.created_at),
            updated_at: to_bson_time(payment.updated_at),
            claimed_at: (payment.status == PaymentStatus::Pending)
                .then(|| to_bson_time(payment.updated_at)),
            metadata,
        })
    }

    fn into_payment(self) -> Result<Payment, StoreError> {
        Ok(Payment {
            id: parse_uuid(&self.id, "_id")?,
            booking_id: parse_uuid(&self.booking_id, "bookingId")?,
            user_id: parse_uuid(&self.user_id, "userId")?,
            user_email: self.user_email,
            user_email_as_of: from_bson_time(self.user_email_as_of)?,
            amount: rust_decimal::Decimal::from_str(&self.amount.to_string())
                .map_err(|e| StoreError::Corrupt(format!("amount: {e}")))?,
            currency: self.currency,
            status: self.status,
            payment_method: self.payment_method,
            transaction_id: self.transaction_id,
            failure_reason: self.failure_reason,
            attempts: self.attempts,
            booking_status: self.booking_status,
            created_at: from_bson_time(self.created_at)?,
            updated_at: from_bson_time(self.updated_at)?,
            metadata: Bson::Document(self.metadata).into_relaxed_extjson(),
        })
    }
}

fn inbox_document(inbox: &InboxMark) -> Document {
    doc! {
        "consumer": &inbox.consumer,
        "eventId": inbox.event_id.to_string(),
        "eventType": &inbox.event_type,
        "processedAt": BsonDateTime::now(),
    }
}

fn inbox_filter(inbox: &InboxMark) -> Document {
    doc! { "consumer": &inbox.consumer, "eventId": inbox.event_id.to_string() }
}

impl MongoPaymentStore {
    /// Connects, and creates the collections' indexes (idempotent).
    pub async fn connect(url: &str, database: &str) -> Result<Self, StoreError> {
        let client = Client::with_uri_str(url).await?;
        let database = client.database(database);
        let store = Self {
            payments: database.collection("payments"),
            inbox: database.collection("inbox"),
            database,
            client,
        };
        store.create_indexes().await?;
        Ok(store)
    }

    /// The database, for the outbox relay.
    pub fn database(&self) -> &Database {
        &self.database
    }

    async fn create_indexes(&self) -> Result<(), StoreError> {
        let unique = IndexOptions::builder().unique(true).build();
        let retained = IndexOptions::builder().expire_after(RETENTION).build();
        self.payments
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "bookingId": 1 })
                    .options(unique)
                    .build(),
            )
            .await?;
        self.payments
            .create_index(IndexModel::builder().keys(doc! { "userId": 1 }).build())
            .await?;
        self.payments
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "status": 1, "claimedAt": 1 })
                    .build(),
            )
            .await?;
        silo_kit::outbox::mongo::ensure_indexes(&self.database).await?;
        silo_kit::inbox::mongo::ensure_indexes(&self.database).await?;
        // Inbox marks only need to outlive redeliveries; the kit relay prunes the outbox.
        self.inbox
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "processedAt": 1 })
                    .options(retained)
                    .build(),
            )
            .await?;
        Ok(())
    }

    async fn begin(&self) -> Result<ClientSession, StoreError> {
        let mut session = self.client.start_session().await?;
        session.start_transaction().await?;
        Ok(session)
    }

    /// Inserts the inbox mark in the transaction; `false` (transaction aborted) on a duplicate.
    async fn insert_inbox(
        &self,
        session: &mut ClientSession,
        inbox: &InboxMark,
    ) -> Result<bool, StoreError> {
        match self
            .inbox
            .insert_one(inbox_document(inbox))
            .session(&mut *session)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => {
                let _ = session.abort_transaction().await;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn update_returning(
        &self,
        session: &mut ClientSession,
        filter: Document,
        update: Document,
    ) -> Result<Option<Payment>, StoreError> {
        self.payments
            .find_one_and_update(filter, update)
            .return_document(ReturnDocument::After)
            .session(session)
            .await?
            .map(PaymentDocument::into_payment)
            .transpose()
    }

    async fn find_one(&self, filter: Document) -> Result<Option<Payment>, StoreError> {
        self.payments
            .find_one(filter)
            .await?
            .map(PaymentDocument::into_payment)
            .transpose()
    }
}

#[async_trait::async_trait]
impl PaymentStore for MongoPaymentStore {
    async fn open(&self, new: NewPayment) -> Result<Payment, StoreError> {
        let payment = new.into_payment();
        match self
            .payments
            .insert_one(PaymentDocument::from_payment(&payment)?)
            .await
        {
            Ok(_) => Ok(payment),
            Err(e) if is_duplicate_key(&e) => self
                .find_by_booking(payment.booking_id)
                .await?
                .ok_or_else(|| StoreError::Corrupt("payment vanished after conflict".into())),
            Err(e) => Err(e.into()),
        }
    }

    async fn complete_charge(
        &self,
        payment_id: Uuid,
        attempt: i32,
        result: &ChargeResult,
        event: &OutboxEntry,
        inbox: Option<&InboxMark>,
    ) -> Result<Effect<Payment>, StoreError> {
        let mut session = self.begin().await?;
        if let Some(inbox) = inbox
            && !self.insert_inbox(&mut session, inbox).await?
        {
            return Ok(Effect::Duplicate);
        }
        let method = bson::to_bson(result.method())
            .map_err(|e| StoreError::Corrupt(format!("paymentMethod: {e}")))?;
        let updated = self
            .update_returning(
                &mut session,
                doc! { "_id": payment_id.to_string(), "attempts": attempt, "status": "PENDING" },
                doc! { "$set": {
                    "status": result.status().as_str(),
                    "paymentMethod": method,
                    "transactionId": result.transaction_id(),
                    "failureReason": result.failure_reason(),
                    "updatedAt": to_bson_time(now_millis()),
                } },
            )
            .await?;
        let Some(payment) = updated else {
            session.commit_transaction().await?;
            return Ok(Effect::Duplicate);
        };
        silo_kit::outbox::mongo::enqueue_envelope(
            &self.database,
            &mut session,
            &event.stream,
            &event.envelope,
        )
        .await?;
        session.commit_transaction().await?;
        Ok(Effect::Applied(payment))
    }

    async fn start_retry(&self, payment_id: Uuid) -> Result<Payment, StoreError> {
        let now = to_bson_time(now_millis());
        let updated = self
            .payments
            .find_one_and_update(
                doc! { "_id": payment_id.to_string(), "status": "FAILED", "bookingStatus": "PENDING" },
                doc! {
                    "$set": { "status": "PENDING", "failureReason": Bson::Null,
                              "updatedAt": now, "claimedAt": now },
                    "$inc": { "attempts": 1 },
                },
            )
            .return_document(ReturnDocument::After)
            .await?;
        match updated {
            Some(document) => document.into_payment(),
            None => Err(super::postgres::retry_refusal(
                self.get(payment_id).await?,
                payment_id,
            )),
        }
    }

    async fn claim_abandoned(
        &self,
        claimed_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Payment>, StoreError> {
        // One document at a time: each take-over is atomic, so two recoveries never take the
        // same attempt. Ids taken in this pass are excluded, as their fresh claim may still be
        // older than `claimed_before`.
        let mut taken: Vec<Payment> = Vec::new();
        while taken.len() < limit {
            let ids: Vec<String> = taken.iter().map(|p| p.id.to_string()).collect();
            let found = self
                .payments
                .find_one_and_update(
                    doc! {
                        "status": "PENDING",
                        // Also matches a missing claim (documents written before claims).
                        "claimedAt": { "$not": { "$gte": to_bson_time(claimed_before) } },
                        "_id": { "$nin": ids },
                    },
                    doc! { "$set": { "claimedAt": to_bson_time(now_millis()) } },
                )
                .sort(doc! { "claimedAt": 1 })
                .return_document(ReturnDocument::After)
                .await?;
            match found {
                Some(document) => taken.push(document.into_payment()?),
                None => break,
            }
        }
        Ok(taken)
    }

    async fn refund(
        &self,
        booking_id: Uuid,
        inbox: &InboxMark,
    ) -> Result<Effect<Option<Payment>>, StoreError> {
        let mut session = self.begin().await?;
        if !self.insert_inbox(&mut session, inbox).await? {
            return Ok(Effect::Duplicate);
        }
        let payment = self
            .update_returning(
                &mut session,
                doc! { "bookingId": booking_id.to_string(), "status": "SUCCEEDED" },
                doc! { "$set": { "status": "REFUNDED", "updatedAt": to_bson_time(now_millis()) } },
            )
            .await?;
        session.commit_transaction().await?;
        Ok(Effect::Applied(payment))
    }

    async fn set_booking_state(
        &self,
        booking_id: Uuid,
        state: BookingState,
        inbox: &InboxMark,
    ) -> Result<Effect<()>, StoreError> {
        let mut session = self.begin().await?;
        if !self.insert_inbox(&mut session, inbox).await? {
            return Ok(Effect::Duplicate);
        }
        self.payments
            .update_one(
                doc! { "bookingId": booking_id.to_string(), "bookingStatus": "PENDING" },
                doc! { "$set": { "bookingStatus": state.as_str(),
                "updatedAt": to_bson_time(now_millis()) } },
            )
            .session(&mut session)
            .await?;
        session.commit_transaction().await?;
        Ok(Effect::Applied(()))
    }

    async fn change_user_email(
        &self,
        user_id: Uuid,
        new_email: &str,
        as_of: DateTime<Utc>,
        inbox: &InboxMark,
    ) -> Result<Effect<u64>, StoreError> {
        let mut session = self.begin().await?;
        if !self.insert_inbox(&mut session, inbox).await? {
            return Ok(Effect::Duplicate);
        }
        let changed = self
            .payments
            .update_many(
                doc! { "userId": user_id.to_string(),
                "userEmailAsOf": { "$lt": to_bson_time(as_of) } },
                doc! { "$set": { "userEmail": new_email, "userEmailAsOf": to_bson_time(as_of),
                "updatedAt": to_bson_time(now_millis()) } },
            )
            .session(&mut session)
            .await?;
        session.commit_transaction().await?;
        Ok(Effect::Applied(changed.modified_count))
    }

    async fn mark_handled(&self, inbox: &InboxMark) -> Result<Effect<()>, StoreError> {
        match self.inbox.insert_one(inbox_document(inbox)).await {
            Ok(_) => Ok(Effect::Applied(())),
            Err(e) if is_duplicate_key(&e) => Ok(Effect::Duplicate),
            Err(e) => Err(e.into()),
        }
    }

    async fn was_handled(&self, inbox: &InboxMark) -> Result<bool, StoreError> {
        Ok(self.inbox.find_one(inbox_filter(inbox)).await?.is_some())
    }

    async fn get(&self, payment_id: Uuid) -> Result<Option<Payment>, StoreError> {
        self.find_one(doc! { "_id": payment_id.to_string() }).await
    }

    async fn find_by_booking(&self, booking_id: Uuid) -> Result<Option<Payment>, StoreError> {
        self.find_one(doc! { "bookingId": booking_id.to_string() })
            .await
    }

    async fn record_dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        MongoDeadLetters::new(self.database.clone())
            .record(letter)
            .await
            .map_err(|e| StoreError::DeadLetter(format!("{e:#}")))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.database.run_command(doc! { "ping": 1 }).await?;
        Ok(())
    }
}

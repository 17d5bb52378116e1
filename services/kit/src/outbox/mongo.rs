//! The MongoDB outbox: the `outbox` collection, [`enqueue`] inside the
//! business transaction (a multi-document transaction on a session), and
//! [`MongoOutbox`] for the relay.
//!
//! Documents: `{_id: ObjectId, eventId, stream, eventType, payload (envelope
//! JSON text), correlationId, createdAt, publishedAt, claimedUntil,
//! claimToken, attempts, lastError}`. MongoDB has no `SKIP LOCKED`: a claim
//! stamps candidate documents with a fresh `claimToken` in one
//! `updateMany` whose filter re-checks that each is still unclaimed, then
//! reads back exactly the documents carrying that token. The relay wakes on a
//! change stream of inserts (transactions already require a replica set).

use super::{Backlog, OutboxError, OutboxRecord, OutboxStore, WakeSignal};
use crate::correlation::CorrelationId;
use crate::events::{Envelope, Event};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{self, Document, doc};
use mongodb::change_stream::ChangeStream;
use mongodb::change_stream::event::ChangeStreamEvent;
use mongodb::options::IndexOptions;
use mongodb::{ClientSession, Collection, Database, IndexModel};
use std::time::Duration;
use uuid::Uuid;

/// The outbox collection's name.
pub const OUTBOX_COLLECTION: &str = "outbox";

fn bson_time(time: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(time.timestamp_millis())
}

fn chrono_time(time: bson::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(time.timestamp_millis()).unwrap_or_default()
}

/// Creates the outbox indexes (call at start-up; idempotent).
pub async fn ensure_indexes(database: &Database) -> Result<(), OutboxError> {
    let outbox = database.collection::<Document>(OUTBOX_COLLECTION);
    outbox
        .create_index(
            IndexModel::builder()
                .keys(doc! { "eventId": 1 })
                .options(IndexOptions::builder().unique(true).build())
                .build(),
        )
        .await?;
    outbox
        .create_index(
            IndexModel::builder()
                .keys(doc! { "publishedAt": 1, "_id": 1 })
                .build(),
        )
        .await?;
    outbox
        .create_index(IndexModel::builder().keys(doc! { "claimToken": 1 }).build())
        .await?;
    Ok(())
}

/// Writes `event` to the outbox within `session`'s transaction.
pub async fn enqueue<E: Event>(
    database: &Database,
    session: &mut ClientSession,
    event: &E,
    correlation_id: &CorrelationId,
) -> Result<Envelope, OutboxError> {
    let envelope = Envelope::new(event, correlation_id.as_str())?;
    enqueue_envelope(database, session, E::STREAM.token(), &envelope).await?;
    Ok(envelope)
}

/// Writes a ready envelope to the outbox within `session`'s transaction.
pub async fn enqueue_envelope(
    database: &Database,
    session: &mut ClientSession,
    stream_token: &str,
    envelope: &Envelope,
) -> Result<(), OutboxError> {
    let payload =
        String::from_utf8(envelope.to_vec()?).map_err(|e| OutboxError::Corrupt(e.to_string()))?;
    database
        .collection::<Document>(OUTBOX_COLLECTION)
        .insert_one(doc! {
            "eventId": envelope.event_id.to_string(),
            "stream": stream_token,
            "eventType": &envelope.event_type,
            "payload": payload,
            "correlationId": &envelope.correlation_id,
            "createdAt": bson_time(envelope.occurred_at),
            "publishedAt": bson::Bson::Null,
            "claimedUntil": bson::Bson::Null,
            "attempts": 0_i32,
        })
        .session(session)
        .await?;
    Ok(())
}

/// The outbox of one MongoDB database.
#[derive(Debug, Clone)]
pub struct MongoOutbox {
    collection: Collection<Document>,
    database: Database,
}

impl MongoOutbox {
    /// The outbox in `database`.
    pub fn new(database: &Database) -> Self {
        Self {
            collection: database.collection(OUTBOX_COLLECTION),
            database: database.clone(),
        }
    }

    fn ids_filter(event_ids: &[Uuid]) -> Document {
        let ids: Vec<String> = event_ids.iter().map(Uuid::to_string).collect();
        doc! { "eventId": { "$in": ids } }
    }
}

/// A change stream of outbox inserts.
pub struct MongoWakeSignal {
    stream: ChangeStream<ChangeStreamEvent<Document>>,
}

impl std::fmt::Debug for MongoWakeSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MongoWakeSignal")
    }
}

impl WakeSignal for MongoWakeSignal {
    async fn notified(&mut self) -> Result<(), OutboxError> {
        match self.stream.next().await {
            Some(Ok(_)) => Ok(()),
            Some(Err(error)) => Err(error.into()),
            None => Err(OutboxError::Corrupt("outbox change stream ended".into())),
        }
    }
}

fn record_of(document: &Document) -> Result<OutboxRecord, OutboxError> {
    let corrupt = |what: &str| OutboxError::Corrupt(format!("outbox document without {what}"));
    let event_id = document
        .get_str("eventId")
        .ok()
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| corrupt("eventId"))?;
    Ok(OutboxRecord {
        event_id,
        stream: document
            .get_str("stream")
            .map_err(|_| corrupt("stream"))?
            .to_string(),
        event_type: document
            .get_str("eventType")
            .map_err(|_| corrupt("eventType"))?
            .to_string(),
        payload: document
            .get_str("payload")
            .map_err(|_| corrupt("payload"))?
            .as_bytes()
            .to_vec(),
        correlation_id: document
            .get_str("correlationId")
            .unwrap_or_default()
            .to_string(),
        created_at: document
            .get_datetime("createdAt")
            .map(|t| chrono_time(*t))
            .map_err(|_| corrupt("createdAt"))?,
        attempts: document.get_i32("attempts").unwrap_or(0),
    })
}

impl OutboxStore for MongoOutbox {
    type Signal = MongoWakeSignal;

    async fn wake_signal(&self) -> Result<Self::Signal, OutboxError> {
        let stream = self
            .collection
            .watch()
            .pipeline([doc! { "$match": { "operationType": "insert" } }])
            .await?;
        Ok(MongoWakeSignal { stream })
    }

    async fn claim_batch(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxRecord>, OutboxError> {
        let now = Utc::now();
        let claimable = doc! {
            "publishedAt": bson::Bson::Null,
            "$or": [ { "claimedUntil": bson::Bson::Null }, { "claimedUntil": { "$lt": bson_time(now) } } ],
        };
        let candidates: Vec<Document> = self
            .collection
            .find(claimable.clone())
            .sort(doc! { "_id": 1 })
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .projection(doc! { "_id": 1 })
            .await?
            .try_collect()
            .await?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<bson::Bson> = candidates
            .iter()
            .filter_map(|candidate| candidate.get("_id").cloned())
            .collect();
        let token = Uuid::new_v4().to_string();
        let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30));
        let mut filter = claimable;
        filter.insert("_id", doc! { "$in": ids });
        self.collection
            .update_many(
                filter,
                doc! { "$set": { "claimToken": &token, "claimedUntil": bson_time(now + lease) } },
            )
            .await?;
        let claimed: Vec<Document> = self
            .collection
            .find(doc! { "claimToken": &token })
            .sort(doc! { "_id": 1 })
            .await?
            .try_collect()
            .await?;
        claimed.iter().map(record_of).collect()
    }

    async fn mark_published(&self, event_ids: &[Uuid]) -> Result<(), OutboxError> {
        self.collection
            .update_many(
                Self::ids_filter(event_ids),
                doc! { "$set": { "publishedAt": bson_time(Utc::now()), "claimedUntil": bson::Bson::Null } },
            )
            .await?;
        Ok(())
    }

    async fn mark_failed(&self, event_ids: &[Uuid], error: &str) -> Result<(), OutboxError> {
        self.collection
            .update_many(
                Self::ids_filter(event_ids),
                doc! {
                    "$inc": { "attempts": 1 },
                    "$set": { "lastError": error, "claimedUntil": bson::Bson::Null },
                },
            )
            .await?;
        Ok(())
    }

    async fn release(&self, event_ids: &[Uuid]) -> Result<(), OutboxError> {
        self.collection
            .update_many(
                Self::ids_filter(event_ids),
                doc! { "$set": { "claimedUntil": bson::Bson::Null } },
            )
            .await?;
        Ok(())
    }

    async fn delete_published_before(&self, cutoff: DateTime<Utc>) -> Result<u64, OutboxError> {
        let deleted = self
            .collection
            .delete_many(doc! { "publishedAt": { "$lt": bson_time(cutoff) } })
            .await?;
        Ok(deleted.deleted_count)
    }

    async fn backlog(&self) -> Result<Option<Backlog>, OutboxError> {
        let unpublished = doc! { "publishedAt": bson::Bson::Null };
        let records = self.collection.count_documents(unpublished.clone()).await?;
        let oldest = self
            .collection
            .find_one(unpublished)
            .sort(doc! { "_id": 1 })
            .projection(doc! { "createdAt": 1 })
            .await?
            .and_then(|document| document.get_datetime("createdAt").ok().copied())
            .map(|created| DateTime::<Utc>::from(created.to_system_time()));
        Ok(Some(Backlog { records, oldest }))
    }

    async fn delete_inbox_before(&self, cutoff: DateTime<Utc>) -> Result<u64, OutboxError> {
        let deleted = self
            .database
            .collection::<Document>(crate::inbox::mongo::INBOX_COLLECTION)
            .delete_many(doc! { "processedAt": { "$lt": bson_time(cutoff) } })
            .await?;
        Ok(deleted.deleted_count)
    }

    async fn delete_dead_letters_before(&self, cutoff: DateTime<Utc>) -> Result<u64, OutboxError> {
        let deleted = self
            .database
            .collection::<Document>(crate::inbox::mongo::DEAD_LETTER_COLLECTION)
            .delete_many(doc! { "deadAt": { "$lt": bson_time(cutoff) } })
            .await?;
        Ok(deleted.deleted_count)
    }
}

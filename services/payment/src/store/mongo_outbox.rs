//! The MongoDB `outbox` collection as a source for the kit's relay: records are claimed with a
//! lease (MongoDB has no `SKIP LOCKED`), and the relay wakes on a change stream of inserts.

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{Bson, DateTime as BsonDateTime, Document, doc};
use mongodb::change_stream::ChangeStream;
use mongodb::change_stream::event::ChangeStreamEvent;
use mongodb::{Collection, Database};
use silo_kit::outbox::{OutboxError, OutboxRecord, OutboxStore, WakeSignal};
use std::time::Duration;
use uuid::Uuid;

/// The outbox collection of the payment database.
#[derive(Debug, Clone)]
pub struct MongoOutbox {
    outbox: Collection<Document>,
}

impl MongoOutbox {
    /// The outbox of `database` (written by [`super::MongoPaymentStore`]).
    pub fn new(database: &Database) -> Self {
        Self {
            outbox: database.collection("outbox"),
        }
    }

    fn ids(event_ids: &[Uuid]) -> Vec<String> {
        event_ids.iter().map(Uuid::to_string).collect()
    }
}

/// Wakes the relay on every insert into the outbox (a change stream: needs a replica set,
/// which the store's transactions need anyway).
pub struct MongoWakeSignal {
    inserts: ChangeStream<ChangeStreamEvent<Document>>,
}

impl WakeSignal for MongoWakeSignal {
    async fn notified(&mut self) -> Result<(), OutboxError> {
        match self.inserts.next().await {
            Some(Ok(_)) => Ok(()),
            Some(Err(error)) => Err(error.into()),
            None => Err(OutboxError::Corrupt("outbox change stream ended".into())),
        }
    }
}

fn record_from(document: &Document) -> Result<OutboxRecord, OutboxError> {
    let corrupt = |what: &str| OutboxError::Corrupt(format!("outbox document without {what}"));
    let text = |field: &str| document.get_str(field).map_err(|_| corrupt(field));
    let event_id = Uuid::parse_str(text("_id")?).map_err(|_| corrupt("a UUID _id"))?;
    let created_at = document
        .get_datetime("createdAt")
        .map_err(|_| corrupt("createdAt"))?;
    Ok(OutboxRecord {
        event_id,
        stream: text("stream")?.to_string(),
        event_type: text("eventType")?.to_string(),
        payload: text("payload")?.as_bytes().to_vec(),
        correlation_id: text("correlationId")?.to_string(),
        created_at: DateTime::from_timestamp_millis(created_at.timestamp_millis())
            .ok_or_else(|| corrupt("a valid createdAt"))?,
        attempts: document.get_i32("attempts").unwrap_or(0),
    })
}

fn later(lease: Duration) -> BsonDateTime {
    let millis = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
    BsonDateTime::from_millis(
        BsonDateTime::now()
            .timestamp_millis()
            .saturating_add(millis),
    )
}

impl OutboxStore for MongoOutbox {
    type Signal = MongoWakeSignal;

    async fn wake_signal(&self) -> Result<MongoWakeSignal, OutboxError> {
        let inserts = self
            .outbox
            .watch()
            .pipeline([doc! { "$match": { "operationType": "insert" } }])
            .await?;
        Ok(MongoWakeSignal { inserts })
    }

    async fn claim_batch(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxRecord>, OutboxError> {
        let now = BsonDateTime::now();
        let claimable = doc! {
            "publishedAt": Bson::Null,
            "$or": [ { "claimedUntil": Bson::Null }, { "claimedUntil": { "$lt": now } } ],
        };
        let candidates: Vec<Document> = self
            .outbox
            .find(claimable.clone())
            .sort(doc! { "createdAt": 1, "_id": 1 })
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .projection(doc! { "_id": 1 })
            .await?
            .try_collect()
            .await?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Bson> = candidates
            .iter()
            .filter_map(|d| d.get("_id").cloned())
            .collect();
        // The claim token tells this relay's claims from a concurrent replica's.
        let token = Uuid::new_v4().to_string();
        let mut filter = claimable;
        filter.insert("_id", doc! { "$in": ids });
        self.outbox
            .update_many(
                filter,
                doc! { "$set": { "claimedUntil": later(lease), "claimToken": &token } },
            )
            .await?;
        let claimed: Vec<Document> = self
            .outbox
            .find(doc! { "claimToken": &token, "publishedAt": Bson::Null })
            .sort(doc! { "createdAt": 1, "_id": 1 })
            .await?
            .try_collect()
            .await?;
        claimed.iter().map(record_from).collect()
    }

    async fn mark_published(&self, event_ids: &[Uuid]) -> Result<(), OutboxError> {
        self.outbox
            .update_many(
                doc! { "_id": { "$in": Self::ids(event_ids) } },
                doc! { "$set": { "publishedAt": BsonDateTime::now(), "claimedUntil": Bson::Null } },
            )
            .await?;
        Ok(())
    }

    async fn mark_failed(&self, event_ids: &[Uuid], error: &str) -> Result<(), OutboxError> {
        self.outbox
            .update_many(
                doc! { "_id": { "$in": Self::ids(event_ids) } },
                doc! {
                    "$set": { "lastError": error, "claimedUntil": Bson::Null },
                    "$inc": { "attempts": 1 },
                },
            )
            .await?;
        Ok(())
    }

    async fn release(&self, event_ids: &[Uuid]) -> Result<(), OutboxError> {
        self.outbox
            .update_many(
                doc! { "_id": { "$in": Self::ids(event_ids) } },
                doc! { "$set": { "claimedUntil": Bson::Null } },
            )
            .await?;
        Ok(())
    }

    async fn delete_published_before(&self, cutoff: DateTime<Utc>) -> Result<u64, OutboxError> {
        let cutoff = BsonDateTime::from_millis(cutoff.timestamp_millis());
        let deleted = self
            .outbox
            .delete_many(doc! { "publishedAt": { "$lt": cutoff } })
            .await?;
        Ok(deleted.deleted_count)
    }
}

//! The MongoDB inbox (`inbox` collection, unique `(consumer, eventId)`) and
//! dead letters (`dead_letters` collection).

use crate::consumer::{DeadLetter, DeadLetterSink, HandlerError, MessageHandler, Processed};
use crate::events::Envelope;
use mongodb::bson::{self, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::IndexOptions;
use mongodb::{Client, ClientSession, Database, IndexModel};
use std::future::Future;

/// The inbox collection's name.
pub const INBOX_COLLECTION: &str = "inbox";
/// The dead-letter collection's name.
pub const DEAD_LETTER_COLLECTION: &str = "dead_letters";

const DUPLICATE_KEY: i32 = 11000;

impl From<mongodb::error::Error> for HandlerError {
    /// Network and server-selection failures mean MongoDB is unavailable;
    /// other errors are transient.
    fn from(error: mongodb::error::Error) -> Self {
        match error.kind.as_ref() {
            ErrorKind::Io(_)
            | ErrorKind::ServerSelection { .. }
            | ErrorKind::ConnectionPoolCleared { .. } => Self::Unavailable(error.into()),
            _ => Self::Transient(error.into()),
        }
    }
}

/// Whether `error` is a unique-index violation.
pub fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(write_error)) => {
            write_error.code == DUPLICATE_KEY
        }
        ErrorKind::Command(command_error) => command_error.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// Creates the inbox index (call at start-up; idempotent).
pub async fn ensure_indexes(database: &Database) -> Result<(), mongodb::error::Error> {
    database
        .collection::<Document>(INBOX_COLLECTION)
        .create_index(
            IndexModel::builder()
                .keys(doc! { "consumer": 1, "eventId": 1 })
                .options(IndexOptions::builder().unique(true).build())
                .build(),
        )
        .await?;
    Ok(())
}

/// An event effect written within the consumer's MongoDB transaction.
pub trait MongoEventHandler: Send + Sync + 'static {
    /// Whether this handler acts on `event_type`.
    fn handles(&self, event_type: &str) -> bool;

    /// Applies the effect within `session`'s transaction (the inbox document is
    /// already written in it); outgoing events go to the outbox on `session` too.
    fn apply<'a>(
        &'a self,
        session: &'a mut ClientSession,
        envelope: &'a Envelope,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a;
}

/// Wraps a [`MongoEventHandler`] with inbox de-duplication for one consumer.
#[derive(Debug, Clone)]
pub struct MongoInbox<H> {
    client: Client,
    database: Database,
    consumer: String,
    handler: H,
}

impl<H> MongoInbox<H> {
    /// The inbox of `consumer` in `database`.
    pub fn new(
        client: Client,
        database: Database,
        consumer: impl Into<String>,
        handler: H,
    ) -> Self {
        Self {
            client,
            database,
            consumer: consumer.into(),
            handler,
        }
    }
}

impl<H: MongoEventHandler> MessageHandler for MongoInbox<H> {
    async fn handle(&self, envelope: &Envelope) -> Result<Processed, HandlerError> {
        if !self.handler.handles(&envelope.event_type) {
            return Ok(Processed::Ignored);
        }
        let mut session = self.client.start_session().await?;
        session.start_transaction().await?;
        let inserted = self
            .database
            .collection::<Document>(INBOX_COLLECTION)
            .insert_one(doc! {
                "consumer": &self.consumer,
                "eventId": envelope.event_id.to_string(),
                "eventType": &envelope.event_type,
                "processedAt": bson::DateTime::now(),
            })
            .session(&mut session)
            .await;
        match inserted {
            Ok(_) => {}
            Err(error) if is_duplicate_key(&error) => {
                let _ = session.abort_transaction().await;
                return Ok(Processed::Duplicate);
            }
            Err(error) => return Err(error.into()),
        }
        if let Err(error) = self.handler.apply(&mut session, envelope).await {
            let _ = session.abort_transaction().await;
            return Err(error);
        }
        session.commit_transaction().await?;
        Ok(Processed::Applied)
    }
}

/// Records dead letters in the `dead_letters` collection.
#[derive(Debug, Clone)]
pub struct MongoDeadLetters {
    database: Database,
}

impl MongoDeadLetters {
    /// Dead letters in `database`.
    pub fn new(database: Database) -> Self {
        Self { database }
    }
}

impl DeadLetterSink for MongoDeadLetters {
    async fn record(&self, letter: &DeadLetter) -> Result<(), anyhow::Error> {
        self.database
            .collection::<Document>(DEAD_LETTER_COLLECTION)
            .insert_one(doc! {
                "consumer": &letter.consumer,
                "eventId": letter.event_id.map(|id| id.to_string()),
                "subject": &letter.subject,
                "payload": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: letter.payload.clone() },
                "error": &letter.error,
                "deliveries": letter.deliveries,
                "deadAt": bson::DateTime::now(),
            })
            .await?;
        Ok(())
    }
}

//! The MongoDB inbox (`inbox` collection, unique `(consumer, eventId)`) and
//! dead letters (`dead_letters` collection).

use crate::consumer::{
    DeadLetter, DeadLetterSink, HandlerError, MessageHandler, Processed, StreamPosition,
};
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

/// Server error codes of a replica set without a writable primary (an
/// election or a restart in progress): NotWritablePrimary,
/// NotPrimaryNoSecondaryOk, NotPrimaryOrSecondary, PrimarySteppedDown,
/// InterruptedDueToReplStateChange, InterruptedAtShutdown, ShutdownInProgress.
const NO_PRIMARY_CODES: [i32; 7] = [10107, 13435, 13436, 189, 11602, 11600, 91];

/// Whether labels (`has_label`) or a server error `code` say MongoDB itself is
/// failing over or restarting rather than the operation being wrong.
pub fn mongo_signals_unavailable(has_label: impl Fn(&str) -> bool, code: Option<i32>) -> bool {
    has_label(mongodb::error::RETRYABLE_WRITE_ERROR)
        || has_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR)
        || code.is_some_and(|code| NO_PRIMARY_CODES.contains(&code))
}

/// The server error code of `error`, if the server returned one.
fn server_code(error: &mongodb::error::Error) -> Option<i32> {
    match error.kind.as_ref() {
        ErrorKind::Command(command) => Some(command.code),
        ErrorKind::Write(WriteFailure::WriteError(write)) => Some(write.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(concern)) => Some(concern.code),
        _ => None,
    }
}

impl From<mongodb::error::Error> for HandlerError {
    /// Network and server-selection failures, retryable/transient-transaction
    /// labels and "no writable primary" codes mean MongoDB is unavailable
    /// (an election or restart); other errors are transient.
    fn from(error: mongodb::error::Error) -> Self {
        let unreachable = matches!(
            error.kind.as_ref(),
            ErrorKind::Io(_)
                | ErrorKind::ServerSelection { .. }
                | ErrorKind::ConnectionPoolCleared { .. }
        );
        if unreachable
            || mongo_signals_unavailable(|label| error.contains_label(label), server_code(&error))
        {
            Self::Unavailable(error.into())
        } else {
            Self::Transient(error.into())
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

/// Creates the inbox index and the dead-letter identity indexes (call at
/// start-up; idempotent).
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
    let dead_letters = database.collection::<Document>(DEAD_LETTER_COLLECTION);
    dead_letters
        .create_index(
            IndexModel::builder()
                .keys(doc! { "consumer": 1, "eventId": 1 })
                .options(
                    IndexOptions::builder()
                        .name("consumer_event".to_string())
                        .unique(true)
                        .partial_filter_expression(doc! { "eventId": { "$type": "string" } })
                        .build(),
                )
                .build(),
        )
        .await?;
    dead_letters
        .create_index(
            IndexModel::builder()
                .keys(doc! { "consumer": 1, "stream": 1, "streamSequence": 1 })
                .options(
                    IndexOptions::builder()
                        .name("consumer_position".to_string())
                        .unique(true)
                        .partial_filter_expression(
                            doc! { "eventId": { "$type": "null" }, "streamSequence": { "$exists": true } },
                        )
                        .build(),
                )
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
        self.record_at(letter, None).await
    }

    /// Inserts the letter once (see [`ensure_indexes`]): recording the same
    /// message again hits a unique index and counts as done.
    async fn record_at(
        &self,
        letter: &DeadLetter,
        position: Option<&StreamPosition>,
    ) -> Result<(), anyhow::Error> {
        let mut document = doc! {
            "consumer": &letter.consumer,
            "eventId": letter.event_id.map(|id| id.to_string()),
            "subject": &letter.subject,
            "payload": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: letter.payload.clone() },
            "error": &letter.error,
            "deliveries": letter.deliveries,
            "deadAt": bson::DateTime::now(),
        };
        if let Some(position) = position {
            document.insert("stream", &position.stream);
            document.insert(
                "streamSequence",
                i64::try_from(position.sequence).unwrap_or(i64::MAX),
            );
        }
        match self
            .database
            .collection::<Document>(DEAD_LETTER_COLLECTION)
            .insert_one(document)
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if is_duplicate_key(&error) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command_error(code: i32, name: &str) -> mongodb::error::Error {
        let command: mongodb::error::CommandError =
            bson::from_document(doc! { "code": code, "codeName": name, "errmsg": "x" })
                .expect("a server error document");
        ErrorKind::Command(command).into()
    }

    #[test]
    fn a_primary_stepping_down_is_unavailable() {
        assert!(matches!(
            HandlerError::from(command_error(10107, "NotWritablePrimary")),
            HandlerError::Unavailable(_)
        ));
        assert!(matches!(
            HandlerError::from(command_error(189, "PrimarySteppedDown")),
            HandlerError::Unavailable(_)
        ));
    }

    #[test]
    fn a_rejected_operation_stays_transient() {
        assert!(matches!(
            HandlerError::from(command_error(112, "WriteConflict")),
            HandlerError::Transient(_)
        ));
    }

    #[test]
    fn retryable_and_transient_transaction_labels_are_unavailable() {
        let labelled = |wanted: &'static str| move |label: &str| label == wanted;
        assert!(mongo_signals_unavailable(
            labelled("RetryableWriteError"),
            None
        ));
        assert!(mongo_signals_unavailable(
            labelled("TransientTransactionError"),
            None
        ));
        assert!(!mongo_signals_unavailable(
            labelled("NoWritesPerformed"),
            None
        ));
        assert!(!mongo_signals_unavailable(|_| false, Some(11000)));
    }
}

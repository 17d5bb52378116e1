//! The MongoDB outbox and inbox; run only when `SILO_MONGODB_URL` is set.

use crate::support::*;
use mongodb::bson::{Document, doc};
use mongodb::{ClientSession, Database};
use silo_kit::consumer::{HandlerError, MessageHandler, Processed};
use silo_kit::correlation::CorrelationId;
use silo_kit::events::{Envelope, StreamKind, UserRegistered};
use silo_kit::inbox::mongo::{MongoEventHandler, MongoInbox};
use silo_kit::metrics::Metrics;
use silo_kit::outbox::RelayConfig;
use silo_kit::outbox::mongo::{MongoOutbox, enqueue, ensure_indexes};
use silo_kit::shutdown::Shutdown;
use std::time::Duration;
use uuid::Uuid;

async fn fresh_database(url: &str) -> (mongodb::Client, Database) {
    let client = mongodb::Client::with_uri_str(url).await.unwrap();
    let database = client.database(&format!("kit_{}", silo_testenv::unique_suffix()));
    ensure_indexes(&database).await.unwrap();
    silo_kit::inbox::mongo::ensure_indexes(&database)
        .await
        .unwrap();
    (client, database)
}

#[tokio::test]
async fn mongo_relay_publishes_transactionally_enqueued_events_in_order() {
    let Some(url) = silo_testenv::mongodb_url(
        "silo-kit::mongo::mongo_relay_publishes_transactionally_enqueued_events_in_order",
    ) else {
        return;
    };
    let (client, database) = fresh_database(&url).await;
    let namespace = private_namespace();
    let jetstream = shared_jetstream().await;
    namespace
        .ensure_stream(&jetstream, StreamKind::Users)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for n in 0..5 {
        let mut session = client.start_session().await.unwrap();
        session.start_transaction().await.unwrap();
        let event = UserRegistered {
            user_id: Uuid::new_v4(),
            email: format!("m{n}@x.io"),
            full_name: "M".into(),
        };
        ids.push(
            enqueue(&database, &mut session, &event, &CorrelationId::generate())
                .await
                .unwrap()
                .event_id,
        );
        session.commit_transaction().await.unwrap();
    }
    let shutdown = Shutdown::new();
    let relay = silo_kit::outbox::Relay::new(
        MongoOutbox::new(&database),
        jetstream.clone(),
        namespace.clone(),
        RelayConfig::default(),
        Metrics::new(),
    );
    let task = tokio::spawn(relay.run(shutdown.clone()));
    let outbox = database.collection::<Document>("outbox");
    wait_until("all published", Duration::from_secs(20), || async {
        outbox
            .count_documents(doc! { "publishedAt": null })
            .await
            .unwrap()
            == 0
    })
    .await;
    let stream = jetstream
        .get_stream(namespace.stream_name(StreamKind::Users))
        .await
        .unwrap();
    for (position, id) in ids.iter().enumerate() {
        let message = stream.get_raw_message(position as u64 + 1).await.unwrap();
        assert_eq!(
            Envelope::from_slice(&message.payload).unwrap().event_id,
            *id
        );
    }
    shutdown.trigger();
    task.await.unwrap();
    delete_streams(&jetstream, &namespace).await;
    database.drop().await.unwrap();
}

struct Recording;

impl MongoEventHandler for Recording {
    fn handles(&self, event_type: &str) -> bool {
        event_type == "UserRegistered"
    }

    async fn apply(
        &self,
        _session: &mut ClientSession,
        _envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[tokio::test]
async fn mongo_inbox_applies_an_event_once() {
    let Some(url) = silo_testenv::mongodb_url("silo-kit::mongo::mongo_inbox_applies_an_event_once")
    else {
        return;
    };
    let (client, database) = fresh_database(&url).await;
    let inbox = MongoInbox::new(client, database.clone(), "test-service", Recording);
    let envelope = Envelope::new(
        &UserRegistered {
            user_id: Uuid::new_v4(),
            email: "d@x.io".into(),
            full_name: "D".into(),
        },
        "c",
    )
    .unwrap();
    assert_eq!(inbox.handle(&envelope).await.unwrap(), Processed::Applied);
    assert_eq!(inbox.handle(&envelope).await.unwrap(), Processed::Duplicate);
    database.drop().await.unwrap();
}

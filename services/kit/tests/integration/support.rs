//! Shared fixtures: a migrated fresh database and a private event namespace.

use async_nats::jetstream;
use silo_kit::events::{EventNamespace, StreamKind};
use silo_testenv::TestDatabase;
use sqlx::PgPool;
use std::future::Future;
use std::time::Duration;

/// A fresh database with the kit's tables.
pub async fn migrated_database() -> (TestDatabase, PgPool) {
    let database = TestDatabase::create().await;
    let pool = database.pool().await;
    silo_kit::postgres::kit_migrator()
        .run(&pool)
        .await
        .expect("kit migrations apply");
    (database, pool)
}

/// A migrated database plus a private namespace whose USERS stream exists on the shared NATS.
pub async fn users_stream_fixture() -> (TestDatabase, PgPool, EventNamespace, jetstream::Context) {
    let (database, pool) = migrated_database().await;
    let namespace = private_namespace();
    let jetstream = shared_jetstream().await;
    namespace
        .ensure_stream(&jetstream, StreamKind::Users)
        .await
        .unwrap();
    (database, pool, namespace, jetstream)
}

/// A namespace no other test uses.
pub fn private_namespace() -> EventNamespace {
    EventNamespace::prefixed(format!("t{}", silo_testenv::unique_suffix())).expect("valid prefix")
}

/// JetStream on the shared NATS.
pub async fn shared_jetstream() -> jetstream::Context {
    silo_kit::broker::jetstream(silo_testenv::nats_client().await)
}

/// Deletes the namespace's streams (best effort: the server is shared).
pub async fn delete_streams(jetstream: &jetstream::Context, namespace: &EventNamespace) {
    for kind in [
        StreamKind::Users,
        StreamKind::Bookings,
        StreamKind::Payments,
    ] {
        let _ = jetstream.delete_stream(namespace.stream_name(kind)).await;
    }
}

/// Polls `condition` every 20 ms for up to `limit`; panics naming `what` otherwise.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Messages currently stored in `kind`'s stream.
pub async fn stream_messages(
    jetstream: &jetstream::Context,
    namespace: &EventNamespace,
    kind: StreamKind,
) -> u64 {
    match jetstream.get_stream(namespace.stream_name(kind)).await {
        Ok(mut stream) => stream.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

//! The single-member replica set of a MongoDB server the operator runs: initiated once, and
//! used only once its node is primary.

use std::time::Duration;

use mongodb::bson::{Document, doc};

use super::{MongoEngine, command, command_error_code};
use crate::engine::EngineError;
use crate::engine::mongodb::access_plan::ADMIN_DATABASE;

/// `NotYetInitialized`: `replSetGetStatus` before `replSetInitiate`.
const NOT_YET_INITIALIZED: i32 = 94;

/// How long a new member may take to elect itself (a second or two, as a rule).
const PRIMARY_LIMIT: Duration = Duration::from_secs(30);
const PRIMARY_POLL: Duration = Duration::from_millis(250);

/// Whether a `hello` reply says the node is the primary and accepts writes (`ismaster` on
/// servers older than 4.4.2).
pub fn is_writable_primary(hello: &Document) -> bool {
    hello
        .get_bool("isWritablePrimary")
        .or_else(|_| hello.get_bool("ismaster"))
        .unwrap_or(false)
}

impl MongoEngine {
    /// For a server the operator runs: initiates its single-member replica set once (so that
    /// services can use multi-document transactions), then waits until the node is primary:
    /// until then `createUser` fails with `NotWritablePrimary`.
    pub async fn initiate_replica_set(&self, member_host: &str) -> Result<(), EngineError> {
        let admin = self.client.database(ADMIN_DATABASE);
        match admin.run_command(doc! { "replSetGetStatus": 1 }).await {
            Ok(_) => {}
            Err(e) if command_error_code(&e) == Some(NOT_YET_INITIALIZED) => {
                let member = format!("{member_host}:{}", self.admin.port);
                admin
                    .run_command(doc! {
                        "replSetInitiate": { "_id": "rs0", "members": [ { "_id": 0, "host": member } ] }
                    })
                    .await
                    .map_err(command("initiating the replica set"))?;
            }
            Err(e) => return Err(command("reading the replica set status")(e)),
        }
        self.wait_until_primary().await
    }

    async fn wait_until_primary(&self) -> Result<(), EngineError> {
        let admin = self.client.database(ADMIN_DATABASE);
        let deadline = tokio::time::Instant::now() + PRIMARY_LIMIT;
        loop {
            let hello = admin
                .run_command(doc! { "hello": 1 })
                .await
                .map_err(command("asking the node whether it is primary"))?;
            if is_writable_primary(&hello) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(EngineError::Command {
                    action: "waiting for the node to become primary",
                    message: format!("still not primary after {PRIMARY_LIMIT:?}"),
                });
            }
            tokio::time::sleep(PRIMARY_POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_writable_primary_is_ready_for_users() {
        assert!(is_writable_primary(
            &doc! { "isWritablePrimary": true, "setName": "rs0" }
        ));
        // Right after replSetInitiate: a secondary until it has elected itself.
        assert!(!is_writable_primary(
            &doc! { "isWritablePrimary": false, "secondary": true }
        ));
        // Before replSetInitiate.
        assert!(!is_writable_primary(
            &doc! { "isWritablePrimary": false, "isreplicaset": true }
        ));
        assert!(is_writable_primary(&doc! { "ismaster": true }));
        assert!(!is_writable_primary(&doc! { "ok": 1 }));
    }
}

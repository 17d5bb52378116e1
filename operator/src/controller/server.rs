//! The `DatabaseServer` controller: runs managed servers, checks every server is reachable, and
//! keeps a server that is being deleted until no `Database` uses it any more.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};

use super::server_access::{
    ensure_workload, prepare_workload, read_admin_login, server_engine, workload_admin,
    workload_waiting,
};
use super::{Context, finalizers, object_key};
use crate::apply::apply_status;
use crate::build::{AllowedClient, Workload};
use crate::crd::{
    Database, DatabaseServer, DatabaseServerStatus, ExternalServerSpec, ManagedServerSpec,
    ServerType,
};
use crate::engine::{AdminConnection, AnyEngine, Engine as _};
use crate::error::Error;
use crate::status::{condition, find, types, upsert};
use crate::validate::{self, ServerKind};

/// Finalizer that keeps a server until no `Database` references it: their cleanup needs the
/// server's admin login.
pub const FINALIZER: &str = "silo.dev/server-in-use";
/// Reason of `Ready=False` while a server being deleted still has databases.
pub const IN_USE: &str = "InUse";
const CONTROLLER: &str = "databaseserver";
const WAITING_REQUEUE: Duration = Duration::from_secs(15);
/// A safety net only: deleting a `Database` already triggers the server's reconcile.
const IN_USE_REQUEUE: Duration = Duration::from_secs(30);
/// How many of the databases still on a server its `InUse` message names.
const NAMED_IN_MESSAGE: usize = 3;

/// Reconciles one `DatabaseServer`.
pub async fn reconcile(server: Arc<DatabaseServer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let api = Api::<DatabaseServer>::all(ctx.client.clone());
    let outcome = async {
        if server.metadata.deletion_timestamp.is_some() {
            return release_when_unused(&server, &ctx, &api).await;
        }
        let server = finalizers::add(&api, server.as_ref(), FINALIZER).await?;
        observe(&server, &ctx, &api).await
    }
    .await;
    let key = object_key(server.as_ref());
    ctx.finished(CONTROLLER, &key, started, &outcome);
    if let Err(error) = &outcome {
        tracing::warn!(server = %key, reason = error.reason(), "reconcile failed: {error}");
    }
    outcome
}

/// Checks the server and writes what was found to its status.
async fn observe(
    server: &DatabaseServer,
    ctx: &Context,
    api: &Api<DatabaseServer>,
) -> Result<Action, Error> {
    let mut status = server.status.clone().unwrap_or_default();
    let previous_ready = find(&status.conditions, types::READY).cloned();
    let generation = server.metadata.generation;
    let result = check(server, ctx, &mut status).await;
    let prior = status.conditions.clone();
    let (ready, requeue) = match &result {
        Ok(Some(waiting)) => (
            condition(
                &prior,
                types::READY,
                false,
                "WaitingForServer",
                waiting.clone(),
                generation,
            ),
            WAITING_REQUEUE,
        ),
        Ok(None) => (
            condition(
                &prior,
                types::READY,
                true,
                "Ready",
                "the server accepts the admin login",
                generation,
            ),
            ctx.config.drift_interval,
        ),
        Err(error) => (
            condition(
                &prior,
                types::READY,
                false,
                error.reason(),
                error.to_string(),
                generation,
            ),
            // Unused: the error policy decides when to retry.
            Duration::ZERO,
        ),
    };
    upsert(&mut status.conditions, ready);
    let written = write_status(server, ctx, api, &status, previous_ready).await;
    // The check's own error says more than a failed status write.
    result?;
    written?;
    Ok(Action::requeue(requeue))
}

/// Writes `status` and publishes an Event when `Ready` changed its status or reason.
async fn write_status(
    server: &DatabaseServer,
    ctx: &Context,
    api: &Api<DatabaseServer>,
    status: &DatabaseServerStatus,
    previous_ready: Option<Condition>,
) -> Result<(), Error> {
    let mut status = status.clone();
    status.observed_generation = server.metadata.generation;
    let written = apply_status(api, &server.name_any(), &status).await;
    let now_ready = find(&status.conditions, types::READY).cloned();
    if now_ready.as_ref().map(|c| (&c.status, &c.reason))
        != previous_ready.as_ref().map(|c| (&c.status, &c.reason))
        && let Some(c) = now_ready
    {
        ctx.publish(
            &server.object_ref(&()),
            c.status != "True",
            &c.reason,
            "Reconcile",
            c.message,
        )
        .await;
    }
    written.map_err(Error::from)
}

/// For a server being deleted: releases it once no `Database` references it; until then it says
/// which ones still do.
async fn release_when_unused(
    server: &DatabaseServer,
    ctx: &Context,
    api: &Api<DatabaseServer>,
) -> Result<Action, Error> {
    if !finalizers::has(server, FINALIZER) {
        return Ok(Action::await_change());
    }
    let users: Vec<String> = databases_on(ctx, server)
        .await?
        .iter()
        .map(|db| format!("{}/{}", db.namespace().unwrap_or_default(), db.name_any()))
        .collect();
    if users.is_empty() {
        finalizers::remove(api, server, FINALIZER).await?;
        return Ok(Action::await_change());
    }
    let mut status = server.status.clone().unwrap_or_default();
    let previous_ready = find(&status.conditions, types::READY).cloned();
    let message = in_use_message(&users);
    let unchanged = previous_ready
        .as_ref()
        .is_some_and(|c| c.reason == IN_USE && c.message == message);
    if !unchanged {
        let prior = status.conditions.clone();
        upsert(
            &mut status.conditions,
            condition(
                &prior,
                types::READY,
                false,
                IN_USE,
                message,
                server.metadata.generation,
            ),
        );
        write_status(server, ctx, api, &status, previous_ready).await?;
    }
    Ok(Action::requeue(IN_USE_REQUEUE))
}

/// Why a server being deleted is kept, naming the first few of the `users` (`namespace/name`).
fn in_use_message(users: &[String]) -> String {
    let mut named = users
        .iter()
        .take(NAMED_IN_MESSAGE)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if users.len() > NAMED_IN_MESSAGE {
        named.push_str(&format!(" and {} more", users.len() - NAMED_IN_MESSAGE));
    }
    format!(
        "deletion waits until no Database uses this server ({} still do: {named}); their cleanup needs the server's admin login; delete them first (set deletionPolicy: Retain on them beforehand to keep their data on the server)",
        users.len()
    )
}

/// Whether `Database`s may use `server`: it is Ready, or it is being deleted, waits for them
/// (their cleanup needs it) and was reachable when last checked.
pub fn serves_databases(server: &DatabaseServer) -> bool {
    let Some(status) = &server.status else {
        return false;
    };
    let ready = find(&status.conditions, types::READY);
    if ready.is_some_and(|c| c.status == "True") {
        return true;
    }
    server.metadata.deletion_timestamp.is_some()
        && ready.is_some_and(|c| c.reason == IN_USE)
        && crate::status::is_true(&status.conditions, types::REACHABLE)
}

/// A server's engine handle, or what it still waits for.
enum Admin {
    /// Reached as admin; a managed server's workload comes along (it may need preparing).
    Ready(Box<(AnyEngine, Option<Workload>)>),
    /// A managed server whose pod is not ready yet.
    Waiting(String),
}

/// `Ok(None)` when reachable, `Ok(Some(why))` when still starting.
async fn check(
    server: &DatabaseServer,
    ctx: &Context,
    status: &mut DatabaseServerStatus,
) -> Result<Option<String>, Error> {
    let generation = server.metadata.generation;
    let prior = status.conditions.clone();
    let reachable = |status: &mut DatabaseServerStatus, ok: bool, reason: &str, message: String| {
        upsert(
            &mut status.conditions,
            condition(&prior, types::REACHABLE, ok, reason, message, generation),
        );
    };
    let admin = match validate::server(server)? {
        ServerKind::External(external) => external_admin(server, ctx, status, external).await?,
        ServerKind::Managed(managed) => managed_admin(server, ctx, status, &managed).await?,
    };
    let (engine, workload) = match admin {
        Admin::Ready(ready) => *ready,
        Admin::Waiting(waiting) => {
            reachable(status, false, "WaitingForServer", waiting.clone());
            return Ok(Some(waiting));
        }
    };
    let version = match engine.server_version().await {
        Ok(version) => version,
        Err(e) => {
            reachable(status, false, "ServerUnreachable", e.to_string());
            return Err(e.into());
        }
    };
    if let Some(workload) = &workload {
        prepare_workload(&engine, workload).await?;
    }
    let message = format!("connected as admin; server version {version}");
    reachable(status, true, "Connected", message);
    status.version = Some(version);
    Ok(None)
}

/// The engine of an external server, reached with the login of its admin Secret.
async fn external_admin(
    server: &DatabaseServer,
    ctx: &Context,
    status: &mut DatabaseServerStatus,
    external: ExternalServerSpec,
) -> Result<Admin, Error> {
    status.server_type = Some(ServerType::External);
    status.host = Some(external.host.clone());
    let namespace = validate::admin_secret_namespace(&external, &ctx.config.operator_namespace)?;
    let (username, password) =
        read_admin_login(ctx, &namespace, &external.admin_secret_ref.name).await?;
    let engine = server.spec.engine;
    let admin = AdminConnection {
        host: external.host.clone(),
        port: external.port.unwrap_or(engine.default_port()),
        username,
        password,
        tls: external.tls.map(|t| t.mode).unwrap_or_default(),
    };
    let handle = server_engine(ctx, &object_key(server), engine, admin)?;
    Ok(Admin::Ready(Box::new((handle, None))))
}

/// The engine of a managed server, once its workload (applied here) has a ready pod.
async fn managed_admin(
    server: &DatabaseServer,
    ctx: &Context,
    status: &mut DatabaseServerStatus,
    managed: &ManagedServerSpec,
) -> Result<Admin, Error> {
    let workload = Workload::managed(server, managed, &ctx.config.images)
        .ok_or_else(|| Error::ServerNotReady("the DatabaseServer has no uid yet".into()))?;
    validate::namespace_unchanged(status.workload_namespace.as_deref(), &workload.namespace)?;
    status.server_type = Some(ServerType::Managed);
    status.host = Some(workload.host());
    ensure_workload(ctx, &workload, &clients_of(ctx, server).await?).await?;
    status.workload_namespace = Some(workload.namespace.clone());
    if let Some(waiting) = workload_waiting(ctx, &workload).await? {
        return Ok(Admin::Waiting(waiting));
    }
    let admin = workload_admin(ctx, &workload).await?;
    let handle = server_engine(ctx, &object_key(server), server.spec.engine, admin)?;
    Ok(Admin::Ready(Box::new((handle, Some(workload)))))
}

/// Every `Database` (in the operator's scope) whose `serverRef` names `server`.
async fn databases_on(ctx: &Context, server: &DatabaseServer) -> Result<Vec<Database>, Error> {
    let databases = match &ctx.config.namespace {
        Some(ns) => Api::<Database>::namespaced(ctx.client.clone(), ns),
        None => Api::<Database>::all(ctx.client.clone()),
    };
    let name = server.name_any();
    Ok(databases
        .list(&Default::default())
        .await?
        .into_iter()
        .filter(|db| db.spec.server.server_ref.as_deref() == Some(name.as_str()))
        .collect())
}

/// The owners of every `Database` on `server`, which its NetworkPolicy admits.
async fn clients_of(ctx: &Context, server: &DatabaseServer) -> Result<Vec<AllowedClient>, Error> {
    Ok(databases_on(ctx, server)
        .await?
        .into_iter()
        .map(|db| AllowedClient {
            namespace: db.namespace().unwrap_or_default(),
            owner: db.spec.owner.clone(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::crd::{DatabaseServerSpec, Engine};

    fn server_with(ready: (bool, &str), reachable: bool, deleting: bool) -> DatabaseServer {
        let mut server = DatabaseServer::new(
            "pg",
            DatabaseServerSpec {
                engine: Engine::Postgres,
                managed: None,
                external: None,
            },
        );
        server.status = Some(DatabaseServerStatus {
            conditions: vec![
                condition(&[], types::READY, ready.0, ready.1, "", None),
                condition(&[], types::REACHABLE, reachable, "Connected", "", None),
            ],
            ..Default::default()
        });
        if deleting {
            server.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        }
        server
    }

    #[test]
    fn the_in_use_message_names_a_few_databases_and_counts_the_rest() {
        let one = in_use_message(&["shop/orders".into()]);
        assert!(one.contains("(1 still do: shop/orders)"), "{one}");
        // A Database's spec.server is immutable: the message must not suggest moving it.
        assert!(
            !one.contains("elsewhere") && !one.contains("point"),
            "{one}"
        );
        assert!(one.contains("delete them first"), "{one}");
        assert!(one.contains("deletionPolicy: Retain"), "{one}");
        let many: Vec<String> = (1..=5).map(|i| format!("shop/db{i}")).collect();
        let message = in_use_message(&many);
        assert!(
            message.contains("(5 still do: shop/db1, shop/db2, shop/db3 and 2 more)"),
            "{message}"
        );
    }

    #[test]
    fn databases_keep_using_a_server_that_waits_for_them_to_be_deleted() {
        assert!(serves_databases(&server_with((true, "Ready"), true, false)));
        assert!(serves_databases(&server_with((false, IN_USE), true, true)));
        // Never reached: cleanup could not connect either, so it waits like provisioning does.
        assert!(!serves_databases(&server_with(
            (false, IN_USE),
            false,
            true
        )));
        assert!(!serves_databases(&server_with(
            (false, "WaitingForServer"),
            false,
            false
        )));
        assert!(!serves_databases(&server_with(
            (false, "WaitingForServer"),
            true,
            true
        )));
    }
}

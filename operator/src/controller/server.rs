//! The `DatabaseServer` controller: runs managed servers, checks every server is reachable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};

use super::server_access::{
    ensure_workload, prepare_workload, read_admin_login, server_engine, workload_admin,
    workload_waiting,
};
use super::{Context, object_key};
use crate::apply::apply_status;
use crate::build::{AllowedClient, Workload};
use crate::crd::{Database, DatabaseServer, DatabaseServerStatus};
use crate::engine::{AdminConnection, Engine as _};
use crate::error::Error;
use crate::status::{condition, find, types, upsert};
use crate::validate::{self, ServerKind};

const CONTROLLER: &str = "databaseserver";
const WAITING_REQUEUE: Duration = Duration::from_secs(15);

/// Reconciles one `DatabaseServer`.
pub async fn reconcile(server: Arc<DatabaseServer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let api = Api::<DatabaseServer>::all(ctx.client.clone());
    let mut status = server.status.clone().unwrap_or_default();
    let previous_ready = find(&status.conditions, types::READY).cloned();
    let generation = server.metadata.generation;
    let result = check(&server, &ctx, &mut status).await;
    let prior = status.conditions.clone();
    let action = match &result {
        Ok(Some(waiting)) => {
            upsert(
                &mut status.conditions,
                condition(
                    &prior,
                    types::READY,
                    false,
                    "WaitingForServer",
                    waiting.clone(),
                    generation,
                ),
            );
            Ok(Action::requeue(WAITING_REQUEUE))
        }
        Ok(None) => {
            upsert(
                &mut status.conditions,
                condition(
                    &prior,
                    types::READY,
                    true,
                    "Ready",
                    "the server accepts the admin login",
                    generation,
                ),
            );
            Ok(Action::requeue(ctx.config.drift_interval))
        }
        Err(error) => {
            upsert(
                &mut status.conditions,
                condition(
                    &prior,
                    types::READY,
                    false,
                    error.reason(),
                    error.to_string(),
                    generation,
                ),
            );
            Err(())
        }
    };
    status.observed_generation = generation;
    let written = apply_status(&api, &server.name_any(), &status).await;
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
    let outcome = match (action, result) {
        (Ok(action), _) => written.map(|()| action).map_err(Error::from),
        (Err(()), Err(error)) => Err(error),
        (Err(()), Ok(_)) => Err(Error::Finalizer("unreachable".into())),
    };
    ctx.metrics.reconciled(
        CONTROLLER,
        started.elapsed(),
        outcome.as_ref().err().map(Error::reason),
    );
    if outcome.is_ok() {
        ctx.succeeded(&object_key(server.as_ref()));
    }
    outcome
}

/// `Ok(None)` when reachable, `Ok(Some(why))` when still starting.
async fn check(
    server: &DatabaseServer,
    ctx: &Context,
    status: &mut DatabaseServerStatus,
) -> Result<Option<String>, Error> {
    let generation = server.metadata.generation;
    let prior = status.conditions.clone();
    let engine_kind = server.spec.engine;
    let (engine, workload) = match validate::server(server)? {
        ServerKind::External(external) => {
            let (username, password) = read_admin_login(
                ctx,
                &external.admin_secret_ref.namespace,
                &external.admin_secret_ref.name,
            )
            .await?;
            let admin = AdminConnection {
                host: external.host.clone(),
                port: external.port.unwrap_or(engine_kind.default_port()),
                username,
                password,
                tls: external.tls.map(|t| t.mode).unwrap_or_default(),
            };
            (server_engine(ctx, engine_kind, admin)?, None)
        }
        ServerKind::Managed(managed) => {
            let workload = Workload::managed(server, &managed)
                .ok_or_else(|| Error::ServerNotReady("the DatabaseServer has no uid yet".into()))?;
            ensure_workload(ctx, &workload, &clients_of(ctx, server).await?).await?;
            if let Some(waiting) = workload_waiting(ctx, &workload).await? {
                upsert(
                    &mut status.conditions,
                    condition(
                        &prior,
                        types::REACHABLE,
                        false,
                        "WaitingForServer",
                        waiting.clone(),
                        generation,
                    ),
                );
                return Ok(Some(waiting));
            }
            let admin = workload_admin(ctx, &workload).await?;
            (server_engine(ctx, engine_kind, admin)?, Some(workload))
        }
    };
    let version = match engine.server_version().await {
        Ok(version) => version,
        Err(e) => {
            upsert(
                &mut status.conditions,
                condition(
                    &prior,
                    types::REACHABLE,
                    false,
                    "ServerUnreachable",
                    e.to_string(),
                    generation,
                ),
            );
            return Err(e.into());
        }
    };
    if let Some(workload) = &workload {
        prepare_workload(&engine, workload).await?;
    }
    upsert(
        &mut status.conditions,
        condition(
            &prior,
            types::REACHABLE,
            true,
            "Connected",
            format!("connected as admin; server version {version}"),
            generation,
        ),
    );
    status.version = Some(version);
    Ok(None)
}

/// The owners of every `Database` on `server`, which its NetworkPolicy admits.
async fn clients_of(ctx: &Context, server: &DatabaseServer) -> Result<Vec<AllowedClient>, Error> {
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
        .map(|db| AllowedClient {
            namespace: db.namespace().unwrap_or_default(),
            owner: db.spec.owner.clone(),
        })
        .collect())
}

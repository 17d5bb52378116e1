//! Deleting a `Database`: what its `deletionPolicy` says happens outside Kubernetes, before the
//! finalizer is released.

use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};

use super::resolve::{ServerState, shared_server};
use super::server_names::ownership_marker;
use crate::apply::apply_status;
use crate::controller::{Context, dedicated_volume, object_key};
use crate::crd::{Database, DatabaseStatus, DeletionPolicy};
use crate::engine::{Engine as _, ServerNames};
use crate::error::{Error, describe_kube_error};
use crate::status::{condition, types, upsert};
use crate::validate::DEDICATED_BINDING;

/// Deprovisions `db`; on failure it stays (with its finalizer) as `Ready=False/DeletionFailed`.
pub async fn cleanup(db: &Database, ctx: &Context, api: &Api<Database>) -> Result<Action, Error> {
    let key = object_key(db);
    let reference = db.object_ref(&());
    let status = db.status.clone().unwrap_or_default();
    match deprovision(db, ctx, &status).await {
        Ok(note) => {
            ctx.forget(&key);
            if let Some(note) = note {
                tracing::info!(database = %key, "deleted: {note}");
                ctx.publish(&reference, false, "Deprovisioned", "Delete", note)
                    .await;
            }
            Ok(Action::await_change())
        }
        Err(error) => {
            let message = format!("deleting the database on the server failed: {error}");
            let mut status = status;
            let prior = status.conditions.clone();
            upsert(
                &mut status.conditions,
                condition(
                    &prior,
                    types::READY,
                    false,
                    "DeletionFailed",
                    message.clone(),
                    db.metadata.generation,
                ),
            );
            if let Err(e) = apply_status(api, &db.name_any(), &status).await {
                tracing::warn!("cannot write Database status: {}", describe_kube_error(&e));
            }
            ctx.publish(&reference, true, "DeletionFailed", "Delete", message)
                .await;
            Err(error)
        }
    }
}

/// Removes what lives outside Kubernetes; returns a note for the Event, if anything happened.
async fn deprovision(
    db: &Database,
    ctx: &Context,
    status: &DatabaseStatus,
) -> Result<Option<String>, Error> {
    let dedicated = match status.bound_server.as_deref() {
        Some(bound) => bound == DEDICATED_BINDING,
        None => db.spec.server.dedicated.is_some(),
    };
    if dedicated {
        // A dedicated server holds nothing else: its volume is the data.
        return dedicated_volume::release(ctx, db, db.spec.deletion_policy).await;
    }
    let (Some(database), Some(role)) = (status.database_name.clone(), status.role_name.clone())
    else {
        // Nothing was ever created on a server.
        return Ok(None);
    };
    if db.spec.deletion_policy == DeletionPolicy::Retain {
        return Ok(Some(format!(
            "deletionPolicy Retain: database {database} and role {role} are kept on the server"
        )));
    }
    let names = ServerNames {
        database,
        role,
        marker: ownership_marker(db),
    };
    let Some(server) = status
        .bound_server
        .as_deref()
        .and_then(|bound| bound.strip_prefix("serverRef/"))
    else {
        return Ok(None);
    };
    drop_on_shared_server(db, ctx, server, &names).await
}

/// Drops `names` on the shared server `server` (`Delete` policy).
async fn drop_on_shared_server(
    db: &Database,
    ctx: &Context,
    server: &str,
    names: &ServerNames,
) -> Result<Option<String>, Error> {
    let engine = db
        .status
        .as_ref()
        .and_then(|s| s.bound_engine)
        .unwrap_or(db.spec.engine);
    let state = match shared_server(ctx, server, engine, true).await {
        // Without the server object there is no admin login to reach the data with, and
        // waiting for one could last forever: release, saying what may be left behind.
        Err(Error::ServerNotFound(_)) => {
            let note = format!(
                "DatabaseServer {server} no longer exists, so database {} and role {} could not be dropped; if that server still runs, drop them there by hand",
                names.database, names.role
            );
            ctx.publish(&db.object_ref(&()), true, "ServerGone", "Delete", note)
                .await;
            return Ok(None);
        }
        other => other?,
    };
    match state {
        ServerState::Usable(access) => access.engine.deprovision(names).await?,
        ServerState::Waiting { message, .. } => return Err(Error::ServerNotReady(message)),
    }
    Ok(Some(format!(
        "deletionPolicy Delete: database {} and role {} dropped",
        names.database, names.role
    )))
}

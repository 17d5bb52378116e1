//! The first step of a pass: the server a `Database` lives on, resolved to an engine handle and
//! the address clients use, or what it still waits for.

use std::sync::Arc;

use kube::Api;

use crate::build::{AllowedClient, Workload};
use crate::controller::server_access::{
    ensure_workload, prepare_workload, read_admin_login, server_engine, workload_admin,
    workload_waiting,
};
use crate::controller::{Context, object_key};
use crate::crd::{Database, DatabaseServer, Engine, ExternalServerSpec, TlsMode};
use crate::engine::{AdminConnection, AnyEngine};
use crate::error::Error;
use crate::password::Password;
use crate::validate::{self, Placement, ServerKind, ValidDatabase};

/// Isolation that applies to a database, for `NetworkIsolated`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// A server of its own, fenced to its owner.
    Dedicated,
    /// A server the operator runs for several owners.
    Shared,
    /// A server the operator does not run.
    External,
}

/// A usable server.
pub struct ServerAccess {
    /// The engine handle, connected as the server's admin.
    pub engine: AnyEngine,
    /// Host clients connect to.
    pub host: String,
    /// Port clients connect to.
    pub port: u16,
    /// TLS clients use.
    pub tls: TlsMode,
    /// What fences the server.
    pub isolation: Isolation,
}

/// A server ready to provision on, or why not yet.
pub enum ServerState {
    /// Ready.
    Usable(Box<ServerAccess>),
    /// Not yet: the condition reason and message to show.
    Waiting {
        /// Condition reason.
        reason: &'static str,
        /// Condition message.
        message: String,
    },
}

/// The server `db` (validated as `valid`) lives on.
pub async fn resolve_server(
    db: &Database,
    valid: &ValidDatabase,
    ctx: &Context,
) -> Result<ServerState, Error> {
    match &valid.placement {
        Placement::Shared(name) => {
            let bound = db.status.as_ref().is_some_and(|s| s.bound_server.is_some());
            shared_server(ctx, name, valid.engine, bound).await
        }
        Placement::Dedicated(spec) => {
            let workload = Workload::dedicated(db, spec, &ctx.config.images).ok_or_else(|| {
                Error::ServerNotReady("the Database has no uid or namespace yet".into())
            })?;
            let client = AllowedClient {
                namespace: workload.namespace.clone(),
                owner: valid.owner.clone(),
            };
            ensure_workload(ctx, &workload, &[client]).await?;
            if let Some(message) = workload_waiting(ctx, &workload).await? {
                return Ok(ServerState::Waiting {
                    reason: "WaitingForServer",
                    message,
                });
            }
            let admin = workload_admin(ctx, &workload).await?;
            let engine = server_engine(ctx, &object_key(db), valid.engine, admin)?;
            prepare_workload(&engine, &workload).await?;
            Ok(usable(engine, &workload, Isolation::Dedicated))
        }
    }
}

/// The shared server `name` for a Database of `engine`; `bound` when the Database was already
/// created on it (its `spec.server` can no longer change).
pub async fn shared_server(
    ctx: &Context,
    name: &str,
    engine: Engine,
    bound: bool,
) -> Result<ServerState, Error> {
    let server = match ctx.caches.server(name) {
        Some(server) => server,
        None => Arc::new(
            Api::<DatabaseServer>::all(ctx.client.clone())
                .get_opt(name)
                .await?
                .ok_or_else(|| Error::ServerNotFound(name.to_string()))?,
        ),
    };
    if server.spec.engine != engine {
        return Err(Error::EngineMismatch(engine_mismatch_message(
            name,
            engine,
            server.spec.engine,
            bound,
        )));
    }
    let key = object_key(server.as_ref());
    match validate::server(server.as_ref()) {
        Err(_) => Ok(server_invalid(name)),
        Ok(ServerKind::External(external)) => {
            external_server(ctx, &key, name, engine, external).await
        }
        Ok(ServerKind::Managed(managed)) => {
            if !crate::controller::server::serves_databases(&server) {
                return Ok(ServerState::Waiting {
                    reason: "WaitingForServer",
                    message: format!("DatabaseServer {name} is not Ready yet"),
                });
            }
            let workload = Workload::managed(server.as_ref(), &managed, &ctx.config.images)
                .ok_or_else(|| {
                    Error::ServerNotReady(format!("DatabaseServer {name} has no uid yet"))
                })?;
            let admin = workload_admin(ctx, &workload).await?;
            let engine = server_engine(ctx, &key, engine, admin)?;
            Ok(usable(engine, &workload, Isolation::Shared))
        }
    }
}

/// The external server `name` (object key `key`), reached with the login of its admin Secret.
async fn external_server(
    ctx: &Context,
    key: &str,
    name: &str,
    engine: Engine,
    external: ExternalServerSpec,
) -> Result<ServerState, Error> {
    let Ok(namespace) = validate::admin_secret_namespace(&external, &ctx.config.operator_namespace)
    else {
        return Ok(server_invalid(name));
    };
    let (username, password) =
        admin_login(ctx, &namespace, &external.admin_secret_ref.name).await?;
    let tls = external.tls.as_ref().map(|t| t.mode).unwrap_or_default();
    let port = external.port.unwrap_or(engine.default_port());
    let admin = AdminConnection {
        host: external.host.clone(),
        port,
        username,
        password,
        tls,
    };
    Ok(ServerState::Usable(Box::new(ServerAccess {
        engine: server_engine(ctx, key, engine, admin)?,
        host: external.host,
        port,
        tls,
        isolation: Isolation::External,
    })))
}

/// A server the operator runs, reached inside the cluster (its NetworkPolicy fences it).
fn usable(engine: AnyEngine, workload: &Workload, isolation: Isolation) -> ServerState {
    ServerState::Usable(Box::new(ServerAccess {
        engine,
        host: workload.host(),
        port: workload.port(),
        tls: TlsMode::Disable,
        isolation,
    }))
}

/// The login in an admin Secret, read at most once per
/// [`crate::controller::caches::ADMIN_LOGIN_TTL`].
async fn admin_login(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<(String, Password), Error> {
    if let Some(login) = ctx.caches.admin_login(namespace, name) {
        return Ok(login);
    }
    let login = read_admin_login(ctx, namespace, name).await?;
    ctx.caches.remember_admin_login(namespace, name, &login);
    Ok(login)
}

/// Waiting for the DatabaseServer `name`, whose spec is invalid (its status says why).
fn server_invalid(name: &str) -> ServerState {
    ServerState::Waiting {
        reason: "ServerInvalid",
        message: format!("DatabaseServer {name} has an invalid spec; see its status"),
    }
}

/// Why a Database of `wanted` cannot use server `name`, which runs `runs`, and what can be done.
fn engine_mismatch_message(name: &str, wanted: Engine, runs: Engine, bound: bool) -> String {
    let (wanted, runs) = (wanted.as_str(), runs.as_str());
    if bound {
        format!(
            "spec.engine is {wanted} but DatabaseServer {name}, which this Database was created on, now runs {runs}; recreate that server with engine {wanted} (spec.server of a Database cannot change)"
        )
    } else {
        format!(
            "spec.engine is {wanted} but DatabaseServer {name} runs {runs}; set spec.server.serverRef to a {wanted} server"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_mismatch_suggests_what_is_still_possible() {
        let fresh = engine_mismatch_message("pg", Engine::Mongodb, Engine::Postgres, false);
        assert!(
            fresh.ends_with("set spec.server.serverRef to a mongodb server"),
            "{fresh}"
        );
        // Once bound, spec.server is immutable: changing it is not among the suggestions.
        let bound = engine_mismatch_message("pg", Engine::Mongodb, Engine::Postgres, true);
        assert!(!bound.contains("set spec.server"), "{bound}");
        assert!(
            bound.contains("recreate that server with engine mongodb"),
            "{bound}"
        );
    }
}

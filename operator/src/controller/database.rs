//! The `Database` controller: fetch/dereference → validate → build → apply → provision → status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};

use super::server_access::{
    ensure_workload, prepare_workload, read_admin_login, secret_value, server_engine,
    workload_admin, workload_waiting,
};
use super::{Context, dedicated_volume, finalizers, object_key};
use crate::apply::{apply, apply_status};
use crate::build::{AllowedClient, CredentialsSecretInput, Workload, credentials_secret};
use crate::crd::{
    Database, DatabaseServer, DatabaseStatus, DeletionPolicy, Endpoint, Engine, TlsMode,
};
use crate::engine::{
    AdminConnection, AnyEngine, Engine as _, EngineError, ProvisionReport, ServerNames,
};
use crate::error::Error;
use crate::metrics::Phase;
use crate::names::{MONGODB_DATABASE_LIMIT, POSTGRES_IDENTIFIER_LIMIT, derive_server_name};
use crate::password::Password;
use crate::status::{condition, find, types, upsert};
use crate::uri::LoginParts;
use crate::validate::{self, DEDICATED_BINDING, Placement, ServerKind, ValidDatabase};

/// Finalizer guarding the database and role on the server.
pub const FINALIZER: &str = "silo.dev/database-cleanup";
/// Setting this annotation to a new value rotates the password.
pub const ROTATE_ANNOTATION: &str = "silo.dev/rotate";
const CONTROLLER: &str = "database";
const WAITING_REQUEUE: Duration = Duration::from_secs(15);

/// Reconciles one `Database`.
pub async fn reconcile(db: Arc<Database>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let key = object_key(db.as_ref());
    let namespace = db.namespace().unwrap_or_default();
    let api = Api::<Database>::namespaced(ctx.client.clone(), &namespace);
    let result = async {
        if db.meta().deletion_timestamp.is_none() {
            // The finalizer goes on before anything exists on a server, and the same pass goes
            // on to provision (the predicate ignores finalizer changes: adding it wakes no pass).
            let db = finalizers::add(&api, db.as_ref(), FINALIZER).await?;
            return apply_database(&db, &ctx, &api).await;
        }
        if !finalizers::has(db.as_ref(), FINALIZER) {
            return Ok(Action::await_change());
        }
        let action = cleanup(&db, &ctx, &api).await?;
        finalizers::remove(&api, db.as_ref(), FINALIZER).await?;
        Ok(action)
    }
    .await;
    ctx.finished(CONTROLLER, &key, started, &result);
    match &result {
        Ok(action) => {
            tracing::debug!(database = %key, ?action, took = ?started.elapsed(), "reconciled");
        }
        Err(error) => {
            tracing::info!(database = %key, reason = error.reason(), %error, "reconcile failed");
        }
    }
    result
}

/// How far a provisioning pass got.
enum Outcome {
    /// Provisioned and measured; check again after this long.
    Done { ready: bool, requeue: Duration },
    /// Waiting for the server.
    Waiting,
}

async fn apply_database(
    db: &Database,
    ctx: &Context,
    api: &Api<Database>,
) -> Result<Action, Error> {
    // The watched copy can lag behind our own last status write; acting on it could honour
    // the same rotation request twice. Only then is the object read again.
    let fresh;
    let rotate_every = validate::database(db).ok().and_then(|v| v.rotate_every);
    let cached_status = db.status.clone().unwrap_or_default();
    let db = if rotation_due(db, &cached_status, rotate_every, jiff::Timestamp::now()).is_some() {
        let Some(read) = api.get_opt(&db.name_any()).await? else {
            return Ok(Action::await_change());
        };
        fresh = read;
        &fresh
    } else {
        db
    };
    let key = object_key(db);
    let written = db.status.clone().unwrap_or_default();
    let mut status = written.clone();
    let generation = db.metadata.generation;
    let previous_ready = find(&status.conditions, types::READY).cloned();
    match provision(db, ctx, &mut status).await {
        Ok(Outcome::Done { ready, requeue }) => {
            status.observed_generation = generation;
            write_status(api, db, &written, &status).await?;
            ctx.metrics
                .set_phase(&key, Some(if ready { Phase::Ready } else { Phase::Failed }));
            Ok(Action::requeue(if ready {
                requeue
            } else {
                WAITING_REQUEUE
            }))
        }
        Ok(Outcome::Waiting) => {
            status.observed_generation = generation;
            write_status(api, db, &written, &status).await?;
            ctx.metrics.set_phase(&key, Some(Phase::Pending));
            Ok(Action::requeue(WAITING_REQUEUE))
        }
        Err(error) => {
            let prior = status.conditions.clone();
            let mut failed = vec![types::READY];
            if matches!(
                error,
                Error::Engine(EngineError::AdminConnect(_) | EngineError::LoginFailed(_))
            ) {
                failed.push(types::SERVER_READY);
            }
            for type_ in failed {
                upsert(
                    &mut status.conditions,
                    condition(
                        &prior,
                        type_,
                        false,
                        error.reason(),
                        error.to_string(),
                        generation,
                    ),
                );
            }
            if matches!(error, Error::Engine(EngineError::AdminConnect(_))) {
                // The admin Secret may have changed since it was read.
                ctx.caches.forget_admin_logins();
            }
            status.observed_generation = generation;
            if let Err(e) = write_status(api, db, &written, &status).await {
                tracing::warn!(error = %e, "cannot write Database status");
            }
            let changed = previous_ready
                .is_none_or(|c| c.reason != error.reason() || c.message != error.to_string());
            if changed {
                ctx.publish(
                    &db.object_ref(&()),
                    true,
                    error.reason(),
                    "Reconcile",
                    error.to_string(),
                )
                .await;
            }
            let phase = match error {
                Error::InvalidSpec(_) => Phase::Invalid,
                _ => Phase::Failed,
            };
            ctx.metrics.set_phase(&key, Some(phase));
            Err(error)
        }
    }
}

/// Writes `status` unless it is what the object already has: an idle pass writes nothing.
async fn write_status(
    api: &Api<Database>,
    db: &Database,
    written: &DatabaseStatus,
    status: &DatabaseStatus,
) -> Result<(), kube::Error> {
    if db.status.is_some() && written == status {
        return Ok(());
    }
    apply_status(api, &db.name_any(), status).await
}

/// Isolation that applies to a database, for `NetworkIsolated`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isolation {
    Dedicated,
    Shared,
    External,
}

/// A usable server.
struct ServerAccess {
    engine: AnyEngine,
    host: String,
    port: u16,
    tls: TlsMode,
    isolation: Isolation,
}

enum ServerState {
    Usable(Box<ServerAccess>),
    Waiting {
        reason: &'static str,
        message: String,
    },
}

fn name_limit(engine: Engine) -> usize {
    match engine {
        Engine::Postgres => POSTGRES_IDENTIFIER_LIMIT,
        Engine::Mongodb => MONGODB_DATABASE_LIMIT,
    }
}

/// The names on the server: recorded ones if any, otherwise derived.
fn server_names(db: &Database, status: &DatabaseStatus) -> ServerNames {
    let derived = derive_server_name(
        &db.namespace().unwrap_or_default(),
        &db.name_any(),
        name_limit(db.spec.engine),
    );
    ServerNames {
        database: status
            .database_name
            .clone()
            .unwrap_or_else(|| derived.clone()),
        role: status.role_name.clone().unwrap_or(derived),
        marker: ownership_marker(db),
    }
}

/// The comment Silo puts on what it creates for `db`, so that it never adopts anything else.
fn ownership_marker(db: &Database) -> String {
    format!("silo:{}", db.metadata.uid.as_deref().unwrap_or_default())
}

/// The login in an admin Secret, read at most once per [`super::caches::ADMIN_LOGIN_TTL`].
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

/// The shared server `name` for a Database of `engine`; `bound` when the Database was already
/// created on it (its `spec.server` can no longer change).
async fn shared_server(
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
    match validate::server(server.as_ref()) {
        Err(_) => Ok(server_invalid(name)),
        Ok(ServerKind::External(external)) => {
            let Ok(namespace) =
                validate::admin_secret_namespace(&external, &ctx.config.operator_namespace)
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
                engine: server_engine(ctx, &object_key(server.as_ref()), engine, admin)?,
                host: external.host,
                port,
                tls,
                isolation: Isolation::External,
            })))
        }
        Ok(ServerKind::Managed(managed)) => {
            if !super::server::serves_databases(&server) {
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
            Ok(ServerState::Usable(Box::new(ServerAccess {
                engine: server_engine(ctx, &object_key(server.as_ref()), engine, admin)?,
                host: workload.host(),
                port: workload.port(),
                tls: TlsMode::Disable,
                isolation: Isolation::Shared,
            })))
        }
    }
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

async fn resolve_server(
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
            Ok(ServerState::Usable(Box::new(ServerAccess {
                engine,
                host: workload.host(),
                port: workload.port(),
                tls: TlsMode::Disable,
                isolation: Isolation::Dedicated,
            })))
        }
    }
}

/// Why the password changes in this pass.
#[derive(Debug, PartialEq, Eq)]
enum Rotation {
    Annotation,
    Schedule,
}

fn rotation_due(
    db: &Database,
    status: &DatabaseStatus,
    rotate_every: Option<Duration>,
    now: jiff::Timestamp,
) -> Option<Rotation> {
    let requested = db.annotations().get(ROTATE_ANNOTATION);
    if requested.is_some() && requested != status.rotation_token.as_ref() {
        return Some(Rotation::Annotation);
    }
    let last: jiff::Timestamp = status.last_rotation.as_deref()?.parse().ok()?;
    let every = rotate_every?;
    let elapsed = now.duration_since(last);
    (elapsed >= jiff::SignedDuration::try_from(every).ok()?).then_some(Rotation::Schedule)
}

fn time_until_rotation(
    status: &DatabaseStatus,
    rotate_every: Option<Duration>,
    now: jiff::Timestamp,
) -> Option<Duration> {
    let last: jiff::Timestamp = status.last_rotation.as_deref()?.parse().ok()?;
    let due = last
        .checked_add(jiff::SignedDuration::try_from(rotate_every?).ok()?)
        .ok()?;
    Duration::try_from(due.duration_since(now)).ok()
}

/// The credentials Secret, if it exists and belongs to this Database.
async fn current_secret(
    ctx: &Context,
    db: &Database,
    secret_name: &str,
) -> Result<Option<Arc<Secret>>, Error> {
    let namespace = db.namespace().unwrap_or_default();
    let secret = match ctx
        .caches
        .current_secret(&object_key(db), &namespace, secret_name)
    {
        Some(secret) => secret,
        None => match Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
            .get_opt(secret_name)
            .await?
        {
            Some(secret) => Arc::new(secret),
            None => return Ok(None),
        },
    };
    let ours = secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| Some(&r.uid) == db.metadata.uid.as_ref());
    if !ours {
        return Err(Error::SecretConflict(format!(
            "spec.credentials.secretName: Secret {secret_name} already exists and does not belong to this Database; choose another name or delete that Secret"
        )));
    }
    ctx.caches
        .saw_secret(&object_key(db), secret.resource_version());
    Ok(Some(secret))
}

async fn provision(
    db: &Database,
    ctx: &Context,
    status: &mut DatabaseStatus,
) -> Result<Outcome, Error> {
    let generation = db.metadata.generation;
    let valid = validate::database(db)?;
    let namespace = db.namespace().unwrap_or_default();
    let prior = status.conditions.clone();
    let set =
        |status: &mut DatabaseStatus, type_: &str, ok: bool, reason: &str, message: String| {
            upsert(
                &mut status.conditions,
                condition(&prior, type_, ok, reason, message, generation),
            );
        };

    status.server = Some(match &valid.placement {
        Placement::Shared(name) => name.clone(),
        Placement::Dedicated(_) => DEDICATED_BINDING.to_string(),
    });
    let access = match resolve_server(db, &valid, ctx).await? {
        ServerState::Usable(access) => access,
        ServerState::Waiting { reason, message } => {
            set(status, types::SERVER_READY, false, reason, message.clone());
            set(status, types::READY, false, reason, message);
            return Ok(Outcome::Waiting);
        }
    };

    // What this database is bound to is recorded with the first status write of the pass,
    // success or failure. Names are derived from namespace and name alone, so a pass
    // interrupted before that write resumes with the same names.
    let names = server_names(db, status);
    if status.database_name.is_none() || status.bound_engine.is_none() {
        status.bound_engine = Some(valid.engine);
        status.bound_server = Some(valid.placement.binding());
        status.database_name = Some(names.database.clone());
        status.role_name = Some(names.role.clone());
    }

    let now = jiff::Timestamp::now();
    let existing_secret = current_secret(ctx, db, &valid.secret_name).await?;
    let existing = existing_secret
        .as_deref()
        .and_then(|secret| secret_value(secret, "password"))
        .map(Password::from_secret_value);
    let rotation = rotation_due(db, status, valid.rotate_every, now);
    let (password, set_password) = match (existing, &rotation) {
        (Some(password), None) => (password, false),
        _ => (Password::generate(), true),
    };

    let report = access
        .engine
        .provision(&names, &password, set_password)
        .await?;
    // Only now is it known that the server answers and accepts the admin login.
    set(
        status,
        types::SERVER_READY,
        true,
        "ServerReady",
        "the operator connected to the server as its administrator".into(),
    );
    set(
        status,
        types::PROVISIONED,
        true,
        "Provisioned",
        format!("database {} owned by role {}", names.database, names.role),
    );

    let owner_reference = db
        .controller_owner_ref(&())
        .ok_or_else(|| Error::ServerNotReady("the Database has no uid yet".into()))?;
    let secret = credentials_secret(&CredentialsSecretInput {
        name: &valid.secret_name,
        namespace: &namespace,
        database_resource: &db.name_any(),
        owner: &valid.owner,
        owner_reference: &owner_reference,
        login: LoginParts {
            engine: valid.engine,
            username: &names.role,
            password: password.expose(),
            host: &access.host,
            port: access.port,
            database: &names.database,
            tls: access.tls,
        },
    })?;
    if existing_secret
        .as_deref()
        .is_none_or(|existing| !same_content(existing, &secret))
    {
        ctx.caches.writing_secret(&object_key(db), &secret);
        let applied = apply(&ctx.client, &secret).await?;
        ctx.caches
            .saw_secret(&object_key(db), applied.resource_version());
    }
    set(
        status,
        types::CREDENTIALS_READY,
        true,
        "SecretWritten",
        format!(
            "Secret {} holds a login that was checked against the server",
            valid.secret_name
        ),
    );

    publish_report(ctx, db, &report, rotation.as_ref()).await;
    if report.password_set {
        status.last_rotation = Some(now.to_string());
    }
    status.rotation_token = db.annotations().get(ROTATE_ANNOTATION).cloned();

    let (isolated, reason, message) = match access.isolation {
        Isolation::Dedicated => (
            true,
            "Dedicated",
            format!("the server runs for this database alone and admits only pods labelled silo.dev/service={}", valid.owner),
        ),
        Isolation::Shared => (
            false,
            "Shared",
            "the server is shared: its NetworkPolicy admits the owners of all databases on it, so isolation is by database privileges only".to_string(),
        ),
        Isolation::External => (
            false,
            "External",
            "the server is external: the operator cannot restrict network access to it; isolation is by database privileges only".to_string(),
        ),
    };
    set(status, types::NETWORK_ISOLATED, isolated, reason, message);

    let verified = report.access_verified();
    if verified {
        set(
            status,
            types::ACCESS_VERIFIED,
            true,
            "Measured",
            format!(
                "the server's catalog shows that only role {} (and the admin) can reach the database",
                names.role
            ),
        );
    } else {
        set(
            status,
            types::ACCESS_VERIFIED,
            false,
            "ForeignAccess",
            format!(
                "still able to reach the database after repair: {}",
                report.remaining_access.join(", ")
            ),
        );
    }
    if verified {
        set(
            status,
            types::READY,
            true,
            "Ready",
            format!("credentials are in Secret {}", valid.secret_name),
        );
    } else {
        set(
            status,
            types::READY,
            false,
            "ForeignAccess",
            "other logins can reach the database".into(),
        );
    }
    status.endpoint = Some(Endpoint {
        host: access.host.clone(),
        port: access.port,
        database: names.database.clone(),
    });
    status.secret_name = Some(valid.secret_name.clone());

    let requeue = time_until_rotation(status, valid.rotate_every, now).map_or(
        ctx.config.drift_interval,
        |until| {
            until
                .max(Duration::from_secs(1))
                .min(ctx.config.drift_interval)
        },
    );
    Ok(Outcome::Done {
        ready: verified,
        requeue,
    })
}

/// Whether `existing` already holds what `desired` would write (data, labels, owner).
fn same_content(existing: &Secret, desired: &Secret) -> bool {
    let labels_kept = desired
        .labels()
        .iter()
        .all(|(k, v)| existing.labels().get(k) == Some(v));
    let data = |secret: &Secret| -> std::collections::BTreeMap<String, Option<String>> {
        let keys = secret
            .data
            .iter()
            .flatten()
            .map(|(k, _)| k)
            .chain(secret.string_data.iter().flatten().map(|(k, _)| k));
        keys.map(|k| (k.clone(), secret_value(secret, k))).collect()
    };
    labels_kept
        && existing.owner_references() == desired.owner_references()
        && data(existing) == data(desired)
}

async fn publish_report(
    ctx: &Context,
    db: &Database,
    report: &ProvisionReport,
    rotation: Option<&Rotation>,
) {
    let reference = db.object_ref(&());
    if report.role_created || report.database_created {
        ctx.publish(
            &reference,
            false,
            "Provisioned",
            "Provision",
            "database and role created on the server".into(),
        )
        .await;
    }
    for repair in &report.repaired {
        ctx.publish(&reference, true, "DriftRepaired", "Repair", repair.clone())
            .await;
    }
    if let Some(rotation) = rotation {
        let cause = match rotation {
            Rotation::Annotation => "requested with the silo.dev/rotate annotation",
            Rotation::Schedule => "spec.credentials.rotateEvery elapsed",
        };
        ctx.publish(
            &reference,
            false,
            "PasswordRotated",
            "Rotate",
            format!("a new password was set and written to the Secret ({cause}); restart the service to use it"),
        )
        .await;
    }
}

async fn cleanup(db: &Database, ctx: &Context, api: &Api<Database>) -> Result<Action, Error> {
    let key = object_key(db);
    let reference = db.object_ref(&());
    let status = db.status.clone().unwrap_or_default();
    let result = deprovision(db, ctx, &status).await;
    match result {
        Ok(note) => {
            ctx.forget(&key);
            if let Some(note) = note {
                ctx.publish(&reference, false, "Deprovisioned", "Delete", note)
                    .await;
            }
            Ok(Action::await_change())
        }
        Err(error) => {
            let mut status = status;
            let prior = status.conditions.clone();
            let message = format!("deleting the database on the server failed: {error}");
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
                tracing::warn!(error = %e, "cannot write Database status");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{DatabaseSpec, ServerBinding};

    fn database() -> Database {
        Database::new(
            "users",
            DatabaseSpec {
                engine: Engine::Postgres,
                owner: "user-service".into(),
                server: ServerBinding {
                    server_ref: Some("pg".into()),
                    dedicated: None,
                },
                deletion_policy: DeletionPolicy::Retain,
                credentials: Default::default(),
            },
        )
    }

    #[test]
    fn a_new_annotation_value_requests_rotation_once() {
        let mut db = database();
        db.annotations_mut()
            .insert(ROTATE_ANNOTATION.into(), "1".into());
        let now = jiff::Timestamp::now();
        let mut status = DatabaseStatus::default();
        assert_eq!(
            rotation_due(&db, &status, None, now),
            Some(Rotation::Annotation)
        );
        status.rotation_token = Some("1".into());
        assert_eq!(rotation_due(&db, &status, None, now), None);
    }

    #[test]
    fn rotation_is_due_when_the_period_has_elapsed() {
        let db = database();
        let now = jiff::Timestamp::now();
        let status = DatabaseStatus {
            last_rotation: Some((now - jiff::SignedDuration::from_hours(2)).to_string()),
            ..Default::default()
        };
        let hour = Some(Duration::from_secs(3600));
        let day = Some(Duration::from_secs(86400));
        assert_eq!(
            rotation_due(&db, &status, hour, now),
            Some(Rotation::Schedule)
        );
        assert_eq!(rotation_due(&db, &status, day, now), None);
        let until = time_until_rotation(&status, day, now).unwrap();
        assert!(until > Duration::from_secs(21 * 3600) && until <= Duration::from_secs(22 * 3600));
    }

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

    #[test]
    fn recorded_names_win_over_derivation() {
        let mut db = database();
        db.metadata.namespace = Some("shop".into());
        let status = DatabaseStatus {
            database_name: Some("recorded_db".into()),
            role_name: Some("recorded_role".into()),
            ..Default::default()
        };
        let names = server_names(&db, &status);
        assert_eq!(names.database, "recorded_db");
        assert_eq!(names.role, "recorded_role");
        assert_eq!(
            server_names(&db, &DatabaseStatus::default()).role,
            "shop_users"
        );
    }
}

/// Pins the exact API calls of a reconcile against a mocked API server (no cluster needed).
#[cfg(test)]
mod request_sequence {
    use std::sync::Arc;

    use axum::http::{Method, Request, Response};
    use kube::Client;
    use kube::client::Body;

    use super::*;
    use crate::controller::OperatorConfig;
    use crate::crd::{DatabaseSpec, ServerBinding};
    use crate::metrics::Metrics;

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    fn invalid_database() -> Database {
        let mut db = Database::new(
            "users",
            DatabaseSpec {
                engine: Engine::Postgres,
                owner: "user-service".into(),
                server: ServerBinding::default(),
                deletion_policy: DeletionPolicy::Retain,
                credentials: Default::default(),
            },
        );
        db.metadata.namespace = Some("shop".into());
        db.metadata.uid = Some("0000-1111".into());
        db.metadata.generation = Some(1);
        db.metadata.finalizers = Some(vec![FINALIZER.into()]);
        db
    }

    async fn expect(
        handle: &mut Handle,
        method: Method,
        path: &str,
        reply: Option<Vec<u8>>,
    ) -> serde_json::Value {
        let (request, respond) = handle.next_request().await.expect("another request");
        assert_eq!(request.method(), method, "{}", request.uri());
        assert_eq!(request.uri().path(), path);
        let query = request.uri().query().unwrap_or_default().to_string();
        let body = request.into_body().collect_bytes().await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        respond.send_response(
            Response::builder()
                .body(Body::from(reply.unwrap_or_else(|| body.to_vec())))
                .unwrap(),
        );
        serde_json::json!({ "query": query, "body": json })
    }

    #[tokio::test]
    async fn an_invalid_spec_writes_status_by_apply_and_publishes_one_event_without_reading() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let ctx = Arc::new(Context::new(
            Client::new(service, "default"),
            OperatorConfig::default(),
            Arc::new(Metrics::default()),
        ));
        let db = invalid_database();
        let served = serde_json::to_vec(&db).unwrap();
        let api_server = tokio::spawn(async move {
            // The watched copy is current enough: no rotation is due, so nothing is read.
            let path = "/apis/silo.dev/v1alpha1/namespaces/shop/databases/users";
            let status = expect(
                &mut handle,
                Method::PATCH,
                &format!("{path}/status"),
                Some(served),
            )
            .await;
            let query = status["query"].as_str().unwrap();
            assert!(query.contains("fieldManager=silo-operator") && query.contains("force=true"));
            let ready = &status["body"]["status"]["conditions"][0];
            assert_eq!(ready["type"], "Ready");
            assert_eq!(ready["reason"], "InvalidSpec");
            let event = expect(
                &mut handle,
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/shop/events",
                None,
            )
            .await;
            assert_eq!(event["body"]["reason"], "InvalidSpec");
            // Either the client is gone (None) or it stays silent.
            let next =
                tokio::time::timeout(std::time::Duration::from_millis(200), handle.next_request())
                    .await;
            assert!(
                matches!(next, Err(_) | Ok(None)),
                "no further API calls, got {:?}",
                next.ok().flatten().map(|(r, _)| r.uri().clone())
            );
        });
        let result = reconcile(Arc::new(db), ctx).await;
        assert!(matches!(result, Err(Error::InvalidSpec(_))), "{result:?}");
        api_server.await.unwrap();
    }
}

//! The `Database` controller. A pass reads as its pipeline: resolve the server
//! ([`resolve`]) → the credentials to use ([`credentials`], [`rotation`]) → provision on the
//! engine → write the Secret → set the conditions ([`conditions`]) and tell users
//! ([`report`]); deletion is [`cleanup`].

mod cleanup;
mod conditions;
mod credentials;
mod report;
mod resolve;
mod rotation;
mod server_names;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};

pub use rotation::ROTATE_ANNOTATION;

use super::{Context, finalizers, object_key};
use crate::apply::apply_status;
use crate::build::AllowedClient;
use crate::crd::{Database, DatabaseStatus, Endpoint};
use crate::engine::{Engine as _, EngineError, ServerNames};
use crate::error::{Error, describe_kube_error};
use crate::isolation::{Assessment, Expected, assess, locate};
use crate::metrics::Phase;
use crate::status::{condition, find, types, upsert};
use crate::validate::{self, DEDICATED_BINDING, Placement, ValidDatabase};
use conditions::{Conditions, Measured};
use credentials::{Login, current_secret, password_to_use, write_secret};
use resolve::{ServerState, resolve_server};
use rotation::{next_check, rotation_due};
use server_names::server_names;

/// Finalizer guarding the database and role on the server.
pub const FINALIZER: &str = "silo.dev/database-cleanup";
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
        let action = cleanup::cleanup(&db, &ctx, &api).await?;
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
            tracing::warn!(database = %key, reason = error.reason(), "reconcile failed: {error}");
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

/// One pass over a Database that is not being deleted: provision, then write what was found.
async fn apply_database(
    db: &Database,
    ctx: &Context,
    api: &Api<Database>,
) -> Result<Action, Error> {
    let Some(db) = current_enough(db, api).await? else {
        return Ok(Action::await_change());
    };
    let db = db.as_ref();
    let key = object_key(db);
    let written = db.status.clone().unwrap_or_default();
    let mut status = written.clone();
    let outcome = provision(db, ctx, &mut status).await;
    status.observed_generation = db.metadata.generation;
    let (phase, requeue) = match outcome {
        Ok(Outcome::Done {
            ready: true,
            requeue,
        }) => (Phase::Ready, requeue),
        Ok(Outcome::Done { ready: false, .. }) => (Phase::Failed, WAITING_REQUEUE),
        Ok(Outcome::Waiting) => (Phase::Pending, WAITING_REQUEUE),
        Err(error) => return Err(record_failure(db, ctx, api, &written, status, error).await),
    };
    write_status(api, db, &written, &status).await?;
    ctx.metrics.set_phase(&key, Some(phase));
    Ok(Action::requeue(requeue))
}

/// `db`, or a fresh read of it when a rotation looks due: the watched copy can lag behind our
/// own last status write, and acting on it could honour the same rotation request twice.
/// `None` when it is gone.
async fn current_enough<'a>(
    db: &'a Database,
    api: &Api<Database>,
) -> Result<Option<std::borrow::Cow<'a, Database>>, Error> {
    let rotate_every = validate::database(db).ok().and_then(|v| v.rotate_every);
    let cached_status = db.status.clone().unwrap_or_default();
    if rotation_due(db, &cached_status, rotate_every, jiff::Timestamp::now()).is_none() {
        return Ok(Some(std::borrow::Cow::Borrowed(db)));
    }
    Ok(api
        .get_opt(&db.name_any())
        .await?
        .map(std::borrow::Cow::Owned))
}

/// Writes a failed pass to the status (`Ready=False` with the error's reason, and
/// `ServerReady=False` when the server refused), publishes an Event when that is news, and
/// returns the error for the error policy.
async fn record_failure(
    db: &Database,
    ctx: &Context,
    api: &Api<Database>,
    written: &DatabaseStatus,
    mut status: DatabaseStatus,
    error: Error,
) -> Error {
    let previous_ready = find(&written.conditions, types::READY).cloned();
    let prior = status.conditions.clone();
    let server_refused = matches!(
        error,
        Error::Engine(EngineError::AdminConnect(_) | EngineError::LoginFailed(_))
    );
    let failed = [types::READY]
        .into_iter()
        .chain(server_refused.then_some(types::SERVER_READY));
    for type_ in failed {
        let failed = condition(
            &prior,
            type_,
            false,
            error.reason(),
            error.to_string(),
            db.metadata.generation,
        );
        upsert(&mut status.conditions, failed);
    }
    if matches!(error, Error::Engine(EngineError::AdminConnect(_))) {
        // The admin Secret may have changed since it was read.
        ctx.caches.forget_admin_logins();
    }
    if let Err(e) = write_status(api, db, written, &status).await {
        tracing::warn!("cannot write Database status: {}", describe_kube_error(&e));
    }
    let news =
        previous_ready.is_none_or(|c| c.reason != error.reason() || c.message != error.to_string());
    if news {
        let (reason, message) = (error.reason(), error.to_string());
        ctx.publish(&db.object_ref(&()), true, reason, "Reconcile", message)
            .await;
    }
    let phase = match error {
        Error::InvalidSpec(_) => Phase::Invalid,
        _ => Phase::Failed,
    };
    ctx.metrics.set_phase(&object_key(db), Some(phase));
    error
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

/// The pipeline: resolve the server, choose the password, provision, write the Secret, set the
/// conditions. Fills `status` as far as it gets.
async fn provision(
    db: &Database,
    ctx: &Context,
    status: &mut DatabaseStatus,
) -> Result<Outcome, Error> {
    let valid = validate::database(db)?;
    let conditions = Conditions::new(status, db.metadata.generation);
    status.server = Some(match &valid.placement {
        Placement::Shared(name) => name.clone(),
        Placement::Dedicated(_) => DEDICATED_BINDING.to_string(),
    });
    let access = match resolve_server(db, &valid, ctx).await? {
        ServerState::Usable(access) => access,
        ServerState::Waiting { reason, message } => {
            conditions.waiting(status, reason, message);
            return Ok(Outcome::Waiting);
        }
    };
    let names = bind(db, &valid, status);
    let now = jiff::Timestamp::now();
    let existing = current_secret(ctx, db, &valid.secret_name).await?;
    let rotation = rotation_due(db, status, valid.rotate_every, now);
    let (password, set_password) = password_to_use(existing.as_deref(), rotation.as_ref());
    let report = access
        .engine
        .provision(&names, &password, set_password)
        .await?;
    // Only now is it known that the server answers and accepts the admin login.
    conditions.provisioned(status, &names);
    let login = Login {
        names: &names,
        access: &access,
        password: &password,
    };
    write_secret(ctx, db, &valid, &login, existing.as_deref()).await?;
    conditions.credentials_ready(status, &valid.secret_name);
    report::publish_report(ctx, db, &report, rotation.as_ref()).await;
    if report.password_set {
        status.last_rotation = Some(now.to_string());
    }
    status.rotation_token = db.annotations().get(ROTATE_ANNOTATION).cloned();
    let reach = measure_reach(ctx, db, &valid, access.isolation);
    let measured = Measured {
        isolation: access.isolation,
        reach: reach.as_ref(),
        report: &report,
        names: &names,
        endpoint: Endpoint {
            host: access.host.clone(),
            port: access.port,
            database: names.database.clone(),
        },
    };
    let ready = conditions.measured(status, &measured, &valid);
    let requeue = next_check(status, valid.rotate_every, now, ctx.config.drift_interval);
    Ok(Outcome::Done { ready, requeue })
}

/// Who reaches the port of a server dedicated to `db`, over the Pods, Namespaces and
/// NetworkPolicies watched (policies Silo did not write included); `None` for shared and
/// external servers, whose isolation is by database privileges.
fn measure_reach(
    ctx: &Context,
    db: &Database,
    valid: &ValidDatabase,
    isolation: resolve::Isolation,
) -> Option<Assessment> {
    if isolation != resolve::Isolation::Dedicated {
        return None;
    }
    let view = ctx.caches.cluster()?;
    let owner = AllowedClient {
        namespace: db.namespace().unwrap_or_default(),
        owner: valid.owner.clone(),
    };
    let expected = Expected {
        owner: &owner,
        operator_namespace: &ctx.config.operator_namespace,
        access_verified: None,
    };
    let location = locate(db, None, std::iter::empty());
    Some(assess(&view.cluster(), &location, &expected))
}

/// The names on the server, recorded in `status` with what the Database is bound to on the
/// first pass that reaches its server (written with that pass's status, success or failure).
/// Names are derived from namespace and name alone, so a pass interrupted before that write
/// resumes with the same names.
fn bind(db: &Database, valid: &ValidDatabase, status: &mut DatabaseStatus) -> ServerNames {
    let names = server_names(db, status);
    if status.database_name.is_none() || status.bound_engine.is_none() {
        status.bound_engine = Some(valid.engine);
        status.bound_server = Some(valid.placement.binding());
        status.database_name = Some(names.database.clone());
        status.role_name = Some(names.role.clone());
    }
    names
}

/// A `Database` on the shared server `pg` for unit tests.
#[cfg(test)]
pub(crate) fn test_database() -> Database {
    use crate::crd::{DatabaseSpec, DeletionPolicy, Engine, ServerBinding};
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

/// Pins the exact API calls of a reconcile against a mocked API server (no cluster needed).
#[cfg(test)]
mod request_sequence {
    use std::sync::Arc;

    use axum::http::{Method, Request, Response};
    use kube::Client;
    use kube::client::Body;

    use super::*;
    use crate::controller::OperatorConfig;
    use crate::crd::{DatabaseSpec, DeletionPolicy, Engine, ServerBinding};
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

//! The `Service` controller: validate → resolve what it names → apply its Database → build and
//! apply its workload → measure its database's isolation → status.
//!
//! A Service holds nothing outside the cluster: what it makes is owned by it and
//! garbage-collected with it, so there is no finalizer.

mod children;
mod conditions;
mod context;
mod error;
mod graph;
mod resolve;
mod triggers;
mod validate;

use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service as KubeService, ServiceAccount};
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::{mpsc, watch};

pub use conditions::types;
pub use context::{ServiceContext, Stores};
pub use error::ServiceError;
pub use triggers::trim_pod;

use super::cluster_view::{ClusterEvents, ClusterView, watched};
use super::triggers::trim;
use super::{Context, object_key, wait_for};
use crate::apply::apply_status;
use crate::build::AllowedClient;
use crate::build::microservice::{Credentials, DatabaseWiring, Microservice};
use crate::crd::{Database, DatabaseServer, Service, ServiceStatus};
use crate::isolation::{Assessment, DatabaseLocation, Expected, assess, locate, reasons};
use crate::status::{find, types as database_types};
use resolve::Resolved;
use validate::ValidService;

const CONTROLLER: &str = "service";
/// Objects the operator made for Services.
const OWNED_SELECTOR: &str = "app.kubernetes.io/managed-by=silo,silo.dev/service";

/// Reconciles one `Service`.
pub async fn reconcile(
    service: Arc<Service>,
    ctx: Arc<ServiceContext>,
) -> Result<Action, ServiceError> {
    let started = Instant::now();
    let key = object_key(service.as_ref());
    if service.meta().deletion_timestamp.is_some() {
        ctx.forget_told(&key);
        ctx.base.forget(&key);
        return Ok(Action::await_change());
    }
    let result = converge(&service, &ctx).await;
    ctx.base.metrics.reconciled(
        CONTROLLER,
        started.elapsed(),
        result.as_ref().err().map(ServiceError::reason),
    );
    match &result {
        Ok(action) => {
            ctx.base.succeeded(&key);
            tracing::debug!(service = %key, ?action, took = ?started.elapsed(), "reconciled");
        }
        Err(error) => {
            tracing::info!(service = %key, reason = error.reason(), %error, "reconcile failed");
        }
    }
    result
}

/// Invalid specs wait for a change (of the Service or what it names: the watches wake it);
/// everything else backs off per Service.
pub fn error_policy(
    service: Arc<Service>,
    error: &ServiceError,
    ctx: Arc<ServiceContext>,
) -> Action {
    if error.needs_spec_change() {
        Action::await_change()
    } else {
        Action::requeue(ctx.base.next_backoff(&object_key(service.as_ref())))
    }
}

/// One pass; its outcome is written to status either way, a failure told once as an Event.
async fn converge(service: &Service, ctx: &ServiceContext) -> Result<Action, ServiceError> {
    let key = object_key(service);
    let api = Api::<Service>::namespaced(
        ctx.base.client.clone(),
        &service.namespace().unwrap_or_default(),
    );
    let written = service.status.clone().unwrap_or_default();
    match pass(service, ctx, &written).await {
        Ok(status) => {
            write_status(&api, service, &written, &status).await?;
            ctx.forget_told(&key);
            Ok(Action::requeue(ctx.base.config.drift_interval))
        }
        Err(error) => {
            let generation = service.metadata.generation;
            let status =
                conditions::failed(&written, generation, error.reason(), error.to_string());
            if let Err(e) = write_status(&api, service, &written, &status).await {
                tracing::warn!(error = %e, "cannot write Service status");
            }
            if ctx.first_telling(&key, &format!("{}: {error}", error.reason())) {
                let reference = service.object_ref(&());
                ctx.base
                    .publish(
                        &reference,
                        true,
                        error.reason(),
                        "Reconcile",
                        error.to_string(),
                    )
                    .await;
            }
            Err(error)
        }
    }
}

/// Writes `status` unless the Service already has it: an idle pass writes nothing.
async fn write_status(
    api: &Api<Service>,
    service: &Service,
    written: &ServiceStatus,
    status: &ServiceStatus,
) -> Result<(), kube::Error> {
    if service.status.is_some() && written == status {
        return Ok(());
    }
    apply_status(api, &service.name_any(), status).await
}

async fn pass(
    service: &Service,
    ctx: &ServiceContext,
    written: &ServiceStatus,
) -> Result<ServiceStatus, ServiceError> {
    let valid = validate::service(service)?;
    let resolved = resolve::resolve(service, &valid, ctx).await?;
    let database = match &resolved.database {
        Some(used) => match &used.desired {
            Some(desired) => Some(Arc::new(children::apply_database(ctx, desired).await?)),
            None => used.current.clone(),
        },
        None => None,
    };
    let location = match database.as_deref() {
        Some(db) => Some(database_location(ctx, db).await?),
        None => None,
    };
    let microservice = microservice(service, valid, resolved, database.as_deref(), location);
    let deployment = children::apply_workload(ctx, &microservice).await?;
    let isolation = measure(ctx, &microservice, database.as_deref());
    let database_name = microservice.database.as_ref().map(|db| db.name.as_str());
    Ok(conditions::status(
        written,
        &conditions::Observed {
            generation: service.metadata.generation,
            endpoint: microservice.endpoint(),
            database: database_name.map(|name| (name, database.as_deref())),
            deployment: deployment.as_ref(),
            replicas: microservice.replicas,
            isolation: &isolation,
        },
    ))
}

/// Where `db` listens; its server read from the watched copy, else from the API server.
async fn database_location(
    ctx: &ServiceContext,
    db: &Database,
) -> Result<DatabaseLocation, ServiceError> {
    let server = match db.spec.server.server_ref.as_deref() {
        None => None,
        Some(name) => match ctx.base.caches.server(name) {
            Some(server) => Some(server),
            None => Api::<DatabaseServer>::all(ctx.base.client.clone())
                .get_opt(name)
                .await?
                .map(Arc::new),
        },
    };
    let databases = ctx.stores.databases.state();
    Ok(locate(
        db,
        server.as_deref(),
        databases.iter().map(Arc::as_ref),
    ))
}

fn microservice(
    service: &Service,
    valid: ValidService,
    resolved: Resolved,
    database: Option<&Database>,
    location: Option<DatabaseLocation>,
) -> Microservice {
    let wiring = resolved.database.map(|used| DatabaseWiring {
        credentials: database.and_then(credentials),
        location: location.unwrap_or_else(|| DatabaseLocation::Unknown("no Database".into())),
        name: used.name,
    });
    Microservice {
        name: service.name_any(),
        namespace: service.namespace().unwrap_or_default(),
        owner: resolved.owner,
        image: valid.image,
        port: valid.port,
        replicas: valid.replicas,
        env: valid.env,
        resources: service.spec.resources.clone(),
        probes: valid.probes,
        database: wiring,
        dependencies: resolved.dependencies,
        callers: resolved.callers,
        broker: valid.broker,
        exposed: service.spec.exposed,
    }
}

/// The credentials Secret, once the Database has written it, and when its password was set.
fn credentials(db: &Database) -> Option<Credentials> {
    let status = db.status.as_ref()?;
    Some(Credentials {
        secret_name: status.secret_name.clone()?,
        rotation: status.last_rotation.clone().unwrap_or_default(),
    })
}

fn measure(ctx: &ServiceContext, service: &Microservice, db: Option<&Database>) -> Assessment {
    let (Some(wiring), Some(db)) = (&service.database, db) else {
        return Assessment {
            isolated: true,
            reason: reasons::NO_DATABASE,
            message: "the service has no database".into(),
            foreign: Vec::new(),
        };
    };
    let conditions = db
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let owner = AllowedClient {
        namespace: service.namespace.clone(),
        owner: service.name.clone(),
    };
    let expected = Expected {
        owner: &owner,
        operator_namespace: &ctx.base.config.operator_namespace,
        access_verified: find(conditions, database_types::ACCESS_VERIFIED)
            .map(|c| c.status == "True"),
    };
    assess(&ctx.stores.cluster(), &wiring.location, &expected)
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// The watch of Services: it fills `writer`'s store, tells `wake` which other Services a
/// change concerns, and yields the Services whose intent changed.
fn service_events(
    api: Api<Service>,
    writer: reflector::store::Writer<Service>,
    store: Store<Service>,
    wake: mpsc::UnboundedSender<ObjectRef<Service>>,
) -> impl Stream<Item = Result<Service, watcher::Error>> + Send {
    let mut dependencies = triggers::DependencyFilter::default();
    watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(trim)
        .reflect(writer)
        .inspect_ok(move |event| {
            for service in dependencies.admit(event, &store) {
                let _ = wake.send(service);
            }
        })
        .applied_objects()
        .predicate_filter(triggers::service_intent, Default::default())
}

/// Runs the Service controller until `shutdown` turns true. `view` is filled by `events`,
/// which this controller polls; the namespace of every NetworkPolicy change goes to
/// `policy_namespaces` (the Database controller re-measures the databases there).
pub async fn run(
    ctx: Arc<Context>,
    (view, events): (ClusterView, ClusterEvents),
    policy_namespaces: mpsc::UnboundedSender<String>,
    shutdown: watch::Receiver<bool>,
) {
    let client = ctx.client.clone();
    let scope = ctx.config.namespace.clone();
    let scope = scope.as_deref();
    let everything = watcher::Config::default;
    let owned = || watcher::Config::default().labels(OWNED_SELECTOR);
    let (deployments, deployment_events) =
        watched::<Deployment>(scoped(&client, scope), owned(), trim);
    let (accounts, account_events) =
        watched::<ServiceAccount>(scoped(&client, scope), owned(), trim);
    let (kube_services, kube_service_events) =
        watched::<KubeService>(scoped(&client, scope), owned(), trim);
    let (databases, database_events) =
        watched::<Database>(scoped(&client, scope), everything(), trim);
    let ClusterEvents {
        policies: policy_events,
        pods: pod_events,
        namespaces: namespace_events,
    } = events;
    let policy_events = policy_events.inspect_ok(move |policy| {
        let _ = policy_namespaces.send(policy.namespace().unwrap_or_default());
    });
    let (services, service_writer) = reflector::store();
    let (wake, mut woken) = mpsc::unbounded_channel();
    let service_stream = service_events(
        scoped(&client, scope),
        service_writer,
        services.clone(),
        wake,
    );
    let stores = Stores {
        services: services.clone(),
        databases: databases.clone(),
        deployments,
        accounts,
        kube_services,
        policies: view.policies,
        pods: view.pods,
        namespaces: view.namespaces,
    };
    let service_ctx = Arc::new(ServiceContext::new(ctx.clone(), stores.clone()));
    let for_databases = services.clone();
    let for_policies = (services.clone(), databases, ctx.clone());
    let controller = Controller::for_stream(service_stream, services)
        .owns_stream(deployment_events)
        .owns_stream(account_events)
        .owns_stream(kube_service_events)
        .watches_stream(database_events, move |db| {
            triggers::database_to_services(&db, &for_databases)
        })
        .watches_stream(policy_events, move |policy| {
            let (services, databases, ctx) = &for_policies;
            triggers::policy_to_services(&policy, services, databases, |name| {
                ctx.caches.server(name)
            })
        })
        .reconcile_on(futures::stream::poll_fn(move |cx| woken.poll_recv(cx)))
        .with_config(ControllerConfig::default().concurrency(ctx.config.concurrency))
        .graceful_shutdown_on(wait_for(shutdown))
        .run(reconcile, error_policy, service_ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "service reconcile did not finish");
            }
        });
    // Pods and Namespaces only feed the stores the isolation measurement reads.
    let mirrors = futures::future::join(
        pod_events.for_each(|_| std::future::ready(())),
        namespace_events.for_each(|_| std::future::ready(())),
    );
    tokio::select! {
        () = controller => {},
        _ = mirrors => {},
    }
}

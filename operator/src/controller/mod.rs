//! The controllers: wiring, shared context and the error policy.

mod caches;
mod cluster_view;
pub mod database;
mod dedicated_volume;
pub mod events;
mod finalizers;
mod gone;
mod server;
mod server_access;
pub mod service;
mod triggers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::{mpsc, watch};

pub use caches::Caches;

use crate::crd::{Database, DatabaseServer};
use crate::engine::mongodb::MongoClientCache;
use crate::engine::postgres::PoolCache;
use crate::error::Error;
use crate::image::ImageRepositories;
use crate::metrics::Metrics;
use cluster_view::ClusterView;

pub use server_access::server_engine;

/// How the controllers run.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// Watch `Database`s in this namespace only (all namespaces when `None`).
    pub namespace: Option<String>,
    /// Reconcile only `DatabaseServer`s matching this label selector.
    pub server_selector: Option<String>,
    /// The operator's own namespace: server NetworkPolicies admit it.
    pub operator_namespace: String,
    /// Reconciles run at once, per controller.
    pub concurrency: u16,
    /// How often a healthy object is checked again for drift.
    pub drift_interval: Duration,
    /// Longest wait between retries of a failing object.
    pub max_backoff: Duration,
    /// Connections per server admin pool: the most admin statements (`CREATE DATABASE`
    /// among them) running at once on one server.
    pub admin_pool_size: u32,
    /// This replica's name in Events.
    pub instance: Option<String>,
    /// Repositories of the images servers run when their spec names no image.
    pub images: ImageRepositories,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            namespace: None,
            server_selector: None,
            operator_namespace: "silo-system".to_string(),
            concurrency: 16,
            drift_interval: Duration::from_secs(300),
            max_backoff: Duration::from_secs(300),
            admin_pool_size: 3,
            instance: None,
            images: ImageRepositories::default(),
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Settings.
    pub config: OperatorConfig,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// PostgreSQL admin connection pools, one per server login.
    pub pools: PoolCache,
    /// MongoDB admin clients, one per server login.
    pub mongo_clients: MongoClientCache,
    /// Watched copies of objects the reconcilers read, and what this process last wrote.
    pub caches: Caches,
    recorder: Recorder,
    reporter: Reporter,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context for `client` and `config`.
    pub fn new(client: Client, config: OperatorConfig, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: "silo-operator".to_string(),
            instance: config.instance.clone(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter.clone()),
            reporter,
            client,
            config,
            metrics,
            pools: PoolCache::default(),
            mongo_clients: MongoClientCache::default(),
            caches: Caches::default(),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The same context reading watched objects from `caches`.
    pub fn with_caches(mut self, caches: Caches) -> Self {
        self.caches = caches;
        self
    }

    /// Publishes an Event about `reference`; a failure to publish is logged, not fatal.
    pub async fn publish(
        &self,
        reference: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        };
        let cluster_scoped = reference
            .namespace
            .as_deref()
            .unwrap_or_default()
            .is_empty();
        let published = if cluster_scoped {
            let event = events::cluster_scoped_event(
                &self.reporter,
                &event,
                reference,
                k8s_openapi::jiff::Timestamp::now(),
            );
            Api::<K8sEvent>::namespaced(
                self.client.clone(),
                events::CLUSTER_SCOPED_EVENTS_NAMESPACE,
            )
            .create(&Default::default(), &event)
            .await
            .map(drop)
        } else {
            self.recorder.publish(&event, reference).await
        };
        if let Err(e) = published {
            tracing::warn!(
                reason,
                "cannot publish event: {}",
                crate::error::describe_kube_error(&e)
            );
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets the failure streak of `key` after a success.
    pub fn succeeded(&self, key: &str) {
        self.failures().remove(key);
    }

    /// Records a finished reconcile of `key` by `controller` that began at `started`: its
    /// metrics, and on success the end of its failure streak.
    pub fn finished(
        &self,
        controller: &'static str,
        key: &str,
        started: std::time::Instant,
        result: &Result<Action, Error>,
    ) {
        self.metrics.reconciled(
            controller,
            started.elapsed(),
            result.as_ref().err().map(Error::reason),
        );
        if result.is_ok() {
            self.succeeded(key);
        }
    }

    /// Forgets everything kept about `key`, whose object is gone: its failure streak, what
    /// was written for it, its phase, and the admin connections of the server it names.
    pub fn forget(&self, key: &str) {
        self.retain_objects(|kept| kept != key);
    }

    /// Keeps per-object state only for the objects `keep` says yes to.
    pub fn retain_objects(&self, keep: impl Fn(&str) -> bool) {
        self.failures().retain(|key, _| keep(key));
        self.caches.retain(&keep);
        self.metrics.retain_phases(&keep);
        self.pools.retain(&keep);
        self.mongo_clients.retain(&keep);
        self.count_admin_connections();
    }

    /// Refreshes the gauge of kept admin connections.
    pub fn count_admin_connections(&self) {
        self.metrics
            .set_admin_connections("postgres", self.pools.len());
        self.metrics
            .set_admin_connections("mongodb", self.mongo_clients.len());
    }

    /// The wait before retrying `key` after another failure: doubling from 1s, capped.
    pub fn next_backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures();
        let streak = failures.entry(key.to_string()).or_insert(0);
        *streak = streak.saturating_add(1);
        backoff_for(*streak, self.config.max_backoff)
    }
}

/// Exponential backoff for the `streak`-th consecutive failure, capped at `max`.
pub fn backoff_for(streak: u32, max: Duration) -> Duration {
    let exponent = streak.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exponent).min(max)
}

/// A stable key for per-object bookkeeping.
pub fn object_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Invalid specs wait for the user to change them; everything else backs off per object.
fn error_policy<K>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()>,
{
    if error.needs_spec_change() {
        Action::await_change()
    } else {
        Action::requeue(ctx.next_backoff(&object_key(obj.as_ref())))
    }
}

/// Runs the controllers until aborted.
pub async fn run_controllers(client: Client, config: OperatorConfig) {
    let (_keep_running, shutdown) = watch::channel(false);
    run_controllers_with(client, config, Arc::new(Metrics::default()), shutdown).await;
}

/// Runs the controllers until `shutdown` turns true, then lets running reconciles finish.
pub async fn run_controllers_with(
    client: Client,
    config: OperatorConfig,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) {
    // Watched copies: reconciles read these instead of asking the API server again.
    let (database_store, database_writer) = reflector::store();
    let (server_store, server_writer) = reflector::store();
    let (secret_store, secret_writer) = reflector::store();
    let (view, cluster_events) = ClusterView::watch(&client);
    let caches = Caches::new(server_store.clone(), secret_store).with_cluster(view.clone());
    let ctx = Arc::new(Context::new(client, config, metrics).with_caches(caches));
    let (policy_tx, policy_namespaces) = mpsc::unbounded_channel();
    let (placement_tx, placement_rx) = mpsc::unbounded_channel();
    let databases = DatabaseWatches {
        store: database_store,
        writer: database_writer,
        secrets: secret_writer,
        servers: server_store.clone(),
        placements: placement_tx,
        policy_namespaces,
    };
    let database_controller = database_controller(ctx.clone(), databases, shutdown.clone());
    let server_controller = server_controller(
        ctx.clone(),
        (server_store, server_writer),
        placement_rx,
        shutdown.clone(),
    );
    let service_controller = service::run(ctx, (view, cluster_events), policy_tx, shutdown);
    futures::join!(database_controller, server_controller, service_controller);
}

/// What the Database controller watches with, and whom it tells of placement changes.
struct DatabaseWatches {
    store: Store<Database>,
    writer: reflector::store::Writer<Database>,
    secrets: reflector::store::Writer<Secret>,
    servers: Store<DatabaseServer>,
    placements: mpsc::UnboundedSender<ObjectRef<DatabaseServer>>,
    /// Namespaces where a NetworkPolicy changed: their Databases' isolation is measured again.
    policy_namespaces: mpsc::UnboundedReceiver<String>,
}

/// The Database controller. A Database is reconciled when its spec, annotations, finalizers or
/// deletion change, not on the operator's own status writes. A server hears of a Database only
/// when its placement or owner changes, or it goes away (a shared server's NetworkPolicy admits
/// the owners of the databases on it); those events come from the same watch: one watch of
/// Databases, not two.
async fn database_controller(
    ctx: Arc<Context>,
    watches: DatabaseWatches,
    shutdown: watch::Receiver<bool>,
) {
    let client = ctx.client.clone();
    let (databases, secrets, statefulsets) = match &ctx.config.namespace {
        Some(ns) => (
            Api::<Database>::namespaced(client.clone(), ns),
            Api::<Secret>::namespaced(client.clone(), ns),
            Api::<StatefulSet>::namespaced(client, ns),
        ),
        None => (
            Api::<Database>::all(client.clone()),
            Api::<Secret>::all(client.clone()),
            Api::<StatefulSet>::all(client),
        ),
    };
    let DatabaseWatches {
        store,
        writer,
        secrets: secret_writer,
        servers,
        placements: placement_tx,
        policy_namespaces,
    } = watches;
    let remeasured = databases_in(store.clone(), policy_namespaces);
    let mut placements = triggers::PlacementFilter::default();
    let (gone_ctx, gone_store) = (ctx.clone(), store.clone());
    let database_stream = watcher(databases, watcher::Config::default())
        .default_backoff()
        .modify(triggers::trim)
        .reflect(writer)
        .inspect_ok(move |event| gone::forget_gone(&gone_ctx, &gone_store, event))
        .inspect_ok(move |event| {
            if let Some(server) = placements
                .admit(event)
                .and_then(|db| server_to_tell(&servers, db))
            {
                let _ = placement_tx.send(server);
            }
        })
        .applied_objects()
        .predicate_filter(triggers::database_intent, Default::default());
    // The Secret this process just wrote comes back as a watch event: not a reason to run again.
    let own_writes = ctx.clone();
    let secret_stream = watcher(secrets, owned_objects())
        .default_backoff()
        .modify(triggers::trim)
        .reflect(secret_writer)
        .touched_objects()
        .try_filter(move |secret| std::future::ready(!own_writes.caches.is_known_version(secret)));
    let concurrency = ControllerConfig::default().concurrency(ctx.config.concurrency);
    Controller::for_stream(database_stream, store)
        .owns_stream(secret_stream)
        .owns(statefulsets, owned_objects())
        .reconcile_on(remeasured)
        .with_config(concurrency)
        .graceful_shutdown_on(wait_for(shutdown))
        .run(database::reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "database reconcile did not finish");
            }
        })
        .await;
}

/// The Databases of each namespace `namespaces` names, as they come.
fn databases_in(
    store: Store<Database>,
    namespaces: mpsc::UnboundedReceiver<String>,
) -> impl futures::Stream<Item = ObjectRef<Database>> + Send {
    tokio_stream_of(namespaces).flat_map(move |namespace| {
        let refs: Vec<ObjectRef<Database>> = store
            .state()
            .iter()
            .filter(|db| db.namespace().as_deref() == Some(namespace.as_str()))
            .map(|db| ObjectRef::from_obj(db.as_ref()))
            .collect();
        futures::stream::iter(refs)
    })
}

fn tokio_stream_of<T: Send + 'static>(
    mut receiver: mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// The DatabaseServer controller: its servers (those matching `--server-selector`), their
/// StatefulSets, and the placement changes the Database watch tells of.
async fn server_controller(
    ctx: Arc<Context>,
    (store, writer): (
        Store<DatabaseServer>,
        reflector::store::Writer<DatabaseServer>,
    ),
    mut placements: mpsc::UnboundedReceiver<ObjectRef<DatabaseServer>>,
    shutdown: watch::Receiver<bool>,
) {
    let mut server_watch = watcher::Config::default();
    if let Some(selector) = &ctx.config.server_selector {
        server_watch = server_watch.labels(selector);
    }
    let (gone_ctx, gone_store) = (ctx.clone(), store.clone());
    let server_stream = watcher(Api::<DatabaseServer>::all(ctx.client.clone()), server_watch)
        .default_backoff()
        .modify(triggers::trim)
        .reflect(writer)
        .inspect_ok(move |event| gone::forget_gone(&gone_ctx, &gone_store, event))
        .applied_objects()
        .predicate_filter(triggers::server_intent, Default::default());
    let concurrency = ControllerConfig::default().concurrency(ctx.config.concurrency);
    Controller::for_stream(server_stream, store)
        .owns(Api::<StatefulSet>::all(ctx.client.clone()), owned_objects())
        .reconcile_on(futures::stream::poll_fn(move |cx| placements.poll_recv(cx)))
        .with_config(concurrency)
        .graceful_shutdown_on(wait_for(shutdown))
        .run(server::reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "server reconcile did not finish");
            }
        })
        .await;
}

/// The objects the operator made (it labels every one).
fn owned_objects() -> watcher::Config {
    watcher::Config::default().labels("app.kubernetes.io/managed-by=silo")
}

/// The server a placement change of `db` concerns, if it wants to hear of it. An external
/// server has no NetworkPolicy to update; it only needs to hear of its Databases while it is
/// being deleted (it waits for them to go first).
fn server_to_tell(
    servers: &Store<DatabaseServer>,
    db: &Database,
) -> Option<ObjectRef<DatabaseServer>> {
    let name = db.spec.server.server_ref.as_deref()?;
    let server = servers.get(&ObjectRef::new(name));
    let interested = server.is_none_or(|server| {
        server.spec.managed.is_some() || server.metadata.deletion_timestamp.is_some()
    });
    interested.then(|| ObjectRef::new(name))
}

async fn wait_for(mut shutdown: watch::Receiver<bool>) {
    // A dropped sender means nobody can ask for shutdown any more: run until aborted.
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_failure_and_is_capped() {
        let max = Duration::from_secs(300);
        assert_eq!(backoff_for(1, max), Duration::from_secs(1));
        assert_eq!(backoff_for(2, max), Duration::from_secs(2));
        assert_eq!(backoff_for(5, max), Duration::from_secs(16));
        assert_eq!(backoff_for(40, max), max);
    }
}

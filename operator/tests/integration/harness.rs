//! A controller running in-process against one test namespace, with its own external
//! `DatabaseServer` on the local PostgreSQL.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use silo_operator::OperatorConfig;
use silo_operator::crd::{
    Database, DatabaseServer, DatabaseSpec, DeletionPolicy, Engine, ManagedServerSpec,
    ServerBinding, StorageSpec,
};
use silo_operator::image::ImageRepositories;
use silo_operator::metrics::Metrics;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::task::JoinHandle;

/// Upper bound of every wait in these tests.
pub const WAIT_LIMIT: Duration = Duration::from_secs(90);

/// Polls `check` until it returns `Some`, failing the test after [`WAIT_LIMIT`].
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(WAIT_LIMIT, what, check).await
}

/// Polls `check` until it returns `Some`, failing the test after `limit`.
pub async fn eventually_within<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the `Ready` condition of DatabaseServer `name` is False with `reason`; returns it.
pub async fn server_not_ready(
    client: &Client,
    name: &str,
    reason: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    let servers = Api::<DatabaseServer>::all(client.clone());
    eventually(
        &format!("DatabaseServer {name} to be Ready=False/{reason}"),
        || {
            let servers = servers.clone();
            async move {
                servers
                    .get(name)
                    .await
                    .ok()?
                    .status?
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "Ready" && c.status == "False" && c.reason == reason)
            }
        },
    )
    .await
}

/// Installs the generated CRDs by server-side apply (idempotent; parallel tests share them).
pub async fn install_crds(client: &Client) {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    for crd in silo_operator::crd::all_crds() {
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply("silo-operator-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot install CRD {name}: {e}"));
        eventually(&format!("CRD {name} to be established"), || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let crd = api.get(&name).await.ok()?;
                crd.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            }
        })
        .await;
    }
}

/// One test's world: a namespace, a running controller scoped to it, an external server.
pub struct Harness {
    pub client: Client,
    pub namespace: silo_testenv::TestNamespace,
    pub server: String,
    controller: Option<JoinHandle<()>>,
    metrics: Arc<Metrics>,
    shutdown: tokio::sync::watch::Sender<bool>,
    finished: bool,
    images: ImageRepositories,
}

impl Harness {
    /// Creates the namespace, the admin Secret and external `DatabaseServer`, starts the controller.
    pub async fn start(prefix: &str) -> Self {
        let client = silo_testenv::kube_client().await;
        install_crds(&client).await;
        let namespace = silo_testenv::TestNamespace::create(&client, prefix).await;
        let server = format!("ext-{}", namespace.name());
        let mut harness = Self {
            client,
            namespace,
            server,
            controller: None,
            metrics: Arc::new(Metrics::default()),
            shutdown: tokio::sync::watch::channel(false).0,
            finished: false,
            images: ImageRepositories::default(),
        };
        harness.create_external_server().await;
        harness.start_controller();
        harness
    }

    /// The test namespace's name.
    pub fn ns(&self) -> &str {
        self.namespace.name()
    }

    /// The controller configuration of this test.
    pub fn config(&self) -> OperatorConfig {
        OperatorConfig {
            namespace: Some(self.ns().to_string()),
            server_selector: Some(format!("silo.dev/test-scope={}", self.ns())),
            operator_namespace: self.ns().to_string(),
            concurrency: 8,
            images: self.images.clone(),
            ..OperatorConfig::default()
        }
    }

    /// Restarts the controller so that servers run the images `tests/images/build` made for
    /// the local node instead of the public ones (which cannot be pulled here).
    pub fn use_local_images(&mut self) {
        self.images.postgres = silo_testenv::image("SILO_POSTGRES_IMAGE_REPOSITORY");
        self.start_controller();
    }

    /// Starts (or restarts) the in-process controller.
    pub fn start_controller(&mut self) {
        let client = self.client.clone();
        self.start_controller_as(client);
    }

    /// Starts (or restarts) the in-process controller with `client` (e.g. an impersonating one).
    pub fn start_controller_as(&mut self, client: Client) {
        self.stop_controller();
        self.controller = Some(tokio::spawn(silo_operator::run_controllers_with(
            client,
            self.config(),
            self.metrics.clone(),
            self.shutdown.subscribe(),
        )));
    }

    /// Database reconciles run so far by this test's controllers.
    pub fn database_reconciles(&self) -> u64 {
        self.metrics.reconciles("database")
    }

    /// The value of the metric sample `sample` (e.g. `silo_databases{phase="Ready"}`) of this
    /// test's controllers, if exported.
    pub fn metric(&self, sample: &str) -> Option<f64> {
        let text = self.metrics.encode().unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
    }

    /// Reconciles run so far by this test's `controller` (`database`, `service`, ...).
    pub fn reconciles(&self, controller: &'static str) -> u64 {
        self.metrics.reconciles(controller)
    }

    /// Stops the controller abruptly, as a killed process would.
    pub fn stop_controller(&mut self) {
        if let Some(handle) = self.controller.take() {
            handle.abort();
        }
    }

    /// Whether the controller task is still running (it must never exit on its own).
    pub fn controller_running(&self) -> bool {
        self.controller.as_ref().is_some_and(|h| !h.is_finished())
    }

    async fn create_external_server(&self) {
        let admin = PgConnectOptions::from_str(&silo_testenv::postgres_admin_url())
            .expect("admin URL parses");
        let url = url::Url::parse(&silo_testenv::postgres_admin_url()).expect("admin URL parses");
        let password = percent_encoding::percent_decode_str(url.password().unwrap_or_default())
            .decode_utf8_lossy()
            .to_string();
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": { "name": "pg-admin", "namespace": self.ns() },
            "stringData": { "username": admin.get_username(), "password": password },
        }))
        .unwrap();
        Api::<Secret>::namespaced(self.client.clone(), self.ns())
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
        let server: DatabaseServer = serde_json::from_value(json!({
            "apiVersion": "silo.dev/v1alpha1",
            "kind": "DatabaseServer",
            "metadata": {
                "name": self.server,
                "labels": { "silo.dev/test-scope": self.ns() },
            },
            "spec": {
                "engine": "postgres",
                "external": {
                    "host": admin.get_host(),
                    "port": admin.get_port(),
                    "adminSecretRef": { "name": "pg-admin", "namespace": self.ns() },
                    "tls": { "mode": "disable" },
                },
            },
        }))
        .unwrap();
        Api::<DatabaseServer>::all(self.client.clone())
            .create(&PostParams::default(), &server)
            .await
            .unwrap();
    }

    /// The `Database` API of the test namespace.
    pub fn databases(&self) -> Api<Database> {
        Api::namespaced(self.client.clone(), self.ns())
    }

    /// Creates `db` in the test namespace.
    pub async fn create(&self, db: &Database) -> Database {
        self.databases()
            .create(&PostParams::default(), db)
            .await
            .unwrap_or_else(|e| panic!("cannot create Database {}: {e}", db.name_any()))
    }

    /// Creates Database `name`, owned by the service `name`, on the harness's shared server.
    pub async fn create_shared(&self, name: &str) -> Database {
        self.create(
            &DatabaseFixture::shared_on(&self.server)
                .owner(name)
                .build(name),
        )
        .await
    }

    /// Waits until condition `type_` of Database `name` has `status`; returns the Database.
    pub async fn wait_condition(&self, name: &str, type_: &str, status: &str) -> Database {
        let api = self.databases();
        eventually(&format!("{name} to have {type_}={status}"), || {
            let api = api.clone();
            async move {
                let db = api.get(name).await.ok()?;
                db.status
                    .as_ref()?
                    .conditions
                    .iter()
                    .any(|c| c.type_ == type_ && c.status == status)
                    .then_some(db)
            }
        })
        .await
    }

    /// Waits until Database `name` is Ready.
    pub async fn wait_ready(&self, name: &str) -> Database {
        self.wait_condition(name, "Ready", "True").await
    }

    /// The string data of Secret `name` in the test namespace.
    pub async fn secret(&self, name: &str) -> std::collections::BTreeMap<String, String> {
        let secret = Api::<Secret>::namespaced(self.client.clone(), self.ns())
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("Secret {name}: {e}"));
        secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
            .collect()
    }

    /// Deletes Database `name` and waits until it is gone (its finalizer released).
    pub async fn delete_and_wait(&self, name: &str) {
        let api = self.databases();
        api.delete(name, &DeleteParams::default()).await.unwrap();
        eventually(&format!("Database {name} to be deleted"), || {
            let api = api.clone();
            async move { api.get_opt(name).await.ok()?.is_none().then_some(()) }
        })
        .await;
    }

    /// Deletes every Database of the test (dropping what they created) and the server, then
    /// stops the controller.
    pub async fn finish(mut self) {
        let api = self.databases();
        for db in api.list(&Default::default()).await.unwrap() {
            self.delete_and_wait(&db.name_any()).await;
        }
        let _ = Api::<DatabaseServer>::all(self.client.clone())
            .delete(&self.server, &DeleteParams::default())
            .await;
        // The controller releases the server's finalizer once no Database uses it.
        self.wait_server_gone(&self.server).await;
        self.stop_controller();
        self.finished = true;
    }

    /// Waits until DatabaseServer `name` no longer exists.
    pub async fn wait_server_gone(&self, name: &str) {
        let servers = Api::<DatabaseServer>::all(self.client.clone());
        eventually(&format!("DatabaseServer {name} to be deleted"), || {
            let servers = servers.clone();
            async move { servers.get_opt(name).await.ok()?.is_none().then_some(()) }
        })
        .await;
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop_controller();
        if self.finished {
            return;
        }
        // After a failed assertion too: the cluster-scoped server outlives the namespace. A
        // fresh client, because this test's runtime (which drives the shared client's
        // connection) is blocked inside this very drop.
        let server = self.server.clone();
        let namespace = self.ns().to_string();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                let client = silo_testenv::kube_client().await;
                // Databases left with their finalizer would keep the namespace terminating.
                let databases = Api::<Database>::namespaced(client.clone(), &namespace);
                for db in databases.list(&Default::default()).await.ok()? {
                    let _ = databases
                        .patch(
                            &db.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
                        )
                        .await;
                }
                let servers = Api::<DatabaseServer>::all(client);
                // No controller runs any more to release the server's finalizer.
                let _ = servers
                    .patch(
                        &server,
                        &PatchParams::default(),
                        &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
                    )
                    .await;
                servers.delete(&server, &DeleteParams::default()).await.ok()
            })
        })
        .join();
    }
}

/// A `Database` under construction: `DatabaseFixture::shared_on("pg").owner("x").build("name")`.
pub struct DatabaseFixture {
    spec: DatabaseSpec,
}

impl DatabaseFixture {
    /// A PostgreSQL database on the shared server `server`, deleted with the resource.
    pub fn shared_on(server: &str) -> Self {
        Self {
            spec: DatabaseSpec {
                engine: Engine::Postgres,
                owner: "service".into(),
                server: ServerBinding {
                    server_ref: Some(server.into()),
                    dedicated: None,
                },
                deletion_policy: DeletionPolicy::Delete,
                credentials: Default::default(),
            },
        }
    }

    /// A database on a server of its own.
    pub fn dedicated(engine: Engine) -> Self {
        let mut fixture = Self::shared_on("unused");
        fixture.spec.engine = engine;
        fixture.spec.server = ServerBinding {
            server_ref: None,
            dedicated: Some(ManagedServerSpec {
                storage: StorageSpec {
                    size: "1Gi".into(),
                    storage_class_name: None,
                },
                ..Default::default()
            }),
        };
        fixture
    }

    /// Sets the owning service.
    pub fn owner(mut self, owner: &str) -> Self {
        self.spec.owner = owner.into();
        self
    }

    /// Sets the deletion policy.
    pub fn deletion(mut self, policy: DeletionPolicy) -> Self {
        self.spec.deletion_policy = policy;
        self
    }

    /// Sets the engine.
    pub fn engine(mut self, engine: Engine) -> Self {
        self.spec.engine = engine;
        self
    }

    /// Gives direct access to the spec for unusual cases.
    pub fn with(mut self, change: impl FnOnce(&mut DatabaseSpec)) -> Self {
        change(&mut self.spec);
        self
    }

    /// The `Database` named `name`.
    pub fn build(self, name: &str) -> Database {
        Database::new(name, self.spec)
    }
}

/// A superuser connection to the maintenance database of the local PostgreSQL.
pub async fn admin_connection() -> PgConnection {
    PgConnection::connect(&silo_testenv::postgres_admin_url())
        .await
        .expect("admin connects")
}

/// Connects to `database` with the login in `secret` (its `uri`, database swapped).
pub async fn connect_as(
    secret: &std::collections::BTreeMap<String, String>,
    database: &str,
) -> Result<PgConnection, sqlx::Error> {
    let options = PgConnectOptions::from_str(&secret["uri"])?.database(database);
    PgConnection::connect_with(&options).await
}

/// Number of roles named `role` and databases named `database` on the local server.
pub async fn count_on_server(role: &str, database: &str) -> (i64, i64) {
    let mut admin = admin_connection().await;
    let roles: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname = $1")
        .bind(role)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    let databases: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(database)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    (roles, databases)
}

/// Touches an annotation so that the controller reconciles `name` again.
pub async fn nudge(api: &Api<Database>, name: &str, annotation: &str, value: &str) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "annotations": { annotation: value } } })),
    )
    .await
    .unwrap();
}

/// The Events `kubectl describe` shows for the object `kind`/`name` (uid `uid`) in `namespace`
/// (`""` for a cluster-scoped one): its query, core/v1 Events of every namespace selected by
/// `involvedObject` name, namespace, kind and uid.
pub async fn described_events(
    client: &Client,
    kind: &str,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Vec<k8s_openapi::api::core::v1::Event> {
    let selector = format!(
        "involvedObject.name={name},involvedObject.namespace={namespace},involvedObject.kind={kind},involvedObject.uid={uid}"
    );
    let events = if namespace.is_empty() {
        Api::<k8s_openapi::api::core::v1::Event>::all(client.clone())
    } else {
        Api::namespaced(client.clone(), namespace)
    };
    events
        .list(&kube::api::ListParams::default().fields(&selector))
        .await
        .unwrap_or_else(|e| panic!("listing Events with {selector}: {e}"))
        .items
}

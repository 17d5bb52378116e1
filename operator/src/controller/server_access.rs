//! Dereferencing a server: its admin login, its workload (for servers the operator runs), and an
//! engine handle to provision with.

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::Context;
use crate::apply::{apply, create_if_absent};
use crate::build::{
    ADMIN_PASSWORD_KEY, ADMIN_USERNAME_KEY, AllowedClient, Workload, admin_secret, network_policy,
    service, statefulset,
};
use crate::crd::{Engine, TlsMode};
use crate::engine::mongodb::MongoEngine;
use crate::engine::postgres::PostgresEngine;
use crate::engine::{AdminConnection, AnyEngine};
use crate::error::Error;
use crate::password::Password;
use crate::validate::{self, WorkloadField};

/// Reads `username` and `password` from the admin Secret `namespace/name`.
pub async fn read_admin_login(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<(String, Password), Error> {
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), namespace)
        .get_opt(name)
        .await?
        .ok_or_else(|| {
            Error::AdminSecret(format!("admin Secret {namespace}/{name} does not exist"))
        })?;
    let value = |key: &str| {
        secret_value(&secret, key).ok_or_else(|| {
            Error::AdminSecret(format!(
                "admin Secret {namespace}/{name} has no key {key:?}"
            ))
        })
    };
    Ok((
        value(ADMIN_USERNAME_KEY)?,
        Password::from_secret_value(value(ADMIN_PASSWORD_KEY)?),
    ))
}

/// The UTF-8 value of `key` in `secret` (from `data`, or `stringData` when not yet converted).
pub fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .and_then(|ByteString(bytes)| String::from_utf8(bytes.clone()).ok())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|data| data.get(key).cloned())
        })
        .filter(|value| !value.is_empty())
}

/// An engine handle for the server named by the object `server_key` (a `DatabaseServer`, or
/// the `Database` of a dedicated server), reached as `admin`.
pub fn server_engine(
    ctx: &Context,
    server_key: &str,
    engine: Engine,
    admin: AdminConnection,
) -> Result<AnyEngine, Error> {
    let engine = match engine {
        Engine::Postgres => {
            let pool = ctx
                .pools
                .pool(server_key, &admin, ctx.config.admin_pool_size);
            AnyEngine::Postgres(PostgresEngine::new(admin, pool))
        }
        Engine::Mongodb => {
            let client = ctx.mongo_clients.client(server_key, &admin)?;
            AnyEngine::Mongodb(MongoEngine::new(admin, client))
        }
    };
    ctx.count_admin_connections();
    Ok(engine)
}

/// Applies the objects of a server the operator runs: admin Secret (created once), StatefulSet,
/// headless Service and NetworkPolicy admitting `clients` and the operator. A change the existing
/// StatefulSet cannot take (its volume) is an invalid spec, not an apply retried forever.
pub async fn ensure_workload(
    ctx: &Context,
    workload: &Workload,
    clients: &[AllowedClient],
) -> Result<(), Error> {
    if let Some(existing) = Api::<StatefulSet>::namespaced(ctx.client.clone(), &workload.namespace)
        .get_opt(&workload.name)
        .await?
    {
        validate::storage_unchanged(&existing, &workload.spec, workload_field(workload))?;
    }
    let keyfile = Password::generate();
    let secret = admin_secret(workload, Password::generate().expose(), keyfile.expose())?;
    create_if_absent(&ctx.client, &secret).await?;
    apply(&ctx.client, &statefulset(workload)?).await?;
    apply(&ctx.client, &service(workload)?).await?;
    apply(
        &ctx.client,
        &network_policy(workload, clients, &ctx.config.operator_namespace)?,
    )
    .await?;
    Ok(())
}

/// Where the settings of `workload` come from: a `Database` owns a dedicated server.
fn workload_field(workload: &Workload) -> WorkloadField {
    if workload.owner.kind == "Database" {
        WorkloadField::Dedicated
    } else {
        WorkloadField::Managed
    }
}

/// `None` when the workload's pod is ready, else what it is waiting for.
pub async fn workload_waiting(ctx: &Context, workload: &Workload) -> Result<Option<String>, Error> {
    let sts = Api::<StatefulSet>::namespaced(ctx.client.clone(), &workload.namespace)
        .get_opt(&workload.name)
        .await?;
    let ready = sts
        .as_ref()
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    Ok(if ready >= 1 {
        None
    } else {
        Some(format!(
            "StatefulSet {}/{} has {ready}/1 ready replicas",
            workload.namespace, workload.name
        ))
    })
}

/// Admin connection to a running workload.
pub async fn workload_admin(ctx: &Context, workload: &Workload) -> Result<AdminConnection, Error> {
    let (username, password) =
        read_admin_login(ctx, &workload.namespace, &workload.admin_secret_name()).await?;
    Ok(AdminConnection {
        host: workload.host(),
        port: workload.port(),
        username,
        password,
        // Traffic stays inside the cluster, restricted by the workload's NetworkPolicy.
        tls: TlsMode::Disable,
    })
}

/// For a MongoDB workload: initiates its replica set (a no-op once done).
pub async fn prepare_workload(engine: &AnyEngine, workload: &Workload) -> Result<(), Error> {
    if let AnyEngine::Mongodb(mongo) = engine {
        mongo.initiate_replica_set(&workload.host()).await?;
    }
    Ok(())
}

//! Applying what a Service runs as, never taking over an object that belongs to something
//! else.

use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ServiceContext, ServiceError};
use crate::apply::apply;
use crate::build::microservice::{
    Microservice, cluster_ip_service, deployment, service_account, service_network_policy,
};
use crate::crd::Database;

/// Applies `desired` unless an object of its name exists that this Service does not control;
/// returns the object as the API server has it now.
pub async fn apply_owned<K>(
    ctx: &ServiceContext,
    store: &Store<K>,
    desired: &K,
) -> Result<K, ServiceError>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let namespace = desired.namespace().unwrap_or_default();
    let name = desired.name_any();
    let existing = match store.get(&ObjectRef::new(&name).within(&namespace)) {
        Some(found) => Some(found),
        // Not watched (yet): only a read tells whether somebody else's object is in the way.
        None => Api::<K>::namespaced(ctx.base.client.clone(), &namespace)
            .get_opt(&name)
            .await?
            .map(Arc::new),
    };
    let owner = desired
        .owner_references()
        .first()
        .map(|r| r.uid.clone())
        .unwrap_or_default();
    if let Some(existing) = existing
        && !controlled_by(existing.as_ref(), &owner)
    {
        return Err(ServiceError::NameConflict(format!(
            "{} {namespace}/{name} already exists and does not belong to this Service; delete or rename it",
            K::kind(&())
        )));
    }
    Ok(apply(&ctx.base.client, desired).await?)
}

fn controlled_by<K: Resource>(object: &K, uid: &str) -> bool {
    object
        .owner_references()
        .iter()
        .any(|r| r.controller == Some(true) && r.uid == uid)
}

/// Applies the Database a template asks for.
pub async fn apply_database(
    ctx: &ServiceContext,
    desired: &Database,
) -> Result<Database, ServiceError> {
    apply_owned(ctx, &ctx.stores.databases, desired).await
}

/// Applies the ServiceAccount, ClusterIP Service and NetworkPolicy of `service`, then its
/// Deployment if it can run yet; returns the Deployment as it is now.
pub async fn apply_workload(
    ctx: &ServiceContext,
    service: &Microservice,
) -> Result<Option<Deployment>, ServiceError> {
    let stores = &ctx.stores;
    apply_owned(ctx, &stores.accounts, &service_account(service)?).await?;
    apply_owned(ctx, &stores.kube_services, &cluster_ip_service(service)?).await?;
    // The fence goes up before the pods exist.
    apply_owned(ctx, &stores.policies, &service_network_policy(service)?).await?;
    if !service.can_deploy() {
        return Ok(None);
    }
    let applied = apply_owned(ctx, &stores.deployments, &deployment(service)?).await?;
    Ok(Some(applied))
}

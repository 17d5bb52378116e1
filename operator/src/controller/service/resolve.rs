//! Looking up what a valid `Service` names: its Database, its dependencies and its callers.
//! Nothing is written here, so a refusal leaves no partial objects behind.

use std::sync::Arc;

use futures::FutureExt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};

use super::graph::{callers_of, cycle_through, namespace_edges};
use super::validate::{DatabaseChoice, ValidService};
use super::{ServiceContext, ServiceError};
use crate::build::AllowedClient;
use crate::build::microservice::{Dependency, owned_database, owned_database_name};
use crate::crd::{Database, Service};

/// The Database a Service uses.
#[derive(Clone, Debug)]
pub struct DatabaseUse {
    /// Its name.
    pub name: String,
    /// The Database as it is now (`None`: the template's is not created yet).
    pub current: Option<Arc<Database>>,
    /// What to apply, for a Database made from the template.
    pub desired: Option<Database>,
}

/// What a valid Service names, looked up.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The Service as controller owner of what is built for it.
    pub owner: OwnerReference,
    /// Its database.
    pub database: Option<DatabaseUse>,
    /// Its dependencies with their ports.
    pub dependencies: Vec<Dependency>,
    /// The services that call it.
    pub callers: Vec<AllowedClient>,
}

/// Looks up everything `valid` names; fails before anything is written.
pub async fn resolve(
    service: &Service,
    valid: &ValidService,
    ctx: &ServiceContext,
) -> Result<Resolved, ServiceError> {
    let namespace = service.namespace().unwrap_or_default();
    let name = service.name_any();
    let all = ctx.stores.services.state();
    let edges = namespace_edges(&namespace, all.iter().map(Arc::as_ref));
    if let Some(cycle) = cycle_through(&name, &edges) {
        return Err(ServiceError::InvalidSpec(format!(
            "spec.dependsOn: a dependency cycle within namespace {namespace}: {}; remove one of these dependencies",
            cycle.join(" → ")
        )));
    }
    let owner = service
        .controller_owner_ref(&())
        .ok_or_else(|| ServiceError::InvalidSpec("the Service has no uid yet".into()))?;
    let database = match &valid.database {
        None => None,
        Some(choice) => Some(database_use(service, choice, &owner, ctx).await?),
    };
    let mut dependencies = Vec::new();
    for (i, (dep_namespace, dep_name)) in valid.dependencies.iter().enumerate() {
        dependencies.push(dependency(i, dep_namespace, dep_name, ctx).await?);
    }
    let callers = callers_of(&namespace, &name, all.iter().map(Arc::as_ref))
        .into_iter()
        .map(|caller| AllowedClient {
            namespace: caller.namespace().unwrap_or_default(),
            owner: caller.name_any(),
        })
        .collect();
    Ok(Resolved {
        owner,
        database,
        dependencies,
        callers,
    })
}

async fn database_use(
    service: &Service,
    choice: &DatabaseChoice,
    owner: &OwnerReference,
    ctx: &ServiceContext,
) -> Result<DatabaseUse, ServiceError> {
    let namespace = service.namespace().unwrap_or_default();
    let service_name = service.name_any();
    match choice {
        DatabaseChoice::Ref(name) => {
            let db = watched_or_read::<Database>(ctx, &namespace, name)
                .await?
                .ok_or_else(|| {
                    ServiceError::DatabaseNotFound(format!(
                        "spec.database.ref: Database {name} does not exist in namespace {namespace}"
                    ))
                })?;
            if db.spec.owner != service_name {
                return Err(ServiceError::InvalidSpec(format!(
                    "spec.database.ref: Database {name} belongs to service {} (its spec.owner), not to {service_name}; a service may only use a database it owns",
                    db.spec.owner
                )));
            }
            Ok(DatabaseUse {
                name: name.clone(),
                current: Some(db),
                desired: None,
            })
        }
        DatabaseChoice::Template(template) => {
            let desired = owned_database(&service_name, &namespace, owner, template)?;
            let name = owned_database_name(&service_name);
            crate::validate::database(&desired).map_err(|e| template_refusal(&name, &e))?;
            let current = ctx
                .stores
                .databases
                .get(&ObjectRef::new(&name).within(&namespace));
            Ok(DatabaseUse {
                name,
                current,
                desired: Some(desired),
            })
        }
    }
}

/// A refusal of the Database a template describes, naming the template's field.
fn template_refusal(name: &str, error: &crate::error::Error) -> ServiceError {
    let message = error.to_string();
    ServiceError::InvalidSpec(match message.strip_prefix("spec.") {
        Some(field) => format!("spec.database.template.{field}"),
        None => format!("spec.database.template (the Database {name} made from it): {message}"),
    })
}

async fn dependency(
    index: usize,
    namespace: &str,
    name: &str,
    ctx: &ServiceContext,
) -> Result<Dependency, ServiceError> {
    let service = watched_or_read::<Service>(ctx, namespace, name)
        .await?
        .ok_or_else(|| {
            ServiceError::DependencyNotFound(format!(
                "spec.dependsOn[{index}]: Service {namespace}/{name} does not exist (yet); its port is part of this service's environment"
            ))
        })?;
    let port = u16::try_from(service.spec.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            ServiceError::DependencyNotFound(format!(
                "spec.dependsOn[{index}]: Service {namespace}/{name} has an invalid spec.port"
            ))
        })?;
    Ok(Dependency {
        namespace: namespace.to_string(),
        name: name.to_string(),
        port,
    })
}

/// The watched copy of `namespace/name`, else (outside the watched namespace) a read.
async fn watched_or_read<K>(
    ctx: &ServiceContext,
    namespace: &str,
    name: &str,
) -> Result<Option<Arc<K>>, ServiceError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + WatchedIn,
{
    if let Some(found) = K::store(ctx).get(&ObjectRef::new(name).within(namespace)) {
        return Ok(Some(found));
    }
    let watched = ctx
        .base
        .config
        .namespace
        .as_deref()
        .is_none_or(|scope| scope == namespace);
    // A synced watch that does not hold it is the answer; before the first sync, ask.
    let synced = K::store(ctx)
        .wait_until_ready()
        .now_or_never()
        .is_some_and(|ready| ready.is_ok());
    if watched && synced {
        return Ok(None);
    }
    let api = Api::<K>::namespaced(ctx.base.client.clone(), namespace);
    Ok(api.get_opt(name).await?.map(Arc::new))
}

/// A kind the Service controller keeps watched copies of.
pub trait WatchedIn: Resource<DynamicType = ()> + Clone + 'static {
    /// Its store in `ctx`.
    fn store(ctx: &ServiceContext) -> &kube::runtime::reflector::Store<Self>;
}

impl WatchedIn for Database {
    fn store(ctx: &ServiceContext) -> &kube::runtime::reflector::Store<Self> {
        &ctx.stores.databases
    }
}

impl WatchedIn for Service {
    fn store(ctx: &ServiceContext) -> &kube::runtime::reflector::Store<Self> {
        &ctx.stores.services
    }
}

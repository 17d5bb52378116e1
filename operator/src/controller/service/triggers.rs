//! What wakes the reconcile of a `Service`: its own spec, what other Services say about it
//! (`dependsOn`, ports), its Database, and NetworkPolicies that may change who reaches that
//! Database.

use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use super::graph::callers_of;
use crate::build::microservice::owned_database_name;
use crate::crd::{Database, DatabaseServer, Service};

fn hash_of(value: impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// What a reconcile of a `Service` acts on: its spec (generation), deletion and annotations;
/// not the operator's own status writes.
pub fn service_intent(service: &Service) -> Option<u64> {
    Some(hash_of((
        service.meta().generation,
        service.meta().deletion_timestamp.is_some(),
        service.annotations(),
    )))
}

/// What other Services see of a Service: whom it calls, its port, whether it is going away.
fn visible(service: &Service) -> u64 {
    hash_of((
        &service.spec.depends_on,
        service.spec.port,
        service.meta().deletion_timestamp.is_some(),
    ))
}

/// A Service by (namespace, name): ordered, unlike `ObjectRef`.
type Key = (String, String);

fn key_of(service: &Service) -> Key {
    (service.namespace().unwrap_or_default(), service.name_any())
}

fn refs(keys: BTreeSet<Key>) -> Vec<ObjectRef<Service>> {
    keys.into_iter()
        .map(|(namespace, name)| ObjectRef::new(&name).within(&namespace))
        .collect()
}

/// The Services named by `service`'s `dependsOn`.
fn named_by(service: &Service) -> Vec<Key> {
    let namespace = service.namespace().unwrap_or_default();
    service
        .spec
        .depends_on
        .iter()
        .map(|d| (d.namespace_or(&namespace).to_string(), d.service.clone()))
        .collect()
}

/// Passes on, for each change of what a Service shows others, the Services that must hear of
/// it: those its old and new `dependsOn` name (their ingress admits it) and those whose
/// `dependsOn` names it (its port is in their URL and egress; they may be waiting for it).
#[derive(Default)]
pub struct DependencyFilter {
    seen: HashMap<Key, (u64, Vec<Key>)>,
}

impl DependencyFilter {
    /// The Services to wake for `event`; `services` already reflects it.
    pub fn admit(
        &mut self,
        event: &watcher::Event<Service>,
        services: &Store<Service>,
    ) -> Vec<ObjectRef<Service>> {
        let (service, previous) = match event {
            // A re-list may hide deletions: start over, every listed object passes once.
            watcher::Event::Init => {
                self.seen.clear();
                return Vec::new();
            }
            watcher::Event::InitDone => return Vec::new(),
            watcher::Event::Apply(service) | watcher::Event::InitApply(service) => {
                let hash = visible(service);
                let entry = (hash, named_by(service));
                let previous = self.seen.insert(key_of(service), entry);
                if previous.as_ref().is_some_and(|(old, _)| *old == hash) {
                    return Vec::new();
                }
                (service, previous)
            }
            watcher::Event::Delete(service) => (service, self.seen.remove(&key_of(service))),
        };
        let mut wake: BTreeSet<Key> = named_by(service).into_iter().collect();
        wake.extend(previous.into_iter().flat_map(|(_, named)| named));
        let (namespace, name) = key_of(service);
        let state = services.state();
        wake.extend(
            callers_of(&namespace, &name, state.iter().map(Arc::as_ref))
                .into_iter()
                .map(key_of),
        );
        wake.remove(&(namespace, name));
        refs(wake)
    }
}

/// The Services a change of `db` concerns: its controller (a Service's template), the Service
/// named by its owner, and Services whose `database.ref` names it.
pub fn database_to_services(db: &Database, services: &Store<Service>) -> Vec<ObjectRef<Service>> {
    let namespace = db.namespace().unwrap_or_default();
    let name = db.name_any();
    let mut wake: BTreeSet<Key> = db
        .owner_references()
        .iter()
        .filter(|r| r.controller == Some(true) && r.kind == "Service")
        .map(|r| (namespace.clone(), r.name.clone()))
        .collect();
    wake.insert((namespace.clone(), db.spec.owner.clone()));
    wake.extend(
        services
            .state()
            .iter()
            .filter(|s| s.namespace().as_deref() == Some(namespace.as_str()))
            .filter(|s| {
                s.spec
                    .database
                    .as_ref()
                    .and_then(|d| d.reference.as_deref())
                    == Some(name.as_str())
            })
            .map(|s| key_of(s)),
    );
    refs(wake)
}

/// The Services whose isolation a change of `policy` may change: those of its namespace (their
/// pods and dedicated database servers live there) and those whose database is on a shared
/// server running there. `server` looks up a `DatabaseServer` by name.
pub fn policy_to_services(
    policy: &NetworkPolicy,
    services: &Store<Service>,
    databases: &Store<Database>,
    server: impl Fn(&str) -> Option<Arc<DatabaseServer>>,
) -> Vec<ObjectRef<Service>> {
    let namespace = policy.namespace().unwrap_or_default();
    let database_there = |service: &Service| {
        let Some(db) = database_of(service, databases) else {
            return false;
        };
        let Some(server) = db.spec.server.server_ref.as_deref().and_then(&server) else {
            return false;
        };
        let managed_namespace = server.spec.managed.as_ref().map(|m| {
            m.namespace
                .clone()
                .unwrap_or_else(|| crate::build::DEFAULT_SERVER_NAMESPACE.to_string())
        });
        managed_namespace.as_deref() == Some(namespace.as_str())
    };
    services
        .state()
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(namespace.as_str()) || database_there(s))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// The watched copy of the Database `service` uses, if any.
fn database_of(service: &Service, databases: &Store<Database>) -> Option<Arc<Database>> {
    let source = service.spec.database.as_ref()?;
    let name = match (&source.reference, &source.template) {
        (Some(name), _) => name.clone(),
        (None, Some(_)) => owned_database_name(&service.name_any()),
        (None, None) => return None,
    };
    databases.get(&ObjectRef::new(&name).within(&service.namespace()?))
}

/// Reduces a watched Pod to what NetworkPolicy evaluation reads (identity, labels, addresses,
/// named ports, node, host network, phase): a cluster's pods cost little memory this way.
pub fn trim_pod(pod: &mut Pod) {
    let metadata = &mut pod.metadata;
    metadata.managed_fields = None;
    metadata.annotations = None;
    metadata.owner_references = None;
    if let Some(spec) = pod.spec.as_mut() {
        spec.volumes = None;
        spec.affinity = None;
        spec.tolerations = None;
        for container in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            *container = k8s_openapi::api::core::v1::Container {
                name: std::mem::take(&mut container.name),
                ports: container.ports.take(),
                ..Default::default()
            };
        }
        spec.ephemeral_containers = None;
    }
    if let Some(status) = pod.status.as_mut() {
        status.conditions = None;
        status.container_statuses = None;
        status.init_container_statuses = None;
        status.ephemeral_container_statuses = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector;

    fn service(name: &str, spec: &str) -> Service {
        let mut service: Service = serde_yaml::from_str(&format!(
            "apiVersion: silo.dev/v1alpha1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec: {spec}\n"
        ))
        .unwrap();
        service.metadata.generation = Some(1);
        service
    }

    fn names(refs: Vec<ObjectRef<Service>>) -> Vec<String> {
        refs.into_iter().map(|r| r.name).collect()
    }

    #[test]
    fn status_writes_do_not_change_the_intent_but_spec_and_annotations_do() {
        let base = service("a", "{image: x}");
        let mut with_status = base.clone();
        with_status.status = Some(Default::default());
        assert_eq!(service_intent(&with_status), service_intent(&base));
        let mut newer = base.clone();
        newer.metadata.generation = Some(2);
        assert_ne!(service_intent(&newer), service_intent(&base));
    }

    #[test]
    fn a_dependency_change_wakes_the_old_and_new_dependencies_and_the_callers() {
        let (store, mut writer) = reflector::store();
        let mut filter = DependencyFilter::default();
        let payment = service("payment", "{image: x, dependsOn: [{service: booking}]}");
        let booking_v1 = service("booking", "{image: x, dependsOn: [{service: user}]}");
        for s in [&payment, &booking_v1] {
            writer.apply_watcher_event(&watcher::Event::Apply(s.clone()));
        }
        let first = filter.admit(&watcher::Event::Apply(booking_v1.clone()), &store);
        assert_eq!(names(first), ["payment", "user"]);
        // The same again (a status write): nobody to wake.
        assert!(
            filter
                .admit(&watcher::Event::Apply(booking_v1), &store)
                .is_empty()
        );
        let booking_v2 = service("booking", "{image: x, dependsOn: [{service: audit}]}");
        writer.apply_watcher_event(&watcher::Event::Apply(booking_v2.clone()));
        let moved = filter.admit(&watcher::Event::Apply(booking_v2.clone()), &store);
        assert_eq!(names(moved), ["audit", "payment", "user"]);
        writer.apply_watcher_event(&watcher::Event::Delete(booking_v2.clone()));
        let gone = filter.admit(&watcher::Event::Delete(booking_v2), &store);
        assert_eq!(names(gone), ["audit", "payment"]);
    }

    #[test]
    fn a_database_wakes_its_controller_its_owner_and_whoever_refers_to_it() {
        let (store, mut writer) = reflector::store();
        let referring = service("orders", "{image: x, database: {ref: users}}");
        writer.apply_watcher_event(&watcher::Event::Apply(referring));
        let db: Database = serde_yaml::from_str(
            "apiVersion: silo.dev/v1alpha1\nkind: Database\nmetadata: {name: users, namespace: shop}\n\
             spec: {engine: postgres, owner: user-service, server: {serverRef: pg}}\n",
        )
        .unwrap();
        assert_eq!(
            names(database_to_services(&db, &store)),
            ["orders", "user-service"]
        );
    }

    #[test]
    fn a_trimmed_pod_keeps_what_policies_look_at() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p", "namespace": "shop", "labels": { "a": "b" },
                          "annotations": { "x": "y" } },
            "spec": { "nodeName": "n", "containers": [{ "name": "c", "image": "i",
                "env": [{ "name": "E", "value": "v" }],
                "ports": [{ "name": "http", "containerPort": 8080 }] }] },
            "status": { "phase": "Running", "podIP": "10.0.0.1" },
        }))
        .unwrap();
        let before = crate::reachability::PodEndpoint::from_pod(&pod);
        trim_pod(&mut pod);
        assert_eq!(crate::reachability::PodEndpoint::from_pod(&pod), before);
        assert!(pod.metadata.annotations.is_none());
        assert!(pod.spec.unwrap().containers[0].env.is_none());
    }
}

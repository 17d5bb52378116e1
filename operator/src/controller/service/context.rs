//! What every reconcile of a `Service` shares: the operator's context and the watched copies
//! of the objects it reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service as KubeService, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{self, Store};

use super::super::Context;
use super::super::cluster_view::ClusterView;
use crate::crd::{Database, Service};
use crate::reachability::Cluster;

/// Watched copies the Service controller reads instead of asking the API server.
#[derive(Clone)]
pub struct Stores {
    /// Services in the operator's scope.
    pub services: Store<Service>,
    /// Databases in the operator's scope.
    pub databases: Store<Database>,
    /// Deployments the operator made for Services.
    pub deployments: Store<Deployment>,
    /// ServiceAccounts the operator made for Services.
    pub accounts: Store<ServiceAccount>,
    /// ClusterIP Services the operator made for Services.
    pub kube_services: Store<KubeService>,
    /// Every NetworkPolicy of the cluster.
    pub policies: Store<NetworkPolicy>,
    /// Every Pod of the cluster, reduced to what NetworkPolicy evaluation reads.
    pub pods: Store<Pod>,
    /// Every Namespace of the cluster (their labels).
    pub namespaces: Store<Namespace>,
}

impl Stores {
    /// Empty stores that nothing fills: every read misses (for tests without a cluster).
    pub fn empty() -> Self {
        Self {
            services: reflector::store().0,
            databases: reflector::store().0,
            deployments: reflector::store().0,
            accounts: reflector::store().0,
            kube_services: reflector::store().0,
            policies: reflector::store().0,
            pods: reflector::store().0,
            namespaces: reflector::store().0,
        }
    }

    /// The Pods, Namespaces and NetworkPolicies watched, ready for reachability questions.
    pub fn cluster(&self) -> Cluster {
        ClusterView {
            policies: self.policies.clone(),
            pods: self.pods.clone(),
            namespaces: self.namespaces.clone(),
        }
        .cluster()
    }
}

/// The context of the Service controller.
pub struct ServiceContext {
    /// The operator's context: client, settings, metrics, Events, backoff.
    pub base: Arc<Context>,
    /// Watched copies.
    pub stores: Stores,
    /// Object key → the last Event published about its failure, so that a failure is told
    /// once, however often the Service is woken while it lasts.
    told: Mutex<HashMap<String, String>>,
}

impl ServiceContext {
    /// A context reading from `stores`.
    pub fn new(base: Arc<Context>, stores: Stores) -> Self {
        Self {
            base,
            stores,
            told: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `note` about `key` is news (and remembers it as told).
    pub fn first_telling(&self, key: &str, note: &str) -> bool {
        let mut told = self.told.lock().unwrap_or_else(PoisonError::into_inner);
        if told.get(key).map(String::as_str) == Some(note) {
            return false;
        }
        told.insert(key.to_string(), note.to_string());
        true
    }

    /// Forgets the failure told about `key` (it succeeded, or is gone).
    pub fn forget_told(&self, key: &str) {
        self.told
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::OperatorConfig;
    use crate::metrics::Metrics;

    #[tokio::test]
    async fn a_failure_is_told_once_until_it_changes_or_is_forgotten() {
        let client =
            kube::Client::try_from(kube::Config::new("http://127.0.0.1:1".parse().unwrap()))
                .unwrap();
        let base = Arc::new(Context::new(
            client,
            OperatorConfig::default(),
            Arc::new(Metrics::default()),
        ));
        let ctx = ServiceContext::new(base, Stores::empty());
        assert!(ctx.first_telling("Service/shop/a", "InvalidSpec: spec.port"));
        assert!(!ctx.first_telling("Service/shop/a", "InvalidSpec: spec.port"));
        assert!(ctx.first_telling("Service/shop/a", "InvalidSpec: spec.image"));
        ctx.forget_told("Service/shop/a");
        assert!(ctx.first_telling("Service/shop/a", "InvalidSpec: spec.image"));
    }
}

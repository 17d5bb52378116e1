//! The Pods, Namespaces and NetworkPolicies of the whole cluster, watched once and read by
//! both controllers: the Service controller for `Isolated`, the Database controller for
//! `NetworkIsolated`. Both measure with [`crate::isolation`] over what is actually there,
//! policies Silo did not write included.

use std::fmt::Debug;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use std::sync::Arc;

use super::triggers::trim;
use crate::reachability::Cluster;

/// Watched copies of what reachability depends on.
#[derive(Clone)]
pub struct ClusterView {
    /// Every NetworkPolicy.
    pub policies: Store<NetworkPolicy>,
    /// Every Pod (trimmed to labels, ports and phase).
    pub pods: Store<Pod>,
    /// Every Namespace (for namespaceSelectors).
    pub namespaces: Store<Namespace>,
}

/// The watch events that fill a [`ClusterView`]; they must be polled for it to fill.
pub struct ClusterEvents {
    /// Touched NetworkPolicies.
    pub policies: BoxStream<'static, Result<NetworkPolicy, watcher::Error>>,
    /// Touched Pods.
    pub pods: BoxStream<'static, Result<Pod, watcher::Error>>,
    /// Touched Namespaces.
    pub namespaces: BoxStream<'static, Result<Namespace, watcher::Error>>,
}

impl ClusterView {
    /// Starts watching the cluster's Pods, Namespaces and NetworkPolicies.
    pub fn watch(client: &Client) -> (Self, ClusterEvents) {
        let everything = watcher::Config::default;
        let (policies, policy_events) =
            watched::<NetworkPolicy>(Api::all(client.clone()), everything(), trim);
        let (pods, pod_events) = watched::<Pod>(
            Api::all(client.clone()),
            everything(),
            super::service::trim_pod,
        );
        let (namespaces, namespace_events) =
            watched::<Namespace>(Api::all(client.clone()), everything(), trim);
        let view = Self {
            policies,
            pods,
            namespaces,
        };
        let events = ClusterEvents {
            policies: policy_events,
            pods: pod_events,
            namespaces: namespace_events,
        };
        (view, events)
    }

    /// What is watched now, ready for reachability questions.
    pub fn cluster(&self) -> Cluster {
        Cluster::new(
            &owned(self.namespaces.state()),
            &owned(self.pods.state()),
            &owned(self.policies.state()),
        )
    }
}

fn owned<K: Clone>(objects: Vec<Arc<K>>) -> Vec<K> {
    objects.iter().map(|object| (**object).clone()).collect()
}

/// A watch of `api` feeding a store of its objects (reduced by `trim`), and its events.
pub fn watched<K>(
    api: Api<K>,
    config: watcher::Config,
    trim: fn(&mut K),
) -> (Store<K>, BoxStream<'static, Result<K, watcher::Error>>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let events = watcher(api, config)
        .default_backoff()
        .modify(trim)
        .reflect(writer)
        .touched_objects()
        .boxed();
    (store, events)
}

//! The local node (`tests/env/up --node`) and the images `tests/images/build` made
//! for it. Tests that need pods run only when a node is up; otherwise each records
//! a visible skip, which `tests/run-tests` refuses (it always starts a node).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams, Patch, PatchParams};
use kube::runtime::wait::await_condition;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

/// The node's address when a node is up; otherwise records the skip of `test_name`.
pub fn node_ip(test_name: &str) -> Option<String> {
    match crate::env_file::lookup("SILO_NODE_IP") {
        Some(ip) if !ip.is_empty() => Some(ip),
        _ => {
            crate::record_skip(test_name, "no node (run tests/env/up --node)");
            None
        }
    }
}

/// An image `tests/images/build` built and imported into the node, by its variable
/// (`SILO_OPERATOR_IMAGE`, `SILO_POSTGRES_IMAGE`, ...), from the process environment or
/// `target/silo-env/images.env`.
pub fn image(var: &str) -> String {
    image_if_built(var).unwrap_or_else(|| {
        panic!(
            "{var} is not in {}: run tests/images/build",
            crate::env_dir().join("images.env").display()
        )
    })
}

/// Like [`image`], but `None` when no image of that variable was built (e.g. MongoDB, which
/// `tests/images/build` cannot make from this project's package sources).
pub fn image_if_built(var: &str) -> Option<String> {
    if let Ok(value) = std::env::var(var) {
        return Some(value).filter(|v| !v.is_empty());
    }
    let text = std::fs::read_to_string(crate::env_dir().join("images.env")).unwrap_or_default();
    crate::env_file::parse_exports(&text)
        .remove(var)
        .filter(|v| !v.is_empty())
}

/// Creates or updates `object` by server-side apply under the tests' field manager.
pub async fn apply<K>(client: &Client, namespace: &str, object: serde_json::Value) -> K
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    <K as Resource>::DynamicType: Default,
{
    let object: K = serde_json::from_value(object).expect("test object literal is valid");
    let name = object.meta().name.clone().expect("test objects are named");
    let api = Api::<K>::namespaced(client.clone(), namespace);
    let params = PatchParams::apply("silo-tests").force();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match api.patch(&name, &params, &Patch::Apply(&object)).await {
            Ok(applied) => return applied,
            // A pod in a namespace made a moment ago waits for its ServiceAccount's token
            // (the API server answers ServerTimeout and asks to retry).
            Err(kube::Error::Api(status))
                if status.reason == "ServerTimeout" && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("cannot apply {name}: {e}"),
        }
    }
}

/// Waits (at most `timeout`) until the pod has run to completion successfully.
pub async fn wait_pod_succeeded(client: &Client, namespace: &str, name: &str, timeout: Duration) {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let finished = |pod: Option<&Pod>| {
        let phase = pod.and_then(|p| p.status.as_ref()?.phase.as_deref());
        matches!(phase, Some("Succeeded" | "Failed"))
    };
    let waited = tokio::time::timeout(timeout, await_condition(pods.clone(), name, finished)).await;
    let pod = pods.get(name).await.ok();
    let phase = pod
        .as_ref()
        .and_then(|p| p.status.as_ref()?.phase.clone())
        .unwrap_or_default();
    if waited.is_err() || phase != "Succeeded" {
        let logs = pod_logs(client, namespace, name).await;
        panic!(
            "pod {namespace}/{name} did not succeed within {timeout:?} (phase {phase:?}); logs:\n{logs}\nstatus: {:?}",
            pod.and_then(|p| p.status)
        );
    }
}

/// Waits (at most `timeout`) until the pod's Ready condition is True.
pub async fn wait_pod_ready(client: &Client, namespace: &str, name: &str, timeout: Duration) {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let ready = |pod: Option<&Pod>| {
        pod.and_then(|p| p.status.as_ref()?.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    if tokio::time::timeout(timeout, await_condition(pods.clone(), name, ready))
        .await
        .is_err()
    {
        let status = pods.get(name).await.ok().and_then(|p| p.status);
        let logs = pod_logs(client, namespace, name).await;
        panic!(
            "pod {namespace}/{name} not Ready within {timeout:?}; logs:\n{logs}\nstatus: {status:?}"
        );
    }
}

/// The pod's logs as the kubelet serves them through the API server.
pub async fn pod_logs(client: &Client, namespace: &str, name: &str) -> String {
    Api::<Pod>::namespaced(client.clone(), namespace)
        .logs(name, &LogParams::default())
        .await
        .unwrap_or_else(|e| format!("(no logs: {e})"))
}

//! A client for the local API server and throwaway namespaces.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// A client for the API server that `tests/env/up` started.
pub async fn kube_client() -> Client {
    let path = crate::require("KUBECONFIG");
    let kubeconfig = Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("cannot read KUBECONFIG {path}: {e}"));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("invalid kubeconfig {path}: {e}"));
    Client::try_from(config).unwrap_or_else(|e| panic!("cannot build a client from {path}: {e}"))
}

/// A uniquely named namespace, deleted when dropped.
pub struct TestNamespace {
    name: String,
}

impl TestNamespace {
    /// Creates `<prefix>-<random>` on the API server.
    pub async fn create(client: &Client, prefix: &str) -> Self {
        let name = format!("{prefix}-{}", crate::unique_suffix());
        let namespace: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": name, "labels": { "silo.dev/test": "true" } }
        }))
        .expect("namespace literal is valid");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("cannot create test namespace {name}: {e}"));
        Self { name }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop cannot await, and the test's own runtime is blocked while it runs: delete from
        // a short-lived runtime on its own thread, with a client of its own (a client made on
        // the test's runtime would wait on that blocked runtime forever).
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                let namespaces = Api::<Namespace>::all(kube_client().await);
                let params = DeleteParams::background();
                let delete = namespaces.delete(&name, &params);
                tokio::time::timeout(std::time::Duration::from_secs(30), delete)
                    .await
                    .ok()?
                    .ok()
            })
        })
        .join();
        if !matches!(deleted, Ok(Some(_))) {
            eprintln!("warning: test namespace {} was not deleted", self.name);
        }
    }
}

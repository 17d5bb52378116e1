//! `crds/rbac/clusterrole.yaml` compared with the API calls the operator makes: every call it
//! makes in a scenario covering its controllers is granted, and every grant is used by some
//! call (or named below with the reason it is not exercised here), so the role stays as narrow
//! as the code.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::http::{Method, Request, Uri};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::PostParams;
use kube::client::{Body, ClientBuilder};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::json;
use silo_operator::crd::{DatabaseServer, DeletionPolicy, Engine};
use silo_operator::leader::{ElectionConfig, LeaderElector};

use crate::harness::{DatabaseFixture, Harness, eventually, server_not_ready};

/// What RBAC decides on: API group, resource (with `/subresource`), verb.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ApiCall {
    group: String,
    resource: String,
    verb: &'static str,
}

/// The RBAC view of a request to `uri` with `method`, as the API server's request info sees it.
fn api_call(method: &Method, uri: &Uri) -> Option<ApiCall> {
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    // `namespaces/<ns>/<resource>…` is a namespaced request; `namespaces[/<name>]` is about
    // namespaces themselves.
    let rest = match rest {
        ["namespaces", _namespace, resource, more @ ..] => {
            let mut parts = vec![*resource];
            parts.extend_from_slice(more);
            parts
        }
        other => other.to_vec(),
    };
    let (resource, named, subresource) = match rest.as_slice() {
        [resource] => (*resource, false, None),
        [resource, _name] => (*resource, true, None),
        [resource, _name, subresource] => (*resource, true, Some(*subresource)),
        _ => return None,
    };
    let watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let verb = match (method.as_str(), named) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    };
    let resource = match subresource {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_string(),
    };
    Some(ApiCall {
        group: group.to_string(),
        resource,
        verb,
    })
}

/// A client of the test user that records the RBAC view of every request it sends.
async fn recording_client() -> (Client, Arc<Mutex<BTreeSet<ApiCall>>>) {
    let kubeconfig = Kubeconfig::read_from(silo_testenv::require("KUBECONFIG")).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let calls = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = calls.clone();
    let record = tower::util::MapRequestLayer::new(move |request: Request<Body>| {
        if let Some(call) = api_call(request.method(), request.uri()) {
            let mut seen = seen.lock().unwrap();
            // A server-side apply of an object that does not exist yet creates it, and the API
            // server authorizes that as `create` as well (a subresource is never created).
            if call.verb == "patch" && !call.resource.contains('/') && is_apply(&request) {
                seen.insert(ApiCall {
                    verb: "create",
                    ..call.clone()
                });
            }
            seen.insert(call);
        }
        request
    });
    let client = ClientBuilder::try_from(config)
        .unwrap()
        .with_layer(&record)
        .build();
    (client, calls)
}

/// Whether `request` is a server-side apply (which may create the object).
fn is_apply(request: &Request<Body>) -> bool {
    request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/apply-patch"))
}

/// Every (group, resource, verb) the ClusterRole grants.
fn granted() -> BTreeSet<ApiCall> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/rbac/clusterrole.yaml"),
    )
    .unwrap();
    let role: ClusterRole = serde_yaml::from_str(&text).unwrap();
    let mut granted = BTreeSet::new();
    for rule in role.rules.unwrap_or_default() {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    let verb: &'static str = Box::leak(verb.clone().into_boxed_str());
                    granted.insert(ApiCall {
                        group: group.clone(),
                        resource: resource.clone(),
                        verb,
                    });
                }
            }
        }
    }
    granted
}

/// Grants this scenario does not exercise, and why they are needed anyway.
const NOT_EXERCISED_HERE: &[(&str, &str, &str, &str)] = &[
    (
        "events.k8s.io",
        "events",
        "patch",
        "kube's Recorder patches an Event that repeats within minutes into a series",
    ),
    (
        "silo.dev",
        "databaseservers",
        "get",
        "a DatabaseServer the watch cache does not hold yet is read",
    ),
    (
        "silo.dev",
        "databases",
        "create",
        "the Service controller applies the Database of a Service's template (rbac.rs runs it)",
    ),
    (
        "",
        "services",
        "get",
        "the Service controller reads a child its watch cache does not hold yet",
    ),
    (
        "networking.k8s.io",
        "networkpolicies",
        "get",
        "the Service controller reads a child its watch cache does not hold yet",
    ),
];

/// Resources of the Service controller, whose scenario lives in its own tests.
const SERVICE_CONTROLLER_RESOURCES: &[(&str, &str)] = &[
    ("silo.dev", "services"),
    ("silo.dev", "services/status"),
    ("apps", "deployments"),
    ("", "serviceaccounts"),
];

#[tokio::test]
async fn the_cluster_role_grants_exactly_what_the_operator_calls() {
    let mut h = Harness::start("silo-rbac-audit").await;
    let (client, calls) = recording_client().await;
    h.start_controller_as(client.clone());

    // Shared: provision, rotate, drop.
    h.create_shared("audited").await;
    h.wait_ready("audited").await;
    crate::harness::nudge(&h.databases(), "audited", "silo.dev/rotate", "1").await;
    eventually("the rotation", || {
        let api = h.databases();
        async move {
            let status = api.get("audited").await.ok()?.status?;
            (status.rotation_token.as_deref() == Some("1")).then_some(())
        }
    })
    .await;
    h.delete_and_wait("audited").await;

    // Dedicated servers, both deletion policies.
    for (name, policy) in [
        ("gone", DeletionPolicy::Delete),
        ("kept", DeletionPolicy::Retain),
    ] {
        h.create(
            &DatabaseFixture::dedicated(Engine::Postgres)
                .owner(name)
                .deletion(policy)
                .build(name),
        )
        .await;
        h.wait_condition(name, "ServerReady", "False").await;
        h.delete_and_wait(name).await;
    }

    // A managed server, and an invalid one (its Event goes to kube-system).
    let servers = Api::<DatabaseServer>::all(h.client.clone());
    for (name, spec) in [
        (
            format!("managed-{}", h.ns()),
            json!({ "engine": "postgres", "managed": { "namespace": h.ns(), "storage": { "size": "1Gi" } } }),
        ),
        (
            format!("invalid-{}", h.ns()),
            json!({ "engine": "postgres" }),
        ),
    ] {
        let server: DatabaseServer = serde_json::from_value(json!({
            "apiVersion": "silo.dev/v1alpha1", "kind": "DatabaseServer",
            "metadata": { "name": name, "labels": { "silo.dev/test-scope": h.ns() } },
            "spec": spec,
        }))
        .unwrap();
        servers
            .create(&PostParams::default(), &server)
            .await
            .unwrap();
    }
    server_not_ready(
        &h.client,
        &format!("managed-{}", h.ns()),
        "WaitingForServer",
    )
    .await;
    server_not_ready(&h.client, &format!("invalid-{}", h.ns()), "InvalidSpec").await;
    for name in [format!("managed-{}", h.ns()), format!("invalid-{}", h.ns())] {
        servers.delete(&name, &Default::default()).await.unwrap();
        h.wait_server_gone(&name).await;
    }

    // Leader election: take, renew, release.
    let elector = LeaderElector::new(
        client.clone(),
        ElectionConfig::new(h.ns(), "silo-operator-leader", "audit"),
    );
    assert!(elector.try_acquire_or_renew().await.unwrap());
    assert!(elector.try_acquire_or_renew().await.unwrap());
    elector.release().await.unwrap();
    h.finish().await;

    let called = calls.lock().unwrap().clone();
    let granted = granted();
    let ungranted: Vec<&ApiCall> = called.difference(&granted).collect();
    assert!(
        ungranted.is_empty(),
        "calls the ClusterRole does not grant: {ungranted:#?}"
    );
    let unused: Vec<&ApiCall> = granted
        .difference(&called)
        .filter(|g| {
            !NOT_EXERCISED_HERE.iter().any(|(group, resource, verb, _)| {
                g.group == *group && g.resource == *resource && g.verb == *verb
            }) && !SERVICE_CONTROLLER_RESOURCES
                .iter()
                .any(|(group, resource)| g.group == *group && g.resource == *resource)
        })
        .collect();
    assert!(
        unused.is_empty(),
        "grants no call of the operator needs (remove them, or name them in NOT_EXERCISED_HERE with the reason): {unused:#?}"
    );
}

#[test]
fn requests_map_to_what_rbac_decides_on() {
    let call = |method: Method, uri: &str| {
        let call = api_call(&method, &uri.parse().unwrap()).unwrap();
        (call.group, call.resource, call.verb)
    };
    let triple = |g: &str, r: &str, v: &'static str| (g.to_string(), r.to_string(), v);
    assert_eq!(
        call(Method::GET, "/api/v1/namespaces/shop/secrets/users-db"),
        triple("", "secrets", "get")
    );
    assert_eq!(
        call(Method::GET, "/api/v1/secrets?labelSelector=x&watch=true"),
        triple("", "secrets", "watch")
    );
    assert_eq!(
        call(Method::GET, "/apis/silo.dev/v1alpha1/databaseservers"),
        triple("silo.dev", "databaseservers", "list")
    );
    assert_eq!(
        call(
            Method::PATCH,
            "/apis/silo.dev/v1alpha1/namespaces/shop/databases/users/status"
        ),
        triple("silo.dev", "databases/status", "patch")
    );
    assert_eq!(
        call(
            Method::DELETE,
            "/api/v1/namespaces/shop/persistentvolumeclaims"
        ),
        triple("", "persistentvolumeclaims", "deletecollection")
    );
    assert_eq!(
        call(
            Method::PUT,
            "/apis/coordination.k8s.io/v1/namespaces/silo-system/leases/l"
        ),
        triple("coordination.k8s.io", "leases", "update")
    );
    assert_eq!(
        call(Method::GET, "/api/v1/namespaces"),
        triple("", "namespaces", "list")
    );
}

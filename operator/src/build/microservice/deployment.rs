//! The Deployment of a service: hardened pods with the database login, the broker and the
//! dependencies wired in as environment variables.

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};

use super::{BrokerUrl, HTTP_PORT_NAME, Microservice};

/// Pod-template annotation carrying when the database password was last set: a rotation
/// changes it, and so rolls the pods onto the new password.
pub const ROTATION_ANNOTATION: &str = "silo.dev/credentials-rotation";

const CONTAINER_NAME: &str = "app";
const TMP_VOLUME: &str = "tmp";

/// The environment variable holding the URL of dependency `service`:
/// `user-service` → `USER_SERVICE_URL`.
pub fn url_variable(service: &str) -> String {
    let stem: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{stem}_URL")
}

/// The Deployment `<name>`. Build it only when [`Microservice::can_deploy`]: before the
/// database has credentials there is no `DATABASE_URL` to give.
pub fn deployment(service: &Microservice) -> Result<Deployment, serde_json::Error> {
    let mut annotations = serde_json::Map::new();
    if let Some(credentials) = service
        .database
        .as_ref()
        .and_then(|db| db.credentials.as_ref())
    {
        annotations.insert(ROTATION_ANNOTATION.into(), json!(credentials.rotation));
    }
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": service.metadata(&service.name),
        "spec": {
            "replicas": service.replicas,
            "selector": { "matchLabels": service.selector_labels() },
            // A new pod is Ready before an old one goes: no capacity is lost in a roll.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": { "maxUnavailable": 0, "maxSurge": 1 },
            },
            "template": {
                "metadata": { "labels": service.labels(), "annotations": annotations },
                "spec": pod_spec(service),
            },
        },
    }))
}

fn pod_spec(service: &Microservice) -> Value {
    json!({
        "serviceAccountName": service.name,
        "automountServiceAccountToken": false,
        // Service links would add `<NAME>_PORT=tcp://…` for every Service of the namespace,
        // which collides with what applications read.
        "enableServiceLinks": false,
        "securityContext": {
            "runAsNonRoot": true,
            "seccompProfile": { "type": "RuntimeDefault" },
        },
        "containers": [container(service)],
        "volumes": [{ "name": TMP_VOLUME, "emptyDir": {} }],
    })
}

fn container(service: &Microservice) -> Value {
    let probe = |path: &str, period: u32, failures: u32| {
        json!({
            "httpGet": { "path": path, "port": HTTP_PORT_NAME },
            "periodSeconds": period,
            "failureThreshold": failures,
        })
    };
    let mut container = json!({
        "name": CONTAINER_NAME,
        "image": service.image,
        "ports": [{ "name": HTTP_PORT_NAME, "containerPort": service.port, "protocol": "TCP" }],
        "env": env(service),
        // A slow first start (migrations) gets two minutes before liveness may restart it.
        "startupProbe": probe(&service.probes.liveness_path, 2, 60),
        "livenessProbe": probe(&service.probes.liveness_path, 10, 3),
        "readinessProbe": probe(&service.probes.readiness_path, 5, 2),
        "securityContext": {
            "runAsNonRoot": true,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": { "drop": ["ALL"] },
        },
        "volumeMounts": [{ "name": TMP_VOLUME, "mountPath": "/tmp" }],
    });
    if let Some(resources) = &service.resources {
        // `claims` is newer than the API servers Silo supports, which refuse it in an apply.
        let mut resources = resources.clone();
        resources.claims = None;
        container["resources"] = json!(resources);
    }
    container
}

/// `PORT`, `DATABASE_URL` (by reference to the credentials Secret), `BROKER_URL`, one
/// `<DEPENDENCY>_URL` each, then the spec's own: the spec's may refer to the others as `$(NAME)`.
fn env(service: &Microservice) -> Vec<Value> {
    let secret_key =
        |name: &str, key: &str| json!({ "secretKeyRef": { "name": name, "key": key } });
    let mut env = vec![json!({ "name": "PORT", "value": service.port.to_string() })];
    if let Some(credentials) = service
        .database
        .as_ref()
        .and_then(|db| db.credentials.as_ref())
    {
        env.push(json!({
            "name": "DATABASE_URL",
            "valueFrom": secret_key(&credentials.secret_name, "uri"),
        }));
    }
    if let Some(broker) = &service.broker {
        env.push(match &broker.url {
            BrokerUrl::Literal(url) => json!({ "name": "BROKER_URL", "value": url }),
            BrokerUrl::Secret(key) => json!({
                "name": "BROKER_URL",
                "valueFrom": secret_key(&key.name, &key.key),
            }),
        });
    }
    let mut dependencies = service.dependencies.clone();
    dependencies.sort();
    for dependency in &dependencies {
        env.push(json!({ "name": url_variable(&dependency.name), "value": dependency.url() }));
    }
    for var in &service.env {
        env.push(match (&var.value, &var.secret_key_ref) {
            (_, Some(key)) => json!({
                "name": var.name,
                "valueFrom": secret_key(&key.name, &key.key),
            }),
            (value, None) => {
                json!({ "name": var.name, "value": value.clone().unwrap_or_default() })
            }
        });
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::assert_matches;
    use crate::build::microservice::fixtures::booking;

    #[test]
    fn the_deployment_matches_fixture() {
        assert_matches(
            &deployment(&booking()).unwrap(),
            "booking-service.deployment.yaml",
        );
    }

    #[test]
    fn dependency_names_become_url_variables() {
        assert_eq!(url_variable("user-service"), "USER_SERVICE_URL");
        assert_eq!(url_variable("payments2"), "PAYMENTS2_URL");
    }

    #[test]
    fn the_database_url_is_a_reference_to_the_secret_never_its_value() {
        let built = serde_json::to_value(deployment(&booking()).unwrap()).unwrap();
        let env = &built["spec"]["template"]["spec"]["containers"][0]["env"];
        let database_url = env
            .as_array()
            .unwrap()
            .iter()
            .find(|var| var["name"] == "DATABASE_URL")
            .unwrap();
        assert!(database_url.get("value").is_none());
        assert_eq!(
            database_url["valueFrom"]["secretKeyRef"],
            json!({ "name": "booking-service-db", "key": "uri" })
        );
    }

    #[test]
    fn a_rotation_changes_the_pod_template_and_nothing_else() {
        let before = deployment(&booking()).unwrap();
        let mut rotated = booking();
        if let Some(credentials) = rotated
            .database
            .as_mut()
            .and_then(|db| db.credentials.as_mut())
        {
            credentials.rotation = "2026-12-01T00:00:00Z".into();
        }
        let after = deployment(&rotated).unwrap();
        let annotation = |d: &Deployment| {
            d.spec
                .as_ref()
                .unwrap()
                .template
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .as_ref()
                .unwrap()[ROTATION_ANNOTATION]
                .clone()
        };
        assert_ne!(annotation(&before), annotation(&after));
        let mut without = after.clone();
        if let Some(spec) = without.spec.as_mut() {
            spec.template.metadata = before.spec.as_ref().unwrap().template.metadata.clone();
        }
        assert_eq!(without, before);
    }

    #[test]
    fn the_pods_are_hardened() {
        let built = serde_json::to_value(deployment(&booking()).unwrap()).unwrap();
        let pod = &built["spec"]["template"]["spec"];
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let security = &pod["containers"][0]["securityContext"];
        assert_eq!(security["runAsNonRoot"], true);
        assert_eq!(security["readOnlyRootFilesystem"], true);
        assert_eq!(security["allowPrivilegeEscalation"], false);
        assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(pod["volumes"][0]["emptyDir"], json!({}));
    }
}

//! The one-replica StatefulSet that runs a managed or dedicated server.

use k8s_openapi::api::apps::v1::StatefulSet;
use serde_json::{Value, json};

use super::Workload;
use super::secrets::{ADMIN_KEYFILE_KEY, ADMIN_PASSWORD_KEY, ADMIN_USERNAME_KEY};
use crate::crd::Engine;

const DATA_VOLUME: &str = "data";
/// Time a server gets to shut down cleanly (checkpoint, flush) before it is killed; the
/// Kubernetes default of 30 s is short for a database under load.
const TERMINATION_GRACE_SECONDS: u32 = 60;
/// How long a first start (initdb, or crash recovery) may take before the kubelet restarts the
/// container: a startup probe tried every 5 s, this many times (10 minutes).
const STARTUP_ATTEMPTS: u32 = 120;

/// The name of the claim the StatefulSet controller makes for the data volume of `workload`'s
/// one pod (`<template>-<statefulset>-<ordinal>`). Nothing owns it: it outlives the StatefulSet.
pub fn data_claim_name(workload: &Workload) -> String {
    format!("{DATA_VOLUME}-{}-0", workload.name)
}

/// The StatefulSet of `workload`: one replica, a volume claim template, admin login from its Secret.
pub fn statefulset(workload: &Workload) -> Result<StatefulSet, serde_json::Error> {
    let pod = match workload.engine {
        Engine::Postgres => postgres_pod(workload),
        Engine::Mongodb => mongodb_pod(workload),
    };
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": workload.name,
            "namespace": workload.namespace,
            "labels": workload.labels(),
            "ownerReferences": [workload.owner],
        },
        "spec": {
            "replicas": 1,
            "serviceName": workload.name,
            "selector": { "matchLabels": workload.selector_labels() },
            "template": {
                "metadata": { "labels": workload.labels() },
                "spec": pod,
            },
            "volumeClaimTemplates": [{
                "metadata": { "name": DATA_VOLUME, "labels": workload.selector_labels() },
                "spec": claim_spec(workload),
            }],
        },
    }))
}

/// The pod spec around `containers`: the same lifecycle settings for every engine. Service
/// links are off: a Service called `postgres` or `mongo` in the namespace would otherwise put
/// variables such as `POSTGRES_PORT` into the server's environment, which images read.
fn pod_spec(init_containers: Value, containers: Value, volumes: Value) -> Value {
    json!({
        "initContainers": init_containers,
        "containers": containers,
        "volumes": volumes,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "enableServiceLinks": false,
    })
}

/// Startup, readiness and liveness probes running `check`: startup allows a long first start,
/// readiness follows the server closely, liveness restarts only a server that stays
/// unresponsive for a minute.
fn probes(check: &Value) -> Value {
    let probe = |period: u32, failures: u32| {
        let mut probe = check.clone();
        probe["periodSeconds"] = json!(period);
        probe["timeoutSeconds"] = json!(5);
        probe["failureThreshold"] = json!(failures);
        probe
    };
    json!({
        "startupProbe": probe(5, STARTUP_ATTEMPTS),
        "readinessProbe": probe(5, 3),
        "livenessProbe": probe(10, 6),
    })
}

/// A container `base` with `probes` merged in.
fn with_probes(mut base: Value, probes: Value) -> Value {
    if let (Some(container), Value::Object(probes)) = (base.as_object_mut(), probes) {
        container.extend(probes);
    }
    base
}

/// PostgreSQL with the official image's environment contract. No `runAsUser`: the image's
/// entrypoint starts as root, prepares the data directory and drops to its postgres user.
fn postgres_pod(workload: &Workload) -> Value {
    let env = |name: &str, key: &str| admin_env(workload, name, key);
    // Over TCP: during initdb the server listens on its socket only, so it is not ready yet.
    let ready_check = json!({
        "exec": { "command": ["sh", "-c", "pg_isready -h 127.0.0.1 -U \"$POSTGRES_USER\""] },
    });
    let container = json!({
        "name": "postgres",
        "image": workload.image,
        "env": [
            env("POSTGRES_USER", ADMIN_USERNAME_KEY),
            env("POSTGRES_PASSWORD", ADMIN_PASSWORD_KEY),
            { "name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata" },
            { "name": "POSTGRES_INITDB_ARGS", "value": "--auth-host=scram-sha-256" },
        ],
        "ports": [ { "name": "postgres", "containerPort": workload.port() } ],
        "volumeMounts": [ { "name": DATA_VOLUME, "mountPath": "/var/lib/postgresql/data" } ],
        "resources": workload.spec.resources,
    });
    pod_spec(
        json!([]),
        json!([with_probes(container, probes(&ready_check))]),
        json!([]),
    )
}

/// MongoDB as a one-member replica set (`rs0`) authenticated by a key file.
fn mongodb_pod(workload: &Workload) -> Value {
    let env = |name: &str, key: &str| admin_env(workload, name, key);
    let port = workload.port();
    let container = json!({
        "name": "mongodb",
        "image": workload.image,
        "args": ["--replSet", "rs0", "--bind_ip_all", "--keyFile", "/etc/mongo-keyfile/keyfile"],
        "env": [
            env("MONGO_INITDB_ROOT_USERNAME", ADMIN_USERNAME_KEY),
            env("MONGO_INITDB_ROOT_PASSWORD", ADMIN_PASSWORD_KEY),
        ],
        "ports": [ { "name": "mongodb", "containerPort": port } ],
        "volumeMounts": [
            { "name": DATA_VOLUME, "mountPath": "/data/db" },
            { "name": "keyfile", "mountPath": "/etc/mongo-keyfile" },
        ],
        "resources": workload.spec.resources,
    });
    // During initialisation the image runs a mongod bound to localhost only: not ready yet.
    let ready_check = json!({ "tcpSocket": { "port": port } });
    // mongod refuses a key file readable by group or others, which a Secret volume always is;
    // copy it with owner-only permissions first.
    let keyfile = json!({
        "name": "keyfile",
        "image": workload.image,
        "command": ["sh", "-c", "cp /keyfile-source/keyfile /etc/mongo-keyfile/keyfile && chmod 400 /etc/mongo-keyfile/keyfile && chown 999:999 /etc/mongo-keyfile/keyfile"],
        "volumeMounts": [
            { "name": "keyfile-source", "mountPath": "/keyfile-source", "readOnly": true },
            { "name": "keyfile", "mountPath": "/etc/mongo-keyfile" },
        ],
    });
    let secret = workload.admin_secret_name();
    pod_spec(
        json!([keyfile]),
        json!([with_probes(container, probes(&ready_check))]),
        json!([
            { "name": "keyfile-source", "secret": { "secretName": secret, "items": [ { "key": ADMIN_KEYFILE_KEY, "path": "keyfile" } ] } },
            { "name": "keyfile", "emptyDir": {} },
        ]),
    )
}

/// An environment variable `name` read from `key` of the workload's admin Secret.
fn admin_env(workload: &Workload, name: &str, key: &str) -> Value {
    json!({
        "name": name,
        "valueFrom": { "secretKeyRef": { "name": workload.admin_secret_name(), "key": key } },
    })
}

/// The data volume's claim.
fn claim_spec(workload: &Workload) -> Value {
    let mut claim_spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": { "requests": { "storage": workload.spec.storage.size } },
    });
    if let Some(class) = &workload.spec.storage.storage_class_name {
        claim_spec["storageClassName"] = json!(class);
    }
    claim_spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::{assert_matches, load};
    use crate::crd::{Database, ManagedServerSpec};
    use crate::image::ImageRepositories;

    fn dedicated(fixture: &str) -> Workload {
        dedicated_with(fixture, &ImageRepositories::default(), |_| {})
    }

    fn dedicated_with(
        fixture: &str,
        images: &ImageRepositories,
        change: impl FnOnce(&mut ManagedServerSpec),
    ) -> Workload {
        let db: Database = load(fixture);
        let mut spec = db.spec.server.dedicated.clone().unwrap();
        change(&mut spec);
        Workload::dedicated(&db, &spec, images).unwrap()
    }

    fn pod(built: &StatefulSet) -> k8s_openapi::api::core::v1::PodSpec {
        built.spec.clone().unwrap().template.spec.unwrap()
    }

    fn images(pod: &k8s_openapi::api::core::v1::PodSpec) -> Vec<String> {
        pod.init_containers
            .iter()
            .flatten()
            .chain(&pod.containers)
            .filter_map(|c| c.image.clone())
            .collect()
    }

    fn private_registry() -> ImageRepositories {
        ImageRepositories {
            postgres: "localhost/silo/postgres".into(),
            mongodb: "registry.internal:5000/mirror/mongo".into(),
        }
    }

    #[test]
    fn the_server_runs_the_operators_repository_tagged_with_the_version() {
        let workload = dedicated_with(
            "dedicated-postgres.database.yaml",
            &private_registry(),
            |spec| {
                spec.version = Some("15".into());
            },
        );
        let built = statefulset(&workload).unwrap();
        assert_eq!(images(&pod(&built)), ["localhost/silo/postgres:15"]);
    }

    #[test]
    fn an_image_in_the_spec_is_run_by_every_container() {
        let image = "ghcr.io/acme/mongo:7.0.12";
        let workload = dedicated_with(
            "dedicated-mongodb.database.yaml",
            &private_registry(),
            |spec| {
                spec.image = Some(image.into());
            },
        );
        let built = statefulset(&workload).unwrap();
        assert_eq!(images(&pod(&built)), [image, image]);
        let default_mongo = statefulset(&dedicated("dedicated-mongodb.database.yaml")).unwrap();
        assert_eq!(images(&pod(&default_mongo)), ["mongo:7.0", "mongo:7.0"]);
    }

    #[test]
    fn every_server_has_probes_a_grace_period_and_no_forced_user() {
        for fixture in [
            "dedicated-postgres.database.yaml",
            "dedicated-mongodb.database.yaml",
        ] {
            let pod = pod(&statefulset(&dedicated(fixture)).unwrap());
            assert_eq!(pod.termination_grace_period_seconds, Some(60), "{fixture}");
            assert_eq!(pod.enable_service_links, Some(false), "{fixture}");
            // The images' entrypoints start as root and drop to their own user.
            assert!(pod.security_context.is_none(), "{fixture}");
            for container in &pod.containers {
                assert!(container.security_context.is_none(), "{fixture}");
                let startup = container.startup_probe.as_ref().expect("startup probe");
                let ready = container.readiness_probe.as_ref().expect("readiness probe");
                let live = container.liveness_probe.as_ref().expect("liveness probe");
                // A first start (initdb) gets minutes; a running server a minute to answer.
                let patience = |p: &k8s_openapi::api::core::v1::Probe| {
                    p.period_seconds.unwrap() * p.failure_threshold.unwrap()
                };
                assert!(patience(startup) >= 300, "{fixture}");
                assert!(patience(live) >= 60, "{fixture}");
                assert!(ready.period_seconds.unwrap() <= 5, "{fixture}");
            }
        }
    }

    #[test]
    fn dedicated_postgres_statefulset_matches_fixture() {
        let built = statefulset(&dedicated("dedicated-postgres.database.yaml")).unwrap();
        assert_matches(&built, "dedicated-postgres.statefulset.yaml");
    }

    #[test]
    fn dedicated_mongodb_runs_a_replica_set_with_a_private_key_file() {
        let built = statefulset(&dedicated("dedicated-mongodb.database.yaml")).unwrap();
        assert_matches(&built, "dedicated-mongodb.statefulset.yaml");
    }

    #[test]
    fn the_data_claim_is_named_as_the_statefulset_controller_names_it() {
        let workload = dedicated("dedicated-postgres.database.yaml");
        let built = statefulset(&workload).unwrap();
        let template = built.spec.unwrap().volume_claim_templates.unwrap()[0]
            .metadata
            .name
            .clone()
            .unwrap();
        assert_eq!(
            data_claim_name(&workload),
            format!("{template}-users-dbserver-0")
        );
    }

    #[test]
    fn selector_matches_pod_labels_and_owner_is_the_database() {
        let built = statefulset(&dedicated("dedicated-postgres.database.yaml")).unwrap();
        let spec = built.spec.unwrap();
        let pod_labels = spec.template.metadata.unwrap().labels.unwrap();
        for (key, value) in spec.selector.match_labels.unwrap() {
            assert_eq!(pod_labels.get(&key), Some(&value));
        }
        let owner = &built.metadata.owner_references.unwrap()[0];
        assert_eq!(owner.kind, "Database");
        assert_eq!(owner.controller, Some(true));
    }
}

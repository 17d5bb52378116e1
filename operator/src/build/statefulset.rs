//! The one-replica StatefulSet that runs a managed or dedicated server.

use k8s_openapi::api::apps::v1::StatefulSet;
use serde_json::json;

use super::Workload;
use super::secrets::{ADMIN_KEYFILE_KEY, ADMIN_PASSWORD_KEY, ADMIN_USERNAME_KEY};
use crate::crd::Engine;

const DATA_VOLUME: &str = "data";

/// The StatefulSet of `workload`: one replica, a volume claim template, admin login from its Secret.
pub fn statefulset(workload: &Workload) -> Result<StatefulSet, serde_json::Error> {
    let secret = workload.admin_secret_name();
    let secret_env = |name: &str, key: &str| json!({ "name": name, "valueFrom": { "secretKeyRef": { "name": secret, "key": key } } });
    let port = workload.port();
    let (container, init_containers, volumes) = match workload.engine {
        Engine::Postgres => (
            json!({
                "name": "postgres",
                "image": format!("postgres:{}", workload.version()),
                "env": [
                    secret_env("POSTGRES_USER", ADMIN_USERNAME_KEY),
                    secret_env("POSTGRES_PASSWORD", ADMIN_PASSWORD_KEY),
                    { "name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata" },
                    { "name": "POSTGRES_INITDB_ARGS", "value": "--auth-host=scram-sha-256" },
                ],
                "ports": [ { "name": "postgres", "containerPort": port } ],
                "volumeMounts": [ { "name": DATA_VOLUME, "mountPath": "/var/lib/postgresql/data" } ],
                "readinessProbe": {
                    "exec": { "command": ["sh", "-c", "pg_isready -h 127.0.0.1 -U \"$POSTGRES_USER\""] },
                    "periodSeconds": 5,
                },
                "resources": workload.spec.resources,
            }),
            json!([]),
            json!([]),
        ),
        Engine::Mongodb => (
            json!({
                "name": "mongodb",
                "image": format!("mongo:{}", workload.version()),
                "args": ["--replSet", "rs0", "--bind_ip_all", "--keyFile", "/etc/mongo-keyfile/keyfile"],
                "env": [
                    secret_env("MONGO_INITDB_ROOT_USERNAME", ADMIN_USERNAME_KEY),
                    secret_env("MONGO_INITDB_ROOT_PASSWORD", ADMIN_PASSWORD_KEY),
                ],
                "ports": [ { "name": "mongodb", "containerPort": port } ],
                "volumeMounts": [
                    { "name": DATA_VOLUME, "mountPath": "/data/db" },
                    { "name": "keyfile", "mountPath": "/etc/mongo-keyfile" },
                ],
                "readinessProbe": { "tcpSocket": { "port": port }, "periodSeconds": 5 },
                "resources": workload.spec.resources,
            }),
            // mongod refuses a key file readable by group or others, which a Secret volume with
            // fsGroup always is; copy it with owner-only permissions first.
            json!([{
                "name": "keyfile",
                "image": format!("mongo:{}", workload.version()),
                "command": ["sh", "-c", "cp /keyfile-source/keyfile /etc/mongo-keyfile/keyfile && chmod 400 /etc/mongo-keyfile/keyfile && chown 999:999 /etc/mongo-keyfile/keyfile"],
                "volumeMounts": [
                    { "name": "keyfile-source", "mountPath": "/keyfile-source", "readOnly": true },
                    { "name": "keyfile", "mountPath": "/etc/mongo-keyfile" },
                ],
            }]),
            json!([
                { "name": "keyfile-source", "secret": { "secretName": secret, "items": [ { "key": ADMIN_KEYFILE_KEY, "path": "keyfile" } ] } },
                { "name": "keyfile", "emptyDir": {} },
            ]),
        ),
    };
    let mut claim_spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": { "requests": { "storage": workload.spec.storage.size } },
    });
    if let Some(class) = &workload.spec.storage.storage_class_name {
        claim_spec["storageClassName"] = json!(class);
    }
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
                "spec": {
                    "initContainers": init_containers,
                    "containers": [container],
                    "volumes": volumes,
                },
            },
            "volumeClaimTemplates": [{
                "metadata": { "name": DATA_VOLUME, "labels": workload.selector_labels() },
                "spec": claim_spec,
            }],
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::{assert_matches, load};
    use crate::crd::Database;

    fn dedicated(fixture: &str) -> Workload {
        let db: Database = load(fixture);
        let spec = db.spec.server.dedicated.clone().unwrap();
        Workload::dedicated(&db, &spec).unwrap()
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

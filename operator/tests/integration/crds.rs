//! `crds/` must be what `silo-operator crd` generates from the Rust types, and nothing more.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[test]
fn crds_directory_matches_the_rust_types() {
    let dir = repo_file("crds");
    for (file, generated) in silo_operator::crd_yaml::crd_files().unwrap() {
        let committed = std::fs::read_to_string(dir.join(&file)).unwrap_or_default();
        assert!(
            committed == generated,
            "crds/{file} is out of date: run `cargo run -p silo-operator -- crd --out-dir crds`"
        );
    }
    let stale = stale_crd_files(&dir);
    assert!(
        stale.is_empty(),
        "crds/ holds manifests `silo-operator crd` does not write (`kubectl apply -f crds/` would install them): {stale:?}; delete them"
    );
}

/// Files under `dir` that are not what `silo-operator crd --out-dir` writes there but would be
/// taken for it: any manifest at the top level (what `kubectl apply -f crds/` reads), and any
/// CustomResourceDefinition below it.
fn stale_crd_files(dir: &Path) -> Vec<String> {
    let generated: BTreeSet<String> = silo_operator::crd_yaml::crd_files()
        .unwrap()
        .into_iter()
        .map(|(file, _)| file)
        .collect();
    let mut stale = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), true)];
    while let Some((current, top_level)) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push((path, false));
                continue;
            }
            let relative = path.strip_prefix(dir).unwrap().display().to_string();
            if top_level && generated.contains(&relative) {
                continue;
            }
            let manifest = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            );
            if (top_level && manifest) || defines_a_crd(&path) {
                stale.push(relative);
            }
        }
    }
    stale.sort();
    stale
}

/// Whether the file at `path` holds a CustomResourceDefinition (in any of its YAML documents).
fn defines_a_crd(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    text.lines().any(|line| {
        line.trim_start().strip_prefix("kind:").map(str::trim) == Some("CustomResourceDefinition")
    })
}

#[test]
fn a_stale_crd_file_left_in_crds_is_found() {
    let dir = std::env::temp_dir().join(format!("silo-crds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    silo_operator::crd_yaml::write_crds(&dir).unwrap();
    std::fs::create_dir_all(dir.join("rbac")).unwrap();
    std::fs::copy(
        repo_file("crds/rbac/clusterrole.yaml"),
        dir.join("rbac/clusterrole.yaml"),
    )
    .unwrap();
    assert_eq!(stale_crd_files(&dir), Vec::<String>::new());

    // A CRD that was renamed or removed from the Rust types, its old file still there.
    let (_, generated) = &silo_operator::crd_yaml::crd_files().unwrap()[0];
    std::fs::write(dir.join("olddatabases.silo.dev.yaml"), generated).unwrap();
    std::fs::write(dir.join("rbac/extra-crd.yaml"), generated).unwrap();
    std::fs::write(dir.join("notes.txt"), "not a manifest").unwrap();
    let stale = stale_crd_files(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(stale, ["olddatabases.silo.dev.yaml", "rbac/extra-crd.yaml"]);
}

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Every YAML document of every file directly in `examples/` (the Database and
/// DatabaseServer examples), with its file. Its subdirectories hold whole systems, each run by
/// a test of its own (`examples/booking-system/` by `booking_system.rs`).
pub fn example_documents() -> Vec<(PathBuf, serde_yaml::Value)> {
    let mut documents = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_file("examples"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(document).unwrap();
            documents.push((path.clone(), value));
        }
    }
    documents
}

#[test]
fn every_example_parses_into_the_crd_types_and_validates() {
    use silo_operator::crd::{Database, DatabaseServer};
    let mut resources = 0;
    let mut namespaces = BTreeSet::new();
    for (path, value) in example_documents() {
        match value["kind"].as_str() {
            Some("Database") => {
                let db: Database = serde_yaml::from_value(value).unwrap();
                silo_operator::validate::database(&db)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let namespace = db.metadata.namespace.clone().unwrap_or_default();
                assert!(
                    namespaces.contains(&(path.clone(), namespace.clone())),
                    "{}: namespace {namespace} is not created in the file before the Database",
                    path.display()
                );
                resources += 1;
            }
            Some("DatabaseServer") => {
                let server: DatabaseServer = serde_yaml::from_value(value).unwrap();
                silo_operator::validate::server(&server)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                resources += 1;
            }
            Some("Namespace") => {
                let name = value["metadata"]["name"].as_str().unwrap().to_string();
                namespaces.insert((path, name));
            }
            other => panic!("{}: unexpected kind {other:?}", path.display()),
        }
    }
    assert!(resources >= 5, "examples/ holds the documented examples");
}

#[test]
fn the_cluster_role_grants_no_wildcards_and_covers_what_the_operator_writes() {
    let text = std::fs::read_to_string(repo_file("crds/rbac/clusterrole.yaml")).unwrap();
    let role: k8s_openapi::api::rbac::v1::ClusterRole = serde_yaml::from_str(&text).unwrap();
    let rules = role.rules.unwrap();
    let allows = |group: &str, resource: &str, verb: &str| {
        rules.iter().any(|r| {
            r.api_groups.iter().flatten().any(|g| g == group)
                && r.resources.iter().flatten().any(|x| x == resource)
                && r.verbs.iter().any(|v| v == verb)
        })
    };
    for rule in &rules {
        let fields = [
            rule.api_groups.clone().unwrap_or_default(),
            rule.resources.clone().unwrap_or_default(),
            rule.verbs.clone(),
        ];
        assert!(
            fields.iter().flatten().all(|f| f != "*"),
            "wildcard in {rule:?}"
        );
    }
    for (group, resource, verb) in [
        ("silo.dev", "databases", "watch"),
        ("silo.dev", "databases/status", "patch"),
        ("silo.dev", "databaseservers/status", "patch"),
        // The finalizer that keeps a server while Databases use it.
        ("silo.dev", "databaseservers", "patch"),
        ("", "secrets", "patch"),
        ("apps", "statefulsets", "patch"),
        ("", "services", "patch"),
        ("networking.k8s.io", "networkpolicies", "patch"),
        ("coordination.k8s.io", "leases", "update"),
        ("events.k8s.io", "events", "create"),
    ] {
        assert!(
            allows(group, resource, verb),
            "missing {verb} on {group}/{resource}"
        );
    }
}

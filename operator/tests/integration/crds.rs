//! `crds/` must be what `silo-operator crd` generates from the Rust types.

#[test]
fn crds_directory_matches_the_rust_types() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    for (file, generated) in silo_operator::crd_yaml::crd_files().unwrap() {
        let committed = std::fs::read_to_string(dir.join(&file)).unwrap_or_default();
        assert!(
            committed == generated,
            "crds/{file} is out of date: run `cargo run -p silo-operator -- crd --out-dir crds`"
        );
    }
}

fn repo_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

#[test]
fn every_example_parses_into_the_crd_types_and_validates() {
    use silo_operator::crd::{Database, DatabaseServer};
    let mut seen = 0;
    for entry in std::fs::read_dir(repo_file("examples")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let value: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        match value["kind"].as_str() {
            Some("Database") => {
                let db: Database = serde_yaml::from_value(value).unwrap();
                silo_operator::validate::database(&db)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
            Some("DatabaseServer") => {
                let server: DatabaseServer = serde_yaml::from_value(value).unwrap();
                silo_operator::validate::server(&server)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
            other => panic!("{}: unexpected kind {other:?}", path.display()),
        }
        seen += 1;
    }
    assert!(seen >= 4, "examples/ holds the documented examples");
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

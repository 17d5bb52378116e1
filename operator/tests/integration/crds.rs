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

//! Adding and removing the operator's finalizers, guarded by the `resourceVersion` that was
//! read so that a concurrent change of the list is never overwritten (the write then fails with
//! a conflict and the reconcile is retried).

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::apply::FIELD_MANAGER;
use crate::error::Error;

/// Whether `object` carries `finalizer`.
pub fn has<K: Resource>(object: &K, finalizer: &str) -> bool {
    object.finalizers().iter().any(|f| f == finalizer)
}

/// The finalizer list with `finalizer` added (at the end) or removed.
fn changed<K: Resource>(object: &K, finalizer: &str, present: bool) -> Vec<String> {
    let mut list: Vec<String> = object
        .finalizers()
        .iter()
        .filter(|f| *f != finalizer)
        .cloned()
        .collect();
    if present {
        list.push(finalizer.to_string());
    }
    list
}

async fn write<K>(api: &Api<K>, object: &K, finalizers: Vec<String>) -> Result<K, Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let patch = json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": object.resource_version(),
        }
    });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    Ok(api
        .patch(&object.name_any(), &params, &Patch::Merge(&patch))
        .await?)
}

/// Adds `finalizer` unless it is there; returns the object as written (or as it was).
pub async fn add<K>(api: &Api<K>, object: &K, finalizer: &str) -> Result<K, Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    if has(object, finalizer) {
        return Ok(object.clone());
    }
    write(api, object, changed(object, finalizer, true)).await
}

/// Removes `finalizer` if it is there.
pub async fn remove<K>(api: &Api<K>, object: &K, finalizer: &str) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    if has(object, finalizer) {
        write(api, object, changed(object, finalizer, false)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Database;

    fn with(finalizers: &[&str]) -> Database {
        let mut db: Database = serde_yaml::from_str(
            "apiVersion: silo.dev/v1alpha1\nkind: Database\nmetadata: {name: orders, namespace: shop}\n\
             spec: {engine: postgres, owner: orders, server: {serverRef: shared}}\n",
        )
        .unwrap();
        db.metadata.finalizers = Some(finalizers.iter().map(|f| f.to_string()).collect());
        db
    }

    #[test]
    fn adding_keeps_the_others_and_never_doubles() {
        let db = with(&["other.io/keep", "silo.dev/x"]);
        assert!(has(&db, "silo.dev/x"));
        assert!(!has(&db, "silo.dev/y"));
        assert_eq!(
            changed(&db, "silo.dev/x", true),
            vec!["other.io/keep", "silo.dev/x"]
        );
        assert_eq!(
            changed(&db, "silo.dev/y", true),
            vec!["other.io/keep", "silo.dev/x", "silo.dev/y"]
        );
    }

    #[test]
    fn removing_keeps_the_others() {
        let db = with(&["silo.dev/x", "other.io/keep"]);
        assert_eq!(changed(&db, "silo.dev/x", false), vec!["other.io/keep"]);
    }
}

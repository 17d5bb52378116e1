//! The volume of a dedicated server when its `Database` is deleted. The StatefulSet goes with
//! the Database (it is owned by it), but the claim the StatefulSet controller made for the data
//! volume belongs to nobody and would stay: `Delete` removes it, `Retain` keeps it and says where.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::DeleteParams;

use super::Context;
use crate::build::{Workload, data_claim_name};
use crate::crd::{Database, DeletionPolicy};
use crate::error::Error;

/// Deletes or keeps the data volume claim of `db`'s dedicated server as `policy` says; returns
/// a note for the Event, if there was a claim.
pub async fn release(
    ctx: &Context,
    db: &Database,
    policy: DeletionPolicy,
) -> Result<Option<String>, Error> {
    // The claim's name depends on the Database's name only; a spec changed since is no matter.
    let spec = db.spec.server.dedicated.clone().unwrap_or_default();
    let Some(workload) = Workload::dedicated(db, &spec, &ctx.config.images) else {
        return Ok(None);
    };
    let claim = data_claim_name(&workload);
    let claims = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &workload.namespace);
    if policy == DeletionPolicy::Retain {
        return Ok(claims
            .get_opt(&claim)
            .await?
            .map(|_| retained_note(&workload, &claim)));
    }
    // The StatefulSet first: while it exists it would make the claim again for a restarted pod.
    let statefulsets = Api::<StatefulSet>::namespaced(ctx.client.clone(), &workload.namespace);
    ignore_absent(
        statefulsets
            .delete(&workload.name, &DeleteParams::background())
            .await
            .map(drop),
    )?;
    let deleted = ignore_absent(
        claims
            .delete(&claim, &DeleteParams::background())
            .await
            .map(drop),
    )?;
    Ok(deleted.map(|()| {
        format!(
            "deletionPolicy Delete: volume claim {claim} of the dedicated server deleted with its data"
        )
    }))
}

/// What a `Retain` deletion leaves behind, and what to do about it.
fn retained_note(workload: &Workload, claim: &str) -> String {
    format!(
        "deletionPolicy Retain: volume claim {claim} in namespace {} keeps the dedicated server's data (the server itself is deleted with the Database); delete the claim when the data is no longer needed",
        workload.namespace
    )
}

/// `Ok(None)` for an object that is already gone.
fn ignore_absent(result: Result<(), kube::Error>) -> Result<Option<()>, Error> {
    match result {
        Ok(()) => Ok(Some(())),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{DatabaseSpec, Engine, ManagedServerSpec, ServerBinding, StorageSpec};

    #[test]
    fn a_retained_claim_is_named_with_its_namespace_and_what_to_do() {
        let mut db = Database::new(
            "orders",
            DatabaseSpec {
                engine: Engine::Postgres,
                owner: "orders".into(),
                server: ServerBinding {
                    server_ref: None,
                    dedicated: Some(ManagedServerSpec {
                        storage: StorageSpec {
                            size: "1Gi".into(),
                            storage_class_name: None,
                        },
                        ..Default::default()
                    }),
                },
                deletion_policy: DeletionPolicy::Retain,
                credentials: Default::default(),
            },
        );
        db.metadata.namespace = Some("shop".into());
        db.metadata.uid = Some("u-1".into());
        let workload = Workload::dedicated(
            &db,
            db.spec.server.dedicated.as_ref().unwrap(),
            &Default::default(),
        )
        .unwrap();
        let note = retained_note(&workload, &data_claim_name(&workload));
        assert!(
            note.contains("volume claim data-orders-dbserver-0 in namespace shop"),
            "{note}"
        );
        assert!(note.contains("delete the claim"), "{note}");
    }
}

//! What a provisioning pass tells users: an Event and one INFO line per action taken.

use kube::Resource;

use super::rotation::Rotation;
use crate::controller::{Context, object_key};
use crate::crd::Database;
use crate::engine::ProvisionReport;

/// Publishes and logs what `report` says was done for `db`, and a rotation if there was one.
pub async fn publish_report(
    ctx: &Context,
    db: &Database,
    report: &ProvisionReport,
    rotation: Option<&Rotation>,
) {
    let reference = db.object_ref(&());
    let key = object_key(db);
    if report.role_created || report.database_created {
        tracing::info!(database = %key, "provisioned: database and role created on the server");
        ctx.publish(
            &reference,
            false,
            "Provisioned",
            "Provision",
            "database and role created on the server".into(),
        )
        .await;
    }
    for repair in &report.repaired {
        tracing::info!(database = %key, "drift repaired: {repair}");
        ctx.publish(&reference, true, "DriftRepaired", "Repair", repair.clone())
            .await;
    }
    if let Some(rotation) = rotation {
        let cause = rotation.cause();
        tracing::info!(database = %key, "password rotated ({cause})");
        ctx.publish(
            &reference,
            false,
            "PasswordRotated",
            "Rotate",
            format!("a new password was set and written to the Secret ({cause}); restart the service to use it"),
        )
        .await;
    }
}

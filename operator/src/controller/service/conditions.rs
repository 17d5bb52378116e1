//! The status of a `Service`, from what one reconcile observed. Pure.

use k8s_openapi::api::apps::v1::Deployment;

use crate::crd::{Database, ServiceDatabaseStatus, ServiceStatus};
use crate::isolation::Assessment;
use crate::status::{condition, find, upsert};

/// Condition types of a `Service`.
pub mod types {
    /// Everything below holds.
    pub const READY: &str = "Ready";
    /// The service's Database is Ready (or it has none).
    pub const DATABASE_READY: &str = "DatabaseReady";
    /// The Deployment is available with every pod updated.
    pub const DEPLOYED: &str = "Deployed";
    /// The NetworkPolicy of the service's pods is applied.
    pub const NETWORK_POLICY_APPLIED: &str = "NetworkPolicyApplied";
    /// Nobody but the service (and the operator) can reach its database.
    pub const ISOLATED: &str = "Isolated";
}

/// A condition's status, reason and message.
type Verdict = (bool, String, String);

/// What one reconcile observed.
pub struct Observed<'a> {
    /// `metadata.generation` of the Service.
    pub generation: Option<i64>,
    /// The in-cluster URL.
    pub endpoint: String,
    /// The database's name and the Database as it is (absent: not created yet).
    pub database: Option<(&'a str, Option<&'a Database>)>,
    /// The Deployment as applied (absent: waiting for the database's credentials).
    pub deployment: Option<&'a Deployment>,
    /// The replicas asked for.
    pub replicas: i32,
    /// The isolation of the database.
    pub isolation: &'a Assessment,
}

/// The new status: `previous` with every condition set from `observed`.
pub fn status(previous: &ServiceStatus, observed: &Observed<'_>) -> ServiceStatus {
    let isolation = observed.isolation;
    let mut parts = vec![
        (types::DATABASE_READY, database_ready(observed.database)),
        (
            types::DEPLOYED,
            deployed(observed.deployment, observed.replicas, observed.database),
        ),
        (
            types::NETWORK_POLICY_APPLIED,
            (
                true,
                "Applied".to_string(),
                "the pods admit only their callers and reach only DNS, their database, their dependencies and the broker".to_string(),
            ),
        ),
        (
            types::ISOLATED,
            (
                isolation.isolated,
                isolation.reason.to_string(),
                isolation.message.clone(),
            ),
        ),
    ];
    parts.push((types::READY, ready(&parts)));
    let mut status = previous.clone();
    for (type_, (ok, reason, message)) in parts {
        upsert(
            &mut status.conditions,
            condition(
                &previous.conditions,
                type_,
                ok,
                &reason,
                message,
                observed.generation,
            ),
        );
    }
    status.observed_generation = observed.generation;
    status.endpoint = Some(observed.endpoint.clone());
    status.database = observed.database.map(|(name, db)| ServiceDatabaseStatus {
        name: name.to_string(),
        secret: db.and_then(|db| db.status.as_ref()?.secret_name.clone()),
    });
    status
}

/// `status` with `Ready` False for `reason`, the rest as it was.
pub fn failed(
    previous: &ServiceStatus,
    generation: Option<i64>,
    reason: &str,
    message: String,
) -> ServiceStatus {
    let mut status = previous.clone();
    upsert(
        &mut status.conditions,
        condition(
            &previous.conditions,
            types::READY,
            false,
            reason,
            message,
            generation,
        ),
    );
    status.observed_generation = generation;
    status
}

fn database_ready(database: Option<(&str, Option<&Database>)>) -> Verdict {
    let Some((name, db)) = database else {
        return (
            true,
            "NoDatabase".into(),
            "the service has no database".into(),
        );
    };
    let Some(db) = db else {
        return (
            false,
            "WaitingForDatabase".into(),
            format!("Database {name} is not created yet"),
        );
    };
    let conditions = db
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    match find(conditions, types::READY) {
        Some(ready) if ready.status == "True" => (
            true,
            "DatabaseReady".into(),
            format!("Database {name} is Ready"),
        ),
        Some(ready) => (
            false,
            "DatabaseNotReady".into(),
            format!("Database {name}: {} ({})", ready.message, ready.reason),
        ),
        None => (
            false,
            "WaitingForDatabase".into(),
            format!("Database {name} has not been reconciled yet"),
        ),
    }
}

fn deployed(
    deployment: Option<&Deployment>,
    replicas: i32,
    database: Option<(&str, Option<&Database>)>,
) -> Verdict {
    let Some(deployment) = deployment else {
        let name = database.map(|(name, _)| name).unwrap_or_default();
        return (
            false,
            "WaitingForCredentials".into(),
            format!("the pods start once Database {name} has written its credentials Secret"),
        );
    };
    let status = deployment.status.clone().unwrap_or_default();
    if status.observed_generation < deployment.metadata.generation {
        return (
            false,
            "RollingOut".into(),
            "the Deployment controller has not acted on the latest change yet".into(),
        );
    }
    let stuck = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing" && c.status == "False");
    if let Some(stuck) = stuck {
        return (
            false,
            "RolloutStuck".into(),
            stuck.message.clone().unwrap_or_default(),
        );
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    if updated >= replicas && available >= replicas && total <= updated {
        (
            true,
            "Available".into(),
            format!("{available} of {replicas} pods available, all updated"),
        )
    } else {
        (
            false,
            "RollingOut".into(),
            format!("{updated} of {replicas} pods updated, {available} available, {total} in all"),
        )
    }
}

/// True when every part is; otherwise the first part that is not, with its reason.
fn ready(parts: &[(&str, Verdict)]) -> Verdict {
    match parts.iter().find(|(_, (ok, _, _))| !ok) {
        Some((part, (_, reason, message))) => (false, reason.clone(), format!("{part}: {message}")),
        None => (
            true,
            "Ready".into(),
            "DatabaseReady, Deployed, NetworkPolicyApplied and Isolated are True".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isolation::reasons;

    fn isolated() -> Assessment {
        Assessment {
            isolated: true,
            reason: reasons::ONLY_OWNER_REACHES,
            message: "only the owner".into(),
            foreign: Vec::new(),
        }
    }

    fn database(ready: Option<bool>) -> Database {
        let mut db: Database = serde_yaml::from_str(
            "apiVersion: silo.dev/v1alpha1\nkind: Database\nmetadata: {name: b-db, namespace: shop}\n\
             spec: {engine: postgres, owner: b, server: {serverRef: pg}}\n",
        )
        .unwrap();
        if let Some(ready) = ready {
            let mut status = crate::crd::DatabaseStatus::default();
            status
                .conditions
                .push(condition(&[], "Ready", ready, "X", "m", Some(1)));
            status.secret_name = Some("b-db".into());
            db.status = Some(status);
        }
        db
    }

    fn available(replicas: i32, updated: i32, available: i32, total: i32) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "b", "generation": 3 },
            "status": { "observedGeneration": 3, "replicas": total,
                        "updatedReplicas": updated, "availableReplicas": available },
            "spec": { "replicas": replicas, "selector": {}, "template": {} },
        }))
        .unwrap()
    }

    fn observe(
        db: &Database,
        deployment: Option<&Deployment>,
        isolation: &Assessment,
    ) -> ServiceStatus {
        status(
            &ServiceStatus::default(),
            &Observed {
                generation: Some(4),
                endpoint: "http://b.shop.svc:8080".into(),
                database: Some(("b-db", Some(db))),
                deployment,
                replicas: 2,
                isolation,
            },
        )
    }

    fn reason_of(status: &ServiceStatus, type_: &str) -> (String, String) {
        let c = find(&status.conditions, type_).unwrap();
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn ready_when_every_part_holds() {
        let db = database(Some(true));
        let deployment = available(2, 2, 2, 2);
        let status = observe(&db, Some(&deployment), &isolated());
        assert_eq!(
            reason_of(&status, types::READY),
            ("True".into(), "Ready".into())
        );
        assert_eq!(status.observed_generation, Some(4));
        assert_eq!(status.database.unwrap().secret.as_deref(), Some("b-db"));
        assert!(
            status
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(4))
        );
    }

    #[test]
    fn a_roll_in_progress_is_not_deployed_and_ready_says_why() {
        let db = database(Some(true));
        let rolling = available(2, 1, 2, 3);
        let status = observe(&db, Some(&rolling), &isolated());
        assert_eq!(
            reason_of(&status, types::DEPLOYED),
            ("False".into(), "RollingOut".into())
        );
        assert_eq!(
            reason_of(&status, types::READY),
            ("False".into(), "RollingOut".into())
        );
    }

    #[test]
    fn without_credentials_the_pods_wait_and_the_database_reason_comes_first() {
        let db = database(None);
        let status = observe(&db, None, &isolated());
        assert_eq!(
            reason_of(&status, types::DEPLOYED),
            ("False".into(), "WaitingForCredentials".into())
        );
        assert_eq!(
            reason_of(&status, types::READY),
            ("False".into(), "WaitingForDatabase".into())
        );
    }

    #[test]
    fn an_opened_database_makes_the_service_not_ready() {
        let db = database(Some(true));
        let deployment = available(2, 2, 2, 2);
        let opened = Assessment {
            isolated: false,
            reason: reasons::OPENED_BY_POLICY,
            message: "opened by shop/allow-all".into(),
            foreign: Vec::new(),
        };
        let status = observe(&db, Some(&deployment), &opened);
        let ready = find(&status.conditions, types::READY).unwrap();
        assert_eq!(ready.reason, "OpenedByPolicy");
        assert!(ready.message.contains("shop/allow-all"));
    }
}
